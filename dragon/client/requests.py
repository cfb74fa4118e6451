"""Every request of the client to Global Services, built here once, and the one way to carry it out.

Each operation on Global Services (spec §4.2-§4.4) is a `GSCall`: the request to send, the response
type to expect, and `finish`, which turns GS's answer into a result or raises the `dragon.errors`
class for GS's `err` (with GS's text). No other module of the client builds a request or reads an
`err`; each only moves the call, with one of the two functions at the end of this module:

    blocking (dragon.native, the multiprocessing start method, pipes):  run(call)
    trio     (dragon.aio, the `dragon` command):                          await run_async(runtime, call)

`p_uid`, `r_c_uid` and `tag` are filled in by the connection that sends the request
(`dragon.client.gs_client.GSClient.call`, or a `Runtime`'s `call`). Plain Python, no trio: user processes
import this (the start method's first start does: it is light, and preloaded in the fork server).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import msgspec

from dragon.client.python_child import callable_text, child_argv, pack_call
from dragon.descriptors import (
    DEVNULL,
    PIPE,
    STDOUT,
    ArgMode,
    ChannelDescriptor,
    ChannelLocalOptions,
    ChannelOptions,
    NodeDescriptor,
    ObjectState,
    OsText,
    PoolDescriptor,
    ProcessDescriptor,
    ProcessOptions,
    StdioOption,
    os_env,
    os_text,
    shown,
)
from dragon.errors import (
    ChannelBusy,
    ChannelCreateFailed,
    ChannelDestroyed,
    ChannelNameInUse,
    ChannelWaitTimeout,
    DragonError,
    InvalidArgument,
    JoinSelf,
    PoolBusy,
    PoolCreateFailed,
    PoolDestroyFailed,
    PoolGone,
    PoolNameInUse,
    ProcessNameInUse,
    ProcessSignalFailed,
    ProcessStartFailed,
    UnknownChannel,
    UnknownPool,
    UnknownProcess,
)
from dragon.ids import DEFAULT_POOL_MUID, NOT_INHERITED
from dragon.messages import (
    ChannelCreateErr,
    ChannelDestroyErr,
    ChannelJoinErr,
    ChannelQueryErr,
    GSChannelCreate,
    GSChannelCreateResponse,
    GSChannelDestroy,
    GSChannelDestroyResponse,
    GSChannelJoin,
    GSChannelJoinResponse,
    GSChannelList,
    GSChannelListResponse,
    GSChannelQuery,
    GSChannelQueryResponse,
    GSNodeList,
    GSNodeListResponse,
    GSPoolCreate,
    GSPoolCreateResponse,
    GSPoolDestroy,
    GSPoolDestroyResponse,
    GSPoolList,
    GSPoolListResponse,
    GSPoolQuery,
    GSPoolQueryResponse,
    GSProcessCreate,
    GSProcessCreateResponse,
    GSProcessJoin,
    GSProcessJoinList,
    GSProcessJoinListResponse,
    GSProcessJoinResponse,
    GSProcessKill,
    GSProcessKillResponse,
    GSProcessList,
    GSProcessListResponse,
    GSProcessQuery,
    GSProcessQueryResponse,
    JoinListStatus,
    PoolCreateErr,
    PoolDestroyErr,
    PoolQueryErr,
    ProcessCreateErr,
    ProcessJoinErr,
    ProcessKillErr,
    ProcessQueryErr,
    Request,
    Response,
)
from dragon.policy import Policy, wire_policy

if TYPE_CHECKING:
    from dragon.client.gs_client import GSClient
from dragon.transport import DEFAULT_BLOCK_SIZE, DEFAULT_CAPACITY, MIN_BLOCK_SIZE

R = TypeVar("R", bound=Response)
T = TypeVar("T")


class GSCall(msgspec.Struct, Generic[R, T], frozen=True):
    """One GS request and how to read its answer: `finish(response)` returns the result or raises."""

    request: Request
    response_type: type[R]
    finish: Callable[[R], T]


def timeout_us(timeout_s: float | None) -> int:
    """A timeout in seconds as GS wants it (spec §4): integer µs, -1 = forever; negative s = poll now."""
    if timeout_s is None:
        return -1
    return max(0, round(timeout_s * 1e6))


# ------------------------------------------------------------------------------------------- processes


class ProcessSpec(msgspec.Struct, frozen=True):
    """A checked description of a process to create (the constructor arguments of `Process`)."""

    exe: str
    args: list[str]
    env: dict[str, str]
    cwd: str | None
    name: str
    stdio: tuple[StdioOption, StdioOption, StdioOption]
    user: int | None = None
    group: int | None = None
    umask: int = -1
    initial_stdin: bytes = b""
    policy: Policy | None = None
    """Given to `Process(policy=...)`; merged over the current `with Policy(...)` at start."""
    call: Any = None
    """For a Python callable target, `(target, args, kwargs)`, pickled when the process starts
    (`python_child.pack_call`); `exe`/`args` are then the child's `python -c ...`."""


