"""Waiting for several managed processes at once (spec §4.2 GSProcessJoinList): the request and how
to read its answer, shared by `dragon.native.wait` (blocking) and `dragon.aio.wait` (trio).

One request to Global Services, answered when any (or all) of the processes have exited, or at the
timeout, so that a parent with many children needs neither a thread per child nor a polling loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from dragon._gs_client import connection
from dragon._gs_common import GSCall, timeout_us
from dragon.errors import InvalidArgument, JoinSelf, UnknownProcess
from dragon.messages import GSProcessJoinList, GSProcessJoinListResponse, JoinListStatus


class HasPuid(Protocol):
    @property
    def p_uid(self) -> int | None: ...


def join_list(
    processes: Sequence[HasPuid], timeout: float | None, join_all: bool, return_on_bad_exit: bool
) -> GSCall[GSProcessJoinListResponse, dict[int, int | None]]:
    """The GSProcessJoinList call for `processes`; its result is {p_uid: exit code or None}.

    Raises (building it): InvalidArgument if a process was not started. Raises (finishing it):
    UnknownProcess if GS does not know one; JoinSelf if the caller is among them; InvalidArgument if
    Global Services (p_uid 1, which runs as long as the runtime) is.
    """
    puids: list[int] = []
    for proc in processes:
        if proc.p_uid is None:
            raise InvalidArgument("cannot wait for a process that was not started: call start() first")
        puids.append(proc.p_uid)

    def finish(resp: GSProcessJoinListResponse) -> dict[int, int | None]:
        result: dict[int, int | None] = {}
        for p_uid in puids:
            status = resp.puid_status.get(p_uid)
            if status is None or status.status == JoinListStatus.UNKNOWN:
                raise UnknownProcess(status.err_info if status is not None and status.err_info else f"no p_uid {p_uid}")
            if status.status == JoinListStatus.SELF:
                raise JoinSelf(f"process {p_uid} is the caller: it cannot wait for itself")
            if status.status == JoinListStatus.NOT_JOINABLE:
                raise InvalidArgument(status.err_info or f"process {p_uid} cannot be waited for")
            result[p_uid] = status.exit_code if status.status == JoinListStatus.SUCCESS else None
        return result

    request = GSProcessJoinList(
        p_uid=0,
        r_c_uid=0,
        t_p_uid_list=puids,
        timeout=timeout_us(timeout),
        join_all=join_all,
        return_on_bad_exit=return_on_bad_exit,
    )
    return GSCall(request, GSProcessJoinListResponse, finish)


def wait(
    processes: Sequence[HasPuid],
    timeout: float | None = None,
    *,
    join_all: bool = False,
    return_on_bad_exit: bool = False,
) -> dict[int, int | None]:
    """Wait until one (or, with `join_all`, every) process of `processes` has exited.

    Waits at most `timeout` seconds (None: no limit; 0: just look). With `return_on_bad_exit`, returns
    as soon as any of them has exited with a non-zero code.

    Returns:
      {p_uid: exit code} for every process given, None for those still running.
    Raises:
      InvalidArgument: a process was not started, or is Global Services (it runs as long as the
      runtime); UnknownProcess: GS does not know one; JoinSelf: the calling process is among them
      (it would wait for itself).
    """
    call = join_list(processes, timeout, join_all, return_on_bad_exit)
    return call.finish(connection().call(call.request, call.response_type))
