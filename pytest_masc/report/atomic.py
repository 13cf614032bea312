"""JSON files: read with an error naming the file and what it should have been, written atomically (a temporary file and a rename, the mode following the umask)."""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from .model import ReportError


def read_json(path: Path, what: str, missing_hint: str = "") -> Any:
    """The parsed content of ``path``; :class:`ReportError` ``<path>: <what> not found<missing_hint>``
    or ``<path>: <what> is not valid JSON (<why>)``."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: {what} not found{missing_hint}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReportError(f"{path}: {what} is not valid JSON ({error})") from None


def atomic_write_json(path: Path, payload: Any) -> None:
    """Write JSON through a temporary file and a rename; the file mode follows the umask."""
    text = json.dumps(payload, indent=2, sort_keys=False, allow_nan=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        temporary = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
        except FileExistsError:
            continue
        break
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
