"""Benchmark forwarded output: how fast a program's lines reach `dragon`'s stdout, against `python`.

Every case runs a program that writes SIZE bytes of lines to its stdout (a pipe that this benchmark
reads as fast as it can) and is timed from the spawn to the end of the output and the exit:

- `one writer`: the head writes 100-byte lines, one write(2) each (what a flushed `print` or `logging`
  does); `one writer, 64 KiB writes`: the same lines written in 64 KiB blocks (a block-buffered stdout);
- `4 writers`: four multiprocessing children write a quarter each, one write per line.

Under `python` the program runs with the start method "spawn" and writes straight into the pipe; under
`dragon` with "dragon", its output forwarded by Local Services and the launcher. The table gives MB/s
(median over `--runs`, interleaved rounds) and the ratio dragon/python in the same run. With
`--compare VENV`, VENV/bin/dragon runs too (e.g. an older checkout of this project installed in VENV),
so a change can be measured before/after in one run.

Usage: python tools/bench_output.py [--runs N] [--mib M] [--compare VENV] [--json-only]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _bench_util import fmt, json_line, machine_info, md_table, median

PROGRAM = r"""
import multiprocessing as mp, os, sys
try:
    import dragon
except ImportError:
    pass

LINE = b"x" * 99 + b"\n"

def write(size, block):
    if block:
        chunk = LINE * (block // len(LINE))
        for _ in range(size // len(chunk)):
            os.write(1, chunk)
    else:
        for _ in range(size // len(LINE)):
            os.write(1, LINE)

if __name__ == "__main__":
    method, case, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if case == "lines":
        write(size, 0)
    elif case == "blocks":
        write(size, 65536)
    else:
        ctx = mp.get_context(method)
        ps = [ctx.Process(target=write, args=(size // 4, 0)) for _ in range(4)]
        for p in ps:
            p.start()
        for p in ps:
            p.join()
"""

CASES = {
    "lines": "one writer, a write per line",
    "blocks": "one writer, 64 KiB writes",
    "writers": "4 writers, a write per line",
}


def expected_bytes(case: str, size: int) -> int:
    """What PROGRAM writes for `case`: whole lines (whole 64 KiB blocks of lines) only."""
    if case == "blocks":
        return size // 65500 * 65500
    if case == "writers":
        return 4 * (size // 4 // 100 * 100)
    return size // 100 * 100


def run_once(cmd: list[str], cwd: str) -> tuple[float, int]:
    """Seconds from spawn to exit with the whole stdout read, and the bytes read."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    got = 0
    while chunk := proc.stdout.read1(1 << 20):
        got += len(chunk)
    _, err = proc.communicate()
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} exited {proc.returncode}: {err.decode(errors='replace')[-2000:]}")
    return elapsed, got


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--mib", type=int, default=64, help="MiB each case writes (default 64)")
    p.add_argument("--compare", metavar="VENV", help="also run VENV/bin/dragon (e.g. an older checkout)")
    p.add_argument("--json-only", action="store_true")
    opts = p.parse_args(argv)
    size = opts.mib * 1024 * 1024
    work = Path(tempfile.mkdtemp(prefix="bench_output."))
    prog = work / "writer.py"
    prog.write_text(PROGRAM)
    runners = {
        "python": ([sys.executable], "spawn"),
        "dragon": ([str(Path(sys.executable).with_name("dragon"))], "dragon"),
    }
    if opts.compare:
        runners["compare"] = ([str(Path(opts.compare).expanduser() / "bin" / "dragon")], "dragon")
    times: dict[str, dict[str, list[float]]] = {c: {r: [] for r in runners} for c in CASES}
    for rnd in range(opts.runs + 1):  # round 0 warms up
        for case in CASES:
            order = list(runners) if rnd % 2 else list(reversed(runners))
            for name in order:
                prefix, method = runners[name]
                elapsed, got = run_once([*prefix, str(prog), method, case, str(size)], str(work))
                if got != expected_bytes(case, size):
                    raise RuntimeError(f"{name} {case}: {got} bytes of {expected_bytes(case, size)}")
                if rnd:
                    times[case][name].append(elapsed)
    rows = []
    result: dict[str, Any] = {"machine": machine_info(), "mib": opts.mib, "runs": opts.runs, "cases": {}}
    for case, label in CASES.items():
        mbps = {name: size / 1e6 / median(ts) for name, ts in times[case].items()}
        row: list[object] = [label, *(fmt(mbps[n], 0) for n in runners), f"{mbps['dragon'] / mbps['python']:.2f}x"]
        if "compare" in mbps:
            row.append(f"{mbps['dragon'] / mbps['compare']:.2f}x")
        rows.append(row)
        result["cases"][case] = {"mb_per_s": mbps, "seconds": times[case]}
    headers = ["case", *(f"{n} MB/s" for n in runners), "dragon/python"] + (["dragon/compare"] if opts.compare else [])
    if not opts.json_only:
        print(f"{opts.mib} MiB per case, median of {opts.runs} runs, load {os.getloadavg()[0]:.1f}\n")
        print(md_table(headers, rows) + "\n")
    print(json_line(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
