"""Checkpoint retention and `Result.best_checkpoints`, as Ray Tune 2.60 keeps and lists them."""

from __future__ import annotations

import os

import pytest
from iteration_checkpoints import report_iteration, resume_iteration

import rtune as tune
from rtune._durable import checkpoints as retention

SCORES = [5, 1, 9, 2, 3, 0]


def _entries(scores: list) -> list[dict]:
    return [
        {"path": f"c{i}", "training_iteration": i + 1, "metrics": {} if s is None else {"score": s}}
        for i, s in enumerate(scores)
    ]


def _keep_all_the_way(scores: list, config: tune.CheckpointConfig) -> list[dict]:
    """What the controller keeps, one checkpoint at a time."""
    kept: list[dict] = []
    for entry in _entries(scores):
        kept.append(entry)
        dropped = retention.to_delete(kept, config)
        kept = [e for e in kept if all(e is not d for d in dropped)]
    return kept


def _scores(entries: list[dict]) -> list:
    return [e["metrics"].get("score") for e in entries]


# the rule, without Ray


def test_best_two_by_max_leave_out_the_latest_but_keep_it():
    config = tune.CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="score")
    kept = _keep_all_the_way(SCORES, config)
    assert _scores(kept) == [5, 9, 0]  # the latest stays on disk to resume from
    assert _scores(retention.best(kept, config)) == [5, 9]  # worst of the best first


def test_best_two_by_min():
    config = tune.CheckpointConfig(
        num_to_keep=2, checkpoint_score_attribute="score", checkpoint_score_order="min"
    )
    kept = _keep_all_the_way(SCORES, config)
    assert _scores(kept) == [1, 0]
    assert _scores(retention.best(kept, config)) == [1, 0]


def test_no_score_attribute_keeps_the_newest():
    config = tune.CheckpointConfig(num_to_keep=2)
    kept = _keep_all_the_way(SCORES, config)
    assert _scores(kept) == [3, 0]
    assert _scores(retention.best(kept, config)) == [3, 0]


def test_num_to_keep_none_keeps_and_lists_all_ranked():
    config = tune.CheckpointConfig(checkpoint_score_attribute="score")
    kept = _keep_all_the_way(SCORES, config)
    assert _scores(kept) == SCORES
    assert _scores(retention.best(kept, config)) == sorted(SCORES)


def test_ties_keep_report_order_and_a_missing_score_goes_last():
    config = tune.CheckpointConfig(checkpoint_score_attribute="score")
    entries = _entries([2, 2, None, 1])
    assert [e["path"] for e in retention.ranked(entries, config)] == ["c3", "c0", "c1", "c2"]


def test_a_nan_score_is_worst():
    config = tune.CheckpointConfig(num_to_keep=1, checkpoint_score_attribute="score")
    kept = _keep_all_the_way([float("nan"), 3, 1], config)
    assert _scores(kept) == [3, 1]
    assert _scores(retention.best(kept, config)) == [3]


# what a user sees, on real Ray


def scored(config):
    start = resume_iteration()
    for it in range(start, len(config["scores"])):
        if it == config.get("fail_at") and not os.path.exists(config["marker"]):
            open(config["marker"], "w").close()
            raise RuntimeError("fails once")
        report_iteration(it + 1, {"score": config["scores"][it], "extra": it * 10})


def _fit(storage, config, checkpoint_config, name="exp", trainable=scored):
    tuner = tune.Tuner(
        trainable,
        param_space=config,
        run_config=tune.RunConfig(
            name=name, storage_path=storage, checkpoint_config=checkpoint_config, verbose=0
        ),
    )
    return tuner.fit()[0]


@pytest.mark.smoke
def test_best_checkpoints_of_a_function_trainable(storage):
    result = _fit(
        storage,
        {"scores": SCORES},
        tune.CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="score"),
    )
    best = result.best_checkpoints
    assert [m["score"] for _, m in best] == [5, 9]
    assert [m["extra"] for _, m in best] == [0, 20]  # the whole result, read from the history
    assert [m["training_iteration"] for _, m in best] == [1, 3]
    assert result.checkpoint not in [c for c, _ in best]  # the latest, score 0
    with result.checkpoint.as_directory() as directory:
        assert open(os.path.join(directory, "it")).read() == "6"


