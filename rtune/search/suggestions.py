"""A searcher's suggestion completed by the constants of `param_space`, as Ray Tune does.

Ray Tune merges every suggestion over the experiment's `param_space`, so a searcher that
suggests only the searched parameters (`OptunaSearch` over `lr`, say) still gives its trials the
fixed ones (`{"epochs": 10}`). A search-space parameter the searcher did not suggest would reach
the trainable as a `Domain` object there; here it is an error naming the key and the searcher.
`BasicVariantGenerator` makes whole configs itself and is never merged.
"""

from __future__ import annotations

import copy
from typing import Any

from rtune.search.sample import Domain

Path = tuple


def _is_variable(value: Any) -> bool:
    if isinstance(value, Domain):
        return True
    if isinstance(value, dict):
        return set(value) == {"grid_search"}
    if isinstance(value, list):  # a list holding a parameter is suggested whole
        return any(_is_variable(v) or _holds_variable(v) for v in value)
    return False


def _holds_variable(value: Any) -> bool:
    if _is_variable(value):
        return True
    if isinstance(value, dict):
        return any(_holds_variable(v) for v in value.values())
    return False


def split_space(space: dict[str, Any]) -> tuple[dict[str, Any], list[Path]]:
    """(the constants of `space`, nested as in it; the paths of its search parameters)."""
    variables: list[Path] = []

    def constants(node: dict[str, Any], path: Path) -> dict[str, Any]:
        kept = {}
        for key, value in node.items():
            if _is_variable(value):
                variables.append((*path, key))
            elif isinstance(value, dict):
                kept[key] = constants(value, (*path, key))
            else:
                kept[key] = copy.deepcopy(value)
        return kept

    return constants(space, ()), variables


def merged(base: Any, override: Any) -> Any:
    """`override` over `base`: nested dicts merged key by key, any other value (a grid search
    too) replaced. Neither is changed."""
    if not (isinstance(base, dict) and isinstance(override, dict)) or set(base) == {"grid_search"}:
        return override
    out = dict(base)
    for key, value in override.items():
        out[key] = merged(base[key], value) if key in base else value
    return out


def complete_suggestion(
    constants: dict[str, Any], variables: list[Path], suggestion: dict[str, Any], searcher: str
) -> dict[str, Any]:
    """`suggestion` deep-merged over copies of `constants` (the suggestion wins); a ValueError
    naming the first search parameter of `param_space` it left without a value."""
    config = merged(copy.deepcopy(constants), suggestion)
    for path in variables:
        node: Any = config
        for key in path:
            if not isinstance(node, dict) or key not in node:
                shown = "param_space" + "".join(f"[{k!r}]" for k in path)
                raise ValueError(
                    f"{searcher} suggested no value for {shown}, a search parameter of "
                    "param_space: give the searcher the whole search space (or set that key "
                    "to a constant)"
                )
            node = node[key]
    return config
