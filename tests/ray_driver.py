"""A Ray driver for tests/test_ray.py, run in a fresh interpreter, never inside pytest:

    python tests/ray_driver.py CALLS OUTCOMES

CALLS is a pickle of ``[(name, helper, kwargs), ...]`` with ``helper`` one of :data:`HELPERS`;
the driver starts one local Ray (2 CPUs, no GPU, no dashboard), makes the calls in order on it,
shuts Ray down, and pickles ``{name: ("returned", value) | ("raised", exception)}`` to OUTCOMES.

Why a separate interpreter: pytester restores ``sys.modules`` when a test ends, so a test that
imports Ray in the pytest process has Ray's Python modules dropped while its compiled core
(``ray._raylet``) stays loaded; a later ``import ray`` in that process runs the Python modules
again over the old core, and ``ray.init`` dies with a segmentation fault (tests/conftest.py).
"""
from __future__ import annotations

import io
import os
import pickle
import sys
from contextlib import redirect_stderr
from typing import Any


def score(**options: Any) -> tuple[Any, Any]:
    """``score_table(**options)`` and its ``RunInfo``."""
    from pytest_masc.ray import RunInfo, score_table

    info = RunInfo()
    return score_table(info=info, **options), info


def cli(argv: list[str]) -> tuple[int, str]:
    """``python -m pytest_masc.ray ARGV``: its exit code and what it printed to stderr."""
    from pytest_masc.ray.cli import main

    stderr = io.StringIO()
    with redirect_stderr(stderr):
        code = main(argv)
    return code, stderr.getvalue()


HELPERS = {"score": score, "cli": cli}


def loadable_without_ray(error: Exception) -> Exception:
    """``error``, or a ``RuntimeError`` naming it where unpickling it would import Ray."""
    if type(error).__module__.split(".")[0] == "ray":
        return RuntimeError(f"{type(error).__module__}.{type(error).__qualname__}: {error}")
    return error


def main(calls_path: str, outcomes_path: str) -> None:
    with open(calls_path, "rb") as file:
        calls = pickle.load(file)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False,
             object_store_memory=256 * 1024 ** 2, log_to_driver=False)
    outcomes: dict[str, tuple[str, Any]] = {}
    try:
        for name, helper, kwargs in calls:
            try:
                outcomes[name] = ("returned", HELPERS[helper](**kwargs))
            except Exception as error:  # the test decides whether it was expected
                outcomes[name] = ("raised", loadable_without_ray(error))
    finally:
        ray.shutdown()
    with open(outcomes_path, "wb") as file:
        pickle.dump(outcomes, file)


if __name__ == "__main__":
    main(*sys.argv[1:])
