"""A trial's result history in storage: append-only segments, one history on read.

Every run of a trial (first start, retry, restore) is an *epoch*. An epoch that resumed from the
checkpoint at iteration k writes a start marker `e0003-start-00000005`: what earlier epochs did
past k is *superseded* (see `superseded`), so a reader drops their rows past k, and a restore
never resumes from their checkpoints past k (an orphaned actor of a killed run may still commit
one after a restore began; a restarted trial's old checkpoints stay in storage). So after any
number of crashes and restores the history holds each `training_iteration` once, and nothing
written before is ever rewritten or deleted. An end marker `e0003-end-00000005` cuts an epoch
itself back to iteration 5: a trial that ran a few results past the one a stop was decided on
(see `ack_lead_s` in rtune/_execution/protocol.py) ends at that result.

A segment is JSON lines, one result per line (`e0000-00000001-00000020.jsonl`). The trial actor
only encodes JSON: building Arrow from Python rows makes pyarrow import pandas into every trial
process (~0.2 s and ~40 MB each, and the first trial of a fit() waited for it) and cost ~30% of a
trivial trial. The reader builds one Arrow table per history, with the same type inference the
rows would have had. Segments of experiments written before this format (`.arrow`, Arrow IPC
files) still read.
"""

from __future__ import annotations

import json
import posixpath
import re
import sys
from typing import Any, NamedTuple

import pyarrow as pa

from rtune._durable.storage import Storage, encode_json

RESULTS_DIR = "results"
_SEGMENT = re.compile(r"^e(\d+)-(\d+)-(\d+)\.(jsonl|arrow)$")
_START = re.compile(r"^e(\d+)-start-(\d+)$")
_END = re.compile(r"^e(\d+)-end-(\d+)$")


def end_marker(trial_relpath: str, epoch: int, iteration: int) -> str:
    """The marker that cuts `epoch` of a trial's history back to `iteration`."""
    return posixpath.join(trial_relpath, RESULTS_DIR, f"e{epoch:04d}-end-{iteration:08d}")


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

    def __init__(
        self,
        storage: Storage,
        trial_relpath: str,
        epoch: int,
        start_iteration: int,
        restored_from: str | None = None,
    ):
        """`restored_from`: the checkpoint this epoch resumes from when another trial wrote it
        (an exploit): its start marker says so, so the history tells where its rows after the
        start came from."""
        self.storage = storage
        self.dir = posixpath.join(trial_relpath, RESULTS_DIR)
        self.epoch = epoch
        self.pending: list[bytes] = []
        self.first = self.last = 0
        storage.makedirs(self.dir)
        if epoch > 0:
            origin = b"" if restored_from is None else encode_json({"restored_from": restored_from})
            storage.write_atomic(
                posixpath.join(self.dir, f"e{epoch:04d}-start-{start_iteration:08d}"), origin
            )

    def append(self, result: dict) -> None:
        """Encoded now: what is written is the result as it was reported."""
        if not self.pending:
            self.first = result.get("training_iteration", 0)
        self.last = result.get("training_iteration", 0)
        self.pending.append(encode_json(result) + b"\n")

    def flush(self) -> None:
        if not self.pending:
            return
        name = f"e{self.epoch:04d}-{self.first:08d}-{self.last:08d}.jsonl"
        data = b"".join(self.pending)
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
    storage: Storage, relpath: str, first: int, last: int
) -> tuple[list[dict], HistoryDamage | None]:
    """The segment's rows; for a damaged one (cut short, say), the whole rows before the damage
    and what was lost. A segment's name says which iterations it holds, so one cut at a line
    boundary is caught too."""
    data = storage.read_bytes(relpath)
    if relpath.endswith(".arrow"):
        rows, reason = _arrow_rows(data)
    else:
        rows, reason = _json_rows(data)
    done = rows[-1].get("training_iteration") if rows else None
    if reason is None and isinstance(done, int) and done < last:
        reason = f"its rows end at training_iteration {done}, its name says {last}"
    elif reason is None and not rows:
        reason = "it holds no rows"
    if reason is None:
        return rows, None
    lost_from = done + 1 if isinstance(done, int) else first
    return rows, HistoryDamage(storage.uri(relpath), lost_from, reason)


def _json_rows(data: bytes) -> tuple[list[dict], str | None]:
    rows = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            return rows, f"line {number} is not whole JSON: {exc}"
        if not isinstance(row, dict):
            return rows, f"line {number} is not a result"
        rows.append(row)
    return rows, None


