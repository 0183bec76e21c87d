"""rtune search spaces as bayes_opt 3.x bounds, and Ray's `utility_kwargs` as its acquisition.

`tune.uniform` is a float range (all Ray Tune's BayesOptSearch takes); bayes_opt 3.x's typed
parameters make `tune.randint` an integer and `tune.choice` a categorical parameter over the
choice's positions (so any value can be a choice). Everything else is refused, naming the key.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

from rtune.search.sample import Categorical, Domain, Float, Function, Integer

SEP = "/"
# Ray's utility_kwargs (bayes_opt 1.x's UtilityFunction) -> bayes_opt 3.x's acquisition classes
_KINDS = {
    "ucb": "UpperConfidenceBound",
    "ei": "ExpectedImprovement",
    "poi": "ProbabilityOfImprovement",
}
_UTILITY = {"kind": "ucb", "kappa": 2.576, "xi": 0.0, "kappa_decay": 1.0, "kappa_decay_delay": 0}
# bayes_opt 3.x calls integer and categorical parameters experimental, on every optimizer made
EXPERIMENTAL = "Non-float parameters are experimental"


def import_bayes_opt() -> Any:
    try:
        import bayes_opt
    except ImportError as exc:
        raise ImportError(
            "BayesOptSearch needs bayesian-optimization, an optional extra: "
            "pip install 'rtune[bayesopt]'"
        ) from exc
    return bayes_opt


def shown(path: tuple) -> str:
    return "param_space" + "".join(f"[{key!r}]" for key in path)


class Converted(NamedTuple):
    """A space as bayes_opt takes it: `pbounds` by flat "a/b" name; `constants` nested as in the
    space; `choices`: each `tune.choice`'s categories (bayes_opt records the index); `paths`: each
    flat name's keys in the space (which may not all be strings)."""

    pbounds: dict[str, Any]
    constants: dict[str, Any]
    choices: dict[str, list]
    paths: dict[str, tuple]


def to_pbounds(space: dict[str, Any], bounds_allowed: bool = True) -> Converted:
    """`space` for bayes_opt. `bounds_allowed`: a tuple (`(low, high)`, `(low, high, int)`, a
    tuple of categories) or a bayes_opt parameter is a bound, as bayes_opt reads it: in
    BayesOptSearch's own space. In a Tuner's param_space a tuple is a constant, as for every
    other searcher."""
    bayes_opt = import_bayes_opt()
    from bayes_opt.parameter import BayesParameter, CategoricalParameter

    out = Converted({}, {}, {}, {})

    def walk(node: dict[str, Any], path: tuple) -> dict[str, Any]:
        constants = {}
        for key, value in node.items():
            here = (*path, key)
            name = SEP.join(map(str, here))
            if isinstance(value, dict) and set(value) == {"grid_search"}:
                raise ValueError(
                    f"BayesOptSearch cannot search a grid_search ({shown(here)}): use "
                    "tune.choice, or BasicVariantGenerator for a grid"
                )
            own = bounds_allowed and isinstance(value, (tuple, BayesParameter))
            if (isinstance(value, Domain) or own) and SEP in str(key):
                raise ValueError(
                    f"BayesOptSearch: the key {key!r} ({shown(here)}) holds {SEP!r}, which "
                    "joins nested keys in bayes_opt's parameter names"
                )
            if isinstance(value, Categorical) and len(value.categories) == 1:
                constants[key] = value.categories[0]  # bayes_opt needs two categories or more
                continue
            if isinstance(value, Categorical):
                if any(isinstance(c, Domain) for c in value.categories):
                    raise ValueError(
                        f"BayesOptSearch: {shown(here)} is a choice holding search parameters; "
                        "it searches a flat space only"
                    )
                out.choices[name] = list(value.categories)
                out.pbounds[name] = CategoricalParameter(name, list(range(len(value.categories))))
            elif isinstance(value, Domain):
                out.pbounds[name] = _bounds(value, here)
            elif own:
                out.pbounds[name] = _parsed(bayes_opt, name, value, here)
            elif isinstance(value, dict):
                nested = walk(value, here)
                if nested or not value:
                    constants[key] = nested
                continue
            elif isinstance(value, list) and any(isinstance(v, Domain) for v in value):
                raise ValueError(
                    f"BayesOptSearch cannot search inside a list ({shown(here)}): give each "
                    "parameter a key of its own"
                )
            else:
                constants[key] = value
                continue
            out.paths[name] = here
        return constants

    out.constants.update(walk(space, ()))
    return out


def _bounds(domain: Domain, path: tuple) -> tuple:
    where = shown(path)
    if isinstance(domain, Function):
        raise ValueError(
            f"BayesOptSearch cannot sample a sample_from function ({where}): compute derived "
            "values in the trainable"
        )
    if not isinstance(domain, (Float, Integer)) or getattr(domain, "mean", None) is not None:
        what = "a normal (randn)" if isinstance(domain, Float) else type(domain).__name__
        raise ValueError(
            f"BayesOptSearch cannot sample {what} ({where}): its GP searches a bounded range"
        )
    if domain.base is not None:
        raise ValueError(
            f"BayesOptSearch cannot sample a log-uniform parameter ({where}): its GP works on "
            "a linear scale; search the exponent with tune.uniform (e.g. tune.uniform(-4, -1), "
            "and 10 ** x in the trainable)"
        )
    if domain.q is not None:
        raise ValueError(
            f"BayesOptSearch cannot sample a quantized parameter ({where}): its GP searches a "
            "range without a step; use tune.uniform, or tune.randint for integers"
        )
    if isinstance(domain, Integer):
        return (domain.lower, domain.upper - 1, int)  # randint excludes upper, bayes_opt not
    return (float(domain.lower), float(domain.upper))


def _parsed(bayes_opt: Any, name: str, bounds: Any, path: tuple) -> Any:
    """A bound given by the user, as bayes_opt reads it, or refused here naming the key."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=EXPERIMENTAL)
            return bayes_opt.TargetSpace(None, {name: bounds}).params_config[name]
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"BayesOptSearch: {shown(path)} = {bounds!r} is not a bayes_opt bound ({exc})"
        ) from exc


def to_acquisition(utility_kwargs: dict[str, Any] | None) -> Any:
    """bayes_opt 3.x's acquisition function for Ray's `utility_kwargs` (kind, kappa, xi, and
    bayes_opt 1.x's kappa_decay and kappa_decay_delay, which decayed kappa only)."""
    from bayes_opt import acquisition

    if utility_kwargs is not None and not isinstance(utility_kwargs, dict):
        raise TypeError(f"BayesOptSearch: utility_kwargs must be a dict: {utility_kwargs!r}")
    unknown = sorted(set(utility_kwargs or {}) - set(_UTILITY), key=str)
    if unknown:
        raise ValueError(
            f"BayesOptSearch: utility_kwargs has no key {unknown[0]!r} (it takes "
            f"{', '.join(_UTILITY)})"
        )
    kw = {**_UTILITY, **(utility_kwargs or {})}
    if kw["kind"] not in _KINDS:
        raise ValueError(
            f"BayesOptSearch: utility_kwargs kind must be one of {', '.join(map(repr, _KINDS))}, "
            f"got {kw['kind']!r}"
        )
    cls = getattr(acquisition, _KINDS[kw["kind"]])
    if kw["kind"] != "ucb":
        return cls(xi=kw["xi"])
    decay = None if kw["kappa_decay"] == 1 else kw["kappa_decay"]
    delay = kw["kappa_decay_delay"] or None
    return cls(kappa=kw["kappa"], exploration_decay=decay, exploration_decay_delay=delay)
