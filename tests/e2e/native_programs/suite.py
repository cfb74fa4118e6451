"""Every operation and every error of dragon.native, run in one managed process; results to a JSON file.

Usage: suite.py ROLE WORKDIR. ROLE "head" runs the suite, then starts this program as "child", which
starts it as "grandchild", which runs the suite too. Each run writes WORKDIR/result_<ROLE>.json.
"""

import json
import os
import pickle
import signal
import sys
from collections.abc import Callable
from typing import Any

from dragon import errors
from dragon.native import DEVNULL, STDOUT, Channel, Pool, Process, current, current_puid, parent_puid

ROLE, WORKDIR = sys.argv[1], sys.argv[2]
PY = sys.executable


def error_of(fn: Callable[[], object]) -> str:
    """The name of the exception `fn` raises, "none" if it returns."""
    try:
        fn()
    except Exception as exc:  # the test checks which one
        return type(exc).__name__
    return "none"


def processes() -> dict[str, Any]:
    r: dict[str, Any] = {}
    me = current()
    r["me"] = me.p_uid
    r["me_env"] = int(os.environ["DRAGON_MY_PUID"])
    r["current_puid"] = current_puid()
    r["parent_puid"] = parent_puid()
    parent = me.parent()
    r["parent"] = None if parent is None else parent.p_uid
    r["me_pid"] = me.pid == os.getpid()
    r["me_alive"] = me.is_alive

    quick = Process(PY, ["-c", "import sys; sys.exit(3)"])
    r["before_start"] = [quick.p_uid, quick.pid, quick.returncode, quick.is_alive]
    quick.start()
    r["quick_join"] = quick.join()
    r["quick_returncode"] = quick.returncode
    r["quick_alive"] = quick.is_alive
    r["quick_default_name"] = quick.name == f"dragon_process_{quick.p_uid}"
    r["quick_pid"] = isinstance(quick.pid, int) and quick.pid > 0
    r["kill_dead"] = error_of(quick.kill)  # a process that has exited is left alone

    sleeper = Process("sleep", ["30"], name=f"sleeper-{ROLE}", stdin=DEVNULL)
    sleeper.start()
    assert sleeper.p_uid is not None
    r["join_timeout"] = sleeper.join(0.1)
    r["join_poll"] = sleeper.join(0)
    r["sleeper_alive"] = sleeper.is_alive
    r["sleeper_returncode"] = sleeper.returncode
    r["from_name"] = Process.from_name(f"sleeper-{ROLE}").p_uid == sleeper.p_uid
    r["from_puid"] = Process.from_puid(sleeper.p_uid).name
    r["sleeper_parent"] = sleeper.parent().p_uid  # type: ignore[union-attr]
    r["children"] = [c.p_uid for c in me.children()] == [sleeper.p_uid]
    r["in_list"] = sleeper.p_uid in Process.list() and me.p_uid in Process.list()
    r["pickled"] = pickle.loads(pickle.dumps(sleeper)).p_uid == sleeper.p_uid
    try:
        Process("sleep", ["1"], name=f"sleeper-{ROLE}").start()
        r["name_in_use"] = "none"
    except errors.ProcessNameInUse as exc:
        r["name_in_use"] = [type(exc).__name__, exc.uid == sleeper.p_uid, isinstance(exc, errors.NameInUse)]
    r["bad_signal"] = error_of(lambda: sleeper.send_signal(999))
    sleeper.terminate()
    r["terminated"] = sleeper.join()
    r["terminated_alive"] = sleeper.is_alive
    r["name_free_after_death"] = error_of(lambda: Process("true", name=f"sleeper-{ROLE}").start())

    sig = Process("sleep", ["30"])
    sig.start()
    sig.send_signal(signal.SIGINT)
    r["sigint"] = sig.join(10)

    out = os.path.join(WORKDIR, f"out_{ROLE}.txt")
    env_proc = Process(
        PY,
        [
            "-c",
            "import os, sys; print(os.environ['NATIVE_X'], os.getcwd(), "
            "os.environ['DRAGON_MY_PUID'] != os.environ.get('PARENT_ME')); "
            "print('err', file=sys.stderr)",
        ],
        env={"NATIVE_X": "x-value", "PARENT_ME": os.environ["DRAGON_MY_PUID"]},
        cwd="/",
        stdout=out,
        stderr=STDOUT,
    )
    env_proc.start()
    r["env_proc"] = env_proc.join()
    with open(out) as f:
        r["env_proc_out"] = f.read()

    r["start_failed"] = error_of(lambda: Process("/nonexistent/program").start())
    r["unknown_puid"] = error_of(lambda: Process.from_puid(12345))
    r["unknown_name"] = error_of(lambda: Process.from_name("no-such-process"))
    r["join_self"] = error_of(me.join)
    r["bad_target"] = error_of(lambda: Process(123))  # type: ignore[arg-type]
    r["bad_stdio"] = error_of(lambda: Process("true", stdin=-2))  # STDOUT is for stderr only
    r["join_unstarted"] = error_of(Process("true").join)
    r["start_twice"] = error_of(quick.start)
    return r


