"""The message catalog: every message round-trips, every message has a receiver, bad frames are ProtocolError.

Instances are built from the field types, so a message added to `AnyMsg` is tested without editing this file.
"""

from __future__ import annotations

import logging
import types
import typing
from enum import IntEnum
from typing import Any

import msgspec
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from dragon import messages as m
from dragon.errors import ProtocolError
from dragon.transport import MessageChannel

ACTOR_UNIONS: dict[str, object] = {
    "LSStdinInbound": m.LSStdinInbound,
    "LAStdoutInbound": m.LAStdoutInbound,
    "GSStdoutOutbound": m.GSStdoutOutbound,
    "LSInbound": m.LSInbound,
    "GSInbound": m.GSInbound,
    "LAInbound": m.LAInbound,
    "ProcessInbound": m.ProcessInbound,
    "ToolInbound": m.ToolInbound,
    "FEInbound": m.FEInbound,
    "BEInbound": m.BEInbound,
    "TAStdinInbound": m.TAStdinInbound,
    "TAStdoutOutbound": m.TAStdoutOutbound,
}
ANY_DECODER: msgspec.msgpack.Decoder[m.AnyMsg] = msgspec.msgpack.Decoder(m.AnyMsg)
ENCODER = msgspec.msgpack.Encoder()


def sample(tp: Any) -> Any:
    """A value of type `tp` that differs from every default, so omit_defaults cannot hide a field."""
    origin = typing.get_origin(tp)
    if tp is int:
        return 7
    if tp is str:
        return "sample"
    if tp is bool:
        return True
    if tp is float:
        return 7.5
    if tp is bytes:
        return b"\xff\xfe not utf-8"  # bytes fields must survive byte-identical
    if isinstance(tp, type) and issubclass(tp, IntEnum):
        return list(tp)[-1]
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return build(tp)
    if origin is list:
        return [sample(typing.get_args(tp)[0])]
    if origin is tuple:
        return tuple(sample(arg) for arg in typing.get_args(tp))
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp)
        return {sample(key_tp): sample(value_tp)}
    if origin is typing.Literal:
        return typing.get_args(tp)[-1]
    if origin in (typing.Union, types.UnionType):
        return sample(next(arm for arm in typing.get_args(tp) if arm is not type(None)))
    raise AssertionError(f"test helper cannot build a sample of {tp!r}: teach sample() this type")


def build(cls: type[msgspec.Struct]) -> Any:
    """An instance of `cls` with every field, optional ones included, set to a sample value."""
    return cls(**{f.name: sample(f.type) for f in msgspec.structs.fields(cls)})


def unions_of(cls: type) -> list[str]:
    return [name for name, union in ACTOR_UNIONS.items() if cls in typing.get_args(union)]


def test_catalog_is_complete() -> None:
    names = {cls.__name__ for cls in m.ALL_MESSAGES}
    assert len(names) == len(m.ALL_MESSAGES)
    for name in ("BENodeIdxSH", "SHDumpState", "GSProcessJoinListResponse", "SHFwdOutput", "SHPoolDestroyResponse"):
        assert name in names
    # every Msg subclass defined in the module is in the catalog (the bases excepted)
    defined = {v for v in vars(m).values() if isinstance(v, type) and issubclass(v, m.Msg)}
    assert defined - set(m.ALL_MESSAGES) == {m.Msg, m.Request, m.Response}


@pytest.mark.parametrize("cls", m.ALL_MESSAGES, ids=lambda c: c.__name__)
def test_every_message_has_a_receiver(cls: type[m.Msg]) -> None:
    assert unions_of(cls), f"{cls.__name__} is in no per-actor union: nobody could receive it"


@pytest.mark.parametrize("union", ACTOR_UNIONS.values(), ids=list(ACTOR_UNIONS))
def test_actor_unions_are_part_of_the_catalog(union: object) -> None:
    assert set(typing.get_args(union)) <= set(m.ALL_MESSAGES)


