"""Fixtures: ``masc_model`` (one ``MaSC`` per process), ``masc`` (the test's gate checker),
``masc_segmenter`` (the ``--masc-segmenter``, or override it to compute masks)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import pytest

from ..errors import InputError, MaSCError
from ..gates import GATES, Record
from ..types import Sample
from .markers import GATES_OFF, as_list, validate_masc_kwargs
from .masks import MaskNeeds, SessionSegmenter, fill_masks, segmentation_text
from .session import SESSION_KEY, MascSession
from .verdict import MascGateFailure, ScoredInputs, judge, plain_nodeid

if TYPE_CHECKING:
    from ..metric.scorer import MaSC
    from ..types import Score


def relative_to_dir(value: Any, directory: Path) -> Any:
    """Paths in marker arguments are relative to the test file's directory."""
    if isinstance(value, (str, Path)):
        path = Path(value).expanduser()
        return path if path.is_absolute() else directory / path
    return value


def confined_to_dir(value: Any, directory: Path, name: str) -> Any:
    """:func:`relative_to_dir` for a reference path, which must stay inside the test file's
    directory, as a suite's paths stay inside the suite's directory."""
    __tracebackhide__ = True
    path = relative_to_dir(value, directory)
    if not isinstance(path, Path):
        return path
    root, resolved = directory.resolve(), path.resolve()
    if not resolved.is_relative_to(root):
        raise InputError(
            f"{name} {str(value)!r} escapes the test file's directory {root} (resolves to {resolved}); "
            "reference paths must stay inside the test file's directory, as suite paths stay inside the "
            f"suite's: copy or move the file under {root}, or pass the image itself (a PIL image or an array)"
        )
    return path


class MascCheck:
    """The ``masc`` fixture: scores a generated image against the test's reference and gates it.

    ``check()`` arguments override the marker's. Paths are relative to the test file.
    """

    def __init__(self, session: MascSession, request: pytest.FixtureRequest, segmenter: Optional[Callable]) -> None:
        self._session = session
        self._request = request
        self._segmenter = segmenter
        marker = request.node.get_closest_marker("masc")
        self.options: dict[str, Any] = dict(marker.kwargs) if marker else {}
        self._checks = 0
        self._calls = 0

    @property
    def calls(self) -> int:
        """How many times the test called ``check()`` (including calls that raised)."""
        return self._calls

    @property
    def model(self) -> "MaSC":
        return self._session.model()

    def check(self, image: Any, mask: Any = None, prompt: Optional[str] = None, **overrides: Any) -> "Score":
        """Score ``image`` (+ ``mask``) for ``prompt`` and fail the test if a gate fails.

        Args:
            image: the generated image (path, PIL image or HxWx3 uint8 array).
            mask: its subject mask; ``None`` asks the ``masc_segmenter`` fixture.
            prompt: the prompt the image was generated from.
            **overrides: any marker keyword (``reference``, ``min_concept`` …).

        Returns:
            The :class:`~pytest_masc.Score` (CP averaged over references when several).

        Every call with well-formed arguments leaves one record (the JSON row, the summary):
        a gate failure, and an error (an unreadable image, a missing file, a mask the
        segmenter could not make, a model that did not load) with ``passed`` False and
        ``error`` its message. A ``TypeError`` for a mistake in the arguments (an unknown
        keyword, no prompt, no reference, no mask and no segmenter, references and masks
        that do not pair up) is raised before anything is read and leaves no record.
        """
        __tracebackhide__ = True
        self._calls += 1
        problem = validate_masc_kwargs(overrides, "masc.check()")
        if problem:
            raise TypeError(problem)
        options = {**self.options, **overrides}
        if prompt is None:
            raise TypeError("masc.check() needs the prompt the image was generated from")
        given = self._arguments(options, image, mask)
        self._checks += 1
        record = self._record(options, given, prompt)
        try:
            return self._gate(record, options, given, prompt)
        except MascGateFailure:
            raise  # judge() kept the record
        except Exception as error:
            record.passed, record.error = False, str(error) if isinstance(error, MaSCError) else f"{type(error).__name__}: {error}"
            if not any(kept is record for kept in self._session.records):
                self._session.add_record(record)
            if isinstance(error, MaSCError):  # the message names the input; the scorer's frames add nothing
                raise error.with_traceback(None) from None
            raise

    def _gate(self, record: Record, options: dict[str, Any], given: ScoredInputs, prompt: str) -> "Score":
        """Masks computed where missing, the samples scored, ``record`` judged (kept in the
        session, :class:`MascGateFailure` on a failed gate); returns the score."""
        __tracebackhide__ = True
        test_dir = Path(self._request.node.path).parent
        for name in ("reference", "reference_mask"):  # as written, for the message
            for value in as_list(options.get(name)):
                confined_to_dir(value, test_dir, name)
        inputs = self._masked(record, options, given)
        samples = [
            Sample(ref_image=r, ref_mask=m, out_image=inputs.image, out_mask=inputs.mask, prompt=prompt,
                   subject=options.get("subject"), distractors=tuple(as_list(options.get("distractors"))))
            for r, m in zip(inputs.references, inputs.reference_masks)
        ]
        scores = self._session.model().score_many(samples)
        record = judge(self._session, record, scores, inputs)
        if len(scores) == 1:
            return scores[0]
        # Several references: CP and global CP are the record's means over them.
        return dataclasses.replace(
            scores[0],
            concept=record.score("concept"),
            global_concept=record.score("global_concept"),
            concept_per_reference=tuple(record.concept_per_reference),
        )

    def _arguments(self, options: dict[str, Any], image: Any, mask: Any) -> ScoredInputs:
        """References, their masks, the image and its mask as given, paths joined to the test
        file's directory (``None`` for a mask to compute). Raises ``TypeError`` for arguments
        that cannot make a gate; reads no file."""
        __tracebackhide__ = True
        test_dir = Path(self._request.node.path).parent
        references = [relative_to_dir(r, test_dir) for r in as_list(options.get("reference"))]
        reference_masks = [relative_to_dir(m, test_dir) for m in as_list(options.get("reference_mask"))]
        if not references:
            raise TypeError("no reference image: give @pytest.mark.masc(reference=..., reference_mask=...)")
        if not reference_masks and self._segmenter is not None:
            reference_masks = [None] * len(references)  # segmented later
        if len(reference_masks) != len(references):
            raise TypeError(
                f"{len(references)} reference image(s) but {len(reference_masks)} reference mask(s): give one mask per "
                "reference, or leave reference_mask out and run with --masc-segmenter to compute them"
            )
        if mask is None and self._segmenter is None:
            raise TypeError("no mask: pass mask=..., run with --masc-segmenter=sam3|clipseg, "
                            "or override the masc_segmenter fixture to compute one")
        return ScoredInputs(image=relative_to_dir(image, test_dir), mask=None if mask is None else relative_to_dir(mask, test_dir),
                            references=references, reference_masks=reference_masks)

    def _masked(self, record: Record, options: dict[str, Any], given: ScoredInputs) -> ScoredInputs:
        """``given`` with its missing masks computed by the ``masc_segmenter`` fixture."""
        __tracebackhide__ = True
        if isinstance(self._segmenter, SessionSegmenter):
            return self._segmented(record, options, given)
        if given.mask is not None and None not in given.reference_masks:
            return given
        mask = given.mask if given.mask is not None else self._segmenter(given.image)
        reference_masks = [m if m is not None else self._segmenter(r) for r, m in zip(given.references, given.reference_masks)]
        return dataclasses.replace(given, mask=mask, reference_masks=reference_masks)

    def _segmented(self, record: Record, options: dict[str, Any], given: ScoredInputs) -> ScoredInputs:
        """:meth:`_masked` with the session's segmenter (``--masc-segmenter``); the masks it
        computed go into ``record.computed_masks``, also when one of them failed."""
        text = segmentation_text(options.get("segment_prompt"), options.get("subject"))
        needs = MaskNeeds(image=given.image, mask=given.mask, references=list(given.references),
                          reference_masks=list(given.reference_masks), text=text)
        (filled,) = fill_masks(self._segmenter, [needs])
        record.computed_masks = filled.mask_records(self._segmenter.settings) if filled.computed else []
        if filled.error is not None:
            raise filled.error
        return dataclasses.replace(given, mask=filled.mask, reference_masks=filled.reference_masks)

    def _record(self, options: dict[str, Any], given: ScoredInputs, prompt: str) -> Record:
        """The record of this check before scoring: what is scored and its gates."""
        from ..metric.inputs import describe

        node = self._request.node
        subject = options.get("subject")
        first_reference = given.references[0]
        concept = options.get("concept") or subject or (
            Path(first_reference).stem if isinstance(first_reference, (str, Path)) else "concept"
        )
        return Record(
            nodeid=plain_nodeid(node),
            kind="python",
            suite=python_suite_name(node),
            concept=str(concept),
            case_id=node.name if self._checks == 1 else f"{node.name}#{self._checks}",
            prompt=prompt,
            subject=subject,
            image=describe(given.image),
            gates={k: float(v) for k, v in options.items() if k in GATES},
            human={k: [float(x) for x in as_list(v)] for k, v in (options.get("human") or {}).items()},
            check_index=self._checks - 1,
        )


