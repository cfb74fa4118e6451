"""The managed memory pool (transport/_pool.py) with real processes and real shared memory."""

from __future__ import annotations

import fcntl
import gc
import os
import select
import signal
import stat
import subprocess
import threading
import uuid
from collections.abc import Iterator

import pytest

from dragon.transport import Pool, PoolError, PoolExhausted
from dragon.transport._shm import create_segment, run_prefix, shm_path, unlink_quietly

MIB = 1024 * 1024
WAIT_S = 60.0  # guard against hangs only; never a performance assertion

# A worker that attaches by descriptor, waits for "go" on stdin, then allocates `count` times with
# random sizes and frees at random, stamping each payload with its tag and checking the stamp before
# freeing: an overlap with another process's allocation shows up as a wrong stamp.
CHURN = """
import random, sys
from dragon.transport import Pool

def churn(pool, tag, count):
    rng = random.Random(tag)
    live = []
    def release(a):
        with a.memoryview as view:
            assert bytes(view) == bytes([tag]) * a.size, f"allocation at {a.offset} overwritten"
        pool.free(a)
    for _ in range(count):
        while live and (len(live) > 40 or rng.random() < 0.5):
            release(live.pop(rng.randrange(len(live))))
        a = pool.alloc(rng.randint(1, 4096))
        with a.memoryview as view:
            view[:] = bytes([tag]) * a.size
        live.append(a)
    for a in live:
        release(a)
"""

CHURN_MAIN = (
    CHURN
    + """
pool = Pool.attach(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
churn(pool, int(sys.argv[2]), int(sys.argv[3]))
pool.close()
print("done", flush=True)
"""
)

# Both sides of a fork use the one inherited handle: only correct if the child stops sharing the
# parent's open file description (flock does not exclude holders of the same description).
CHURN_FORKED = (
    CHURN
    + """
import os, traceback
pool = Pool.attach(sys.argv[1])
pool.statistics()  # the handle is in use before the fork
pid = os.fork()
if pid == 0:
    try:
        churn(pool, 1, 2000)
        code = 0
    except BaseException:
        traceback.print_exc()
        code = 1
    os._exit(code)
churn(pool, 2, 2000)
_, status = os.waitpid(pid, 0)
assert status == 0, f"forked child failed: {status}"
print("done", flush=True)
"""
)


@pytest.fixture
def pool_name() -> str:
    """A fresh segment name under the leak-checked prefix."""
    return run_prefix("test-" + uuid.uuid4().hex[:12]) + "pool"


@pytest.fixture
def pool(pool_name: str) -> Iterator[Pool]:
    """A 4 MiB pool, destroyed after the test."""
    with Pool.create(pool_name, 4 * MIB) as p:
        yield p


def read_line(proc: subprocess.Popen[str], timeout_s: float = WAIT_S) -> str:
    """The next stdout line of `proc`, waiting at most `timeout_s` for it."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    assert ready, f"no output from child within {timeout_s} s"
    return proc.stdout.readline().strip()


def run_child(python: str, script: str, *args: str) -> str:
    """Run `script` in a new interpreter, assert it succeeded, return its stdout."""
    done = subprocess.run([python, "-c", script, *args], capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode == 0, done.stderr
    return done.stdout


def mapped(name: str) -> bool:
    """Whether this process still maps the segment `name`."""
    with open("/proc/self/maps") as maps:
        return shm_path(name) in maps.read()


def test_segment_is_owner_only_and_destroy_removes_it(pool_name: str) -> None:
    pool = Pool.create(pool_name, MIB)
    assert stat.S_IMODE(os.stat(shm_path(pool_name)).st_mode) == 0o600
    assert pool.descriptor == pool_name
    pool.destroy()
    assert not os.path.exists(shm_path(pool_name))
    with pytest.raises(PoolError, match="does not exist or was destroyed"):
        Pool.attach(pool_name)


def test_a_child_writes_what_the_parent_reads(pool: Pool, python: str) -> None:
    mine = pool.alloc(64)
    script = """
import sys
from dragon.transport import Pool
with Pool.attach(sys.argv[1]) as pool:
    a = pool.allocation_at(sys.argv[2])
    with a.memoryview as view:
        view[:] = b"p" * a.size
    b = pool.alloc(11)
    with b.memoryview as view:
        view[:] = b"from child!"
    print(b.serialize())
