"""Benchmark the start-up of a runtime: `dragon hello.py` against `python hello.py`, in one run.

Measures, with a trivial hello.py written to a temporary directory (also the working directory of
every command, stdin from /dev/null, stdout/stderr captured):

1. wall time of `dragon hello.py` and of `python hello.py` (the venv's own interpreter, `sys.executable`,
   the same one the head process runs with), from just before the spawn to the end of `wait()`.
   `--runs` repetitions of each (default 15, at least 10), interleaved (the order alternates from one
   round to the next) after one untimed warm-up of each; median, p90, min and max, the ratio
   dragon/python of the medians and their absolute difference. Target: median of `dragon hello.py`
   under 0.6 s (PASS/MISS); the reference Dragon runtime needs about 4 s on the same machine.
2. the phases of one run, from `dragon --log-level debug --log-file F hello.py` (as many runs,
   interleaved with the others): every message is logged with its wall-clock time (transport/_msglog.py),
   so the time at which the launcher received SHPingBE (Local Services up), SHChannelsUp, GSIsUp
   (Global Services up), GSProcessCreateResponse (head started), GSHeadExit and SHHalted is read from
   the log and set against t0 = time.time() taken just before the spawn; "launcher exit" is the end of
   the process as the benchmark sees it. Median per phase over the runs, and the median of the per-run
   steps between consecutive phases. Log times have millisecond resolution (truncated: the midpoint
   of the millisecond is used), so each phase is good to about +-0.5 ms. Logging costs a little time
   itself: the wall time of the logged runs is reported next to that of the unlogged ones. The first
   phase (spawn -> launcher in trio) is mostly imports: `python -c "import dragon.cli; os._exit(0)"` is
   timed too (same rounds); its median minus that of `python hello.py` is given as the import cost.
3. with `--reference VENV`, also `VENV/bin/dragon hello.py` (the reference `dragonhpc`), interleaved
   the same way; skipped with a note when that command is not there.

Leftovers: each dragon run must clean up after itself. Other runs of `dragon` (tests of other
developers) may share the machine, so leftovers are attributed: our runs get a private runtime root
(XDG_RUNTIME_DIR), so any run directory left there is ours; a /dev/shm entry `dragon.<uid>.*` that
appeared during one of our runs and is still there once the launcher exited is a candidate, given a few
seconds at the end to go away (a concurrent runtime ending), and reported if it stays: as ours when its
run id is one of ours, as foreign (not counted) when the shared runtime root has a directory of that
run id (another runtime, live or killed), else as unattributed (possibly ours). Also reported: any
process of a logged run (Local Services, Global Services, head: pids from the log) alive after its
launcher exited, and any stray file in the working directory.

Output: Markdown tables on stdout, then one line of JSON. Exit status 1 if a run failed or something
was left behind; a missed target is reported (MISS), not an error.

Usage: python tools/bench_bringup.py [--runs N] [--json-only] [--reference VENV]
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from _bench_util import fmt, json_line, machine_info, md_table, median, percentile

TARGET_S: Final = 0.6
REFERENCE_NOTE_S: Final = 4.0  # what the reference Dragon runtime needs for `dragon hello.py` here
RUN_TIMEOUT_S: Final = 60.0
HELLO: Final = 'print("hello")\n'

# `HH:MM:SS.mmm ACTOR pid=N logger LEVEL text` (dragon/_log.py)
LOG_LINE: Final = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) (\S+) pid=(\d+) (\S+) (\w+) (.*)$")
STARTED_LINE: Final = re.compile(r"process started p_uid=\d+ pid=(\d+)")

# The phases read from the log: (key, label, actor, text the message starts with). In order.
LOG_PHASES: Final[list[tuple[str, str, str, str]]] = [
    ("launcher_ready", "launcher in trio, BENodeIdxSH sent to LS", "LS", "received BENodeIdxSH"),
    ("ls_up", "Local Services up (SHPingBE received by LA)", "LA", "received SHPingBE"),
    ("channels_up", "channels up (SHChannelsUp received by LA)", "LA", "received SHChannelsUp"),
    ("gs_up", "Global Services up (GSIsUp received by LA)", "LA", "received GSIsUp"),
    ("head_started", "head started (GSProcessCreateResponse received by LA)", "LA", "received GSProcessCreateResponse"),
    ("head_exit", "head exit (GSHeadExit received by LA)", "LA", "received GSHeadExit"),
    ("ls_halted", "Local Services halted (SHHalted received by LA)", "LA", "received SHHalted"),
]
PHASE_KEYS: Final = ["start", *(k for k, *_ in LOG_PHASES), "launcher_exit"]
PHASE_LABELS: Final = {
    "start": "t0: spawn of the launcher",
    "launcher_exit": "launcher exit (process end)",
    **{k: label for k, label, *_ in LOG_PHASES},
}


# ============================================================================ running commands


@dataclass
class Run:
    """One timed command."""

    wall_s: float
    t0: float  # time.time() just before the spawn
    rc: int
    stdout: str
    stderr: str

    def ok(self) -> bool:
        return self.rc == 0 and self.stdout.strip() == "hello"


def run_once(cmd: list[str], cwd: str, env: dict[str, str]) -> Run:
    """Spawn `cmd`, wait for it; wall time from just before the spawn to the end of the wait."""
    t0 = time.time()
    p0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the launcher then tears its runtime down in order
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        err += f"\n[bench] timed out after {RUN_TIMEOUT_S} s"
    wall = time.perf_counter() - p0
    return Run(wall_s=wall, t0=t0, rc=proc.returncode, stdout=out, stderr=err)


# ============================================================================ reading the log


def log_time_to_epoch(hh: int, mm: int, ss: int, ms: int, t0: float) -> float:
    """A log time (local wall clock, ms truncated) as Unix time, on the day of t0 (midpoint of the ms)."""
    base = dt.datetime.fromtimestamp(t0)
    when = base.replace(hour=hh, minute=mm, second=ss, microsecond=ms * 1000 + 500)
    epoch = when.timestamp()
    if epoch < t0 - 12 * 3600:  # the run crossed midnight
        epoch += 86400
    return epoch


@dataclass
class Phases:
    """The phase times of one logged run, in seconds after t0, and the pids of its processes."""

    at: dict[str, float] = field(default_factory=dict)
    pids: set[int] = field(default_factory=set)
    run_ids: set[str] = field(default_factory=set)
    missing: list[str] = field(default_factory=list)


def parse_log(path: Path, t0: float, wall_s: float) -> Phases:
    ph = Phases(at={"start": 0.0})
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        lines = []
    for line in lines:
        m = LOG_LINE.match(line)
        if not m:
            continue
        hh, mm, ss, ms, actor, pid, _logger, _level, text = m.groups()
        if actor != "LA":
            ph.pids.add(int(pid))
        ph.run_ids.update(RUN_ID_IN_NAME.findall(text))
        started = STARTED_LINE.search(text)
        if started:
            ph.pids.add(int(started.group(1)))
        for key, _label, want_actor, prefix in LOG_PHASES:
            if key not in ph.at and actor == want_actor and text.startswith(prefix):
                ph.at[key] = log_time_to_epoch(int(hh), int(mm), int(ss), int(ms), t0) - t0
    ph.at["launcher_exit"] = wall_s
    ph.missing = [k for k in PHASE_KEYS if k not in ph.at]
    return ph


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not a leftover process worth naming: it is only waiting for its parent
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


# ============================================================================ leftovers
# Other developers run `dragon` (tests) on this machine at the same time, so a /dev/shm entry that
# appears during the benchmark is not necessarily ours. Our runs get a private runtime root
# (XDG_RUNTIME_DIR), so a run directory left there is ours; an shm entry is a candidate leftover of a
# run when it appeared during that run and is still there after its launcher exited; at the end the
# candidates are given a few seconds to go (a concurrent runtime ends), and those that stay are
# reported: "ours" when their run id is one of ours (logged runs, leftover run dirs), "foreign" when
# the shared runtime root has a directory of that run id (a concurrent runtime, or one whose launcher
# a fault test killed), else "unattributed" (possibly ours).

RUN_ID_IN_NAME: Final = re.compile(r"dragon\.\d+\.([0-9a-f]{8})\.")
SETTLE_S: Final = 5.0


def shm_prefix() -> str:
    return f"dragon.{os.getuid()}."


def shm_entries() -> set[str]:
    try:
        return {n for n in os.listdir("/dev/shm") if n.startswith(shm_prefix())}
    except FileNotFoundError:
        return set()


def shared_runtime_root() -> Path:
    """The runtime root the other runs on this machine use (dragon/_rundir.py)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return Path(xdg) / "dragon" if xdg else Path(f"/tmp/dragon-{os.getuid()}")