@pytest.mark.parametrize("cls", m.ALL_MESSAGES, ids=lambda c: c.__name__)
def test_round_trip(cls: type[m.Msg]) -> None:
    msg = build(cls)
    frame = ENCODER.encode(msg)
    assert m.decode(ANY_DECODER, frame, where="test") == msg
    for name in unions_of(cls):
        decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(ACTOR_UNIONS[name])
        assert m.decode(decoder, frame, where=name) == msg
    minimal = msgspec.convert({"_tc": cls.__name__, **required_fields(cls)}, cls)
    assert m.decode(ANY_DECODER, ENCODER.encode(minimal), where="test") == minimal


def required_fields(cls: type[msgspec.Struct]) -> dict[str, Any]:
    return {f.name: msgspec.to_builtins(sample(f.type)) for f in msgspec.structs.fields(cls) if f.required}


def test_forwarded_output_is_byte_identical() -> None:
    data = bytes(range(256))
    msg = m.SHFwdOutput(p_uid=2**32, fd_num=m.FdNum.STDERR, data=data, pid=1234)
    decoded = m.decode(ANY_DECODER, ENCODER.encode(msg), where="test")
    assert isinstance(decoded, m.SHFwdOutput) and decoded.data == data


def test_wire_format_uses_spec_names() -> None:
    msg = m.GSProcessJoin(tag=5, p_uid=2**32, r_c_uid=2**63, t_p_uid=2**32 + 1, timeout=1_000_000)
    assert msgspec.msgpack.decode(ENCODER.encode(msg)) == {
        "_tc": "GSProcessJoin",
        "tag": 5,
        "p_uid": 2**32,
        "r_c_uid": 2**63,
        "t_p_uid": 2**32 + 1,
        "timeout": 1_000_000,
    }


BAD_FRAMES = {
    "garbage": b"\xc1\xc1 this is not msgpack",
    "truncated": ENCODER.encode(build(m.GSProcessCreate))[:-5],
    "unknown _tc": msgspec.msgpack.encode({"_tc": "GSFlyToTheMoon", "tag": 1}),
    "bad enum value": msgspec.msgpack.encode({"_tc": "GSProcessCreateResponse", "ref": 1, "err": 99}),
    "not a map": msgspec.msgpack.encode([1, 2, 3]),
}


@pytest.mark.parametrize("frame", BAD_FRAMES.values(), ids=list(BAD_FRAMES))
def test_bad_frames_are_protocol_errors(frame: bytes) -> None:
    with pytest.raises(ProtocolError, match="on GS channel") as info:
        m.decode(ANY_DECODER, frame, where="GS channel")
    assert repr(frame[:16])[:-1] in str(info.value)  # the text carries an excerpt of the bytes
    assert isinstance(info.value.__cause__, msgspec.DecodeError)


def test_message_for_another_actor_is_a_protocol_error() -> None:
    decoder: msgspec.msgpack.Decoder[m.GSInbound] = msgspec.msgpack.Decoder(m.GSInbound)
    frame = ENCODER.encode(m.BENodeIdxSH(node_idx=0))  # meant for LS's stdin
    with pytest.raises(ProtocolError, match="BENodeIdxSH") as info:
        m.decode(decoder, frame, where="GS channel")
    assert "GS channel" in str(info.value) and "frame: b'" in str(info.value)


def test_excerpt_is_short() -> None:
    frame = b"\xc1" * 10_000
    with pytest.raises(ProtocolError) as info:
        m.decode(ANY_DECODER, frame, where="LS stdin")
    assert len(str(info.value)) < 500 and "10000 bytes in all" in str(info.value)


@given(st.binary(max_size=512))
def test_random_bytes_raise_only_protocol_error(frame: bytes) -> None:
    try:
        m.decode(ANY_DECODER, frame, where="fuzz")
    except ProtocolError:
        pass


@given(st.sampled_from(m.ALL_MESSAGES), st.data())
def test_corrupted_messages_raise_only_protocol_error(cls: type[m.Msg], data: st.DataObject) -> None:
    frame = bytearray(ENCODER.encode(build(cls)))
    pos = data.draw(st.integers(0, len(frame) - 1))
    frame[pos] = data.draw(st.integers(0, 255))
    try:
        m.decode(ANY_DECODER, bytes(frame[: data.draw(st.integers(0, len(frame)))]), where="fuzz")
    except ProtocolError:
        pass


