"""Head program for test_process_group: `dragon.native.ProcessGroup` end to end (spec §7.2); runs the
scenarios named in argv (all by default) and prints one JSON report of what they saw: exit statuses,
the errors raised (class name and text), what the members reported through a native Queue. Timings
are reported, not judged here."""

import json
import os
import pickle
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from dragon.native import Policy, Process, ProcessTemplate, Queue, current_puid
from dragon.native.process_group import ProcessGroup


def report_in(queue: "Queue", tag: str) -> None:
    """Says who it is and on which CPUs it may run."""
    queue.put((tag, current_puid(), sorted(os.sched_getaffinity(0))))


def exits(code: int) -> None:
    sys.exit(code)


def sleeps() -> None:
    time.sleep(600)


def sleeps_after_saying(queue: "Queue") -> None:
    queue.put(current_puid())
    time.sleep(600)


def deaf(queue: "Queue") -> None:
    """Ignores SIGINT and SIGTERM: only SIGKILL ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    queue.put(current_puid())
    time.sleep(600)


def on_usr1_exits_7(queue: "Queue") -> None:
    signal.signal(signal.SIGUSR1, lambda *_: sys.exit(7))
    queue.put(current_puid())
    time.sleep(600)


def fails_when_told(tokens: "Queue") -> None:
    tokens.get()
    sys.exit(3)


def takes_one(tokens: "Queue", done: "Queue") -> None:
    """Takes one token, says so, exits: a restarting group replaces it."""
    token = tokens.get()
    done.put((token, current_puid()))


def leaves_group(queue: "Queue") -> None:
    """Starts a restarting group and returns without closing it: its exit closes it."""
    said = Queue()
    group = ProcessGroup(restart=True)
    group.add_process(2, ProcessTemplate(sleeps_after_saying, (said,)))
    group.start()
    gather(said, 2)
    queue.put(group.puids)


def outcome(call: Callable[[], object]) -> list[Any]:
    """[error class name, text] of what `call()` raised, or ["none", its result]."""
    try:
        return ["none", call()]
    except Exception as exc:
        return [type(exc).__name__, str(exc)]


def gather(queue: "Queue", n: int) -> list[Any]:
    return [queue.get(timeout=60) for _ in range(n)]


def basic(r: dict[str, Any]) -> None:
    q = Queue()
    group = ProcessGroup(name="basic")
    group.add_process(3, ProcessTemplate(report_in, (q, "callable")))
    group.add_process(1, ProcessTemplate("true"))
    r["repr_new"] = repr(group)
    group.init()
    group.start()
    seen = gather(q, 3)
    group.join(60)
    r["basic"] = {
        "members": sorted(p for _, p, _ in seen),
        "exit_status": group.exit_status,
        "inactive": group.inactive_puids,
        "puids_after": group.puids,
        "error": group.in_error_state,
        "head": current_puid(),
        "repr": repr(group),
    }
    # started again: fresh processes, a fresh exit status
    group.start()
    again = gather(q, 3)
    group.join(60)
    r["basic"]["again"] = [sorted(p for _, p, _ in again), group.exit_status]
    group.close()
    r["basic"]["closed"] = [repr(group), outcome(group.start), outcome(group.close)]
    group.init()
    group.start()
    gather(q, 3)
    group.join(60)
    r["basic"]["reinit"] = len(group.exit_status)
    group.close()


def failing(r: dict[str, Any]) -> None:
    q, tokens = Queue(), Queue()
    group = ProcessGroup()
    group.add_process(2, ProcessTemplate(sleeps_after_saying, (q,)))
    group.add_process(1, ProcessTemplate(fails_when_told, (tokens,)))
    group.start()
    members = gather(q, 2)  # the sleepers run (a failure before would stop them before they say so)
    t0 = time.monotonic()
    tokens.put("fail")
    r["failing"] = {
        "join": outcome(lambda: group.join(60)),
        "seconds": time.monotonic() - t0,
        "error": group.in_error_state,
        "exit_status": group.exit_status,
        "sleepers": sorted(members),
        "close": outcome(group.close),
    }
    with ProcessGroup(ignore_error_on_exit=True) as ignoring:
        ignoring.add_process(2, ProcessTemplate(exits, (0,)))
        ignoring.add_process(1, ProcessTemplate(exits, (3,)))
        ignoring.start()
        r["ignoring"] = [
            outcome(lambda: ignoring.join(60)),
            sorted(c for _, c in ignoring.exit_status),
            ignoring.in_error_state,
        ]


def restarting(r: dict[str, Any]) -> None:
    tokens, done = Queue(), Queue()
    group = ProcessGroup(restart=True, ignore_error_on_exit=True)
    group.add_process(2, ProcessTemplate(takes_one, (tokens, done)))
    group.start()
    first = group.puids
    for i in range(6):
        tokens.put(i)
    taken = gather(done, 6)
    during = group.puids
    group.stop_restart()
    for _ in range(2):  # for those running (one of the places may be between a process and the next)
        tokens.put("last")
    group.join(60)
    last = []
    while not done.empty():
        last.append(done.get(timeout=60))
    r["restarting"] = {
        "first": first,
        "taken": sorted(t for t, _ in taken),
        "takers": sorted(p for _, p in taken),
        "during": during,
        "last": sorted(p for _, p in last),
        "exit_status": group.exit_status,
        "error": group.in_error_state,
    }
    group.close()


def stopping(r: dict[str, Any]) -> None:
    q = Queue()
    group = ProcessGroup()
    group.add_process(2, ProcessTemplate(deaf, (q,)))
    group.add_process(1, ProcessTemplate(sleeps_after_saying, (q,), stderr=os.devnull))
    group.start()
    gather(q, 3)
    t0 = time.monotonic()
    group.stop(patience=0.5)
    r["stopping"] = {
        "seconds": time.monotonic() - t0,
        "exit_status": sorted(c for _, c in group.exit_status),
        "puids": group.puids,
        "join": outcome(group.join),
        "error": group.in_error_state,
        "bad_patience": outcome(lambda: group.stop(patience=-1)),
    }
    group.close()

    signalled = ProcessGroup()
    signalled.add_process(2, ProcessTemplate(on_usr1_exits_7, (q,)))
    signalled.start()
    gather(q, 2)
    r["signalled"] = [
        outcome(lambda: signalled.send_signal(signal.SIGUSR1)),
        outcome(lambda: signalled.join(60)),  # handled, then exited 7: failed on their own
        sorted(c for _, c in signalled.exit_status),
        outcome(lambda: signalled.send_signal(12345)),
    ]
    signalled.close()
    killed = ProcessGroup()
    killed.add_process(2, ProcessTemplate(sleeps_after_saying, (q,)))
    killed.start()
    gather(q, 2)
    killed.send_signal(signal.SIGUSR1)  # not handled: it kills them, the group's doing
    r["killed_by_signal"] = [outcome(lambda: killed.join(60)), sorted(c for _, c in killed.exit_status)]
    killed.close()

    for how in ("terminate", "kill"):
        group = ProcessGroup(restart=True)
        group.add_process(2, ProcessTemplate(sleeps_after_saying, (q,), stderr=os.devnull))
        group.start()
        gather(q, 2)
        getattr(group, how)(hide_stderr=True)
        r[how] = [outcome(lambda g=group: g.join(60)), sorted(c for _, c in group.exit_status)]  # type: ignore[misc]
        group.close()


def timing_out(r: dict[str, Any]) -> None:
    q = Queue()
    group = ProcessGroup(walltime=1.0)
    group.add_process(2, ProcessTemplate(sleeps_after_saying, (q,), stderr=os.devnull))
    t0 = time.monotonic()
    group.start()
    gather(q, 2)
    joined = outcome(lambda: group.join(60))
    r["walltime"] = [joined, time.monotonic() - t0, len(group.exit_status), group.in_error_state]
    group.close()

    group = ProcessGroup()
    group.add_process(1, ProcessTemplate(sleeps))
    group.start()
    t0 = time.monotonic()
    timeout = outcome(lambda: group.join(0.3))
    try:
        group.join(0)
    except TimeoutError:
        is_timeout_error = True
    r["join_timeout"] = [timeout[0], time.monotonic() - t0, is_timeout_error, len(group.puids)]
    with_block: list[Any] = []
    try:
        with group:
            raise RuntimeError("leaving the block")
    except RuntimeError:
        with_block = [repr(group), sorted(c for _, c in group.exit_status)]
    r["with_block"] = with_block


def left_running(r: dict[str, Any]) -> None:
    q = Queue()
    child = Process(leaves_group, (q,))
    child.start()
    members = sorted(q.get(timeout=60))
    child_code = child.join(60)
    r["left_running"] = [child_code, [Process.from_puid(p).join(30) for p in members]]


def restart_fails(r: dict[str, Any]) -> None:
    """A restarting group whose working directory goes away: the restart fails, the group stops and
    join() says why."""
    os.mkdir("gone")
    group = ProcessGroup(restart=True)
    group.add_process(1, ProcessTemplate("true", cwd="gone"))
    group.start()
    os.rmdir("gone")
    deadline = time.monotonic() + 60
    while not group.in_error_state and time.monotonic() < deadline:
        time.sleep(0.005)
    failed = outcome(lambda: group.join(60))
    r["restart_fails"] = [group.in_error_state, failed, {c for _, c in group.exit_status} == {0}]
    group.close()


def misuse(r: dict[str, Any]) -> None:
    group = ProcessGroup()
    tmpl = ProcessTemplate(sleeps)
    r["misuse"] = {
        "join_new": outcome(group.join),
        "signal_new": outcome(lambda: group.send_signal(signal.SIGTERM)),
        "start_empty": outcome(group.start),
        "pickle": outcome(lambda: pickle.dumps(group)),
        "pmi": outcome(lambda: ProcessGroup(pmi="pmix")),
        "critical": outcome(lambda: ProcessGroup(critical=True)),
        "walltime": outcome(lambda: ProcessGroup(walltime=-1)),
        "nproc": outcome(lambda: group.add_process(0, tmpl)),
        "template": outcome(lambda: group.add_process(1, sleeps)),  # type: ignore[arg-type]
        "named": outcome(lambda: group.add_process(2, ProcessTemplate(sleeps, name="only-one"))),
    }
    group.add_process(1, tmpl)
    group.start()
    r["misuse"]["init_running"] = outcome(group.init)
    r["misuse"]["start_running"] = outcome(group.start)
    r["misuse"]["add_running"] = outcome(lambda: group.add_process(1, tmpl))
    group.stop(patience=2)
    group.close()

    q = Queue()
    broken = ProcessGroup()
    broken.add_process(2, ProcessTemplate(sleeps_after_saying, (q,), stderr=os.devnull))
    broken.add_process(1, ProcessTemplate("/nonexistent/program"))
    failed = outcome(broken.start)
    r["start_failed"] = [failed, sorted(c for _, c in broken.exit_status), broken.puids]
    try:
        broken.start()
    except Exception as exc:
        r["start_failed"].append(type(exc.__cause__).__name__)
    broken.close()

    named = ProcessGroup(restart=True, ignore_error_on_exit=True)
    named.add_process(1, ProcessTemplate(sleeps, name="group-named"))
    named.start()
    first = named.puids
    Process.from_name("group-named").kill()
    for _ in range(6000):  # the group puts a new process in its place, under the same name
        if named.puids not in ([], first):
            break
        time.sleep(0.005)
    r["named_restart"] = [first, named.puids, Process.from_name("group-named").p_uid]
    named.close()


def placement(r: dict[str, Any]) -> None:
    q = Queue()
    group = ProcessGroup(policy=Policy(cpus=[0]))
    group.add_process(1, ProcessTemplate(report_in, (q, "group")))
    group.add_process(1, ProcessTemplate(report_in, (q, "own"), policy=Policy(cpus=[1])))
    with Policy(cpus=[1]):
        group.start()
    r["placement"] = sorted([tag, cpus] for tag, _, cpus in gather(q, 2))
    group.join(60)
    group.close()


SCENARIOS = (basic, failing, restarting, stopping, timing_out, left_running, restart_fails, misuse, placement)

if __name__ == "__main__":
    report: dict[str, Any] = {}
    chosen = sys.argv[1:] or [f.__name__ for f in SCENARIOS]
    for scenario in SCENARIOS:
        if scenario.__name__ in chosen:
            scenario(report)
    print(json.dumps(report))
