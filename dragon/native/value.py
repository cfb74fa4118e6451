"""`dragon.native.Value`: one ctypes value in the runtime's shared memory, shared by every process
it is passed to (its home, lock and pickling: `dragon.native.shared`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dragon.mp.homes import Home
from dragon.native.shared import CType, Fields, Shared, element_type, is_structure, make_lock


class Value(Shared):
    """`Value(typecode_or_type, value=None, lock=False)`: a number, a character or a Structure of
    them in shared memory, as the reference runtime's (and `multiprocessing.Value`, whose lock is on
    by default).

    `.value` reads and writes it in place (a Structure: a view whose fields read and write in place;
    set it from a tuple or a Structure). `value` None leaves it zero. Pickles to other processes
    (a `Channel` message, a `Process` argument of the start method): the copy shares the memory.
    With `lock` (see `dragon.native.shared`): `get_lock`, `acquire`, `release`, `with value:`; a
    read-modify-write such as `v.value += 1` from several processes needs it.

    Raises TypeError for an unknown typecode or a type that cannot be shared, what ctypes raises
    for an initial value of the wrong type, AttributeError for a `lock` that is none, and what Global
    Services answers if it cannot make the record (RuntimeNotRunning outside a runtime).
    """

    _KIND = "Value"

    def __init__(self, typecode_or_type: str | CType, value: object = None, lock: object = False) -> None:
        ctype = element_type(typecode_or_type)
        initial = None if value is None else self._converted(ctype, value)  # its errors before the record is made
        lock_obj = make_lock(lock)
        self._type = ctype
        self._setup(self._home(ctype), ctype, lock_obj)
        if initial is not None:
            self._write(bytes(initial))

    @staticmethod
    def _converted(ctype: CType, value: object) -> Any:
        """`value` as a ctypes object of `ctype` (TypeError if it cannot be one)."""
        if isinstance(value, ctype):
            return value
        if is_structure(ctype):
            if not isinstance(value, tuple):
                raise TypeError(f"a {ctype.__name__} Value is set from a tuple or a {ctype.__name__}, not {value!r}")
            return ctype(*value)
        return ctype(value)

    def __reduce__(self) -> tuple[Callable[..., Value], tuple[Any, ...]]:
        self._obj()  # ValueError if closed
        return (_rebuild, (self._type, self._lock, self._map.home.pickle_refs()))

    @property
    def value(self) -> Any:
        if is_structure(self._type):
            return Fields(self._obj, self._store)
        return self._obj().value

    @value.setter
    def value(self, value: object) -> None:
        if is_structure(self._type):
            self._write(bytes(self._converted(self._type, value)))
        elif (obj := self._map.obj) is not None:  # this node's: a store in shared memory
            obj.value = value
        else:
            self._store(lambda obj: setattr(obj, "value", value))

    def __repr__(self) -> str:
        what = "closed" if self._map.closed else f"value={self.value!r}"
        return f"<dragon.native.Value {self._type.__name__} {what} c_uid={self._c_uid} lock={self._lock!r}>"


def _rebuild(ctype: CType, lock: Any, refs: list[tuple[int, str]]) -> Value:
    """Unpickle a Value: attach to its record with the reference its pickling took."""
    value = Value.__new__(Value)
    value._type = ctype
    value._setup(Home.rebuild(refs, across=True), ctype, lock)
    return value
