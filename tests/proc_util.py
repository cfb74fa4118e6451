"""Reading a test's processes from /proc (importable from every test directory: tests/ is on sys.path
because conftest.py lives there)."""

from __future__ import annotations

import os

from dragon import _runs


def children_of(ppid: int) -> list[int]:
    """The running (not zombie) children of `ppid`."""
    return [p.pid for p in _runs.all_processes() if p.ppid == ppid and p.running]


def forked_children(pid: int) -> list[int]:
    """The running children of `pid` that are forks of it (the same command line): Local Services'
    Global Services, not the `ldconfig -p` that its `import trio` runs first."""
    parent = _runs.read_proc(pid)
    if parent is None:
        return []
    return [p.pid for p in _runs.all_processes() if p.ppid == pid and p.running and p.cmdline == parent.cmdline]


def running(pid: int) -> bool:
    """True while `pid` runs; reaps it first if it has become our zombie (a test process is a
    subreaper: what a run leaves behind is reparented to it)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    info = _runs.read_proc(pid)
    return info is not None and info.running