def run_id_of(name: str) -> str | None:
    m = RUN_ID_IN_NAME.match(name + ".")
    return m.group(1) if m else None


def foreign_run(run_id: str) -> bool:
    """Whether `run_id` is another runtime's: our runs never use the shared runtime root, so a
    directory of that run id there (live or leaked by a killed launcher) is not ours."""
    return (shared_runtime_root() / run_id).is_dir()


def settle_and_classify(candidates: set[str], our_ids: set[str]) -> dict[str, list[str]]:
    deadline = time.monotonic() + SETTLE_S
    left = candidates & shm_entries()
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left &= shm_entries()
    out: dict[str, list[str]] = {"ours": [], "foreign": [], "unattributed": []}
    for name in sorted(left):
        rid = run_id_of(name)
        if rid is not None and rid in our_ids:
            out["ours"].append(name)
        elif rid is not None and foreign_run(rid):
            out["foreign"].append(name)
        else:
            out["unattributed"].append(name)
    return out


# ============================================================================ statistics


def stats(values: list[float]) -> dict[str, Any]:
    return {
        "median": median(values),
        "p90": percentile(values, 90),
        "min": min(values, default=float("nan")),
        "max": max(values, default=float("nan")),
        "n": len(values),
        "reps": [round(v, 6) for v in values],
    }


