"""Callbacks (`RunConfig(callbacks=...)`) and the default loggers, on a real local Ray.

The hooks are Ray Tune's, called with its arguments, off the controller's loop; the objects a
user passes hold their final state afterwards; a hook that raises ends the run naming the
callback and the hook; `progress.csv`, `result.json`, `params.json` and TensorBoard event files
(read back with TensorBoard's own reader) hold each iteration once, after a stop and a restore
too. The crash loop of kill -9s and signals is in tests/test_signals.py.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pytest
from conftest import experiment_path
from drivers.experiment import HeardOnce
from scheduler_helpers import run_ray_example

import rtune as tune
from rtune._durable.state import read_state
from rtune._durable.storage import Storage
from rtune.logger._trial_files import TrialFile

try:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
except ImportError:  # the test extra installs it; without it only the TensorBoard checks skip
    EventAccumulator = None


class Collect(tune.Callback):
    """Writes down every hook it hears, with what a user would look at."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.trial_fields: dict[str, dict] = {}

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info):
        self.calls.append(("setup", num_samples, total_num_samples))

    def on_trial_start(self, iteration, trials, trial, **info):
        self.calls.append(("start", trial.config["x"], trial.status))
        self.trial_fields[trial.trial_id] = {
            "name": str(trial),
            "path": trial.path,
            "local_path": trial.local_path,
            "trials": sorted(t.trial_id for t in trials),
        }

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.calls.append(("result", trial.config["x"], result["training_iteration"]))
        assert result["config"] == trial.config and trial.last_result is result

    def on_trial_save(self, iteration, trials, trial, **info):
        self.calls.append(("save", trial.config["x"], trial.checkpoint is not None))

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        with checkpoint.as_directory() as directory:
            with open(os.path.join(directory, "step")) as src:
                self.calls.append(("checkpoint", trial.config["x"], int(src.read())))

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.calls.append(("recover", trial.config["x"], trial.status))

    def on_trial_error(self, iteration, trials, trial, **info):
        self.calls.append(("error", trial.config["x"], trial.error.strip().splitlines()[-1]))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.calls.append(("complete", trial.config["x"], trial.status))

    def on_experiment_end(self, trials, **info):
        self.calls.append(("end", sorted(t.status for t in trials)))

    def on_step_begin(self, iteration, trials, **info):
        assert isinstance(iteration, int) and isinstance(trials, list)
        self.steps = getattr(self, "steps", 0) + 1

    def on_step_end(self, iteration, trials, **info):
        self.steps_ended = getattr(self, "steps_ended", 0) + 1

    def of(self, x) -> list[tuple]:
        return [
            call[0:1] + call[2:]
            for call in self.calls
            if call[0] not in ("setup", "end") and call[1] == x
        ]


def three_reports(config):
    for step in range(1, 4):
        tune.report({"score": config["x"] * step, "nested": {"a": step}})


def test_hooks_come_in_order_with_ray_tunes_arguments_and_the_object_keeps_their_record(storage):
    collect = Collect()
    grid = tune.Tuner(
        three_reports,
        param_space={"x": tune.grid_search([1, 2])},
        run_config=tune.RunConfig(storage_path=storage, name="hooks", callbacks=[collect]),
    ).fit()
    assert collect.calls[0] == ("setup", 1, 2)
    assert collect.calls[-1] == ("end", ["TERMINATED", "TERMINATED"])
    assert collect.steps >= 1 and collect.steps == collect.steps_ended  # a callback that has them
    for x in (1, 2):
        assert collect.of(x) == [
            ("start", "RUNNING"),
            ("result", 1),
            ("result", 2),
            ("result", 3),
            ("complete", "TERMINATED"),
        ]
    by_id = {result.metrics["trial_id"]: result for result in grid}
    for trial_id, fields in collect.trial_fields.items():
        assert fields["path"] == by_id[trial_id].path
        assert fields["local_path"] == by_id[trial_id].path
        assert fields["name"].endswith(trial_id)
        assert fields["trials"] == sorted(by_id)


def fails_at_two(config):
    for step in range(1, 4):
        if step == 2:
            raise RuntimeError(f"broken at {step}")
        tune.report({"score": step})


def checkpoints_each_step(config):
    for step in range(1, 3):
        with tempfile.TemporaryDirectory() as directory:
            with open(os.path.join(directory, "step"), "w") as out:
                out.write(str(step))
            tune.report({"score": step}, checkpoint=tune.Checkpoint.from_directory(directory))


