"""The status block printed while `fit()` runs, in the spirit of Ray Tune's."""

from __future__ import annotations

import json
from typing import Any

from rtune._durable.history import flatten
from rtune._execution.driver_messages import Status, StatusRow

_SHOWN_METRICS = 4
_SKIP = {
    "trial_id",
    "experiment_tag",
    "hostname",
    "node_ip",
    "pid",
    "date",
    "timestamp",
    "done",
    "time_this_iter_s",
    "time_since_restore",
    "iterations_since_restore",
    "checkpoint_dir_name",
}


def _memory_line() -> str:
    try:
        with open("/proc/meminfo") as src:
            info = {line.split(":")[0]: int(line.split()[1]) for line in src}
        total = info["MemTotal"] / 2**20
        used = total - info["MemAvailable"] / 2**20
        return f"Memory usage on this node: {used:.1f}/{total:.1f} GiB"
    except (OSError, KeyError, ValueError):
        return "Memory usage on this node: unknown"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 24 else text[:21] + "..."


def format_status(status: Status, experiment_path: str, available: dict[str, float]) -> str:
    counts = status.counts
    total = status.total_trials
    finished = counts.get("TERMINATED", 0) + counts.get("ERROR", 0)
    by_status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    requested = status.requested
    resources = ", ".join(
        f"{requested.get(key, 0):g}/{available.get(key, 0):g} {key}s" for key in ("CPU", "GPU")
    )
    lines = [
        "== Status ==",
        _memory_line(),
        status.scheduler,
        f"Resources requested: {resources}",
        f"Result logdir: {experiment_path}",
        f"Number of trials: {status.num_trials}"
        + (f"/{total}" if total else "")
        + (f" ({by_status})" if by_status else ""),
        f"Progress: {finished} of {total or status.num_trials} trials finished, "
        f"{status.elapsed_s:.1f} s elapsed",
    ]
    if status.drain_reason:
        lines.append(f"Stopping: {status.drain_reason}")
    lines.extend(_table(status.rows))
    return "\n".join(lines)


def _table(rows: tuple[StatusRow, ...]) -> list[str]:
    if not rows:
        return []
    config_keys: list[str] = []
    metric_keys: list[str] = []
    for row in rows:
        for key in flatten(row.config):
            if key not in config_keys:
                config_keys.append(key)
        for key, value in row.last_result.items():
            if key not in _SKIP and key not in metric_keys and not isinstance(value, dict):
                metric_keys.append(key)
    metric_keys = metric_keys[: _SHOWN_METRICS + 2]
    header = ["Trial name", "status", *config_keys, *metric_keys]
    body = []
    for row in rows:
        config = flatten(row.config)
        body.append(
            [row.name, row.status]
            + [_fmt(config.get(k, "")) for k in config_keys]
            + [_fmt(row.last_result.get(k, "")) for k in metric_keys]
        )
    widths = [max(len(str(cell)) for cell in col) for col in zip(header, *body)]
    line = "+-" + "-+-".join("-" * w for w in widths) + "-+"
    fmt = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return [line, fmt(header), line, *[fmt(cells) for cells in body], line]