def process_spec(
    target: str | os.PathLike[str] | Callable[..., object],
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None,
    cwd: str | os.PathLike[str] | None,
    name: str,
    stdin: StdioOption,
    stdout: StdioOption,
    stderr: StdioOption,
    user: int | None = None,
    group: int | None = None,
    umask: int = -1,
    initial_stdin: bytes = b"",
    policy: Policy | None = None,
) -> ProcessSpec:
    """Check `Process(...)`'s arguments. Raises InvalidArgument, saying what to pass instead.

    `target` is an executable (a path, or a name looked up on PATH), whose `args` are its argv[1:]
    (strings), or a Python callable, run as `target(*args, **kwargs)` in a new interpreter like this
    one (`dragon.client.python_child`)."""
    call: tuple[Callable[..., object], tuple[Any, ...], Mapping[str, Any]] | None = None
    if isinstance(args, (str, bytes)):
        raise InvalidArgument(f"Process args must be a sequence, not the string {args!r}")
    if kwargs is not None and not (isinstance(kwargs, Mapping) and all(isinstance(k, str) for k in kwargs)):
        raise InvalidArgument(f"Process kwargs must be a mapping of names to values or None, not {kwargs!r}")
    if isinstance(target, (str, os.PathLike)) and os.fspath(target):
        if kwargs:
            raise InvalidArgument(
                f"Process kwargs are for a Python callable target; the executable {os.fspath(target)!r} "
                "takes its args as its command line"
            )
        given = list(args or ())
        argv = [os.fspath(a) for a in given if isinstance(a, (str, os.PathLike))]
        if len(argv) != len(given) or not all(isinstance(a, str) for a in argv):
            raise InvalidArgument(f"Process args of an executable must be strings: {given!r}")
        exe = os.fspath(target)
    elif callable(target):
        call = (target, tuple(args or ()), dict(kwargs or {}))
        exe, *argv = child_argv()
    else:
        raise InvalidArgument(
            f"Process target must be an executable path or name, or a Python callable, not {target!r}"
        )
    for what, ident in (("user", user), ("group", group)):
        if ident is not None and (not isinstance(ident, int) or ident < 0):
            raise InvalidArgument(f"Process {what} must be a numeric id (0 or more) or None, not {ident!r}")
    if not isinstance(umask, int) or not (umask == -1 or 0 <= umask <= 0o777):
        raise InvalidArgument(f"Process umask must be 0 .. 0o777, or -1 to inherit it, not {umask!r}")
    if not isinstance(initial_stdin, bytes):
        raise InvalidArgument(f"Process initial_stdin must be bytes, not {type(initial_stdin).__name__}")
    if initial_stdin and stdin == DEVNULL:
        raise InvalidArgument("Process initial_stdin needs a stdin to write to: stdin=None or PIPE, not DEVNULL")
    if policy is not None and not isinstance(policy, Policy):
        raise InvalidArgument(f"Process policy must be a dragon.native.Policy or None, not {policy!r}")
    return ProcessSpec(
        exe=exe,
        args=argv,
        env=dict(env) if env is not None else {},
        cwd=os.fspath(cwd) if cwd is not None else None,
        name=name,
        stdio=(check_stdio("stdin", stdin), check_stdio("stdout", stdout), check_stdio("stderr", stderr)),
        user=user,
        group=group,
        umask=umask,
        initial_stdin=initial_stdin,
        policy=policy,
        call=call,
    )


