"""What another user on the machine, or a careless one, must not be able to do to a runtime (issue 13).

The "other user" owns files here by uid (the suite runs as root in CI, so it can make files of any
uid: 65534, "nobody", as elsewhere); tests that need a non-root victim run it under a user the test
makes and removes. Runtimes use a private runtime root (XDG_RUNTIME_DIR under tmp_path), so nothing
here touches another session's runtimes.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dragon.ids import FIRST_GS_CUID
from dragon.transport import SHM_DIR, entries, run_prefix

from e2e_util import DRAGON, program
from test_status import dragon, private_env

MP_PROGRAMS = Path(__file__).resolve().with_name("mp_programs")
OTHER_UID = 65534  # "nobody": another user of the machine
FD_RUN_BOUND_S = 120.0  # the run with hundreds of channels and processes ends (it used to take 10 s more)
CORRUPTION_BOUND_S = 10.0  # a corrupt service channel: the run ends well within this (a bound, not a benchmark)
OLD = time.time() - 3600  # an hour ago: what cleanup would count as a crashed run's leftovers


def _old_tree(top: Path) -> list[Path]:
    """A few directories of files, aged an hour, as a user's data would be; returns the files."""
    files = []
    for name in ("photos", "0badc0de", "deadbeef"):  # two of them named like run ids
        (top / name).mkdir(parents=True)
        f = top / name / "keep.txt"
        f.write_text("precious")
        files.append(f)
        os.utime(top / name, (OLD, OLD))
    return files


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to make files of another uid")
def test_runtime_root_of_another_user_or_a_symlink_is_refused_and_cleanup_deletes_nothing(tmp_path: Path) -> None:
    """13.1: another user makes the runtime root first: as a symlink to a directory of the victim's,
    or as their own directory. Nothing runs there, and `dragon cleanup` removes nothing there."""
    mine = tmp_path / "mine"
    files = _old_tree(mine)
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    env = private_env(xdg)
    (xdg / "dragon").symlink_to(mine)
    os.lchown(xdg / "dragon", OTHER_UID, OTHER_UID)

    run = dragon(env, program("hello.py"))
    assert run.returncode == 1 and run.stdout == ""
    assert "dragon: error:" in run.stderr and "symbolic link" in run.stderr, run.stderr
    clean = dragon(env, "cleanup")
    assert clean.returncode == 1, clean.stdout + clean.stderr
    assert "symbolic link" in clean.stderr and "removed" not in clean.stdout, clean.stdout
    status = dragon(env, "status")
    assert status.returncode == 1 and "symbolic link" in status.stderr, status.stderr
    assert all(f.read_text() == "precious" for f in files)

    (xdg / "dragon").unlink()
    (xdg / "dragon").mkdir(mode=0o777)
    os.chown(xdg / "dragon", OTHER_UID, OTHER_UID)
    run = dragon(env, program("hello.py"))
    assert run.returncode == 1 and f"belongs to uid {OTHER_UID}" in run.stderr, run.stderr
    assert dragon(env, "cleanup").returncode == 1


def test_cleanup_removes_only_what_is_provably_a_run_directory(tmp_path: Path) -> None:
    """13.1: in our own root, old directories that are not run directories (named otherwise, holding
    other files, a symlink to elsewhere) are left and named; a crashed run's directory goes."""
    xdg = tmp_path / "xdg"
    root = xdg / "dragon"
    root.mkdir(parents=True, mode=0o755)
    env = private_env(xdg)
    files = _old_tree(root)
    elsewhere = tmp_path / "elsewhere"
    data = _old_tree(elsewhere)
    (root / "12345678").symlink_to(elsewhere / "photos")
    crashed = root / "abcdef01"
    crashed.mkdir(mode=0o700)
    (crashed / "runtime.json").write_text("{}")
    os.utime(crashed, (OLD, OLD))

    clean = dragon(env, "cleanup")
    assert clean.returncode == 0, clean.stderr
    assert not crashed.exists()
    assert f"removed runtime directory {crashed}" in clean.stdout, clean.stdout
    assert all(f.read_text() == "precious" for f in files + data)
    assert "0badc0de" in clean.stderr and "keep.txt" in clean.stderr, clean.stderr  # said, and left
    assert stat.S_IMODE(root.stat().st_mode) == 0o700  # ours, narrowed
    hello = dragon(env, program("hello.py"))
    assert (hello.returncode, hello.stdout) == (0, "hello\n"), hello.stderr


