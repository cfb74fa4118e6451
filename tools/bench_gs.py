"""Benchmark Global Services requests: query round trips, process create+join, channel create+destroy.

One run does everything. This script, run plainly, is the *parent*: it times `--n` start+join of
`multiprocessing.get_context("spawn").Process(target=<noop>)` (the reference), then runs
`dragon tools/bench_gs.py --child` and reads one line of JSON from it. The *child* is the head
process of a real runtime and times, through the blocking client (`dragon.native`, `dragon.client.gs_client`):

- GS query round trips: `GSProcessQuery` of itself, `--queries` per repetition (requests/s);
- process create+join: `dragon.native.Process(sys.executable, ["-c", "pass"])` start+join, `--n` per
  repetition (processes/s);
- channel create+destroy: `dragon.native.Channel.create()` then `destroy()`, `--channels` per repetition;
- the async flavour, `dragon.aio`, through `dragon.aio.open_connection()` (trio-native) and through
  `await dragon.aio.connect()` (the blocking connection in a worker thread): query round trips
  (`Process.from_puid`) and process create+join.

Then the parent runs the async flavour once more embedded: `dragon.serve` in a nursery of its own
`trio.run`, requests going as the launcher through the `RuntimeHandle`.

The spawn reference is measured before and after the runtime runs (half the repetitions each), so a
drift of the machine shows in its min-max. Each figure is the median over `--reps` repetitions
(min-max next to it). Target: a managed process's create+join costs at most 1.2x a spawn Process's
start+join (PASS/MISS with the ratio; a miss is reported, not an error).

Output: a Markdown table, then one line of JSON. Exit status 1 if the runtime run failed.

Usage: python tools/bench_gs.py [--n 50] [--reps 3] [--queries 2000] [--channels 200]
"""

from __future__ import annotations

# Only what spawn's child needs anyway at the top: it re-imports this module (as __mp_main__), and
# heavier imports here would make the reference slower and the ratio look better than it is.
import multiprocessing
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

TARGET_RATIO: Final = 1.2
DRAGON: Final = os.path.join(os.path.dirname(sys.executable), "dragon")


def _noop() -> None:
    """The spawn Process's target."""


def rate(count: int, fn: Callable[[], None]) -> float:
    """Operations per second of `count` calls of `fn`."""
    t0 = time.perf_counter()
    for _ in range(count):
        fn()
    return count / (time.perf_counter() - t0)


def spawn_once(ctx: Any) -> None:
    proc = ctx.Process(target=_noop)
    proc.start()
    proc.join()
    assert proc.exitcode == 0, proc.exitcode


# --------------------------------------------------------------------------------------- child (the head)


def child(opts: argparse.Namespace) -> None:
    """Run as the head process of a runtime: measure, print one line of JSON."""
    import json

    from dragon.client.gs_client import connection
    from dragon.messages import GSProcessQuery, GSProcessQueryResponse, ProcessQueryErr
    from dragon.native import Channel, Process

    gs = connection()
    query = GSProcessQuery(p_uid=0, r_c_uid=0, t_p_uid=gs.p_uid)

    def one_query() -> None:
        assert gs.call(query, GSProcessQueryResponse).err == ProcessQueryErr.SUCCESS

    def one_process() -> None:
        proc = Process(sys.executable, ["-c", "pass"])
        proc.start()
        assert proc.join() == 0

    def one_channel() -> None:
        Channel.create().destroy()

    for fn in (one_query, one_process, one_channel):  # warm-up: first connections, imports, page faults
        fn()
    results: dict[str, list[float]] = {"query_per_s": [], "process_per_s": [], "channel_per_s": []}
    for _ in range(opts.reps):
        results["query_per_s"].append(rate(opts.queries, one_query))
        results["process_per_s"].append(rate(opts.n, one_process))
        results["channel_per_s"].append(rate(opts.channels, one_channel))
    results.update(trio_run_measure(opts, "managed_thread"))
    results.update(trio_run_measure(opts, "managed_native"))
    print(json.dumps(results), flush=True)


def trio_run_measure(opts: argparse.Namespace, mode: str) -> dict[str, list[float]]:
    """The async flavour (dragon.aio): query round trips and process create+join, `opts.reps` times.

    `mode`: "embedded", in a runtime of our own started with `dragon.serve` in a nursery (requests go
    as the launcher); "managed_thread", through `dragon.aio.connect()` of this managed process;
    "managed_native", through `dragon.aio.open_connection()` of this managed process.
    """
    import trio

    import dragon
    import dragon.aio

    prefix = f"aio_{mode}"
    out: dict[str, list[float]] = {f"{prefix}_query_per_s": [], f"{prefix}_process_per_s": []}

    async def arate(count: int, fn: Callable[[], Any]) -> float:
        t0 = time.perf_counter()
        for _ in range(count):
            await fn()
        return count / (time.perf_counter() - t0)

    async def measure(rt: dragon.aio.Runtime, p_uid: int) -> None:
        async def one_query() -> None:
            await dragon.aio.Process.from_puid(rt, p_uid)

        async def one_process() -> None:
            proc = dragon.aio.Process(rt, sys.executable, ["-c", "pass"])
            await proc.start()
            assert await proc.join() == 0

        await one_query()
        await one_process()
        for _ in range(opts.reps):
            out[f"{prefix}_query_per_s"].append(await arate(opts.queries, one_query))
            out[f"{prefix}_process_per_s"].append(await arate(opts.n, one_process))

    async def main() -> None:
        if mode == "managed_thread":
            rt = await dragon.aio.connect()
            assert isinstance(rt, dragon.aio.ManagedConnection)
            await measure(rt, rt.p_uid)
            return
        if mode == "managed_native":
            async with dragon.aio.open_connection() as conn:
                await measure(conn, conn.p_uid)
            return
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(dragon.serve)
            first = dragon.aio.Process(handle, sys.executable, ["-c", "pass"])
            await first.start()
            assert first.p_uid is not None
            await measure(handle, first.p_uid)
            nursery.cancel_scope.cancel(reason="measured")

    trio.run(main)
    return out


