"""Masks the plugin computes (``--masc-segmenter``): the option's parsing, the session's one
lazily loaded segmenter, and the masks it made, each computed once per (image, text).

A missing output ``mask`` or concept ``reference_mask`` is segmented with the concept's
``segment_prompt``, else its ``subject``. A mask with no foreground pixel is an
:class:`~pytest_masc.errors.EmptyMaskError` for its case; one covering at least
:data:`FULL_MASK_FRACTION` of its image is flagged (a warning and the record's ``flag``).
Torch and transformers load when the first mask is needed.
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from ..defaults import DEFAULT_SEGMENTER_MODELS, SEGMENTER_KINDS, segmenter_threshold
from ..errors import EmptyMaskError, InputError, MaSCError, MaskCoverageWarning, SegmenterLoadError
from .case_inputs import CaseInputs, ComputedFor

if TYPE_CHECKING:
    import numpy as np

    from ..metric.segmentation import Segmenter

#: a computed mask covering at least this share of its image is flagged
FULL_MASK_FRACTION = 0.98
OPTION_USAGE = "sam3, clipseg, sam3=ID_OR_DIR or clipseg=ID_OR_DIR"


class SegmenterOptionError(ValueError):
    """A ``--masc-segmenter`` value that names no known segmenter."""


@dataclass(frozen=True)
class SegmenterChoice:
    """``--masc-segmenter``: the segmenter kind and its checkpoint (hub id or directory)."""

    kind: str
    model: str

    @property
    def is_default_model(self) -> bool:
        return self.model == DEFAULT_SEGMENTER_MODELS[self.kind]


def parse_segmenter_option(value: str, base: Optional[Path] = None) -> SegmenterChoice:
    """``"clipseg"`` or ``"sam3=/models/sam3"`` -> a :class:`SegmenterChoice`; a relative
    directory that exists under ``base`` (the invocation directory) is made absolute there."""
    kind, _, model = str(value).strip().partition("=")
    kind, model = kind.strip(), model.strip()
    if kind not in SEGMENTER_KINDS:
        raise SegmenterOptionError(
            f"--masc-segmenter / masc_segmenter {value!r}: unknown segmenter {kind!r}; expected {OPTION_USAGE}"
        )
    if "=" in value and not model:
        raise SegmenterOptionError(f"--masc-segmenter {value!r}: give a hub id or directory after '=' ({OPTION_USAGE})")
    if model and base is not None and not os.path.isabs(os.path.expanduser(model)):
        candidate = base / model
        if candidate.is_dir():
            model = str(candidate)
    return SegmenterChoice(kind=kind, model=model or DEFAULT_SEGMENTER_MODELS[kind])


@dataclass(frozen=True)
class ComputedMask:
    """One mask made by the session's segmenter, with what made it."""

    image: str       # the image, as messages name it
    text: str        # what was segmented
    mask: "np.ndarray"
    foreground_fraction: float
    flag: Optional[str]

    def record(self, role: str, settings: dict[str, Any]) -> dict[str, Any]:
        """The JSON entry of this mask used as ``role`` (``output`` or ``reference N``)."""
        return {"role": role, "image": self.image, "text": self.text, "segmenter": dict(settings),
                "foreground_fraction": self.foreground_fraction, "flag": self.flag, "file": None}


@dataclass(frozen=True)
class MaskRequest:
    """An image whose mask is missing, and the text to segment it with."""

    image: Any
    text: str
    role: str