def ms(x: float) -> str:
    return fmt(x * 1000, 1)


# ============================================================================ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmark `dragon hello.py` against `python hello.py`.")
    p.add_argument("--runs", type=int, default=15, help="timed runs of each command (at least 10; default 15)")
    p.add_argument("--json-only", action="store_true", help="print only the line of JSON")
    p.add_argument("--reference", metavar="VENV", help="also time VENV/bin/dragon (the reference dragonhpc)")
    opts = p.parse_args(argv)
    if opts.runs < 10:
        p.error("--runs must be at least 10")
    return opts


def dragon_command() -> list[str]:
    """The `dragon` console script of the interpreter running us (never one found on PATH)."""
    script = Path(sys.executable).parent / "dragon"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "dragon.cli"]


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)

    def say(text: str) -> None:
        if not opts.json_only:
            print(text, file=sys.stderr, flush=True)

    work = Path(tempfile.mkdtemp(prefix="bench_bringup."))
    logs = Path(tempfile.mkdtemp(prefix="bench_bringup_logs."))
    xdg = Path(tempfile.mkdtemp(prefix="bench_bringup_xdg."))  # private runtime root: see "leftovers"
    env = {k: v for k, v in os.environ.items() if k not in ("DRAGON_LOG_LEVEL", "DRAGON_LOG_FILE")}
    env["XDG_RUNTIME_DIR"] = str(xdg)
    hello = work / "hello.py"
    hello.write_text(HELLO)

    dragon = dragon_command()
    cases: dict[str, list[str]] = {"python": [sys.executable, str(hello)], "dragon": [*dragon, str(hello)]}
    reference: dict[str, Any] = {"requested": opts.reference is not None}
    if opts.reference is not None:
        ref_cmd = Path(opts.reference).expanduser() / "bin" / "dragon"
        if ref_cmd.is_file() and os.access(ref_cmd, os.X_OK):
            cases["reference"] = [str(ref_cmd), str(hello)]
            reference["command"] = str(ref_cmd)
        else:
            reference["skipped"] = f"{ref_cmd} not found or not executable"
            say(f"[bench] --reference: {reference['skipped']}; skipping the reference runtime")
    log_seq = 0

    def logged_command() -> tuple[list[str], Path]:
        nonlocal log_seq
        log_seq += 1
        path = logs / f"run{log_seq:03d}.log"
        return [*dragon, "--log-level", "debug", "--log-file", str(path), str(hello)], path

    # what the launcher imports before it can do anything (dragon.cli: trio, msgspec, the services)
    # what the launcher imports before it can do anything (dragon.cli: trio, msgspec, the services);
    # os._exit leaves out the interpreter's shutdown, which `python hello.py` hardly has
    imports_cmd = [sys.executable, "-c", "import os, sys, dragon.cli; print('hello'); sys.stdout.flush(); os._exit(0)"]
    extra = {"python_import": imports_cmd}
    walls: dict[str, list[float]] = {name: [] for name in [*cases, "dragon_logged", *extra]}
    phases: list[Phases] = []
    failures: list[dict[str, Any]] = []
    stray_procs: set[int] = set()
    shm_candidates: set[str] = set()
    our_ids: set[str] = set()

    def record_failure(name: str, r: Run) -> None:
        failures.append({"case": name, "rc": r.rc, "stdout": r.stdout[-500:], "stderr": r.stderr[-2000:]})

    started = time.perf_counter()
    try:
        # warm-up (page cache, .pyc files): one of each, untimed
        for name, cmd in cases.items():
            shm_before = shm_entries()
            r = run_once(cmd, str(work), env)
            shm_candidates |= shm_entries() - shm_before
            if not r.ok():
                record_failure(f"{name} (warm-up)", r)
        order = [*cases, "dragon_logged", *extra]
        for i in range(opts.runs):
            say(f"[bench] round {i + 1}/{opts.runs}")
            for name in order if i % 2 == 0 else order[::-1]:
                if name == "dragon_logged":
                    cmd, log_path = logged_command()
                elif name in extra:
                    cmd, log_path = extra[name], None
                else:
                    cmd, log_path = cases[name], None
                shm_before = shm_entries()
                r = run_once(cmd, str(work), env)
                shm_candidates |= shm_entries() - shm_before
                if not r.ok():
                    record_failure(name, r)
                    continue
                walls[name].append(r.wall_s)
                if log_path is not None:
                    ph = parse_log(log_path, r.t0, r.wall_s)
                    our_ids |= ph.run_ids
                    stray_procs |= {pid for pid in ph.pids if pid_alive(pid)}
                    phases.append(ph)
    finally:
        elapsed = time.perf_counter() - started
        stray_files = sorted(p.name for p in work.iterdir() if p.name != "hello.py")
        dirs_left = sorted(p.name for p in (xdg / "dragon").glob("*"))
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)
        shutil.rmtree(xdg, ignore_errors=True)

    our_ids |= set(dirs_left)
    shm = settle_and_classify(shm_candidates, our_ids)
    shm_left = shm["ours"] + shm["unattributed"]
    procs_left = sorted(pid for pid in stray_procs if pid_alive(pid))

    # ------------------------------------------------------------------ figures
    wall = {name: stats(v) for name, v in walls.items()}
    py_med = wall["python"]["median"]

    def ratio(name: str) -> float:
        return wall[name]["median"] / py_med if py_med else float("nan")

    dragon_med = wall["dragon"]["median"]
    passed = dragon_med < TARGET_S
    complete = [ph for ph in phases if not ph.missing]
    phase_at = {k: stats([ph.at[k] for ph in complete]) for k in PHASE_KEYS}
    steps = {f"{a}->{b}": stats([ph.at[b] - ph.at[a] for ph in complete]) for a, b in itertools.pairwise(PHASE_KEYS)}
    teardown = stats([ph.at["launcher_exit"] - ph.at["head_exit"] for ph in complete])
    bringup = stats([ph.at["gs_up"] for ph in complete])
    logging_cost = wall["dragon_logged"]["median"] - dragon_med
    import_cost = wall["python_import"]["median"] - py_med

    doc: dict[str, Any] = {
        "benchmark": "bringup",
        "machine": machine_info(),
        "runs": opts.runs,
        "elapsed_s": round(elapsed, 2),
        "python": sys.executable,
        "dragon": dragon,
        "wall_s": wall,
        "ratio_vs_python": {name: ratio(name) for name in wall if name != "python"},
        "commands": {**extra},
        "dragon_minus_python_s": dragon_med - py_med,
        "logging_cost_s": logging_cost,
        "import_dragon_cli_cost_s": import_cost,
        "target": {"dragon_median_below_s": TARGET_S, "pass": passed, "reference_dragon_s_approx": REFERENCE_NOTE_S},
        "phases_s": {
            "runs_parsed": len(complete),
            "at": phase_at,
            "steps": steps,
            "teardown": teardown,
            "bringup_to_gs_up": bringup,
            "incomplete": [ph.missing for ph in phases if ph.missing],
        },
        "reference": reference,
        "failures": failures,
        "leftovers": {
            "shm": shm_left,
            "shm_ours": shm["ours"],
            "shm_unattributed": shm["unattributed"],
            "shm_of_other_runtimes": shm["foreign"],
            "run_dirs": dirs_left,
            "processes": procs_left,
            "files": stray_files,
        },
    }

    if not opts.json_only:
        print_tables(doc, wall, ratio, phase_at, steps, teardown, cases)
    print(json_line(doc))
    return 1 if failures or shm_left or dirs_left or procs_left or stray_files else 0


