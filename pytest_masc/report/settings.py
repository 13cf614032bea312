"""Run settings (checkpoint identity, revision, dtype, patch budget): what a run used, and how two runs' settings differ."""
from __future__ import annotations

from typing import Any, Sequence

from ..metric.identity import identity_text, local_directory, same_checkpoint
from .model import PathLike

#: run settings that shards, and a run and its baseline, must share -> label in messages
SETTINGS: dict[str, str] = {
    "model": "model", "revision": "revision", "dtype": "dtype", "max_num_patches": "max patches",
}
#: the settings key of the checkpoint's identity (:mod:`pytest_masc.metric.identity`)
CHECKPOINT = "checkpoint"


def run_settings(runs: Sequence[dict[str, Any]], **requested: Any) -> dict[str, Any]:
    """The run settings: what the loaded model reported (``runs``), else what was requested."""
    settings = {}
    for key in (*SETTINGS, CHECKPOINT):
        reported = [run[key] for run in runs if run.get(key) is not None]
        settings[key] = reported[0] if reported else requested.get(key)
    return settings


def _legacy_model_match(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether the model of ``old`` (a baseline or shard recording no checkpoint identity)
    is that of ``new``: the same string and revision, or the same local directory (an old
    relative path read from the working directory, as it was written)."""
    identity = new.get(CHECKPOINT)
    old_dir = local_directory(str(old.get("model"))) if old.get("model") else None
    if identity and identity.get("kind") == "local":
        return old.get("model") == new.get("model") or (old_dir is not None and str(old_dir) == identity.get("path"))
    if identity and identity.get("kind") == "hub":
        return old.get("model") == identity.get("id") and old.get("revision") == identity.get("revision")
    new_dir = local_directory(str(new.get("model"))) if new.get("model") else None
    if old_dir is not None and old_dir == new_dir:
        return True
    return old.get("model") == new.get("model") and old.get("revision") == new.get("revision")


def _model_text(settings: dict[str, Any], with_revision: bool = False) -> str:
    identity = settings.get(CHECKPOINT)
    text = f"model {settings.get('model')}"
    if identity:
        return f"{text} ({identity_text(identity)})"
    return text + (f", revision {settings.get('revision') or 'default'}" if with_revision else "")


def setting_differences(before: dict[str, Any], now: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(label, before, now)`` for each run setting in which ``now`` differs from ``before``.

    The model is compared by what it is where both sides record its identity (a local
    checkpoint by fingerprint, wherever it lies; a hub checkpoint by id and revision), else by
    its name, revision and resolved directory. A dtype that either side leaves unknown (a
    run that loaded no model) is not compared, nor a setting ``before`` does not record.
    """
    differences = []
    first, second = before.get(CHECKPOINT), now.get(CHECKPOINT)
    if first and second:
        if not same_checkpoint(first, second):
            differences.append(("model", _model_text(before), _model_text(now)))
    elif first or second:
        old, new = (now, before) if first else (before, now)
        if not _legacy_model_match(old, new):
            differences.append(("model", _model_text(before, True), _model_text(now, True)))
    elif not _legacy_model_match(before, now):
        for key in ("model", "revision"):
            if before.get(key) != now.get(key):
                differences.append((SETTINGS[key], _setting_text(key, before.get(key)), _setting_text(key, now.get(key))))
    for key in ("dtype", "max_num_patches"):
        if key not in before:  # a version-1 baseline: not recorded
            continue
        old_value, new_value = before.get(key), now.get(key)
        if key == "dtype" and (old_value is None or new_value is None):
            continue
        if old_value != new_value:
            differences.append((SETTINGS[key], _setting_text(key, old_value), _setting_text(key, new_value)))
    return differences


def _setting_text(key: str, value: Any) -> str:
    return f"{SETTINGS[key]} {value if value is not None else 'default'}"



def mismatch_text(path: PathLike, differences: list[tuple[str, str, str]]) -> str:
    """``<path> was made with ...; this run uses ...`` from :func:`setting_differences`."""
    return (
        f"{path} was made with {', '.join(old for _, old, _ in differences)}; "
        f"this run uses {', '.join(new for _, _, new in differences)}"
    )
