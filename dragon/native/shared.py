"""What `Value` and `Array` share: a ctypes object in the ring of a runtime record, an optional lock,
pickling to other processes, and the end of this process's hold.

The home of the object is a record (`dragon.transport.records`) made through Global Services with a
ring sized to the object (`dragon.mp.homes.Home`, kind "Value" or "Array"): GS ref-counts it like a
queue's channels (pickling takes a reference the unpickled copy inherits; close, garbage collection or
exit gives it back; the last one destroys it, and the runtime's teardown destroys whatever is left) and
`dragon status` lists it. The bytes are a ctypes object made on the ring (`Record.data`,
`from_buffer`): a read or a write is a load or a store in shared memory, without a message or a lock,
as in the standard library's `multiprocessing.sharedctypes`. (The reference runtime keeps the bytes in
a channel's one message and takes and puts it back for every access: that serializes each access, and
costs two channel operations each.)

**Across nodes** (issue 17): a copy on another node than the record's reads and writes through the
home (`dragon.mp.at_home`: "data_read", "data_write"). A read fetches the object's bytes (a copy: a
Structure's or an element's `Fields` fetch again at every access); a write sends only the bytes the
assignment stores, found by making it twice here, on a copy of all zero bits and one of all one
bits (a byte the assignment stores is the same in both; **[choice]** no read first, so a write is one
message and never puts back bytes another process changed meanwhile; a ctypes bit field, which
stores part of a byte, is not supported there). The lock (`get_lock()`) is the object's RLock, which
works across nodes itself.

`lock=True` (or None) gives the object the "dragon" start method's `RLock`, as the reference gives a
recursive lock: `get_lock()`, `acquire()`, `release()` and `with obj:`. It pickles as that lock does (the
standard library's only while spawning a process; the runtime-backed one of issue 15 anywhere). An
object with `acquire` and `release` is taken as the lock; `lock=False` gives none (no `get_lock`).

This process never hands out a ctypes object that shares the ring (a Structure or an element of an
Array of Structures is a `Fields` view, which finds the object again at every access): closing the
record needs every view of its memory released, and one the user kept would make that fail.
"""

from __future__ import annotations

import ctypes
import multiprocessing
from collections.abc import Callable
from multiprocessing import sharedctypes, util
from typing import Any, ClassVar, Final, TypeAlias

from dragon.mp.homes import Home

CType: TypeAlias = Any
"""A ctypes type (typeshed types ctypes' metaclass operations, `from_buffer`, `T * n`, loosely)."""

TYPECODES: Final[dict[str, CType]] = sharedctypes.typecode_to_type  # type: ignore[attr-defined]  # not in typeshed
"""The standard library's typecodes, which the reference runtime's are."""

_POINTERS: Final = frozenset("zZPO")
"""The `_type_` codes of the simple ctypes types that hold a pointer (or a Python object): meaningless
in another process."""


def element_type(typecode_or_type: str | CType) -> CType:
    """The ctypes type of a typecode ("i", "d", "c" ...: those of `multiprocessing.sharedctypes`) or of
    a ctypes type: a simple type or a Structure of simple fields, without pointers. TypeError otherwise
    (the reference runtime raises AttributeError; TypeError is what ctypes and the standard library
    raise for something that is no type)."""
    if isinstance(typecode_or_type, str):
        if typecode_or_type not in TYPECODES:
            raise TypeError(f"unknown typecode {typecode_or_type!r}: use one of {''.join(TYPECODES)}")
        return TYPECODES[typecode_or_type]
    if _is_simple(typecode_or_type):
        return typecode_or_type
    if isinstance(typecode_or_type, type) and issubclass(typecode_or_type, ctypes.Structure):
        bad = [name for name, ftype, *_ in typecode_or_type._fields_ if not _is_simple(ftype)]
        if bad:
            raise TypeError(
                f"{typecode_or_type.__name__} fields {bad} are not simple ctypes types without pointers: "
                "a shared Structure holds numbers and characters only"
            )
        return typecode_or_type
    raise TypeError(
        f"{typecode_or_type!r} is neither a typecode ({''.join(TYPECODES)}) nor a ctypes type "
        "(a simple one such as ctypes.c_int, or a Structure of them)"
    )


def _is_simple(t: CType) -> bool:
    return isinstance(t, type) and issubclass(t, ctypes._SimpleCData) and getattr(t, "_type_", "P") not in _POINTERS


def is_structure(t: CType) -> bool:
    return issubclass(t, ctypes.Structure)


def make_lock(lock: object) -> Any:
    """The lock an object gets for `lock` (see the module docstring); None for none."""
    if lock is False:
        return None
    if lock is True or lock is None:
        return multiprocessing.get_context("dragon").RLock()
    if callable(getattr(lock, "acquire", None)) and callable(getattr(lock, "release", None)):
        return lock
    raise AttributeError(f"lock must be True, False or a lock (with acquire and release), not {lock!r}")


