"""Benchmark `dragon status --json` on a busy runtime: 100 managed processes and 1,000 channels.

A head program (written to a temporary directory) creates, through Global Services requests, 1,000
channels and 100 managed processes (each asleep, each with its GS-return channel, so GS knows about
1,100 channels), prints READY, and waits for a line on stdin. The runtime runs in a private runtime
root (XDG_RUNTIME_DIR), so other runtimes of the machine are not seen. Then `dragon status RUN_ID
--json` is run `--runs` times (default 9, after one untimed warm-up): wall time from spawn to exit,
median/min/max, and the figures of the answer (process/channel/pool counts) are checked. For
comparison, `python -c "import dragon.cli"` is timed too: what the command costs (mostly `import
trio`, which cli.py does at the top) before it asks anything. Target: median under
0.5 s (PASS/MISS; a miss is reported, not an error).

Output: a Markdown table, then one line of JSON. Exit status 1 if the runtime or a status call failed.

Usage: python tools/bench_status.py [--runs N] [--processes N] [--channels N]
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
from typing import Any, Final

from _bench_util import fmt, json_line, machine_info, md_table, median

TARGET_S: Final = 0.5
DRAGON: Final = os.path.join(os.path.dirname(sys.executable), "dragon")

HEAD = r"""
import json, os, sys
from dragon.client.gs_client import connection
from dragon.descriptors import ProcessOptions
from dragon.ids import DEFAULT_POOL_MUID
from dragon.messages import GSChannelCreate, GSChannelCreateResponse, GSProcessCreate, GSProcessCreateResponse

gs = connection()
n_proc, n_chan = int(sys.argv[1]), int(sys.argv[2])
for i in range(n_chan):
    r = gs.call(GSChannelCreate(p_uid=0, r_c_uid=0, m_uid=DEFAULT_POOL_MUID, user_name=f"bench-{i}"),
                GSChannelCreateResponse, timeout_s=60)
    assert r.err == 0, r
for i in range(n_proc):
    r = gs.call(GSProcessCreate(p_uid=0, r_c_uid=0, exe=sys.executable, args=["-c", "import time; time.sleep(3600)"],
                options=ProcessOptions(make_inf_channels=True)), GSProcessCreateResponse, timeout_s=60)
    assert r.err == 0, r
print("READY " + os.environ["DRAGON_RUN_ID"], flush=True)
sys.stdin.readline()
"""


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    t0 = time.perf_counter()
    out = subprocess.run(argv, env=env, capture_output=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - t0, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--processes", type=int, default=100)
    ap.add_argument("--channels", type=int, default=1000)
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-status-") as tmp:
        head = Path(tmp) / "head.py"
        head.write_text(HEAD)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRAGON_")}
        env["XDG_RUNTIME_DIR"] = tmp
        t0 = time.perf_counter()
        rt = subprocess.Popen(
            [DRAGON, str(head), str(opts.processes), str(opts.channels)],
            env=env,
            cwd=tmp,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert rt.stdin is not None and rt.stdout is not None
        try:
            line = rt.stdout.readline().decode()
            if not line.startswith("READY "):
                print(f"bench_status: the runtime did not come up: {line!r}", file=sys.stderr)
                return 1
            setup_s = time.perf_counter() - t0
            run_id = line.split()[1]
            argv = [DRAGON, "status", run_id, "--json"]
            timed(argv, env)  # warm-up
            times, sizes = [], []
            report: dict[str, Any] = {}
            for _ in range(opts.runs):
                t, out = timed(argv, env)
                if out.returncode != 0:
                    print(f"bench_status: status failed ({out.returncode}): {out.stderr.decode()}", file=sys.stderr)
                    return 1
                times.append(t)
                sizes.append(len(out.stdout))
                report = json.loads(out.stdout)
            imports = [timed([sys.executable, "-c", "import dragon.cli"], env)[0] for _ in range(opts.runs)]
        finally:
            rt.stdin.write(b"\n")
            rt.stdin.close()
            rt.wait(120)
            rt.stdout.close()
    med = median(times)
    counts = {
        "processes": len(report.get("processes", [])),
        "channels": len(report.get("channels", [])),
        "pools": len(report.get("pools", [])),
    }
    verdict = "PASS" if med < TARGET_S else "MISS"
    print(
        f"`dragon status --json` on a runtime with {opts.processes} processes and {opts.channels} channels "
        f"(set up in {setup_s:.1f} s); {opts.runs} runs\n"
    )
    print(
        md_table(
            ["measure", "median ms", "min ms", "max ms"],
            [
                ["dragon status --json", fmt(med * 1e3, 1), fmt(min(times) * 1e3, 1), fmt(max(times) * 1e3, 1)],
                [
                    "python -c 'import dragon.cli' (command start-up)",
                    fmt(median(imports) * 1e3, 1),
                    fmt(min(imports) * 1e3, 1),
                    fmt(max(imports) * 1e3, 1),
                ],
            ],
        )
    )
    print(
        f"\nanswer: {counts['processes']} processes, {counts['channels']} channels, {counts['pools']} pools, "
        f"{fmt(median(sizes) / 1024, 0)} KiB of JSON; target median < {TARGET_S} s: {verdict}\n"
    )
    print(
        json_line(
            {
                "bench": "status",
                "processes": opts.processes,
                "channels": opts.channels,
                "runs": opts.runs,
                "median_s": med,
                "min_s": min(times),
                "max_s": max(times),
                "startup_median_s": median(imports),
                "answer": counts,
                "json_bytes": median(sizes),
                "target_s": TARGET_S,
                "verdict": verdict,
                "machine": machine_info(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
