"""What the .pth file of the package (setup.py) costs an interpreter's start-up, measured in one run.

Builds the wheel, installs it into a fresh venv in a temporary directory, and times in that venv,
with the file `dragon-start-method.pth` in site-packages and with it renamed away (interleaved, the
order alternating from round to round, after one untimed warm-up of each):

1. `python -c pass`: wall time from just before the spawn to the end of `wait()`, `--runs` times each;
2. `python -c "import multiprocessing"`: what a program that uses multiprocessing pays once the hook
   imports dragon and registers the start method (`dragon._mp_hook`);
3. `python -X importtime -c pass`: the `site` module's own import time (cumulative, µs) as the
   interpreter reports it, median over the same rounds.

A fresh venv: the developer's editable install has setuptools' editable finder on its start-up path
too (about 8 ms of its own), which a normal install does not.

Output: a Markdown table on stdout, then one line of JSON. Usage:
    python tools/bench_pth.py [--runs N] [--json-only]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench_util import fmt_range, json_line, machine_info, md_table, summary

ROOT = Path(__file__).resolve().parent.parent
PTH = "dragon-start-method.pth"
CASES = {"python -c pass": ["-c", "pass"], "python -c 'import multiprocessing'": ["-c", "import multiprocessing"]}


def run(argv: list[str | Path]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def install(tmp: Path) -> tuple[Path, Path]:
    """A fresh venv with the wheel of this checkout; (its python, its .pth file)."""
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", ROOT])
    (wheel,) = (tmp / "dist").glob("dragon-*.whl")
    run([sys.executable, "-m", "venv", tmp / "venv"])
    python = tmp / "venv" / "bin" / "python"
    run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel])
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip()
    return python, Path(purelib) / PTH


def site_us(python: Path) -> float:
    """The cumulative import time of `site` (µs) that `-X importtime` reports."""
    err = run([python, "-X", "importtime", "-c", "pass"]).stderr
    match = re.search(r"^import time:\s+\d+ \|\s+(\d+) \| site$", err, re.M)
    if match is None:
        raise SystemExit(f"no `site` line in -X importtime output:\n{err}")
    return float(match.group(1))


def timed(python: Path, args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([python, *args], check=True, stdin=subprocess.DEVNULL)
    return (time.perf_counter() - t0) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="timed runs of each command and state (default 100)")
    parser.add_argument("--json-only", action="store_true")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        python, pth = install(Path(tmp))
        off = pth.with_name(pth.name + ".off")
        states = {"with": lambda: off.exists() and off.rename(pth), "without": lambda: pth.exists() and pth.rename(off)}
        times: dict[tuple[str, str], list[float]] = {(c, s): [] for c in CASES for s in states}
        site: dict[str, list[float]] = {s: [] for s in states}
        for rnd in range(opts.runs + 1):
            for state in list(states) if rnd % 2 else list(states)[::-1]:
                states[state]()
                for case, args in CASES.items():
                    t = timed(python, args)
                    if rnd:  # round 0 warms up
                        times[case, state].append(t)
                if rnd:
                    site[state].append(site_us(python))
        states["with"]()
    results = {f"{c} | {s}": summary(v) for (c, s), v in times.items()}
    results.update({f"site import (µs) | {s}": summary(v) for s, v in site.items()})
    rows = []
    for case in [*CASES, "site import (µs)"]:
        w, wo = results[f"{case} | with"], results[f"{case} | without"]
        unit = "µs" if "µs" in case else "ms"
        rows.append(
            [
                case,
                fmt_range(wo, 2 if unit == "ms" else 0),
                fmt_range(w, 2 if unit == "ms" else 0),
                f"{w['median'] / wo['median']:.3f}x",
                f"{w['median'] - wo['median']:+.2f} {unit}",
            ]
        )
    if not opts.json_only:
        print(f"{machine_info()}\n\n{opts.runs} runs of each, interleaved; medians (min-max)\n")
        print(md_table(["command", "without the .pth", "with the .pth", "ratio", "difference"], rows))
    print(
        json_line(
            {
                "machine": machine_info(),
                "runs": opts.runs,
                "results": {k: {"median": v["median"], "min": v["min"], "max": v["max"]} for k, v in results.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
