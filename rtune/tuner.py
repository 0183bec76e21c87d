"""`Tuner`: the API of an experiment, and what outlives one run of it.

`Tuner(...)` validates everything before any work starts and writes the experiment metadata;
`Tuner.restore` reads an experiment back. `fit()` hands the run to `rtune._driver.fit_loop`, which
starts the controller actor, forwards stop signals to it, prints the status block, and returns a
`ResultGrid`.
"""

from __future__ import annotations

import datetime
import os
import secrets
import time
import warnings
from typing import TYPE_CHECKING, Any

import cloudpickle

from rtune import _settings
from rtune._config import DEFAULT_STORAGE_PATH, RunConfig, TuneConfig
from rtune._driver.fit_loop import FitLoop
from rtune._durable import state as state_io
from rtune._durable.storage import Storage
from rtune._durable.trial import Trial
from rtune._execution.resources import resources_for
from rtune.result_grid import ResultGrid
from rtune.schedulers import FIFOScheduler
from rtune.search import BasicVariantGenerator, ConcurrencyLimiter, Searcher
from rtune.stopper import make_stopper
from rtune.trainable import trainable_name, validate_checkpoint_config, validate_trainable

if TYPE_CHECKING:
    from rtune._durable.restore import RestorePayload


class Tuner:
    def __init__(
        self,
        trainable: Any = None,
        *,
        param_space: dict | None = None,
        tune_config: TuneConfig | None = None,
        run_config: RunConfig | None = None,
        _restored: RestorePayload | None = None,
    ):
        if trainable is None:
            raise TypeError(
                "Tuner needs a trainable: a function taking a config, or a Trainable class"
            )
        validate_trainable(trainable)
        self.trainable = trainable
        self.param_space = {} if param_space is None else param_space
        if not isinstance(self.param_space, dict):
            raise TypeError(f"param_space must be a dict, got {type(self.param_space).__name__}")
        self.tune_config = TuneConfig() if tune_config is None else tune_config
        self.run_config = RunConfig() if run_config is None else run_config
        if not isinstance(self.tune_config, TuneConfig):
            raise TypeError(
                f"tune_config must be a rtune.TuneConfig, got {type(tune_config).__name__}"
            )
        if not isinstance(self.run_config, RunConfig):
            raise TypeError(
                f"run_config must be a rtune.RunConfig, got {type(run_config).__name__}"
            )
        self.tune_config.validate()
        self.run_config.validate()
        validate_checkpoint_config(trainable, self.run_config.checkpoint_config)
        self._stopper = make_stopper(self.run_config.stop)
        self._restored = _restored
        self._searcher = self._make_searcher()
        self._scheduler = self.tune_config.scheduler or FIFOScheduler()
        tc = self.tune_config
        if not self._scheduler.set_search_properties(tc.metric, tc.mode, config=self.param_space):
            raise ValueError(
                f"{type(self._scheduler).__name__} has a metric or mode of its own that differs "
                f"from TuneConfig(metric={tc.metric!r}, mode={tc.mode!r}): set them in one place"
            )
        self._check_resources()
        self._result_grid: ResultGrid | None = None
        self.last_run_stats: dict | None = None
        self._warned = self._events = 0
        self._fresh_metadata: dict | None = None
        if _restored is None:
            self._write_first_metadata()

    def _write_first_metadata(self) -> None:
        """Write the new experiment's metadata now, so `Tuner.can_restore` holds before `fit()`
        and a driver killed while `fit()` starts up leaves a restorable experiment. Only where
        none is written yet: a live run's (or an earlier run's) is never replaced here; `fit()`
        writes it after checking that it is the experiment's one writer."""
        trainable = _pickled_trainable(self.trainable)  # refused before anything else
        self._pending_demand()  # bad input is refused before anything is written
        storage = self._storage()
        metadata = self._metadata(trainable)
        if not any(storage.exists(name) for name in state_io.METADATA_FILES):
            storage.makedirs()
            state_io.write_metadata(storage, metadata)

    def _make_searcher(self) -> Searcher:
        tc = self.tune_config
        if tc.search_alg is None:
            return BasicVariantGenerator(
                param_space=self.param_space, num_samples=max(tc.num_samples, 1), seed=tc.seed
            )
        if not isinstance(tc.search_alg, Searcher):
            raise TypeError(
                "TuneConfig.search_alg must be a rtune Searcher, "
                f"got {type(tc.search_alg).__name__}"
            )
        searcher = tc.search_alg
        # Ray Tune's BasicVariantGenerator takes the number of samples from TuneConfig
        spec = {}
        if isinstance(searcher, BasicVariantGenerator):
            spec["num_samples"] = tc.num_samples
        if not searcher.set_search_properties(tc.metric, tc.mode, self.param_space, **spec):
            raise ValueError(
                f"{type(searcher).__name__} has a search space of its own and param_space holds "
                "search parameters too: define them in one place (param_space may still hold "
                "constants)"
            )
        searcher._check_num_samples(tc.num_samples)
        limit = tc.max_concurrent_trials
        # as Ray Tune: a searcher that does not limit itself is asked for a config only when a
        # trial may start, so it suggests knowing the results of all the trials before
        if (
            limit
            and not isinstance(searcher, (BasicVariantGenerator, ConcurrencyLimiter))
            and not searcher.set_max_concurrency(limit)
        ):
            return ConcurrencyLimiter(searcher, max_concurrent=limit)
        return searcher

    def _check_resources(self) -> None:
        """A malformed resource request is a user error to report now, not from inside a trial."""
        if not callable(getattr(self.trainable, "_rtune_resources", None)):
            resources_for(self.trainable, {})

    # ---- storage ----

    def _storage(self) -> Storage:
        """The experiment's storage, retrying for the run's window: its RunConfig's (a restored
        run's is the stored one), else the environment's."""
        rc = self.run_config
        if self._restored is not None:
            storage = self._restored.storage
        else:
            base = rc.storage_path or _settings.storage_path() or DEFAULT_STORAGE_PATH
            if rc.name is None:
                stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
                rc.name = f"{trainable_name(self.trainable)}_{stamp}"
            storage = Storage.at(base, rc.storage_filesystem).child(rc.name)
        storage.retry_s = _settings.storage_retry_s(rc.storage_retry_s)
        return storage

    def _pending_demand(self) -> int:
        """RunConfig.max_pending_trials (a restored run's is the stored one), else
        RTUNE_MAX_PENDING_TRIALS: see rtune/_settings.py."""
        return _settings.max_pending_trials(self.run_config.max_pending_trials)

    def _metadata(self, trainable: bytes | None = None) -> dict:
        """Each user object is pickled on its own, so restore can read the rest even when one of
        them (say, the trainable's module) cannot be loaded any more. Made once: `Tuner(...)` and
        its `fit()` write the same experiment (one uid, one name). `trainable`: already pickled."""
        if self._fresh_metadata is not None:
            return self._fresh_metadata
        run_config = RunConfig(**{**self.run_config.__dict__, "storage_filesystem": None})
        metadata = {
            "trainable_name": trainable_name(self.trainable),
            "experiment_uid": secrets.token_hex(3)[:5],
            "created": time.time(),
            "trainable": trainable or _pickled_trainable(self.trainable),
            "param_space": cloudpickle.dumps(self.param_space),
            "tune_config": cloudpickle.dumps(self.tune_config),
            "run_config": cloudpickle.dumps(run_config),
        }
        self._fresh_metadata = metadata
        return metadata

    @classmethod
    def restore(
        cls,
        path: str | os.PathLike,
        trainable: Any = None,
        resume_unfinished: bool = True,
        resume_errored: bool = False,
        restart_errored: bool = False,
        param_space: dict | None = None,
        storage_filesystem: Any = None,
        _resume_config: Any = None,
    ) -> Tuner:
        """A Tuner that continues the experiment at `path`; call `fit()` on it.

        The trainable and param_space are read from the experiment when not given. Only trusted
        paths: restoring unpickles code stored in the experiment directory. `_resume_config` is
        Ray Tune's (private) finer-grained resume control: accepted so a Ray Tune script runs,
        with a warning, and ignored; the three flags decide."""
        from rtune._durable.restore import RestoreFlags, prepare_restore

        if _resume_config is not None:
            warnings.warn(
                "Tuner.restore: rtune does not support Ray Tune's _resume_config and ignores it; "
                "use resume_unfinished, resume_errored and restart_errored",
                UserWarning,
                stacklevel=2,
            )

        flags = RestoreFlags(resume_unfinished, resume_errored, restart_errored)
        restored = prepare_restore(path, storage_filesystem, trainable, param_space, flags)
        tuner = cls(
            restored.trainable,
            param_space=restored.param_space,
            tune_config=restored.tune_config,
            run_config=restored.run_config,
            _restored=restored,
        )
        tuner._continue_from_state()
        return tuner

    @classmethod
    def can_restore(cls, path: str | os.PathLike, storage_filesystem: Any = None) -> bool:
        """Whether `path` holds an rtune experiment (its metadata, from `Tuner(...)` on).

        Damage is not judged here: a damaged experiment is still one, and `Tuner.restore` then
        recovers it or says what is wrong, where False would let a script's fresh `Tuner` run
        over it. False only when the path or its metadata does not exist."""
        from rtune._durable.restore import open_experiment

        try:
            open_experiment(path, storage_filesystem)
        except (FileNotFoundError, ValueError):
            return False
        return True

    def _continue_from_state(self) -> None:
        state = self._restored.state if self._restored is not None else None
        if not state:
            return
        self._searcher.set_state(state_io.unpack(state["searcher"]))
        if self._restored.param_space_given and isinstance(self._searcher, BasicVariantGenerator):
            self._searcher.refresh_space(self.param_space)
        self._scheduler.set_state(state_io.unpack(state["scheduler"]))
        stopper = state_io.unpack(state["stopper"])
        if stopper is not None:
            self._stopper = stopper

    # ---- fit ----

    def fit(self) -> ResultGrid:
        """Run the experiment (rtune/_driver/fit_loop.py). The grid is kept even when the run
        ends by raising (fail_fast="raise", a trial's error), for `get_results()`."""
        pending_demand = self._pending_demand()  # bad input fails here, before anything is written
        storage = self._storage()
        loop = FitLoop(
            self.trainable,
            self.tune_config,
            self.run_config,
            self._searcher,
            self._scheduler,
            self._stopper,
            self._restored,
            None if self._restored is not None else self._metadata(),
            param_space=self.param_space,
        )
        try:
            return loop.run(storage, pending_demand)
        finally:
            if loop.result_grid is not None:
                self._result_grid = loop.result_grid
                self.last_run_stats = loop.run_stats

    def get_results(self) -> ResultGrid:
        """The last fit()'s results; on a restored Tuner before fit(), the experiment's results as
        its storage holds them (so `Tuner.restore(path).get_results()` reads an experiment from
        any machine, without running anything)."""
        if self._result_grid is not None:
            return self._result_grid
        if self._restored is None:
            raise RuntimeError("get_results() needs a finished fit(); call fit() first")
        state = self._restored.state or {"trials": []}
        trials = [Trial.from_state(t) for t in state["trials"]]
        tc = self.tune_config
        return ResultGrid(
            trials, self._restored.storage, tc.metric, tc.mode, self.run_config.checkpoint_config
        )


def _pickled_trainable(trainable: Any) -> bytes:
    """Trial actors get the trainable pickled: one that cannot be is refused at `Tuner(...)`,
    where the metadata pickles it (once)."""
    try:
        return cloudpickle.dumps(trainable)
    except Exception as exc:
        raise TypeError(
            f"The trainable {trainable_name(trainable)} cannot be pickled, so it cannot be sent "
            f"to trial actors: {type(exc).__name__}: {exc}"
        ) from exc
