"""The ``@pytest.mark.masc(...)`` marker: its keyword arguments (shared by ``masc.check``)
and their validation, with did-you-mean suggestions."""
from __future__ import annotations

import difflib
from typing import Any, Optional

import pytest

from ..gates import GATE_RANGES, GATES, HUMAN_SCALE, valid_gate, valid_rating

#: why masc tests and fixtures are skipped without ``--masc``
GATES_OFF = "MaSC gates are off: pass --masc to run them"

#: keyword arguments ``@pytest.mark.masc(...)`` and ``masc.check(...)`` accept
MARKER_KWARGS = ("reference", "reference_mask", "subject", "segment_prompt", "concept", "distractors", "human", *GATES)


def as_list(value: Any) -> list[Any]:
    """``None`` -> ``[]``, a list or tuple -> a list, anything else -> a list of one."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def register_markers(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"masc({', '.join(MARKER_KWARGS)}): a MaSC gate; runs with --masc")
    config.addinivalue_line("markers", "masc_suite: a case collected from a masc_*.toml suite file")


def validate_masc_kwargs(kwargs: dict[str, Any], where: str) -> Optional[str]:
    """A message naming ``where`` when ``kwargs`` has unknown keys or a gate that is not a
    number in its range (NaN included); ``None`` when they are fine."""
    for key in kwargs:
        if key not in MARKER_KWARGS:
            close = difflib.get_close_matches(key, sorted(MARKER_KWARGS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return f"{where}: unknown @pytest.mark.masc argument {key!r}{hint}; allowed: {', '.join(sorted(MARKER_KWARGS))}"
    for gate in GATES:
        if gate in kwargs and not valid_gate(gate, kwargs[gate]):
            low, high = GATE_RANGES[gate]
            return f"{where}: {gate}={kwargs[gate]!r} must be a number in [{low:g}, {high:g}]"
    human = kwargs.get("human")
    if human is not None:
        if not isinstance(human, dict) or set(human) - {"concept", "prompt"}:
            return f"{where}: human must be a dict with 'concept' and/or 'prompt' ratings, got {human!r}"
        for key, ratings in human.items():
            for rating in as_list(ratings):
                if not valid_rating(rating):
                    return f"{where}: human[{key!r}] rating {rating!r} must be a number in {HUMAN_SCALE[0]:g}..{HUMAN_SCALE[1]:g}"
    return None


def validate_marker(item: pytest.Item) -> Optional[str]:
    """A usage-error message when the item's ``masc`` marker has unknown or positional arguments."""
    for marker in item.iter_markers("masc"):
        if marker.args:
            return f"{item.nodeid}: @pytest.mark.masc takes keyword arguments only, got positional {marker.args!r}"
        problem = validate_masc_kwargs(marker.kwargs, item.nodeid)
        if problem:
            return problem
    return None