def python_suite_name(item: pytest.Item) -> str:
    """The suite a python gate's records belong to: its test file's path from the rootdir."""
    return str(Path(plain_nodeid(item).split("::")[0]))


def unchecked_reason(item: pytest.Item) -> Optional[str]:
    """Why a ``@pytest.mark.masc`` test that ran (with ``--masc``: the gates plugin asks) gated nothing (it never called
    ``masc.check()``), or ``None`` when it did or is not such a test."""
    if not isinstance(item, pytest.Function) or item.get_closest_marker("masc") is None:
        return None
    checker = getattr(item, "funcargs", {}).get("masc")
    if isinstance(checker, MascCheck) and checker.calls > 0:
        return None
    how = "never called masc.check()" if isinstance(checker, MascCheck) else "does not use the masc fixture"
    return (
        f"{item.nodeid} is marked @pytest.mark.masc but {how}: nothing was scored or gated and no record "
        "was written. Call masc.check(image=..., mask=..., prompt=...) in the test, or remove the marker."
    )


def _session(request: pytest.FixtureRequest) -> MascSession:
    session = request.config.stash[SESSION_KEY]
    if not session.settings.enabled:
        pytest.skip(GATES_OFF)
    return session


@pytest.fixture(scope="session")
def masc_model(request: pytest.FixtureRequest) -> "MaSC":
    """The process's one loaded ``MaSC`` (on the GPU when there is one; one GPU per xdist worker)."""
    return _session(request).model()


@pytest.fixture
def masc_segmenter(request: pytest.FixtureRequest) -> Optional[Callable[..., Any]]:
    """What computes a mask ``masc.check()`` is not given. Default: the ``--masc-segmenter``
    (a callable ``(image, text) -> HxW bool mask``, loaded on first use) or ``None``.
    Override it to return your own callable ``image -> HxW mask``; yours wins."""
    return request.config.stash[SESSION_KEY].segmenter


@pytest.fixture
def masc(request: pytest.FixtureRequest, masc_segmenter) -> MascCheck:
    """Gate checker bound to the test's ``@pytest.mark.masc(...)``; ``masc.check()`` returns the Score."""
    return MascCheck(_session(request), request, masc_segmenter)
