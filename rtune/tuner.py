"""`Tuner`: the driver side of an experiment.

`fit()` validates everything before any work starts, writes the experiment metadata, starts the
controller actor, forwards stop signals to it, prints the status block, and returns a `ResultGrid`.
"""

from __future__ import annotations

import datetime
import os
import secrets
import sys
import time
import warnings
from typing import Any

import cloudpickle
import ray
from ray.exceptions import RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from rtune import _settings
from rtune._config import DEFAULT_STORAGE_PATH, RunConfig, TuneConfig
from rtune._driver.first_trials import (
    FirstTrials,
    await_first_trials,
    first_trial_actors,
    start_first_trials,
)
from rtune._driver.progress import format_status
from rtune._driver.signals import StopRequests, forward_stop_signals
from rtune._durable import lease as _lease
from rtune._durable import state as state_io
from rtune._durable.lease import LeaseKeeper
from rtune._durable.storage import Storage
from rtune._durable.trial import Trial
from rtune._execution.controller import ExperimentSetup, RemoteController
from rtune._execution.resources import resources_for
from rtune.control import (
    CONTROLLER_NAMESPACE,
    controller_name,
    local_cluster_address,
    posix_basename,
)
from rtune.result_grid import ResultGrid
from rtune.schedulers import FIFOScheduler
from rtune.search import BasicVariantGenerator, Searcher
from rtune.stopper import Stopper, make_stopper
from rtune.trainable import trainable_name, validate_checkpoint_config, validate_trainable

STATUS_INTERVAL_S = {1: 5.0, 2: 5.0, 3: 2.0}


def ensure_ray() -> None:
    """Use the Ray the process is connected to, else the cluster RAY_ADDRESS names or a live one
    `ray start` made on this machine; else start an embedded local Ray."""
    if ray.is_initialized():
        return
    address = _settings.ray_address() or _live_local_cluster()
    if address:
        ray.init(address=address)
    else:
        ray.init(address="local", include_dashboard=False)


def _cluster_id() -> str:
    try:  # private: nothing public names the cluster a process is connected to
        return ray._private.worker.global_worker.node.cluster_id.hex()
    except Exception:
        return ""


def _live_local_cluster() -> str | None:
    """The address in /tmp/ray/ray_current_cluster when a GCS still serves it. Ray's own lookup
    trusts that file, which a killed cluster leaves behind: joining it would hang."""
    address, alive = local_cluster_address()
    return address if alive else None


