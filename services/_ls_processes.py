"""Local Services runs the managed processes (spec §4.5 SHProcessCreate, SHProcessKill, SHFwdInput).

`run_process` is one task per process, in the spec's steps: make the channels GS asked for with it,
start it (from the fork server when it can, services/_fast_start.py, else exec), answer, then forward
its stdio and report its exit. Any failure before it runs is one FAIL response (`CreateFailed`).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Final

import msgspec
import trio

from dragon.descriptors import DEVNULL, STDOUT, StdioOption, fs_env, fs_str, shown
from dragon.messages import (
    LSErr,
    SHChannelCreateResponse,
    SHFwdInput,
    SHFwdInputErr,
    SHProcessCreate,
    SHProcessCreateResponse,
    SHProcessExit,
    SHProcessKill,
    SHProcessKillResponse,
)

from ._fast_start import ForkServerFailed, ServedChild
from ._ls_core import ManagedProcess, destroy_channel, os_error_text
from ._ls_stdio import StdioForwarding
from ._process import (
    give_back_fd_limit,
    stop_process,
)
from ._stdin import Chunk, ForwardedStdin, InputRefused

log = logging.getLogger(__name__)

DRAIN_AFTER_EXIT_S: Final = 1.0  # output still arriving after a process exited (its children's)


class CreateFailed(Exception):
    """A step of SHProcessCreate failed: the text is the response's err_info."""


@dataclass
class MadeChannels:
    """The channels LS made with a process (spec §4.2: embedded in SHProcessCreate), by the response
    field that carries each one's answer."""

    gs_ret: SHChannelCreateResponse | None = None
    pipes: dict[str, SHChannelCreateResponse] = field(default_factory=dict)

    def response(self, req: SHProcessCreate, pid: int) -> SHProcessCreateResponse:
        """SUCCESS with the pid and the answers to the channel creates (a FAIL carries no channel:
        LS removes what it made for a process that did not start)."""
        return SHProcessCreateResponse(
            ref=req.tag,
            err=LSErr.SUCCESS,
            pid=pid,
            gs_ret_chan_resp=self.gs_ret,
            stdin_resp=self.pipes.get("stdin"),
            stdout_resp=self.pipes.get("stdout"),
            stderr_resp=self.pipes.get("stderr"),
        )