"""
    text = run_child(python, script, pool.descriptor, mine.serialize()).strip()
    theirs = pool.allocation_at(text)
    assert theirs.size == 11
    with theirs.memoryview as view:
        assert bytes(view) == b"from child!"
    with mine.memoryview as view:
        assert bytes(view) == b"p" * 64
    pool.free(theirs)
    pool.free(mine)
    assert pool.statistics().allocations == 0


def test_two_processes_churning_never_corrupt_the_heap(pool: Pool, python: str) -> None:
    initial = pool.statistics()
    procs = [
        subprocess.Popen(
            [python, "-c", CHURN_MAIN, pool.descriptor, str(tag), "2000"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for tag in (1, 2)
    ]
    try:
        for proc in procs:
            assert read_line(proc) == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            assert read_line(proc) == "done"
            assert proc.wait(timeout=WAIT_S) == 0
    finally:
        for proc in procs:
            proc.kill()
            proc.communicate(timeout=WAIT_S)
    pool.verify()
    assert pool.statistics() == initial


def test_a_forked_child_may_use_the_inherited_handle(pool: Pool, python: str) -> None:
    initial = pool.statistics()
    assert run_child(python, CHURN_FORKED, pool.descriptor).strip() == "done"
    pool.verify()
    assert pool.statistics() == initial


def test_threads_share_one_handle(pool: Pool) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(500):
                pool.free(pool.alloc(100))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    assert not errors
    pool.verify()
    assert pool.statistics().allocations == 0


def test_a_process_killed_holding_the_lock_does_not_wedge_the_pool(pool: Pool, python: str) -> None:
    script = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""
    path = shm_path(pool.descriptor)
    proc = subprocess.Popen([python, "-c", script, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    probe = os.open(path, os.O_RDWR)
    try:
        assert read_line(proc) == "locked"
        with pytest.raises(BlockingIOError):
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=WAIT_S) == -signal.SIGKILL
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the kernel dropped the dead holder's lock
        fcntl.flock(probe, fcntl.LOCK_UN)
    finally:
        os.close(probe)
        proc.kill()
        proc.communicate(timeout=WAIT_S)
    pool.free(pool.alloc(1000))
    assert pool.statistics().allocations == 0


def test_closed_handle_raises_and_close_is_idempotent(pool_name: str) -> None:
    owner = Pool.create(pool_name, MIB)
    other = Pool.attach(pool_name)
    a = other.alloc(10)
    other.close()
    other.close()
    for call in (
        lambda: other.alloc(1),
        lambda: other.free(a),
        lambda: other.statistics(),
        lambda: other.allocation_at(a.offset),
        lambda: a.memoryview,
        lambda: other.destroy(),
    ):
        with pytest.raises(PoolError, match="pool handle closed"):
            call()
    assert owner.statistics().allocations == 1  # closing a handle frees nothing
    owner.destroy()
    assert not mapped(pool_name)


def test_close_with_a_live_view_leaves_the_mapping_to_the_gc(pool_name: str) -> None:
    pool = Pool.create(pool_name, MIB)
    a = pool.alloc(10)
    view = a.memoryview
    view[:] = b"0123456789"
    pool.destroy()  # must not raise although the mapping cannot be unmapped yet
    assert mapped(pool_name)
    assert bytes(view) == b"0123456789"  # still valid memory, never a wild pointer
    with pytest.raises(PoolError, match="pool handle closed"):
        _ = a.memoryview
    view.release()
    gc.collect()
    assert not mapped(pool_name)


def test_context_manager_destroys_if_created_and_closes_if_attached(pool_name: str) -> None:
    with Pool.create(pool_name, MIB) as owner:
        with Pool.attach(owner.descriptor) as other:
            other.alloc(100)
        assert os.path.exists(shm_path(pool_name))
        assert owner.statistics().allocations == 1
    assert not os.path.exists(shm_path(pool_name))
    with Pool.create(pool_name, MIB) as owner:
        owner.destroy()  # an explicit destroy inside the block is fine
    assert not os.path.exists(shm_path(pool_name))


def test_misuse_raises_clear_errors(pool: Pool, pool_name: str) -> None:
    with pytest.raises(FileExistsError):
        Pool.create(pool_name, MIB)
    with pytest.raises(ValueError, match="does not name an allocation"):
        pool.allocation_at("elsewhere:4096")
    a = pool.alloc(10)
    pool.free(a)
    with pytest.raises(ValueError, match="not a live allocation"):
        pool.free(a)
    with pytest.raises(ValueError, match="not a live allocation"):
        pool.allocation_at(a.offset)
    with Pool.create(pool_name + "2", MIB) as other:
        foreign = other.alloc(10)
        with pytest.raises(ValueError, match=f"belongs to pool '{pool_name}2'"):
            pool.free(foreign)
    with pytest.raises(PoolExhausted, match="cannot allocate 8388608 bytes"):
        pool.alloc(8 * MIB)


def test_attach_rejects_a_segment_that_is_not_a_pool(pool_name: str) -> None:
    fd, mm = create_segment(pool_name, MIB)
    try:
        with pytest.raises(PoolError, match="not a heap"):
            Pool.attach(pool_name)
    finally:
        mm.close()
        os.close(fd)
        unlink_quietly(pool_name)
