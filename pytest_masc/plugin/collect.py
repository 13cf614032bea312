"""Collection: a ``masc_*.toml`` file becomes a :class:`MascSuiteFile` node with one
:class:`MascCaseItem` per case (the file node scores its cases in one batch), or a
:class:`MascProtocolItem` that runs a benchmark protocol; ``--masc-protocol`` adds one too.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import pytest

from ..errors import InputError, MaSCError, ModelLoadError, PromptTruncatedWarning, SegmenterLoadError, SuiteError
from ..gates import Record, format_against
from ..protocols.spec import ProtocolSpec
from ..suite import Case, Concept, Suite, load_suite, missing_files
from ..types import Sample
from .case_inputs import CaseInputs, Output
from .fixtures import python_suite_name
from .masks import fill_masks, protocol_masks
from .session import SESSION_KEY, MascSession
from .terminal import ProgressLine
from .verdict import MascGateFailure, error_text, judge, plain_nodeid

if TYPE_CHECKING:
    from ..types import Score

#: where ``masks=auto`` protocols cache their masks, under the rootdir
MASK_CACHE = ".masc-masks"

#: suite name -> the suite files collected under it (path -> node); one per name is allowed
SUITE_FILES_KEY: "pytest.StashKey[dict[str, dict[Path, MascSuiteFile]]]" = pytest.StashKey()


class MascSuiteFile(pytest.File):
    """A ``masc_*.toml`` file: parsed and validated at collection, one item per case. It
    scores its cases in one batch, when the first of them runs. Missing image and mask files
    are not collection errors: each fails its own case when it runs."""

    def collect(self):
        try:
            suite = load_suite(self.path, check_files=False)
        except SuiteError as error:
            raise self.CollectError(f"MaSC suite error: {error}") from None
        self.suite_name = suite.name  # checked against the run's other suites: refuse_shared_suite_names
        self.config.stash.setdefault(SUITE_FILES_KEY, {}).setdefault(suite.name, {})[self.path] = self
        unmasked = _first_unmasked(suite)
        if unmasked and self.config.stash[SESSION_KEY].segmenter is None:
            raise self.CollectError(
                f"MaSC suite error: {unmasked} has no mask: give it, or run with --masc-segmenter=sam3|clipseg "
                "(ini masc_segmenter) to segment it with the concept's subject"
            )
        self.cases: list[MascCaseItem] = []
        # case node id -> per output image, its scores (one per reference) or what stopped them; or
        # what stopped the whole case
        self._scores: dict[str, Any] = {}
        self._inputs: dict[str, CaseInputs] = {}  # case node id -> its images and masks, computed ones included
        if suite.protocol:
            yield MascProtocolItem.from_parent(
                self, name=suite.protocol.kind, protocol=suite.protocol,
                suite_name=suite.name, suite_gates=suite.suite_gates,
            )
        else:  # its alpha gates, cases per concept and rated cases, for the session's end
            self.config.stash[SESSION_KEY].collect_suite(self.nodeid, suite)
        for case in suite.cases:
            item = MascCaseItem.from_parent(self, name=case.id, suite=suite, case=case, concept=suite.concepts[case.concept])
            self.cases.append(item)
            yield item

    def scores(self, item: "MascCaseItem") -> list[Any]:
        """A case's scores: per output image (seed), its scores (one per reference) or the error
        that stopped them; the file's selected cases not scored yet are scored with it, in one
        ``score_many`` batch (a case's images side by side). Raises what stopped the whole case."""
        if item.nodeid not in self._scores:
            selected = set(self.session.items)
            batch = [
                case for case in self.cases
                if case in selected and case.nodeid not in self._scores and not case.missing_files()
            ] or [item]
            self._score_batch(batch)
        result = self._scores[item.nodeid]
        if isinstance(result, BaseException):
            raise result
        return result

    def inputs(self, item: "MascCaseItem") -> CaseInputs:
        """A scored case's images and masks (computed masks included)."""
        return self._inputs[item.nodeid]

    def _fill_masks(self, session: MascSession, batch: list["MascCaseItem"]) -> list["MascCaseItem"]:
        """Compute the batch's missing masks in one segmenter call; returns the cases that
        can be scored (a case whose mask failed keeps its error)."""
        try:
            filled = fill_masks(session.segmenter, [case_item.case_inputs() for case_item in batch])
        except Exception as error:  # the segmenter does not load: every case of the batch reports it
            for case_item in batch:
                self._scores[case_item.nodeid] = error
            raise
        ready = []
        for case_item, inputs in zip(batch, filled):
            self._inputs[case_item.nodeid] = inputs
            if inputs.error is not None:
                self._scores[case_item.nodeid] = inputs.error
            else:
                ready.append(case_item)
        return ready

    def _score_batch(self, batch: list["MascCaseItem"]) -> None:
        session = self.config.stash[SESSION_KEY]
        masc = session.model()
        batch = self._fill_masks(session, batch)
        samples, owners = [], []  # owners: (case node id, output index) of each sample
        for case_item in batch:
            for output, output_samples in enumerate(case_item.samples(self._inputs[case_item.nodeid])):
                samples += output_samples
                owners += [(case_item.nodeid, output)] * len(output_samples)
        reporter = ProgressLine(self.config, f"MaSC {self.path.name}")
        started = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", PromptTruncatedWarning)  # re-issued per case, naming it
                results = masc.score_many(samples, progress=reporter.update, errors="return")
        except Exception as error:  # e.g. out of memory on one image: every case of the file reports it
            for nodeid, _ in owners:
                self._scores[nodeid] = error
            raise
        finally:
            reporter.close()
            session.score_seconds += time.perf_counter() - started
        for case_item in batch:
            self._scores[case_item.nodeid] = [[] for _ in self._inputs[case_item.nodeid].outputs]
        for (nodeid, output), result in zip(owners, results):
            per_output = self._scores[nodeid]
            if isinstance(result, BaseException):
                per_output[output] = result
            elif not isinstance(per_output[output], BaseException):
                per_output[output].append(result)


class MascCaseItem(pytest.Item):
    """One suite case: scored with the other cases of its file in one batch, then gated."""

    def __init__(self, *, suite: Suite, case: Case, concept: Concept, **kwargs) -> None:
        super().__init__(**kwargs)
        self.suite = suite
        self.case = case
        self.concept = concept
        self.add_marker(pytest.mark.masc_suite)

    def case_inputs(self) -> CaseInputs:
        """The case's images and masks as given (``None``: to segment)."""
        return CaseInputs(
            outputs=tuple(Output(image=image.path, mask=image.mask, seed=image.seed) for image in self.case.images),
            references=tuple(self.concept.references), reference_masks=tuple(self.concept.reference_masks),
            text=self.concept.segmentation_text,
        )

    def samples(self, inputs: CaseInputs) -> list[list[Sample]]:
        """The case's samples per output image, one per reference of its concept, with ``inputs``' masks."""
        return [
            [Sample(ref_image=reference, ref_mask=reference_mask, out_image=output.image, out_mask=output.mask,
                    prompt=self.case.prompt, subject=self.concept.subject, distractors=self.case.distractors)
             for reference, reference_mask in zip(inputs.references, inputs.reference_masks)]
            for output in inputs.outputs
        ]

    def missing_files(self) -> list[str]:
        """Why the case's files cannot be read: references, masks, image (empty: they exist)."""
        return missing_files(self.suite, self.case)

    def runtest(self) -> None:
        session = self.config.stash[SESSION_KEY]
        try:
            problems = self.missing_files()
            if problems:
                raise InputError("; ".join(problems))
            scores = self.parent.scores(self)
        except MaSCError as error:  # the whole case: every image's record says why
            for record in self._records(session):
                record.passed, record.error = False, error_text(error)
                session.add_record(record)
            raise
        judge(session, self._records(session), scores, self.parent.inputs(self))

    def _records(self, session: MascSession) -> list[Record]:
        """The case's records before scoring, one per image (seed): what is scored, its gates
        and the masks computed for it."""
        inputs = self.parent._inputs.get(self.nodeid)
        records = []
        for index, image in enumerate(self.case.images):
            record = Record(
                nodeid=plain_nodeid(self), kind="suite", suite=self.suite.name, concept=self.case.concept,
                case_id=self.case.id, prompt=self.case.prompt, subject=self.concept.subject,
                image=str(image.path), gates=dict(self.case.gates),
                human={k: [float(x) for x in v] for k, v in self.case.human.items()},
                check_index=index, seed=image.seed,
            )
            if inputs is not None and inputs.computed:
                record.computed_masks = inputs.mask_records(session.segmenter.settings, index)
            records.append(record)
        return records

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, MascGateFailure):
            return str(excinfo.value)
        if isinstance(excinfo.value, ModelLoadError):  # the model's or the segmenter's fault, not the case's
            what = "segmenter" if isinstance(excinfo.value, SegmenterLoadError) else "model"
            return f"MaSC {what} error: {excinfo.value}"
        if isinstance(excinfo.value, MaSCError):
            return f"MaSC error in {self.case.location}: {excinfo.value}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, 0, f"{self.suite.name}::{self.case.id}"  # a line: skip reports need one


