"""Gates: thresholds on MaSC scores, the case records they produce, and failure messages.

Pure Python: no torch. A gate ``min_<score>`` passes when the score is at least the threshold.
A NaN score fails its gate with the reason it is NaN. A reference mask that selects no patch
always fails the case ("reference mask is empty"), gate or not.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence

from .types import ScoreDiagnostics

if TYPE_CHECKING:
    from .types import Score

#: gate keyword -> (score key, label in messages)
GATES: dict[str, tuple[str, str]] = {
    "min_concept": ("concept", "concept preservation (CP)"),
    "min_prompt": ("prompt", "prompt following (PF)"),
    "min_prompt_margin": ("prompt_margin", "prompt-following margin"),
    "min_global_concept": ("global_concept", "global concept similarity"),
    "min_global_prompt": ("global_prompt", "global prompt similarity"),
}


#: gates of a whole suite (``[suite]`` of a suite file only), checked at the end of a session
SUITE_GATES: dict[str, str] = {
    "min_alpha_concept": "Krippendorff's alpha of the concept scores against the human ratings",
    "min_alpha_prompt": "Krippendorff's alpha of the prompt scores against the human ratings",
    "min_auc": "identity AUC of an ORIDa protocol",
}
#: the closed range each gate's threshold must lie in
GATE_RANGES: dict[str, tuple[float, float]] = {
    **{gate: (-1.0, 1.0) for gate in (*GATES, "min_alpha_concept", "min_alpha_prompt")},
    "min_auc": (0.0, 1.0),
}
#: the scale of human ratings (``human`` of markers and suite cases)
HUMAN_SCALE = (0.0, 4.0)


def is_number(value: Any) -> bool:
    """An int or float, not a boolean."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def valid_gate(gate: str, value: Any) -> bool:
    """Whether ``value`` may be the threshold of ``gate``: a finite number in its range."""
    low, high = GATE_RANGES[gate]
    return is_number(value) and math.isfinite(value) and low <= value <= high


def valid_rating(value: Any) -> bool:
    """Whether ``value`` is a human rating: a finite number on :data:`HUMAN_SCALE`."""
    return is_number(value) and math.isfinite(value) and HUMAN_SCALE[0] <= value <= HUMAN_SCALE[1]


def _compare(a: float, b: float) -> int:
    return (a > b) - (a < b)


def format_against(value: float, thresholds: Iterable[float] = (), digits: int = 4) -> str:
    """``value`` with ``digits`` decimals, or more where fewer would show it on the other side
    of (or on) a threshold it is compared with: a failing ``0.94996 < 0.95`` prints
    ``0.94996``, never ``0.9500``, and ``-0.0001 < 0`` prints ``-0.0001``, never ``-0.000``."""
    thresholds = [float(t) for t in thresholds if t is not None and math.isfinite(t)]
    for places in range(digits, 18):
        text = f"{value:.{places}f}"
        shown = float(text)
        if all(_compare(shown, t) == _compare(value, t) for t in thresholds):
            return text
    return repr(float(value))


def threshold_text(threshold: float, digits: int = 4) -> str:
    """A gate's threshold as written: ``digits`` decimals when they hold it exactly, else in full."""
    text = f"{threshold:.{digits}f}"
    return text if float(text) == float(threshold) else repr(float(threshold))


def shortfall_text(value: float, minimum: float, digits: int = 4) -> str:
    """``minimum - value`` (positive) with enough decimals not to print as zero."""
    short = minimum - value
    for places in range(digits, 18):
        text = f"{short:.{places}f}"
        if float(text) > 0:
            return text
    return repr(short)


def _finite(value: Optional[float]) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


@dataclass
class Record:
    """One scored case: what was scored, the scores, the gates and the verdict (JSON-ready)."""

    nodeid: str
    kind: str  # "suite" or "python"
    suite: str
    concept: str
    case_id: str
    prompt: str
    subject: Optional[str]
    image: str
    scores: dict[str, Optional[float]] = field(default_factory=dict)
    concept_per_reference: list[Optional[float]] = field(default_factory=list)
    distractor_prompts: dict[str, Optional[float]] = field(default_factory=dict)
    gates: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    passed: bool = True
    human: dict[str, list[float]] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    error: Optional[str] = None
    panel: Optional[str] = None
    check_index: int = 0
    #: masks a segmenter computed for this case: role, image, text, segmenter settings,
    #: foreground_fraction, flag (a mask covering nearly everything) and the PNG file written
    computed_masks: list[dict[str, Any]] = field(default_factory=list)
    #: the generation seed of this image when a case holds several images of one prompt
    #: (one record per case and seed); ``None`` for a one-image case
    seed: Optional[int] = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def diagnostics(self) -> Optional[ScoreDiagnostics]:
        """The typed diagnostics in :attr:`extras` (their JSON form), or ``None`` when it holds
        none (a case that raised, scores made without them)."""
        return ScoreDiagnostics.from_dict(self.extras)

    def score(self, key: str) -> float:
        value = self.scores.get(key)
        return math.nan if value is None else float(value)


def nan_to_none(value: Optional[float]) -> Optional[float]:
    """JSON-ready: a float, or ``None`` for NaN (and for ``None``)."""
    return None if value is None or math.isnan(value) else float(value)


