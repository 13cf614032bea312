"""Which benchmark protocol to run, on which data: one :class:`ProtocolSpec` for both the
``--masc-protocol=KIND=ROOT[,key=value...]`` option and a suite file's ``[protocol]`` table.

Each source only splits its own syntax into fields; :meth:`ProtocolSpec.from_fields` is the
one validation of kinds, keys and values. Imports nothing heavy.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from ..errors import MaSCError

#: values of ``kind``
PROTOCOL_KINDS = ("dreambench_plus", "orida")
#: every key a protocol takes; ``kind`` and ``root`` are required
PROTOCOL_KEYS = ("kind", "root", "masks", "split", "n_subjects", "min_backgrounds")
#: keys naming directories
PATH_KEYS = ("root", "masks")
#: keys holding positive integers
INTEGER_KEYS = ("n_subjects", "min_backgrounds")
OPTION = "--masc-protocol"
#: ``masks`` value asking the plugin to segment the data set (``--masc-segmenter``) and cache the masks
AUTO_MASKS = "auto"


class ProtocolError(MaSCError, ValueError):
    """A protocol specification that cannot be run; the message says where and why."""


@dataclass(frozen=True)
class ProtocolSpec:
    """A benchmark protocol and its data.

    ``root`` is the data set's directory and ``masks`` DreamBench++'s directory of masks
    mirroring the image paths (required there), or ``"auto"``: segment them with the
    plugin's ``--masc-segmenter`` and cache them on disk in that layout. ORIDa reads ``split`` and takes the first
    ``n_subjects`` subjects with at least ``min_backgrounds`` backgrounds (the paper's protocol).
    """

    kind: str
    root: str
    masks: Optional[str] = None
    split: str = "test"
    n_subjects: int = 50
    min_backgrounds: int = 10

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any], where: str, *, key_syntax: str = "{key} = VALUE") -> "ProtocolSpec":
        """Validate fields already split from their source (paths as given or resolved).

        Integers may be ints or strings of digits. ``key_syntax`` spells a key the way its
        source writes it, for messages. Raises :class:`ProtocolError` naming ``where``.
        """
        for key in fields:
            if key not in PROTOCOL_KEYS:
                raise ProtocolError(f"{where}: unknown key {key!r}{_did_you_mean(key, PROTOCOL_KEYS)}")
        for key in ("kind", "root"):
            if key not in fields:
                raise ProtocolError(f"{where}: missing required key {key!r}")
        kind = fields["kind"]
        if kind not in PROTOCOL_KINDS:
            raise ProtocolError(f"{where}: unknown kind {kind!r}{_did_you_mean(str(kind), PROTOCOL_KINDS)}")
        values: dict[str, Any] = {"kind": kind}
        for key in (*PATH_KEYS, "split"):
            if key in fields:
                values[key] = str(fields[key])
        for key in INTEGER_KEYS:
            if key in fields:
                values[key] = _positive_integer(fields[key], key, where)
        if kind == "dreambench_plus" and "masks" not in values:
            raise ProtocolError(
                f"{where}: kind 'dreambench_plus' needs {key_syntax.format(key='masks').replace('VALUE', 'DIR')} "
                "(a directory of masks mirroring the image paths, or auto to segment them with --masc-segmenter)"
            )
        return cls(**values)

    def missing_directory(self) -> Optional[str]:
        """A message when ``root`` or ``masks`` is not an existing directory, else ``None``."""
        for key in PATH_KEYS:
            value = getattr(self, key)
            if key == "masks" and value == AUTO_MASKS:
                continue
            if value is not None and not Path(value).is_dir():
                return f"{self.kind} {key} directory {value} not found"
        return None


def parse_protocol_option(value: str) -> ProtocolSpec:
    """``dreambench_plus=/data/dbpp,masks=/data/masks`` -> a :class:`ProtocolSpec`."""
    parts = [part.strip() for part in value.split(",") if part.strip()]
    head, rest = (parts[0], parts[1:]) if parts else ("", [])
    kind, _, root = head.partition("=")
    if kind not in PROTOCOL_KINDS or not root:
        raise ProtocolError(
            f"{OPTION} {value!r}: expected KIND=DATA_ROOT[,masks=DIR][,split=NAME] with KIND one of {', '.join(PROTOCOL_KINDS)}"
        )
    fields = {"kind": kind, "root": root}
    optional = [key for key in PROTOCOL_KEYS if key not in fields]
    for part in rest:
        key, _, text = part.partition("=")
        if key not in optional or not text:
            raise ProtocolError(f"{OPTION}: unknown or empty part {part!r} (allowed: {', '.join(optional)})")
        fields[key] = text
    return ProtocolSpec.from_fields(fields, OPTION, key_syntax=",{key}=VALUE")


def _positive_integer(value: Any, key: str, where: str) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ProtocolError(f"{where}: {key} must be a positive integer, got {value!r}")
    return value


def _did_you_mean(word: str, options: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (expected one of: {', '.join(repr(o) for o in options)})"
