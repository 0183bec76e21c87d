"""Storage through pyarrow.fs against a real S3-compatible server (moto, on 127.0.0.1): what a user
on object storage checks — results and checkpoints readable from anywhere, credentials nowhere."""

from __future__ import annotations

import os
import tempfile

import pyarrow.fs as pafs
import pytest
from conftest import S3_BUCKET, experiment_path

import rtune as tune
from cluster.s3_server import CREDENTIALS


def checkpointing(config):
    start = 0
    if tune.get_checkpoint():
        with tune.get_checkpoint().as_directory() as directory:
            start = int(open(os.path.join(directory, "step")).read())
    for step in range(start + 1, 4):
        with tempfile.TemporaryDirectory() as directory:
            with open(os.path.join(directory, "step"), "w") as out:
                out.write(str(step))
            with open(os.path.join(directory, "weights.bin"), "wb") as out:
                out.write(os.urandom(1024) * config["kb"])
            tune.report({"step": step}, checkpoint=tune.Checkpoint.from_directory(directory))


def all_objects(fs: pafs.FileSystem, root: str) -> dict[str, bytes]:
    selector = pafs.FileSelector(root, recursive=True)
    found = {}
    for info in fs.get_file_info(selector):
        if info.type == pafs.FileType.File:
            with fs.open_input_stream(info.path) as src:
                found[info.path] = src.read()
    return found


def test_an_experiment_on_s3_is_readable_from_a_fresh_tuner(s3_storage, s3_server, tmp_path):
    grid = tune.Tuner(
        checkpointing,
        param_space={"kb": tune.grid_search([1, 64])},
        run_config=tune.RunConfig(storage_path=s3_storage, name="on_s3", verbose=0),
    ).fit()
    location = experiment_path(s3_storage, "on_s3")
    assert grid.experiment_path == location

    results = tune.Tuner.restore(location).get_results()  # only storage in common with the run
    assert sorted(r.metrics["step"] for r in results) == [3, 3]
    for result in results:
        assert list(result.metrics_dataframe["step"]) == [1, 2, 3]
        with result.checkpoint.as_directory() as directory:
            assert sorted(os.listdir(directory)) == ["step", "weights.bin"]
            assert open(os.path.join(directory, "step")).read() == "3"
            size = os.path.getsize(os.path.join(directory, "weights.bin"))
            assert size == 1024 * result.config["kb"]

    stored = all_objects(s3_server.filesystem(), f"{S3_BUCKET}/{tmp_path.name}")
    assert any(path.endswith("tuner.pkl") for path in stored)
    for path, data in stored.items():  # no credential reached the experiment's files
        for secret in (CREDENTIALS["AWS_SECRET_ACCESS_KEY"], CREDENTIALS["AWS_ACCESS_KEY_ID"]):
            assert secret.encode() not in data, path


def test_an_explicit_filesystem_is_used_and_never_stored(s3_server, ray_local, tmp_path):
    """A filesystem object may hold credentials: it is used, never pickled into the experiment,
    and given again on restore."""
    fs = s3_server.filesystem()
    root = f"{S3_BUCKET}/{tmp_path.name}"
    tune.Tuner(
        checkpointing,
        param_space={"kb": 1},
        run_config=tune.RunConfig(
            storage_path=root, storage_filesystem=fs, name="explicit", verbose=0
        ),
    ).fit()
    stored = all_objects(fs, root)
    assert any(path.endswith("checkpoint_000002/step") for path in stored)
    for path, data in stored.items():
        assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"].encode() not in data, path
    grid = tune.Tuner.restore(f"{root}/explicit", storage_filesystem=fs).get_results()
    assert grid[0].metrics["step"] == 3


@pytest.mark.parametrize(
    "uri",
    [
        "s3://AKIAEXAMPLE:TOPSECRET@bucket/exps",
        "s3://bucket/exps?access_key=AKIAEXAMPLE&secret_key=TOPSECRET",
    ],
)
def test_credentials_in_a_uri_are_refused_without_echoing_them(uri):
    with pytest.raises(ValueError, match="carries credentials") as error:
        tune.Tuner(checkpointing, run_config=tune.RunConfig(storage_path=uri)).fit()
    assert "TOPSECRET" not in str(error.value)
