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
from typing import Any

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


def _read_segment(storage: Storage, relpath: str) -> pa.Table:
    return ipc.open_file(pa.py_buffer(storage.read_bytes(relpath))).read_all()


def read_history(storage: Storage, trial_relpath: str) -> pa.Table | None:
    """The trial's results, each training_iteration once, oldest first; None if none exist."""
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
    for epoch in sorted(set(segments) | set(starts)):
        if epoch in starts:
            kept = [_cut_after(table, starts[epoch]) for table in kept]
        kept.extend(_read_segment(storage, path) for _, path in sorted(segments.get(epoch, [])))
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
