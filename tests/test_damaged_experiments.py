"""Damaged experiments and the safety of what is stored, with real runs on the session Ray.

One experiment is stopped by a real Ctrl+C (SIGINT) with every trial PAUSED after iteration 3 of 4,
each iteration checkpointed; each test damages a copy of it as a faulty disk, a half-done copy or a
hand edit would, and restores. A restore either continues with every trial's history holding each
iteration once, or refuses with an error naming what is damaged; a failed restore deletes or
rewrites nothing.
"""

from __future__ import annotations

import base64
import binascii
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time

import pytest
from iteration_checkpoints import (
    ctrl_c_when,
    hold_until_stopped,
    report_iteration,
    resume_iteration,
)

import rtune as tune
from cluster.s3_server import CREDENTIALS as S3_CREDENTIALS

ITERATIONS = 4
TRIALS = 3
HELD_AT = 3  # every trial waits before its 3rd iteration until the run is stopped


def steps(config):
    """Four iterations with a checkpoint each; the third one waits until rtune asks the trial to
    stop (or the `go` file exists), so the stopped experiment is the same on every run."""
    start = resume_iteration()
    for it in range(start, ITERATIONS):
        if it + 1 == HELD_AT:
            hold_until_stopped(config["go"])
        time.sleep(0.02)
        report_iteration(it + 1, {"it": it + 1, "start": start, "score": score(config, it + 1)})


def score(config, iteration):
    return config["id"] * 10 + iteration


@pytest.fixture(scope="module")
def stopped(ray_local, tmp_path_factory):
    """The stopped experiment: TRIALS trials PAUSED with committed checkpoints 1..3 and results
    1..3 (one results segment per iteration)."""
    base = tmp_path_factory.mktemp("damaged")
    experiment = base / "results" / "exp"
    ctrl_c_when(
        lambda: (
            len(glob.glob(str(experiment / "*" / "checkpoint_000001" / ".rtune_committed")))
            == TRIALS
        )
    )
    results = tune.Tuner(
        steps,
        param_space={"id": tune.grid_search(list(range(TRIALS))), "go": str(base / "go")},
        run_config=tune.RunConfig(storage_path=str(base / "results"), name="exp", verbose=0),
    ).fit()
    (base / "go").touch()  # restored runs do not wait
    assert [r.status for r in results] == ["PAUSED"] * TRIALS
    assert [r.metrics["training_iteration"] for r in results] == [HELD_AT] * TRIALS
    return str(experiment)


# ---- helpers ----


def copy_of(stopped, tmp_path) -> str:
    path = str(tmp_path / "exp")
    shutil.copytree(stopped, path)
    return path


def trial_dirs(path: str) -> dict[int, str]:
    """{config id: trial directory} from each trial's params.json."""
    found = {}
    for params in glob.glob(os.path.join(path, "*", "params.json")):
        with open(params) as src:
            found[json.load(src)["id"]] = os.path.dirname(params)
    return found


def contents(path: str) -> dict[str, str]:
    """{relative path: sha256} of every file under `path`."""
    found = {}
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            with open(full, "rb") as src:
                found[os.path.relpath(full, path)] = hashlib.sha256(src.read()).hexdigest()
    return found


# what a successful restore's state writer legitimately replaces
REPLACEABLE = re.compile(r"^experiment_(state-\d|delta-\d+-\d+)\.json$")


def assert_nothing_lost(path: str, before: dict[str, str]) -> None:
    """Every file that existed before the restore is still there, but for the state files a
    restored run's writer replaces."""
    after = contents(path)
    lost = sorted(name for name in set(before) - set(after) if not REPLACEABLE.match(name))
    assert lost == [], f"the restore deleted {lost}"


def assert_finished_whole(results, starts: dict[int, int]) -> None:
    """Every trial TERMINATED at iteration 4 with its own final metrics, resumed from the
    iteration `starts` gives, its history holding each iteration once."""
    by_id = {r.config["id"]: r for r in results}
    assert sorted(by_id) == list(range(TRIALS))
    for trial_id, result in by_id.items():
        assert result.status == "TERMINATED", (trial_id, result.error)
        assert result.metrics["training_iteration"] == ITERATIONS
        assert result.metrics["score"] == score(result.config, ITERATIONS)
        assert result.metrics["start"] == starts[trial_id], trial_id
        history = result.metrics_dataframe
        assert list(history["training_iteration"]) == list(range(1, ITERATIONS + 1)), trial_id
        assert list(history["it"]) == list(range(1, ITERATIONS + 1)), trial_id
        assert list(history["score"]) == [score(result.config, i) for i in range(1, ITERATIONS + 1)]


