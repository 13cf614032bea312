"""Measure the mutation score of the modules that decide verdicts, with cosmic-ray (issue #20).

Usage (from the repository root, in the project's virtual environment with the ``mutation``
extra installed)::

    nice -n 15 python benchmarks/mutation.py                 # every module in pyproject.toml
    nice -n 15 python benchmarks/mutation.py report/shards   # some modules (their ids)
    python benchmarks/mutation.py --report-only               # re-read the work databases
    nice -n 15 python benchmarks/mutation.py --rerun-survivors  # run the survivors again

The modules, the mutation operators kept and each module's test command are configured in
pyproject.toml, ``[tool.masc-mutation]``. cosmic-ray mutates the package files in place (and
restores them), so pytester runs and pytest subprocesses import the mutant through
``PYTHONPATH``, which this script sets to the repository root. Each mutant's tests run in a
child forked from a warm server process that has already imported torch, transformers,
pandas and the other heavy dependencies (never ``pytest_masc``), which saves the ~6 s of
imports a fresh interpreter pays per mutant. Work files go to ``.mutation/`` (git-ignored);
the report to ``.mutation/report.md``. Equivalent mutants are listed, with the reason, in
``benchmarks/mutation.equivalents.toml``.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
#: work databases, configs and the report (a --jobs worker's tree writes to its parent's)
WORK = Path(os.environ.get("MASC_MUTATION_WORK", ROOT / ".mutation"))
SOCKET = ROOT / ".mutation" / "forkserver.sock"  # one fork server per tree
EQUIVALENTS = ROOT / "benchmarks" / "mutation.equivalents.toml"
WARM_IMPORTS = ("numpy", "torch", "transformers", "pandas", "pyarrow", "PIL.Image", "hypothesis",
                "sklearn.metrics", "krippendorff", "scipy.stats", "pytest", "_pytest.pytester")


def load_settings() -> dict:
    """The ``[tool.masc-mutation]`` table of pyproject.toml."""
    with open(ROOT / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["tool"]["masc-mutation"]


# ---------------------------------------------------------------- fork server (test runner)
def serve(timeout_s: float) -> None:
    """Warm imports, then run one pytest per connection in a forked child; reply its exit code."""
    import importlib
    for name in WARM_IMPORTS:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    assert not any(m.startswith("pytest_masc") for m in sys.modules), "the server imported pytest_masc"
    SOCKET.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(SOCKET))
    server.listen(1)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        connection, _ = server.accept()
        with connection:
            args = json.loads(connection.makefile("r").readline())
            pid = os.fork()
            if pid == 0:  # child: run the tests against the files as they are on disk now
                server.close()
                signal.alarm(int(timeout_s * 0.9))  # a mutant that loops forever dies here, before cosmic-ray's timeout
                sys.dont_write_bytecode = True
                log = open(SOCKET.parent / "last-test-output.txt", "w")
                os.dup2(log.fileno(), 1)
                os.dup2(log.fileno(), 2)
                import pytest
                try:
                    code = int(pytest.main(args))
                except BaseException:  # noqa: BLE001 - any crash is a failed test run
                    code = 99
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
            try:
                connection.sendall(f"{code}\n".encode())
            except OSError:  # cosmic-ray timed the client out; serve the next one
                pass


UNREACHABLE = "fork server unreachable"


def client(pytest_args: list[str]) -> int:
    """Ask the fork server to run pytest with these arguments; return pytest's exit code. A
    server that cannot be reached prints :data:`UNREACHABLE` (the report counts the mutant
    incompetent, never killed)."""
    for _ in range(30):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
                connection.connect(str(SOCKET))
                connection.sendall((json.dumps(pytest_args) + "\n").encode())
                reply = connection.makefile("r").readline().strip()
            return int(reply) if reply else 98
        except OSError:
            time.sleep(1.0)
    print(UNREACHABLE, flush=True)
    return 97


# ---------------------------------------------------------------- cosmic-ray sessions
def module_id(path: str) -> str:
    """``pytest_masc/report/shards.py`` -> ``report/shards``."""
    return path.removeprefix("pytest_masc/").removesuffix(".py")


def write_config(path: str, tests: list[str], settings: dict, keep: list[str]) -> Path:
    """The cosmic-ray config for one module: its tests run through the fork server."""
    ident = module_id(path).replace("/", "_")
    pytest_args = ["-p", "no:cacheprovider", "-x", "-q", *tests]
    command = f"{sys.executable} {ROOT / 'benchmarks' / 'mutation.py'} --client -- " + " ".join(pytest_args)
    exclude = "core/(?!(?:" + "|".join(keep) + ")$).*"
    config = WORK / f"{ident}.toml"
    config.write_text(
        "[cosmic-ray]\n"
        f"module-path = {json.dumps(path)}\n"
        f"timeout = {float(settings['timeout'])}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(command)}\n"
        "[cosmic-ray.distributor]\nname = \"local\"\n"
        "[cosmic-ray.filters.operators-filter]\n"
        f"exclude-operators = [{json.dumps(exclude)}]\n")
    return config


def run_module(path: str, tests: list[str], settings: dict, rerun_survivors: bool, sample: int) -> None:
    """Create (once) and execute the cosmic-ray session of one module."""
    keep = settings["operators"] + settings.get("extra-operators", {}).get(module_id(path), [])
    config = write_config(path, tests, settings, keep)
    database = config.with_suffix(".sqlite")
    if not database.exists():
        subprocess.run(["cosmic-ray", "init", str(config), str(database)], check=True, cwd=ROOT)
        subprocess.run(["cr-filter-operators", str(database), str(config)], check=True, cwd=ROOT)
    if sample:
        keep_sample(database, sample, module_id(path))
    if rerun_survivors:
        with sqlite3.connect(database) as db:
            db.execute("DELETE FROM work_results WHERE test_outcome = 'SURVIVED'")
    started = time.monotonic()
    subprocess.run(["cosmic-ray", "exec", str(config), str(database)], check=True, cwd=ROOT)
    print(f"{module_id(path)}: {time.monotonic() - started:.0f} s", flush=True)


def keep_sample(database: Path, size: int, seed: str) -> None:
    """Mark all but ``size`` mutants (a seeded random sample) as not sampled; on a session
    sampled before, draw more of its unsampled mutants until ``size`` are sampled (on a session
    never sampled, the sample is drawn from the mutants not tested yet)."""
    import random
    with sqlite3.connect(database) as db:
        unsampled = [row[0] for row in db.execute(
            "SELECT job_id FROM work_results WHERE output = ? ORDER BY job_id", (NOT_SAMPLED,))]
        if unsampled:
            considered = (db.execute("SELECT count(*) FROM work_items").fetchone()[0]
                          - db.execute("SELECT count(*) FROM work_results WHERE worker_outcome = 'SKIPPED'").fetchone()[0])
            more = random.Random(f"{seed}+{considered}").sample(unsampled, min(max(size - considered, 0), len(unsampled)))
            db.executemany("DELETE FROM work_results WHERE job_id = ?", [(job,) for job in more])
            return
        pending = [row[0] for row in db.execute(
            "SELECT job_id FROM work_items WHERE job_id NOT IN (SELECT job_id FROM work_results) ORDER BY job_id")]
        chosen = set(random.Random(seed).sample(pending, min(size, len(pending))))
        db.executemany("INSERT INTO work_results (worker_outcome, output, job_id) VALUES ('SKIPPED', ?, ?)",
                       [(NOT_SAMPLED, job) for job in pending if job not in chosen])


def tree_copy(index: int) -> Path:
    """A copy of this tree (tracked and untracked, not ignored files) for a parallel job."""
    target = WORK / f"tree-{index}"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(source.read_bytes())
    return target


def run_jobs(chosen: list[str], jobs: int, extra_args: list[str]) -> None:
    """Run the chosen modules in ``jobs`` tree copies at once (each mutates its own files)."""
    workers = []
    for index in range(jobs):
        share = chosen[index::jobs]
        if share:
            tree = tree_copy(index)
            workers.append(subprocess.Popen(
                [sys.executable, str(tree / "benchmarks" / "mutation.py"), *extra_args, *map(module_id, share)],
                cwd=tree, env={**os.environ, "MASC_MUTATION_WORK": str(WORK), "PYTHONPATH": str(tree)}))
    for worker in workers:
        worker.wait()


# ---------------------------------------------------------------- report
NOT_SAMPLED = "not sampled"

def load_equivalents() -> dict:
    """(module id, line, operator, mutated line) -> (original line, reason) of the listed equivalents."""
    with open(EQUIVALENTS, "rb") as handle:
        rows = tomllib.load(handle).get("equivalent", [])
    return {(r["module"], int(r["line"]), r["operator"], r["mutant"]): (r["code"], r["reason"]) for r in rows}


def mutated_line(diff: Optional[str]) -> str:
    """The first added line of a mutant's diff, stripped."""
    added = (d[1:] for d in (diff or "").splitlines() if d.startswith("+") and not d.startswith("+++"))
    return next(added, "").strip()


