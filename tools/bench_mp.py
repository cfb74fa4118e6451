"""Benchmark the multiprocessing start method "dragon" against "spawn", in one run.

One program (written to a temporary directory) starts N `multiprocessing.Process(target=abs)` one
after the other, then joins them all, and reports the time of the start loop and of the whole
(start + join). It runs under plain `python` with "spawn" and under `dragon` with "dragon", for each
N in --counts (default 16 and 64), `--runs` times each (default 3), interleaved. The in-program times
exclude interpreter and runtime start-up; the wall time of the whole command is reported too.

Prints a table, then one JSON line. Usage: python tools/bench_mp.py [--counts 16 64] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench_util import json_line, machine_info, md_table, median  # noqa: E402

PROGRAM = '''\
import dragon, json, multiprocessing as mp, sys, time
if __name__ == "__main__":
    mp.set_start_method(sys.argv[1])
    n = int(sys.argv[2])
    t0 = time.perf_counter()
    ps = [mp.Process(target=abs, args=(-1,)) for _ in range(n)]
    for p in ps:
        p.start()
    t1 = time.perf_counter()
    for p in ps:
        p.join()
    t2 = time.perf_counter()
    assert all(p.exitcode == 0 for p in ps), [p.exitcode for p in ps]
    print(json.dumps({"start_s": t1 - t0, "total_s": t2 - t0}))
'''


def run_once(method: str, count: int, prog: Path) -> dict[str, float]:
    """One run of the program; its report plus the command's wall time."""
    argv = ([sys.executable] if method == "spawn" else [str(Path(sys.executable).with_name("dragon"))])
    t0 = time.perf_counter()
    done = subprocess.run([*argv, str(prog), method, str(count)], capture_output=True, cwd=prog.parent,
                          stdin=subprocess.DEVNULL, timeout=600, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{method} {count} failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
    report: dict[str, float] = json.loads(done.stdout)
    report["wall_s"] = wall
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--runs", type=int, default=3)
    opts = parser.parse_args()
    results: dict[str, dict[int, list[dict[str, float]]]] = {"spawn": {}, "dragon": {}}
    with tempfile.TemporaryDirectory() as tmp:
        prog = Path(tmp) / "bench_mp_prog.py"
        prog.write_text(PROGRAM)
        for count in opts.counts:
            for i in range(opts.runs):
                order = ("spawn", "dragon") if i % 2 == 0 else ("dragon", "spawn")
                for method in order:
                    results[method].setdefault(count, []).append(run_once(method, count, prog))
    rows = []
    summary: dict[str, Any] = {}
    for count in opts.counts:
        for method in ("spawn", "dragon"):
            runs = results[method][count]
            med = {k: median(r[k] for r in runs) for k in ("start_s", "total_s", "wall_s")}
            summary[f"{method}_{count}"] = med
            rows.append([method, count, f"{med['start_s']:.3f}", f"{1e3 * med['start_s'] / count:.1f}",
                         f"{med['total_s']:.3f}", f"{med['wall_s']:.3f}"])
    print(md_table(["method", "processes", "start loop s", "ms/start", "start+join s", "command wall s"], rows))
    print(json_line({"bench": "mp", "runs": opts.runs, "machine": machine_info(), "results": summary}))


if __name__ == "__main__":
    main()
