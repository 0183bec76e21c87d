"""rtune search spaces as Optuna distributions, and Optuna's flat parameters back as configs.

Nested keys are joined with "/" (as Ray Tune's OptunaSearch does), so a study's parameter names
read `model/depth`. What Optuna cannot sample is refused here, naming the key: `grid_search`,
`sample_from`, `randn`, and categories other than None, bool, int, float and str. Optuna samples
a quantized log-uniform value unquantized (it has no such distribution): a warning says so.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from rtune.search.sample import Categorical, Domain, Float, Function, Integer

SEP = "/"
_CATEGORY_TYPES = (type(None), bool, int, float, str)


def _shown(path: tuple) -> str:
    return "param_space" + "".join(f"[{key!r}]" for key in path)


def to_distributions(space: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Optuna distributions by flat name, the constants of `space`, nested as in it)."""
    import optuna.distributions as od

    dists: dict[str, Any] = {}

    def walk(node: dict[str, Any], path: tuple) -> dict[str, Any]:
        constants = {}
        for key, value in node.items():
            here = (*path, key)
            if isinstance(value, dict) and set(value) == {"grid_search"}:
                raise ValueError(
                    f"OptunaSearch cannot search a grid_search ({_shown(here)}): use "
                    "tune.choice, or BasicVariantGenerator for a grid"
                )
            if isinstance(value, od.BaseDistribution):
                dists[SEP.join(map(str, here))] = value
            elif isinstance(value, Domain):
                dists[SEP.join(map(str, here))] = _distribution(value, here)
            elif isinstance(value, dict):
                nested = walk(value, here)
                if nested or not value:
                    constants[key] = nested
            elif isinstance(value, list) and any(isinstance(v, Domain) for v in value):
                raise ValueError(
                    f"OptunaSearch cannot search inside a list ({_shown(here)}): give each "
                    "parameter a key of its own"
                )
            else:
                constants[key] = value
        return constants

    constants = walk(space, ())
    return dists, constants


def _distribution(domain: Domain, path: tuple) -> Any:
    import optuna.distributions as od

    where = _shown(path)
    if isinstance(domain, Function):
        raise ValueError(
            f"OptunaSearch cannot sample a sample_from function ({where}): use a define-by-run "
            "function as the space to compute values from others"
        )
    if isinstance(domain, Categorical):
        bad = [c for c in domain.categories if not isinstance(c, _CATEGORY_TYPES)]
        if bad:
            raise ValueError(
                f"OptunaSearch takes choices of None, bool, int, float and str only; {where} "
                f"holds {type(bad[0]).__name__} {bad[0]!r}"
            )
        return od.CategoricalDistribution(list(domain.categories))
    if isinstance(domain, Float):
        if domain.mean is not None:
            raise ValueError(f"OptunaSearch cannot sample a normal distribution (randn, {where})")
        log = domain.base is not None
        if domain.q is not None and log:
            warnings.warn(
                f"OptunaSearch: {where} is a quantized log-uniform; Optuna samples it "
                "unquantized (it has no such distribution)",
                stacklevel=4,
            )
        if domain.q is not None and not log:
            low = math.ceil(domain.lower / domain.q) * domain.q
            high = math.floor(domain.upper / domain.q) * domain.q
            return od.FloatDistribution(low, high, step=domain.q)
        # Optuna's upper bound is inclusive: rtune's uniform never returns upper itself
        return od.FloatDistribution(domain.lower, domain.upper, log=log)
    if isinstance(domain, Integer):
        last = domain.upper - 1  # rtune's Integer excludes upper; Optuna's includes high
        if domain.base is not None:
            if domain.q is not None:
                warnings.warn(
                    f"OptunaSearch: {where} is a quantized log-uniform int; Optuna samples it "
                    "unquantized (it has no such distribution)",
                    stacklevel=4,
                )
            return od.IntDistribution(domain.lower, last, log=True)
        if domain.q is not None:
            low = -(-domain.lower // domain.q) * domain.q
            return od.IntDistribution(low, (last // domain.q) * domain.q, step=domain.q)
        return od.IntDistribution(domain.lower, last)
    raise ValueError(f"OptunaSearch cannot sample {type(domain).__name__} ({where})")


def unflatten(params: dict[str, Any]) -> dict[str, Any]:
    """Optuna's flat "a/b" parameters as a nested config."""
    config: dict[str, Any] = {}
    for name, value in params.items():
        node = config
        *parents, leaf = name.split(SEP)
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return config


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config's leaves by "a/b" name (for points given by the user)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + SEP))
        else:
            flat[name] = value
    return flat
