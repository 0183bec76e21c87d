"""Damaged files at an experiment's root, on real runs on the session Ray (issue 11, item 3).

A small finished experiment is copied, and each file at its root (as a listing of it finds them,
so a file a later change adds is covered too) is cut to half its length, one at a time and all at
once. A restore then either completes with the experiment's trials, warning about the damaged
file, or refuses with an error naming it and saying what to do; a refused restore changes no byte.
"""

from __future__ import annotations

import os
import shutil

import pytest
from test_damaged_experiments import contents

import rtune as tune

IDS = [0, 1]
ITERATIONS = 2


def counts(config):
    for it in range(ITERATIONS):
        tune.report({"id": config["id"], "it": it + 1})


SPACE = {"id": tune.grid_search(IDS)}


@pytest.fixture(scope="module")
def finished(ray_local, tmp_path_factory):
    base = tmp_path_factory.mktemp("metadata")
    tune.Tuner(
        counts,
        param_space=SPACE,
        run_config=tune.RunConfig(storage_path=str(base), name="exp", verbose=0),
    ).fit()
    return str(base / "exp")


def root_files(path: str) -> list[str]:
    """The files at the experiment's root. The lease file (`.rtune_lease*`) is left out: its
    own damage handling belongs to the one-writer lease and is tested with it."""
    return sorted(
        name
        for name in os.listdir(path)
        if os.path.isfile(os.path.join(path, name)) and not name.startswith(".rtune_lease")
    )


def cut_to_half(path: str) -> None:
    with open(path, "rb") as src:
        data = src.read()
    with open(path, "wb") as dst:
        dst.write(data[: len(data) // 2])


def copy_of(finished: str, where) -> str:
    path = str(where / "exp")
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(finished, path)
    return path


def assert_right_trials(results) -> None:
    by_id = {r.config["id"]: r for r in results}
    assert sorted(by_id) == IDS
    for result in by_id.values():
        assert result.status == "TERMINATED", result.error
        assert result.metrics["it"] == ITERATIONS


def restore_outcome(path: str, damaged: list[str], capfd, **given) -> str:
    """Restore the damaged copy and check what the user sees: "recovered" (the trials, and a
    warning naming a damaged file) or "refused" (an error naming one, no byte changed)."""
    before = contents(path)
    capfd.readouterr()
    try:
        results = tune.Tuner.restore(path, **given).fit()
    except (ValueError, TypeError) as exc:
        message = str(exc)
        assert any(os.path.join(path, name) in message for name in damaged), message
        assert "Nothing in storage was changed" in message, message
        assert "Traceback" not in message
        assert contents(path) == before, "a refused restore changed the experiment"
        return "refused"
    assert_right_trials(results)
    err = capfd.readouterr().err
    assert any(os.path.join(path, name) in err for name in damaged), err
    return "recovered"


def test_the_root_holds_the_metadata_twice(finished):
    names = root_files(finished)
    assert "tuner.pkl" in names and "tuner_copy.pkl" in names, names
    assert tune.Tuner.can_restore(finished)


def test_each_root_file_cut_to_half_is_recovered_from_or_named(finished, tmp_path, capfd):
    """One file at a time. A loop rather than a parametrization: the files are known only once
    the experiment has run. The metadata has a second copy, so either copy's damage recovers."""
    outcomes = {}
    for name in root_files(finished):
        path = copy_of(finished, tmp_path)
        cut_to_half(os.path.join(path, name))
        outcomes[name] = restore_outcome(path, [name], capfd)
    assert outcomes["tuner.pkl"] == "recovered"
    assert outcomes["tuner_copy.pkl"] == "recovered"
    assert len(outcomes) >= 3, outcomes  # the state as well as the metadata


def test_every_root_file_cut_to_half_is_refused_naming_the_metadata(finished, tmp_path, capfd):
    path = copy_of(finished, tmp_path)
    names = root_files(path)
    for name in names:
        cut_to_half(os.path.join(path, name))
    assert tune.Tuner.can_restore(path)  # it is an experiment: restore says what is wrong
    assert restore_outcome(path, ["tuner.pkl"], capfd) == "refused"
    # the trainable and param_space given again cannot stand in for the configs
    assert restore_outcome(path, ["tuner.pkl"], capfd, trainable=counts, param_space=SPACE) == (
        "refused"
    )


def test_both_metadata_copies_damaged_is_refused_with_what_to_do(finished, tmp_path, capfd):
    path = copy_of(finished, tmp_path)
    for name in ("tuner.pkl", "tuner_copy.pkl"):
        cut_to_half(os.path.join(path, name))
    before = contents(path)
    with pytest.raises(ValueError) as raised:
        tune.Tuner.restore(path)
    message = str(raised.value)
    for name in ("tuner.pkl", "tuner_copy.pkl"):
        assert os.path.join(path, name) in message
    assert "from a backup" in message and "another name" in message
    assert contents(path) == before


def test_an_unloadable_object_in_one_copy_is_read_from_the_other(finished, tmp_path, capfd):
    """Each user object is pickled on its own: a trainable tuner.pkl cannot load is taken from
    the copy, and the rest still from tuner.pkl."""
    import cloudpickle

    path = copy_of(finished, tmp_path)
    main = os.path.join(path, "tuner.pkl")
    with open(main, "rb") as src:
        metadata = cloudpickle.loads(src.read())
    metadata["trainable"] = metadata["trainable"][: len(metadata["trainable"]) // 2]
    with open(main, "wb") as dst:
        dst.write(cloudpickle.dumps(metadata))
    assert restore_outcome(path, ["tuner.pkl"], capfd) == "recovered"
