"""A trial's result history in storage: append-only Arrow segments, one history on read.

Every run of a trial (first start, retry, restore) is an *epoch*. An epoch that resumed from the
checkpoint at iteration k writes a start marker `e0003-start-00000005`; a reader drops earlier
epochs' rows past k. So after any number of crashes and restores the history holds each
`training_iteration` once, and nothing written before is ever rewritten or deleted.
"""

from __future__ import annotations

import json
import posixpath
import re
import sys
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from rtune._storage import Storage

RESULTS_DIR = "results"
_SEGMENT = re.compile(r"^e(\d+)-(\d+)-(\d+)\.arrow$")
_START = re.compile(r"^e(\d+)-start-(\d+)$")


def flatten(result: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in result.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}/"))
        else:
            flat[name] = value
    return flat


def _column(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        return pa.array([None if v is None else _as_text(v) for v in values], type=pa.string())


def _as_text(value: Any) -> str:
    """A value of a column whose rows hold several types: strings stay as they are."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=repr)
    except (TypeError, ValueError):
        return repr(value)


def rows_to_table(rows: list[dict]) -> pa.Table:
    flat_rows = [flatten(row) for row in rows]
    try:  # Arrow's own inference, one pass over the rows (columns: the union of their keys)
        return pa.Table.from_struct_array(pa.array(flat_rows))
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        pass
    names: dict[str, None] = {}
    for row in flat_rows:
        names.update(dict.fromkeys(row))
    columns = {name: _column([row.get(name) for row in flat_rows]) for name in names}
    return pa.table(columns)


class ResultsWriter:
    """Buffers one epoch's results and writes them as immutable segments."""

    def __init__(self, storage: Storage, trial_relpath: str, epoch: int, start_iteration: int):
        self.storage = storage
        self.dir = posixpath.join(trial_relpath, RESULTS_DIR)
        self.epoch = epoch
        self.pending: list[dict] = []
        storage.makedirs(self.dir)
        if epoch > 0:
            storage.write_atomic(
                posixpath.join(self.dir, f"e{epoch:04d}-start-{start_iteration:08d}"), b""
            )

    def append(self, result: dict) -> None:
        self.pending.append(result)

    def flush(self) -> None:
        if not self.pending:
            return
        first = self.pending[0].get("training_iteration", 0)
        last = self.pending[-1].get("training_iteration", 0)
        table = rows_to_table(self.pending)
        sink = pa.BufferOutputStream()
        with ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        name = f"e{self.epoch:04d}-{first:08d}-{last:08d}.arrow"
        data = sink.getvalue().to_pybytes()
        self.storage.write_atomic(posixpath.join(self.dir, name), data, make_parents=False)
        self.pending = []


class HistoryDamage(NamedTuple):
    """A results segment that could not be read whole: rows from `lost_from` on are missing."""

    uri: str
    lost_from: int
    reason: str

    def __str__(self) -> str:
        return (
            f"{self.uri} is damaged ({self.reason}); the history keeps the rows before "
            f"training_iteration {self.lost_from}"
        )


def _read_segment(
    storage: Storage, relpath: str, first: int
) -> tuple[pa.Table | None, HistoryDamage | None]:
    """The segment's rows; for a damaged one (cut short, say), the whole record batches before
    the damage and what was lost."""
    data = storage.read_bytes(relpath)
    try:
        return ipc.open_file(pa.py_buffer(data)).read_all(), None
    except pa.ArrowException as exc:
        salvaged = _salvage(data)
        lost_from = first
        if salvaged is not None and "training_iteration" in salvaged.column_names:
            done = pc.max(salvaged.column("training_iteration")).as_py()
            lost_from = first if done is None else done + 1
        return salvaged, HistoryDamage(storage.uri(relpath), lost_from, str(exc))


def _salvage(data: bytes) -> pa.Table | None:
    """The whole, valid record batches at the start of a damaged Arrow file (an Arrow file is
    its 8-byte magic, then an Arrow stream, then a footer)."""
    if not data.startswith(b"ARROW1"):
        return None
    batches = []
    try:
        reader = ipc.open_stream(pa.py_buffer(data)[8:])
        for batch in reader:
            batch.validate(full=True)
            batches.append(batch)
    except (pa.ArrowException, ValueError):
        pass
    return pa.Table.from_batches(batches) if batches else None


def read_history(
    storage: Storage, trial_relpath: str, damage: list[HistoryDamage] | None = None
) -> pa.Table | None:
    """The trial's results, each training_iteration once, oldest first; None if none exist.

    A damaged segment gives the rows before its damage; its `HistoryDamage` is added to `damage`
    (or, without that list, printed as a warning naming the file) unless a later epoch restarted
    before the damage, so the lost rows were superseded anyway. Nothing is rewritten."""
    results_dir = posixpath.join(trial_relpath, RESULTS_DIR)
    starts: dict[int, int] = {}
    segments: dict[int, list[tuple[int, str]]] = {}
    for info in storage.list_dir(results_dir):
        if match := _SEGMENT.match(info.base_name):
            epoch, first = int(match[1]), int(match[2])
            segments.setdefault(epoch, []).append(
                (first, posixpath.join(results_dir, info.base_name))
            )
        elif match := _START.match(info.base_name):
            starts[int(match[1])] = int(match[2])
    kept: list[pa.Table] = []
    found: list[HistoryDamage] = []
    for epoch in sorted(set(segments) | set(starts)):
        if epoch in starts:
            kept = [_cut_after(table, starts[epoch]) for table in kept]
        # rows of this epoch past a later epoch's start are cut: damage there lost nothing
        later = [start for later_epoch, start in starts.items() if later_epoch > epoch]
        for first, path in sorted(segments.get(epoch, [])):
            table, problem = _read_segment(storage, path, first)
            if table is not None:
                kept.append(table)
            if problem is not None and (not later or problem.lost_from <= min(later)):
                found.append(problem)
    if damage is not None:
        damage.extend(found)
    else:
        for problem in found:
            print(f"rtune: WARNING: {problem}", file=sys.stderr)
    kept = [table for table in kept if table.num_rows]
    if not kept:
        return None
    return pa.concat_tables(kept, promote_options="permissive")


def _cut_after(table: pa.Table, iteration: int) -> pa.Table:
    if "training_iteration" not in table.column_names:
        return table
    return table.filter(pc.less_equal(table.column("training_iteration"), iteration))


def max_epoch(storage: Storage, trial_relpath: str) -> int:
    """The highest epoch that left anything in storage (-1 if none); a new one goes above it."""
    highest = -1
    for info in storage.list_dir(posixpath.join(trial_relpath, RESULTS_DIR)):
        match = _SEGMENT.match(info.base_name) or _START.match(info.base_name)
        if match:
            highest = max(highest, int(match[1]))
    return highest