def display_image(image: Any) -> str:
    """An image for messages: a path relative to the working directory when under it."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        try:
            return str(path.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(path)
    from ..metric.inputs import describe

    return describe(image)


class SegmenterNotLoaded(SegmenterLoadError):
    """The segmenter failed to load earlier in this session; the first failure holds the reason."""

    def __init__(self, choice: SegmenterChoice, first: BaseException) -> None:
        super().__init__(
            f"segmenter {choice.kind} ({choice.model}) is not loaded: {type(first).__name__} at the first "
            "case that needed a mask (its report above says why and what to do)"
        )


class SessionSegmenter:
    """The session's segmenter: loaded on the first mask needed, each (image, text) segmented
    once per process. A load failure is not retried and is explained once: the first caller
    gets the full error, later callers a one-line :class:`SegmenterNotLoaded`."""

    def __init__(self, choice: SegmenterChoice, *, threshold: Optional[float], dtype: Optional[str],
                 device: Callable[[], Optional[str]]) -> None:
        self.choice = choice
        self.threshold = segmenter_threshold(choice.kind, threshold)  # the default as a number: one mask cache for both
        self.dtype = dtype
        self._device = device
        self._segmenter: Optional["Segmenter"] = None
        self._error: Optional[BaseException] = None
        self._masks: dict[tuple, ComputedMask] = {}
        self.load_seconds = 0.0

    @property
    def loaded(self) -> bool:
        return self._segmenter is not None

    @property
    def load_failed(self) -> bool:
        return self._error is not None

    @property
    def kind(self) -> str:
        return self.choice.kind

    def not_loaded(self) -> SegmenterNotLoaded:
        """The one-line error for a caller after the first load failure."""
        assert self._error is not None
        return SegmenterNotLoaded(self.choice, self._error)

    def segmenter(self) -> "Segmenter":
        """The loaded segmenter (loaded now if needed)."""
        if self._segmenter is not None:
            return self._segmenter
        if self._error is not None:
            raise self.not_loaded()
        from ..metric.segmentation import load_segmenter

        started = time.perf_counter()
        try:
            self._segmenter = load_segmenter(
                self.choice.kind, self.choice.model, device=self._device(), dtype=self.dtype,
                threshold=self.threshold, cache_size=0,
            )  # HF_HUB_OFFLINE: the loader reads it (metric.hub.hub_offline)
        except (MaSCError, ValueError) as error:
            self._error = error if isinstance(error, MaSCError) else SegmenterLoadError(f"--masc-segmenter: {error}")
            raise self._error from None
        self.load_seconds = time.perf_counter() - started
        return self._segmenter

    @property
    def settings(self) -> dict[str, Any]:
        """Kind, model, revision, thresholds and dtype of the loaded segmenter."""
        return self.segmenter().settings

    def __call__(self, image: Any, text: str) -> "np.ndarray":
        """The mask of ``text`` in ``image`` (what the default ``masc_segmenter`` fixture gives)."""
        computed = self.compute([MaskRequest(image, text, "output")])[0]
        if isinstance(computed, BaseException):
            raise computed
        empty = self.empty_error(computed)
        if empty is not None:
            raise empty
        return computed.mask

    def compute(self, requests: Sequence[MaskRequest]) -> list:
        """A :class:`ComputedMask` (maybe empty), or the error that stopped it, per request; the pairs not
        seen before are segmented in one batch. Raises the segmenter's load error (every
        request would fail the same way)."""
        from ..metric.segmentation import image_key

        results: list[Any] = [None] * len(requests)
        keys: dict[int, tuple] = {}
        for index, request in enumerate(requests):
            try:
                keys[index] = (image_key(request.image), request.text)
            except InputError as error:
                results[index] = error
        todo: dict[tuple, MaskRequest] = {}
        for index, key in keys.items():
            if key not in self._masks:
                todo.setdefault(key, requests[index])
        errors = self._segment(todo) if todo else {}
        for index, key in keys.items():
            results[index] = errors[key] if key in errors else self._masks[key]
        return results

    def empty_error(self, computed: ComputedMask) -> Optional[EmptyMaskError]:
        """An :class:`EmptyMaskError` when ``computed`` has no foreground pixel, else ``None``."""
        if computed.foreground_fraction > 0.0:
            return None
        return EmptyMaskError(
            f"segmenter {self.kind!r} found no {computed.text!r} in {computed.image} "
            f"(threshold {self.segmenter().threshold:g}): give its mask, or a segment_prompt that names the subject"
        )

    def _segment(self, todo: dict[tuple, MaskRequest]) -> dict[tuple, BaseException]:
        """Segment the pairs of ``todo`` in one call and keep the masks; an unreadable image
        fails only its own pairs. Returns those failures by key."""
        from ..metric.segmentation import foreground_fraction

        segmenter = self.segmenter()
        keys = list(todo)
        try:
            masks: list[Any] = segmenter.segment_many([todo[k].image for k in keys], [todo[k].text for k in keys])
        except InputError:
            masks = []
            for key in keys:
                try:
                    masks.append(segmenter.segment(todo[key].image, todo[key].text))
                except InputError as error:
                    masks.append(error)
        errors: dict[tuple, BaseException] = {}
        for key, mask in zip(keys, masks):
            if isinstance(mask, BaseException):
                errors[key] = mask
                continue
            name = display_image(todo[key].image)
            fraction = foreground_fraction(mask)
            flag = None
            if fraction >= FULL_MASK_FRACTION:
                flag = (f"segmenter {self.kind!r} marked {fraction:.1%} of {name} as {todo[key].text!r}: "
                        "the mask covers (nearly) the whole image, check it")
                warnings.warn(MaskCoverageWarning(flag), stacklevel=2)
            self._masks[key] = ComputedMask(image=name, text=todo[key].text, mask=mask,
                                            foreground_fraction=fraction, flag=flag)
        return errors

    def describe(self) -> dict[str, Any]:
        """Run metadata: the segmenter's settings, device and work counts (JSON-ready)."""
        if self._segmenter is None:
            return {"kind": self.kind, "model": self.choice.model, "loaded": False}
        return {**self._segmenter.settings, "device": str(self._segmenter.device), "loaded": True,
                **self._segmenter.stats.as_dict(), "masks": len(self._masks), "load_seconds": self.load_seconds}