class Tuner:
    def __init__(
        self,
        trainable: Any = None,
        *,
        param_space: dict | None = None,
        tune_config: TuneConfig | None = None,
        run_config: RunConfig | None = None,
        _restored: dict | None = None,
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
        self._scheduler.set_search_properties(self.tune_config.metric, self.tune_config.mode)
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
                self.param_space, num_samples=max(tc.num_samples, 1), seed=tc.seed
            )
        if not isinstance(tc.search_alg, Searcher):
            raise TypeError(
                "TuneConfig.search_alg must be a rtune Searcher, "
                f"got {type(tc.search_alg).__name__}"
            )
        tc.search_alg.set_search_properties(tc.metric, tc.mode, self.param_space)
        return tc.search_alg

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
            storage = self._restored["storage"]
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
            restored.pop("trainable"),
            param_space=restored.pop("param_space"),
            tune_config=restored.pop("tune_config"),
            run_config=restored.pop("run_config"),
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
        state = (self._restored or {}).get("state")
        if not state:
            return
        self._searcher.set_state(state_io.unpack(state["searcher"]))
        if self._restored.get("param_space_given") and isinstance(
            self._searcher, BasicVariantGenerator
        ):
            self._searcher.refresh_space(self.param_space)
        self._scheduler.set_state(state_io.unpack(state["scheduler"]))
        stopper = state_io.unpack(state["stopper"])
        if stopper is not None:
            self._stopper = stopper

    # ---- fit ----

    def fit(self) -> ResultGrid:
        pending_demand = self._pending_demand()  # bad input fails here, before anything is written
        storage = self._storage()
        ensure_ray()
        name = controller_name(storage)
        lease = self._take_lease(name, storage)  # before anything is written
        try:
            return self._fit_holding(lease, name, storage, pending_demand)
        finally:
            lease.release()

    def _fit_holding(
        self, lease: LeaseKeeper, name: str, storage: Storage, pending_demand: int
    ) -> ResultGrid:
        storage.makedirs()
        if self._restored is None:
            metadata = self._metadata()
            self._new_uid = metadata["experiment_uid"]
            state_io.write_metadata(storage, metadata)
        setup = self._setup(storage, pending_demand)
        setup.lease = lease.record
        # asked for before the controller, so they come up together (Ray starts as many worker
        # processes at once as there are CPUs): a run of two trials starts both at once
        # a stop signal from here on drains: the first trials run before the controller exists
        with forward_stop_signals() as requests:
            first = start_first_trials(
                setup, first_trial_actors(setup, self._expected_trials(setup))
            )
            try:
                await_first_trials(first)
                controller = RemoteController.options(
                    name=name,
                    namespace=CONTROLLER_NAMESPACE,
                    lifetime=None,
                    # on the driver's node: a worker node's loss must cost trials, never the
                    # controller
                    scheduling_strategy=NodeAffinitySchedulingStrategy(
                        ray.get_runtime_context().get_node_id(), soft=False
                    ),
                ).remote(setup)
                lease.stop()  # the controller renews it from its start
                try:
                    summary = self._drive(controller, storage, first, requests)
                finally:
                    ray.kill(controller)
            finally:
                for actor in first.actors:  # the driver's own: gone with the controller too
                    ray.kill(actor)
        return self._finish(summary, storage)

    def _expected_trials(self, setup: ExperimentSetup) -> int | None:
        """How many trials are left to run, where that is known before the searcher runs."""
        unfinished = sum(1 for t in setup.restored_trials if t.status == "PENDING")
        if setup.searcher_finished:
            return unfinished
        total = getattr(self._searcher, "total_trials", None)
        if self._restored is None and isinstance(total, int):
            return total
        return None

    def _take_lease(self, name: str, storage: Storage) -> LeaseKeeper:
        """One writer per experiment (rtune/_durable/lease.py): refuse a live run's experiment,
        wait out a lease whose holder may be alive elsewhere, take over a dead holder's at once."""
        context = ray.get_runtime_context()
        cluster_id = _cluster_id()

        def controller_alive(held: _lease.LeaseRecord) -> bool | None:
            if not cluster_id or held.cluster_id != cluster_id:
                return None
            try:
                ray.get_actor(held.controller, namespace=CONTROLLER_NAMESPACE)
            except ValueError:
                return False
            return True

        mine = _lease.new_record(context.gcs_address, cluster_id, name)
        _lease.acquire(storage, mine, controller_alive)
        return LeaseKeeper(storage, mine).start()

    def _setup(self, storage: Storage, pending_demand: int) -> ExperimentSetup:
        restored = self._restored or {}
        uid = restored.get("experiment_uid") or self._new_uid
        trials: list[Trial] = restored.get("trials", [])
        return ExperimentSetup(
            storage=storage,
            experiment_name=posix_basename(storage.root),
            experiment_uid=uid,
            trainable_name=trainable_name(self.trainable),
            trainable_holder=[ray.put(self.trainable)],
            trainable_resources=_resources_of(self.trainable),
            searcher=self._searcher,
            scheduler=self._scheduler,
            stopper=self._stopper,
            metric=self.tune_config.metric,
            mode=self.tune_config.mode,
            max_concurrent_trials=self.tune_config.max_concurrent_trials,
            time_budget_s=self.tune_config.time_budget_s,
            reuse_actors=self.tune_config.reuse_actors,
            checkpoint_config=self.run_config.checkpoint_config,
            failure_config=self.run_config.failure_config,
            trial_name_creator=self.tune_config.trial_name_creator,
            trial_dirname_creator=self.tune_config.trial_dirname_creator,
            restored_trials=trials,
            max_trials=self.tune_config.num_samples
            if self.tune_config.search_alg is not None and self.tune_config.num_samples > 0
            else None,
            searcher_finished=restored.get("searcher_finished", False),
            known_trial_dirs=restored.get("known_trial_dirs", set()),
            state_seq=restored.get("state_seq", 0),
            state_file=restored.get("state_file", 0),
            restored_state_base=restored.get("restored_state_base"),
            pending_demand=pending_demand,
        )

    def _drive(
        self, controller: Any, storage: Storage, first: FirstTrials, requests: StopRequests
    ) -> dict:
        """Wait for the controller's run, forwarding stop signals (those received before it
        existed too) and showing its status."""
        interval = STATUS_INTERVAL_S.get(self.run_config.verbose)
        run_ref = controller.run.remote(first)
        forwarded = 0
        last_poll = last_print = time.monotonic()
        self._warned = self._events = 0
        while True:
            if len(requests.received) > forwarded:
                forwarded = len(requests.received)
                if requests.received.count("SIGINT") >= 3:
                    raise KeyboardInterrupt("third Ctrl+C: leaving without waiting")
                controller.request_stop.remote(force=requests.force)
            ready, _ = ray.wait([run_ref], timeout=0.1)
            if ready:
                return self._summary_of(run_ref, storage)
            if time.monotonic() - last_poll >= 1.0:
                last_poll = time.monotonic()
                show = bool(interval) and last_poll - last_print >= interval
                if show:
                    last_print = last_poll
                self._poll_status(controller, storage, show)

    def _summary_of(self, run_ref: Any, storage: Storage) -> dict:
        try:
            return ray.get(run_ref)
        except RayActorError as exc:
            raise RuntimeError(
                f"The rtune controller of the experiment at {storage.uri()} died ({exc}). "
                "Trials and checkpoints committed before that are in storage: resume with "
                f"Tuner.restore({storage.uri()!r})."
            ) from exc

    def _poll_status(self, controller: Any, storage: Storage, show: bool) -> None:
        try:
            status = ray.get(controller.status.remote(self._events, self._warned), timeout=5)
        except Exception:  # a slow or busy controller only delays the status block
            return
        self._print_news(status["events"], status["warnings"])
        if show:
            print(format_status(status, storage.uri(), ray.cluster_resources()), flush=True)

    def _print_news(self, events: list[str], warnings: list[str]) -> None:
        self._events += len(events)
        self._warned += len(warnings)
        if self.run_config.verbose >= 2:
            for event in events:
                print(f"rtune: {event}", flush=True)
        for warning in warnings:
            print(f"rtune: WARNING: {warning}", file=sys.stderr, flush=True)

    def _finish(self, summary: dict, storage: Storage) -> ResultGrid:
        tc = self.tune_config
        grid = ResultGrid(
            summary["trials"], storage, tc.metric, tc.mode, self.run_config.checkpoint_config
        )
        self._result_grid = grid
        # for benchmarks and the curious: time and bytes spent on experiment state
        self.last_run_stats = summary["run_stats"]
        final = summary["status"]
        self._take_back_user_objects(summary.get("user_objects", {}))
        self._print_news(summary["events"][self._events :], summary["warnings"][self._warned :])
        if self.run_config.verbose:
            print(format_status(final, storage.uri(), ray.cluster_resources()), flush=True)
        self._print_end(grid, summary, storage)
        if summary["fatal"] is not None:
            raise state_io.unpack(summary["fatal"])
        return grid

    def _take_back_user_objects(self, packed: dict) -> None:
        """The searcher, scheduler and stopper ran in the controller on copies: put their final
        state into the objects the user passed, before fit() returns or raises (as in Ray
        Tune, where they run in the driver)."""
        for key, target in (
            ("searcher", self._searcher),
            ("scheduler", self._scheduler),
            ("stopper", self._stopper),
        ):
            if key not in packed or target is None:
                continue
            try:
                final = state_io.unpack(packed[key])
                if key == "stopper":
                    _adopt_stopper(target, final)
                else:
                    target.set_state(final)
            except Exception as exc:  # the results matter more than the objects' state
                print(
                    f"rtune: WARNING: the {key}'s final state could not be restored into "
                    f"the object you passed: {exc}",
                    file=sys.stderr,
                    flush=True,
                )

    def _print_end(self, grid: ResultGrid, summary: dict, storage: Storage) -> None:
        """The outcome; how to resume is printed whatever the verbosity, since a stopped run
        is useless to someone who does not know how to continue it."""
        lines = [
            f"rtune: {len(grid)} trials, {grid.num_terminated} terminated, "
            f"{grid.num_errors} errored. Experiment: {storage.uri()}"
        ]
        if summary["stop_reason"] and not summary["drain_is_final"]:
            lines.append(f"rtune: the run was stopped ({summary['stop_reason']}). Resume it with:")
            lines.append(f'    rtune.Tuner.restore("{storage.uri()}").fit()')
            lines.append(f"    or: rtune resume {storage.uri()}")
            print("\n".join(lines), file=sys.stderr, flush=True)
            return
        if not self.run_config.verbose:
            return
        tc = self.tune_config
        if tc.metric and tc.mode:
            try:
                best = grid.get_best_result()
                lines.append(
                    f"rtune: best {tc.metric}={best.metrics.get(tc.metric)} "
                    f"with config {best.config}"
                )
            except RuntimeError:
                pass
        print("\n".join(lines), file=sys.stderr if summary["fatal"] else sys.stdout, flush=True)

    def get_results(self) -> ResultGrid:
        """The last fit()'s results; on a restored Tuner before fit(), the experiment's results as
        its storage holds them (so `Tuner.restore(path).get_results()` reads an experiment from
        any machine, without running anything)."""
        if self._result_grid is not None:
            return self._result_grid
        if self._restored is None:
            raise RuntimeError("get_results() needs a finished fit(); call fit() first")
        state = self._restored.get("state") or {"trials": []}
        trials = [Trial.from_state(t) for t in state["trials"]]
        tc = self.tune_config
        return ResultGrid(
            trials, self._restored["storage"], tc.metric, tc.mode, self.run_config.checkpoint_config
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


def _resources_of(trainable: Any) -> Any:
    resources = getattr(trainable, "_rtune_resources", None)
    if resources is None and hasattr(trainable, "default_resource_request"):
        return trainable.default_resource_request
    return resources
