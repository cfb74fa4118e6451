"""Global Services' tables (services/_registry.py) without processes: ids, names, lookups (spec §5.4)."""

from __future__ import annotations

import pytest

from dragon.descriptors import ObjectState, PoolDescriptor, ProcessDescriptor
from dragon.ids import FIRST_GS_CUID, FIRST_GS_MUID, FIRST_USER_PUID, GS_PROCESS_NAME, GS_PUID
from dragon.services._registry import PoolRecord, ProcRecord, Registry


def proc(p_uid: int, name: str, state: ObjectState = ObjectState.ACTIVE) -> ProcRecord:
    return ProcRecord(ProcessDescriptor(p_uid=p_uid, p_p_uid=0, name=name, state=state))


def test_each_kind_counts_its_ids_from_the_start_of_gs_range() -> None:
    reg = Registry(gs_pid=123)
    assert [reg.procs.new_id(), reg.procs.new_id()] == [FIRST_USER_PUID, FIRST_USER_PUID + 1]
    assert reg.chans.new_id() == FIRST_GS_CUID
    assert reg.pools.new_id() == FIRST_GS_MUID


def test_gs_is_in_its_own_process_table_by_id_and_name() -> None:
    reg = Registry(gs_pid=123)
    gs = reg.procs.lookup(None, GS_PROCESS_NAME)
    assert gs is not None and gs is reg.procs[GS_PUID]
    assert gs.desc.pid == 123 and gs.desc.state == ObjectState.ACTIVE
    assert reg.procs.taken(GS_PROCESS_NAME) is gs  # nobody else can take its name
    assert list(reg.procs) == [GS_PUID]


def test_lookup_is_by_name_when_one_is_given_else_by_id() -> None:
    reg = Registry()
    reg.procs.add(FIRST_USER_PUID, proc(FIRST_USER_PUID, "worker"))
    assert reg.procs.lookup(None, "worker") is reg.procs[FIRST_USER_PUID]
    assert reg.procs.lookup(FIRST_USER_PUID, "") is reg.procs[FIRST_USER_PUID]
    assert reg.procs.lookup(FIRST_USER_PUID, "other") is None  # the name wins
    assert reg.procs.lookup(None, "") is None


def test_unknown_says_what_was_looked_for() -> None:
    reg = Registry()
    assert reg.procs.unknown(5, "") == "no p_uid 5"
    assert reg.procs.unknown(None, "x") == "no process named x"
    assert reg.chans.unknown(7, "") == "no c_uid 7"
    assert reg.pools.unknown(None, "p") == "no pool named p"


def test_a_name_is_taken_while_its_owner_lives_and_free_once_it_is_dead() -> None:
    reg = Registry()
    rec = proc(FIRST_USER_PUID, "worker")
    reg.procs.add(FIRST_USER_PUID, rec)
    assert reg.procs.taken("worker") is rec
    assert reg.procs.taken("") is None  # no name asked for: nothing to collide with
    rec.desc.state = ObjectState.DEAD
    assert reg.procs.taken("worker") is None
    reg.procs.add(FIRST_USER_PUID + 1, proc(FIRST_USER_PUID + 1, "worker"))  # reused [choice]
    assert reg.procs.lookup(None, "worker") is reg.procs[FIRST_USER_PUID + 1]
    assert reg.procs.get(FIRST_USER_PUID) is rec  # the dead one is kept, by id


def test_remove_undoes_a_failed_create_id_and_name() -> None:
    reg = Registry()
    m_uid = reg.pools.new_id()
    reg.pools.add(m_uid, PoolRecord(PoolDescriptor(m_uid=m_uid, name="p", sdesc="", state=ObjectState.PENDING)))
    reg.pools.remove(m_uid)
    assert m_uid not in reg.pools and reg.pools.lookup(None, "p") is None
    assert reg.pools.new_id() == m_uid + 1  # an id is never given twice
    with pytest.raises(KeyError):
        reg.pools.remove(m_uid)


def test_remove_keeps_a_name_that_points_elsewhere() -> None:
    reg = Registry()
    reg.procs.add(FIRST_USER_PUID, proc(FIRST_USER_PUID, "w"))
    reg.procs.add(FIRST_USER_PUID + 1, proc(FIRST_USER_PUID + 1, "w"), named=False)
    reg.procs.remove(FIRST_USER_PUID + 1)
    assert reg.procs.lookup(None, "w") is reg.procs[FIRST_USER_PUID]


def test_an_object_entered_without_its_name_is_found_by_id_only() -> None:
    reg = Registry()
    reg.procs.add(FIRST_USER_PUID, proc(FIRST_USER_PUID, "hidden"), named=False)
    assert reg.procs.lookup(None, "hidden") is None
    assert reg.procs.lookup(FIRST_USER_PUID, "") is not None