class Fields:
    """A Structure in shared memory, seen through its owner: `view.x` reads field x there,
    `view.x = 1` writes it. `get` finds the structure at every access (ValueError once closed);
    `store(edit)` runs an assignment on it (`Shared._store`)."""

    __slots__ = ("_get", "_store")

    def __init__(self, get: Callable[[], Any], store: Callable[[Callable[[Any], None]], None]) -> None:
        object.__setattr__(self, "_get", get)
        object.__setattr__(self, "_store", store)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)

    def __setattr__(self, name: str, value: object) -> None:
        self._store(lambda struct: setattr(struct, name, value))

    def __repr__(self) -> str:
        struct = self._get()
        fields = ", ".join(f"{name}={getattr(struct, name)!r}" for name, *_ in struct._fields_)
        return f"{type(struct).__name__}({fields})"


class _Mapping:
    """The ring of one record and the ctypes object on it, closed in the order that lets the record's
    memory go: the object, then the view, then the hold (`Home.close`)."""

    __slots__ = ("closed", "ctype", "home", "obj", "view")

    def __init__(self, home: Home, ctype: CType) -> None:
        self.home, self.ctype, self.closed = home, ctype, False
        self.view: memoryview | None = None
        self.obj: Any = None
        if home.away is None:  # else the bytes are read and written at the home (module docstring)
            self.view = home.rec.data()
            self.obj = ctype.from_buffer(self.view)

    def close(self) -> None:
        if self.closed:
            return
        self.closed, self.obj = True, None
        if self.view is not None:
            self.view.release()
        self.home.close()


def _stored_runs(zeros: bytes, ones: bytes) -> list[tuple[int, bytes]]:
    """The (offset, bytes) runs where an assignment made on all-zero and all-one copies agrees: what it
    stored."""
    runs: list[tuple[int, bytes]] = []
    start = -1
    for i, (a, b) in enumerate(zip(zeros, ones, strict=True)):
        if a == b and start < 0:
            start = i
        elif a != b and start >= 0:
            runs.append((start, zeros[start:i]))
            start = -1
    if start >= 0:
        runs.append((start, zeros[start:]))
    return runs


class Shared:
    """The base of `Value` and `Array`: `_obj()` is the ctypes object (ValueError once closed)."""

    _KIND: ClassVar[str]
    _map: _Mapping
    _lock: Any

    def _setup(self, home: Home, ctype: CType, lock: Any) -> None:
        mapping = _Mapping(home, ctype)
        self._map, self._lock = mapping, lock
        # Before the Home's own finalizer (-10): the record cannot close while the view is exported.
        self._release = util.Finalize(self, mapping.close, exitpriority=-5)

    @classmethod
    def _home(cls, ctype: CType) -> Home:
        return Home.create(cls._KIND, data_bytes=ctypes.sizeof(ctype))

    def _obj(self) -> Any:
        """The ctypes object in shared memory; on another node than the record's a copy of it, read
        from the home now (assign through `_store`)."""
        mapping = self._map
        if mapping.closed:
            raise ValueError(f"{type(self).__name__} {self._c_uid} is closed in this process")
        if mapping.home.away is not None:
            size = ctypes.sizeof(mapping.ctype)
            return mapping.ctype.from_buffer_copy(mapping.home.away.call("data_read", 0, size))
        return mapping.obj

    def _store(self, edit: Callable[[Any], None]) -> None:
        """Run assignment `edit` on the object (on another node than the record's: send the bytes it
        stores to the home, see the module docstring)."""
        mapping = self._map
        if mapping.home.away is None or mapping.closed:
            edit(self._obj())
            return
        size = ctypes.sizeof(mapping.ctype)
        zeros, ones = mapping.ctype.from_buffer_copy(bytes(size)), mapping.ctype.from_buffer_copy(b"\xff" * size)
        edit(zeros)
        edit(ones)
        mapping.home.away.call("data_write", _stored_runs(bytes(zeros), bytes(ones)))

    def _write(self, data: bytes) -> None:
        """Store `data` at the object's start."""
        if self._map.home.away is not None:
            self._map.home.away.call("data_write", [(0, data)])
        else:
            self._obj()
            assert self._map.view is not None
            self._map.view[: len(data)] = data

    @property
    def _c_uid(self) -> int:
        return self._map.home.c_uid

    def close(self) -> None:
        """Give this process's hold on the object back now (it lives on in the processes that still
        hold it; the last one destroys it). Later accesses raise ValueError. Idempotent; also done
        when the object is collected and at exit."""
        self._release()

    # ----------------------------------------------------------------------------- the lock

    def get_lock(self) -> Any:
        """The object's lock. AttributeError if it was made with `lock=False`."""
        if self._lock is None:
            raise AttributeError(f"{type(self).__name__} made with lock=False has no lock")
        return self._lock

    def acquire(self, *args: Any) -> bool:
        """`get_lock().acquire(...)`."""
        return bool(self.get_lock().acquire(*args))

    def release(self) -> None:
        """`get_lock().release()`."""
        self.get_lock().release()

    def __enter__(self) -> Any:
        return self.get_lock().__enter__()

    def __exit__(self, *exc: object) -> Any:
        return self._lock.__exit__(*exc)