def no_traceback(text: str) -> None:
    assert "Traceback (most recent call last)" not in text, text


# ---- 1. damaged experiments ----


def test_a_checkpoint_without_its_marker_is_never_resumed_from(stopped, tmp_path, capfd):
    path = copy_of(stopped, tmp_path)
    trial = trial_dirs(path)[0]
    unmarked = os.path.join(trial, "checkpoint_000002")  # iteration 3's (numbered from 0)
    os.remove(os.path.join(unmarked, ".rtune_committed"))  # a copy that stopped before its marker
    before = contents(path)

    tuner = tune.Tuner.restore(path)
    assert contents(path) == before  # restoring reads; the unmarked files are still there
    results = tuner.fit()

    # trial 0 resumed from checkpoint 2 (the newest committed one), the others from 3
    assert_finished_whole(results, {0: 2, 1: 3, 2: 3})
    # the unmarked directory is left as it was, never used; the re-run iteration 3's checkpoint
    # takes the next number, as every checkpoint of a later run of the trial does
    assert not os.path.exists(os.path.join(unmarked, ".rtune_committed"))
    rerun = os.path.join(trial, "checkpoint_000003")
    assert os.path.exists(os.path.join(rerun, ".rtune_committed"))
    with open(os.path.join(rerun, "it")) as src:
        assert src.read() == "3"
    assert_nothing_lost(path, before)
    no_traceback(capfd.readouterr().err)


def test_a_missing_trial_directory_restarts_that_trial_with_a_warning(stopped, tmp_path, capfd):
    path = copy_of(stopped, tmp_path)
    missing = trial_dirs(path)[1]
    shutil.rmtree(missing)
    before = contents(path)

    results = tune.Tuner.restore(path).fit()

    err = capfd.readouterr().err
    no_traceback(err)
    assert_finished_whole(results, {0: 3, 1: 0, 2: 3})  # trial 1 from scratch, the others on
    warning = [line for line in err.splitlines() if os.path.basename(missing) in line]
    assert warning and "missing" in warning[0], err
    assert_nothing_lost(path, before)


@pytest.mark.parametrize("keep", ["half", "nothing"], ids=["mid-row", "at-a-line-boundary"])
def test_a_results_segment_cut_short(stopped, tmp_path, capfd, keep):
    path = copy_of(stopped, tmp_path)
    trial = trial_dirs(path)[2]
    segment = os.path.join(trial, "results", "e0000-00000003-00000003.jsonl")
    cut = os.path.getsize(segment) // 2 if keep == "half" else 0
    with open(segment, "r+b") as damaged:
        damaged.truncate(cut)
    before = contents(path)

    # reading the history keeps the rows before the damage and names the damaged file
    history = tune.Tuner.restore(path).get_results()
    by_id = {r.config["id"]: r for r in history}
    assert list(by_id[2].metrics_dataframe["training_iteration"]) == [1, 2]
    assert list(by_id[0].metrics_dataframe["training_iteration"]) == [1, 2, 3]
    err = capfd.readouterr().err
    no_traceback(err)
    assert segment in err and "damaged" in err, err
    assert contents(path) == before

    # the restore re-runs the iteration whose result was lost (from checkpoint 2), so the
    # history holds every iteration once again
    results = tune.Tuner.restore(path).fit()
    err = capfd.readouterr().err
    no_traceback(err)
    assert segment in err and "it resumes from iteration 2" in err, err
    assert_finished_whole(results, {0: 3, 1: 3, 2: 2})
    assert_nothing_lost(path, before)
    # the damaged segment is kept (nothing is rewritten) and no longer part of the history
    assert os.path.getsize(segment) == cut
    grid = tune.Tuner.restore(path).get_results()
    assert all(len(r.metrics_dataframe) == ITERATIONS for r in grid)
    assert "damaged" not in capfd.readouterr().err


