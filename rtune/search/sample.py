"""Search-space primitives with Ray Tune's names and signatures.

Every constructor validates its arguments when it is called, so a mistake in a param space is
reported with the function and the offending value before any trial runs. All randomness comes from
a `random.Random` passed to `Domain.sample`, whose state pickles: that is what lets a search be
resumed with exactly the configs it would have produced uninterrupted.
"""

from __future__ import annotations

import copy
import inspect
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from numbers import Integral, Real
from typing import Any


class Domain:
    """A value that is drawn anew for each trial."""

    def sample(self, rng: random.Random, spec: Any = None) -> Any:
        raise NotImplementedError


def _dec(value: float) -> Decimal:
    """The decimal of a number as written, so 0.7 / 0.1 is 7 and not 6.999..."""
    return Decimal(int(value)) if isinstance(value, Integral) else Decimal(repr(float(value)))


def _multiple_bounds(lower: float, upper: float, q: float) -> tuple[int, int]:
    """The smallest and largest k with lower <= k * q <= upper."""
    return math.ceil(_dec(lower) / _dec(q)), math.floor(_dec(upper) / _dec(q))


def _nearest_multiple(value: float, q: float, bounds: tuple[int, int] | None) -> int:
    """The k whose k * q is nearest to value, kept within bounds."""
    k = round(_dec(value) / _dec(q))
    return k if bounds is None else min(max(k, bounds[0]), bounds[1])


def _quantize(value: float, q: float, bounds: tuple[int, int] | None) -> float:
    """The nearest multiple of q within bounds, as 0.3 rather than 0.30000000000000004."""
    return float(_nearest_multiple(value, q, bounds) * _dec(q))


@dataclass(frozen=True)
class Float(Domain):
    """A float: uniform on [lower, upper), log-uniform when `base` is set, normal when `mean` is.

    With `q` the value is rounded to a multiple of q, so `upper` is reachable (as in Ray Tune).
    """

    lower: float | None = None
    upper: float | None = None
    base: float | None = None
    mean: float | None = None
    sd: float | None = None
    q: float | None = None

    def __post_init__(self) -> None:
        # uniform(), randn(), ... validate their arguments with their own names; this catches a
        # Float built directly (tune.search.Float(...)) before it samples out-of-range values
        fields = {k: v for k, v in self.__dict__.items() if v is not None}
        call = _call("Float", **fields)
        if self.mean is not None:
            _check_numbers(call, mean=self.mean)
            if self.lower is not None or self.upper is not None or self.base is not None:
                raise ValueError(f"{call}: a normal Float (mean) takes no lower, upper or base")
        else:
            if self.lower is None or self.upper is None:
                raise ValueError(f"{call}: lower and upper are required (or mean for a normal)")
            _check_numbers(call, lower=self.lower, upper=self.upper)
            _check_range(call, self.lower, self.upper, log=self.base is not None)
            if self.base is not None:
                _check_base(call, self.base)
        for key in ("sd", "q"):
            if fields.get(key) is not None:
                _check_numbers(call, **{key: fields[key]})
                _check_positive(call, **{key: fields[key]})
        if self.q is not None and self.mean is None:
            _check_has_multiple(call, self.lower, self.upper, self.q)

    def sample(self, rng: random.Random, spec: Any = None) -> float:
        if self.mean is not None:
            value = rng.gauss(self.mean, self.sd or 1.0)
            return value if self.q is None else _quantize(value, self.q, None)
        assert self.lower is not None and self.upper is not None
        if self.base is not None:
            low, high = math.log(self.lower, self.base), math.log(self.upper, self.base)
            value = self.base ** (low + (high - low) * rng.random())
        else:
            value = self.lower + (self.upper - self.lower) * rng.random()
        if self.q is not None:
            return _quantize(value, self.q, _multiple_bounds(self.lower, self.upper, self.q))
        return min(max(value, self.lower), math.nextafter(self.upper, -math.inf))