MP_CHILD = """\
import multiprocessing as mp
import dragon

def hello():
    print("child")

if __name__ == "__main__":
    mp.set_start_method("dragon")
    p = mp.Process(target=hello)
    p.start()
    p.join()
"""


def test_debug_log_is_private_and_names_environment_variables_only(tmp_path: Path) -> None:
    """13.4: the log is 0600, never written through a symlink, and holds variable names, not values."""
    env = private_env(tmp_path / "xdg")
    env["SECRET_TOKEN"] = "hunter2-do-not-log"
    prog = tmp_path / "mp_child.py"
    prog.write_text(MP_CHILD)
    log = tmp_path / "run.log"
    run = dragon(env, "-l", "DEBUG", "--log-file", str(log), str(prog))
    assert (run.returncode, run.stdout) == (0, "child\n"), run.stderr
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    text = log.read_text()
    assert "SECRET_TOKEN" in text and "hunter2-do-not-log" not in text
    shown = tmp_path / "shown.log"
    run = dragon({**env, "DRAGON_LOG_ENV_VALUES": "1"}, "-l", "DEBUG", "--log-file", str(shown), str(prog))
    assert run.returncode == 0 and "hunter2-do-not-log" in shown.read_text()  # when asked for

    target = tmp_path / "target"
    (tmp_path / "link.log").symlink_to(target)
    run = dragon(env, "-l", "DEBUG", "--log-file", str(tmp_path / "link.log"), program("hello.py"))
    assert run.returncode == 2 and "symbolic link" in run.stderr, run.stderr
    assert not target.exists()

    wide = tmp_path / "wide.log"
    wide.write_text("")
    wide.chmod(0o644)
    assert dragon(env, "-l", "INFO", "--log-file", str(wide), program("hello.py")).returncode == 0
    assert stat.S_IMODE(wide.stat().st_mode) == 0o600
    run = dragon(env, "-l", "INFO", "--log-file", str(tmp_path / "no" / "such" / "dir.log"), program("hello.py"))
    assert run.returncode == 2 and run.stderr.startswith("dragon: error: cannot write the log file"), run.stderr
    assert "Traceback" not in run.stderr


SQUATTED_HEAD = """\
import multiprocessing as mp, os, sys
import dragon
from dragon.native import Channel

if __name__ == "__main__":
    mp.set_start_method("dragon")
    print("READY", os.environ["DRAGON_RUN_ID"], flush=True)
    sys.stdin.readline()
    q = mp.Queue()
    big = os.urandom(4 << 20)  # larger than the ring: travels in a side file
    q.put(big)
    assert q.get(timeout=30) == big
    sq = mp.SimpleQueue()
    sq.put("simple")
    assert sq.get() == "simple"
    ch = Channel.create(name="mine")
    ch.send(b"native")
    assert ch.recv() == b"native"
    ch.destroy()
    print("OK", flush=True)
"""


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to make files of another uid")
def test_entries_another_user_makes_first_block_nothing_and_are_left_alone(tmp_path: Path) -> None:
    """13.3: another user sees the run in /dev/shm and makes the names it would use next (world-writable
    FIFOs and files of the run's prefix). The run's queues and channels still work, teardown ends
    normally and leaves their entries alone (a non-root runtime could not remove them)."""
    head = tmp_path / "head.py"
    head.write_text(SQUATTED_HEAD)
    proc = subprocess.Popen(
        [DRAGON, str(head)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=private_env(tmp_path / "xdg"),
        text=True,
    )
    squatted: list[str] = []
    try:
        assert proc.stdout is not None and proc.stdin is not None
        ready = proc.stdout.readline().split()
        assert ready[:1] == ["READY"], proc.stderr.read() if proc.stderr else ""
        prefix = run_prefix(ready[1])
        names = [f"{prefix}c{FIRST_GS_CUID + n}" for n in range(40)] + [f"{prefix}squat", f"{prefix}m0"]
        for name in names:
            for entry in (name, name + ".rbell", name + ".sbell", name + ".x1.0"):
                path = os.path.join(SHM_DIR, entry)
                try:
                    os.mkfifo(path, 0o666)
                except FileExistsError:
                    continue
                os.chmod(path, 0o666)
                os.lchown(path, OTHER_UID, OTHER_UID)
                squatted.append(entry)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out == "OK\n", err
        left = entries(prefix)
        assert sorted(left) == sorted(squatted), "teardown removed another user's entries, or left its own"
        assert all(os.lstat(os.path.join(SHM_DIR, e)).st_uid == OTHER_UID for e in left)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for entry in squatted:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(SHM_DIR, entry))