def check_stdio(stream: str, opt: StdioOption) -> StdioOption:
    """Spec §5.5, as far as Local Services implements it; InvalidArgument for anything else."""
    if opt is None or opt == DEVNULL or opt == PIPE:
        return opt
    if opt == STDOUT and stream == "stderr":
        return opt
    if isinstance(opt, (str, os.PathLike)) and stream != "stdin":
        return os.path.abspath(os.fspath(opt))
    raise InvalidArgument(
        f"{stream}={opt!r} is not a valid option: use None, DEVNULL, PIPE"
        + (", STDOUT" if stream == "stderr" else "")
        + (", or a file path" if stream != "stdin" else "")
    )


def process_create(spec: ProcessSpec) -> GSCall[GSProcessCreateResponse, ProcessDescriptor]:
    """GSProcessCreate for `spec`: the caller's environment (minus its launch parameters) under
    `spec.env`, with its own GS-return channel, placed by `spec.policy` over the current `with
    Policy(...)` (built when the process starts: `dragon.policy`); a callable target's call pickled
    now into the handshake. Raises ProcessNameInUse, ProcessStartFailed (e.g. no such node, host or
    CPU), InvalidArgument (a call that does not pickle)."""
    env_plain, env_raw = _inherited_env(spec.env)
    options, shown_target = ProcessOptions(make_inf_channels=True), ""
    if spec.call is not None:
        target, args, kwargs = spec.call
        shown_target = callable_text(target)
        argdata = pack_call(target, args, kwargs, shown_target)
        options = ProcessOptions(make_inf_channels=True, mode=ArgMode.PYTHON_IMMEDIATE, argdata=argdata)
    req = GSProcessCreate(
        p_uid=0,
        r_c_uid=0,
        exe=os_text(spec.exe),
        args=[os_text(a) for a in spec.args],
        env=env_plain,
        env_raw=env_raw,
        rundir=os_text(spec.cwd or os.getcwd()),
        user_name=spec.name,
        options=options,
        stdin=spec.stdio[0],
        stdout=spec.stdio[1],
        stderr=spec.stdio[2],
        user=spec.user,
        group=spec.group,
        umask=spec.umask,
        initial_stdin=spec.initial_stdin,
        policy=wire_policy(spec.policy),
        target=shown(shown_target),
    )
    what = shown_target or spec.exe

    def finish(resp: GSProcessCreateResponse) -> ProcessDescriptor:
        if resp.err == ProcessCreateErr.ALREADY:
            uid = resp.desc.p_uid if resp.desc is not None else None
            raise ProcessNameInUse(f"cannot start {what}: {resp.err_info} (p_uid {uid})", spec.name, uid)
        if resp.err != ProcessCreateErr.SUCCESS or resp.desc is None:
            why = resp.err_info or resp.err.name
            raise ProcessStartFailed(why if why.startswith("cannot start") else f"cannot start {what}: {why}")
        return resp.desc

    return GSCall(req, GSProcessCreateResponse, finish)


def _inherited_env(extra: Mapping[str, str]) -> tuple[dict[str, OsText], list[tuple[bytes, bytes]]]:
    """This process's environment minus its launch parameters, with `extra` over it, as it travels."""
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env.update(extra)
    return os_env(env)