def test_failures_retries_and_checkpoints_reach_their_hooks(storage):
    collect = Collect()
    tune.Tuner(
        fails_at_two,
        param_space={"x": 1},
        run_config=tune.RunConfig(
            storage_path=storage,
            name="failing",
            callbacks=[collect],
            failure_config=tune.FailureConfig(max_failures=1),
        ),
    ).fit()
    assert collect.of(1) == [
        ("start", "RUNNING"),
        ("result", 1),
        ("recover", "PENDING"),
        ("start", "RUNNING"),  # no checkpoint: it starts again from its beginning
        ("result", 1),
        ("error", "RuntimeError: broken at 2"),
    ]
    collect = Collect()
    tune.Tuner(
        checkpoints_each_step,
        param_space={"x": 1},
        run_config=tune.RunConfig(storage_path=storage, name="saving", callbacks=[collect]),
    ).fit()
    saves = [call for call in collect.of(1) if call[0] in ("save", "checkpoint")]
    assert saves == [("save", True), ("checkpoint", 1), ("save", True), ("checkpoint", 2)]


class Broken(tune.Callback):
    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result["training_iteration"] == 2:
            raise ValueError("the tracking server said no")


def many_reports(config):
    for step in range(1, 200):
        tune.report({"score": step})
        time.sleep(0.01)


def test_a_hook_that_raises_stops_the_run_naming_the_callback_and_the_hook(storage, capfd):
    with pytest.raises(ValueError, match="the tracking server said no"):
        tune.Tuner(
            many_reports,
            param_space={"x": 1},
            run_config=tune.RunConfig(storage_path=storage, name="broken", callbacks=[Broken()]),
        ).fit()
    assert "error in callback Broken.on_trial_result" in capfd.readouterr().err
    # stopped as on Ctrl+C: the trial waits, resumable, short of its 199 reports
    state, _ = read_state(Storage.at(experiment_path(storage, "broken")))
    [trial] = state["trials"]
    assert trial["status"] in ("PENDING", "PAUSED")
    assert trial["last_result"]["training_iteration"] < 199


class Lock(tune.Callback):
    def __init__(self) -> None:
        self.lock = threading.Lock()


@pytest.mark.parametrize(
    "callbacks, message",
    [
        ([object()], r"RunConfig.callbacks\[0\] \(object\) is not a rtune.Callback"),
        ([tune.Callback(), Collect], r"RunConfig.callbacks\[1\] is the class Collect"),
        ([Lock()], r"RunConfig.callbacks\[0\] \(Lock\) cannot be pickled"),
        (Collect(), r"RunConfig.callbacks must be a list"),
    ],
)
def test_callbacks_that_cannot_run_are_refused_before_any_trial_starts(
    tmp_path, callbacks, message
):
    run_config = tune.RunConfig(storage_path=str(tmp_path), name="bad", callbacks=callbacks)
    with pytest.raises(TypeError, match=message):
        tune.Tuner(three_reports, run_config=run_config).fit()
    assert not (tmp_path / "bad").exists()


class WaitsForTheRunToEnd(tune.Callback):
    """Its first hook blocks until the experiment state says every trial ended: it can only
    return if the loop went on without it."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self.saw_every_trial_end = False

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.saw_every_trial_end:
            return
        storage = Storage.at(self.state_dir)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state, _ = read_state(storage)
            statuses = [t["status"] for t in (state or {}).get("trials", [])]
            if len(statuses) == 4 and set(statuses) == {"TERMINATED"}:
                self.saw_every_trial_end = True
                return
            time.sleep(0.05)


def test_a_callback_blocked_in_a_hook_does_not_hold_the_trials_back(storage):
    waits = WaitsForTheRunToEnd(experiment_path(storage, "slow"))
    grid = tune.Tuner(
        three_reports,
        param_space={"x": tune.grid_search([1, 2, 3, 4])},
        run_config=tune.RunConfig(storage_path=storage, name="slow", callbacks=[waits]),
    ).fit()
    assert waits.saw_every_trial_end
    assert [r.metrics["training_iteration"] for r in grid] == [3, 3, 3, 3]


def _tensorboard(path: str) -> EventAccumulator:
    accumulator = EventAccumulator(path)
    accumulator.Reload()
    return accumulator


def test_default_loggers_write_the_files_ray_tune_users_read(storage):
    grid = tune.Tuner(
        three_reports,
        param_space={"x": tune.grid_search([1, 2]), "name": "run"},
        run_config=tune.RunConfig(storage_path=storage, name="files"),
    ).fit()
    for result in grid:
        trial_dir = Path(result.path)
        progress = pd.read_csv(trial_dir / "progress.csv")
        assert list(progress["training_iteration"]) == [1, 2, 3]
        assert list(progress["nested/a"]) == [1, 2, 3]
        assert list(progress["score"]) == [result.config["x"] * s for s in (1, 2, 3)]
        lines = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
        assert [line["training_iteration"] for line in lines] == [1, 2, 3]
        assert all(line["config"] == result.config for line in lines)
        assert json.loads((trial_dir / "params.json").read_text()) == result.config
        if EventAccumulator is not None:
            board = _tensorboard(str(trial_dir))
            scores = board.Scalars("ray/tune/score")
            assert [(s.step, s.value) for s in scores] == [
                (step, result.config["x"] * step) for step in (1, 2, 3)
            ]
            assert "hparams" in board.PluginTagToContent("hparams") or board.PluginTagToContent(
                "hparams"
            )

    plain = tune.Tuner(
        three_reports,
        param_space={"x": 1},
        run_config=tune.RunConfig(storage_path=storage, name="plain", default_loggers=False),
    ).fit()
    left = set(os.listdir(plain[0].path))
    assert not left & {"progress.csv", "result.json", "params.pkl"}
    assert not any(name.startswith("events.out.tfevents") for name in left)


def stops_the_driver_once(config):
    """Six checkpointed steps; trial 0's third one sends the driver the SIGINT a user would."""
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            start = int(Path(directory, "step").read_text())
    for step in range(start + 1, 7):
        flag = Path(config["flag"])
        if config["x"] == 0 and step == 3 and not flag.exists():
            flag.touch()
            os.kill(config["driver"], signal.SIGINT)
            time.sleep(1.0)  # the drain reaches this trial at its next report
        with tempfile.TemporaryDirectory() as directory:
            Path(directory, "step").write_text(str(step))
            tune.report({"score": step}, checkpoint=tune.Checkpoint.from_directory(directory))


