"""Local file paths for the image and mask cells of a batch: relative paths joined to a base
directory, remote URIs (``s3://``, ``gs://``, ``memory://`` …) copied into a temporary one."""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Optional

from ..errors import InputError

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(value: str) -> bool:
    """Whether ``value`` starts with a scheme (``s3://``, ``file://`` …) rather than being a path."""
    return bool(_URI.match(value))


class Fetcher:
    """Local paths for the cells of a batch: relative paths joined to ``base_dir``, remote URIs
    copied into a temporary directory (kept for the last ``keep`` URIs, so a reference used by
    the next batch keeps its path and the actor's encoding cache still serves it)."""

    def __init__(self, base_dir: str, keep: int = 512, threads: int = 8) -> None:
        self.base_dir = base_dir
        self.keep = keep
        self.threads = threads
        self.copies: OrderedDict[str, str] = OrderedDict()  # uri -> local copy
        self.directory: Optional[str] = None

    def resolve(self, values: Iterable[str]) -> dict[str, Any]:
        """Path (or ``InputError``) for each distinct value; remote ones fetched in parallel."""
        values = list(dict.fromkeys(values))
        local = {value: self._local(value) for value in values if not is_uri(value)}
        remote = [value for value in values if is_uri(value)]
        if remote:
            with ThreadPoolExecutor(max_workers=min(self.threads, len(remote))) as pool:
                local.update(zip(remote, pool.map(self._fetch_safely, remote)))
        return local

    def original(self, message: str) -> str:
        """An error message with local copies named by their URIs again."""
        for uri, path in self.copies.items():
            message = message.replace(path, uri)
        return message

    def close(self) -> None:
        """Remove the temporary directory and forget the copies."""
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
        self.copies.clear()

    def _local(self, value: str) -> str:
        path = os.path.expanduser(value)
        return os.path.normpath(path if os.path.isabs(path) else os.path.join(self.base_dir, path))

    def _fetch_safely(self, uri: str) -> Any:
        try:
            return self._fetch(uri)
        except InputError as error:
            return error
        except Exception as error:  # filesystems raise many types (OSError, ArrowInvalid, botocore …)
            return InputError(f"{uri}: cannot be read ({type(error).__name__}: {error})")

    def _fetch(self, uri: str) -> str:
        if uri in self.copies:
            self.copies.move_to_end(uri)
            return self.copies[uri]
        try:
            from pyarrow import fs as pafs

            filesystem, path = pafs.FileSystem.from_uri(uri)
        except Exception:  # a scheme pyarrow does not know: try fsspec (memory://, http:// …)
            filesystem = None
        if filesystem is not None and isinstance(filesystem, pafs.LocalFileSystem):
            return path  # file:// — read in place
        target = self._target(uri)
        if filesystem is not None:
            _copy_with_pyarrow(filesystem, path, uri, target)
        else:
            _copy_with_fsspec(uri, target)
        self.copies[uri] = target
        while len(self.copies) > self.keep:
            _, old = self.copies.popitem(last=False)
            with contextlib.suppress(OSError):
                os.remove(old)
        return target

    def _target(self, uri: str) -> str:
        """Where the copy of ``uri`` goes: a hash of it, with its file suffix."""
        if self.directory is None:
            self.directory = tempfile.mkdtemp(prefix="masc-ray-")
        suffix = "".join(Path(uri.split("?", 1)[0]).suffixes[-1:])
        return os.path.join(self.directory, hashlib.sha1(uri.encode()).hexdigest()[:20] + suffix)


def _copy_with_pyarrow(filesystem: Any, path: str, uri: str, target: str) -> None:
    from pyarrow import fs as pafs

    try:
        info = filesystem.get_file_info(path)
    except Exception as error:
        raise InputError(f"{uri}: cannot be read ({type(error).__name__}: {error})") from None
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"{uri}: file not found")
    with filesystem.open_input_stream(path) as source, open(target, "wb") as sink:
        shutil.copyfileobj(source, sink)


def _copy_with_fsspec(uri: str, target: str) -> None:
    import fsspec

    try:
        with fsspec.open(uri, "rb") as source, open(target, "wb") as sink:
            shutil.copyfileobj(source, sink)
    except FileNotFoundError:
        raise InputError(f"{uri}: file not found") from None


__all__ = ["Fetcher", "is_uri"]
