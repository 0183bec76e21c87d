"""Every environment variable rtune reads, read and validated here and nowhere else.

- RAY_ADDRESS: the Ray cluster `fit()` and `rtune stop` join (else a live local one, else `fit()`
  starts its own). Its form is Ray's to check.
- RTUNE_STORAGE_PATH: `RunConfig.storage_path` when a run gives none (else ~/rtune_results).
- RTUNE_STORAGE_RETRY_S: seconds a failing storage operation is retried before `StorageError`
  (default 120), where `RunConfig.storage_retry_s` is None.
- RTUNE_MAX_PENDING_TRIALS: how many trials' resource demand waits at once, which is what an
  autoscaler sees (default 1), where `RunConfig.max_pending_trials` is None.
- RTUNE_LEASE_TTL_S: how long a lease holder that stopped renewing still counts as alive
  (default 15, at most 30 seconds).

The two settings that change how an experiment runs are RunConfig fields too: RunConfig is stored
with the experiment, so a restore runs the way the run did rather than the way the restoring
shell's environment says. A field that is set wins over the variable; the variable is still
validated, so a typo in it is an error now and not when the field is dropped.

A bad value is a ValueError naming the variable and the value, raised before any work starts.
Nothing here imports rtune: every module can read its settings without an import cycle.
"""

from __future__ import annotations

import os

RAY_ADDRESS_ENV = "RAY_ADDRESS"
STORAGE_PATH_ENV = "RTUNE_STORAGE_PATH"
STORAGE_RETRY_ENV = "RTUNE_STORAGE_RETRY_S"
PENDING_TRIALS_ENV = "RTUNE_MAX_PENDING_TRIALS"
LEASE_TTL_ENV = "RTUNE_LEASE_TTL_S"

DEFAULT_STORAGE_RETRY_S = 120.0
DEFAULT_PENDING_TRIALS = 1
DEFAULT_LEASE_TTL_S = 15.0
MAX_LEASE_TTL_S = 30.0


def ray_address() -> str:
    """The cluster RAY_ADDRESS names ("" when unset); its form is Ray's to check."""
    return os.environ.get(RAY_ADDRESS_ENV, "")


def storage_path() -> str | None:
    """RTUNE_STORAGE_PATH, or None when it is unset or empty."""
    return os.environ.get(STORAGE_PATH_ENV) or None


def storage_retry_s(configured: float | None = None) -> float:
    """The storage retry window: `configured` (RunConfig.storage_retry_s, validated there) when
    set, else RTUNE_STORAGE_RETRY_S (unset or empty: the default)."""
    raw = os.environ.get(STORAGE_RETRY_ENV, "")
    seconds = DEFAULT_STORAGE_RETRY_S
    if raw:
        try:
            seconds = float(raw)
        except ValueError:
            seconds = -1.0
        if not seconds >= 0:  # NaN too
            raise ValueError(f"{STORAGE_RETRY_ENV} must be a number of seconds >= 0, got {raw!r}")
    return seconds if configured is None else float(configured)


def max_pending_trials(configured: int | None = None) -> int:
    """How many trials' demand waits for resources at once: `configured`
    (RunConfig.max_pending_trials, validated there) when set, else RTUNE_MAX_PENDING_TRIALS. 1
    keeps a fixed cluster from spawning workers it cannot use; on an autoscaling cluster N (as
    Ray Tune's TUNE_MAX_PENDING_TRIALS_PG) lets it scale up several nodes at once. Set but empty
    is an error, as it always was."""
    raw = os.environ.get(PENDING_TRIALS_ENV, str(DEFAULT_PENDING_TRIALS))
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{PENDING_TRIALS_ENV} must be a whole number >= 1, got {raw!r}")
    return value if configured is None else configured


def lease_ttl_s() -> float:
    """How long a lease holder that stops renewing still counts as alive (unset or empty: the
    default). Capped, since a waiting run waits this long for a holder that may be dead."""
    raw = os.environ.get(LEASE_TTL_ENV, "")
    try:
        seconds = float(raw) if raw else DEFAULT_LEASE_TTL_S
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= MAX_LEASE_TTL_S:
        raise ValueError(
            f"{LEASE_TTL_ENV} must be a number of seconds in (0, {MAX_LEASE_TTL_S:g}], got {raw!r}"
        )
    return seconds