class ProcessRunner(StdioForwarding):
    async def run_process(
        self, req: SHProcessCreate, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Spec §4.5 SHProcessCreate: make its channels, start it, answer, then forward its stdio and
        report its exit (SHProcessExit). The dispatcher goes on once it is started or refused."""
        made = MadeChannels()
        try:
            if req.t_p_uid in self.procs:
                raise CreateFailed(f"p_uid {req.t_p_uid} is already running")
            self._make_channels(req, made)
            mp = await self._start(req, made)
        except CreateFailed as exc:
            self._discard_channels(req, made)
            task_status.started()
            await self.reply(req.r_c_uid, SHProcessCreateResponse(ref=req.tag, err=LSErr.FAIL, err_info=str(exc)))
            return
        task_status.started()
        try:
            await self._supervise(req, mp, made)
        finally:
            self.procs.pop(mp.p_uid, None)
            with trio.CancelScope(shield=True):
                await stop_process(mp.proc)

    def _make_channels(self, req: SHProcessCreate, made: MadeChannels) -> None:
        """Its GS-return channel and PIPE channels, as GS asked; CreateFailed at the first failure."""
        if req.gs_ret_chan_msg is not None:
            made.gs_ret = self.create_channel(req.gs_ret_chan_msg)
            if made.gs_ret.err != LSErr.SUCCESS:
                raise CreateFailed(made.gs_ret.err_info)
        for stream, pipe_msg in (("stdin", req.stdin_msg), ("stdout", req.stdout_msg), ("stderr", req.stderr_msg)):
            if pipe_msg is not None:
                made.pipes[stream] = self.create_channel(pipe_msg)
        failed = [r for r in made.pipes.values() if r.err != LSErr.SUCCESS]
        if failed:
            raise CreateFailed(failed[0].err_info)

    def _discard_channels(self, req: SHProcessCreate, made: MadeChannels) -> None:
        """Remove the channels made for a process that did not start: they were its alone, and GS
        enters none of them on FAIL, so nothing else would remove them before the runtime ends. A
        channel create that failed made nothing (its c_uid may be another's: left alone)."""
        made_msgs = [(req.gs_ret_chan_msg, made.gs_ret)]
        made_msgs += [(getattr(req, f"{stream}_msg"), resp) for stream, resp in made.pipes.items()]
        for msg, resp in made_msgs:
            if msg is not None and resp is not None and resp.err == LSErr.SUCCESS:
                destroy_channel(self.channels.pop(msg.c_uid))

    async def _start(self, req: SHProcessCreate, made: MadeChannels) -> ManagedProcess:
        """Start it from the fork server if it can, else exec it; enter it in LS's table."""
        # What the OS takes as Python holds it (undecodable bytes as surrogates: os_text).
        argv = [fs_str(a) for a in (req.exe, *req.args)]
        env = self._environment(req, made)
        allowed = os.sched_getaffinity(0)
        if req.cpus and not set(req.cpus) <= allowed:
            raise CreateFailed(
                f"CPUs {sorted(set(req.cpus) - allowed)} are not CPUs of node {self.config.node_idx} "
                f"(it has {sorted(allowed)})"
            )
        try:
            proc = await self._spawn(req, argv, env, fs_str(req.rundir))
        except (OSError, subprocess.SubprocessError) as exc:
            raise CreateFailed(f"cannot start {shown(argv[0])}: {os_error_text(exc)}") from None
        give_back_fd_limit(proc.pid)
        if (
            req.cpus
        ):  # [choice] set once it runs: a moment on any CPU, against a start that keeps the fork server's speed
            os.sched_setaffinity(proc.pid, req.cpus)
        pipes = {stream: r.desc for stream, r in made.pipes.items()}
        mp = ManagedProcess(p_uid=req.t_p_uid, create_tag=req.tag, proc=proc, pipes=pipes)
        self.procs[req.t_p_uid] = mp
        log.info("process started p_uid=%d pid=%d argv=%s", req.t_p_uid, proc.pid, argv)
        if argv[0] == sys.executable:  # a Python program, usually the head: ready the fork server for its children
            self.forkserver.prestart(argv[0], env, exited=mp.exited)
        return mp

    def _environment(self, req: SHProcessCreate, made: MadeChannels) -> dict[str, str]:
        """LS's environment, the request's, and the launch parameters of this process (spec §1.4)."""
        env = dict(os.environ)
        env.update(fs_env(req.env, req.env_raw))
        gs_ret_msg = req.gs_ret_chan_msg
        params = msgspec.structs.replace(
            self.infra.params,
            my_puid=req.t_p_uid,
            gs_ret_cd=made.gs_ret.desc if made.gs_ret else "",
            gs_ret_cuid=gs_ret_msg.c_uid if made.gs_ret and gs_ret_msg else 0,
            parent_puid=int(env.get("DRAGON_PARENT_PUID", "0") or 0),
        )
        env.update(params.to_env())
        return env

    async def _spawn(
        self, req: SHProcessCreate, argv: list[str], env: dict[str, str], rundir: str
    ) -> trio.Process | ServedChild:
        as_ls = req.user is None and req.group is None and req.umask == -1  # what the fork server can do
        if as_ls and self.forkserver.ready_for(argv, env):
            served = await self._start_served(req, argv, env, rundir)
            if served is not None:
                return served
        stdio = [_stdin_option(req.stdin), _out_option(req.stdout), _out_option(req.stderr, is_stderr=True)]
        try:
            return await trio.lowlevel.open_process(
                argv,
                cwd=rundir or None,
                env=env,
                stdin=stdio[0],
                stdout=stdio[1],
                stderr=stdio[2],
                user=req.user,
                group=req.group,
                umask=req.umask,
            )
        finally:
            for fd in stdio:
                if fd >= 0:  # a file opened for a stdio option: the child has its own copy now
                    os.close(fd)

    async def _supervise(self, req: SHProcessCreate, mp: ManagedProcess, made: MadeChannels) -> None:
        """Feed its stdin, forward its output, answer SUCCESS, and report its exit (spec §3.1 a3)."""
        proc = mp.proc
        async with trio.open_nursery() as nursery:
            if proc.stdin is not None and "stdin" in mp.pipes:
                nursery.start_soon(self._feed_stdin_from_channel, mp, mp.pipes["stdin"], req.initial_stdin)
            elif proc.stdin is not None:
                mp.stdin = ForwardedStdin(mp.p_uid, proc.stdin)
                if req.initial_stdin:
                    mp.stdin.put(req.initial_stdin)
                nursery.start_soon(mp.stdin.feed)
            nursery.start_soon(self._forward_all_output, mp)
            await self.reply(req.r_c_uid, made.response(req, pid=proc.pid))
            code = await proc.wait()
            mp.exited.set()
            with trio.move_on_after(DRAIN_AFTER_EXIT_S):
                await mp.forwarders_done.wait()
            log.info("process exited p_uid=%d pid=%d code=%d", mp.p_uid, proc.pid, code)
            if self.monitor is None or not self.monitor.exited.is_set():
                exit_msg = SHProcessExit(p_uid=mp.p_uid, creation_msg_tag=mp.create_tag, exit_code=code)
                with trio.move_on_after(5):
                    # After output to the launcher, the exit goes the same way, and the launcher hands it
                    # to GS once that output is written: a join never returns before the output of the
                    # process it waited for is out (spawn's order, where the process writes itself).
                    via_la = mp.printed and self.config.exits_follow_output
                    await (self.to_la if via_la else self.to_gs).send(exit_msg)
            nursery.cancel_scope.cancel()

    async def _start_served(
        self, req: SHProcessCreate, argv: list[str], env: dict[str, str], rundir: str
    ) -> ServedChild | None:
        """Start a start-method child from the fork server; None if it could not (exec it then)."""
        child_fds, ours = _stdio_fds(req)
        try:
            pid = await self.forkserver.start(argv, env, rundir or os.getcwd(), child_fds)
        except ForkServerFailed as exc:
            log.info("the fork server did not start p_uid=%d (%s): exec'ing it", req.t_p_uid, exc)
            for fd in ours:
                if fd is not None:
                    os.close(fd)
            return None
        finally:
            for fd in set(child_fds):
                os.close(fd)
        stdin, stdout, stderr = (None if fd is None else trio.lowlevel.FdStream(fd) for fd in ours)
        return ServedChild(pid, stdin, stdout, stderr)

    def forward_input(self, msg: SHFwdInput) -> None:
        """Spec §4.5: queue the input for the process's stdin; with `confirm`, answer SHFwdInputErr
        once it is written or has failed (services/_stdin.py)."""
        mp = self.procs.get(msg.t_p_uid)
        try:
            if mp is None or mp.exited.is_set():
                raise InputRefused(f"no running process p_uid {msg.t_p_uid}")
            if mp.stdin is None:
                raise InputRefused(f"the stdin of process {msg.t_p_uid} is not forwarded (it is /dev/null or PIPE)")
            chunk = mp.stdin.put(msg.input, confirm=msg.confirm)
        except InputRefused as exc:
            log.warning("SHFwdInput for p_uid=%d dropped: %s", msg.t_p_uid, exc)
            if msg.confirm:
                self.nursery.start_soon(
                    self.reply, msg.r_c_uid, SHFwdInputErr(ref=msg.tag, err=LSErr.FAIL, err_info=str(exc))
                )
            return
        if msg.confirm:
            self.nursery.start_soon(self._confirm_input, msg, mp.stdin, chunk)

    async def _confirm_input(self, msg: SHFwdInput, stdin: ForwardedStdin, chunk: Chunk) -> None:
        problem = await stdin.confirmed(chunk)
        await self.reply(
            msg.r_c_uid, SHFwdInputErr(ref=msg.tag, err=LSErr.FAIL if problem else LSErr.SUCCESS, err_info=problem)
        )

    def kill(self, msg: SHProcessKill) -> SHProcessKillResponse:
        mp = self.procs.get(msg.t_p_uid)
        if mp is None or mp.exited.is_set():
            return SHProcessKillResponse(
                ref=msg.tag, err=LSErr.FAIL, err_info=f"no running process p_uid {msg.t_p_uid}", exited=True
            )
        mp.hide_stderr = mp.hide_stderr or msg.hide_stderr
        try:
            mp.proc.send_signal(msg.sig)
        except (OSError, ValueError) as exc:
            return SHProcessKillResponse(ref=msg.tag, err=LSErr.FAIL, err_info=str(exc))
        return SHProcessKillResponse(ref=msg.tag, err=LSErr.SUCCESS)


def _stdio_fds(req: SHProcessCreate) -> tuple[tuple[int, int, int], tuple[int | None, int | None, int | None]]:
    """Spec §5.5 as fds, for a child that is not exec'd: (its fds 0-2, our ends of its pipes or None)."""
    made: list[int] = []
    try:
        if req.stdin == DEVNULL:
            child_in, our_in = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), None
            made.append(child_in)
        else:
            child_in, our_in = os.pipe()
            made += [child_in, our_in]
        outs: list[tuple[int, int | None]] = []
        for opt, is_stderr in ((req.stdout, False), (req.stderr, True)):
            if opt == DEVNULL:
                outs.append((os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC), None))
            elif is_stderr and opt == STDOUT:
                outs.append((outs[0][0], None))
                continue
            elif isinstance(opt, str):
                outs.append((os.open(opt, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644), None))
            else:
                r, w = os.pipe()
                outs.append((w, r))
                made.append(r)
            made.append(outs[-1][0])
    except BaseException:
        for fd in made:
            os.close(fd)
        raise
    return (child_in, outs[0][0], outs[1][0]), (our_in, outs[0][1], outs[1][1])


def _stdin_option(opt: StdioOption) -> int:
    """Spec §5.5: stdin is /dev/null or a pipe LS feeds from SHFwdInput."""
    return subprocess.DEVNULL if opt == DEVNULL else subprocess.PIPE


def _out_option(opt: StdioOption, *, is_stderr: bool = False) -> int:
    """Spec §5.5 for stdout/stderr: /dev/null, merged into stdout, a file (appended), or forwarded.

    PIPE (a channel the parent reads) is forwarded to the launcher for now.
    """
    if opt == DEVNULL:
        return subprocess.DEVNULL
    if is_stderr and opt == STDOUT:
        return subprocess.STDOUT
    if isinstance(opt, str):
        return os.open(opt, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    return subprocess.PIPE
