"""rtune search spaces as HyperOpt expressions, and configs as the labels HyperOpt records.

A space may hold rtune primitives (converted here, labelled by their path joined with "/"),
HyperOpt's own `hp.*` expressions (kept as they are, with the user's labels: conditional spaces,
`hp.choice` of dicts holding parameters) and constants. Constants are kept apart and merged into
every suggestion, so they reach the trainable exactly as given: HyperOpt would turn a list into a
tuple. A `tune.choice` becomes an `hp.choice` of literals for the same reason.

What HyperOpt cannot sample is refused here, naming the key: `grid_search`, `sample_from` and
parameters inside lists.

`to_labels` turns a config (a point to evaluate) into HyperOpt's `{label: value}` record: an
`hp.choice` is recorded by the index of the option the config matches, and only the parameters of
that option count, as HyperOpt records a conditional space.
"""

from __future__ import annotations

import math
from typing import Any

from rtune.search.sample import Categorical, Domain, Float, Function, Integer

SEP = "/"


def _shown(path: tuple) -> str:
    return "param_space" + "".join(f"[{key!r}]" for key in path)


def _is_expression(value: Any) -> bool:
    from hyperopt.pyll import Apply

    return isinstance(value, Apply)


def to_hyperopt(space: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the HyperOpt space: only what HyperOpt samples, nested as in `space`; the constants)."""

    def walk(node: dict[str, Any], path: tuple) -> tuple[dict[str, Any], dict[str, Any]]:
        sampled, constants = {}, {}
        for key, value in node.items():
            here = (*path, key)
            if isinstance(value, dict) and set(value) == {"grid_search"}:
                raise ValueError(
                    f"HyperOptSearch cannot search a grid_search ({_shown(here)}): use "
                    "tune.choice, or BasicVariantGenerator for a grid"
                )
            if _is_expression(value):
                sampled[key] = value
            elif isinstance(value, Domain):
                sampled[key] = _expression(value, here)
            elif isinstance(value, dict) and value:
                inner, fixed = walk(value, here)
                if inner:
                    sampled[key] = inner
                if fixed:
                    constants[key] = fixed
            elif isinstance(value, list) and any(
                isinstance(v, Domain) or _is_expression(v) for v in value
            ):
                raise ValueError(
                    f"HyperOptSearch cannot search inside a list ({_shown(here)}): give each "
                    "parameter a key of its own"
                )
            else:
                constants[key] = value
        return sampled, constants

    return walk(space, ())


def _expression(domain: Domain, path: tuple) -> Any:
    from hyperopt import hp
    from hyperopt.pyll import Literal, scope

    label, where = SEP.join(map(str, path)), _shown(path)
    if isinstance(domain, Function):
        raise ValueError(
            f"HyperOptSearch cannot sample a sample_from function ({where}): use an hp.choice "
            "of dicts for a parameter that depends on another"
        )
    if isinstance(domain, Categorical):
        if any(isinstance(c, Domain) for c in domain.categories):
            raise ValueError(
                f"HyperOptSearch: {where} is a choice holding search parameters; use hp.choice "
                "with hp expressions for a conditional space"
            )
        return hp.choice(label, [Literal(c) for c in domain.categories])
    if isinstance(domain, Float):
        if domain.mean is not None:
            sd = domain.sd if domain.sd is not None else 1.0
            if domain.q is not None:
                return hp.qnormal(label, domain.mean, sd, domain.q)
            return hp.normal(label, domain.mean, sd)
        low, high, q = domain.lower, domain.upper, domain.q
        if q is not None:  # the multiples of q within the bounds, which rounding never leaves
            low, high = math.ceil(low / q) * q, math.floor(high / q) * q
        if domain.base is not None:
            if q is not None:
                return hp.qloguniform(label, math.log(low), math.log(high), q)
            return hp.loguniform(label, math.log(low), math.log(high))
        return hp.quniform(label, low, high, q) if q is not None else hp.uniform(label, low, high)
    if isinstance(domain, Integer):
        last, q = domain.upper - 1, domain.q or 1  # rtune's Integer excludes upper
        low, high = -(-domain.lower // q) * q, (last // q) * q
        if domain.base is not None:
            return scope.int(hp.qloguniform(label, math.log(low), math.log(high), q))
        if domain.q is not None:
            return scope.int(hp.quniform(label, low, high, q))
        return hp.randint(label, domain.lower, domain.upper)
    raise ValueError(f"HyperOptSearch cannot sample {type(domain).__name__} ({where})")


def to_labels(space: dict[str, Any], point: dict[str, Any]) -> dict[str, Any]:
    """HyperOpt's record `{label: value}` of the config `point` in `space` (from `to_hyperopt`).
    A ValueError names the key of a value no `hp.choice` option matches or a missing one."""
    from hyperopt.pyll import Apply

    labels: dict[str, Any] = {}

    def walk(node: Any, value: Any, path: tuple) -> None:
        if not _samples(node):  # a constant (a chosen literal option): nothing to record
            return
        if isinstance(node, dict) or (isinstance(node, Apply) and node.name == "dict"):
            items = node.items() if isinstance(node, dict) else node.named_args
            for key, sub in items:
                if not _samples(sub):
                    continue
                if not isinstance(value, dict) or key not in value:
                    raise ValueError(
                        f"HyperOptSearch: a point to evaluate has no value for "
                        f"{_shown((*path, key))}"
                    )
                walk(sub, value[key], (*path, key))
            return
        if node.name == "switch":  # hp.choice: the index of the first option that matches
            options = list(enumerate(node.pos_args[1:]))
            # constants and dicts first: a bare sampled option matches any value
            options.sort(key=lambda pair: _is_bare_parameter(pair[1]))
            for index, option in options:
                if _matches(option, value):
                    labels[_label(node.pos_args[0])] = index
                    walk(option, value, path)
                    return
            raise ValueError(
                f"HyperOptSearch: a point to evaluate gives {_shown(path)} = {value!r}, which "
                "is none of the choice's options"
            )
        if node.name == "hyperopt_param":
            labels[_label(node)] = value
            return
        if node.name in ("float", "int") and node.pos_args:
            walk(node.pos_args[0], value, path)
            return
        raise ValueError(
            f"HyperOptSearch cannot record a point for {_shown(path)} (a computed expression)"
        )

    walk(space, point, ())
    return labels


def _label(param: Any) -> str:
    return param.arg["label"].obj


def _samples(node: Any) -> bool:
    """Whether `node` holds a HyperOpt parameter (constants need no value in a point)."""
    from hyperopt import pyll

    if isinstance(node, dict):
        return any(_samples(v) for v in node.values())
    return _is_expression(node) and any(n.name == "hyperopt_param" for n in pyll.dfs(node))


def _is_bare_parameter(node: Any) -> bool:
    return _samples(node) and node.name != "dict"


def _matches(option: Any, value: Any) -> bool:
    """Whether a choice's option can have given `value`: a constant equal to it, or a dict whose
    constant entries are all in `value`."""
    from hyperopt.pyll import Literal, rec_eval

    if isinstance(option, Literal) or not _samples(option):
        return rec_eval(option) == value
    if option.name == "dict":
        if not isinstance(value, dict):
            return False
        fixed = [(k, v) for k, v in option.named_args if not _samples(v)]
        return all(k in value and rec_eval(v) == value[k] for k, v in fixed)
    return True  # a sampled option (hp.uniform among constants): any value may be it
