"""The experiment state on a real filesystem: snapshots plus deltas of what changed, read back as
one state, with damage falling back to what is still whole."""

from __future__ import annotations

import os

from rtune._durable.state import STATE_FILES, StateWriter, parse_delta_name, read_state
from rtune._durable.storage import Storage
from rtune._durable.trial import Trial
from rtune._execution.resources import ResourceRequest

ONE_CPU = ResourceRequest(((("CPU", 1.0),),))


def make_trials(count: int) -> list[Trial]:
    return [
        Trial(f"t{i:04d}", i, f"trial_{i}", f"trial_{i}", {"lr": i / 10}, str(i), ONE_CPU)
        for i in range(count)
    ]


def header() -> dict:
    return {"experiment_name": "exp", "searcher": "s", "stop_reason": None}


def write(writer: StateWriter, trials: list[Trial]) -> None:
    writer.write(header, trials)


def deltas_in(path: str) -> list[str]:
    return sorted(n for n in os.listdir(path) if parse_delta_name(n) is not None)


def test_deltas_hold_only_what_changed_and_read_back_whole(tmp_path):
    storage = Storage.at(tmp_path)
    writer = StateWriter(storage)
    trials = make_trials(200)
    write(writer, trials)
    write(writer, trials)  # the first two writes are snapshots, one in each file
    snapshot_bytes = writer.total_bytes / 2
    for step in range(1, 6):
        trials[step].status = "TERMINATED"
        trials[step].last_result = {"training_iteration": step}
        write(writer, trials)
    deltas = deltas_in(tmp_path)
    assert len(deltas) == 5
    assert all(os.path.getsize(tmp_path / name) < snapshot_bytes / 50 for name in deltas)

    state, problems = read_state(storage)
    assert problems == []
    assert state["seq"] == 6
    assert [t["trial_id"] for t in state["trials"]] == [t.trial_id for t in trials]
    by_id = {t["trial_id"]: t for t in state["trials"]}
    for step in range(1, 6):
        assert by_id[f"t{step:04d}"]["status"] == "TERMINATED"
        assert by_id[f"t{step:04d}"]["last_result"] == {"training_iteration": step}
    assert by_id["t0000"]["status"] == "PENDING"


def test_every_stored_field_reads_back_as_written(tmp_path):
    """Trial records spell their fields out (for speed): none may be forgotten, and configs
    JSON cannot hold exactly (tuples, int keys) come back exactly too."""
    storage = Storage.at(tmp_path)
    plain = Trial(
        "t0",
        0,
        "trial_0",
        "dir_0",
        {"lr": 0.1, "layers": [32, 64], "opt": {"n": None}},
        "0",
        ONE_CPU,
    )
    odd = Trial(
        "t1",
        1,
        "trial_1",
        "dir_1",
        {"shape": (3, 4), 7: "an int key", "limit": float("inf")},
        "1_shape=(3, 4)",
        ResourceRequest(((("CPU", 2.0), ("GPU", 1.0)), (("CPU", 1.0),)), "SPREAD"),
    )
    odd.status = "ERROR"
    odd.last_result = {"training_iteration": 4, "loss": 0.5}
    odd.committed_checkpoints = [{"path": "dir_1/checkpoint_000003", "training_iteration": 3}]
    odd.latest_checkpoint = odd.committed_checkpoints[-1]
    odd.num_failures = 2
    odd.error = "RuntimeError: boom"
    odd.epoch = 3
    odd.restore_from_scratch = True
    write(StateWriter(storage), [plain, odd])

    state, problems = read_state(storage)
    assert problems == []
    restored = [Trial.from_state(record) for record in state["trials"]]
    assert restored == [plain, odd]
    assert type(restored[1].config["shape"]) is tuple


def test_new_trials_arrive_through_deltas(tmp_path):
    storage = Storage.at(tmp_path)
    writer = StateWriter(storage)
    trials = make_trials(3)
    write(writer, trials)
    write(writer, trials)
    trials += make_trials(5)[3:]
    write(writer, trials)
    state, _ = read_state(storage)
    assert [t["trial_id"] for t in state["trials"]] == [f"t{i:04d}" for i in range(5)]


def test_a_damaged_delta_keeps_the_changes_before_it(tmp_path):
    storage = Storage.at(tmp_path)
    writer = StateWriter(storage)
    trials = make_trials(50)
    write(writer, trials)
    write(writer, trials)
    for step in range(3):
        trials[step].status = "TERMINATED"
        write(writer, trials)
    second = deltas_in(tmp_path)[1]
    with open(tmp_path / second, "w") as out:
        out.write('{"trials": [')
    state, problems = read_state(storage)
    assert len(problems) == 1 and second in problems[0]
    statuses = [t["status"] for t in state["trials"][:3]]
    assert statuses == ["TERMINATED", "PENDING", "PENDING"]  # the first delta, nothing after
    assert os.path.exists(tmp_path / second)  # reading never deletes


def test_a_damaged_newest_snapshot_falls_back_to_the_previous_one(tmp_path):
    storage = Storage.at(tmp_path)
    writer = StateWriter(storage)
    writer.MAX_DELTAS = 2
    trials = make_trials(20)
    write(writer, trials)
    write(writer, trials)
    for step in range(6):  # snapshots every third write now, deltas between
        trials[step].status = "TERMINATED"
        write(writer, trials)
    newest = max(STATE_FILES, key=lambda name: storage.read_json(name)["seq"])
    with open(tmp_path / newest, "r+") as damaged:
        damaged.truncate(10)
    state, problems = read_state(storage)
    assert len(problems) == 1 and newest in problems[0]
    # the previous snapshot and its deltas: every change but those after the damaged snapshot
    assert [t["status"] for t in state["trials"][:6]].count("TERMINATED") >= 3


def test_a_restored_writer_continues_the_sequence_without_losing_the_old_state(tmp_path):
    storage = Storage.at(tmp_path)
    first = StateWriter(storage)
    trials = make_trials(10)
    for step in range(4):
        trials[step].status = "TERMINATED"
        write(first, trials)
    state, _ = read_state(storage)
    restored = StateWriter(
        storage, state["seq"] + 1, 1 - state["snapshot_file"], state["snapshot_seq"]
    )
    trials[4].status = "TERMINATED"
    write(restored, trials)  # a snapshot into the other file; the old one and its deltas stay
    again, problems = read_state(storage)
    assert problems == [] and again["seq"] == state["seq"] + 1
    assert [t["status"] for t in again["trials"][:5]] == ["TERMINATED"] * 5
    assert deltas_in(tmp_path)  # the restored-from snapshot's deltas are still there