@dataclass(frozen=True)
class Integer(Domain):
    """An int in [lower, upper) (upper exclusive); log-uniform with `base`; a multiple of `q`."""

    lower: int
    upper: int
    base: float | None = None
    q: int | None = None

    def __post_init__(self) -> None:
        fields = {k: v for k, v in self.__dict__.items() if v is not None}
        call = _call("Integer", **fields)
        _check_numbers(call, integer=True, lower=self.lower, upper=self.upper)
        _check_range(call, self.lower, self.upper, log=self.base is not None)
        if self.base is not None:
            _check_base(call, self.base)
        if self.q is not None:
            _check_numbers(call, integer=True, q=self.q)
            _check_positive(call, q=self.q)
            _check_has_multiple(call, self.lower, self.upper - 1, self.q)

    def sample(self, rng: random.Random, spec: Any = None) -> int:
        last = self.upper - 1
        bounds = _multiple_bounds(self.lower, last, self.q) if self.q is not None else None
        if self.base is None:
            if bounds is not None and self.q is not None:
                return rng.randint(*bounds) * self.q
            return rng.randrange(self.lower, self.upper)
        low, high = math.log(self.lower, self.base), math.log(self.upper, self.base)
        value = self.base ** (low + (high - low) * rng.random())
        if bounds is not None and self.q is not None:
            return _nearest_multiple(value, self.q, bounds) * self.q
        return min(max(math.floor(value), self.lower), last)


@dataclass(frozen=True)
class Categorical(Domain):
    """One of `categories`, chosen uniformly; each trial gets its own copy of the chosen value."""

    categories: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.categories, (list, tuple)) or not self.categories:
            raise ValueError(
                f"Categorical(categories={self.categories!r}): categories must be a non-empty list"
            )

    def sample(self, rng: random.Random, spec: Any = None) -> Any:
        return copy.deepcopy(rng.choice(self.categories))


@dataclass(frozen=True)
class Function(Domain):
    """A value computed by a user function from the rest of the trial's config (`sample_from`)."""

    func: Callable[..., Any]

    def __post_init__(self) -> None:
        if not callable(self.func):
            raise TypeError(
                f"Function(func={self.func!r}): func must be callable, "
                f"got {type(self.func).__name__}"
            )

    def sample(self, rng: random.Random, spec: Any = None) -> Any:
        return self.func(spec) if _takes_argument(self.func) else self.func()


