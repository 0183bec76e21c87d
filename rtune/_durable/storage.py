"""The one place that reads and writes durable experiment data, through `pyarrow.fs`.

Guarantees owned here:
- `write_atomic`: a reader sees the old bytes or the new bytes, never a torn file (temp + rename on
  filesystems with rename, one object PUT on object stores).
- `commit_checkpoint`: a checkpoint directory counts only once its marker file is written, and the
  marker is written last, after every file of the checkpoint reached storage.
- Faults: an operation that fails with an I/O error (a store unreachable or slow to answer, a full
  disk) is retried with backoff for `retry_s` seconds (the run's RunConfig.storage_retry_s, else
  RTUNE_STORAGE_RETRY_S where the run starts, default 120: see rtune/_settings.py), then raises
  `StorageError`, which names the path. Every retried operation is idempotent, so a retry after
  a half-done attempt leaves the same result as one clean attempt.
Node-local directories are scratch; nothing durable is kept outside `Storage.root`.
"""

from __future__ import annotations

import itertools
import json
import os
import posixpath
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pyarrow.fs as pafs

from rtune import _settings

COMMIT_MARKER = ".rtune_committed"
_RENAME_FILESYSTEMS = ("local", "hdfs")


_SECRET_QUERY_KEYS = ("access_key", "secret_key", "session_token")
_T = TypeVar("_T")


class StorageError(OSError):
    """Storage stayed unusable through every retry. Nothing durable was lost: what was committed
    before stays committed, and the experiment resumes from it once the storage works."""


def resolve_filesystem(
    storage_path: str | os.PathLike, filesystem: pafs.FileSystem | None = None
) -> tuple[pafs.FileSystem, str]:
    """Turn a user's storage path or URI into a filesystem and a path on it."""
    storage = Storage.at(storage_path, filesystem)
    return storage.filesystem, storage.root


def _refuse_credentials(uri: str) -> None:
    """Credentials come from the environment (AWS_ACCESS_KEY_ID, GOOGLE_APPLICATION_CREDENTIALS,
    ...), never from a URI: a URI is printed, logged and stored in the experiment."""
    parts = urllib.parse.urlsplit(uri)
    keys = {key for key, _ in urllib.parse.parse_qsl(parts.query)}
    if "@" in parts.netloc or keys & set(_SECRET_QUERY_KEYS):
        shown = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
        raise ValueError(
            f"The storage path {shown} carries credentials; rtune does not accept them in a URI "
            "(it is printed and stored with the experiment). Set them in the environment "
            "instead (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for S3, "
            "GOOGLE_APPLICATION_CREDENTIALS for GCS)."
        )


