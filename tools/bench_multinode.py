"""Benchmark a run of many virtual nodes (`dragon --nodes N --wlm local`) against one node, in one run.

Issue 16, part 1 (MULTINODE §10). Every command runs in a temporary working directory with stdin from
/dev/null and its output captured; `--runs` rounds (default 10), each running every command below once,
the order reversed from one round to the next, after one untimed warm-up of each bring-up command.

1. Bring-up: wall time, from just before the spawn to the end of `wait()`, of `dragon --nodes N --wlm
   local hello.py` for N = 1, 2, 4, 8 (hello.py prints one line), with `dragon hello.py` (one node, no
   ZeroMQ) and `python hello.py` (sys.executable, the head's interpreter) as references; medians over
   the rounds. Target (PASS/MISS): T(N) <= T(1) + 0.1 s x (N - 1), T(1) being `--nodes 1 --wlm local`
   in the same run (an extra virtual node costs at most about one interpreter start). Also T(1) against
   `dragon hello.py`: what the frontend/backend/transport-agent machinery itself costs.
2. Process start+join on the other node against the same node: a program run by `dragon --nodes 2
   --wlm local` starts and joins `Process(target=T)` one after the other (start method "dragon", from
   just before `Process(...)` to the end of `join()`, as tools/bench_mp.py's procs rows), each `start()`
   under `dragon.native.Policy(node=...)`, the nodes taking turns (0 1, 1 0, 0 1, ...: interleaved),
   --starts K on each node after 2 untimed ones each. T is trivial: it exits with its node index
   (DRAGON_INDEX) as its exit code, which the program checks against the policy's node. Per round the
   median of each node's K samples and their ratio other/same; the table gives the median over rounds
   of each, with min-max. Target (PASS/MISS): ratio <= 1.5x. The same program under single-node
   `dragon` (Policy(node=0)) and under plain `python` with the start method "spawn" (no policy: the
   standard library's start+join) give the ratio dragon/spawn.
3. Single-node figures in a run of two nodes: rows of tools/bench_mp.py (its own measuring functions
   and parameters, imported from its PROGRAM; pinned as there: in the round trips the head on the
   first CPU, the child on the second) by a program whose processes all stay on node 0 of a `dragon
   --nodes 2 --wlm local` run (every row under `Policy(node=0)`), against the same program under
   single-node `dragon`: Queue one-way 64 B (msg/s), Queue and Pipe round trips of 8 B between the
   head and a child (µs), Lock acquire/release in the head (pairs/s). The head's CPU affinity is
   restored after every row. Median over rounds (min-max); "slowdown" = how many times worse the
   two-node run is (> 1: slower), of the medians, judged "unchanged" when within 0.9-1.1x; also of the
   best round of each (fastest), the least disturbed by other work on the machine. Reported, not a
   target: the rounds of a row on this shared machine differ by 3x or more at times (the round trips
   are 4-5 µs when both processes run undisturbed on their CPUs, 10-20 µs when not).

4. Across two isolated nodes (issue 17, `--section cross`): the Queue and Pool rows of MULTINODE §10
   between the two nodes of a `VirtualCluster` (tests/multinode/netns.py, put on sys.path), each
   against a baseline measured between the same two namespaces in the same run (raw ZeroMQ, raw TCP,
   or the same Pool on one node), --cross-runs rounds (default 3); described in
   tools/bench_multinode_cross.py. Skipped, saying why, without root or without `ip`.

`--section nodes` runs parts 1-3 only, `--section cross` part 4 only; both by default.

Leftovers: each run must clean up after itself, on every node. Every command gets a private runtime
root (XDG_RUNTIME_DIR), so a run directory left there is ours, and a marker in its environment, which
every process of the run inherits: a process (not a zombie) carrying the marker after its command
exited, still there at the end, is left behind. /dev/shm entries are judged as in
tools/bench_bringup.py (an entry that appeared during one of our runs and is still there a few seconds
after the last one is ours, unless another runtime's directory in the shared runtime root claims it).

Output: Markdown tables on stdout (progress on stderr), then one line of JSON. Exit status 1 if a run
failed or something was left behind; a missed target is reported (MISS), not an error.

Usage: python tools/bench_multinode.py [--section nodes|cross|all] [--runs N] [--starts K] [--cross-runs R]
                                      [--quick] [--json-only]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_mp
import bench_multinode_cross as cross
from bench_bringup import dragon_command, pid_alive, run_once, settle_and_classify, shm_entries, shm_prefix, stats

from _bench_util import fmt, json_line, machine_info, md_table, median

NODE_COUNTS: Final = (1, 2, 4, 8)
PER_NODE_BUDGET_S: Final = 0.1  # MULTINODE §10: T(N) <= T(1) + 0.1 s x (N - 1)
OTHER_NODE_TARGET: Final = 1.5  # start+join on the other node / on the same node, at most
UNCHANGED: Final = (0.9, 1.1)  # the band a same-node figure of a two-node run counts as unchanged in
WARM_STARTS: Final = 2  # untimed start+joins per node before the timed ones
MARK: Final = "BENCH_MULTINODE_REPORT "
MARKER_VAR: Final = "BENCH_MULTINODE_RUN"
HELLO: Final = 'print("hello")\n'

# The measured program. Only the standard multiprocessing API; bench_mp's measuring functions come from
# its PROGRAM, written next to this one as bench_mp_prog.py (the children import it from there too).
PROGRAM = '''\
"""bench_multinode program: python|dragon PROG METHOD CASE PARAMS_JSON -> one line "BENCH_MULTINODE_REPORT {json}"."""
import contextlib
import json
import multiprocessing as mp
import os
import sys
import time

import bench_mp_prog as mpb

NODES = int(os.environ.get("DRAGON_NODES", "1"))


def _node_exit():
    """A trivial target that says where it ran: its exit code is its node index."""
    sys.exit(int(os.environ.get("DRAGON_INDEX", "0")))


def on_node(ctx, node):
    """The processes started in the block run on `node` (Policy, under "dragon"; spawn has one node)."""
    if ctx.get_start_method() != "dragon":
        return contextlib.nullcontext()
    from dragon.native import Policy

    return Policy(node=node)


def start_join(ctx, warm, k):
    """warm + k start+joins on each node, the nodes taking turns (0 1, 1 0, 0 1 ...); seconds of the
    timed ones by node index."""
    times = {}
    for i in range(warm + k):
        for node in range(NODES) if i % 2 == 0 else reversed(range(NODES)):
            t0 = time.perf_counter()
            p = ctx.Process(target=_node_exit)
            with on_node(ctx, node):
                p.start()
            p.join()
            dt = time.perf_counter() - t0
            assert p.exitcode == node, f"a process placed on node {node} ran on node {p.exitcode}"
            if i >= warm:
                times.setdefault(str(node), []).append(dt)
    return times


ROWS = {"queue64": "msgs_per_s", "queue_rt": "rt_s", "pipe_rt": "rt_s", "lock": "pairs_per_s"}


def same_node(ctx, **programs):
    """bench_mp's programs of these rows, with its parameters (programs: key -> [case, params]), every
    process on node 0; the rows' figures."""
    affinity = os.sched_getaffinity(0)
    out = {}
    for key, metric in ROWS.items():
        case, params = programs[key]
        with on_node(ctx, 0):
            out[key] = getattr(mpb, case)(ctx, **params)[metric]
        os.sched_setaffinity(0, affinity)  # the round trips pin the head: undone for the next row
    return out