def _arrow_rows(data: bytes) -> tuple[list[dict], str | None]:
    """An Arrow IPC file; for a damaged one, its whole record batches before the damage (an
    Arrow file is its 8-byte magic, then an Arrow stream, then a footer)."""
    import pyarrow.ipc as ipc

    try:
        return ipc.open_file(pa.py_buffer(data)).read_all().to_pylist(), None
    except pa.ArrowException as exc:
        reason = str(exc)
    rows: list[dict] = []
    if data.startswith(b"ARROW1"):
        try:
            for batch in ipc.open_stream(pa.py_buffer(data)[8:]):
                batch.validate(full=True)
                rows.extend(batch.to_pylist())
        except (pa.ArrowException, ValueError):
            pass
    return rows, reason


class ResultsIndex(NamedTuple):
    """What a trial's results directory holds, from one listing: {epoch: the iteration it
    resumed from} of every start marker, and {epoch: [(first, last, relpath)]} of its segments."""

    starts: dict[int, int]
    segments: dict[int, list[tuple[int, int, str]]]
    ends: dict[int, int]  # {epoch: the iteration its own rows are cut back to}

    @property
    def max_epoch(self) -> int:
        """The highest epoch that left anything (-1 if none); a new one goes above it."""
        return max([*self.starts, *self.segments, *self.ends], default=-1)


def index_results(storage: Storage, trial_relpath: str) -> ResultsIndex:
    results_dir = posixpath.join(trial_relpath, RESULTS_DIR)
    index = ResultsIndex({}, {}, {})
    for info in storage.list_dir(results_dir):
        if match := _SEGMENT.match(info.base_name):
            epoch, first, last = int(match[1]), int(match[2]), int(match[3])
            index.segments.setdefault(epoch, []).append(
                (first, last, posixpath.join(results_dir, info.base_name))
            )
        elif match := _START.match(info.base_name):
            index.starts[int(match[1])] = int(match[2])
        elif match := _END.match(info.base_name):
            epoch, cut = int(match[1]), int(match[2])
            index.ends[epoch] = min(cut, index.ends.get(epoch, cut))
    return index


def read_history(
    storage: Storage,
    trial_relpath: str,
    damage: list[HistoryDamage] | None = None,
    index: ResultsIndex | None = None,
) -> pa.Table | None:
    """The trial's results, each training_iteration once, oldest first; None if none exist.

    A damaged segment gives the rows before its damage; its `HistoryDamage` is added to `damage`
    (or, without that list, printed as a warning naming the file) unless a later epoch restarted
    before the damage, so the lost rows were superseded anyway. Nothing is rewritten. `index`:
    the directory as the caller listed it already."""
    kept = history_rows(storage, trial_relpath, damage, index)
    return rows_to_table(kept) if kept else None


def history_rows(
    storage: Storage,
    trial_relpath: str,
    damage: list[HistoryDamage] | None = None,
    index: ResultsIndex | None = None,
) -> list[dict]:
    """`read_history`'s rows as the trial reported them (dicts, nested ones kept)."""
    starts, segments, ends = index or index_results(storage, trial_relpath)
    kept: list[dict] = []
    found: list[HistoryDamage] = []
    for epoch in sorted(segments):
        cut = _superseded_past(epoch, starts, ends)
        for first, last, path in sorted(segments[epoch]):
            if first > cut:
                continue  # a later epoch restarted before any of its rows
            rows, problem = _read_segment(storage, path, first, last)
            kept.extend(row for row in rows if (_iteration(row) or 0) <= cut)
            if problem is not None and problem.lost_from <= cut:
                found.append(problem)
    if damage is not None:
        damage.extend(found)
    else:
        for problem in found:
            print(f"rtune: WARNING: {problem}", file=sys.stderr)
    return kept


def superseded(
    epoch: int, iteration: int, starts: dict[int, int], ends: dict[int, int] | None = None
) -> bool:
    """Whether a later epoch resumed from before `iteration` (or `epoch` was cut back before
    it): then what `epoch` recorded at `iteration` (a result, a checkpoint) belongs to a run of
    the trial that was abandoned."""
    return iteration > _superseded_past(epoch, starts, ends or {})


def _superseded_past(epoch: int, starts: dict[int, int], ends: dict[int, int]) -> float:
    """The iteration past which what `epoch` recorded is superseded (inf: none of it)."""
    later = [start for other, start in starts.items() if other > epoch]
    return min([*later, ends.get(epoch, float("inf"))])


def _iteration(row: dict) -> int | None:
    done = row.get("training_iteration")
    return done if isinstance(done, int) and not isinstance(done, bool) else None