def head_create(
    exe: str, args: Sequence[str], env: Mapping[str, str], *, label: str, target: str
) -> GSCall[GSProcessCreateResponse, ProcessDescriptor]:
    """GSProcessCreate of the head process of `dragon prog.py` (the command's `env`, nothing inherited;
    `label`/`target` for `dragon status`). Raises ProcessStartFailed with GS's text."""

    def finish(resp: GSProcessCreateResponse) -> ProcessDescriptor:
        if resp.err != ProcessCreateErr.SUCCESS or resp.desc is None:
            raise ProcessStartFailed(resp.err_info)
        return resp.desc

    req = GSProcessCreate(
        p_uid=0,
        r_c_uid=0,
        exe=os_text(exe),
        args=[os_text(a) for a in args],
        env=dict(env),
        rundir=os_text(os.getcwd()),
        head_proc=True,
        options=ProcessOptions(make_inf_channels=True),
        label=shown(label),
        target=shown(target),
    )
    return GSCall(req, GSProcessCreateResponse, finish)


def mp_process_create(
    argv: Sequence[str], argdata: bytes, *, what: str, label: str, target: str, policy: Policy | None = None
) -> GSCall[GSProcessCreateResponse, ProcessDescriptor]:
    """GSProcessCreate of a child of the multiprocessing start method (`dragon.mp.popen`): `argv`
    (`python -c <child main>`) with `argdata` in its handshake (PYTHON_IMMEDIATE), the caller's
    environment; `label`/`target` for `dragon status`, `what` (the process object) for the error;
    placed by `policy` (a Pool's) over the current `with Policy(...)`. Raises ProcessStartFailed
    (e.g. no such node, host or CPU)."""
    exe, *args = argv
    env_plain, env_raw = _inherited_env({})

    def finish(resp: GSProcessCreateResponse) -> ProcessDescriptor:
        if resp.err != ProcessCreateErr.SUCCESS or resp.desc is None or resp.desc.pid is None:
            raise ProcessStartFailed(f"cannot start {what}: {resp.err_info or resp.err.name}")
        return resp.desc

    req = GSProcessCreate(
        p_uid=0,
        r_c_uid=0,
        exe=os_text(exe),
        args=[os_text(a) for a in args],
        env=env_plain,
        env_raw=env_raw,
        rundir=os_text(os.getcwd()),
        options=ProcessOptions(make_inf_channels=True, mode=ArgMode.PYTHON_IMMEDIATE, argdata=argdata),
        label=shown(label),
        target=shown(target),
        policy=wire_policy(policy),
    )
    return GSCall(req, GSProcessCreateResponse, finish)


def process_join(p_uid: int, timeout: float | None) -> GSCall[GSProcessJoinResponse, int | None]:
    """GSProcessJoin: the exit code, or None if it still runs after `timeout` s. Raises JoinSelf,
    UnknownProcess, InvalidArgument (Global Services, which cannot be joined)."""

    def finish(resp: GSProcessJoinResponse) -> int | None:
        if resp.err == ProcessJoinErr.SUCCESS:
            return resp.exit_code
        if resp.err == ProcessJoinErr.TIMEOUT:
            return None
        if resp.err == ProcessJoinErr.SELF:
            raise JoinSelf(f"process {p_uid} cannot join itself: {resp.err_info}")
        if resp.err == ProcessJoinErr.NOT_JOINABLE:
            raise InvalidArgument(resp.err_info)
        raise UnknownProcess(resp.err_info or f"no p_uid {p_uid}")

    return GSCall(
        GSProcessJoin(p_uid=0, r_c_uid=0, t_p_uid=p_uid, timeout=timeout_us(timeout)), GSProcessJoinResponse, finish
    )


def process_kill(p_uid: int, sig: int, hide_stderr: bool = False) -> GSCall[GSProcessKillResponse, int | None]:
    """GSProcessKill: None once delivered, or the exit code of a process that had exited already.
    With `hide_stderr`, Local Services forwards no more of the process's stderr (the traceback a
    signalled worker prints). Raises UnknownProcess, ProcessSignalFailed."""

    def finish(resp: GSProcessKillResponse) -> int | None:
        if resp.err == ProcessKillErr.SUCCESS:
            return None
        if resp.err == ProcessKillErr.DEAD:
            return resp.exit_code
        if resp.err == ProcessKillErr.UNKNOWN:
            raise UnknownProcess(resp.err_info or f"no p_uid {p_uid}")
        raise ProcessSignalFailed(f"cannot send signal {sig} to process {p_uid}: {resp.err_info or resp.err.name}")

    return GSCall(
        GSProcessKill(p_uid=0, r_c_uid=0, t_p_uid=p_uid, sig=int(sig), hide_stderr=hide_stderr),
        GSProcessKillResponse,
        finish,
    )


