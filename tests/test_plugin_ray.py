"""``--masc-ray``: a protocol item scores through ``pytest_masc.ray.score_table`` and gives the
table and gate values of the in-process run (pytester, the tiny model, a local Ray)."""
from __future__ import annotations

import json
import sys
import textwrap

import pytest

from masc_suites import run
from test_ray import require_ray

ATOL = 1e-5


def protocol_suite(pytester, fixture) -> None:
    (pytester.path / "pytest.ini").write_text("[pytest]\n")
    (pytester.path / "masc_bench.toml").write_text(textwrap.dedent(f"""
        [suite]
        name = "bench"
        min_alpha_concept = -1.0

        [protocol]
        kind = "dreambench_plus"
        root = "{fixture.root}"
        masks = "{fixture.masks}"
    """))


def protocols(pytester, name):
    return json.loads((pytester.path / name).read_text())["summary"]["protocols"]


def test_protocol_on_local_ray_gives_the_in_process_table(pytester, tiny_model_dir, monkeypatch):
    require_ray()  # Ray runs in the pytest subprocess below, never in this process
    from pytest_masc.testing.datasets import write_dreambench_fixture

    protocol_suite(pytester, write_dreambench_fixture(pytester.path / "data"))
    plain = run(pytester, tiny_model_dir, "--masc-device=cpu", "--masc-json=plain.json")
    plain.assert_outcomes(passed=1)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    on_ray = run(pytester, tiny_model_dir, "--masc-device=cpu", "--masc-json=ray.json", "--masc-ray=local",
                 subprocess=True)
    on_ray.assert_outcomes(passed=1)
    (expected,), (got,) = protocols(pytester, "plain.json"), protocols(pytester, "ray.json")
    assert got["kind"] == expected["kind"] == "dreambench_plus"
    assert set(got["values"]) == set(expected["values"]) == {"min_alpha_concept", "min_alpha_prompt"}
    for gate, value in expected["values"].items():
        assert value is not None and got["values"][gate] == pytest.approx(value, abs=ATOL)
    assert got["table"] == expected["table"]  # 3-decimal cells: equal scores print equal tables
    (run_meta,) = json.loads((pytester.path / "ray.json").read_text())["runs"]
    assert run_meta["ray"] == "local"


@pytest.mark.parametrize("value, message", [
    ("somewhere", "*--masc-ray / masc_ray: 'somewhere' is not a Ray address: use local*"),
    ("http://head:8265", "*is not a Ray address*ray://HOST:PORT or HOST:PORT*"),
])
def test_bad_ray_address_is_a_usage_error(pytester, tiny_model_dir, value, message):
    result = run(pytester, tiny_model_dir, f"--masc-ray={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_ray_missing_is_a_usage_error_naming_the_extra(pytester, tiny_model_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # find_spec("ray") is then None: as if not installed
    result = run(pytester, tiny_model_dir, "--masc-ray=auto")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert '--masc-ray=auto needs Ray, which is not installed: pip install "pytest-masc[ray]"' in result.stderr.str()


def test_ray_addresses_parse():
    from pytest_masc.ray.samples import parse_address

    assert parse_address("local") is None
    assert parse_address("auto") == "auto"
    assert parse_address("ray://head:10001") == "ray://head:10001"
    assert parse_address("10.0.0.5:6379") == "10.0.0.5:6379"
