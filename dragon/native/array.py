"""`dragon.native.Array`: a fixed-length ctypes array in the runtime's shared memory, shared by every
process it is passed to (its home, lock and pickling: `dragon.native.shared`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from dragon.mp.homes import Home
from dragon.native.shared import CType, Fields, Shared, element_type, is_structure, make_lock


class Array(Shared):
    """`Array(typecode_or_type, size_or_initializer, lock=True)`: `size` zero elements, or the
    elements of an initializer, in shared memory, as the reference runtime's (and
    `multiprocessing.Array`; the lock is on by default in both).

    Indexing, slicing (a list; bytes for "c", str for "u", as ctypes gives), assignment to an
    element or a slice of the same length, `len` and iteration read and write in place; an element of
    an Array of Structures is a view whose fields read and write in place. A "c" array has `.value`
    (bytes up to the first NUL) and `.raw` (all its bytes), both settable; a "u" array `.value`.
    Pickles to other processes (the copy shares the memory). With `lock` (see
    `dragon.native.shared`): `get_lock`, `acquire`, `release`, `with array:`.

    Raises TypeError for an unknown typecode or a type that cannot be shared, or an initializer ctypes
    cannot take, ValueError for a negative size, AttributeError for a `lock` that is none, and what
    Global Services answers if it cannot make the record (RuntimeNotRunning outside a runtime).
    """

    _KIND = "Array"

    def __init__(
        self, typecode_or_type: str | CType, size_or_initializer: int | Iterable[Any], lock: object = True
    ) -> None:
        etype = element_type(typecode_or_type)
        if isinstance(size_or_initializer, int):
            if size_or_initializer < 0:
                raise ValueError(f"an Array's size must be 0 or more, not {size_or_initializer}")
            size, init = size_or_initializer, None
        else:
            items = list(size_or_initializer)
            size = len(items)
            init = (etype * size)(*items)  # its errors before the record is made
        lock_obj = make_lock(lock)
        self._etype, self._len = etype, size
        self._setup(self._home(etype * size), etype * size, lock_obj)
        if init is not None:
            self._write(bytes(init))

    def __reduce__(self) -> tuple[Callable[..., Array], tuple[Any, ...]]:
        self._obj()  # ValueError if closed
        return (_rebuild, (self._etype, self._len, self._lock, self._map.home.pickle_refs()))

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int | slice) -> Any:
        if not is_structure(self._etype):
            return self._obj()[index]
        if isinstance(index, slice):
            return [self._element(i) for i in range(self._len)[index]]
        return self._element(range(self._len)[index])  # IndexError out of range, as a list's

    def _element(self, i: int) -> Fields:
        return Fields(lambda: self._obj()[i], lambda edit: self._store(lambda obj: edit(obj[i])))

    def __setitem__(self, index: int | slice, value: Any) -> None:
        if (obj := self._map.obj) is not None:  # this node's: a store in shared memory
            obj[index] = value
        else:
            self._store(lambda obj: obj.__setitem__(index, value))

    def __iter__(self) -> Iterator[Any]:
        for i in range(self._len):
            yield self[i]

    @property
    def value(self) -> Any:
        """A "c" array's bytes up to the first NUL (a "u" array's str); settable."""
        return self._chars().value

    @value.setter
    def value(self, value: Any) -> None:
        self._chars()
        self._store(lambda obj: setattr(obj, "value", value))

    @property
    def raw(self) -> bytes:
        """A "c" array's bytes, all of them; settable."""
        return bytes(self._chars("c").raw)

    @raw.setter
    def raw(self, value: bytes) -> None:
        self._chars("c")
        self._store(lambda obj: setattr(obj, "raw", value))

    def _chars(self, codes: str = "cu") -> Any:
        obj = self._obj()
        if getattr(self._etype, "_type_", "") not in codes:
            kinds = " or ".join(repr(c) for c in codes)
            raise AttributeError(
                f"only an Array of typecode {kinds} has this attribute, not one of {self._etype.__name__}"
            )
        return obj

    def __repr__(self) -> str:
        what = "closed" if self._map.closed else f"{self[:]!r}"
        return (
            f"<dragon.native.Array {self._etype.__name__}[{self._len}] {what} c_uid={self._c_uid} lock={self._lock!r}>"
        )


def _rebuild(etype: CType, size: int, lock: Any, refs: list[tuple[int, str]]) -> Array:
    """Unpickle an Array: attach to its record with the reference its pickling took."""
    array = Array.__new__(Array)
    array._etype, array._len = etype, size
    array._setup(Home.rebuild(refs, across=True), etype * size, lock)
    return array