def channels() -> dict[str, Any]:
    r: dict[str, Any] = {}
    ch = Channel.create()
    r["c_uid_range"] = ch.c_uid >= 2**63
    r["default_name"] = ch.name == f"dragon_channel_{ch.c_uid}"
    ch.send({"a": [1, 2]})
    ch.send_bytes(b"raw")
    r["objects"] = [ch.recv(), ch.recv_bytes().decode()]
    r["recv_timeout"] = error_of(lambda: ch.recv(timeout=0.05))
    ch.send_bytes(b"x" * 3_000_000)  # larger than the ring: travels in a side file
    r["big"] = len(ch.recv_bytes())
    ch.destroy()

    small = Channel.create(capacity=2, block_size=256)
    small.send(1)
    small.send(2)
    r["send_timeout"] = error_of(lambda: small.send(3, timeout=0.05))
    r["depth"] = small.statistics().depth
    small.destroy()

    name = f"chan-{ROLE}"
    named = Channel.create(name=name, capacity=10)
    by_name = Channel.attach(name=name)
    by_cuid = Channel.attach(named.c_uid)
    soft = Channel.create(name=name, soft=True)
    waited = Channel.wait_created(name, timeout=1)
    unpickled = pickle.loads(pickle.dumps(named))
    by_name.send("via name")
    r["attach"] = [
        by_cuid.recv(),
        soft.c_uid == named.c_uid,
        waited.c_uid == named.c_uid,
        unpickled.c_uid == named.c_uid,
        named.c_uid in Channel.list(),
    ]
    r["name_in_use"] = error_of(lambda: Channel.create(name=name))
    r["wait_timeout"] = error_of(lambda: Channel.wait_created(f"never-{ROLE}", timeout=0.1))
    r["unknown_name"] = error_of(lambda: Channel.attach(name="no-such-channel"))
    r["unknown_cuid"] = error_of(lambda: Channel.attach(12345))
    r["attach_neither"] = error_of(Channel.attach)
    r["bad_capacity"] = error_of(lambda: Channel.create(capacity=0))
    r["bad_block"] = error_of(lambda: Channel.create(block_size=8))
    r["soft_no_name"] = error_of(lambda: Channel.create(soft=True))
    r["unknown_pool"] = error_of(lambda: Channel.create(m_uid=2**63 + 999_999))
    named.destroy()
    r["send_after_destroy"] = error_of(lambda: by_name.send("late"))
    r["destroy_twice"] = error_of(by_cuid.destroy)
    r["attach_destroyed"] = error_of(lambda: Channel.attach(name=name))
    r["wait_destroyed"] = error_of(lambda: Channel.wait_created(name, timeout=1))
    for h in (by_name, soft, waited, unpickled):
        h.close()
    r["is_channel_error"] = issubclass(errors.UnknownChannel, errors.ChannelError)
    return r


def pools() -> dict[str, Any]:
    r: dict[str, Any] = {}
    pool = Pool.create(1 << 20)
    r["m_uid_range"] = pool.m_uid >= 2**63
    r["default_name"] = pool.name == f"D{pool.m_uid}"
    r["size"] = pool.statistics().size_bytes
    a = pool.memory().alloc(1000)
    r["allocations"] = pool.statistics().allocations
    pool.memory().free(a)
    pool.destroy()

    name = f"pool-{ROLE}"
    named = Pool.create(1 << 16, name=name)
    r["attach"] = [
        Pool.attach(name=name).m_uid == named.m_uid,
        Pool.attach(named.m_uid).name == name,
        Pool.create(1 << 16, name=name, soft=True).m_uid == named.m_uid,
        pickle.loads(pickle.dumps(named)).m_uid == named.m_uid,
        named.m_uid in Pool.list(),
    ]
    r["name_in_use"] = error_of(lambda: Pool.create(1 << 16, name=name))
    r["unknown_name"] = error_of(lambda: Pool.attach(name="no-such-pool"))
    r["unknown_muid"] = error_of(lambda: Pool.attach(12345))
    r["too_small"] = error_of(lambda: Pool.create(16))
    r["bad_size"] = error_of(lambda: Pool.create(0))
    r["chan_in_pool"] = error_of(lambda: Channel.create(m_uid=named.m_uid).destroy())
    named.destroy()
    r["destroy_twice"] = error_of(named.destroy)
    r["attach_destroyed"] = error_of(lambda: Pool.attach(name=name))
    r["chan_in_dead_pool"] = error_of(lambda: Channel.create(m_uid=named.m_uid))
    return r


def main() -> int:
    if ROLE == "child":  # only passes the suite on to its own child
        grandchild = Process(PY, [os.path.abspath(__file__), "grandchild", WORKDIR])
        grandchild.start()
        return grandchild.join() or 0
    result: dict[str, Any] = {"processes": processes(), "channels": channels(), "pools": pools()}
    result["trio_imported"] = "trio" in sys.modules
    with open(os.path.join(WORKDIR, f"result_{ROLE}.json"), "w") as f:
        json.dump(result, f)
    if ROLE == "head":
        child = Process(PY, [os.path.abspath(__file__), "child", WORKDIR])
        child.start()
        return child.join() or 0
    return 0


sys.exit(main())
