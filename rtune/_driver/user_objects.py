"""The searcher, scheduler and stopper run in the controller on copies; when `fit()` ends their
final state is put back into the objects the user passed (as in Ray Tune, where they run in the
driver), so a user's references see a stopper's counts or a searcher's history."""

from __future__ import annotations

import sys
from typing import Any

from rtune._durable import state as state_io
from rtune.stopper import Stopper


def take_back_user_objects(
    packed: dict, searcher: Any, scheduler: Any, stopper: Any, callbacks: list | None = None
) -> None:
    """`packed`: the controller's copies, pickled; done before fit() returns or raises. An object
    that cannot take its state back is warned about: the results matter more."""
    for key, target in (
        ("searcher", searcher),
        ("scheduler", scheduler),
        ("stopper", stopper),
        ("callbacks", callbacks),
    ):
        if key not in packed or target is None:
            continue
        try:
            final = state_io.unpack(packed[key])
            if key == "stopper":
                _adopt_stopper(target, final)
            elif key == "callbacks":
                for mine, theirs in zip(target, final):
                    _adopt_attributes(mine, theirs)
            else:
                target.set_state(final)
        except Exception as exc:  # the results matter more than the objects' state
            print(
                f"rtune: WARNING: the {key}'s final state could not be restored into "
                f"the object you passed: {exc}",
                file=sys.stderr,
                flush=True,
            )


def _adopt_stopper(target: Any, final: Any) -> None:
    """Make `target` (the user's stopper) hold the state of `final` (the controller's copy):
    its attributes, through __getstate__/__setstate__ where the class has them; stoppers it
    holds (a CombinedStopper's) are updated in place, so the user's references to them see it."""
    if not _same_class(target, final):
        return
    if "__setstate__" in dir(type(target)) and hasattr(final, "__getstate__"):
        state = final.__getstate__()
        if isinstance(state, dict):
            state = _keep_held_stoppers(vars(target), state)
        target.__setstate__(state)
        return
    target.__dict__.update(_keep_held_stoppers(vars(target), vars(final)))


def _adopt_attributes(target: Any, final: Any) -> None:
    """A callback: `target` takes the attributes of `final` (through __getstate__ and
    __setstate__ where its class has them)."""
    if not _same_class(target, final):
        return
    if hasattr(type(target), "__setstate__"):  # object has none: the class defines it
        target.__setstate__(final.__getstate__())
        return
    target.__dict__.update(vars(final))


def _same_class(a: Any, b: Any) -> bool:
    """By name: a class defined in the script (__main__) comes back from the controller as a
    copy of the class, not the class itself (its __qualname__ can differ: compare __name__)."""
    ta, tb = type(a), type(b)
    return ta is tb or (ta.__module__, ta.__name__) == (tb.__module__, tb.__name__)


def _keep_held_stoppers(old: dict, new: dict) -> dict:
    merged = dict(new)
    for key, value in new.items():
        before = old.get(key)
        if isinstance(before, Stopper) and _same_class(before, value):
            _adopt_stopper(before, value)
            merged[key] = before
        elif (
            isinstance(before, (list, tuple))
            and isinstance(value, (list, tuple))
            and len(before) == len(value)
            and all(isinstance(b, Stopper) and _same_class(b, v) for b, v in zip(before, value))
        ):
            for b, v in zip(before, value):
                _adopt_stopper(b, v)
            merged[key] = before
    return merged