def mp_signal(p_uid: int, sig: int, exited: Callable[[], bool]) -> GSCall[GSProcessKillResponse, bool]:
    """GSProcessKill for a child of the start method, as multiprocessing's Popen signals: True once
    delivered, or if the child has exited (`exited()`: its pidfd says so); False if another signal
    to it is in flight (PENDING): the caller delivers its own directly. Raises ProcessSignalFailed."""

    def finish(resp: GSProcessKillResponse) -> bool:
        if resp.err in (ProcessKillErr.SUCCESS, ProcessKillErr.DEAD):
            return True
        if resp.err == ProcessKillErr.PENDING:
            return False
        if resp.err == ProcessKillErr.FAIL_KILL and exited():
            # It exited while the signal was on its way: Local Services had reaped it but Global
            # Services had not heard of the exit yet. As for popen_fork, signalling a process that
            # has exited is no error (Pool.terminate does it to workers that are just leaving).
            return True
        raise ProcessSignalFailed(f"cannot send signal {sig} to p_uid {p_uid}: {resp.err_info or resp.err.name}")

    return GSCall(GSProcessKill(p_uid=0, r_c_uid=0, t_p_uid=p_uid, sig=int(sig)), GSProcessKillResponse, finish)


def process_query(p_uid: int | None = None, name: str = "") -> GSCall[GSProcessQueryResponse, ProcessDescriptor]:
    """GSProcessQuery by p_uid or by name: GS's record. Raises UnknownProcess, InvalidArgument (no name)."""
    if p_uid is None and not name:
        raise InvalidArgument("Process.from_name needs a non-empty name")
    req = (
        GSProcessQuery(p_uid=0, r_c_uid=0, t_p_uid=p_uid, user_name=name)
        if p_uid is not None
        else GSProcessQuery(p_uid=0, r_c_uid=0, user_name=name)
    )

    def finish(resp: GSProcessQueryResponse) -> ProcessDescriptor:
        if resp.err != ProcessQueryErr.SUCCESS or resp.desc is None:
            raise UnknownProcess(resp.err_info or f"no process {name or p_uid}")
        return resp.desc

    return GSCall(req, GSProcessQueryResponse, finish)


def process_list() -> GSCall[GSProcessListResponse, list[int]]:
    """GSProcessList: every p_uid GS ever created, dead ones included, and GS itself (1)."""
    return GSCall(GSProcessList(p_uid=0, r_c_uid=0), GSProcessListResponse, lambda resp: resp.plist)


def node_list() -> GSCall[GSNodeListResponse, list[NodeDescriptor]]:
    """GSNodeList: every node of the runtime, by index (`dragon.native.machine`)."""
    return GSCall(GSNodeList(p_uid=0, r_c_uid=0), GSNodeListResponse, lambda resp: resp.nodes)


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


# ------------------------------------------------------------------------------------------- channels


