"""PopulationBasedTraining's mutations (`hyperparam_mutations`): checked before the run, filled
into a trial's config where the param space lacks a key, and explored on an exploit, with Ray
Tune's rules; every random draw from the scheduler's seeded generator."""

from __future__ import annotations

import copy
import random
import warnings
from typing import Any

from rtune.search.sample import Categorical, Domain, Function


def check_mutations(mutations: Any, where: str) -> None:
    if not isinstance(mutations, dict):
        raise TypeError(f"{where} must be a dict of key -> mutation, got {mutations!r}")
    for key, value in mutations.items():
        name = f"{where}[{key!r}]"
        if isinstance(value, dict):
            check_mutations(value, name)
        elif isinstance(value, Function):
            raise ValueError(
                f"{name}: tune.sample_from is not supported as a mutation; use tune.uniform, "
                "tune.choice, ..., a list of values or a function of no arguments"
            )
        elif isinstance(value, (list, tuple)):
            if not value:
                raise ValueError(f"{name}: an empty list has nothing to explore")
        elif not isinstance(value, Domain) and not callable(value):
            raise TypeError(
                f"{name} must be a list, a tune search space (tune.uniform, ...), a function "
                f"of no arguments or a dict of them, got {type(value).__name__} {value!r}"
            )
        elif isinstance(value, Domain) and not hasattr(value, "sample"):
            raise TypeError(f"{name}: {value!r} cannot be sampled")


def check_against_space(mutations: dict, space: dict, prefix: str) -> None:
    """A mutated key the space lacks is sampled from its mutation (Ray Tune's documented
    behaviour), which is also what a misspelt key does: say so, naming it, before the run."""
    for key, value in mutations.items():
        name = f"{prefix}{key}"
        if key not in space:
            if space or prefix:
                warnings.warn(
                    f"PopulationBasedTraining: hyperparam_mutations key {name!r} is not in "
                    "param_space: each trial's first value is sampled from its mutation",
                    stacklevel=3,
                )
            continue
        if isinstance(value, dict):
            if not isinstance(space[key], dict):
                raise ValueError(
                    f"PopulationBasedTraining: hyperparam_mutations[{name!r}] is a dict of "
                    f"mutations, but param_space[{name!r}] is not a dict ({space[key]!r})"
                )
            check_against_space(value, space[key], f"{name}/")


def sample(mutation: Any, rng: random.Random) -> Any:
    if isinstance(mutation, (list, tuple)):
        return copy.deepcopy(rng.choice(mutation))
    if isinstance(mutation, Domain):
        return mutation.sample(rng)
    return mutation()


def fill_config(config: dict, mutations: dict, rng: random.Random) -> None:
    for key, mutation in mutations.items():
        if isinstance(mutation, dict):
            fill_config(config.setdefault(key, {}), mutation, rng)
        elif key not in config:
            config[key] = sample(mutation, rng)


def explore(
    config: dict,
    mutations: dict,
    resample_probability: float,
    factors: tuple[float, ...],
    rng: random.Random,
) -> dict:
    """Ray Tune's explore step on a copy of `config` (see the module docstring)."""
    new = copy.deepcopy(config)
    for key, mutation in mutations.items():
        if isinstance(mutation, dict):
            new[key] = explore(config.get(key, {}), mutation, resample_probability, factors, rng)
            continue
        values = mutation.categories if isinstance(mutation, Categorical) else mutation
        if isinstance(values, (list, tuple)):
            values = list(values)
            if rng.random() < resample_probability or config.get(key) not in values:
                new[key] = copy.deepcopy(rng.choice(values))
            else:
                index = values.index(config[key]) + rng.choice([-1, 1])
                new[key] = copy.deepcopy(values[min(max(index, 0), len(values) - 1)])
            continue
        if rng.random() < resample_probability:
            new[key] = sample(mutation, rng)
        else:
            new[key] = config[key] * rng.choice(factors)
        if isinstance(config.get(key), int) and not isinstance(config[key], bool):
            new[key] = int(new[key])  # a batch size stays an int
    return new
