"""Global Services' tables as plain data: records by id, ids by name, the next id (spec §4.2-§4.4, §5).

Processes, channels and pools follow the same rules (spec §5.4): GS gives the next id of its range,
a name is unique per kind and stays with its object when it dies, a create with a name taken by a
live object is refused (ALREADY, with that object), a failed create removes its entry and name, and
a lookup is by name if one is given, else by id. `Table` is those rules once, so the handlers in
services/_gs_*.py only say what is particular to their kind. No I/O: tested without processes.

[choice] A name whose owner is DEAD may be reused (the reference never frees names, which makes "the
same" named channel impossible to re-create): the name then points at the new object.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import trio

from dragon.descriptors import ChannelDescriptor, ObjectState, PoolDescriptor, ProcessDescriptor
from dragon.ids import (
    FIRST_GS_CUID,
    FIRST_GS_MUID,
    FIRST_USER_PUID,
    GS_PROCESS_NAME,
    GS_PUID,
    LAUNCHER_PUID,
    default_channel_name,
    default_pool_name,
    default_process_name,
)
from dragon.messages import SHProcessExit


class Described(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def state(self) -> ObjectState: ...


class Record(Protocol):
    @property
    def desc(self) -> Described: ...


RecordT = TypeVar("RecordT", bound=Record)


@dataclass
class ProcRecord:
    desc: ProcessDescriptor
    head: bool = False
    exited: trio.Event = field(default_factory=trio.Event)
    early_exit: SHProcessExit | None = None
    """An SHProcessExit that overtook the create response (spec §4.2): handled after it."""
    pipe_cuids: list[int] = field(default_factory=list)


@dataclass
class ChanRecord:
    desc: ChannelDescriptor
    ref_count: bool = False
    refs: int = 1
    record: bool = False
    """The home of a synchronization object (ChannelOptions.record) that GS tells of process exits;
    cleared once GS found it of a kind no death changes (`records.never_reclaimed`)."""


@dataclass
class PoolRecord:
    desc: PoolDescriptor


class Table(Generic[RecordT]):
    """The objects of one kind GS ever made: by id (never removed unless a create failed) and by name."""

    def __init__(self, kind: str, id_field: str, first_id: int, default_name: Callable[[int], str]) -> None:
        self.kind = kind  # "process": in texts such as "no process named x"
        self.id_field = id_field  # "p_uid": in texts such as "no p_uid 5"
        self.next_id = first_id
        self.default_name = default_name
        self._by_id: dict[int, RecordT] = {}
        self._by_name: dict[str, int] = {}

    def new_id(self) -> int:
        """The next id of GS's range for this kind; never given twice."""
        uid = self.next_id
        self.next_id += 1
        return uid

    def taken(self, name: str) -> RecordT | None:
        """The live object that holds `name`, if any (a create with it answers ALREADY)."""
        rec = self.lookup(None, name) if name else None
        return rec if rec is not None and rec.desc.state != ObjectState.DEAD else None

    def add(self, uid: int, rec: RecordT, *, named: bool = True) -> None:
        """Enter a new object (`named`: also findable by its name)."""
        self._by_id[uid] = rec
        if named:
            self._by_name[rec.desc.name] = uid

    def remove(self, uid: int) -> None:
        """Undo `add` after a create failed (spec §4.2: "entry and name deleted")."""
        rec = self._by_id.pop(uid)
        if self._by_name.get(rec.desc.name) == uid:
            del self._by_name[rec.desc.name]

    def get(self, uid: int | None) -> RecordT | None:
        return None if uid is None else self._by_id.get(uid)

    def lookup(self, uid: int | None, name: str) -> RecordT | None:
        """By `name` if one is given, else by `uid` (spec §4: "t_p_uid or user_name")."""
        if name:
            return self.get(self._by_name.get(name))
        return self.get(uid)

    def unknown(self, uid: int | None, name: str) -> str:
        """What a failed `lookup` answers (spec §5.4: `no process named X` / `no p_uid N`)."""
        return f"no {self.kind} named {name}" if name else f"no {self.id_field} {uid}"

    def __contains__(self, uid: int) -> bool:
        return uid in self._by_id

    def __getitem__(self, uid: int) -> RecordT:
        return self._by_id[uid]

    def __iter__(self) -> Iterator[int]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def records(self) -> list[RecordT]:
        return list(self._by_id.values())

    def items(self) -> list[tuple[int, RecordT]]:
        return list(self._by_id.items())


class Registry:
    """GS's three tables. GS is in its own process table (spec §1.1; services/global_services.py)."""

    def __init__(self, gs_pid: int | None = None) -> None:
        self.procs = Table[ProcRecord]("process", "p_uid", FIRST_USER_PUID, default_process_name)
        self.chans = Table[ChanRecord]("channel", "c_uid", FIRST_GS_CUID, default_channel_name)
        self.pools = Table[PoolRecord]("pool", "m_uid", FIRST_GS_MUID, default_pool_name)
        gs = ProcessDescriptor(
            p_uid=GS_PUID,
            p_p_uid=LAUNCHER_PUID,
            name=GS_PROCESS_NAME,
            state=ObjectState.ACTIVE,
            pid=os.getpid() if gs_pid is None else gs_pid,
        )
        self.procs.add(GS_PUID, ProcRecord(gs))