class MascProtocolFailure(AssertionError):
    """A suite-level protocol gate failed."""

    def __init__(self, suite: str, failures: list[str], table: str) -> None:
        super().__init__("suite gate failed: " + "; ".join(failures) + "\n" + table)


class MascProtocolItem(pytest.Item):
    """Scores a whole benchmark dataset and gates the suite on its agreement statistics."""

    def __init__(self, *, protocol: ProtocolSpec, suite_name: str, suite_gates: dict[str, float], **kwargs) -> None:
        super().__init__(**kwargs)
        self.protocol = protocol
        self.suite_name = suite_name
        self.suite_gates = dict(suite_gates)

    def runtest(self) -> None:
        from ..protocols.evaluate import run_protocol  # numpy, the data loaders

        session = self.config.stash[SESSION_KEY]
        missing = self.protocol.missing_directory()
        if missing:  # before the model loads: a typo should not cost a load
            raise InputError(missing)
        masc = _ray_scorer(session) if session.settings.ray else session.model()
        session.ray_scored = session.ray_scored or bool(session.settings.ray)
        started = time.perf_counter()
        protocol, computed_masks = protocol_masks(session.segmenter, self.protocol, self.config.rootpath / MASK_CACHE)
        progress = ProgressLine(self.config, f"MaSC {self.protocol.kind}")
        try:
            outcome = run_protocol(protocol, masc, baselines=_baseline_scorers(session), progress=progress.update)
        finally:
            progress.close()
            session.score_seconds += time.perf_counter() - started
        session.protocol_tables.append(
            {"suite": self.suite_name, "kind": self.protocol.kind, "table": outcome.table, "values": outcome.values,
             **({"computed_masks": computed_masks} if computed_masks else {})}
        )
        failures = _gate_failures(self.suite_gates, outcome.values)
        if failures:
            session.suite_findings.extend(f"{self.suite_name}: {f}" for f in failures)
            raise MascProtocolFailure(self.suite_name, failures, outcome.table)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, (MascProtocolFailure, MaSCError)):
            return f"MaSC protocol {self.protocol.kind} ({self.suite_name}): {excinfo.value}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, 0, f"{self.suite_name}::{self.protocol.kind}"