def module_rows(path: str, equivalents: dict) -> tuple[dict, list[str], list[str]]:
    """Counts, surviving mutants and stale equivalence entries (the line changed, or the
    mutant was killed after all) for one module."""
    ident = module_id(path)
    database = WORK / (ident.replace("/", "_") + ".sqlite")
    counts = dict(mutants=0, killed=0, survived=0, equivalent=0, pending=0, incompetent=0, unsampled=0)
    survivors: list[str] = []
    if not database.exists():
        return counts, survivors, []
    source = (ROOT / path).read_text().splitlines()
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT s.operator_name, s.start_pos_row, r.worker_outcome, r.test_outcome, r.output, r.diff "
            "FROM mutation_specs s LEFT JOIN work_results r ON r.job_id = s.job_id").fetchall()
    seen = set()
    for operator, line, worker, test, output, diff in rows:
        if worker == "SKIPPED" and output != NOT_SAMPLED:
            continue  # an operator the configuration leaves out
        counts["mutants"] += 1
        if output == NOT_SAMPLED:
            counts["unsampled"] += 1
            continue
        if UNREACHABLE in (output or ""):
            counts["incompetent"] += 1  # not tested: the fork server was down
            continue
        code, mutated = source[line - 1].strip(), mutated_line(diff)
        key = (ident, line, operator.removeprefix("core/"), mutated)
        if key in equivalents and equivalents[key][0] == code and worker is None:
            counts["pending"] += 1
            seen.add(key)
        elif key in equivalents and equivalents[key][0] == code and test != "KILLED":
            counts["equivalent"] += 1
            seen.add(key)
        elif worker is None:
            counts["pending"] += 1
        elif test == "KILLED":
            counts["killed"] += 1
        elif test == "SURVIVED":
            counts["survived"] += 1
            survivors.append(f"{path}:{line} {key[2]}: `{code}` -> `{mutated}`")
        else:
            counts["incompetent"] += 1
    stale = [f"{k} {v[0]!r}" for k, v in equivalents.items() if k[0] == ident and k not in seen]
    return counts, sorted(survivors), stale


