"""The class API (`Trainable`), `with_parameters`, and how rtune tells trainable kinds apart."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import pickle
import tempfile
import time
from typing import Any

_DICT_CHECKPOINT = "_rtune_dict_checkpoint.pkl"


class Trainable:
    """Ray Tune's class API: override `setup`, `step`, `save_checkpoint`, `load_checkpoint`.

    rtune calls `step()` once per iteration; a returned dict is one result. `self.iteration` counts
    completed iterations, across restores.
    """

    def __init__(self, config: dict | None = None, **parameters: Any):
        self.config = dict(config or {})
        self._iteration = 0
        # known in setup(), as in Ray Tune, when rtune runs it as a trial (blank when made by hand)
        self.trial_id, self.trial_name, self.logdir = _running_trial()
        self.setup(dict(self.config), **parameters)

    @property
    def iteration(self) -> int:
        return self._iteration

    @property
    def training_iteration(self) -> int:
        return self._iteration

    def setup(self, config: dict, **parameters: Any) -> None:
        pass

    def step(self) -> dict:
        raise NotImplementedError(f"{type(self).__name__} must implement step()")

    def save_checkpoint(self, checkpoint_dir: str) -> dict | None:
        return None

    def load_checkpoint(self, checkpoint: Any) -> None:
        pass

    def cleanup(self) -> None:
        pass

    def reset_config(self, new_config: dict) -> bool:
        """Return True after adapting to `new_config` so rtune may reuse this instance."""
        return False

    @classmethod
    def default_resource_request(cls, config: dict) -> Any:
        return None

    # Driving an instance by hand, as Ray Tune users test a Trainable (rtune's trial actor calls
    # step() itself and does not use these).

    def train(self) -> dict:
        """One iteration: `step()`'s result with training_iteration, done and times filled in."""
        started = time.monotonic()
        metrics = self.step()
        if not isinstance(metrics, dict):
            raise TypeError(f"{type(self).__name__}.step() must return a dict, got {metrics!r}")
        self._iteration += 1
        took = time.monotonic() - started
        self._time_total = getattr(self, "_time_total", 0.0) + took
        return {
            "done": False,
            "time_this_iter_s": took,
            **metrics,
            "training_iteration": self._iteration,
            "time_total_s": self._time_total,
            "trial_id": self.trial_id,
        }

    def save(self, checkpoint_dir: str | None = None) -> SavedCheckpoint:
        """`save_checkpoint()` into `checkpoint_dir` (a new temporary directory by default); the
        checkpoint with the iteration it holds, which `restore()` takes back (Ray Tune's save()
        returns such a checkpoint-and-metrics pair too)."""
        from rtune.checkpoint import Checkpoint

        directory = checkpoint_dir or tempfile.mkdtemp(prefix="rtune_save_")
        os.makedirs(directory, exist_ok=True)
        save_class_checkpoint(self, directory)
        metrics = {
            "training_iteration": self._iteration,
            "time_total_s": getattr(self, "_time_total", 0.0),
        }
        return SavedCheckpoint(Checkpoint.from_directory(directory), metrics)

    def restore(self, checkpoint: Any) -> None:
        """Load what `save()` returned, a `Checkpoint`, or a checkpoint directory's path."""
        from rtune.checkpoint import Checkpoint

        metrics: dict = {}
        if isinstance(checkpoint, SavedCheckpoint):
            checkpoint, metrics = checkpoint.checkpoint, checkpoint.metrics
        elif isinstance(checkpoint, (str, os.PathLike)):
            checkpoint = Checkpoint.from_directory(checkpoint)
        if not isinstance(checkpoint, Checkpoint):
            raise TypeError(
                f"{type(self).__name__}.restore() takes what save() returned, a Checkpoint or a "
                f"directory path, got {type(checkpoint).__name__}"
            )
        self._iteration = metrics.get("training_iteration", 0)
        self._time_total = metrics.get("time_total_s", 0.0)
        with checkpoint.as_directory() as directory:
            load_class_checkpoint(self, directory)

    def stop(self) -> None:
        """Release the instance: calls `cleanup()`."""
        self.cleanup()