def channel_create(
    *,
    capacity: int = DEFAULT_CAPACITY,
    block_size: int = DEFAULT_BLOCK_SIZE,
    name: str = "",
    m_uid: int = DEFAULT_POOL_MUID,
    soft: bool = False,
    packed: bool = False,
    ref_count: bool = False,
    label: str = "",
    record: bool = False,
) -> GSCall[GSChannelCreateResponse, ChannelDescriptor]:
    """GSChannelCreate (see `Channel.create`; `packed`: `ChannelLocalOptions.packed`; `ref_count`,
    `record`: `ChannelOptions`; `label`: `ChannelDescriptor.label`). Raises InvalidArgument now;
    ChannelNameInUse, ChannelCreateFailed from `finish`."""
    if capacity < 1:
        raise InvalidArgument(f"channel capacity must be at least 1 message, not {capacity}")
    if block_size < MIN_BLOCK_SIZE:
        raise InvalidArgument(f"channel block size must be at least {MIN_BLOCK_SIZE} bytes, not {block_size}")
    if soft and not name:
        raise InvalidArgument("Channel.create(soft=True) needs a name to look up")
    opts = ChannelOptions(
        ref_count=ref_count,
        record=record,
        local_opts=ChannelLocalOptions(capacity=capacity, block_size=block_size, packed=packed),
    )

    def finish(resp: GSChannelCreateResponse) -> ChannelDescriptor:
        if resp.err == ChannelCreateErr.ALREADY and resp.desc is not None:
            if soft:
                return resp.desc
            raise ChannelNameInUse(f"{resp.err_info} (c_uid {resp.desc.c_uid})", name, resp.desc.c_uid)
        if resp.err != ChannelCreateErr.SUCCESS or resp.desc is None:
            why = resp.err_info or resp.err.name
            if name:
                raise ChannelCreateFailed(f"cannot create channel {name!r}: {why}")
            raise ChannelCreateFailed(
                why if why.startswith("cannot create channel") else f"cannot create a channel: {why}"
            )
        return resp.desc

    return GSCall(
        GSChannelCreate(p_uid=0, r_c_uid=0, m_uid=m_uid, options=opts, user_name=name, label=label),
        GSChannelCreateResponse,
        finish,
    )


def channel_attach(c_uid: int | None, name: str) -> GSCall[GSChannelQueryResponse, ChannelDescriptor]:
    """GSChannelQuery by c_uid or name. Raises InvalidArgument now; UnknownChannel from `finish`."""
    if (c_uid is None) == (not name):
        raise InvalidArgument("Channel.attach needs exactly one of c_uid or name")

    def finish(resp: GSChannelQueryResponse) -> ChannelDescriptor:
        if resp.err != ChannelQueryErr.SUCCESS or resp.desc is None:
            raise UnknownChannel(resp.err_info or f"no channel {name or c_uid}")
        return resp.desc

    return GSCall(GSChannelQuery(p_uid=0, r_c_uid=0, c_uid=c_uid, user_name=name), GSChannelQueryResponse, finish)


def channel_wait_created(name: str, timeout: float | None) -> GSCall[GSChannelJoinResponse, ChannelDescriptor]:
    """GSChannelJoin. Raises InvalidArgument now; ChannelDestroyed, ChannelWaitTimeout from `finish`."""
    if not name:
        raise InvalidArgument("Channel.wait_created needs a name")

    def finish(resp: GSChannelJoinResponse) -> ChannelDescriptor:
        if resp.err == ChannelJoinErr.SUCCESS and resp.desc is not None:
            return resp.desc
        if resp.err == ChannelJoinErr.DEAD:
            raise ChannelDestroyed(resp.err_info or f"channel {name} was destroyed")
        raise ChannelWaitTimeout(f"{resp.err_info or f'no channel named {name}'} within {timeout} s")

    return GSCall(
        GSChannelJoin(p_uid=0, r_c_uid=0, name=name, timeout=timeout_us(timeout)), GSChannelJoinResponse, finish
    )


def channel_list() -> GSCall[GSChannelListResponse, list[int]]:
    """GSChannelList: every c_uid GS knows, destroyed ones included."""
    return GSCall(GSChannelList(p_uid=0, r_c_uid=0), GSChannelListResponse, lambda resp: resp.clist)


def channel_destroy(desc: ChannelDescriptor) -> GSCall[GSChannelDestroyResponse, DragonError | None]:
    """GSChannelDestroy. `finish` raises ChannelBusy (the channel is still there: keep the handle);
    otherwise the handle is to be closed, and it returns the error to raise after that (UnknownChannel)
    or None when destroyed."""

    def finish(resp: GSChannelDestroyResponse) -> DragonError | None:
        if resp.err == ChannelDestroyErr.BUSY:
            raise ChannelBusy(f"cannot destroy channel {desc.name}: {resp.err_info}")
        if resp.err == ChannelDestroyErr.SUCCESS:
            return None
        return UnknownChannel(f"cannot destroy channel {desc.name}: {resp.err_info or resp.err.name}")

    return GSCall(GSChannelDestroy(p_uid=0, r_c_uid=0, c_uid=desc.c_uid), GSChannelDestroyResponse, finish)


