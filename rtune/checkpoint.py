"""`Checkpoint`: a directory on some filesystem, opened lazily.

A Checkpoint handed to the user points at storage (or at the user's own directory before it is
reported); nothing is downloaded until `to_directory()` or `as_directory()` asks for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pyarrow.fs as pafs

from rtune._durable.storage import COMMIT_MARKER, resolve_filesystem

METADATA_FILE = ".metadata.json"


class Checkpoint:
    def __init__(self, path: str | os.PathLike, filesystem: pafs.FileSystem | None = None):
        self.filesystem, self.path = resolve_filesystem(path, filesystem)

    @classmethod
    def from_directory(cls, path: str | os.PathLike) -> Checkpoint:
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"Checkpoint.from_directory: {path!r} is not a directory")
        return cls(path, pafs.LocalFileSystem())

    @property
    def is_local(self) -> bool:
        return self.filesystem.type_name == "local"

    def to_directory(self, path: str | os.PathLike | None = None) -> str:
        """Copy the checkpoint's files into `path` (a new temporary directory by default)."""
        target = os.fspath(path) if path is not None else tempfile.mkdtemp(prefix="rtune_ckpt_")
        os.makedirs(target, exist_ok=True)
        if self.is_local:
            shutil.copytree(self.path, target, dirs_exist_ok=True)
        else:
            pafs.copy_files(
                self.path,
                target,
                source_filesystem=self.filesystem,
                destination_filesystem=pafs.LocalFileSystem(),
            )
        marker = os.path.join(target, COMMIT_MARKER)  # rtune's bookkeeping, not the user's file
        if os.path.exists(marker):
            os.remove(marker)
        return target

    @contextlib.contextmanager
    def as_directory(self) -> Iterator[str]:
        """A local directory with the checkpoint's files: the checkpoint itself when it is local
        (read it, do not change it), a temporary download otherwise."""
        if self.is_local:
            yield self.path
            return
        target = self.to_directory()
        try:
            yield target
        finally:
            shutil.rmtree(target, ignore_errors=True)

    # user metadata, in the checkpoint directory's .metadata.json as Ray Tune keeps it

    def _metadata_path(self) -> str:
        return (
            posixpath.join(self.path, METADATA_FILE)
            if not self.is_local
            else os.path.join(self.path, METADATA_FILE)
        )

    def get_metadata(self) -> dict[str, Any]:
        """The metadata stored with the checkpoint ({} if none)."""
        path = self._metadata_path()
        if self.filesystem.get_file_info(path).type == pafs.FileType.NotFound:
            return {}
        with self.filesystem.open_input_stream(path) as src:
            return json.loads(src.read().decode("utf-8"))

    def set_metadata(self, metadata: dict[str, Any]) -> None:
        """Replace the stored metadata (a JSON-serializable dict)."""
        if not isinstance(metadata, dict):
            raise TypeError(f"checkpoint metadata must be a dict, got {type(metadata).__name__}")
        data = json.dumps(metadata).encode("utf-8")  # fails before anything is written
        with self.filesystem.open_output_stream(self._metadata_path()) as out:
            out.write(data)

    def update_metadata(self, metadata: dict[str, Any]) -> None:
        """Merge `metadata` into the stored metadata."""
        self.set_metadata({**self.get_metadata(), **metadata})

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Checkpoint)
            and self.path == other.path
            and self.filesystem.type_name == other.filesystem.type_name
        )

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        return f"Checkpoint(filesystem={self.filesystem.type_name}, path={self.path})"