NON_UTF8_PROGRAM = """\
import multiprocessing as mp, os, sys
import dragon

def child(arg):
    print("child", ascii(arg), ascii(os.environ.get("WEIRD")), ascii(os.getcwd()), flush=True)

if __name__ == "__main__":
    print(ascii([os.path.basename(a) for a in sys.argv[:2]]), ascii(os.getcwd()), ascii(os.environ.get("WEIRD")),
          flush=True)
    ctx = mp.get_context(sys.argv[2])
    p = ctx.Process(target=child, args=(sys.argv[1],))
    p.start()
    p.join()
"""


def test_bytes_that_are_not_utf8_in_argv_cwd_environment_and_script_name(tmp_path: Path) -> None:
    """13.5: what plain python runs, dragon runs: the bytes reach the head and its children unchanged."""
    work = os.path.join(os.fsencode(tmp_path), b"dir\xfe")
    os.mkdir(work)
    script = os.path.join(work, b"caf\xe9.py")
    with open(script, "w") as f:
        f.write(NON_UTF8_PROGRAM)
    env = {os.fsencode(k): os.fsencode(v) for k, v in private_env(tmp_path / "xdg").items()}
    env[b"WEIRD"] = b"v\xff"
    expected = subprocess.run(
        [sys.executable, script, b"a\xff", b"spawn"], cwd=work, env=env, capture_output=True, timeout=60
    )
    assert expected.returncode == 0, expected.stderr
    assert b"\\udcff" in expected.stdout  # the argument arrived as Python shows undecodable bytes
    for argv in ([DRAGON, script, b"a\xff", b"dragon"], [sys.executable, script, b"a\xff", b"dragon"]):
        got = subprocess.run(argv, cwd=work, env=env, capture_output=True, timeout=60)
        assert got.returncode == 0, got.stderr
        assert got.stdout == expected.stdout, (got.stdout, expected.stdout)


def test_an_empty_program_name_is_refused_clearly(tmp_path: Path) -> None:
    """13.11: `dragon ''` says what python says of it, not that it cannot open the working directory."""
    run = dragon(private_env(tmp_path / "xdg"), "")
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("dragon: error:") and "''" in run.stderr, run.stderr
    assert str(tmp_path) not in run.stderr


@pytest.mark.parametrize("how", ["spawn", "dragon", "background"])
def test_one_ctrl_c_reaches_the_workers_as_under_spawn(how: str, tmp_path: Path) -> None:
    """13.7: a terminal's Ctrl-C is SIGINT to the program's foreground process group: the head and
    its workers (spawn), the `dragon` launcher (which passes it on to the runtime's processes), or
    the program and its background runtime's launcher. One Ctrl-C ends workers that loop forever."""
    prog = str(MP_PROGRAMS / "interrupted_workers.py")
    argv = {
        "spawn": [sys.executable, prog, "spawn"],
        "dragon": [DRAGON, prog, "dragon"],
        "background": [sys.executable, prog, "dragon"],
    }[how]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=private_env(tmp_path / "xdg"),
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does: the whole foreground group
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, err
    assert sorted(out.splitlines()) == sorted(["main interrupted"] + [f"worker {i} interrupted" for i in range(3)])


