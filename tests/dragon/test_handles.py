"""What the two flavours' handles share (dragon.client.handles), checked without a runtime: state read from
GS's descriptor, identity, and the errors raised before any request."""

from __future__ import annotations

import pickle

import pytest

import dragon.aio
import dragon.native
from dragon.descriptors import ChannelDescriptor, ObjectState, PoolDescriptor, ProcessDescriptor
from dragon.errors import ChannelDestroyed, InvalidArgument


def dead_process(p_uid: int = 7, ecode: int = 3) -> ProcessDescriptor:
    return ProcessDescriptor(p_uid=p_uid, name="worker", state=ObjectState.DEAD, ecode=ecode, pid=1234)


def test_a_process_not_started_has_no_ids_in_either_flavour() -> None:
    native = dragon.native.Process("/bin/true", name="n")
    aio = dragon.aio.Process(None, "/bin/true", name="a")  # type: ignore[arg-type]  # no request is made
    assert (native.p_uid, native.pid, native.name) == (None, None, "n")
    assert (aio.p_uid, aio.pid, aio.name, aio.returncode) == (None, None, "a", None)
    assert repr(native) == "<Process '/bin/true' not started>"
    assert repr(aio) == "<aio.Process '/bin/true' not started>"
    assert native != dragon.native.Process("/bin/true")  # handles on nothing are never equal
    with pytest.raises(InvalidArgument, match="call start\\(\\) first"):
        native.join()
    with pytest.raises(InvalidArgument, match="cannot be pickled"):
        pickle.dumps(native)


def test_a_handle_from_a_descriptor_knows_the_exit_code_gs_recorded() -> None:
    native = dragon.native.Process._attached(dead_process())
    aio = dragon.aio.Process._attached(None, dead_process())  # type: ignore[arg-type]
    for proc, kind in ((native, "Process"), (aio, "aio.Process")):
        assert (proc.p_uid, proc.puid, proc.pid, proc.name) == (7, 7, 1234, "worker")
        assert repr(proc) == f"<{kind} p_uid=7 name='worker' pid=1234 exited 3>"
    assert native.returncode == 3 and aio.returncode == 3  # known: no request
    assert native == dragon.native.Process._attached(dead_process()) and hash(native) == hash(aio)
    assert native != aio  # a blocking and an async handle are different objects
    copy = pickle.loads(pickle.dumps(native))
    assert (copy.p_uid, copy.returncode) == (7, 3)


def test_a_channel_gs_recorded_as_destroyed_gets_no_handle() -> None:
    desc = ChannelDescriptor(c_uid=5, m_uid=1, name="c", sdesc="/nowhere", state=ObjectState.DEAD)
    with pytest.raises(ChannelDestroyed, match="channel c \\(c_uid 5\\) was destroyed"):
        dragon.native.Channel(desc)
    with pytest.raises(ChannelDestroyed):
        dragon.aio.Channel(None, desc)  # type: ignore[arg-type]


def test_pool_handles_read_the_descriptor_and_map_nothing_until_asked() -> None:
    desc = PoolDescriptor(m_uid=9, name="p", sdesc="/nowhere", state=ObjectState.ACTIVE)
    native, aio = dragon.native.Pool(desc), dragon.aio.Pool(None, desc)  # type: ignore[arg-type]
    for pool, kind in ((native, "Pool"), (aio, "aio.Pool")):
        assert (pool.m_uid, pool.name, pool.descriptor) == (9, "p", desc)
        assert repr(pool) == f"<{kind} m_uid=9 name='p'>"
        pool.close()  # nothing mapped: nothing to do
    assert pickle.loads(pickle.dumps(native)).descriptor == desc
