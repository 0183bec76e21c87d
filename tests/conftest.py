"""Shared fixtures: one real local Ray for the in-process tests (4 logical CPUs and a custom
resource), on 127.0.0.1 only."""

from __future__ import annotations

import os
import tempfile

import pytest
import ray

from cluster.s3_server import CREDENTIALS as S3_CREDENTIALS

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Ray resolves 127.0.0.1 to the machine's reachable address unless told it runs single-node; tests
# keep all traffic on loopback, so every Ray started here (and in subprocess drivers) uses it.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# Tuner(...) writes its experiment's metadata: a test that builds one without a storage_path
# writes under this, not under the default ~/rtune_results
os.environ.setdefault("RTUNE_STORAGE_PATH", tempfile.mkdtemp(prefix="rtune-tests-"))
# The test S3 server's credentials, in the environment before any Ray starts: Ray's workers (the
# controller and trial actors write to storage) inherit the environment Ray started with, as on a
# real cluster whose nodes carry the credentials. Without them, pyarrow sends unsigned, chunked
# uploads that moto stores with their chunk framing.
os.environ.update(S3_CREDENTIALS)


def pytest_collection_modifyitems(config, items):
    """Mark every test that runs on the session's Ray `ray`, so `make test-fast` can leave them
    out but for those marked `smoke` (one real run per area)."""
    for item in items:
        if "ray_local" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ray)


@pytest.fixture(scope="session")
def ray_local():
    if not ray.is_initialized():
        ray.init(
            address="local",
            num_cpus=4,
            resources={"slot": 2},
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=True,
            # trial actors import trainables from the test modules, as a script's own directory
            # would be importable for a user's driver
            runtime_env={"env_vars": {"PYTHONPATH": os.path.dirname(__file__)}},
        )
    yield
    ray.shutdown()


@pytest.fixture
def storage(tmp_path, ray_local):
    return str(tmp_path / "results")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's real S3-compatible server on 127.0.0.1 (cluster/s3_server.py), with one bucket."""
    from cluster import s3_server as s3

    server = s3.start(log_path=str(tmp_path_factory.mktemp("moto") / "moto.log"))
    server.create_bucket(S3_BUCKET)
    yield server
    server.stop()


S3_BUCKET = "rtune-tests"


@pytest.fixture
def s3_storage(s3_server, tmp_path, ray_local):
    """A storage_path URI on the S3 server, unique to the test."""
    return s3_server.uri(S3_BUCKET, tmp_path.name)


def experiment_path(storage_path: str, name: str) -> str:
    """The experiment's location under a storage path or URI (a URI's query stays at the end)."""
    base, _, query = storage_path.partition("?")
    return f"{base.rstrip('/')}/{name}" + (f"?{query}" if query else "")