def refuse_shared_suite_names(session: pytest.Session, items: list[pytest.Item]) -> None:
    """Suite names are unique within a run: a name is one summary row per concept, one
    baseline entry and one set of suite gates. Every suite file whose name another suite
    file, the ``--masc-protocol`` or a file of python gates also uses gets the same
    collection error naming them all, whichever was collected first, and its items are
    dropped (with ``--continue-on-collection-errors`` the other suites still run)."""
    config = session.config
    state = config.stash[SESSION_KEY]
    others: dict[str, set[str]] = {}
    if state.settings.enabled and state.settings.protocol is not None:
        kind = state.settings.protocol.kind
        others.setdefault(kind, set()).add(f"--masc-protocol={kind}=... (a protocol's suite is named after its kind)")
    for item in items:
        if isinstance(item, pytest.Function) and item.get_closest_marker("masc") is not None:
            name = python_suite_name(item)
            others.setdefault(name, set()).add(f"the python gates of {name} (their suite is the test file's path)")
    refused: set[pytest.Collector] = set()
    for name, files in sorted(config.stash.get(SUITE_FILES_KEY, {}).items()):
        if len(files) + len(others.get(name, ())) < 2:
            continue
        nodes = sorted(files.values(), key=lambda node: node.nodeid)
        named_after_file = [node.path.name for node in nodes if node.suite_name == _name_from_file(node.path)]
        default = (
            f" (a suite file without [suite] name is named after its file: {named_after_file[0]} -> {name!r})"
            if named_after_file else ""
        )
        for node in nodes:  # one message per file, each naming all: pytest-xdist shows a message once
            users = [other.nodeid for other in nodes if other is not node] + sorted(others.get(name, ()))
            message = (
                f"MaSC suite error: {node.nodeid}: suite name {name!r} is also used by {' and '.join(users)}{default}. "
                "Suite names must be unique within a run: a suite name is one row per concept in the summary, one "
                "baseline entry and one set of suite gates, so these would be pooled and one file's suite gates "
                'would replace the other\'s. Give each suite file its own name: [suite] name = "..."'
            )
            config.hook.pytest_collectreport(report=pytest.CollectReport(node.nodeid, "failed", message, []))
            refused.add(node)
        state.suite_gates.pop(name, None)
        state.collected.pop(name, None)
    if refused:
        items[:] = [item for item in items if item.parent not in refused]