def channel_add_ref(c_uid: int) -> GSCall[GSChannelQueryResponse, ChannelDescriptor]:
    """GSChannelQuery with `inc_refcnt`: one more reference to a ref-counted channel (a queue being
    pickled). Raises UnknownChannel, ChannelDestroyed (it is gone)."""

    def finish(resp: GSChannelQueryResponse) -> ChannelDescriptor:
        if resp.err != ChannelQueryErr.SUCCESS or resp.desc is None:
            raise UnknownChannel(resp.err_info or f"no channel {c_uid}")
        if resp.desc.state != ObjectState.ACTIVE:
            raise ChannelDestroyed(f"channel {resp.desc.name} (c_uid {c_uid}) was destroyed")
        return resp.desc

    return GSCall(GSChannelQuery(p_uid=0, r_c_uid=0, c_uid=c_uid, inc_refcnt=True), GSChannelQueryResponse, finish)


def channel_release(
    c_uid: int | None = None, *, name: str = "", dec_ref: bool
) -> GSCall[GSChannelDestroyResponse, None]:
    """GSChannelDestroy by c_uid or name whose answer does not matter: with `dec_ref`, one reference
    given back (the last one destroys the channel: a queue's, a PIPE's); without, destroyed whatever
    references are left. A channel that is gone already is what the caller wanted."""
    req = (
        GSChannelDestroy(p_uid=0, r_c_uid=0, c_uid=c_uid, dec_ref=dec_ref)
        if c_uid is not None
        else GSChannelDestroy(p_uid=0, r_c_uid=0, user_name=name, dec_ref=dec_ref)
    )
    return GSCall(req, GSChannelDestroyResponse, lambda resp: None)


def give_back_quietly(c_uid: int) -> None:
    """Give one reference to channel `c_uid` back (GSChannelDestroy with `dec_ref`) without waiting
    for the answer (`reply_req` False: GS sends none), on this process's blocking connection; never
    starts a runtime. Dropping an object's last handle then costs a send (about 20 µs) rather than a
    round trip through GS and LS (about 1 ms; a process exiting with ten objects paid 10 ms): nothing
    the caller does next depends on the destroy, and this process's later requests reach GS after
    it. The entries go a moment later. Raises RuntimeNotRunning."""
    from dragon.client.gs_client import connection

    connection().post(GSChannelDestroy(p_uid=0, r_c_uid=0, c_uid=c_uid, dec_ref=True, reply_req=False))


# ------------------------------------------------------------------------------------------- pools


def pool_create(size_bytes: int, *, name: str = "", soft: bool = False) -> GSCall[GSPoolCreateResponse, PoolDescriptor]:
    """GSPoolCreate (see `Pool.create`). Raises InvalidArgument now; PoolNameInUse, PoolCreateFailed
    from `finish`."""
    if size_bytes <= 0:
        raise InvalidArgument(f"pool size must be a positive number of bytes, not {size_bytes}")
    if soft and not name:
        raise InvalidArgument("Pool.create(soft=True) needs a name to look up")

    def finish(resp: GSPoolCreateResponse) -> PoolDescriptor:
        if resp.err == PoolCreateErr.ALREADY and resp.desc is not None:
            if soft:
                return resp.desc
            raise PoolNameInUse(f"{resp.err_info} (m_uid {resp.desc.m_uid})", name, resp.desc.m_uid)
        if resp.err != PoolCreateErr.SUCCESS or resp.desc is None:
            raise PoolCreateFailed(
                f"cannot create pool {name!r} of {size_bytes} bytes: {resp.err_info or resp.err.name}"
            )
        return resp.desc

    return GSCall(GSPoolCreate(p_uid=0, r_c_uid=0, size=size_bytes, user_name=name), GSPoolCreateResponse, finish)


