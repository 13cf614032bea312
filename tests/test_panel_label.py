"""The failure panel's CP label never prints a failing CP so that it looks like it passes."""
from __future__ import annotations

import math

import pytest

from pytest_masc.gates import Record
from pytest_masc.plugin.artifacts import concept_label


def _record(cp, **gates) -> Record:
    return Record(nodeid="t.py::t", kind="python", suite="t.py", concept="dog", case_id="t", prompt="p",
                  subject="dog", image="x.png", scores={"concept": cp}, gates=gates)


@pytest.mark.parametrize(("cp", "gates", "label"), [
    (0.94995, {"min_concept": 0.95}, "CP 0.9499 < min 0.950"),   # 3 decimals would print 0.950
    (0.9500, {"min_concept": 0.95}, "CP 0.950"),                 # exactly at the gate passes
    (0.95004, {"min_concept": 0.95}, "CP 0.95004"),              # just above: not "0.950", which reads as the gate
    (0.8123, {"min_concept": 0.5}, "CP 0.812"),
    (0.8123, {}, "CP 0.812"),
    (math.nan, {"min_concept": 0.5}, "CP nan"),
])
def test_concept_label(cp, gates, label):
    assert concept_label(_record(cp, **gates)) == label
