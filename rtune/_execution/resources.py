"""Trial resource requests: `with_resources` and `PlacementGroupFactory`.

A request is normalized once into a `ResourceRequest`, which is hashable so that trial actors can be
reused between trials asking for the same thing, and which turns into the Ray actor options that
make Ray (not rtune) do the placement and accounting.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Real
from typing import Any

_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


class PlacementGroupFactory:
    """Resources for a multi-bundle trial: bundle 0 hosts the trial actor, the rest its workers."""

    def __init__(self, bundles: list[dict[str, float]], strategy: str = "PACK"):
        if not isinstance(bundles, (list, tuple)) or not bundles:
            raise ValueError("PlacementGroupFactory needs a non-empty list of bundles")
        if strategy not in _STRATEGIES:
            raise ValueError(f"PlacementGroupFactory strategy must be one of {_STRATEGIES}")
        self.bundles = [_normalize_bundle(b, f"bundle {i}") for i, b in enumerate(bundles)]
        self.strategy = strategy

    def required_resources(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for bundle in self.bundles:
            for key, value in bundle.items():
                total[key] = total.get(key, 0) + value
        return total

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, PlacementGroupFactory)
            and self.bundles == other.bundles
            and self.strategy == other.strategy
        )

    def __hash__(self) -> int:
        return hash(repr(self))

    def __repr__(self) -> str:
        return f"PlacementGroupFactory({self.bundles}, strategy={self.strategy!r})"


def _is_amount(value: Any) -> bool:
    """A resource amount: a real number >= 0 that Ray can hold as a float (not NaN, not inf)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        return False
    try:
        return math.isfinite(float(value)) and value >= 0
    except OverflowError:
        return False


def _normalize_bundle(resources: Any, where: str) -> dict[str, float]:
    if not isinstance(resources, dict):
        raise TypeError(f"{where}: resources must be a dict, got {type(resources).__name__}")
    bundle: dict[str, float] = {}
    for key, value in resources.items():
        if not isinstance(key, str):
            raise TypeError(f"{where}: resource names must be strings, got {key!r}")
        if not _is_amount(value):
            raise ValueError(
                f"{where}: resource {key!r} must be a number >= 0 and finite, got {value!r}"
            )
        name = key.upper() if key.lower() in ("cpu", "gpu") else key
        if value:
            bundle[name] = float(value)
    return bundle


@dataclass(frozen=True)
class ResourceRequest:
    """What one trial actor asks Ray for; equal requests share reusable actors."""

    bundles: tuple[tuple[tuple[str, float], ...], ...]
    strategy: str = "PACK"

    @property
    def head(self) -> dict[str, float]:
        return dict(self.bundles[0])

    @property
    def uses_placement_group(self) -> bool:
        return len(self.bundles) > 1

    def total(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for bundle in self.bundles:
            for key, value in bundle:
                total[key] = total.get(key, 0) + value
        return total

    def actor_options(self) -> dict[str, Any]:
        head = self.head
        options: dict[str, Any] = {
            "num_cpus": head.pop("CPU", 0),
            "num_gpus": head.pop("GPU", 0),
        }
        memory = head.pop("memory", None)
        if memory:
            options["memory"] = memory
        if head:
            options["resources"] = head
        return options

    def describe(self) -> str:
        parts = [f"{value:g} {key}" for key, value in sorted(self.total().items())]
        return ", ".join(parts) or "no resources"


DEFAULT_REQUEST = ResourceRequest(bundles=((("CPU", 1.0),),))


def to_request(resources: Any, where: str = "trial resources") -> ResourceRequest:
    if resources is None:
        return DEFAULT_REQUEST
    if isinstance(resources, ResourceRequest):
        return resources
    if isinstance(resources, PlacementGroupFactory):
        bundles = tuple(tuple(sorted(b.items())) for b in resources.bundles)
        return ResourceRequest(bundles=bundles, strategy=resources.strategy)
    bundle = _normalize_bundle(resources, where)
    return ResourceRequest(bundles=(tuple(sorted(bundle.items())),))


def with_resources(trainable: Any, resources: Any) -> Any:
    """A copy of `trainable` that asks for `resources` (a dict, a PlacementGroupFactory, or a
    function of the config returning either); the original is left unchanged."""
    if not callable(resources) or isinstance(resources, PlacementGroupFactory):
        to_request(resources, "with_resources")
    if isinstance(trainable, type):
        wrapped = type(trainable.__name__, (trainable,), {"_rtune_resources": resources})
        wrapped.__module__ = trainable.__module__
        wrapped.__qualname__ = trainable.__qualname__
        return wrapped

    @functools.wraps(trainable)
    def wrapped_fn(*args, **kwargs):
        return trainable(*args, **kwargs)

    wrapped_fn._rtune_resources = resources  # type: ignore[attr-defined]
    return wrapped_fn


def resources_for(trainable: Any, config: dict) -> ResourceRequest:
    resources = getattr(trainable, "_rtune_resources", None)
    if resources is None and hasattr(trainable, "default_resource_request"):
        resources = trainable.default_resource_request
    return request_for(resources, config)


def request_for(resources: Any, config: dict) -> ResourceRequest:
    """A trial's request from what `with_resources` was given (maybe a function of the config)."""
    if callable(resources) and not isinstance(resources, PlacementGroupFactory):
        resources = resources(config)
    return to_request(resources)


def can_ever_fit(request: ResourceRequest, node_totals: list[dict[str, float]]) -> bool:
    """Whether some node could host the trial actor's bundle (placement groups are Ray's call)."""
    need: Callable[[dict[str, float]], bool] = lambda node: all(  # noqa: E731
        node.get(key, 0) >= value for key, value in request.head.items()
    )
    return any(need(node) for node in node_totals)


def static_request(resources: Any) -> ResourceRequest | None:
    """The request every trial makes, when it does not depend on the trial's config."""
    if callable(resources) and not isinstance(resources, PlacementGroupFactory):
        return None
    return request_for(resources, {})


def actors_that_fit(request: ResourceRequest, resources: dict[str, float], at_most: int) -> int:
    """How many actors of this request `resources` hold, up to `at_most` (all of them, for a
    request of nothing)."""
    needed = request.total().items()
    return min([int(resources.get(key, 0) // value) for key, value in needed if value] + [at_most])
