"""One `fit()` on the driver: start the controller (its first trials before it), forward stop
signals to it, poll and print its status, and finish into a `ResultGrid`.

`Tuner` keeps the API and what outlives a run (the user's objects, the experiment's metadata and
storage); a `FitLoop` is made per `fit()` and holds what only that run needs. It never imports
`rtune.tuner`: `Tuner` hands it everything.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import RayActorError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from rtune import _settings
from rtune._config import RunConfig, TuneConfig
from rtune._driver.first_trials import (
    await_first_trials,
    first_trial_actors,
    start_first_trials,
)
from rtune._driver.progress import format_status
from rtune._driver.signals import StopRequests, forward_stop_signals
from rtune._driver.user_objects import take_back_user_objects
from rtune._durable import lease as _lease
from rtune._durable import state as state_io
from rtune._durable.lease import LeaseKeeper
from rtune._durable.storage import Storage
from rtune._execution.actor_pool import kill_actors
from rtune._execution.controller import RemoteController
from rtune._execution.driver_messages import FirstTrials, Status, Summary
from rtune._execution.setup import ExperimentSetup
from rtune.control import (
    CONTROLLER_NAMESPACE,
    controller_name,
    local_cluster_address,
    posix_basename,
)
from rtune.logger import with_default_loggers
from rtune.result_grid import ResultGrid
from rtune.search import BasicVariantGenerator
from rtune.search.suggestions import split_space
from rtune.trainable import trainable_name

if TYPE_CHECKING:
    from rtune._durable.restore import RestorePayload

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


class FitLoop:
    """One run of an experiment, from taking its lease to its `ResultGrid`. `searcher`,
    `scheduler` and `stopper` are the user's objects: the run's final state is put back into
    them. `new_metadata`: a new experiment's, written once its lease is held (None on a restore);
    `restored`: what `prepare_restore` read."""

    def __init__(
        self,
        trainable: Any,
        tune_config: TuneConfig,
        run_config: RunConfig,
        searcher: Any,
        scheduler: Any,
        stopper: Any,
        restored: RestorePayload | None,
        new_metadata: dict | None,
        param_space: dict | None = None,
    ):
        self.trainable = trainable
        self._param_space = param_space
        self.tune_config = tune_config
        self.run_config = run_config
        self._searcher = searcher
        self._scheduler = scheduler
        self._stopper = stopper
        self._restored = restored
        self._new_metadata = new_metadata
        self.result_grid: ResultGrid | None = None  # set once the run finished, even if it raises
        self.run_stats: dict | None = None
        self._warned = self._events = 0

    def run(self, storage: Storage, pending_demand: int) -> ResultGrid:
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
            metadata = self._new_metadata
            self._new_uid = metadata["experiment_uid"]
            state_io.write_metadata(storage, metadata)
        setup = self._setup(storage, pending_demand)
        setup.lease = lease.record
        # asked for before the controller, so they come up together (Ray starts as many worker
        # processes at once as there are CPUs): a run of two trials starts both at once
        # a stop signal from here on drains: the first trials run before the controller exists
        with forward_stop_signals() as requests:
            controller = first = None
            try:
                if not setup.searcher.needs.suggests_ahead:
                    # no trial starts before the controller asks the searcher: the controller
                    # first, in one of the worker processes Ray keeps started (as many as
                    # CPUs), loading the search library while a trial actor's process starts.
                    # 20 Optuna trials on a fresh Ray: fit() 1.03 s -> 0.79 s (median of 3)
                    controller = self._new_controller(name, setup)
                first = start_first_trials(
                    setup, first_trial_actors(setup, self._expected_trials(setup))
                )
                await_first_trials(first)
                if controller is None:
                    controller = self._new_controller(name, setup)
                lease.stop()  # the controller renews it from its start
                summary = self._drive(controller, storage, first, requests)
            finally:
                if controller is not None:
                    ray.kill(controller)
                if first is not None:  # the driver's own: gone with the controller too
                    kill_actors(first.actors)
        return self._finish(summary, storage)

    def _new_controller(self, name: str, setup: ExperimentSetup) -> Any:
        return RemoteController.options(
            name=name,
            namespace=CONTROLLER_NAMESPACE,
            lifetime=None,
            # on the driver's node: a worker node's loss must cost trials, never the controller
            scheduling_strategy=NodeAffinitySchedulingStrategy(
                ray.get_runtime_context().get_node_id(), soft=False
            ),
        ).remote(setup)

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
        restored = self._restored  # None: a new experiment, from its first trial
        constants, variables = None, []
        if self._param_space and not isinstance(self._searcher, BasicVariantGenerator):
            constants, variables = split_space(self._param_space)
        return ExperimentSetup(
            suggestion_constants=constants,
            suggestion_variables=variables,
            storage=storage,
            experiment_name=posix_basename(storage.root),
            experiment_uid=restored.experiment_uid if restored else self._new_uid,
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
            restored_trials=restored.trials if restored else [],
            max_trials=self.tune_config.num_samples
            if self.tune_config.search_alg is not None and self.tune_config.num_samples > 0
            else None,
            searcher_finished=restored.searcher_finished if restored else False,
            known_trial_dirs=restored.known_trial_dirs if restored else set(),
            state_seq=restored.state_seq if restored else 0,
            state_file=restored.state_file if restored else 0,
            restored_state_base=restored.restored_state_base if restored else None,
            pending_demand=pending_demand,
            **self._callbacks(),
        )

    def _callbacks(self) -> dict:
        given = list(self.run_config.callbacks or [])
        callbacks = with_default_loggers(given) if self.run_config.default_loggers else given
        return {
            "callbacks": callbacks,
            "user_callbacks": len(given),
            "callback_setup": {
                "stop": self.run_config.stop,
                "num_samples": self.tune_config.num_samples,
                "total_num_samples": getattr(self._searcher, "total_trials", None),
            },
        }

    def _drive(
        self, controller: Any, storage: Storage, first: FirstTrials, requests: StopRequests
    ) -> Summary:
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

    def _summary_of(self, run_ref: Any, storage: Storage) -> Summary:
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
            status: Status = ray.get(
                controller.status.remote(self._events, self._warned), timeout=5
            )
        except Exception:  # a slow or busy controller only delays the status block
            return
        self._print_news(status.events, status.warnings)
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

    def _finish(self, summary: Summary, storage: Storage) -> ResultGrid:
        tc = self.tune_config
        grid = ResultGrid(
            summary.trials, storage, tc.metric, tc.mode, self.run_config.checkpoint_config
        )
        self.result_grid = grid
        # for benchmarks and the curious: time and bytes spent on experiment state
        self.run_stats = summary.run_stats
        take_back_user_objects(
            summary.user_objects,
            self._searcher,
            self._scheduler,
            self._stopper,
            self.run_config.callbacks,
        )
        self._print_news(summary.events[self._events :], summary.warnings[self._warned :])
        if self.run_config.verbose:
            print(format_status(summary.status, storage.uri(), ray.cluster_resources()), flush=True)
        self._print_end(grid, summary, storage)
        if summary.fatal is not None:
            raise state_io.unpack(summary.fatal)
        return grid

    def _print_end(self, grid: ResultGrid, summary: Summary, storage: Storage) -> None:
        """The outcome; how to resume is printed whatever the verbosity, since a stopped run
        is useless to someone who does not know how to continue it."""
        lines = [
            f"rtune: {len(grid)} trials, {grid.num_terminated} terminated, "
            f"{grid.num_errors} errored. Experiment: {storage.uri()}"
        ]
        if summary.stop_reason and not summary.drain_is_final:
            lines.append(f"rtune: the run was stopped ({summary.stop_reason}). Resume it with:")
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
        print("\n".join(lines), file=sys.stderr if summary.fatal else sys.stdout, flush=True)


def _resources_of(trainable: Any) -> Any:
    resources = getattr(trainable, "_rtune_resources", None)
    if resources is None and hasattr(trainable, "default_resource_request"):
        return trainable.default_resource_request
    return resources
