"""Run CPython's own multiprocessing test suite with the start methods "spawn" and "dragon".

The suite is `test/_test_multiprocessing.py` of the running Python. CPython parametrizes it by start
method with a tiny wrapper module per method (`test_multiprocessing_spawn` etc.) that calls
`install_tests_in_module_dict(globals(), start_method)`; that wrapper is not installed everywhere, so
this driver writes the equivalent runner script (RUNNER below) to a temporary directory.

Each test class runs in its own command, with a timeout:

* "spawn":  `python <runner> spawn <ClassName>`
* "dragon": `dragon <runner> dragon <ClassName>` (the venv's `dragon` command; the start method
  "dragon" is known through the package's .pth file, as in any interpreter of the venv).

The runner runs the class with unittest and prints a JSON summary on its last stdout line. Every run
is started in a new session; on timeout the process group gets SIGTERM (so `dragon` can tear its
runtime down), then SIGKILL. At the end `/dev/shm` is checked for leftover `dragon.<uid>.*` entries.

Prints a per-class table (run/passed/failed/errors/skipped for both methods), then one JSON line.

Usage:
    python tools/mp_suite.py                                  # all classes, both methods
    python tools/mp_suite.py --classes '^WithProcessesTest(Process|Queue)$' --timeout 120
    python tools/mp_suite.py --methods dragon --max-classes 5 --json-only
    python tools/mp_suite.py --list                           # class names only
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RUNNER = r'''
"""Runner for one class of test._test_multiprocessing: argv = [start method, class name | --list]."""
import sys

METHOD = sys.argv[1] if len(sys.argv) > 1 else "spawn"
# No `import dragon` for METHOD "dragon": the package's .pth file makes the start method known in
# every interpreter, this one and the ones the tests start themselves (TestNoForkBomb) included.

if __name__ == "__main__":
    import os
    # For the driver: names the run even when it times out (to attribute /dev/shm leftovers).
    print(f"mp_suite_runner: DRAGON_RUN_ID={os.environ.get('DRAGON_RUN_ID', '')}", file=sys.stderr, flush=True)

import test._test_multiprocessing as _tm

# What CPython's test_multiprocessing_<method>.py does; runs again (as __mp_main__) in each child,
# so that the generated classes can be found by pickle there too.
_tm.install_tests_in_module_dict(globals(), METHOD)


def _summary(cls_name):
    import json
    import time
    import unittest

    if cls_name == "--list":
        names = sorted(n for n, v in globals().items()
                       if isinstance(v, type) and issubclass(v, unittest.TestCase))
        print(json.dumps({"classes": names}))
        return 0
    cls = globals()[cls_name]
    suite = unittest.TestSuite()
    suite.addTest(unittest.defaultTestLoader.loadTestsFromTestCase(cls))
    # setUpModule/tearDownModule are looked up in the test's module: this one.
    # Progress goes straight to stderr, so that the driver can name the test a timeout hit.
    durations = {}

    class TimedResult(unittest.TextTestResult):
        """Records how long each test took (unittest of 3.11 has no --durations)."""

        def startTest(self, test):
            self._t_start = time.monotonic()
            super().startTest(test)

        def stopTest(self, test):
            super().stopTest(test)
            durations[test.id().rsplit(".", 1)[-1]] = round(time.monotonic() - self._t_start, 2)

    t0 = time.monotonic()
    result = unittest.TextTestRunner(stream=sys.stderr, verbosity=2, resultclass=TimedResult).run(suite)
    elapsed = time.monotonic() - t0

    def first_line(text):
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        return lines[-1].strip()[:300] if lines else ""

    out = {
        "method": METHOD, "class": cls_name, "run": result.testsRun,
        "run_id": __import__("os").environ.get("DRAGON_RUN_ID", ""),
        "failures": len(result.failures), "errors": len(result.errors),
        "skipped": len(result.skipped), "expected_failures": len(result.expectedFailures),
        "unexpected_successes": len(result.unexpectedSuccesses), "seconds": round(elapsed, 2),
        "slowest": sorted(durations.items(), key=lambda kv: -kv[1])[:3],
        "failed": [{"test": t.id().rsplit(".", 1)[-1], "kind": "failure", "line": first_line(tb)}
                   for t, tb in result.failures]
                  + [{"test": str(getattr(t, "id", lambda: t)()).rsplit(".", 1)[-1], "kind": "error",
                      "line": first_line(tb)} for t, tb in result.errors],
    }
    sys.stdout.flush()
    print("\n" + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_summary(sys.argv[2]))
'''

TYPES = ("processes", "threads", "manager")


@dataclass
class ClassResult:
    """The outcome of one test class under one start method."""

    method: str
    cls: str
    run: int = 0
    failures: int = 0
    errors: int = 0
    skipped: int = 0
    expected_failures: int = 0
    unexpected_successes: int = 0
    seconds: float = 0.0
    status: str = "ok"  # ok | TIMEOUT | CRASH | rc=N
    run_id: str = ""  # DRAGON_RUN_ID of a dragon run (to attribute /dev/shm leftovers)
    new_shm: list[str] = field(default_factory=list)  # /dev/shm entries new after this run
    failed: list[dict[str, str]] = field(default_factory=list)
    slowest: list[list[Any]] = field(default_factory=list)  # [[test, seconds], ...], top 3

    @property
    def passed(self) -> int:
        """Tests that ran and neither failed, errored nor were skipped."""
        return max(0, self.run - self.failures - self.errors - self.skipped)


def command(method: str, runner: Path, arg: str) -> list[str]:
    """The command line that runs `runner` for `method` with argument `arg`."""
    if method == "dragon":
        return [str(Path(sys.executable).with_name("dragon")), str(runner), method, arg]
    return [sys.executable, str(runner), method, arg]


def descendants(pid: int) -> list[int]:
    """Pids of all live descendants of `pid` (from /proc), whatever their session or group."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[1].isdigit():
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            found.append(c)
            todo.append(c)
    return found