def combine_scores(scores: Sequence["Score"]) -> tuple[dict[str, Optional[float]], list[Optional[float]]]:
    """Scores of one output against several references: CP and global CP are means over them.

    PF, margin and global PF depend on the output alone and come from the first.
    Returns ``(scores by key, CP per reference)``.
    """
    concepts = [s.concept for s in scores]
    finite = [c for c in concepts if not math.isnan(c)]
    first = scores[0]
    combined = {
        "concept": sum(finite) / len(finite) if len(finite) == len(concepts) else math.nan,
        "prompt": first.prompt,
        "global_concept": sum(s.global_concept for s in scores) / len(scores),
        "global_prompt": first.global_prompt,
        "prompt_margin": first.prompt_margin,
    }
    return {k: nan_to_none(v) for k, v in combined.items()}, [nan_to_none(c) for c in concepts]


def evaluate_gates(record: Record) -> list[str]:
    """Failure lines for ``record`` (empty when every gate passes); sets ``passed`` too."""
    failures: list[str] = []
    diagnostics = record.diagnostics
    if not _finite(record.scores.get("concept")):
        empty_refs = [i for i, c in enumerate(record.concept_per_reference) if not _finite(c)]
        which = "" if len(record.concept_per_reference) <= 1 else f" (reference {', '.join(str(i + 1) for i in empty_refs)})"
        threshold = "" if diagnostics is None else f" {diagnostics.fg_threshold:g}"
        failures.append(
            f"reference mask is empty{which}: no patch of the reference mask reaches the "
            f"foreground threshold{threshold} on the patch grid, so CP is NaN"
        )
    for gate, minimum in record.gates.items():
        key, label = GATES[gate]
        value = record.scores.get(key)
        if key == "concept" and not _finite(value):
            continue  # reported above
        if not _finite(value):
            if key in ("prompt", "prompt_margin") and diagnostics is not None and diagnostics.background_patches == 0:
                reason = "the output mask covers every patch: no background is left to pool for PF"
            elif key == "prompt_margin" and not record.distractor_prompts:
                reason = "no distractor prompts to compare with (give `distractors`, or more prompts for this concept)"
            else:
                reason = "the score is NaN"
            failures.append(f"{label} is NaN, gate {gate} = {minimum:g}: {reason}")
        elif value < minimum:
            failures.append(
                f"{label} {format_against(value, [minimum])} < {gate} {threshold_text(minimum)} "
                f"(short by {shortfall_text(value, minimum)})"
            )
    record.failures = failures
    record.passed = not failures and record.error is None
    return failures


def _diagnostic_notes(record: Record, diagnostics: ScoreDiagnostics) -> list[str]:
    """Failure-report lines from how the case was scored: prompt notes and patch counts."""
    lines = []
    if record.subject and not diagnostics.subject_found:
        lines.append(f"  note: subject {record.subject!r} does not occur in the prompt, so nothing was stripped")
    if diagnostics.prompt_truncated:
        lines.append("  note: the PF text was longer than the text tower's context and was truncated")
    reference = f"{diagnostics.ref_foreground_patches}/{diagnostics.ref_patches} foreground ({_grid_text(diagnostics.ref_grid)})"
    output = f"{diagnostics.out_foreground_patches}/{diagnostics.out_patches} foreground ({_grid_text(diagnostics.out_grid)})"
    lines.append(f"  patches: reference {reference}, output {output}, {diagnostics.background_patches} background pooled")
    return lines


def _grid_text(grid: Sequence[int]) -> str:
    """``rows x columns`` of a patch grid, as ``4x6``."""
    return "x".join(map(str, grid))


def failure_report(record: Record) -> str:
    """A multi-line assertion-style message: case, failing scores, prompt, patch counts."""
    diagnostics = record.diagnostics
    lines = [f"MaSC gate failed: {record.suite} / {record.concept} / case {record.case_id!r}"]
    lines += [f"  {failure}" for failure in record.failures]
    gated = {GATES[gate][0]: minimum for gate, minimum in record.gates.items()}  # score -> its threshold
    scores = ", ".join(
        f"{key}={format_against(value, [gated[key]] if key in gated else [])}" if _finite(value) else f"{key}=nan"
        for key, value in record.scores.items()
    )
    lines.append(f"  scores: {scores}")
    if record.distractor_prompts:
        best = max(
            ((p, v) for p, v in record.distractor_prompts.items() if _finite(v)),
            key=lambda pv: pv[1], default=None,
        )
        if best is not None:
            lines.append(f"  best distractor: {best[0]!r} PF {best[1]:.4f}")
    lines.append(f"  prompt: {record.prompt!r}" + ("" if diagnostics is None else f" -> PF text {diagnostics.prompt_text!r}"))
    if diagnostics is not None:
        lines += _diagnostic_notes(record, diagnostics)
    lines.append(f"  image: {record.image}")
    for computed in record.computed_masks:
        lines.append(
            f"  {computed['role']} mask: computed by {computed['segmenter'].get('kind')} from {computed['text']!r}, "
            f"{computed['foreground_fraction']:.1%} foreground" + (f" ({computed['flag']})" if computed.get("flag") else "")
        )
    if record.panel:
        lines.append(f"  panel: {record.panel}")
    return "\n".join(lines)