# --------------------------------------------------------------------------------------- parent


def main() -> int:
    import argparse
    import json
    import subprocess

    from _bench_util import fmt, fmt_range, json_line, machine_info, md_table, summary

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--n", type=int, default=50, help="processes per repetition (dragon and spawn)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--queries", type=int, default=2000, help="GS queries per repetition")
    ap.add_argument("--channels", type=int, default=200, help="channels per repetition")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.child:
        child(opts)
        return 0

    ctx = multiprocessing.get_context("spawn")
    spawn_once(ctx)  # warm-up
    spawn: list[float] = []
    before = (opts.reps + 1) // 2
    for _ in range(before):
        spawn.append(rate(opts.n, lambda: spawn_once(ctx)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRAGON_")}
    argv = [
        DRAGON,
        os.path.abspath(__file__),
        "--child",
        "--n",
        str(opts.n),
        "--reps",
        str(opts.reps),
        "--queries",
        str(opts.queries),
        "--channels",
        str(opts.channels),
    ]
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, stdin=subprocess.DEVNULL)
    run_s = time.perf_counter() - t0
    if done.returncode != 0:
        sys.stderr.write(f"the runtime run failed ({done.returncode}):\n{done.stderr.decode(errors='replace')}")
        return 1
    measured: dict[str, list[float]] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    for _ in range(opts.reps - before):
        spawn.append(rate(opts.n, lambda: spawn_once(ctx)))

    measured.update(trio_run_measure(opts, "embedded"))

    figures = {name: summary(vals) for name, vals in measured.items()}
    figures["spawn_per_s"] = summary(spawn)
    # cost per process = 1 / rate; ratio of costs = spawn rate / dragon rate
    ratio = figures["spawn_per_s"]["median"] / figures["process_per_s"]["median"]
    verdict = "PASS" if ratio <= TARGET_RATIO else "MISS"
    rows = [
        [
            "GS query round trips (GSProcessQuery)",
            "requests/s",
            fmt_range(figures["query_per_s"]),
            fmt(1e6 / figures["query_per_s"]["median"], 1) + " µs",
        ],
        [
            "managed process create+join (dragon.native)",
            "processes/s",
            fmt_range(figures["process_per_s"], 1),
            fmt(1e3 / figures["process_per_s"]["median"], 1) + " ms",
        ],
        [
            "spawn Process start+join (multiprocessing)",
            "processes/s",
            fmt_range(figures["spawn_per_s"], 1),
            fmt(1e3 / figures["spawn_per_s"]["median"], 1) + " ms",
        ],
        [
            "channel create+destroy (dragon.native)",
            "channels/s",
            fmt_range(figures["channel_per_s"]),
            fmt(1e6 / figures["channel_per_s"]["median"], 1) + " µs",
        ],
    ]
    for where in ("managed_native", "managed_thread", "embedded"):
        q, p = figures[f"aio_{where}_query_per_s"], figures[f"aio_{where}_process_per_s"]
        rows.append(
            [
                f"dragon.aio ({where}): query round trips (Process.from_puid)",
                "requests/s",
                fmt_range(q),
                fmt(1e6 / q["median"], 1) + " µs",
            ]
        )
        rows.append(
            [
                f"dragon.aio ({where}): process create+join",
                "processes/s",
                fmt_range(p, 1),
                fmt(1e3 / p["median"], 1) + " ms",
            ]
        )
    print(md_table(["operation", "unit", f"median (min–max) of {opts.reps}", "per op"], rows))
    print()
    print(
        f"{verdict}: managed process create+join costs {ratio:.2f}x a spawn Process start+join "
        f"(target <= {TARGET_RATIO}x; N={opts.n}, runtime run {run_s:.1f} s)"
    )
    print(
        json_line(
            {
                "bench": "gs",
                "n": opts.n,
                "reps": opts.reps,
                "queries": opts.queries,
                "channels": opts.channels,
                **figures,
                "process_vs_spawn_cost_ratio": ratio,
                "target_ratio": TARGET_RATIO,
                "verdict": verdict,
                "machine": machine_info(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