def test_an_experiment_stored_with_arrow_segments_resumes(stopped, tmp_path, capfd):
    """Result histories were Arrow IPC files before they were JSON lines: an experiment stopped
    by that build resumes, its history read whole and continued."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    path = copy_of(stopped, tmp_path)
    segments = glob.glob(os.path.join(path, "*", "results", "*.jsonl"))
    assert len(segments) == TRIALS * HELD_AT
    for segment in segments:
        with open(segment) as src:
            table = pa.Table.from_pylist([json.loads(line) for line in src])
        with ipc.new_file(segment[: -len(".jsonl")] + ".arrow", table.schema) as writer:
            writer.write_table(table)
        os.remove(segment)

    history = tune.Tuner.restore(path).get_results()
    assert all(list(r.metrics_dataframe["it"]) == [1, 2, 3] for r in history)
    results = tune.Tuner.restore(path).fit()
    assert_finished_whole(results, {0: 3, 1: 3, 2: 3})
    no_traceback(capfd.readouterr().err)


def test_an_experiment_without_any_state_file_resumes_from_its_trials(stopped, tmp_path, capfd):
    """The first trials start on the driver's actors before the controller is up, so a driver
    killed then leaves trials that wrote results and checkpoints, and no experiment state yet.
    The restore finds them again (the searcher suggests the same trials) and resumes each from
    its newest checkpoint, its history whole."""
    path = copy_of(stopped, tmp_path)
    for name in os.listdir(path):
        if REPLACEABLE.match(name):
            os.remove(os.path.join(path, name))
    before = contents(path)

    results = tune.Tuner.restore(path).fit()
    assert_finished_whole(results, {0: 3, 1: 3, 2: 3})
    assert_nothing_lost(path, before)
    no_traceback(capfd.readouterr().err)


def test_a_checkpoint_an_orphan_committed_after_a_restore_began_is_not_resumed_from(
    stopped, tmp_path, capfd
):
    """After a kill -9, a trial actor of the killed run may live on for a moment and commit one
    more checkpoint after a restore already resumed the trial from an older one. Here trial 0's
    restore (epoch 1) began from checkpoint 2 and died at once; checkpoint 3 is the orphan's (its
    marker says epoch 0). The next restore resumes from 2, as the history does: resuming from 3
    would leave iteration 3 out of the history, which keeps epoch 1's view from iteration 2 on."""
    path = copy_of(stopped, tmp_path)
    trial = trial_dirs(path)[0]
    with open(os.path.join(trial, "checkpoint_000002", ".rtune_committed")) as src:
        assert json.load(src)["epoch"] == 0
    open(os.path.join(trial, "results", "e0001-start-00000002"), "w").close()
    before = contents(path)

    results = tune.Tuner.restore(path).fit()
    assert_finished_whole(results, {0: 2, 1: 3, 2: 3})
    assert_nothing_lost(path, before)
    no_traceback(capfd.readouterr().err)


def _newest_snapshot(path: str) -> str:
    states = [os.path.join(path, f"experiment_state-{i}.json") for i in (0, 1)]
    return max(states, key=lambda name: json.load(open(name))["seq"])


def _edit(name: str, change) -> None:
    with open(name) as src:
        state = json.load(src)
    change(state)
    with open(name, "w") as out:
        json.dump(state, out)


def _status_42(state):
    state["trials"][0]["status"] = 42


def _trials_not_a_list(state):
    state["trials"] = {trial["trial_id"]: trial for trial in state["trials"]}


def _trial_without_resources(state):
    del state["trials"][-1]["resources"]


def _trial_not_a_dict(state):
    state["trials"][0] = "bbca2_00000"


def _searcher_not_text(state):
    state["searcher"] = 42


def _relpath_escapes(state):
    """A trial directory outside the experiment: a restore must not read or write there."""
    trial = state["trials"][0]
    trial["relpath"] = "../../outside"
    for entry in trial.get("committed_checkpoints", []):  # left out while there are none
        entry["path"] = "../../outside/" + entry["path"].split("/")[-1]
    trial["latest_checkpoint"] = (trial.get("committed_checkpoints") or [None])[-1]