def report(settings: dict) -> str:
    """The markdown report: per-module table, survivors, stale equivalence entries."""
    equivalents = load_equivalents()
    lines = ["| module | mutants | not sampled | killed | survived | equivalent | incompetent | pending | score |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    total = dict(mutants=0, killed=0, survived=0, equivalent=0, pending=0, incompetent=0, unsampled=0)
    all_survivors, all_stale = [], []
    for path in settings["modules"]:
        counts, survivors, stale = module_rows(path, equivalents)
        all_survivors += survivors
        all_stale += stale
        for key in total:
            total[key] += counts[key]
        lines.append(table_row(module_id(path), counts))
    lines.append(table_row("**all**", total))
    lines += ["", "Score = killed / (killed + survived); equivalents are excluded, incompetent "
              "mutants (not tested: the fork server was unreachable) are neither.", "",
              f"## Survivors ({len(all_survivors)})", ""] + [f"- {s}" for s in all_survivors]
    if all_stale:
        lines += ["", "## Stale equivalence entries (the line moved or changed)", ""]
        lines += [f"- {s}" for s in all_stale]
    return "\n".join(lines) + "\n"


def table_row(name: str, counts: dict) -> str:
    """One table row; the score is killed / (killed + survived)."""
    judged = counts["killed"] + counts["survived"]
    score = f"{100 * counts['killed'] / judged:.1f} %" if judged else "-"
    return (f"| {name} | {counts['mutants']} | {counts['unsampled']} | {counts['killed']} | {counts['survived']} | "
            f"{counts['equivalent']} | {counts['incompetent']} | {counts['pending']} | {score} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="module ids (report/shards); default: all configured")
    parser.add_argument("--report-only", action="store_true", help="write the report from the databases")
    parser.add_argument("--rerun-survivors", action="store_true", help="run the surviving mutants again")
    parser.add_argument("--sample", type=int, default=0, metavar="N",
                        help="test a seeded random sample of N mutants per module (new sessions only)")
    parser.add_argument("--jobs", type=int, default=1, help="modules run in this many tree copies at once")
    if sys.argv[1:2] == ["--client"]:  # the test command of a mutant: --client -- PYTEST ARGS
        return client(sys.argv[3:] if sys.argv[2:3] == ["--"] else sys.argv[2:])
    settings = load_settings()
    if sys.argv[1:] == ["--serve"]:
        serve(float(settings["timeout"]))
        return 0
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    chosen = [p for p in settings["modules"] if not args.modules or module_id(p) in args.modules]
    started = time.monotonic()
    if args.jobs > 1 and not args.report_only:
        run_jobs(chosen, args.jobs, ["--rerun-survivors"] * args.rerun_survivors + [f"--sample={args.sample}"])
        print(f"wall time: {time.monotonic() - started:.0f} s", flush=True)
    elif not args.report_only:
        os.environ["PYTHONPATH"] = str(ROOT)  # pytest subprocesses import the mutant
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
        SOCKET.parent.mkdir(exist_ok=True)
        SOCKET.unlink(missing_ok=True)
        server = subprocess.Popen([sys.executable, __file__, "--serve"], cwd=ROOT)
        try:
            while not SOCKET.exists():
                time.sleep(0.5)
                if server.poll() is not None:
                    raise SystemExit("the fork server did not start")
            for path in chosen:
                run_module(path, settings["modules"][path], settings, args.rerun_survivors, args.sample)
        finally:
            server.terminate()
            server.wait()
        print(f"wall time: {time.monotonic() - started:.0f} s", flush=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "pytest_masc"], cwd=ROOT,
                               capture_output=True, text=True).stdout
        if dirty:
            print(f"WARNING: the package differs from git after the run:\n{dirty}", file=sys.stderr)
    text = report(settings)
    (WORK / "report.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