class StreamFrames(trio.abc.Channel[bytes]):
    """A trivial framing (4-byte length prefix) over a byte stream, enough to test MessageChannel."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._buf = bytearray()

    async def send(self, value: bytes) -> None:
        await self._stream.send_all(len(value).to_bytes(4, "big") + value)

    async def _read_exactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = await self._stream.receive_some()
            if not chunk:
                raise trio.EndOfChannel
            self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    async def receive(self) -> bytes:
        size = int.from_bytes(await self._read_exactly(4), "big")
        return await self._read_exactly(size)

    async def aclose(self) -> None:
        await self._stream.aclose()


async def test_message_channel_over_a_stream() -> None:
    with trio.fail_after(30):
        left, right = trio.testing.memory_stream_pair()
        ls_side: MessageChannel[m.LSStdinInbound] = MessageChannel(
            StreamFrames(left), m.LSStdinInbound, name="LS stdin"
        )
        la_side: MessageChannel[m.LAStdoutInbound] = MessageChannel(
            StreamFrames(right), m.LAStdoutInbound, name="LS stdout"
        )
        async with ls_side, la_side:
            await la_side.send(m.BENodeIdxSH(tag=1, node_idx=0, ip_addrs=["127.0.0.1"]))
            assert await ls_side.receive() == m.BENodeIdxSH(tag=1, node_idx=0, ip_addrs=["127.0.0.1"])
            ping = build(m.SHPingBE)
            await ls_side.send(ping)  # a duplex pipe: LS sends what LA accepts
            assert await la_side.receive() == ping
            await la_side.send(m.BEHalted())
            assert isinstance(await ls_side.receive(), m.BEHalted)
            await ls_side.send(m.GSTeardown())  # not something LA accepts on LS's stdout
            with pytest.raises(ProtocolError, match="LS stdout"):
                await la_side.receive()


async def test_message_channel_garbage_and_end_of_channel() -> None:
    with trio.fail_after(30):
        frames = MemoryFrames()
        chan: MessageChannel[m.GSInbound] = MessageChannel(frames, m.GSInbound, name="GS channel")
        await chan.send(m.GSTeardown(tag=3))
        assert await chan.receive() == m.GSTeardown(tag=3)
        await frames.send(b"\x00garbage\xff")
        with pytest.raises(ProtocolError, match=r"GS channel.*garbage"):
            await chan.receive()
        await frames.close_sender()
        with pytest.raises(trio.EndOfChannel):
            await chan.receive()
        await chan.aclose()
        assert frames.closed


class MemoryFrames(trio.abc.Channel[bytes]):
    """A loop-back channel of frames built on a trio memory channel pair."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[bytes](10)
        self.closed = False

    async def send(self, value: bytes) -> None:
        await self._send.send(value)

    async def receive(self) -> bytes:
        return await self._receive.receive()

    async def close_sender(self) -> None:
        await self._send.aclose()

    async def aclose(self) -> None:
        self.closed = True
        await self._send.aclose()
        await self._receive.aclose()


async def test_message_channel_logs_each_message_with_its_link(caplog: pytest.LogCaptureFixture) -> None:
    """Every service link is a MessageChannel: `dragon --log-level debug` reads the protocol from these
    lines (the sending direction of a duplex pipe has its own name), and env values stay out of them."""
    frames = MemoryFrames()
    chan: MessageChannel[m.AnyMsg] = MessageChannel(frames, m.AnyMsg, name="LS stdout", send_name="LS stdin")
    with caplog.at_level(logging.DEBUG, logger="dragon.messages"):
        await chan.send(m.BEHalted(tag=4))
        await chan.receive()
        await chan.send(msgspec.structs.replace(build(m.SHProcessCreate), env={"TOKEN": "secret-value"}))
        await chan.receive()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "sent BEHalted on LS stdin: BEHalted(tag=4)"
    assert lines[1] == "received BEHalted on LS stdout: BEHalted(tag=4)"
    assert "env={'TOKEN': '...'}" in lines[2] and "secret-value" not in lines[2]