def test_after_a_stop_and_a_restore_every_file_and_callback_holds_each_iteration_once(
    storage, tmp_path
):
    path = experiment_path(storage, "resumed")
    first = tune.Tuner(
        stops_the_driver_once,
        param_space={
            "x": tune.grid_search([0, 1]),
            "flag": str(tmp_path / "signalled"),
            "driver": os.getpid(),
        },
        tune_config=tune.TuneConfig(max_concurrent_trials=1),
        run_config=tune.RunConfig(
            storage_path=storage, name="resumed", callbacks=[HeardOnce(key="x")]
        ),
    ).fit()
    assert any(r.metrics.get("training_iteration", 0) < 6 for r in first), "it did not stop"
    # as a kill -9 leaves it, or worse: what the callbacks heard never reached storage, so the
    # restore tells them everything again, from the trials' histories
    os.remove(os.path.join(path, "callbacks.pkl"))
    restored = tune.Tuner.restore(path)
    grid = restored.fit()
    assert [r.metrics["training_iteration"] for r in grid] == [6, 6]
    for result in grid:
        trial_dir = Path(result.path)
        assert list(pd.read_csv(trial_dir / "progress.csv")["training_iteration"]) == [*range(1, 7)]
        lines = (trial_dir / "result.json").read_text().splitlines()
        assert [json.loads(line)["training_iteration"] for line in lines] == [*range(1, 7)]
        if EventAccumulator is not None:
            steps = [s.step for s in _tensorboard(str(trial_dir)).Scalars("ray/tune/score")]
            assert steps == [*range(1, 7)]
    # the restored Tuner's callback (read back from the experiment) holds what it heard
    [heard_once] = restored.run_config.callbacks
    assert heard_once.heard == {f"{x}:{step}": 1 for x in (0, 1) for step in range(1, 7)}


class Rows(TrialFile):
    def encode(self, result: dict) -> bytes:
        return f"{result['training_iteration']}\n".encode()

    def decode(self, data: bytes):
        rows = [(int(line), line + b"\n") for line in data.split(b"\n")[:-1]]
        return b"", rows


@pytest.mark.parametrize("appends", [True, False], ids=["local disk", "object store"])
def test_a_trial_file_holds_each_iteration_once_through_restarts_and_torn_writes(tmp_path, appends):
    filesystem = pafs.LocalFileSystem()
    if not appends:  # a filesystem that is not a local one: files are rewritten whole
        filesystem = pafs.SubTreeFileSystem(str(tmp_path), filesystem)
    (tmp_path / "trial").mkdir()  # an object store needs no directories; this one does
    storage = Storage(filesystem, "/trial" if not appends else str(tmp_path / "trial"))
    file = Rows(storage, "rows.txt")
    file.start()
    for step in (1, 2, 3):
        file.add(step, {"training_iteration": step})
    file.flush()
    file.add(4, {"training_iteration": 4})
    file.cut(2)  # resumed from a checkpoint at 2: 3 and the unwritten 4 go
    file.add(3, {"training_iteration": 3})
    file.flush()
    assert storage.read_bytes("rows.txt") == b"1\n2\n3\n"
    with filesystem.open_output_stream(storage.path("rows.txt")) as out:
        out.write(b"1\n2\n3\n4\n5")  # another run wrote on, and a crash cut its last line short
    again = Rows(storage, "rows.txt")  # a restored run: first seen at iteration 4
    again.add(4, {"training_iteration": 4})
    again.flush()
    assert storage.read_bytes("rows.txt") == b"1\n2\n3\n4\n"


@pytest.mark.slow
def test_ray_tunes_logging_example_runs_with_rtune(tmp_path):
    """Ray Tune's own example, its imports swapped: its LoggerCallback hears every result."""
    proc = run_ray_example("logging_example.py", tmp_path)
    assert proc.stdout.count("TestLogger for trial") == 5, proc.stdout[-3000:]