def _name_from_file(path: Path) -> str:
    """The name of a suite file that gives no ``[suite] name``: its stem without ``masc_``."""
    return path.stem.removeprefix("masc_") or path.stem


def _first_unmasked(suite: Suite) -> Optional[str]:
    """Where the suite leaves a mask out (a case or a concept), or ``None`` when it gives all."""
    for case in suite.cases:
        for image in case.images:
            if image.mask is None:
                return f"{case.location}: the output image {image.path.name}"
        if None in suite.concepts[case.concept].reference_masks:
            return f"{suite.path.name}, concept {case.concept!r}: a reference"
    return None


def _gate_failures(gates: dict[str, float], values: dict[str, Optional[float]]) -> list[str]:
    failures = []
    for gate, minimum in sorted(gates.items()):
        value = values.get(gate)
        if value is None:
            failures.append(f"{gate} = {minimum:g}: the protocol gives no value for it")
        elif value < minimum:
            failures.append(f"{gate}: {format_against(value, [minimum], 3)} < {minimum:g}")
    return failures


def _ray_scorer(session: MascSession) -> Any:
    """``--masc-ray``: a ``score_many`` on Ray actors with the session's model options."""
    from ..ray.samples import RayScorer, parse_address

    return RayScorer(options=session.settings.model_options, address=parse_address(session.settings.ray))


def _baseline_scorers(session: MascSession) -> dict[str, Any]:
    """The ``--masc-baselines`` scorers, loaded on the model's device."""
    if not session.settings.baselines:
        return {}
    from ..metric.baselines import CLIP_MODEL, DINO_MODEL, CLIPScorer, DINOScorer

    device = session.device() if session.settings.ray else str(session.model().device)
    scorers: dict[str, Any] = {}
    for name, model_id in session.settings.baselines.items():
        if name == "clip":
            scorers["clip"] = CLIPScorer.from_pretrained(model_id or CLIP_MODEL, device=device)
        elif name == "dino":
            scorers["dino"] = DINOScorer.from_pretrained(model_id or DINO_MODEL, device=device)
    return scorers