def test_best_checkpoints_by_min_and_without_a_score(storage):
    by_min = _fit(
        storage,
        {"scores": SCORES},
        tune.CheckpointConfig(
            num_to_keep=2, checkpoint_score_attribute="score", checkpoint_score_order="min"
        ),
        name="min",
    )
    assert [m["score"] for _, m in by_min.best_checkpoints] == [1, 0]
    newest = _fit(storage, {"scores": SCORES}, tune.CheckpointConfig(num_to_keep=2), name="new")
    assert [m["score"] for _, m in newest.best_checkpoints] == [3, 0]
    everything = _fit(storage, {"scores": SCORES}, tune.CheckpointConfig(), name="all")
    assert [m["score"] for _, m in everything.best_checkpoints] == SCORES


def test_best_checkpoints_after_a_restore(storage, tmp_path):
    config = tune.CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="score")
    space = {"scores": SCORES, "fail_at": 4, "marker": str(tmp_path / "failed")}
    _fit(storage, space, config)
    path = os.path.join(storage, "exp")
    result = tune.Tuner.restore(path, scored, resume_errored=True).fit()[0]
    assert result.status == "TERMINATED"
    assert [m["score"] for _, m in result.best_checkpoints] == [5, 9]
    assert [m["extra"] for _, m in result.best_checkpoints] == [0, 20]
    reread = tune.Tuner.restore(path, scored).get_results()[0]
    assert [m["score"] for _, m in reread.best_checkpoints] == [5, 9]


def test_best_checkpoints_on_s3(s3_storage):
    result = _fit(
        s3_storage,
        {"scores": SCORES},
        tune.CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="score"),
    )
    assert [(m["score"], m["extra"]) for _, m in result.best_checkpoints] == [(5, 0), (9, 20)]


class Scored(tune.Trainable):
    def setup(self, config):
        self.scores = config["scores"]

    def step(self):
        score = self.scores[self.iteration]
        return {"score": score, "done": self.iteration + 1 >= len(self.scores)}

    def save_checkpoint(self, checkpoint_dir):
        return {"it": self.iteration}

    def load_checkpoint(self, checkpoint):
        pass


def test_checkpoint_frequency_and_at_end_of_a_class_trainable(storage):
    result = _fit(
        storage,
        {"scores": SCORES},
        tune.CheckpointConfig(
            num_to_keep=2,
            checkpoint_score_attribute="score",
            checkpoint_frequency=2,
            checkpoint_at_end=True,
        ),
        trainable=Scored,
    )
    # checkpoints at iterations 2, 4, 6 (scores 1, 2, 0): the best two are 1 and 2
    assert [(m["training_iteration"], m["score"]) for _, m in result.best_checkpoints] == [
        (2, 1),
        (4, 2),
    ]
    assert result.checkpoint is not None


@pytest.mark.parametrize(
    "checkpoint_config",
    [tune.CheckpointConfig(checkpoint_frequency=2), tune.CheckpointConfig(checkpoint_at_end=True)],
)
def test_frequency_or_at_end_with_a_function_trainable_is_refused(storage, checkpoint_config):
    with pytest.raises(ValueError, match="function trainable"):
        tune.Tuner(
            scored,
            run_config=tune.RunConfig(storage_path=storage, checkpoint_config=checkpoint_config),
        )


# a Trainable and a Checkpoint used by hand, without a Tuner


class Counting(tune.Trainable):
    def setup(self, config):
        self.total = config["start"]
        self.cleaned = False

    def step(self):
        self.total += 1
        return {"total": self.total}

    def save_checkpoint(self, checkpoint_dir):
        return {"total": self.total}

    def load_checkpoint(self, checkpoint):
        self.total = checkpoint["total"]

    def cleanup(self):
        self.cleaned = True