def pool_attach(m_uid: int | None, name: str) -> GSCall[GSPoolQueryResponse, PoolDescriptor]:
    """GSPoolQuery by m_uid or name. Raises InvalidArgument now; UnknownPool, PoolGone from `finish`."""
    if (m_uid is None) == (not name):
        raise InvalidArgument("Pool.attach needs exactly one of m_uid or name")

    def finish(resp: GSPoolQueryResponse) -> PoolDescriptor:
        if resp.err != PoolQueryErr.SUCCESS or resp.desc is None:
            raise UnknownPool(resp.err_info or f"no pool {name or m_uid}")
        if resp.desc.state == ObjectState.DEAD:
            raise PoolGone(f"pool {resp.desc.name} (m_uid {resp.desc.m_uid}) was destroyed")
        return resp.desc

    return GSCall(GSPoolQuery(p_uid=0, r_c_uid=0, m_uid=m_uid, user_name=name), GSPoolQueryResponse, finish)


def pool_list() -> GSCall[GSPoolListResponse, list[int]]:
    """GSPoolList: every m_uid GS made, destroyed ones included."""
    return GSCall(GSPoolList(p_uid=0, r_c_uid=0), GSPoolListResponse, lambda resp: resp.mlist)


def pool_destroy(desc: PoolDescriptor) -> GSCall[GSPoolDestroyResponse, DragonError | None]:
    """GSPoolDestroy. `finish` raises PoolBusy (keep the handle); otherwise the handle is to be closed,
    and it returns the error to raise after that (PoolGone, UnknownPool, PoolDestroyFailed) or None."""

    def finish(resp: GSPoolDestroyResponse) -> DragonError | None:
        what = f"cannot destroy pool {desc.name}: {resp.err_info}"
        if resp.err == PoolDestroyErr.PENDING:
            raise PoolBusy(what)
        if resp.err == PoolDestroyErr.SUCCESS:
            return None
        if resp.err == PoolDestroyErr.GONE:
            return PoolGone(what)
        if resp.err == PoolDestroyErr.UNKNOWN:
            return UnknownPool(what)
        return PoolDestroyFailed(f"cannot destroy pool {desc.name}: {resp.err_info or resp.err.name}")

    return GSCall(GSPoolDestroy(p_uid=0, r_c_uid=0, m_uid=desc.m_uid), GSPoolDestroyResponse, finish)


# ------------------------------------------------------------------------------------------- carrying out


class Runtime(Protocol):
    """Where the trio flavour's requests go: a `RuntimeHandle` (from `dragon.serve`), or a managed
    process's connection (`dragon.aio.connect`, `dragon.aio.open_connection`)."""

    async def call(self, req: Any, response_type: type[R]) -> R:
        """Send `req` to GS and return its response, of type `response_type`."""
        ...


def run(
    call: GSCall[R, T], *, client: GSClient | None = None, timeout_s: float | None = None, start_runtime: bool = False
) -> T:
    """Carry out `call` on this process's blocking connection to GS (`dragon.client.gs_client.connection`),
    or on `client`; at most `timeout_s` for the answer (RequestTimeout). `start_runtime`: in a plain
    `python` program, bring its background runtime up first if there is none (the start method does).
    Raises what `call.finish` raises, and RuntimeNotRunning."""
    if client is None:
        # Imported here, not at the top, for start-up cost: the `dragon` command builds its requests
        # in this module but never uses the blocking connection (5 ms before its bringup).
        from dragon.client.gs_client import connection

        client = connection(start_runtime=start_runtime)
    conn = client
    return call.finish(conn.call(call.request, call.response_type, timeout_s))


async def run_async(runtime: Runtime, call: GSCall[R, T]) -> T:
    """Carry out `call` through `runtime` (the trio flavour). Raises what `call.finish` raises."""
    return call.finish(await runtime.call(call.request, call.response_type))
