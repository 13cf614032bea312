"""constraints/oldest.txt pins exactly the lower bounds of pyproject.toml, so the oldest run of
.ci/run tests the versions pyproject.toml promises."""
from __future__ import annotations

import re
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def lower_bounds() -> dict[str, Version]:
    """``{name: version}`` of every ``>=`` bound in the dependencies and the test extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    bounds = {}
    for text in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        requirement = Requirement(text)
        (at_least,) = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        bounds[canonicalize_name(requirement.name)] = Version(at_least)
    return bounds


def pins(path: Path) -> dict[str, Version]:
    pinned = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==(\S+)", line).groups()
            pinned[canonicalize_name(Requirement(name).name)] = Version(version)
    return pinned


def test_oldest_constraints_pin_every_lower_bound():
    bounds = lower_bounds()
    pinned = pins(ROOT / "constraints/oldest.txt")
    # torch is pinned by the install command itself ("torch==2.13.0", README)
    pinned.setdefault("torch", Version(re.search(r'"torch==([^"]+)"', (ROOT / ".ci/run").read_text()).group(1)))
    assert pinned == bounds