@dataclass
class Storage:
    """A filesystem and the experiment directory on it; picklable, so actors get their own copy.

    `scheme` ("s3://bucket-less prefix", "hdfs://host:port") and `query` (endpoint_override,
    scheme, region) are kept from the user's URI so `uri()` names a location that reopens the
    same store from any machine."""

    filesystem: pafs.FileSystem
    root: str
    scheme: str = ""
    query: str = ""
    # RTUNE_STORAGE_RETRY_S where the storage is opened; `Tuner` sets the run's own window
    retry_s: float = field(default_factory=_settings.storage_retry_s, compare=False)

    @classmethod
    def at(cls, location: str | os.PathLike, filesystem: pafs.FileSystem | None = None) -> Storage:
        """The storage at a local path, a URI (s3://, gs://, hdfs://, file://) or a path on
        `filesystem`."""
        path = os.fspath(location)
        if filesystem is not None:
            return cls(filesystem, path.rstrip("/") or "/", _scheme_of(filesystem))
        if "://" not in path:
            return cls(pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path)))
        _refuse_credentials(path)
        try:
            fs, fs_path = pafs.FileSystem.from_uri(path)
        except Exception as exc:  # pyarrow raises ArrowInvalid or OSError by scheme
            raise ValueError(f"Cannot open storage path {path!r}: {exc}") from exc
        if fs.type_name == "local":
            return cls(fs, fs_path.rstrip("/") or "/")
        parts = urllib.parse.urlsplit(path)
        scheme = f"{parts.scheme}://" + (parts.netloc if fs_path.startswith("/") else "")
        return cls(fs, fs_path.rstrip("/"), scheme, parts.query)

    def child(self, name: str) -> Storage:
        return Storage(self.filesystem, self.path(name), self.scheme, self.query, self.retry_s)

    def _retrying(self, what: str, relpath: str, operation: Callable[[], _T]) -> _T:
        """Run an idempotent operation, retrying I/O errors with backoff for `retry_s`."""
        deadline = time.monotonic() + self.retry_s
        delay = 0.1
        while True:
            try:
                return operation()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                raise  # an answer about the data, not a fault of the store
            except OSError as exc:
                if time.monotonic() + delay > deadline:
                    raise StorageError(
                        f"Could not {what} {self.uri(relpath)} (retried for {self.retry_s:g} s): "
                        f"{exc}"
                    ) from exc
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    @property
    def is_local(self) -> bool:
        return self.filesystem.type_name == "local"

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def uri(self, *parts: str) -> str:
        """Where the data lives, in the form `Tuner.restore` and `rtune resume` accept."""
        path = self.path(*parts)
        if self.is_local:
            return path
        return f"{self.scheme}{path}" + (f"?{self.query}" if self.query else "")

    def parent_uri(self) -> str:
        return Storage(self.filesystem, posixpath.dirname(self.root), self.scheme, self.query).uri()

    def exists(self, relpath: str) -> bool:
        info = self._retrying(
            "look up", relpath, lambda: self.filesystem.get_file_info(self.path(relpath))
        )
        return info.type != pafs.FileType.NotFound

    def makedirs(self, relpath: str = "") -> None:
        self._retrying(
            "create the directory",
            relpath,
            lambda: self.filesystem.create_dir(
                self.path(relpath) if relpath else self.root, recursive=True
            ),
        )

    def write_atomic(self, relpath: str, data: bytes, make_parents: bool = True) -> None:
        """`make_parents=False`: the caller made the directory (saves a round of stats per
        write on the per-trial path)."""
        self._retrying("write", relpath, lambda: self._write_once(relpath, data, make_parents))

    def _write_once(self, relpath: str, data: bytes, make_parents: bool) -> None:
        target = self.path(relpath)
        fs = self.filesystem
        if fs.type_name in _RENAME_FILESYSTEMS:
            if make_parents:
                fs.create_dir(posixpath.dirname(target), recursive=True)
            tmp = f"{target}.tmp-{_TMP_TAG}-{next(_tmp_numbers)}"
            with fs.open_output_stream(tmp) as out:
                out.write(data)
            fs.move(tmp, target)
        else:
            with fs.open_output_stream(target) as out:
                out.write(data)

    def write_whole(self, relpath: str, data: bytes) -> None:
        """Write a file in place, without `write_atomic`'s rename: for files whose torn write a
        reader notices and mends (the loggers' files; see rtune/logger/_trial_files.py)."""

        def write() -> None:
            if self.is_local:  # a third of the time of pyarrow's stream, for small files
                with open(self.path(relpath), "wb") as out:
                    out.write(data)
                return
            with self.filesystem.open_output_stream(self.path(relpath)) as out:
                out.write(data)

        self._retrying("write", relpath, write)

    def append(self, relpath: str, data: bytes) -> None:
        """Add `data` at the end of a file (made if missing), on a filesystem that appends (a
        local or network disk). Tried once: a retried append could add the data twice."""
        try:
            if self.is_local:
                with open(self.path(relpath), "ab") as out:
                    out.write(data)
            else:
                with self.filesystem.open_append_stream(self.path(relpath)) as out:
                    out.write(data)
        except OSError as exc:
            raise StorageError(f"Could not append to {self.uri(relpath)}: {exc}") from exc

    def write_json(self, relpath: str, obj: Any, make_parents: bool = True) -> None:
        self.write_atomic(relpath, encode_json(obj), make_parents)

    def read_bytes(self, relpath: str) -> bytes:
        def read() -> bytes:
            with self.filesystem.open_input_stream(self.path(relpath)) as src:
                return src.read()

        return self._retrying("read", relpath, read)

    def read_json(self, relpath: str) -> Any:
        return json.loads(self.read_bytes(relpath))

    def list_dir(self, relpath: str) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(self.path(relpath), allow_not_found=True)
        return self._retrying("list", relpath, lambda: self.filesystem.get_file_info(selector))

    def delete_dir(self, relpath: str) -> None:
        try:
            self._retrying(
                "delete", relpath, lambda: self.filesystem.delete_dir(self.path(relpath))
            )
        except FileNotFoundError:
            pass

    def upload_dir(self, local_dir: str, relpath: str) -> None:
        def upload() -> None:
            self.filesystem.create_dir(self.path(relpath), recursive=True)
            pafs.copy_files(
                local_dir,
                self.path(relpath),
                source_filesystem=pafs.LocalFileSystem(),
                destination_filesystem=self.filesystem,
            )

        self._retrying("upload a checkpoint to", relpath, upload)

    def download_dir(self, relpath: str, local_dir: str) -> None:
        os.makedirs(local_dir, exist_ok=True)
        pafs.copy_files(
            self.path(relpath),
            local_dir,
            source_filesystem=self.filesystem,
            destination_filesystem=pafs.LocalFileSystem(),
        )

    def commit_checkpoint(self, local_dir: str, relpath: str, metadata: dict) -> None:
        """Upload a checkpoint, then write its marker: only then does the checkpoint exist."""
        self.upload_dir(local_dir, relpath)
        self.write_json(posixpath.join(relpath, COMMIT_MARKER), metadata)

    def checkpoint_dirs(self, trial_relpath: str) -> list[tuple[int, str]]:
        """(index, name) of every `checkpoint_<index>` directory of a trial, committed or not."""
        found = []
        for info in self.list_dir(trial_relpath):
            index = checkpoint_index(info.base_name)
            if info.type == pafs.FileType.Directory and index is not None:
                found.append((index, info.base_name))
        return sorted(found)

    def next_checkpoint_index(self, trial_relpath: str) -> int:
        found = self.checkpoint_dirs(trial_relpath)
        return found[-1][0] + 1 if found else 0

    def committed_checkpoints(self, trial_relpath: str) -> list[tuple[int, str, dict]]:
        """(iteration, relpath, marker) of every committed checkpoint of a trial, oldest first.
        The marker says which iteration it holds and which epoch (run of the trial) committed
        it; a checkpoint whose marker does not say its iteration (a hand edit) cannot be placed
        in the trial's history and is skipped, with a warning naming it."""
        found = []
        for _index, name in self.checkpoint_dirs(trial_relpath):
            relpath = posixpath.join(trial_relpath, name)
            try:
                marker = self.read_json(posixpath.join(relpath, COMMIT_MARKER))
            except FileNotFoundError:
                continue
            except ValueError:
                marker = {}
            iteration = marker.get("training_iteration") if isinstance(marker, dict) else None
            if type(iteration) is not int or iteration < 0:
                print(
                    f"rtune: WARNING: the commit marker of {self.uri(relpath)} does not say which "
                    "iteration it holds; it is not resumed from",
                    file=sys.stderr,
                )
                continue
            found.append((iteration, relpath, marker))
        return sorted(found, key=lambda entry: (entry[0], entry[1]))

    def uncommit_and_delete(self, relpath: str) -> None:
        """Delete a checkpoint marker first, so a crash midway never leaves a half-deleted one
        that still looks committed."""
        marker = posixpath.join(relpath, COMMIT_MARKER)
        try:
            self._retrying("delete", marker, lambda: self.filesystem.delete_file(self.path(marker)))
        except FileNotFoundError:
            pass
        self.delete_dir(relpath)


