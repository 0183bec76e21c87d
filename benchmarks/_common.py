"""What every benchmark script shares: one Ray for both libraries, and the side-by-side table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import ray


def start_ray(num_cpus: int | None = None) -> None:
    """One local Ray for the whole run, both libraries on it; its start-up is reported apart."""
    started = time.perf_counter()
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    print(f"ray start-up: {time.perf_counter() - started:.2f} s")


def alternate(runs: list[tuple[str, Callable[[], dict]]], repeat: int) -> dict[str, dict]:
    """Run each library's workload in turn, `repeat` rounds; the median of each figure."""
    figures: dict[str, dict[str, list[float]]] = {}
    for _ in range(repeat):
        for lib, run in runs:
            for key, value in run().items():
                figures.setdefault(lib, {}).setdefault(key, []).append(value)
    return {
        lib: {key: statistics.median(values) for key, values in by_key.items()}
        for lib, by_key in figures.items()
    }


def show(value: float | None, unit: str = "") -> str:
    """A figure with its unit: "B" bytes, "s" seconds, "ms" seconds shown in ms, "%" a share."""
    if value is None:
        return "n/a"
    if unit == "B":
        return f"{value / 1e6:.2f} MB" if value >= 1e6 else f"{value / 1e3:.1f} kB"
    if unit == "ms":
        return f"{value * 1000:.0f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "%":
        return f"{value:.1%}"
    return f"{value:,.0f}"


def print_comparison(rows: list[tuple[str, str, str]], medians: dict[str, dict]) -> None:
    """rtune beside Ray Tune, one row per (label, figure key, unit), with Ray Tune / rtune."""
    width = max(len(label) for label, _, _ in rows) + 2
    print(f"{'':{width}s} {'rtune':>12s} {'ray tune':>12s} {'ray tune / rtune':>17s}")
    for label, key, unit in rows:
        ours = medians["rtune"].get(key)
        theirs = medians.get("ray tune", {}).get(key)
        ratio = f"{theirs / ours:.2g}x" if ours and theirs is not None else "n/a"
        print(f"{label:{width}s} {show(ours, unit):>12s} {show(theirs, unit):>12s} {ratio:>17s}")