CASES = {"start_join": start_join, "same_node": same_node}

if __name__ == "__main__":
    method, case, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    if method == "dragon":
        import dragon  # noqa: F401  (registers the start method "dragon")
    report = CASES[case](mp.get_context(method), **params)
    print("BENCH_MULTINODE_REPORT " + json.dumps({"nodes": NODES, **report}), flush=True)
'''


# ============================================================================ the commands


@dataclass(frozen=True)
class Command:
    """One command of a round: its argv (after the working directory's files are known) and whether
    it runs hello.py (its output must be "hello") or the program (its output has one report)."""

    key: str
    label: str
    argv: list[str]
    hello: bool


def commands(work: Path, dragon: list[str], opts: argparse.Namespace) -> list[Command]:
    """Every command of a round, in the order of the even rounds."""
    hello = str(work / "hello.py")
    prog = str(work / "bench_multinode_prog.py")
    local = [*dragon, "--nodes", "2", "--wlm", "local"]
    sj = json.dumps({"warm": WARM_STARTS, "k": opts.starts})
    sn = json.dumps({key: [bench_mp.PROGRAMS[key].case, bench_mp.params_of(key, opts.quick)] for key in SAME_NODE_ROWS})
    return [
        Command("python", "`python hello.py`", [sys.executable, hello], True),
        Command("dragon", "`dragon hello.py`", [*dragon, hello], True),
        *(
            Command(
                f"nodes{n}",
                f"`dragon --nodes {n} --wlm local hello.py`",
                [*dragon, "--nodes", str(n), "--wlm", "local", hello],
                True,
            )
            for n in NODE_COUNTS
        ),
        Command("sj_spawn", "start+join, `python` (spawn)", [sys.executable, prog, "spawn", "start_join", sj], False),
        Command("sj_dragon", "start+join, `dragon`", [*dragon, prog, "dragon", "start_join", sj], False),
        Command("sj_nodes2", "start+join, `dragon --nodes 2`", [*local, prog, "dragon", "start_join", sj], False),
        Command("sn_dragon", "node-0 rows, `dragon`", [*dragon, prog, "dragon", "same_node", sn], False),
        Command("sn_nodes2", "node-0 rows, `dragon --nodes 2`", [*local, prog, "dragon", "same_node", sn], False),
    ]


def report_of(stdout: str) -> dict[str, Any] | None:
    """The program's report (None if it printed none, or more than one)."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith(MARK)]
    return json.loads(lines[0][len(MARK) :]) if len(lines) == 1 else None


def marked_processes(marker: str) -> set[int]:
    """Live processes (not zombies) whose environment carries our marker: processes of our runs."""
    needle = f"{MARKER_VAR}={marker}".encode()
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes()
            except OSError:
                continue
            if needle in environ.split(b"\0") and pid_alive(int(entry)):
                found.add(int(entry))
    return found


# ============================================================================ figures


def ms(x: float) -> str:
    return fmt(x * 1000, 1)


def over_rounds(values: list[float]) -> dict[str, Any]:
    """Median and min-max over the rounds."""
    s = stats(values)
    return {k: s[k] for k in ("median", "min", "max", "n", "reps")}


def bringup_figures(walls: dict[str, list[float]]) -> dict[str, Any]:
    wall = {key: stats(v) for key, v in walls.items()}
    t1 = wall["nodes1"]["median"]
    targets = {}
    for n in NODE_COUNTS[1:]:
        bound = t1 + PER_NODE_BUDGET_S * (n - 1)
        tn = wall[f"nodes{n}"]["median"]
        targets[f"nodes{n}"] = {"bound_s": bound, "extra_per_node_s": (tn - t1) / (n - 1), "pass": tn <= bound}
    return {
        "wall_s": wall,
        "targets": targets,
        "machinery_s": t1 - wall["dragon"]["median"],
        "machinery_ratio": t1 / wall["dragon"]["median"],
    }


def start_join_figures(reports: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per round: the median of each node's samples (and other/same in the two-node run); over rounds."""
    per_round: dict[str, list[float]] = {"spawn": [], "dragon": [], "same": [], "other": [], "ratio": []}
    for r in reports["sj_spawn"]:
        per_round["spawn"].append(median(r["0"]))
    for r in reports["sj_dragon"]:
        per_round["dragon"].append(median(r["0"]))
    for r in reports["sj_nodes2"]:
        same, other = median(r["0"]), median(r["1"])
        per_round["same"].append(same)
        per_round["other"].append(other)
        per_round["ratio"].append(other / same)
    out = {k: over_rounds(v) for k, v in per_round.items()}
    out["dragon_vs_spawn"] = out["dragon"]["median"] / out["spawn"]["median"]
    out["same_vs_dragon"] = out["same"]["median"] / out["dragon"]["median"]
    out["pass"] = out["ratio"]["median"] <= OTHER_NODE_TARGET
    return out


SAME_NODE_ROWS: Final = {  # key: (what, unit, scale, higher is better, digits)
    "queue64": ("Queue one-way, 64 B messages (msg/s)", "msg/s", 1.0, True, 0),
    "queue_rt": ("Queue round trip, 8 B, head <-> child (µs)", "µs", 1e6, False, 1),
    "pipe_rt": ("Pipe round trip, 8 B, head <-> child (µs)", "µs", 1e6, False, 1),
    "lock": ("Lock acquire+release, 1 process (pairs/s)", "pairs/s", 1.0, True, 0),
}


def same_node_figures(reports: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out = {}
    for key, (what, unit, scale, higher, _digits) in SAME_NODE_ROWS.items():
        one = over_rounds([r[key] * scale for r in reports["sn_dragon"]])
        two = over_rounds([r[key] * scale for r in reports["sn_nodes2"]])
        slowdown = one["median"] / two["median"] if higher else two["median"] / one["median"]
        best = one["max"] / two["max"] if higher else two["min"] / one["min"]
        out[key] = {
            "what": what,
            "unit": unit,
            "one_node": one,
            "two_nodes": two,
            "slowdown": slowdown,
            "best_slowdown": best,
            "unchanged": UNCHANGED[0] <= slowdown <= UNCHANGED[1],
        }
    return out


# ============================================================================ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmark `dragon --nodes N --wlm local` against one node.")
    p.add_argument("--runs", type=int, default=10, help="rounds of every command (default 10)")
    p.add_argument("--starts", type=int, default=30, help="timed start+joins per node (default 30)")
    p.add_argument(
        "--section",
        choices=("nodes", "cross", "all"),
        default="all",
        help="nodes: bring-up, start+join and node-0 rows (issue 16); cross: data across two isolated nodes "
        "(issue 17, needs root); all (default): both",
    )
    p.add_argument("--cross-runs", type=int, default=3, help="rounds of the cross-node section (default 3)")
    p.add_argument("--quick", action="store_true", help="smaller counts for the measured rows: a smoke run")
    p.add_argument("--json-only", action="store_true", help="print only the line of JSON")
    opts = p.parse_args(argv)
    if opts.runs < 1:
        p.error("--runs must be at least 1")
    if opts.starts < 1:
        p.error("--starts must be at least 1")
    if opts.cross_runs < 1:
        p.error("--cross-runs must be at least 1")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)

    def say(text: str) -> None:
        if not opts.json_only:
            print(text, file=sys.stderr, flush=True)

    work = Path(tempfile.mkdtemp(prefix="bench_multinode."))
    xdg = Path(tempfile.mkdtemp(prefix="bench_multinode_xdg."))  # private runtime root: see "Leftovers"
    marker = f"{os.getpid()}.{time.time_ns()}"
    env = {k: v for k, v in os.environ.items() if k not in ("DRAGON_LOG_LEVEL", "DRAGON_LOG_FILE")}
    env |= {"XDG_RUNTIME_DIR": str(xdg), MARKER_VAR: marker}
    (work / "hello.py").write_text(HELLO)
    (work / "bench_mp_prog.py").write_text(bench_mp.PROGRAM)
    (work / "bench_multinode_prog.py").write_text(PROGRAM)
    ours = {"hello.py", "bench_mp_prog.py", "bench_multinode_prog.py", *cross.FILES}

    dragon = dragon_command()
    nodes_section = opts.section in ("nodes", "all")
    cmds = commands(work, dragon, opts) if nodes_section else []
    walls: dict[str, list[float]] = {c.key: [] for c in cmds if c.hello}
    reports: dict[str, list[dict[str, Any]]] = {c.key: [] for c in cmds if not c.hello}
    failures: list[dict[str, Any]] = []
    shm_candidates: set[str] = set()
    stray_procs: set[int] = set()

    def run(cmd: Command, what: str, timed: bool = True) -> None:
        shm_before = shm_entries()
        r = run_once(cmd.argv, str(work), env)
        shm_candidates.update(shm_entries() - shm_before)
        stray_procs.update(marked_processes(marker))
        report = None if cmd.hello else report_of(r.stdout)
        if not (r.ok() if cmd.hello else r.rc == 0 and report is not None):
            failures.append({"case": what, "rc": r.rc, "stdout": r.stdout[-500:], "stderr": r.stderr[-2000:]})
            say(f"[bench] FAILED {what} rc={r.rc}: {r.stderr.strip()[-300:]}")
        elif timed and cmd.hello:
            walls[cmd.key].append(r.wall_s)
        elif timed and report is not None:
            reports[cmd.key].append(report)

    started = time.perf_counter()
    cross_node: dict[str, Any] | None = None
    try:
        for cmd in cmds:
            if cmd.hello:  # warm-up (page cache): one of each, untimed; the programs warm up inside
                run(cmd, f"{cmd.key} (warm-up)", timed=False)
        for i in range(opts.runs if nodes_section else 0):
            say(f"[bench] round {i + 1}/{opts.runs}")
            for cmd in cmds if i % 2 == 0 else cmds[::-1]:
                run(cmd, cmd.key)
        if opts.section in ("cross", "all"):
            cross_node = cross.measure(opts, work, env, dragon, say)
    finally:
        elapsed = time.perf_counter() - started
        stray_files = sorted(p.name for p in work.iterdir() if p.name not in ours and p.name != "__pycache__")
        dirs_left = sorted(p.name for p in (xdg / "dragon").glob("*"))
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(xdg, ignore_errors=True)

    shm = settle_and_classify(shm_candidates, set(dirs_left))
    shm_left = shm["ours"] + shm["unattributed"]
    procs_left = sorted(pid for pid in stray_procs if pid_alive(pid))

    complete = nodes_section and all(walls.values()) and all(reports.values())
    cross_failed = cross_node is not None and bool(cross_node.get("failures") or cross_node.get("leftovers"))
    doc: dict[str, Any] = {
        "benchmark": "multinode",
        "machine": machine_info(),
        "runs": opts.runs,
        "starts_per_node": opts.starts,
        "section": opts.section,
        "quick": opts.quick,
        "elapsed_s": round(elapsed, 2),
        "dragon": dragon,
        "placement": "dragon.native.Policy(node=...)",
        "bringup": bringup_figures(walls) if complete else None,
        "start_join": start_join_figures(reports) if complete else None,
        "same_node": same_node_figures(reports) if complete else None,
        "cross_node": cross_node,
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
        print_tables(doc, cmds)
    print(json_line(doc))
    return 1 if failures or cross_failed or shm_left or dirs_left or procs_left or stray_files else 0


def print_tables(doc: dict[str, Any], cmds: list[Command]) -> None:
    m = doc["machine"]
    label = {c.key: c.label for c in cmds}
    print(
        f"## Many virtual nodes against one (section {doc['section']}; {m['cpus']} CPUs, "
        f"load {m['loadavg']}, Python {m['python']}; {doc['elapsed_s']} s)\n"
    )
    if doc["bringup"] is not None:
        print(f"{doc['runs']} rounds of the issue-16 commands, interleaved\n")
        print_bringup(doc["bringup"], label)
        print_start_join(doc["start_join"], doc["starts_per_node"])
        print_same_node(doc["same_node"])
    if doc["cross_node"] is not None:
        cross.print_tables(doc["cross_node"])
    print_leftovers(doc)


def print_bringup(b: dict[str, Any], label: dict[str, str]) -> None:
    wall = b["wall_s"]
    t1 = wall["nodes1"]["median"]
    rows = []
    for key in ["python", "dragon", *(f"nodes{n}" for n in NODE_COUNTS)]:
        s, t = wall[key], b["targets"].get(key)
        rows.append(
            [
                label[key],
                ms(s["median"]),
                f"{ms(s['min'])}–{ms(s['max'])}",
                f"{ms(s['median'] - t1)}" if key.startswith("nodes") else "",
                f"<= {ms(t['bound_s'])}" if t else "",
                ("PASS" if t["pass"] else "MISS") if t else "",
            ]
        )
    print("### Bring-up: `hello.py` wall time\n")
    print(md_table(["command", "median ms", "min–max ms", "- T(1) ms", "target ms", "met?"], rows))
    print(
        f"\ntarget: T(N) <= T(1) + {PER_NODE_BUDGET_S * 1000:.0f} ms x (N - 1). The multi-node machinery "
        f"(frontend, backend, transport agent) on one node: T(1) - `dragon hello.py` = {ms(b['machinery_s'])} ms "
        f"({fmt(b['machinery_ratio'], 2)}x)\n"
    )


def print_start_join(s: dict[str, Any], k: int) -> None:
    def cell(key: str) -> list[str]:
        return [ms(s[key]["median"]), f"{ms(s[key]['min'])}–{ms(s[key]['max'])}"]

    rows = [
        ["`python`, start method spawn", *cell("spawn"), "1.00x vs spawn"],
        ["`dragon` (one node)", *cell("dragon"), f"{fmt(s['dragon_vs_spawn'], 2)}x vs spawn"],
        ["`dragon --nodes 2`, on node 0 (the head's)", *cell("same"), f"{fmt(s['same_vs_dragon'], 2)}x vs one node"],
        ["`dragon --nodes 2`, on node 1", *cell("other"), ""],
    ]
    print(f"### Process start+join ({k} per node per round; per-round medians, then median over rounds)\n")
    print(md_table(["where", "median ms", "min–max ms", "ratio"], rows))
    r = s["ratio"]
    print(
        f"\n{'PASS' if s['pass'] else 'MISS'}  other node / same node (median of per-round ratios): "
        f"{fmt(r['median'], 2)}x (rounds {fmt(r['min'], 2)}–{fmt(r['max'], 2)}x) <= {OTHER_NODE_TARGET}x\n"
    )


def print_same_node(rows_in: dict[str, Any]) -> None:
    rows = []
    for key, r in rows_in.items():
        digits = SAME_NODE_ROWS[key][4]

        def cell(s: dict[str, Any], d: int = digits) -> str:
            return f"{fmt(s['median'], d)} ({fmt(s['min'], d)}–{fmt(s['max'], d)})"

        rows.append(
            [
                r["what"],
                cell(r["one_node"]),
                cell(r["two_nodes"]),
                f"{fmt(r['slowdown'], 2)}x",
                "yes" if r["unchanged"] else "NO",
                f"{fmt(r['best_slowdown'], 2)}x",
            ]
        )
    lo, hi = UNCHANGED
    print("### Same-node figures in a run of two nodes (every process on node 0; median over rounds, min–max)\n")
    headers = [
        "what",
        "`dragon`",
        "`dragon --nodes 2`",
        "slowdown (>1: slower)",
        f"unchanged ({lo}–{hi}x)?",
        "best-of slowdown",
    ]
    print(md_table(headers, rows))
    print(
        "\nslowdown: of the medians; best-of: of the best round of each (the least disturbed by other work on the "
        "machine: on a shared machine the rounds of a row can differ by 3x or more)\n"
    )


def print_leftovers(doc: dict[str, Any]) -> None:
    for f in doc["failures"]:
        print(f"FAILED run: {f['case']} rc={f['rc']} stderr: {f['stderr'].strip()[-300:]!r}")
    left = doc["leftovers"]
    if left["shm"] or left["run_dirs"] or left["processes"] or left["files"]:
        print(
            f"LEFT BEHIND: /dev/shm ours {left['shm_ours']}, unattributed (possibly ours) "
            f"{left['shm_unattributed']}, run dirs {left['run_dirs']}, processes {left['processes']}, "
            f"files {left['files']}"
        )
    else:
        print(f"nothing left behind: no /dev/shm/{shm_prefix()}* entry, run directory, process or file of ours remains")
    if left["shm_of_other_runtimes"]:
        print(f"(not ours, not counted: {len(left['shm_of_other_runtimes'])} /dev/shm entries of other runtimes)")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
