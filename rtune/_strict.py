"""Misspelled keyword arguments are refused with the valid names, across the public API.

Python already refuses an unknown keyword, but names only the argument; a Ray Tune user with a
typo (`resume_errrored=True`) wants the valid names and the one meant. The check costs nothing on a
good call: the signature is read only once the call has failed with a TypeError.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable
from typing import Any

_WRAPPED = "__rtune_strict__"


def _accepted(func: Callable) -> tuple[list[str], bool]:
    """The keyword names `func` takes, and whether it takes any (**kwargs)."""
    params = list(inspect.signature(func).parameters.values())
    names = [
        p.name
        for p in params
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in ("self", "cls")
    ]
    return names, any(p.kind == p.VAR_KEYWORD for p in params)


def unknown_keyword_error(where: str, unknown: list[str], valid: list[str]) -> TypeError:
    """The error for keywords `where` does not take: each one, a close match, the valid names."""
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, valid, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    public = [name for name in valid if not name.startswith("_")]  # private: accepted, unlisted
    shown = ", ".join(public) if public else "none"
    return TypeError(
        f"{where}() got an unexpected keyword argument {', '.join(parts)}; "
        f"its keyword arguments are: {shown}"
    )


def strict(func: Callable, where: str | None = None) -> Callable:
    """`func`, refusing an unknown keyword with the valid names (a no-op for **kwargs)."""
    if getattr(func, _WRAPPED, False):
        return func
    valid, takes_any = _accepted(func)
    if takes_any:
        return func
    label = where or func.__qualname__

    @functools.wraps(func)
    def checked(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except TypeError:
            unknown = [name for name in kwargs if name not in valid]
            if unknown:
                raise unknown_keyword_error(label, unknown, valid) from None
            raise

    setattr(checked, _WRAPPED, True)
    return checked


def strict_class(cls: type, methods: bool = True) -> type:
    """Make `cls`'s constructor (and, with `methods`, its own public methods) strict, in place.

    Base classes users subclass for hooks called per result (stoppers, searchers, schedulers,
    Trainable) only get the constructor: a wrapper there would sit on the hot path."""
    if "__init__" in cls.__dict__:
        cls.__init__ = strict(cls.__dict__["__init__"], cls.__name__)  # type: ignore[misc]
    elif cls.__init__ is object.__init__:  # Python's message would not even name the keyword

        def __init__(self: Any) -> None:
            pass

        cls.__init__ = strict(__init__, cls.__name__)  # type: ignore[misc]
    if not methods:
        return cls
    for name, member in list(cls.__dict__.items()):
        if name.startswith("_"):
            continue
        label = f"{cls.__name__}.{name}"
        if isinstance(member, classmethod):
            setattr(cls, name, classmethod(strict(member.__func__, label)))
        elif isinstance(member, staticmethod):
            setattr(cls, name, staticmethod(strict(member.__func__, label)))
        elif inspect.isfunction(member):
            setattr(cls, name, strict(member, label))
    return cls


# classes a user subclasses, whose methods rtune calls (some per result): constructor only
_HOOK_BASES = ("Trainable", "Stopper", "Searcher", "TrialScheduler")


def strict_api(namespace: dict, names: list[str]) -> None:
    """Apply the check to each public name of the package: functions are replaced in
    `namespace`, classes are changed in place."""
    for name in names:
        obj = namespace[name]
        if isinstance(obj, type):
            hooks = any(
                base.__name__ in _HOOK_BASES and base.__module__.startswith("rtune")
                for base in obj.__mro__
            )
            strict_class(obj, methods=not hooks)
        elif inspect.isfunction(obj) and not getattr(obj, _WRAPPED, False):
            checked = strict(obj, name)
            if checked is not obj:
                # pickled by reference as `rtune.<name>` (the original's module holds the
                # unwrapped function, so pickle would refuse the wrapper as "not the same object")
                checked.__module__, checked.__qualname__ = namespace["__name__"], name
            namespace[name] = checked
