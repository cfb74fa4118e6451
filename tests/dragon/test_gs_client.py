"""The blocking GS client (dragon/client/gs_client.py) against a fake Global Services thread: handshake,
request envelope, replies matched by `ref` across threads, timeouts, and a runtime that goes away.

The fake GS is two real shm channels and a thread; no runtime is started. The end-to-end behaviour
under `dragon` is in tests/e2e/test_native_api.py.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from dragon import _rundir
from dragon.client import gs_client as _gs_client
from dragon.client import requests as _gs_requests
from dragon.descriptors import ArgMode
from dragon.errors import ProtocolError, RequestTimeout, RuntimeNotRunning
from dragon.ids import LaunchParameters
from dragon.messages import (
    GSInbound,
    GSPingProc,
    GSProcessList,
    GSProcessListResponse,
    GSProcessQueryResponse,
    ProcessQueryErr,
)
from dragon.transport import Channel, ChannelError, run_prefix

MY_PUID = 2**32 + 7
RET_CUID = 2**63 + 5

enc = msgspec.msgpack.Encoder()


class FakeGS:
    """The GS channel and one process's GS-return channel, with GS's side of them."""

    def __init__(self) -> None:
        prefix = run_prefix("t" + uuid.uuid4().hex[:8])
        self.gs = Channel.create(prefix + "c2", capacity=64, block_size=1024)
        self.ret = Channel.create(prefix + "cret", capacity=64, block_size=1024)
        self.dec = msgspec.msgpack.Decoder(GSInbound)
        self.params = LaunchParameters(
            mode="single", my_puid=MY_PUID, gs_cd=self.gs.name, gs_ret_cd=self.ret.name, gs_ret_cuid=RET_CUID
        )

    def reply(self, msg: msgspec.Struct) -> None:
        self.ret.send(enc.encode(msg))

    def serve(self, answer: Callable[[list[GSProcessList]], None], batch: int, stop: threading.Event) -> None:
        """Collect up to `batch` requests (or what came within 0.2 s), then hand them to `answer`."""
        while not stop.is_set():
            got: list[GSProcessList] = []
            while len(got) < batch:
                try:
                    msg = self.dec.decode(self.gs.recv(timeout=0.2))
                except Exception:
                    break
                assert isinstance(msg, GSProcessList)
                got.append(msg)
            if got:
                answer(got)

    def destroy(self) -> None:
        for chan in (self.gs, self.ret):
            try:
                chan.destroy()
            except ChannelError:  # destroyed already (by a test), or this handle closed
                chan.close()


@pytest.fixture
def fake() -> Iterator[FakeGS]:
    gs = FakeGS()
    yield gs
    gs.destroy()


@pytest.fixture
def client(fake: FakeGS) -> Iterator[_gs_client.GSClient]:
    fake.reply(GSPingProc(mode=ArgMode.PYTHON_IMMEDIATE, argdata=b"args"))
    c = _gs_client.GSClient.connect(fake.params)
    yield c
    c.close()


def test_handshake_is_read_and_kept_before_any_reply(client: _gs_client.GSClient) -> None:
    assert client.handshake == GSPingProc(mode=ArgMode.PYTHON_IMMEDIATE, argdata=b"args")
    assert (client.p_uid, client.r_c_uid) == (MY_PUID, RET_CUID)


def test_channel_mode_handshake_keeps_the_next_message_as_argdata(fake: FakeGS) -> None:
    fake.reply(GSPingProc(mode=ArgMode.PYTHON_CHANNEL))
    fake.ret.send(b"pickled arguments")
    c = _gs_client.GSClient.connect(fake.params)
    assert c.handshake.argdata == b"pickled arguments"
    c.close()


def test_a_reply_before_the_handshake_is_a_protocol_error(fake: FakeGS) -> None:
    fake.reply(GSProcessListResponse(ref=1))
    with pytest.raises(ProtocolError, match="expected GSPingProc"):
        _gs_client.GSClient.connect(fake.params)


def test_replies_out_of_order_reach_the_right_threads(fake: FakeGS, client: _gs_client.GSClient) -> None:
    """8 threads x 25 calls; the fake answers each batch in reverse order, with the request's
    envelope in the answer, so a reply filed for the wrong caller shows."""
    stop = threading.Event()

    def answer(reqs: list[GSProcessList]) -> None:
        for r in reversed(reqs):
            fake.reply(GSProcessListResponse(ref=r.tag, plist=[r.tag, r.p_uid, r.r_c_uid]))

    server = threading.Thread(target=fake.serve, args=(answer, 8, stop))
    server.start()
    seen: list[int] = []
    failures: list[BaseException] = []

    def caller() -> None:
        try:
            for _ in range(25):
                resp = client.call(GSProcessList(p_uid=0, r_c_uid=0), GSProcessListResponse, timeout_s=30)
                tag, p_uid, r_c_uid = resp.plist
                assert (resp.ref, p_uid, r_c_uid) == (tag, MY_PUID, RET_CUID)
                seen.append(tag)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    stop.set()
    server.join(10)
    assert failures == []
    assert sorted(seen) == list(range(1, 201)), "tags are unique per process"


def test_a_late_reply_after_a_timeout_is_dropped(fake: FakeGS, client: _gs_client.GSClient) -> None:
    with pytest.raises(RequestTimeout, match=r"GSProcessList within 0\.2 s"):
        client.call(GSProcessList(p_uid=0, r_c_uid=0), GSProcessListResponse, timeout_s=0.2)
    late = fake.dec.decode(fake.gs.recv(timeout=5))
    fake.reply(GSProcessListResponse(ref=late.tag, plist=[0]))
    stop = threading.Event()

    def answer(reqs: list[GSProcessList]) -> None:
        for r in reqs:
            fake.reply(GSProcessListResponse(ref=r.tag, plist=[1]))

    server = threading.Thread(target=fake.serve, args=(answer, 1, stop))
    server.start()
    try:
        assert client.call(GSProcessList(p_uid=0, r_c_uid=0), GSProcessListResponse, timeout_s=10).plist == [1]
    finally:
        stop.set()
        server.join(10)


def test_a_reply_of_the_wrong_type_is_a_protocol_error(fake: FakeGS, client: _gs_client.GSClient) -> None:
    def answer() -> None:
        req = fake.dec.decode(fake.gs.recv(timeout=10))
        fake.reply(GSProcessQueryResponse(ref=req.tag, err=ProcessQueryErr.SUCCESS))

    t = threading.Thread(target=answer)
    t.start()
    with pytest.raises(ProtocolError, match="GSProcessQueryResponse, not GSProcessListResponse"):
        client.call(GSProcessList(p_uid=0, r_c_uid=0), GSProcessListResponse, timeout_s=10)
    t.join()


@pytest.mark.parametrize("which", ["gs", "ret"])
def test_a_call_waiting_on_a_destroyed_runtime_ends(fake: FakeGS, client: _gs_client.GSClient, which: str) -> None:
    """Nobody answers, then the runtime destroys its channels: the waiting call raises, promptly."""
    timer = threading.Timer(0.3, getattr(fake, which).destroy)
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(RuntimeNotRunning, match="the runtime is gone"):
        client.call(GSProcessList(p_uid=0, r_c_uid=0), GSProcessListResponse)
    assert time.monotonic() - t0 < 0.3 + 2 * _gs_client.LIVENESS_SLICE_S + 5
    timer.join()


def test_a_call_when_the_gs_process_died_ends(fake: FakeGS) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    fake.reply(GSPingProc())
    to_gs, ret = Channel.attach(fake.gs.name), Channel.attach(fake.ret.name)
    c = _gs_client.GSClient(fake.params, to_gs, ret, gs_pid=dead.pid)
    with pytest.raises(RuntimeNotRunning, match=f"pid {dead.pid}, has exited"):
        c.call(GSProcessList(p_uid=0, r_c_uid=0), GSProcessListResponse)
    c.close()


def test_a_slow_reply_on_a_node_without_global_services_is_waited_for(fake: FakeGS) -> None:
    """A node other than the primary has no GS process (its runtime.json says gs_pid 0): a reply that
    takes longer than a liveness slice is waited for (it raised ValueError for pid 0 before)."""
    fake.reply(GSPingProc())
    to_gs, ret = Channel.attach(fake.gs.name), Channel.attach(fake.ret.name)
    c = _gs_client.GSClient(fake.params, to_gs, ret, gs_pid=0)

    def answer_late() -> None:
        req = fake.dec.decode(fake.gs.recv(timeout=10))
        time.sleep(_gs_client.LIVENESS_SLICE_S * 1.5)  # the slow reply itself is what is tested
        fake.reply(GSProcessListResponse(ref=req.tag, plist=[7]))

    t = threading.Thread(target=answer_late)
    t.start()
    try:
        assert c.call(GSProcessList(p_uid=0, r_c_uid=0), GSProcessListResponse, timeout_s=10).plist == [7]
    finally:
        t.join(10)
        c.close()


def test_connect_to_a_runtime_that_is_gone(fake: FakeGS) -> None:
    params = fake.params
    fake.destroy()
    with pytest.raises(RuntimeNotRunning, match="GS channel does not exist"):
        _gs_client.GSClient.connect(params)


def test_no_handshake_does_not_hang(fake: FakeGS, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_gs_client, "HANDSHAKE_TIMEOUT_S", 0.2)
    with pytest.raises(RuntimeNotRunning, match="no GSPingProc handshake"):
        _gs_client.GSClient.connect(fake.params)


def test_without_launch_parameters_says_to_run_under_dragon(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in [v for v in os.environ if v.startswith("DRAGON_")]:
        monkeypatch.delenv(var)
    with pytest.raises(RuntimeNotRunning, match=r"run the program with `dragon prog\.py`"):
        _gs_client.launch_parameters()


def test_a_process_that_inherited_a_connection_is_refused(fake: FakeGS, monkeypatch: pytest.MonkeyPatch) -> None:
    for var, value in fake.params.to_env().items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv(_gs_client.CONNECTED_PID_VAR, str(os.getppid()))
    with pytest.raises(RuntimeNotRunning, match="is not a managed process"):
        _gs_client.launch_parameters()
    monkeypatch.delenv("DRAGON_GS_RET_CD")
    monkeypatch.delenv(_gs_client.CONNECTED_PID_VAR)
    with pytest.raises(RuntimeNotRunning, match="no GS-return channel"):
        _gs_client.launch_parameters()


def test_launch_parameters_are_inherited_unless_local_services_is_the_parent(
    fake: FakeGS, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A child a managed process made itself (subprocess) has its parent's launch parameters, even
    before the parent connected (no CONNECTED_PID_VAR yet): only Local Services' children are managed."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    run_id = _rundir.new_run_id()
    _rundir.create_run_dir(run_id)
    for var, value in msgspec.structs.replace(fake.params, run_id=run_id).to_env().items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv(_gs_client.CONNECTED_PID_VAR, raising=False)
    for ls_pid, inherited in ((os.getppid(), False), (os.getpid(), True)):
        _rundir.write_info(
            _rundir.RunInfo(
                run_id=run_id,
                launcher_pid=0,
                ls_pid=ls_pid,
                gs_pid=0,
                pgid=0,
                gs_cd="",
                la_cd="",
                shep_cd="",
                started=0.0,
            )
        )
        if inherited:
            with pytest.raises(_gs_client.InheritedLaunchParameters, match="is not Local Services"):
                _gs_client.launch_parameters()
        else:
            assert _gs_client.launch_parameters().my_puid == MY_PUID


def test_timeout_conversion_to_microseconds() -> None:
    assert [_gs_requests.timeout_us(t) for t in (None, 0, -1, 0.1, 2.5)] == [-1, 0, 0, 100_000, 2_500_000]


def test_an_external_client_asks_as_the_launcher_on_a_reply_channel_of_its_own() -> None:
    """`GSClient.external` (the owner of a background runtime, dragon.client.background): no handshake,
    p_uid 0, r_c_uid in the user-managed range, its reply channel found by name, destroyed on close."""
    from dragon import _rundir
    from dragon.ids import FIRST_USER_MANAGED_CUID

    run_id = "t" + uuid.uuid4().hex[:7]
    gs = Channel.create(run_prefix(run_id) + "c2", capacity=8, block_size=1024)
    try:
        info = _rundir.RunInfo(
            run_id=run_id,
            launcher_pid=0,
            ls_pid=0,
            gs_pid=os.getpid(),
            pgid=0,
            gs_cd=gs.name,
            la_cd="",
            shep_cd="",
            started=0.0,
        )
        client = _gs_client.GSClient.external(info)
        assert client.handshake == GSPingProc() and client.p_uid == 0
        assert FIRST_USER_MANAGED_CUID <= client.r_c_uid < 2 * FIRST_USER_MANAGED_CUID
        reply_name = _rundir.channel_name(run_id, client.r_c_uid)

        def answer() -> None:
            req = msgspec.msgpack.decode(gs.recv(timeout=30), type=GSInbound)
            assert isinstance(req, GSProcessList)
            with Channel.attach(_rundir.channel_name(run_id, req.r_c_uid)) as reply:  # as GS's reply_once
                reply.send(enc.encode(GSProcessListResponse(ref=req.tag, plist=[req.p_uid, req.r_c_uid])))

        server = threading.Thread(target=answer)
        server.start()
        resp = client.call(GSProcessList(p_uid=5, r_c_uid=5), GSProcessListResponse, timeout_s=30)
        server.join()
        assert resp.plist == [0, client.r_c_uid]
        client.close()
        with pytest.raises(ChannelError):
            Channel.attach(reply_name)
    finally:
        gs.destroy()
