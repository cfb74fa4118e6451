"""Benchmark `dragon.native.ProcessGroup` (spec §7.2): N processes of one template started and joined.

One small program (written to a temporary directory) times, after interpreter and runtime start-up,
rounds of: `ProcessGroup()`, `add_process(N, ProcessTemplate(f))` with `f` a module-level function
that returns at once, `init()`, `start()`, `join()`, `close()`: the time of the whole round. It runs
under our `dragon` command and, with --reference VENV, the reference runtime's (`dragonhpc`
installed in VENV, never a dependency; its /dev/shm/DD* leftovers are removed). The baseline, in the
same run: the standard library's N `multiprocessing` spawn Processes of `f` started one after the
other, then joined (what a group of N does without a runtime), under plain `python`.

Each program runs --runs times, a run doing a warm-up round (first-use costs: imports, the runtime's
client, spawn's resource tracker; not counted) and --rounds rounds; a figure is the median over all
the counted rounds of all runs (min-max beside it). Ratios are "how many times better dragon is" (the other's
time / dragon's), so above 1 means dragon is faster. No target: informational.

Usage: python tools/bench_group.py [--sizes 16 64] [--runs 3] [--rounds 3] [--reference VENV]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _bench_util import fmt_range, json_line, machine_info, md_table, reference_shm_removed, summary

PROGRAM = """
import sys
if sys.argv[1] != "spawn":
    import dragon  # the reference needs it first
import json
import time


def nothing():
    pass


def group_round(n):
    from dragon.native.process import ProcessTemplate
    from dragon.native.process_group import ProcessGroup

    group = ProcessGroup()
    group.add_process(n, ProcessTemplate(target=nothing))
    group.init()
    group.start()
    group.join()
    group.close()


def spawn_round(n):
    import multiprocessing

    procs = [multiprocessing.get_context("spawn").Process(target=nothing) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()


if __name__ == "__main__":
    method, n, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    one_round = spawn_round if method == "spawn" else group_round
    times = []
    for _ in range(rounds + 1):
        t0 = time.perf_counter()
        one_round(n)
        times.append(time.perf_counter() - t0)
    print(json.dumps(times[1:]))  # the first round, with each method's first-use costs, is warm-up
"""


def command(method: str, prog: Path, reference: Path | None) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that run `prog` under `method`."""
    if method == "spawn":
        return [sys.executable, str(prog)], dict(os.environ)
    if method == "dragon":
        return [str(Path(sys.executable).with_name("dragon")), str(prog)], dict(os.environ)
    assert reference is not None  # the reference finds its own commands on PATH
    env = {**os.environ, "PATH": f"{reference / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    return [str(reference / "bin" / "dragon"), str(prog)], {**env, "VIRTUAL_ENV": str(reference)}


def run_once(method: str, n: int, rounds: int, prog: Path, reference: Path | None, timeout: float) -> list[float]:
    """One run of the program: the times of its rounds. Exits 1 with its stderr if it fails."""
    argv, env = command(method, prog, reference)
    with reference_shm_removed(method == "reference"):
        done = subprocess.run(
            [*argv, method, str(n), str(rounds)], env=env, cwd=prog.parent, capture_output=True, timeout=timeout
        )
    lines = [line for line in done.stdout.decode(errors="replace").splitlines() if line.startswith("[")]
    if done.returncode != 0 or not lines:
        sys.exit(
            f"{method} with {n} processes failed (exit {done.returncode}):\n{done.stderr.decode(errors='replace')}"
        )
    times: list[float] = json.loads(lines[-1])
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reference", type=Path, default=None, help="a venv with dragonhpc installed")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    methods = ["spawn", "dragon"] + (["reference"] if args.reference else [])
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-group-") as tmp:
        prog = Path(tmp, "group_prog.py")
        prog.write_text(PROGRAM)
        for n in args.sizes:
            samples: dict[str, list[float]] = {m: [] for m in methods}
            for run in range(args.runs):
                order = methods if run % 2 == 0 else methods[::-1]  # interleaved, alternating first
                for method in order:
                    print(f"{n} processes, run {run + 1}: {method}", file=sys.stderr, flush=True)
                    samples[method] += run_once(method, n, args.rounds, prog, args.reference, args.timeout)
            results[str(n)] = {m: summary([t * 1e3 for t in samples[m]]) for m in methods}
    headers = ["processes", "spawn Processes (ms)", "dragon ProcessGroup (ms)", "vs spawn"]
    if args.reference:
        headers += ["reference ProcessGroup (ms)", "vs reference"]
    rows = []
    for n, r in results.items():
        dragon = r["dragon"]["median"]
        row = [n, fmt_range(r["spawn"]), fmt_range(r["dragon"]), f"{r['spawn']['median'] / dragon:.2f}x"]
        if args.reference:
            row += [fmt_range(r["reference"]), f"{r['reference']['median'] / dragon:.2f}x"]
        rows.append(row)
    print(md_table(headers, rows))
    print(f"\nmedian (min-max) of {args.runs} runs x {args.rounds} rounds; ratio = other / dragon")
    print(json_line({"machine": machine_info(), "results": results}))


if __name__ == "__main__":
    main()