def test_a_trainable_by_hand(tmp_path):
    t = Counting(config={"start": 10})
    first = t.train()
    assert first["total"] == 11 and first["training_iteration"] == 1 and first["done"] is False
    t.train()
    saved = t.save()
    assert (
        isinstance(saved.checkpoint, tune.Checkpoint) and saved.metrics["training_iteration"] == 2
    )
    into = t.save(str(tmp_path / "here"))
    assert into.checkpoint.path == str(tmp_path / "here")
    t.train()
    other = Counting(config={"start": 0})
    other.restore(saved)
    assert other.total == 12 and other.iteration == 2
    assert other.train()["training_iteration"] == 3
    other.restore(into.checkpoint)  # a bare Checkpoint: its state, iteration unknown (0)
    assert other.total == 12 and other.iteration == 0
    t.stop()
    assert t.cleaned


@pytest.mark.parametrize("where", ["local", "s3"])
def test_checkpoint_metadata(tmp_path, where, request):
    directory = tmp_path / "ckpt"
    directory.mkdir()
    checkpoint = tune.Checkpoint.from_directory(directory)
    if where == "s3":
        import pyarrow.fs as pafs

        uri = request.getfixturevalue("s3_storage")
        fs, base = pafs.FileSystem.from_uri(uri)
        fs.create_dir(base + "/ckpt")
        checkpoint = tune.Checkpoint(base + "/ckpt", fs)
    assert checkpoint.get_metadata() == {}
    checkpoint.set_metadata({"a": 1})
    checkpoint.update_metadata({"b": [2]})
    assert checkpoint.get_metadata() == {"a": 1, "b": [2]}
    checkpoint.set_metadata({"c": 3})
    assert checkpoint.get_metadata() == {"c": 3}
    with checkpoint.as_directory() as local:
        assert os.path.exists(os.path.join(local, ".metadata.json"))  # where Ray Tune keeps it
    with pytest.raises(TypeError, match="dict"):
        checkpoint.set_metadata([1])


# checkpoint directory numbers


def fails_once_at_three(config):
    """Four iterations with a checkpoint each; the first run fails before iteration 3's report."""
    start = resume_iteration()
    for it in range(start, 4):
        if it == 2 and not os.path.exists(config["failed"]):
            open(config["failed"], "w").close()
            raise RuntimeError("fails once")
        report_iteration(it + 1, {"it": it + 1})


def test_checkpoints_are_numbered_from_0_and_a_later_run_numbers_on(storage, tmp_path):
    """As Ray Tune's: `checkpoint_000000` first; the retry (a new run of the trial, resumed from
    iteration 2) goes on counting instead of reusing a number."""
    results = tune.Tuner(
        fails_once_at_three,
        param_space={"failed": str(tmp_path / "failed")},
        run_config=tune.RunConfig(
            storage_path=storage,
            name="numbers",
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=1),
        ),
    ).fit()
    result = results[0]
    assert result.status == "TERMINATED" and result.metrics["it"] == 4
    names = sorted(d for d in os.listdir(result.path) if d.startswith("checkpoint_"))
    assert names == [f"checkpoint_{i:06d}" for i in range(4)]
    assert os.path.basename(result.checkpoint.path) == "checkpoint_000003"
    assert [m["it"] for _, m in result.best_checkpoints] == [1, 2, 3, 4]
    assert list(result.metrics_dataframe["checkpoint_dir_name"]) == names


def reports_keys_rtune_once_used(config):
    import tempfile

    for i in range(2):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "w.txt"), "w") as f:
                f.write(str(i))
            metrics = {"_checkpoint": f"mine{i}", "_checkpoint_only": i, "score": i}
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))


def test_a_users_result_keys_are_never_taken_for_rtunes(storage):
    """What rtune says about a result (its checkpoint) travels beside it, never in it: keys it
    once used inside results are a user's like any other."""
    result = tune.Tuner(
        reports_keys_rtune_once_used,
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()[0]
    assert result.error is None
    assert result.metrics["_checkpoint"] == "mine1" and result.metrics["_checkpoint_only"] == 1
    frame = result.metrics_dataframe
    assert list(frame["_checkpoint"]) == ["mine0", "mine1"]
    with result.checkpoint.as_directory() as d:
        assert open(os.path.join(d, "w.txt")).read() == "1"
