"""The single-node multiprocessing tests parametrized by placement (issue 17): the same programs, their
processes on one node or spread over two, the standard library's semantics checked the same way.

* "1-node": `dragon PROG`, as the tests always ran.
* "2-nodes": `dragon --nodes 2 --wlm local apart.py PROG` over two *isolated* virtual nodes
  (netns.py: a network namespace and a private /dev/shm each; the `make_cluster` fixture of
  tests/conftest.py). The head runs on node 0 and every process it starts on node 1
  (mp_programs/apart.py), so each object the head makes has its users on the other node, whatever
  the program's order of starts: under the default placement (round robin from node 0) the first
  child of a program would share the head's node, and whether a part of a program crosses would
  depend on how many processes the parts before it started. Grandchildren take the default
  placement (both nodes). Isolated, not merely virtual: on virtual nodes that share this machine's
  /dev/shm a process of node 1 attaches a record of node 0 directly, which no real node can.

What does not cross nodes yet is listed once, in `DO_NOT_CROSS_YET`: a program there (or the sections
of it named there) runs over two nodes as a strict xfail that must raise the exception of its reason.
A run whose stderr shows the signature of one of `REASONS` (`ChannelOnAnotherNode` in a child's
traceback, or a child's refused fd hand-over) is ended at once (SIGTERM: the run tears down in
order) and raises it, instead of waiting out the program's own timeouts (the parent of a child that
died that way waits 30 to 60 s for its answer). When the objects cross, delete their entries: the
strict xfails fail (XPASS) until that is done. `Placement(n, apart=False)` runs a program with the
default placement instead (test_styles_across_nodes.py).

A program whose report has sections takes their names after its start method (`prog.py METHOD
NAME...` runs only those, `-NAME...` all but those: mp_programs/sections.py); a placement that runs a
part of it says which (`Placed.args`), and the test compares that part (`Placed.pick`).
"""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import pytest
import trio

from e2e_util import DRAGON, RUN_TIMEOUT_S, StreamReader, clean_env
from netns import VirtualCluster

APART: Final = str(Path(__file__).resolve().with_name("mp_programs") / "apart.py")
STOP_TIMEOUT_S: Final = 30.0
"""How long a run ended for a known reason may take to tear down before it is killed."""


class DoesNotCross(Exception):
    """A run over several nodes failed for a reason of `REASONS` (its stderr is the text)."""


class RecordsDoNotCross(DoesNotCross):
    """A process reached for a record (a lock, event, pipe ... made on another node): they do not
    cross nodes yet (issue 17)."""


class FdsDoNotCross(DoesNotCross):
    """A child on another node could not take the fds its parent handed over (a stdlib pipe pickled
    for it: ProcessPoolExecutor's, `multiprocessing.pool.Pool(context=...)`'s): fds never cross nodes."""


@dataclass(frozen=True)
class Reason:
    """Why something does not cross nodes yet: the xfail's reason, the exception a run raises, and the
    signature of the failure in the run's stderr."""

    text: str
    raises: type[DoesNotCross]
    signature: re.Pattern[bytes]


RECORDS: Final = Reason(
    "records do not cross nodes yet (issue 17)", RecordsDoNotCross, re.compile(rb"ChannelOnAnotherNode: ")
)
FDS: Final = Reason(
    "fds handed to a child do not cross nodes (issue 17 item 2)",
    FdsDoNotCross,
    # a clear FdOnAnotherNode (branch rec17), or the hand-over's connection refused before it
    re.compile(rb'FdOnAnotherNode: |dragon/mp/fds\.py", line \d+, in take\n.*\n(?:.*\n)*?ConnectionRefusedError'),
)
REASONS: Final = (RECORDS, FDS)
"""The reasons a run looks for in its stderr."""
WHOLE: Final = "*"
DO_NOT_CROSS_YET: Final[Mapping[str, Mapping[str, Reason]]] = {
    # program of mp_programs/ -> its sections (WHOLE: the whole program) that do not cross nodes yet
    "pipes.py": {"executor_wakeup": FDS},  # ProcessPoolExecutor: the stdlib's pipes
    "queues.py": {"executor": FDS},
    "pool_channels.py": {"direct": FDS},  # multiprocessing.pool.Pool(context=...): the stdlib's pipes
}
"""Everything the tests run over two nodes that does not cross nodes yet: ONE list, strict xfails."""

NEVER_CROSS: Final[Mapping[str, tuple[str, ...]]] = {
    # program -> sections left out over several nodes for good: what they share is local by nature
    "pool_manager.py": ("shared_memory",),  # a block opened by name: another node has its own /dev/shm
    "pipes.py": ("fds",),  # send_handle: an fd passed to a process of another node
}


@dataclass(frozen=True)
class Placement:
    """How many nodes a run has (1: `dragon PROG`; more: isolated virtual nodes), whether the head's
    processes all go to node 1 (`apart`, mp_programs/apart.py) or take the default placement, and
    which sections of the program it runs: `only` these (none: all) but `without` those."""

    nodes: int
    only: tuple[str, ...] = ()
    without: tuple[str, ...] = ()
    apart: bool = True