def segmentation_text(segment_prompt: Optional[str], subject: Optional[str]) -> Optional[str]:
    """What a missing mask is segmented with: the explicit prompt, else the subject."""
    return segment_prompt or subject


def fill_masks(segmenter: Optional[SessionSegmenter], cases: Sequence[CaseInputs]) -> list[CaseInputs]:
    """Every case with its missing masks computed (each output's and each reference's), all in
    one segmenter batch.

    A case whose mask cannot be computed (unreadable image, empty mask, no text, a segmenter
    that does not load) carries the error; of the cases a load failure stops, the session's
    first carries the full error and the others a one-line :class:`SegmenterNotLoaded`."""
    requests: list[MaskRequest] = []
    owners: list[tuple[int, Optional[int]]] = []  # (case number, output index) of each request
    problems: dict[int, BaseException] = {}
    for number, case in enumerate(cases):
        missing = case.missing()
        if missing and segmenter is None:
            problems[number] = InputError(f"{display_image(missing[0][2])}: no {missing[0][0]} mask and no "
                                          "segmenter: give the mask, or run with --masc-segmenter=sam3|clipseg")
        elif missing and not case.text:
            problems[number] = InputError(f"{display_image(missing[0][2])}: no {missing[0][0]} mask and "
                                          "no subject or segment_prompt to segment it with")
        else:
            requests += [MaskRequest(image, case.text or "", role) for role, _, image in missing]
            owners += [(number, output) for _, output, _ in missing]
    try:
        results = segmenter.compute(requests) if requests and segmenter is not None else []
    except MaSCError as error:
        if segmenter is None or not segmenter.load_failed:
            raise
        # the segmenter does not load: the cases that need it fail, the first one saying why
        for order, number in enumerate(dict.fromkeys(number for number, _ in owners)):
            problems.setdefault(number, error if order == 0 else segmenter.not_loaded())
        owners, results = [], []
    computed: dict[int, list[ComputedFor]] = {}
    for (number, output), request, result in zip(owners, requests, results):
        if isinstance(result, BaseException):
            problems.setdefault(number, result)
            continue
        computed.setdefault(number, []).append(ComputedFor(request.role, output, result))
        empty = segmenter.empty_error(result)
        if empty is not None:
            problems.setdefault(number, empty)
    return [case.filled(computed.get(number, []), problems.get(number)) for number, case in enumerate(cases)]


def protocol_masks(segmenter: Optional[SessionSegmenter], spec: Any, cache_root: Path) -> tuple[Any, dict[str, Any]]:
    """A DreamBench++ protocol with ``masks=auto``: its masks segmented (subject: each
    concept's class name) into a cache directory in the published mirror layout, the ones
    already there reused. Returns the spec reading that directory and what was done."""
    import dataclasses
    import hashlib
    import json

    from ..protocols.dreambench_masks import write_dreambench_masks
    from ..protocols.spec import AUTO_MASKS

    if spec.masks != AUTO_MASKS:
        return spec, {}
    if spec.kind != "dreambench_plus":
        raise InputError(f"{spec.kind}: masks=auto is for the dreambench_plus protocol")
    if segmenter is None:
        raise InputError(f"{spec.kind} masks=auto needs a segmenter: run with --masc-segmenter=sam3|clipseg")
    identity = json.dumps([segmenter.kind, segmenter.choice.model, segmenter.threshold], sort_keys=True)
    directory = cache_root / f"{Path(spec.root).name}-{segmenter.kind}-{hashlib.sha1(identity.encode()).hexdigest()[:10]}"
    work = write_dreambench_masks(spec.root, directory, lambda images, texts: segmenter.segmenter().segment_many(images, texts))
    info: dict[str, Any] = {"directory": str(directory), "written": work.written, "reused": work.reused}
    if segmenter.loaded:
        info["segmenter"] = segmenter.settings
        (directory / "segmenter.json").write_text(json.dumps(info["segmenter"], indent=2), encoding="utf-8")
    return dataclasses.replace(spec, masks=str(directory)), info


__all__ = [
    "ComputedMask", "FULL_MASK_FRACTION", "protocol_masks", "MaskRequest", "fill_masks", "SegmenterChoice", "SegmenterNotLoaded", "SegmenterOptionError",
    "SessionSegmenter", "display_image", "parse_segmenter_option", "segmentation_text",
]
