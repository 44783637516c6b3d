"""Image stores behind `agents.ports.ImageStore`: images travel on Kafka as URIs, never as bytes."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Union
from urllib.parse import unquote, urlparse


_UNSAFE = re.compile(r"[^A-Za-z0-9_.:@=+-]")


def safe_parts(name: str) -> list[str]:
    """Split a store name into path components that cannot climb out of the root or hide as control characters."""
    parts = []
    for part in name.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        part = _UNSAFE.sub("_", part)
        # A run of dots is a valid request id (the schema allows '.'), but '..' as a directory means "parent".
        if set(part) == {"."}:
            part = "_" + part
        parts.append(part[:255])
    if not parts:
        raise ValueError(f"image name {name!r} has no usable path component")
    return parts


class FilesystemImageStore:
    """Images as files under `root`, addressed by `file://` URIs."""

    def __init__(self, root: Union[str, Path]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, name: str) -> Path:
        path = self.root.joinpath(*safe_parts(name))
        # Defence in depth: a symlinked directory inside root could still point elsewhere.
        if not path.parent.resolve().is_relative_to(self.root):
            raise ValueError(f"image name {name!r} resolves outside the store root {self.root}")
        return path

    def put(self, data: bytes, name: str) -> str:
        """Write `data` atomically under `name`; a second put of the same name replaces the file."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValueError(f"data must be bytes, got {type(data).__name__}")
        path = self.path_for(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Temp file in the same directory + rename: readers see the old file or the whole new one, never a torn one.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path.as_uri()

    def resolve(self, uri: str) -> Path:
        """The file behind a `file://` URI, an absolute path under root, or a path relative to root."""
        if "://" in uri or uri.startswith("file:"):
            parsed = urlparse(uri)
            if parsed.scheme != "file":
                raise ValueError(f"{uri!r} is not a file:// URI; this store holds only local files")
            if parsed.netloc not in ("", "localhost"):
                raise ValueError(f"{uri!r} names host {parsed.netloc!r}; only local files are readable")
            path = Path(unquote(parsed.path))
        else:
            path = Path(uri).expanduser()
            if not path.is_absolute():
                path = self.root / path
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise ValueError(f"{uri!r} is outside the image store root {self.root}")
        return resolved

    def get(self, uri: str) -> bytes:
        return self.resolve(uri).read_bytes()

    def __repr__(self) -> str:
        return f"FilesystemImageStore({str(self.root)!r})"