def _kill(pids: list[int], sig: int) -> None:
    for p in pids:
        try:
            os.kill(p, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _stop_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process group of `proc` (lets dragon tear down), then SIGKILL what is left.

    `dragon` starts its runtime services in sessions of their own, so the descendants of the run are
    collected first (by pid, from /proc) and those still alive after the grace period get SIGKILL.
    """
    tree = descendants(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in tree):
        time.sleep(0.2)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    _kill([p for p in tree if os.path.exists(f"/proc/{p}")], signal.SIGKILL)
    try:
        proc.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        pass


def run_cmd(argv: list[str], cwd: Path, timeout: float) -> tuple[int | None, str, str, float]:
    """Run `argv` in a new session; (returncode or None on timeout, stdout, stderr, seconds)."""
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
        rc: int | None
        try:
            rc = proc.wait(timeout=timeout)
            # Children left behind in the group (they should not be): clean them up.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        except subprocess.TimeoutExpired:
            _stop_group(proc)
            rc = None
        except BaseException:
            _stop_group(proc, grace=3.0)
            raise
        out.seek(0)
        err.seek(0)
        return (rc, out.read().decode(errors="replace"), err.read().decode(errors="replace"), time.monotonic() - t0)


def last_json(text: str) -> dict[str, Any] | None:
    """The JSON object on the last non-empty line of `text` that parses, else None."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def list_classes(runner: Path, cwd: Path) -> list[str]:
    """All test classes the runner defines (asked of plain python; the same for every method)."""
    rc, out, err, _ = run_cmd(command("spawn", runner, "--list"), cwd, 120)
    data = last_json(out)
    if rc != 0 or data is None:
        raise SystemExit(f"cannot list classes ({rc}): {err[-2000:]}")
    return list(data["classes"])


def run_class(method: str, cls: str, runner: Path, cwd: Path, timeout: float, log_dir: Path | None) -> ClassResult:
    """Run one class under one start method and summarize it."""
    rc, out, err, secs = run_cmd(command(method, runner, cls), cwd, timeout)
    if log_dir is not None:
        (log_dir / f"{method}.{cls}.log").write_text(f"rc={rc}\n--- stdout\n{out}\n--- stderr\n{err}")
    data = last_json(out)
    m_id = re.search(r"^mp_suite_runner: DRAGON_RUN_ID=(\w*)$", err, re.M)
    run_id = m_id.group(1) if m_id else ""
    if rc is None:
        # verbosity=2 prints "test_x (module.Class.test_x) ... " before a test and its outcome after
        # (the first line of a docstring instead of the name for tests that have one); the last test
        # started is the one the timeout hit, unless unittest got to its summary ("Ran N tests").
        started = re.findall(r"^(\S.*?) \.\.\. ", err, re.M)
        if re.search(r"^Ran \d+ tests? in ", err, re.M):
            hung, done = "(tearDownModule/exit)", len(started)
        elif started:
            hung, done = started[-1][:80], len(started) - 1
        else:
            hung, done = "(class)", 0
        return ClassResult(
            method,
            cls,
            errors=1,
            seconds=round(secs, 2),
            status="TIMEOUT",
            run_id=run_id,
            failed=[
                {"test": hung, "kind": "error", "line": f"TIMEOUT after {timeout:g} s ({done} tests finished before)"}
            ],
        )
    if data is None:
        tail = [ln for ln in err.strip().splitlines() if ln.strip()][-1:] or [f"exit {rc}"]
        return ClassResult(
            method,
            cls,
            errors=1,
            seconds=round(secs, 2),
            status="CRASH",
            run_id=run_id,
            failed=[{"test": "(class)", "kind": "error", "line": f"rc={rc}: {tail[0][:300]}"}],
        )
    res = ClassResult(
        method,
        cls,
        run=data["run"],
        failures=data["failures"],
        errors=data["errors"],
        skipped=data["skipped"],
        expected_failures=data["expected_failures"],
        unexpected_successes=data["unexpected_successes"],
        seconds=round(secs, 2),
        failed=data["failed"],
        run_id=data.get("run_id") or "",
        slowest=data.get("slowest") or [],
    )
    if rc != 0:
        res.status = f"rc={rc}"
    return res


def shm_leftovers() -> list[str]:
    """Entries `dragon.<uid>.*` in /dev/shm (left behind by a runtime that did not clean up)."""
    try:
        names = os.listdir("/dev/shm")
    except OSError:
        return []
    prefix = f"dragon.{os.getuid()}."
    return sorted(n for n in names if n.startswith(prefix))


def sem_entries() -> set[str]:
    """multiprocessing's named semaphores in /dev/shm (`sem.mp-*`): a killed test run can leave them."""
    try:
        return {n for n in os.listdir("/dev/shm") if n.startswith("sem.mp-")}
    except OSError:
        return set()


def cell(r: ClassResult | None) -> str:
    """One method's cells of the table row: run/passed/failed/errors/skipped (or status)."""
    if r is None:
        return " | | | | "
    if r.status == "TIMEOUT":
        return " | | | TIMEOUT | "
    if r.status == "CRASH":
        return " | | | CRASH | "
    return f"{r.run} | {r.passed} | {r.failures} | {r.errors} | {r.skipped}"


def table(classes: list[str], methods: list[str], results: dict[tuple[str, str], ClassResult]) -> str:
    """A Markdown table: one row per class, run/passed/failed/errors/skipped per method, and totals."""
    head = "| class | " + " | ".join(f"{m} run | pass | fail | err | skip" for m in methods) + " |"
    sep = "|---|" + "---|---|---|---|---|" * len(methods)
    rows = [head, sep]
    for c in classes:
        rows.append(f"| {c} | " + " | ".join(cell(results.get((m, c))) for m in methods) + " |")
    tot = []
    for m in methods:
        rs = [r for (mm, _), r in results.items() if mm == m]
        tot.append(
            f"{sum(r.run for r in rs)} | {sum(r.passed for r in rs)} | {sum(r.failures for r in rs)}"
            f" | {sum(r.errors for r in rs)} | {sum(r.skipped for r in rs)}"
        )
    rows.append("| **total** | " + " | ".join(tot) + " |")
    return "\n".join(rows)


def main() -> int:
    """Parse options, run the selected classes under the selected methods, print the report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", default="", help="regex (re.search) selecting class names")
    parser.add_argument(
        "--types", default="", help="comma list of flavours to keep: processes,threads,manager,misc (default all)"
    )
    parser.add_argument("--methods", default="spawn,dragon", help="comma list (default spawn,dragon)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per class run (default 120)")
    parser.add_argument("--max-classes", type=int, default=0, help="run at most N classes (0: all)")
    parser.add_argument("--json-only", action="store_true", help="print only the JSON line")
    parser.add_argument("--list", action="store_true", help="list the selected classes and exit")
    parser.add_argument("--log-dir", type=Path, default=None, help="keep each run's output here")
    args = parser.parse_args()

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    # A command started in the background by a non-interactive shell (`cmd &`) inherits SIGINT
    # ignored, and so would every test run; the suite sends SIGINT to the test process (e.g.
    # test_wait_result expects KeyboardInterrupt). Catching it here makes exec reset it to default.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def on_term(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through run_cmd, which stops the running test

    signal.signal(signal.SIGTERM, on_term)
    work = Path(tempfile.mkdtemp(prefix="mp_suite."))
    runner = work / "mp_suite_runner.py"
    runner.write_text(RUNNER)
    if args.log_dir is not None:
        args.log_dir.mkdir(parents=True, exist_ok=True)
    shm_before = set(shm_leftovers())
    sem_before = sem_entries()

    classes = list_classes(runner, work)
    if args.classes:
        pat = re.compile(args.classes)
        classes = [c for c in classes if pat.search(c)]
    if args.types:
        keep = {t.strip() for t in args.types.split(",")}

        def flavour(c: str) -> str:
            for t in TYPES:
                if c.startswith("With" + t.capitalize()):
                    return t
            return "misc"

        classes = [c for c in classes if flavour(c) in keep]
    if args.max_classes > 0:
        classes = classes[: args.max_classes]
    if args.list:
        print("\n".join(classes))
        return 0

    results: dict[tuple[str, str], ClassResult] = {}
    t_all = time.monotonic()
    for c in classes:
        for m in methods:
            before = set(shm_leftovers())
            r = run_class(m, c, runner, work, args.timeout, args.log_dir)
            if m == "dragon":
                time.sleep(0.2)
                new = sorted(set(shm_leftovers()) - before)
                # Other programs on the machine create entries too: keep those named by our run id
                # (all of them when the run reported none, i.e. timed out or crashed).
                r.new_shm = [n for n in new if f".{r.run_id}." in n] if r.run_id else new
            results[(m, c)] = r
            if not args.json_only:
                print(
                    f"[{time.monotonic() - t_all:7.1f}s] {m:6} {c}: run={r.run} pass={r.passed} "
                    f"fail={r.failures} err={r.errors} skip={r.skipped} {r.status} ({r.seconds:.1f}s)",
                    file=sys.stderr,
                    flush=True,
                )
    # What is still there at the end and was not there at the start; "ours" when the name holds the
    # run id of one of our dragon runs, or appeared during a run of ours that reported no run id
    # (timeout/crash). Other programs on the machine may create and leave entries too.
    time.sleep(0.5)
    leftovers = sorted(set(shm_leftovers()) - shm_before)
    ours_ids = {r.run_id for r in results.values() if r.run_id}
    suspects = {n for r in results.values() if not r.run_id for n in r.new_shm}
    ours = [n for n in leftovers if any(f".{i}" in n for i in ours_ids) or n in suspects]
    others = [n for n in leftovers if n not in ours]
    sems = sorted(sem_entries() - sem_before)  # not attributable: any program may make them

    if not args.json_only:
        print(table(classes, methods, results))
        for m in methods:
            bad = [(c, f) for (mm, c), r in results.items() if mm == m for f in r.failed]
            if bad:
                print(f"\n{m}: {len(bad)} failing tests")
                for c, f in bad:
                    print(f"  {c}.{f['test']} [{f['kind']}]: {f['line']}")
        print(f"\n/dev/shm leftovers of our runs: {' '.join(ours) or 'none'}")
        if others:
            print(f"/dev/shm entries of other programs (not ours): {len(others)}")
        if sems:
            print(f"/dev/shm semaphores new since the start (ours or others'): {' '.join(sems)}")
    summary: dict[str, Any] = {
        "python": sys.version.split()[0],
        "timeout_s": args.timeout,
        "seconds": round(time.monotonic() - t_all, 1),
        "methods": methods,
        "shm_leftovers": ours,
        "shm_other_new": others,
        "shm_new_semaphores": sems,
        "results": [asdict(r) | {"passed": r.passed} for r in results.values()],
    }
    for m in methods:
        rs = [r for (mm, _), r in results.items() if mm == m]
        summary[m] = {k: sum(getattr(r, k) for r in rs) for k in ("run", "passed", "failures", "errors", "skipped")}
        summary[m]["timeouts"] = sum(r.status == "TIMEOUT" for r in rs)
    print(json.dumps(summary))
    for p in work.iterdir():
        p.unlink(missing_ok=True) if p.is_file() else None
    try:
        work.rmdir()
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