@pytest.mark.parametrize(
    "change",
    [
        _status_42,
        _trials_not_a_list,
        _trial_without_resources,
        _trial_not_a_dict,
        _searcher_not_text,
        _relpath_escapes,
    ],
)
def test_a_hand_edited_newest_snapshot_falls_back_to_the_other(stopped, tmp_path, capfd, change):
    path = copy_of(stopped, tmp_path)
    edited = _newest_snapshot(path)
    _edit(edited, change)
    # the older state knew less; the checkpoints in storage tell where each trial stands
    restore_reports_damage_and_completes(path, edited, capfd)
    assert os.listdir(tmp_path) == ["exp"] and not (tmp_path.parent / "outside").exists()


def restore_reports_damage_and_completes(path, edited, capfd):
    """The restore names the damaged file, resumes every trial from iteration 3, finishes them
    whole, and deletes nothing that was there before it."""
    before = contents(path)
    results = tune.Tuner.restore(path).fit()
    err = capfd.readouterr().err
    no_traceback(err)
    assert f"{edited} is damaged" in err, err
    assert_finished_whole(results, {0: 3, 1: 3, 2: 3})
    assert_nothing_lost(path, before)


def test_a_hand_edited_delta_keeps_the_changes_before_it(stopped, tmp_path, capfd):
    path = copy_of(stopped, tmp_path)
    snapshot = json.load(open(_newest_snapshot(path)))
    deltas = sorted(
        name
        for name in os.listdir(path)
        if name.startswith(f"experiment_delta-{snapshot['seq']:09d}-")
    )
    if not deltas:
        pytest.skip("the stopped run wrote its last state as a snapshot")
    edited = os.path.join(path, deltas[-1])

    def bad_trial(state):
        state["trials"] = [{**snapshot["trials"][0], "status": 42}]

    _edit(edited, bad_trial)
    restore_reports_damage_and_completes(path, edited, capfd)


def _truncate(name: str) -> None:
    with open(name, "r+") as damaged:
        damaged.truncate(os.path.getsize(name) // 2)


@pytest.mark.parametrize("damage", [_truncate, lambda name: _edit(name, _status_42)])
def test_the_only_state_file_damaged_is_refused_naming_it(stopped, tmp_path, damage):
    path = copy_of(stopped, tmp_path)
    only = _newest_snapshot(path)
    for name in os.listdir(path):
        if name.startswith("experiment_state-") and os.path.join(path, name) != only:
            os.remove(os.path.join(path, name))
    damage(only)
    before = contents(path)

    with pytest.raises(ValueError, match="every experiment state file is damaged") as info:
        tune.Tuner.restore(path)
    assert only in str(info.value)
    assert contents(path) == before  # a refused restore changes nothing


def test_a_state_naming_a_directory_outside_the_experiment_is_refused(stopped, tmp_path):
    """Every state file edited to put trial 0 at ../../outside: the restore refuses rather than
    read or write outside the experiment."""
    path = copy_of(stopped, tmp_path)
    for name in os.listdir(path):
        if name.startswith("experiment_"):

            def escape(state):
                for trial in state["trials"]:
                    if trial["relpath"].endswith("_00000"):
                        _relpath_escapes({"trials": [trial]})

            _edit(os.path.join(path, name), escape)
    before = contents(path)

    with pytest.raises(ValueError, match="every experiment state file is damaged") as info:
        tune.Tuner.restore(path).fit()
    assert "'relpath' '../../outside' is not a directory name" in str(info.value)
    assert contents(path) == before
    assert os.listdir(tmp_path) == ["exp"] and not (tmp_path.parent / "outside").exists()


# ---- 2. safety of what is stored ----

SECRET = "s3cr3t-value-123"


def two_steps(config):
    for it in range(2):
        report_iteration(it + 1, {"it": it + 1})


def _decoded_blobs(data: bytes):
    """Base64 strings inside a JSON state file (pickled searcher, scheduler, configs), decoded."""
    for match in re.finditer(rb'"([A-Za-z0-9+/]{16,}={0,2})"', data):
        try:
            yield base64.b64decode(match[1], validate=True)
        except (binascii.Error, ValueError):
            continue


def test_secrets_in_the_environment_are_stored_and_printed_nowhere(storage, monkeypatch, capfd):
    monkeypatch.setenv("RTUNE_TEST_SECRET", SECRET)
    secrets = [SECRET, S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]]
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == secrets[1]
    results = tune.Tuner(
        two_steps,
        param_space={"id": tune.grid_search([0, 1])},
        run_config=tune.RunConfig(storage_path=storage, name="secret", verbose=2),
    ).fit()
    assert results.num_terminated == 2
    results[0].metrics_dataframe  # noqa: B018 (reading the history writes nothing, prints nothing)
    out, err = capfd.readouterr()
    for secret in secrets:
        assert secret not in out and secret not in err
    experiment = os.path.join(storage, "secret")
    checked = 0
    for root, _, files in os.walk(experiment):
        for name in files:
            with open(os.path.join(root, name), "rb") as src:
                data = src.read()
            for blob in [data, *_decoded_blobs(data)]:
                for secret in secrets:
                    assert secret.encode() not in blob, os.path.join(root, name)
            checked += 1
    assert checked > 10