ESCAPING_HEAD = """\
import os, subprocess, sys, time
free = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
daemon = subprocess.run([sys.executable, "-c",
    "import os, sys, subprocess; os.setsid(); "
    "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True, "
    "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
    "print(p.pid)"], capture_output=True, text=True)
print(free.pid, daemon.stdout.strip(), flush=True)
"""


def test_processes_that_leave_the_run_s_session_do_not_outlive_it(tmp_path: Path) -> None:
    """13.6: a child of the head in a session of its own, and a daemon whose parent has exited
    (re-parented to Local Services, a subreaper), are stopped at teardown: nothing outlives a run."""
    head = tmp_path / "head.py"
    head.write_text(ESCAPING_HEAD)
    run = dragon(private_env(tmp_path / "xdg"), str(head))
    assert run.returncode == 0, run.stderr
    pids = [int(p) for p in run.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:  # bounded poll: reaped by now
        time.sleep(0.02)
    assert not any(_alive(p) for p in pids), f"still running after the run: {[p for p in pids if _alive(p)]}"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat_line = f.read()
    except OSError:
        return False
    return stat_line[stat_line.rindex(b")") + 2 :][:1] not in (b"Z", b"X")


CORRUPTING_HEAD = """\
import mmap, os, struct, sys, time
from dragon import _rundir
from dragon.transport import open_own

info = _rundir.read_info(os.environ["DRAGON_RUN_ID"])
name = info.gs_cd if sys.argv[1] == "gs" else info.la_cd
fd = open_own(name)
mm = mmap.mmap(fd, os.fstat(fd).st_size)
words = memoryview(mm)[:4096].cast("Q")
ring, head = words[4], words[8]
struct.pack_into("<Q", mm, 4096 + head % ring, 1 << 40)  # a record far longer than the ring
words[8] = head + 16  # published
os.write(open_own(name + ".rbell", os.O_RDWR | os.O_NONBLOCK), b"\\0")  # wake its receiver
time.sleep(60)
"""


@pytest.mark.parametrize("target", ["gs", "la"])
def test_a_record_written_into_a_service_channel_by_hand_ends_the_run_with_one_line(
    target: str, tmp_path: Path
) -> None:
    """13.10: same-user corruption of Global Services' or the launcher's channel: one bounded error
    line, and a prompt, orderly end (it used to print 8 MB, or take 18 s)."""
    head = tmp_path / "corrupt.py"
    head.write_text(CORRUPTING_HEAD)
    start = time.monotonic()
    run = dragon(private_env(tmp_path / "xdg"), str(head), target)
    took = time.monotonic() - start
    assert run.returncode == 1, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and len(run.stderr) < 1000, run.stderr[:3000]
    assert lines[0].startswith("dragon: error:") and "is corrupt" in lines[0], lines[0]
    assert took < CORRUPTION_BOUND_S, f"the run took {took:.1f} s to end"


HANDLES_SIGTERM = """\
import signal, sys, time
def stop(signum, frame):
    print("stopping", flush=True)
    sys.exit(7)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
time.sleep(60)
"""


def test_sigterm_to_dragon_ends_with_the_head_s_own_status_when_it_handles_it(tmp_path: Path) -> None:
    """13.11: as `kill` reaches `python my.py`, SIGTERM to dragon reaches the head; a head that handles
    it and exits with its own status makes dragon exit with that status (it used to be 143)."""
    head = tmp_path / "term.py"
    head.write_text(HANDLES_SIGTERM)
    proc = subprocess.Popen(
        [DRAGON, str(head)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=private_env(tmp_path / "xdg"),
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert (proc.returncode, out) == (7, "stopping\n"), err


FD_HEAVY_HEAD = """\
import sys
from dragon.errors import ProcessStartFailed
from dragon.native import Channel, Process

for _ in range(int(sys.argv[1])):
    with Channel.create(capacity=1, block_size=256):
        pass  # this process lets go of it; the channel lives on in the runtime
print("channels ok", flush=True)
procs = []
try:
    for _ in range(1000):
        p = Process(sys.executable, ["-c", "import sys; sys.stdin.read()"])
        p.start()
        procs.append(p)
except ProcessStartFailed as exc:
    print("refused:", exc, flush=True)
for p in procs:
    p.kill()
    p.join()
"""
FD_LIMIT = 256


def test_file_descriptors_of_local_services_last_and_their_end_is_said(tmp_path: Path) -> None:
    """13.9: Local Services holds no descriptor per channel (it used to hold two, and ran out at about
    6,655 channels); processes, which need a few each, end with a clear error, and the run ends well."""
    head = tmp_path / "fds.py"
    head.write_text(FD_HEAVY_HEAD)

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))

    start = time.monotonic()
    run = subprocess.run(
        [DRAGON, str(head), str(2 * FD_LIMIT)],
        env=private_env(tmp_path / "xdg"),
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=low_limit,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert lines[0] == "channels ok", run.stdout + run.stderr
    assert lines[1].startswith("refused:") and "no file descriptors left" in lines[1] and "ulimit -n" in lines[1], lines
    assert time.monotonic() - start < FD_RUN_BOUND_S


FILLING_HEAD = """\
import multiprocessing as mp, os, sys
import dragon
from dragon.errors import ChannelCreateFailed, NoSharedMemory

def free():
    st = os.statvfs("/dev/shm")
    return st.f_bavail * st.f_frsize

if __name__ == "__main__":
    mp.set_start_method("dragon")
    q = mp.Queue()
    q.put("before")
    assert q.get(timeout=30) == "before"
    with open("/dev/shm/filler", "wb") as f:  # another user fills /dev/shm: 512 KiB are left
        f.write(b"\\0" * (free() - 512 * 1024))
    try:
        mp.Queue()
    except ChannelCreateFailed as exc:
        print("new queue:", type(exc).__name__, "|", exc, flush=True)
    try:
        q.put(b"x" * (4 << 20))  # larger than the ring: a side file, which does not fit
    except NoSharedMemory as exc:
        print("big put:", type(exc).__name__, "|", exc, flush=True)
    os.unlink("/dev/shm/filler")
    q.put(b"y" * (4 << 20))
    assert q.get(timeout=30) == b"y" * (4 << 20)
    print("after: ok", flush=True)
"""


def _in_small_shm(size: str, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`argv` in a mount namespace of its own whose /dev/shm is a tmpfs of `size` (a full /dev/shm
    without filling the machine's)."""
    script = f'mount -t tmpfs -o size={size},mode=1777 tmpfs /dev/shm && exec "$@"'
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to mount a small /dev/shm in a mount namespace")
def test_a_full_dev_shm_is_a_clear_error_where_memory_was_asked_for(tmp_path: Path) -> None:
    """13.2 and 13.8: when /dev/shm is (or becomes) full, nothing dies of SIGBUS: bringup says what it
    needs and what there is; a new queue and a large put raise in the caller, with the sizes; the
    program goes on once there is room again."""
    env = private_env(tmp_path / "xdg")
    small = _in_small_shm("2m", [DRAGON, program("hello.py")], env)
    assert small.returncode == 1 and small.stdout == "", small.stderr
    assert "not enough shared memory" in small.stderr and "/dev/shm has" in small.stderr, small.stderr
    assert len(small.stderr.splitlines()) == 1, small.stderr

    head = tmp_path / "fill.py"
    head.write_text(FILLING_HEAD)
    run = _in_small_shm("24m", [DRAGON, str(head)], env)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert len(lines) == 3, run.stdout + run.stderr
    assert lines[0].startswith("new queue: ChannelCreateFailed |") and "not enough shared memory" in lines[0]
    assert lines[1].startswith("big put: NoSharedMemory |") and "4.0 MiB needed" in lines[1], lines[1]
    assert lines[2] == "after: ok"
