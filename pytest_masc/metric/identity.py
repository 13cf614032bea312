"""What a model checkpoint is, independent of how it was named: a local directory by its
resolved path and a fingerprint of its files, a hub checkpoint by its id and resolved
revision. Runs, shards and baselines compare these instead of the ``--masc-model`` string.

Pure Python (no torch): the report module reads and compares identities too.

An identity is a JSON-ready dict::

    {"kind": "local", "path": "/abs/resolved/dir", "fingerprint": "sha256:<16 hex>", "files": 2}
    {"kind": "hub", "id": "google/siglip2-so400m-patch16-naflex", "revision": "<commit or None>"}
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Optional

#: name endings of the weight files that enter a local fingerprint by name, size and sampled
#: bytes (config.json and weight index files enter by content, being small)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf")
CONTENT_FILES = ("config.json",)
CONTENT_SUFFIXES = (".index.json",)
#: bytes read from each weight file at its start, middle and end
SAMPLE_BYTES = 1 << 20


def local_directory(model: str, base: Optional[os.PathLike] = None) -> Optional[Path]:
    """The checkpoint directory ``model`` names (``~`` expanded, relative to ``base`` or the
    working directory), resolved; ``None`` when it names no existing directory (a hub id)."""
    path = Path(os.path.expanduser(str(model)))
    if not path.is_absolute():
        path = Path(base or os.getcwd()) / path
    return path.resolve() if path.is_dir() else None


def fingerprint(directory: Path) -> tuple[str, int]:
    """``("sha256:<16 hex>", files)``: a hash of config.json and weight index files by content,
    and of every weight file by name, size and three sampled chunks of its bytes (start,
    middle, end; :data:`SAMPLE_BYTES` each), symlinks followed as in a hub cache snapshot.
    Sampling keeps it instant on multi-GB weights, and still tells a fine-tuned or re-saved
    checkpoint from the original: its weights differ in every chunk."""
    digest = hashlib.sha256()
    files = 0
    for path in sorted(directory.iterdir()):
        name = path.name
        if not path.is_file():
            continue
        if name in CONTENT_FILES or name.endswith(CONTENT_SUFFIXES):
            digest.update(f"{name}\0content\0".encode())
            digest.update(path.read_bytes())
        elif name.endswith(WEIGHT_SUFFIXES):
            size = path.stat().st_size
            digest.update(f"{name}\0size\0{size}\0".encode())
            with path.open("rb") as stream:
                for start in sorted({0, max(0, size // 2 - SAMPLE_BYTES // 2), max(0, size - SAMPLE_BYTES)}):
                    stream.seek(start)
                    digest.update(stream.read(SAMPLE_BYTES))
        else:
            continue
        files += 1
    return f"sha256:{digest.hexdigest()[:16]}", files


def checkpoint_identity(model: Any, revision: Optional[str] = None, base: Optional[os.PathLike] = None) -> dict[str, Any]:
    """The identity of the checkpoint ``model`` (a directory or a hub id) at ``revision``
    (for a hub checkpoint: the snapshot commit when known, else the requested revision)."""
    directory = local_directory(str(model), base)
    if directory is None:
        return {"kind": "hub", "id": str(model), "revision": revision}
    digest, files = fingerprint(directory)
    return {"kind": "local", "path": str(directory), "fingerprint": digest, "files": files}


def identity_text(identity: Optional[dict[str, Any]]) -> str:
    """``local checkpoint /abs/dir (fingerprint sha256:…)`` or ``hub checkpoint id at revision R``."""
    if not identity:
        return "unknown checkpoint"
    if identity.get("kind") == "local":
        return f"local checkpoint {identity.get('path')} (fingerprint {identity.get('fingerprint')})"
    return f"hub checkpoint {identity.get('id')} at revision {identity.get('revision') or 'default'}"


def same_checkpoint(first: Optional[dict[str, Any]], second: Optional[dict[str, Any]]) -> bool:
    """Whether two identities name the same checkpoint: local directories with the same
    fingerprint (wherever they lie: a copy is the same model), hub checkpoints with the same
    id and revision."""
    if not first or not second or first.get("kind") != second.get("kind"):
        return False
    if first["kind"] == "local":
        return first.get("fingerprint") == second.get("fingerprint")
    return first.get("id") == second.get("id") and first.get("revision") == second.get("revision")