# temporary names unique to this process without a uuid per write (os.urandom was ~3% of a
# trivial trial): two writers of one file, an orphaned actor and its successor, never collide
_TMP_TAG = uuid.uuid4().hex[:8]
_tmp_numbers = itertools.count()


def _scheme_of(filesystem: pafs.FileSystem) -> str:
    name = filesystem.type_name
    return "" if name == "local" else f"{'gs' if name == 'gcs' else name}://"


def encode_json(obj: Any) -> bytes:
    """Compact JSON of what users report: numpy and torch values as numbers and lists, dates as
    ISO text, anything else as its repr; keys JSON cannot hold (tuples) as their text."""
    try:
        text = _ENCODER.encode(obj)
    except (TypeError, ValueError, RecursionError):
        text = json.dumps(_plain(obj), default=_jsonable, separators=(",", ":"))
    return text.encode()


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays, torch tensors
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return list(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return repr(value)


# one encoder for all calls (json.dumps with options builds one per call); without the
# circular-reference check: ~25% faster on large states (a cycle falls back to `_plain`)
_ENCODER = json.JSONEncoder(default=_jsonable, separators=(",", ":"), check_circular=False)


def _plain(value: Any, seen: tuple = ()) -> Any:
    """A copy json.dumps takes whole: keys as text, a container inside itself as its repr."""
    if isinstance(value, (dict, list, tuple)):
        if id(value) in seen:
            return repr(value)
        seen = (*seen, id(value))
        if isinstance(value, dict):
            return {k if isinstance(k, str) else str(k): _plain(v, seen) for k, v in value.items()}
        return [_plain(v, seen) for v in value]
    return value


def checkpoint_dirname(index: int) -> str:
    return f"checkpoint_{index:06d}"


def checkpoint_index(name: str) -> int | None:
    """The number of a `checkpoint_<index>` directory name; None for any other name."""
    prefix, _, number = name.partition("_")
    return int(number) if prefix == "checkpoint" and number.isdigit() else None