def _umask_of_this_process() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    raise AssertionError("no Umask in /proc/self/status")


def _modes(path: str) -> dict[str, int]:
    found = {path: os.stat(path).st_mode & 0o7777}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(root, name)
            found[full] = os.stat(full).st_mode & 0o7777
    return found


def test_stored_files_are_not_world_writable_and_follow_the_umask(stopped):
    """The stopped experiment was written by the driver, the controller and trial actors, all
    under this process's umask (the session Ray was started by it)."""
    umask = _umask_of_this_process()
    if not umask & 0o002:
        pytest.skip(f"this process's umask {umask:03o} lets files be world-writable")
    modes = _modes(stopped)
    assert len(modes) > 20
    for name, mode in modes.items():
        assert mode & 0o002 == 0, (name, oct(mode))
        allowed = (0o777 if os.path.isdir(name) else 0o666) & ~umask
        assert mode & ~allowed == 0, (name, oct(mode), oct(umask))


UMASK_DRIVER = textwrap.dedent(
    """
    import os, sys
    os.umask(0o077)
    import rtune as tune

    def train(config):
        import tempfile
        for it in range(2):
            with tempfile.TemporaryDirectory() as d:
                with open(os.path.join(d, "it"), "w") as out:
                    out.write(str(it + 1))
                tune.report({"it": it + 1}, checkpoint=tune.Checkpoint.from_directory(d))

    results = tune.Tuner(
        train,
        param_space={"id": tune.grid_search([0, 1])},
        run_config=tune.RunConfig(storage_path=sys.argv[1], name="private", verbose=0),
    ).fit()
    assert results.num_terminated == 2, [r.error for r in results]
    """
)


@pytest.mark.slow
def test_a_private_umask_keeps_every_stored_file_private(tmp_path):
    """A driver that sets umask 077 and starts its own Ray (the embedded one fit() starts):
    no file or directory of the experiment is readable by group or others."""
    env = {**os.environ, "RAY_ADDRESS": "local"}  # its own Ray, never a cluster found here
    env.pop("PYTHONPATH", None)
    run = subprocess.run(
        [sys.executable, "-c", UMASK_DRIVER, str(tmp_path / "results")],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    modes = _modes(str(tmp_path / "results" / "private"))
    assert len(modes) > 10
    leaky = {name: oct(mode) for name, mode in modes.items() if mode & 0o077}
    assert leaky == {}


def constant_dirname(trial):
    return "../../escape"


def own_rows(config):
    for it in range(3):
        tune.report({"id": config["id"], "it": it + 1})


def test_trials_with_the_same_hostile_dirname_stay_inside_and_apart(storage):
    """tests/test_bad_input.py checks one trial per hostile name; here two trials get the same
    one: both stay inside the experiment, each in its own directory, with its own history."""
    results = tune.Tuner(
        own_rows,
        param_space={"id": tune.grid_search([0, 1])},
        tune_config=tune.TuneConfig(trial_dirname_creator=constant_dirname),
        run_config=tune.RunConfig(storage_path=storage, name="same", verbose=0),
    ).fit()
    experiment = os.path.realpath(os.path.join(storage, "same"))
    paths = {os.path.realpath(r.path) for r in results}
    assert all(os.path.dirname(p) == experiment for p in paths)
    assert os.listdir(storage) == ["same"]
    for result in results:
        assert list(result.metrics_dataframe["id"]) == [result.config["id"]] * 3
    assert len(paths) == 2, paths