def placements(program: str, reads: tuple[str, ...] = ()) -> list[Any]:
    """The `placement` parameters of a test of mp_programs/PROGRAM that reads the sections `reads` of
    its report (all if none; use with `indirect=True`): one node, and two nodes for what crosses; what
    does not cross yet is a strict xfail of its own."""
    not_yet = {s: r for s, r in DO_NOT_CROSS_YET.get(program, {}).items() if s == WHOLE or not reads or s in reads}
    never = NEVER_CROSS.get(program, ())
    params = [pytest.param(Placement(1, only=reads), id="1-node")]
    if WHOLE in not_yet:
        return [*params, _xfail(Placement(2, only=reads, without=never), not_yet[WHOLE], "2-nodes")]
    if not reads or set(reads) - set(not_yet):
        params.append(pytest.param(Placement(2, only=reads, without=(*never, *not_yet)), id="2-nodes"))
    for reason in REASONS:
        if sections := tuple(s for s, r in not_yet.items() if r is reason):
            params.append(_xfail(Placement(2, only=sections), reason, f"2-nodes-{reason.raises.__name__}"))
    return params


def not_crossing(program: str) -> list[pytest.MarkDecorator]:
    """The strict xfail of a program that `DO_NOT_CROSS_YET` lists as a whole ([] if it crosses)."""
    reason = DO_NOT_CROSS_YET.get(program, {}).get(WHOLE)
    return [] if reason is None else [_xfail_mark(reason)]


def _xfail(placement: Placement, reason: Reason, id: str) -> Any:
    return pytest.param(placement, id=id, marks=_xfail_mark(reason))


def _xfail_mark(reason: Reason) -> pytest.MarkDecorator:
    """A strict xfail that must raise `reason`'s exception (in the exception group of pytest-trio's nursery)."""
    raises = pytest.RaisesGroup(reason.raises, allow_unwrapped=True, flatten_subgroups=True)
    return pytest.mark.xfail(strict=True, raises=raises, reason=reason.text)


T = TypeVar("T")


class Placed:
    """Runs `dragon` in a placement: `run` a program, `pick` the part of a report it runs."""

    def __init__(self, placement: Placement, cluster: VirtualCluster | None) -> None:
        self.placement = placement
        self.cluster = cluster

    @property
    def nodes(self) -> int:
        return self.placement.nodes

    def args(self) -> list[str]:
        """The section arguments of the program (after its start method)."""
        return [*self.placement.only, *(f"-{s}" for s in self.placement.without)]

    def pick(self, sections: dict[str, T]) -> dict[str, T]:
        """The sections of a whole report that this placement runs."""
        p = self.placement
        return {k: v for k, v in sections.items() if (not p.only or k in p.only) and k not in p.without}

    def argv(self, *args: str) -> list[str]:
        c = self.cluster
        if c is None:
            return [DRAGON, *args]
        head = [APART, *args] if self.placement.apart and args and args[0].endswith(".py") else list(args)
        return [*c.wrap(0), DRAGON, "--nodes", str(self.nodes), "--wlm", "local", "--frontend-addr", c.addr(0), *head]

    def env(self) -> dict[str, str]:
        return clean_env() if self.cluster is None else clean_env(DRAGON_LOCAL_WRAP=self.cluster.wrap_template())

    async def run(
        self, *args: str, cwd: str | Path, timeout_s: float = RUN_TIMEOUT_S
    ) -> subprocess.CompletedProcess[bytes]:
        """`dragon ARGS...` to its end, in this placement; one of REASONS' exceptions as soon as its
        signature shows in the run's stderr (the run is ended first)."""
        argv = self.argv(*args)
        proc = await trio.lowlevel.open_process(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=self.env()
        )
        assert proc.stdout is not None and proc.stderr is not None
        out, err = StreamReader(proc.stdout), StreamReader(proc.stderr)
        seen: list[Reason] = []
        try:
            with trio.fail_after(timeout_s):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(out.to_end)
                    nursery.start_soon(_watch, err, seen, proc)
                    code = await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                with trio.move_on_after(STOP_TIMEOUT_S):
                    await proc.wait()
        if seen:
            raise seen[0].raises(bytes(err.data).decode(errors="replace"))
        return subprocess.CompletedProcess(argv, code, bytes(out.data), bytes(err.data))


async def _watch(err: StreamReader, seen: list[Reason], proc: trio.Process) -> None:
    """Read stderr to its end; at the first signature of a known reason, note it and end the run
    (SIGTERM; killed if it has not ended within STOP_TIMEOUT_S)."""
    while await err.receive():
        if not seen and (found := [r for r in REASONS if r.signature.search(err.data)]):
            seen.append(found[0])
            proc.send_signal(signal.SIGTERM)
            with trio.move_on_after(STOP_TIMEOUT_S) as waited:
                await proc.wait()
            if waited.cancelled_caught:
                proc.kill()
