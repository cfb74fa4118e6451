"""How an item of a queue of the "dragon" start method becomes a message, and back (`encode`, `decode`).

Items are pickled with `multiprocessing.reduction.ForkingPickler`'s reducers, so shared memory,
Connections and locks travel as under spawn, and a `bytes` item travels as it is, unpickled (its
first byte tells it from a pickle): that spares a large item two copies into fresh memory. Each
thread reuses one pickler and its buffer (`_Encoder`), since making them per item is most of the cost
of a small item. Used by the queues (`dragon.mp.queues`) and by the Pool's task and result queues
(`dragon.mp.pool`). Plain Python: children import it.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import threading
from multiprocessing.reduction import ForkingPickler
from typing import Any, Final

PROTOCOL: Final = pickle.HIGHEST_PROTOCOL


class _Encoder:
    """This thread's pickler and its output buffer, reused from message to message.

        Cheaper than `ForkingPickler.dumps`, which copies copyreg's whole dispatch table for every call,
        and than a fresh pickler and buffer per message. The table here is a plain dict (`_pickler`): the
        C pickler consults it for every object that is not of a built-in type, and a dict costs nothing
    there where a ChainMap costs a Python call and a KeyError. The dict is rebuilt when either
        table grows, which is what `ForkingPickler.register` and `copyreg.pickle` do for a new type (a
        new reducer for a type that had one already is seen once either table grows again)."""

    __slots__ = ("buf", "busy", "copyreg", "extra", "pickler")

    def __init__(self) -> None:
        self.busy = False  # a reducer is encoding something itself, in the middle of a dump
        self.renew()

    def renew(self) -> None:
        """A new pickler and buffer; `extra`, `copyreg`: the sizes of the two tables now (-1 asks for
        a renewal)."""
        self.buf = io.BytesIO()
        self.pickler = _pickler(self.buf)
        self.extra, self.copyreg = len(_EXTRA_REDUCERS), len(copyreg.dispatch_table)


def _pickler(buf: io.BytesIO) -> pickle.Pickler:
    """A pickler with ForkingPickler's reducers over copyreg's, as one dict."""
    pickler = pickle.Pickler(buf, PROTOCOL)
    pickler.dispatch_table = {**copyreg.dispatch_table, **_EXTRA_REDUCERS}
    return pickler


_THREAD: Final = threading.local()  # .encoder: this thread's _Encoder
_EXTRA_REDUCERS: Final[dict[type, Any]] = ForkingPickler._extra_reducers  # type: ignore[attr-defined]


_PLAIN: Final = frozenset({str, int, float, bool, type(None)})
"""Types that pickle without any reducer: `pickle.dumps` (all C) gives the same bytes faster."""
_SMALL: Final = 1 << 16
"""Above this, `pickle.dumps` spends most of its time growing and then copying its output (page
faults in fresh memory); a BytesIO's buffer, lent out as is, costs a tenth of that."""
_PICKLE: Final = 0x80
"""The first byte of every pickle of protocol 2 or later (the PROTO opcode)."""


def encode(obj: object) -> bytes | memoryview:
    """The message for `obj`: a `bytes` object that does not start with byte 0x80 travels as it is
    (no pickling on either side: for 1 MiB that saves two copies into fresh memory, a third of the
    cost of a message); anything else is pickled as `ForkingPickler.dumps` would. Raises what
    pickling raises."""
    if type(obj) is bytes and obj and obj[0] != _PICKLE:
        return obj
    return pickled(obj)


def pickled(obj: object) -> bytes | memoryview:
    """`obj` pickled as `ForkingPickler.dumps` would (faster: see `_Encoder`). Raises what pickling
    raises. For a message that must be a pickle whatever `obj` is (a Connection's `send`)."""
    kind = type(obj)
    if kind in _PLAIN and (kind is not str or len(obj) < _SMALL):  # type: ignore[arg-type]
        return pickle.dumps(obj, PROTOCOL)
    try:
        enc: _Encoder = _THREAD.encoder
    except AttributeError:
        enc = _THREAD.encoder = _Encoder()
    if enc.busy:  # re-entered from a reducer: this dump gets a pickler of its own
        buf = io.BytesIO()
        _pickler(buf).dump(obj)
        return buf.getbuffer()
    if enc.extra != len(_EXTRA_REDUCERS) or enc.copyreg != len(copyreg.dispatch_table):
        enc.renew()
    buf = enc.buf
    enc.busy = True
    try:
        enc.pickler.dump(obj)
        if buf.tell() > _SMALL:  # lend the buffer out as it is (see _SMALL); the next dump gets a new one
            enc.extra = -1
            return buf.getbuffer()
        return buf.getvalue()
    finally:
        enc.busy = False
        if enc.extra >= 0:
            enc.pickler.clear_memo()
            buf.seek(0)
            buf.truncate()


def decode(data: bytes) -> Any:
    """The object a message of `encode` stands for."""
    return pickle.loads(data) if data[0] == _PICKLE else data
