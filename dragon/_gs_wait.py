"""Waiting for several managed processes at once: `dragon.native.wait` (spec §4.2 GSProcessJoinList).

One request to Global Services, answered when any (or all) of the processes have exited, or at the
timeout, so that a parent with many children needs neither a thread per child nor a polling loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from dragon._gs_client import connection
from dragon.errors import InvalidArgument, JoinSelf, UnknownProcess
from dragon.messages import GSProcessJoinList, GSProcessJoinListResponse, JoinListStatus


class _HasPuid(Protocol):
    @property
    def p_uid(self) -> int | None: ...


def wait(processes: Sequence[_HasPuid], timeout: float | None = None, *, join_all: bool = False,
         return_on_bad_exit: bool = False) -> dict[int, int | None]:
    """Wait until one (or, with `join_all`, every) process of `processes` has exited.

    Waits at most `timeout` seconds (None: no limit; 0: just look). With `return_on_bad_exit`, returns
    as soon as any of them has exited with a non-zero code.

    Returns:
      {p_uid: exit code} for every process given, None for those still running.
    Raises:
      InvalidArgument: a process was not started; UnknownProcess: GS does not know one;
      JoinSelf: the calling process is among them (it would wait for itself).
    """
    puids: list[int] = []
    for proc in processes:
        if proc.p_uid is None:
            raise InvalidArgument("cannot wait for a process that was not started: call start() first")
        puids.append(proc.p_uid)
    timeout_us = -1 if timeout is None else max(0, int(timeout * 1e6))
    resp = connection().call(GSProcessJoinList(
        p_uid=0, r_c_uid=0, t_p_uid_list=puids, timeout=timeout_us, join_all=join_all,
        return_on_bad_exit=return_on_bad_exit), GSProcessJoinListResponse)
    result: dict[int, int | None] = {}
    for p_uid in puids:
        status = resp.puid_status.get(p_uid)
        if status is None or status.status == JoinListStatus.UNKNOWN:
            raise UnknownProcess(status.err_info if status is not None and status.err_info else f"no p_uid {p_uid}")
        if status.status == JoinListStatus.SELF:
            raise JoinSelf(f"process {p_uid} is the caller: it cannot wait for itself")
        result[p_uid] = status.exit_code if status.status == JoinListStatus.SUCCESS else None
    return result