def print_tables(
    doc: dict[str, Any],
    wall: dict[str, dict[str, Any]],
    ratio: Any,
    phase_at: dict[str, dict[str, Any]],
    steps: dict[str, dict[str, Any]],
    teardown: dict[str, Any],
    cases: dict[str, list[str]],
) -> None:
    m = doc["machine"]
    print(
        f"## `dragon hello.py` start-up ({doc['runs']} runs each, interleaved; {m['cpus']} CPUs, "
        f"load {m['loadavg']}, Python {m['python']}; {doc['elapsed_s']} s)\n"
    )
    labels = {
        "python": "`python hello.py`",
        "dragon": "`dragon hello.py`",
        "dragon_logged": "`dragon --log-level debug hello.py`",
        "reference": "reference `dragon hello.py`",
        "python_import": "`python -c 'import dragon.cli; os._exit(0)'`",
    }
    rows = []
    for name in [
        "python",
        "dragon",
        *(["reference"] if "reference" in cases else []),
        "dragon_logged",
        "python_import",
    ]:
        s = wall[name]
        rows.append(
            [
                labels[name],
                ms(s["median"]),
                ms(s["p90"]),
                ms(s["min"]),
                ms(s["max"]),
                "1.00x" if name == "python" else f"{fmt(ratio(name), 2)}x",
            ]
        )
    print(md_table(["command", "median ms", "p90 ms", "min ms", "max ms", "ratio vs python"], rows))
    t = doc["target"]
    noise = wall["dragon"]["p90"] - wall["dragon"]["min"]
    within = " (within the run-to-run noise)" if abs(doc["logging_cost_s"]) < noise / 2 else ""
    print(
        f"\ndragon - python (medians): {ms(doc['dragon_minus_python_s'])} ms; "
        f"logging at DEBUG adds {ms(doc['logging_cost_s'])} ms{within} (median logged - median unlogged)"
    )
    print(
        f"{'PASS' if t['pass'] else 'MISS'}  `dragon hello.py` median {ms(wall['dragon']['median'])} ms "
        f"< {t['dragon_median_below_s'] * 1000:.0f} ms "
        f"(reference Dragon: ~{t['reference_dragon_s_approx']:.0f} s)"
    )
    if doc["reference"].get("skipped"):
        print(f"reference runtime skipped: {doc['reference']['skipped']}")

    ph = doc["phases_s"]
    print(
        f"\n## Phases of `dragon --log-level debug hello.py` ({ph['runs_parsed']} runs; "
        "ms after t0 = just before the spawn; log times +-0.5 ms)\n"
    )
    rows = []
    prev: str | None = None
    for key in PHASE_KEYS:
        s = phase_at[key]
        step = steps[f"{prev}->{key}"] if prev else None
        rows.append(
            [
                PHASE_LABELS[key],
                ms(s["median"]),
                f"{ms(s['min'])}–{ms(s['max'])}",
                ms(step["median"]) if step else "",
                ms(step["p90"]) if step else "",
            ]
        )
        prev = key
    print(md_table(["phase", "at ms (median)", "at min–max", "step ms (median)", "step p90"], rows))
    print(
        f"\nbring-up (t0 -> GSIsUp): {ms(ph['bringup_to_gs_up']['median'])} ms; "
        f"teardown (head exit -> launcher exit): {ms(teardown['median'])} ms "
        f"(p90 {ms(teardown['p90'])}); steps are medians of per-run differences"
    )
    print(
        f"importing dragon.cli (trio, msgspec, services) costs about {ms(doc['import_dragon_cli_cost_s'])} ms "
        "(median `python -c 'import dragon.cli; os._exit(0)'` - median `python hello.py`): most of the first "
        "step, the rest being interpreter start, forking Local Services and entering trio"
    )
    if ph["incomplete"]:
        print(f"runs whose log lacked phases (left out): {ph['incomplete']}")

    left = doc["leftovers"]
    print()
    for f in doc["failures"]:
        print(f"FAILED run: {f['case']} rc={f['rc']} stderr: {f['stderr'].strip()[-300:]!r}")
    if left["shm"] or left["run_dirs"] or left["processes"] or left["files"]:
        print(
            f"LEFT BEHIND: /dev/shm ours {left['shm_ours']}, unattributed (possibly ours) "
            f"{left['shm_unattributed']}, run dirs {left['run_dirs']}, processes {left['processes']}, "
            f"files {left['files']}"
        )
    else:
        print(
            f"nothing left behind: no /dev/shm/{shm_prefix()}* entry, runtime directory, process or file "
            "of ours remains"
        )
    if left["shm_of_other_runtimes"]:
        others = sorted({r for n in left["shm_of_other_runtimes"] if (r := run_id_of(n)) is not None})
        print(
            f"(not ours, not counted: {len(left['shm_of_other_runtimes'])} /dev/shm entries of other "
            f"runtimes {others}, which have a directory in {shared_runtime_root()})"
        )


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
