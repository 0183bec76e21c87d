"""A file logger's file in one trial's directory, holding each training_iteration once.

Rows are buffered and written in batches (at the callbacks' state snapshots, every few seconds,
and when the trial ends): appended where the storage appends (a local or network disk), the
whole file rewritten where it cannot (an object store; the file is kept in memory while the
trial runs). Where a trial resumes at iteration k (a restore, a retry, an exploit), rows past k
are cut before new ones go in; the first row this run writes for a trial whose file it has not
written yet cuts the file back to just before that row. So after any number of stops the file
matches the trial's history, with nothing rewritten that did not need to be.
"""

from __future__ import annotations

from typing import Any

from rtune._durable.storage import Storage


class TrialFile:
    """`name` in the trial directory `storage`. A subclass defines the format: `encode` (one
    row's bytes), `header` (written above the rows, from the first one), `decode` (a file's
    bytes to (header bytes, [(iteration, row bytes)]))."""

    def __init__(self, storage: Storage, name: str):
        self.storage, self.name = storage, name
        self._pending: list[tuple[int, bytes]] = []
        self._upto: int | None = None  # the last iteration in the file; None: not known yet
        self._rewrite = False  # the next write replaces the file (with `_kept` first)
        self._kept = b""  # the file's bytes where it is rewritten whole
        self._header = b""
        self._dir_made = False

    # ---- the format ----

    def encode(self, result: dict) -> bytes:
        raise NotImplementedError

    def header(self, result: dict) -> bytes:
        return b""

    def decode(self, data: bytes) -> tuple[bytes, list[tuple[int, bytes]]]:
        raise NotImplementedError

    # ----

    def start(self) -> None:
        """The trial starts from its beginning: whatever the file held goes."""
        self._pending, self._upto, self._rewrite, self._kept, self._header = [], 0, True, b"", b""

    def cut(self, upto: int) -> None:
        """The trial resumes at iteration `upto`: rows past it go."""
        self._pending = [(i, row) for i, row in self._pending if i <= upto]
        if self._upto is not None and self._upto <= upto:
            return  # the file holds nothing past it: written or read in this run
        try:
            data = self.storage.read_bytes(self.name)
        except FileNotFoundError:
            data = b""
        header, rows = self.decode(data) if data else (b"", [])
        kept = [(i, row) for i, row in rows if i <= upto]
        self._header = header
        self._kept = header + b"".join(row for _, row in kept)
        self._upto = kept[-1][0] if kept else 0
        # rewritten where rows go, a write was cut short, or nothing is there yet (a header
        # comes first)
        self._rewrite = len(kept) != len(rows) or not data.endswith(b"\n")

    def add(self, iteration: int, result: dict) -> None:
        if self._upto is None:  # first seen here: the file may hold rows from a run cut short
            self.cut(iteration - 1)
        if not self._header and not self._kept and not self._pending:
            self._header = self.header(result)
        self._pending.append((iteration, self.encode(result)))

    def flush(self) -> None:
        if not self._pending and not self._rewrite:
            return
        if self._upto is None:  # a write failed: what it left is read before the next one
            self.cut(self._pending[0][0] - 1 if self._pending else 0)
        try:
            self._write()
        except Exception:
            self._upto = None
            raise

    def _write(self) -> None:
        rows = b"".join(row for _, row in self._pending)
        if self._rewrite or not self._appends:
            data = (self._kept or self._header) + rows
            if self._kept:  # rows already there: never torn by a crash
                self.storage.write_atomic(self.name, data, make_parents=not self._dir_made)
            else:  # a new file: a torn one is mended when its trial is next heard of
                try:
                    self.storage.write_whole(self.name, data)
                except FileNotFoundError:  # before the trial's own first write
                    self.storage.makedirs()
                    self.storage.write_whole(self.name, data)
            self._kept = data if not self._appends else b""
        else:
            self.storage.append(self.name, rows)  # the file is there: it was written first
        self._dir_made = True
        if self._pending:
            self._upto = self._pending[-1][0]
        self._pending, self._rewrite = [], False

    @property
    def _appends(self) -> bool:
        return self.storage.is_local


class TrialFiles:
    """One `TrialFile` per trial for a logger, made by `factory(trial)`; flushed together."""

    def __init__(self, factory: Any):
        self._factory = factory
        self.files: dict[str, TrialFile] = {}

    def of(self, trial: Any) -> TrialFile:
        found = self.files.get(trial.trial_id)
        if found is None:
            found = self.files[trial.trial_id] = self._factory(trial)
        return found

    def close(self, trial: Any) -> None:
        found = self.files.pop(trial.trial_id, None)
        if found is not None:
            found.flush()

    def flush(self) -> None:
        """Every file; the first error is raised once all were tried."""
        failed: Exception | None = None
        for found in self.files.values():
            try:
                found.flush()
            except Exception as exc:
                failed = failed or exc
        if failed is not None:
            raise failed