@dataclasses.dataclass
class SavedCheckpoint:
    """What `Trainable.save()` returns: the checkpoint and the metrics it was saved with."""

    checkpoint: Any
    metrics: dict


def save_class_checkpoint(trainable: Trainable, checkpoint_dir: str) -> None:
    saved = trainable.save_checkpoint(checkpoint_dir)
    if isinstance(saved, dict):
        with open(os.path.join(checkpoint_dir, _DICT_CHECKPOINT), "wb") as out:
            pickle.dump(saved, out)


def load_class_checkpoint(trainable: Trainable, checkpoint_dir: str) -> None:
    dict_path = os.path.join(checkpoint_dir, _DICT_CHECKPOINT)
    if os.path.exists(dict_path):
        with open(dict_path, "rb") as src:
            trainable.load_checkpoint(pickle.load(src))
    else:
        trainable.load_checkpoint(checkpoint_dir)


def is_class_trainable(trainable: Any) -> bool:
    return isinstance(trainable, type) and issubclass(trainable, Trainable)


def validate_trainable(trainable: Any) -> None:
    if isinstance(trainable, type):
        if not issubclass(trainable, Trainable):
            raise TypeError(
                f"Trainable class {trainable.__name__} must subclass rtune.Trainable "
                "(or pass a function that takes a config dict)"
            )
        return
    if isinstance(trainable, str):
        raise TypeError(
            f"rtune does not look trainables up by name ({trainable!r}); pass the function or class"
        )
    if not callable(trainable):
        raise TypeError(
            f"trainable must be a function or an rtune.Trainable subclass, "
            f"got {type(trainable).__name__}"
        )
    try:
        params = inspect.signature(trainable).parameters
    except (TypeError, ValueError):
        return
    positional = [
        p
        for p in params.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if len(positional) > 1 + len(getattr(trainable, "_rtune_parameters", {})):
        raise TypeError(
            f"trainable function {trainable_name(trainable)} must take one argument (config); "
            f"it takes {[p.name for p in positional]}"
        )


def validate_checkpoint_config(trainable: Any, checkpoint_config: Any) -> None:
    """rtune saves a class trainable by `checkpoint_frequency` / `checkpoint_at_end`; a function
    checkpoints itself through `tune.report(checkpoint=...)`, so asking rtune to is a mistake (Ray
    Tune refuses it too) and would otherwise be silently ignored."""
    if checkpoint_config is None or is_class_trainable(trainable):
        return
    asked = [
        f"{name}={getattr(checkpoint_config, name)!r}"
        for name in ("checkpoint_frequency", "checkpoint_at_end")
        if getattr(checkpoint_config, name)
    ]
    if asked:
        raise ValueError(
            f"CheckpointConfig({', '.join(asked)}) applies to Trainable classes only; the function "
            f"trainable {trainable_name(trainable)} saves its own checkpoints with "
            "tune.report(metrics, checkpoint=...): remove the option"
        )


def trainable_name(trainable: Any) -> str:
    name = getattr(trainable, "__name__", None) or type(trainable).__name__
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "trainable"


def with_parameters(trainable: Any, **parameters: Any) -> Any:
    """Pass large objects through the Ray object store once, not with every trial's config."""
    import ray

    refs = {name: ray.put(value) for name, value in parameters.items()}
    if isinstance(trainable, type):
        wrapped = type(trainable.__name__, (trainable,), {"_rtune_parameters": refs})
        wrapped.__module__ = trainable.__module__
        return wrapped

    @functools.wraps(trainable)
    def wrapped_fn(config, **kwargs):
        return trainable(config, **kwargs)

    wrapped_fn._rtune_parameters = refs  # type: ignore[attr-defined]
    return wrapped_fn


def _running_trial() -> tuple[str, str, str]:
    """(trial_id, trial_name, logdir) of the trial this process runs now, or blanks."""
    from rtune._execution import session

    current = session._current
    if current is None:
        return "", "", ""
    spec = current.spec
    return spec.trial_id, spec.trial_name, spec.storage.uri(spec.trial_relpath)
