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
from .case_inputs import CaseInputs, Output
from .masks import SessionSegmenter, fill_masks, segmentation_text
from .session import SESSION_KEY, MascSession
from .verdict import MascGateFailure, case_verdict, decide, fill_records, judge, keep_records, plain_nodeid

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
        self._seeded: Optional[SeededCase] = None  # the test's checks with a seed: one case

    @property
    def calls(self) -> int:
        """How many times the test called ``check()`` (including calls that raised)."""
        return self._calls

    @property
    def model(self) -> "MaSC":
        return self._session.model()

    def check(self, image: Any, mask: Any = None, prompt: Optional[str] = None, *, seed: Optional[int] = None,
              **overrides: Any) -> "Score":
        """Score ``image`` (+ ``mask``) for ``prompt`` and fail the test if a gate fails.

        Args:
            image: the generated image (path, PIL image or HxWx3 uint8 array).
            mask: its subject mask; ``None`` asks the ``masc_segmenter`` fixture.
            prompt: the prompt the image was generated from.
            seed: the image's generation seed. The checks of one test that give a seed are
                one case with several images: one record each (with its ``seed``, one
                ``case_id``), the gates checked on the mean over the seeds when the test
                ends (not at each call). They must agree on the prompt and every keyword;
                a seed given twice is refused.
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
        if seed is not None:
            self._check_seed(seed, prompt, options)
        given = self._arguments(options, image, mask, seed)
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

    def _gate(self, record: Record, options: dict[str, Any], given: CaseInputs, prompt: str) -> "Score":
        """Masks computed where missing, the samples scored, ``record`` judged (kept in the
        session, :class:`MascGateFailure` on a failed gate; a seeded check joins its case,
        judged when the test ends); returns the score."""
        __tracebackhide__ = True
        test_dir = Path(self._request.node.path).parent
        for name in ("reference", "reference_mask"):  # as written, for the message
            for value in as_list(options.get(name)):
                confined_to_dir(value, test_dir, name)
        inputs = self._masked(record, options, given)
        (output,) = inputs.outputs
        samples = [
            Sample(ref_image=r, ref_mask=m, out_image=output.image, out_mask=output.mask, prompt=prompt,
                   subject=options.get("subject"), distractors=tuple(as_list(options.get("distractors"))))
            for r, m in zip(inputs.references, inputs.reference_masks)
        ]
        scores = self._session.model().score_many(samples)
        if output.seed is None:
            judge(self._session, [record], [scores], inputs)
        else:
            fill_records(self._session, [record], [scores])
            self._seeded.add(record, scores, inputs)
            keep_records(self._session, [record])
            case_verdict(self._seeded.records)  # the records say the verdict so far; the test's end raises
        if len(scores) == 1:
            return scores[0]
        # Several references: CP and global CP are the record's means over them.
        return dataclasses.replace(
            scores[0],
            concept=record.score("concept"),
            global_concept=record.score("global_concept"),
            concept_per_reference=tuple(record.concept_per_reference),
        )

    def _check_seed(self, seed: Any, prompt: str, options: dict[str, Any]) -> None:
        """A seed is a non-negative integer, new to the test's seeded case, whose prompt and
        keywords it shares; raises ``TypeError`` otherwise."""
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise TypeError(f"masc.check(seed={seed!r}): a seed is a non-negative integer")
        if self._seeded is None:
            self._seeded = SeededCase(prompt=prompt, options=options, first_check=self._checks + 1)
            return
        problem = self._seeded.mismatch(seed, prompt, options)
        if problem:
            raise TypeError(f"masc.check(seed={seed}): {problem}")

    def finish(self) -> None:
        """At the test's end: judge its seeded case on the mean over its seeds (panels written,
        :class:`MascGateFailure` raised when a gate fails); nothing without seeded checks."""
        __tracebackhide__ = True
        seeded = self._seeded
        if seeded is None or not seeded.records:
            return
        first = seeded.inputs[0]
        inputs = CaseInputs(outputs=tuple(i.outputs[0] for i in seeded.inputs), references=first.references,
                            reference_masks=first.reference_masks)
        decide(self._session, seeded.records, seeded.scores, inputs)

    def _arguments(self, options: dict[str, Any], image: Any, mask: Any, seed: Optional[int]) -> CaseInputs:
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
        output = Output(image=relative_to_dir(image, test_dir),
                        mask=None if mask is None else relative_to_dir(mask, test_dir), seed=seed)
        return CaseInputs(outputs=(output,), references=tuple(references), reference_masks=tuple(reference_masks),
                          text=segmentation_text(options.get("segment_prompt"), options.get("subject")))

    def _masked(self, record: Record, options: dict[str, Any], given: CaseInputs) -> CaseInputs:
        """``given`` with its missing masks computed by the ``masc_segmenter`` fixture."""
        __tracebackhide__ = True
        if isinstance(self._segmenter, SessionSegmenter):
            return self._segmented(record, given)
        if not given.missing():
            return given
        (output,) = given.outputs
        mask = output.mask if output.mask is not None else self._segmenter(output.image)
        reference_masks = tuple(m if m is not None else self._segmenter(r)
                                for r, m in zip(given.references, given.reference_masks))
        return dataclasses.replace(given, outputs=(dataclasses.replace(output, mask=mask),),
                                   reference_masks=reference_masks)

    def _segmented(self, record: Record, given: CaseInputs) -> CaseInputs:
        """:meth:`_masked` with the session's segmenter (``--masc-segmenter``); the masks it
        computed go into ``record.computed_masks``, also when one of them failed."""
        (filled,) = fill_masks(self._segmenter, [given])
        record.computed_masks = filled.mask_records(self._segmenter.settings) if filled.computed else []
        if filled.error is not None:
            raise filled.error
        return filled

    def _record(self, options: dict[str, Any], given: CaseInputs, prompt: str) -> Record:
        """The record of this check before scoring: what is scored and its gates."""
        from ..metric.inputs import describe

        node = self._request.node
        output = given.outputs[0]
        number = self._seeded.first_check if output.seed is not None else self._checks  # a seeded case: its first
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
            case_id=node.name if number == 1 else f"{node.name}#{number}",
            prompt=prompt,
            subject=subject,
            image=describe(output.image),
            gates={k: float(v) for k, v in options.items() if k in GATES},
            human={k: [float(x) for x in as_list(v)] for k, v in (options.get("human") or {}).items()},
            check_index=self._checks - 1,
            seed=output.seed,
        )


class SeededCase:
    """The checks of one test that gave a seed: one case, its records, scores and inputs in
    call order, and what every call must share with the first."""

    def __init__(self, *, prompt: str, options: dict[str, Any], first_check: int) -> None:
        self.prompt = prompt
        self.options = dict(options)
        self.first_check = first_check  # the 1-based check number whose case id the case keeps
        self.records: list[Record] = []
        self.scores: list[list["Score"]] = []
        self.inputs: list[CaseInputs] = []

    def add(self, record: Record, scores: list["Score"], inputs: CaseInputs) -> None:
        self.records.append(record)
        self.scores.append(scores)
        self.inputs.append(inputs)

    def mismatch(self, seed: int, prompt: str, options: dict[str, Any]) -> Optional[str]:
        """Why a check with ``seed`` cannot join this case (``None``: it can)."""
        if any(record.seed == seed for record in self.records):
            return f"seed {seed} was checked already in this test; each seed of a case is checked once"
        if prompt != self.prompt:
            return (f"prompt {prompt!r} differs from {self.prompt!r} of the test's first seeded check: the seeded "
                    "checks of one test are one case (several images of one prompt)")
        for key in sorted({*options, *self.options}):
            if not _same(options.get(key), self.options.get(key)):
                return (f"{key}={options.get(key)!r} differs from {self.options.get(key)!r} of the test's first seeded "
                        "check: the seeded checks of one test are one case and share every keyword")
        return None


def _same(a: Any, b: Any) -> bool:
    """Equal values, or the same object (arrays and images compare by identity)."""
    if a is b:
        return True
    try:
        equal = a == b
    except Exception:
        return False
    return equal if isinstance(equal, bool) else False


def seeded_case_failure(item: pytest.Item) -> Optional[str]:
    """At the end of a ``@pytest.mark.masc`` test that passed: the failure report of its seeded
    case, judged on the mean over its seeds (``None``: it passed, or the test gave no seed)."""
    checker = getattr(item, "funcargs", {}).get("masc")
    if not isinstance(checker, MascCheck):
        return None
    try:
        checker.finish()
    except MascGateFailure as failure:
        return str(failure)
    return None


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
