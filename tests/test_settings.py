"""Settings: every environment variable is validated with an error naming it and the value; the
two that change how a run behaves are RunConfig fields too, which win over the variable and are
stored with the experiment, so a restore runs as the run did."""

import math
import os
import shutil
from pathlib import Path

import pytest

import rtune as tune
from rtune import _settings

FIXTURE = Path(__file__).parent / "fixtures" / "format_v1"


def simple(config):
    tune.report({"score": 1})


@pytest.mark.parametrize(
    ("variable", "raw", "read"),
    [
        ("RTUNE_STORAGE_RETRY_S", "soon", _settings.storage_retry_s),
        ("RTUNE_STORAGE_RETRY_S", "-1", _settings.storage_retry_s),
        ("RTUNE_STORAGE_RETRY_S", "nan", _settings.storage_retry_s),
        ("RTUNE_MAX_PENDING_TRIALS", "abc", _settings.max_pending_trials),
        ("RTUNE_MAX_PENDING_TRIALS", "0", _settings.max_pending_trials),
        ("RTUNE_MAX_PENDING_TRIALS", "", _settings.max_pending_trials),
        ("RTUNE_LEASE_TTL_S", "0", _settings.lease_ttl_s),
        ("RTUNE_LEASE_TTL_S", "31", _settings.lease_ttl_s),
        ("RTUNE_LEASE_TTL_S", "x", _settings.lease_ttl_s),
    ],
)
def test_a_bad_variable_is_an_error_naming_it_and_its_value(monkeypatch, variable, raw, read):
    monkeypatch.setenv(variable, raw)
    with pytest.raises(ValueError, match=f"{variable} must be .*got {raw!r}"):
        read()


def test_a_bad_variable_is_refused_even_where_a_config_field_overrides_it(monkeypatch):
    monkeypatch.setenv("RTUNE_MAX_PENDING_TRIALS", "lots")
    with pytest.raises(ValueError, match="RTUNE_MAX_PENDING_TRIALS"):
        _settings.max_pending_trials(4)


def test_variables_unset_or_empty_read_as_their_defaults(monkeypatch):
    for variable in ("RTUNE_STORAGE_RETRY_S", "RTUNE_LEASE_TTL_S", "RTUNE_STORAGE_PATH"):
        monkeypatch.setenv(variable, "")
    monkeypatch.delenv("RTUNE_MAX_PENDING_TRIALS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert _settings.storage_retry_s() == 120.0
    assert _settings.lease_ttl_s() == 15.0
    assert _settings.storage_path() is None
    assert _settings.max_pending_trials() == 1
    assert _settings.ray_address() == ""


def test_a_config_field_wins_over_its_variable(monkeypatch):
    monkeypatch.setenv("RTUNE_STORAGE_RETRY_S", "7")
    monkeypatch.setenv("RTUNE_MAX_PENDING_TRIALS", "5")
    assert _settings.storage_retry_s() == 7.0
    assert _settings.storage_retry_s(0) == 0.0
    assert _settings.max_pending_trials() == 5
    assert _settings.max_pending_trials(2) == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("storage_retry_s", -1),
        ("storage_retry_s", math.nan),
        ("storage_retry_s", "10"),
        ("storage_retry_s", True),
        ("max_pending_trials", 0),
        ("max_pending_trials", 1.5),
        ("max_pending_trials", "3"),
        ("max_pending_trials", True),
    ],
)
def test_a_bad_config_field_is_refused_before_anything_is_written(tmp_path, field, value):
    storage = tmp_path / "results"
    run_config = tune.RunConfig(storage_path=str(storage), name="x", **{field: value})
    with pytest.raises(ValueError, match=f"RunConfig.{field} must be .*got {value!r}"):
        tune.Tuner(simple, run_config=run_config)
    assert not storage.exists()


def test_the_configured_retry_window_is_the_one_a_failing_storage_is_retried_for(
    tmp_path, monkeypatch
):
    """A name longer than the filesystem allows fails every operation with an I/O error, as a
    broken store would: the StorageError says how long it was retried for."""
    monkeypatch.setenv("RTUNE_STORAGE_RETRY_S", "60")
    run_config = tune.RunConfig(storage_path=str(tmp_path), name="x" * 300, storage_retry_s=0.2)
    with pytest.raises(tune.StorageError, match=r"retried for 0\.2 s"):
        tune.Tuner(simple, run_config=run_config)


def test_a_restore_runs_with_the_stored_settings_not_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RTUNE_STORAGE_RETRY_S", "60")
    monkeypatch.setenv("RTUNE_MAX_PENDING_TRIALS", "5")
    run_config = tune.RunConfig(
        storage_path=str(tmp_path), name="kept", storage_retry_s=0.5, max_pending_trials=3
    )
    tune.Tuner(simple, run_config=run_config)  # writes the experiment's metadata
    monkeypatch.setenv("RTUNE_STORAGE_RETRY_S", "30")
    monkeypatch.setenv("RTUNE_MAX_PENDING_TRIALS", "4")

    restored = tune.Tuner.restore(os.path.join(tmp_path, "kept"))
    assert restored.run_config.storage_retry_s == 0.5
    assert restored.run_config.max_pending_trials == 3
    assert restored._storage().retry_s == 0.5
    assert restored._pending_demand() == 3


def test_an_experiment_stored_before_the_fields_existed_reads_them_from_the_environment(
    tmp_path, monkeypatch
):
    target = tmp_path / "format_v1"
    shutil.copytree(FIXTURE, target)
    monkeypatch.setenv("RTUNE_STORAGE_RETRY_S", "30")
    monkeypatch.setenv("RTUNE_MAX_PENDING_TRIALS", "2")
    restored = tune.Tuner.restore(str(target))
    assert restored.run_config.storage_retry_s is None
    assert restored.run_config.max_pending_trials is None
    assert restored._storage().retry_s == 30.0
    assert restored._pending_demand() == 2