def _takes_argument(func: Callable[..., Any]) -> bool:
    """Ray Tune passes `spec`; a function declaring no parameters is called without it."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind not in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in params)


# --- validation ---


def _call(name: str, **kwargs: Any) -> str:
    return f"{name}(" + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")"


def _check_numbers(call: str, integer: bool = False, **values: Any) -> None:
    kind = "an integer" if integer else "a real number"
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, Real):
            raise TypeError(f"{call}: {key} must be {kind}, got {type(value).__name__}")
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an int (or Fraction) beyond float range
            raise ValueError(f"{call}: {key} is too large (it must fit in a float)") from None
        if not finite:
            raise ValueError(f"{call}: {key} must be finite, got {value!r}")
        if integer and not (isinstance(value, Integral) or float(value).is_integer()):
            raise ValueError(f"{call}: {key} must be an integer, got {value!r}")


def _check_range(call: str, lower: float, upper: float, log: bool = False) -> None:
    if not lower < upper:
        raise ValueError(f"{call}: lower must be less than upper")
    if log and lower <= 0:
        raise ValueError(f"{call}: lower must be greater than 0 for a log-scale domain")


def _check_positive(call: str, **values: float) -> None:
    for key, value in values.items():
        if value <= 0:
            raise ValueError(f"{call}: {key} must be greater than 0")


def _check_base(call: str, base: Any) -> None:
    _check_numbers(call, base=base)
    if base <= 0 or base == 1:
        raise ValueError(f"{call}: base must be greater than 0 and not 1")


def _check_has_multiple(call: str, lower: float, upper: float, q: float) -> None:
    low, high = _multiple_bounds(lower, upper, q)
    if low > high:
        raise ValueError(f"{call}: no multiple of q lies between lower and upper")


# --- constructors (Ray Tune's public API) ---


def uniform(lower: float, upper: float) -> Float:
    """A float drawn uniformly from [lower, upper)."""
    call = _call("uniform", lower=lower, upper=upper)
    _check_numbers(call, lower=lower, upper=upper)
    _check_range(call, lower, upper)
    return Float(lower, upper)


def quniform(lower: float, upper: float, q: float) -> Float:
    """A uniform float rounded to a multiple of q; upper is inclusive."""
    call = _call("quniform", lower=lower, upper=upper, q=q)
    _check_numbers(call, lower=lower, upper=upper, q=q)
    _check_range(call, lower, upper)
    _check_positive(call, q=q)
    _check_has_multiple(call, lower, upper, q)
    return Float(lower, upper, q=q)


def loguniform(lower: float, upper: float, base: float = 10) -> Float:
    """A float whose logarithm is uniform: good for learning rates spanning decades."""
    call = _call("loguniform", lower=lower, upper=upper, base=base)
    _check_numbers(call, lower=lower, upper=upper)
    _check_range(call, lower, upper, log=True)
    _check_base(call, base)
    return Float(lower, upper, base=base)


def qloguniform(lower: float, upper: float, q: float, base: float = 10) -> Float:
    """A log-uniform float rounded to a multiple of q; upper is inclusive."""
    call = _call("qloguniform", lower=lower, upper=upper, q=q, base=base)
    _check_numbers(call, lower=lower, upper=upper, q=q)
    _check_range(call, lower, upper, log=True)
    _check_positive(call, q=q)
    _check_base(call, base)
    _check_has_multiple(call, lower, upper, q)
    return Float(lower, upper, base=base, q=q)


def _integers(name: str, lower: Any, upper: Any, **extra: Any) -> tuple[str, int, int]:
    call = _call(name, lower=lower, upper=upper, **extra)
    _check_numbers(call, integer=True, lower=lower, upper=upper)
    if "q" in extra:
        _check_numbers(call, integer=True, q=extra["q"])
        _check_positive(call, q=extra["q"])
    if "base" in extra:
        _check_base(call, extra["base"])
    _check_range(call, lower, upper, log="base" in extra)
    return call, int(lower), int(upper)


def randint(lower: int, upper: int) -> Integer:
    """An int drawn uniformly from [lower, upper): upper is exclusive, like `range`."""
    _, lower, upper = _integers("randint", lower, upper)
    return Integer(lower, upper)


def qrandint(lower: int, upper: int, q: int = 1) -> Integer:
    """A multiple of q drawn uniformly from [lower, upper]: upper is inclusive, as in Ray Tune."""
    call, lower, upper = _integers("qrandint", lower, upper, q=q)
    _check_has_multiple(call, lower, upper, q)
    return Integer(lower, upper + 1, q=int(q))


def lograndint(lower: int, upper: int, base: float = 10) -> Integer:
    """An int in [lower, upper) whose logarithm is uniform; upper is exclusive."""
    _, lower, upper = _integers("lograndint", lower, upper, base=base)
    return Integer(lower, upper, base=base)


def qlograndint(lower: int, upper: int, q: int, base: float = 10) -> Integer:
    """A log-uniform int rounded to a multiple of q; upper is inclusive, as in Ray Tune."""
    call, lower, upper = _integers("qlograndint", lower, upper, q=q, base=base)
    _check_has_multiple(call, lower, upper, q)
    return Integer(lower, upper + 1, base=base, q=int(q))


def randn(mean: float = 0.0, sd: float = 1.0) -> Float:
    """A float drawn from a normal distribution."""
    call = _call("randn", mean=mean, sd=sd)
    _check_numbers(call, mean=mean, sd=sd)
    _check_positive(call, sd=sd)
    return Float(mean=mean, sd=sd)


def qrandn(mean: float, sd: float, q: float) -> Float:
    """A normal float rounded to a multiple of q."""
    call = _call("qrandn", mean=mean, sd=sd, q=q)
    _check_numbers(call, mean=mean, sd=sd, q=q)
    _check_positive(call, sd=sd, q=q)
    return Float(mean=mean, sd=sd, q=q)


def choice(categories: list[Any] | tuple[Any, ...]) -> Categorical:
    """One of `categories`, chosen uniformly at random for each trial."""
    if not isinstance(categories, (list, tuple)) or not categories:
        raise ValueError(f"choice(categories={categories!r}): categories must be a non-empty list")
    return Categorical(tuple(categories))


def sample_from(func: Callable[..., Any]) -> Function:
    """A value computed by `func(spec)`; `spec.config` holds the trial's other resolved values."""
    if not callable(func):
        raise TypeError(
            f"sample_from(func={func!r}): func must be callable, got {type(func).__name__}"
        )
    return Function(func)


def grid_search(values: list[Any] | tuple[Any, ...]) -> dict[str, list[Any]]:
    """Try every value: one trial per value (per sample), combined with the other grid keys."""
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"grid_search(values={values!r}): values must be a non-empty list")
    return {"grid_search": list(values)}
