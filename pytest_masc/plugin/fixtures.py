"""Fixtures: ``masc_model`` (one ``MaSC`` per process), ``masc`` (the test's gate checker),
``masc_segmenter`` (override it to compute masks)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import pytest

from ..errors import MaSCError
from ..gates import GATES
from .collect import plain_nodeid, record_scores, relative_to_dir

if TYPE_CHECKING:
    from ..metric.scorer import MaSC
    from .session import MascSession
    from ..types import Score

#: why masc tests and fixtures are skipped without ``--masc``
GATES_OFF = "MaSC gates are off: pass --masc to run them"

#: keyword arguments ``@pytest.mark.masc(...)`` and ``masc.check(...)`` accept
MARKER_KWARGS = ("reference", "reference_mask", "subject", "concept", "distractors", "human", *GATES)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


class MascCheck:
    """The ``masc`` fixture: scores a generated image against the test's reference and gates it.

    ``check()`` arguments override the marker's. Paths are relative to the test file.
    """

    def __init__(self, session: "MascSession", request: pytest.FixtureRequest, segmenter: Optional[Callable]) -> None:
        self._session = session
        self._request = request
        self._segmenter = segmenter
        marker = request.node.get_closest_marker("masc")
        self.options: dict[str, Any] = dict(marker.kwargs) if marker else {}
        self._checks = 0

    @property
    def model(self) -> "MaSC":
        return self._session.model()

    def check(
        self,
        image: Any,
        mask: Any = None,
        prompt: Optional[str] = None,
        **overrides: Any,
    ) -> "Score":
        """Score ``image`` (+ ``mask``) for ``prompt`` and fail the test if a gate fails.

        Args:
            image: the generated image (path, PIL image or HxWx3 uint8 array).
            mask: its subject mask; ``None`` asks the ``masc_segmenter`` fixture.
            prompt: the prompt the image was generated from.
            **overrides: any marker keyword (``reference``, ``min_concept`` …).

        Returns:
            The :class:`~pytest_masc.Score` (CP averaged over references when several).
        """
        __tracebackhide__ = True
        from ..types import Sample

        problem = validate_masc_kwargs(overrides, "masc.check()")
        if problem:
            raise TypeError(problem)
        options = {**self.options, **overrides}
        if prompt is None:
            raise TypeError("masc.check() needs the prompt the image was generated from")
        test_dir = Path(self._request.node.path).parent
        references = [relative_to_dir(r, test_dir) for r in _as_list(options.get("reference"))]
        reference_masks = [relative_to_dir(m, test_dir) for m in _as_list(options.get("reference_mask"))]
        if not references:
            raise TypeError("no reference image: give @pytest.mark.masc(reference=..., reference_mask=...)")
        if len(reference_masks) != len(references):
            raise TypeError(
                f"{len(references)} reference image(s) but {len(reference_masks)} reference mask(s): give one mask per reference"
            )
        image = relative_to_dir(image, test_dir)
        if mask is None:
            if self._segmenter is None:
                raise TypeError("no mask: pass mask=..., or override the masc_segmenter fixture to compute one")
            mask = self._segmenter(image)
        else:
            mask = relative_to_dir(mask, test_dir)
        subject = options.get("subject")
        distractors = tuple(_as_list(options.get("distractors")))
        samples = [
            Sample(ref_image=r, ref_mask=m, out_image=image, out_mask=mask, prompt=prompt,
                   subject=subject, distractors=distractors)
            for r, m in zip(references, reference_masks)
        ]
        try:
            scores = self._session.model().score_many(samples)
        except MaSCError as error:  # the message names the input; the scorer's frames add nothing
            raise type(error)(str(error)) from None
        gates = {k: float(v) for k, v in options.items() if k in GATES}
        first_reference = references[0]
        concept = options.get("concept") or subject or (
            Path(first_reference).stem if isinstance(first_reference, (str, Path)) else "concept"
        )
        node = self._request.node
        self._checks += 1
        record = record_scores(
            self._session,
            nodeid=plain_nodeid(node),
            kind="python",
            suite=str(Path(plain_nodeid(node).split("::")[0])),
            concept=str(concept),
            case_id=node.name if self._checks == 1 else f"{node.name}#{self._checks}",
            prompt=prompt,
            subject=subject,
            image=image,
            scores=scores,
            gates=gates,
            human={k: _as_list(v) for k, v in (options.get("human") or {}).items()},
            references=references,
            reference_masks=reference_masks,
            mask=mask,
            check_index=self._checks - 1,
        )
        if len(scores) == 1:
            return scores[0]
        # Several references: CP and global CP are the record's means over them.
        return dataclasses.replace(
            scores[0],
            concept=record.score("concept"),
            global_concept=record.score("global_concept"),
            extras={**scores[0].extras, "concept_per_reference": record.concept_per_reference},
        )


def _session(request: pytest.FixtureRequest) -> "MascSession":
    from .session import SESSION_KEY

    session = request.config.stash[SESSION_KEY]
    if not session.settings.enabled:
        pytest.skip(GATES_OFF)
    return session


@pytest.fixture(scope="session")
def masc_model(request: pytest.FixtureRequest) -> "MaSC":
    """The process's one loaded ``MaSC`` (on the GPU when there is one; one GPU per xdist worker)."""
    return _session(request).model()


@pytest.fixture
def masc_segmenter() -> Optional[Callable[[Any], Any]]:
    """Override to compute masks: return a callable ``image -> HxW mask``. Default: none."""
    return None


@pytest.fixture
def masc(request: pytest.FixtureRequest, masc_segmenter) -> MascCheck:
    """Gate checker bound to the test's ``@pytest.mark.masc(...)``; ``masc.check()`` returns the Score."""
    return MascCheck(_session(request), request, masc_segmenter)


def validate_masc_kwargs(kwargs: dict[str, Any], where: str) -> Optional[str]:
    """A message naming ``where`` when ``kwargs`` has unknown keys or a gate that is not a
    number in [-1, 1] (NaN included); ``None`` when they are fine."""
    import difflib

    for key in kwargs:
        if key not in MARKER_KWARGS:
            close = difflib.get_close_matches(key, sorted(MARKER_KWARGS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return f"{where}: unknown @pytest.mark.masc argument {key!r}{hint}; allowed: {', '.join(sorted(MARKER_KWARGS))}"
    for gate in GATES:
        if gate in kwargs:
            value = kwargs[gate]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1.0 <= float(value) <= 1.0:
                return f"{where}: {gate}={value!r} must be a number in [-1, 1]"
    human = kwargs.get("human")
    if human is not None:
        if not isinstance(human, dict) or set(human) - {"concept", "prompt"}:
            return f"{where}: human must be a dict with 'concept' and/or 'prompt' ratings, got {human!r}"
        for key, ratings in human.items():
            for rating in _as_list(ratings):
                if isinstance(rating, bool) or not isinstance(rating, (int, float)) or not 0 <= rating <= 4:
                    return f"{where}: human[{key!r}] rating {rating!r} must be a number in 0..4"
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
