"""How forwarded output is cut into whole lines (services/_output.py), without processes.

The end-to-end behaviour (many writers, spawn's multiset of lines) is tests/e2e/test_output_lines.py.
"""

from __future__ import annotations

import collections
import fcntl
import math
import os
import threading
from typing import Final

from hypothesis import given
from hypothesis import strategies as st

from dragon.services._output import MAX_MESSAGE, PARTIAL_LINE_S, LineAssembler, split_at_lines, write_lines

F_SETPIPE_SZ: Final = 1031  # fcntl.F_SETPIPE_SZ, named in Python 3.10+ on Linux only

chunks = st.lists(st.binary(max_size=300).map(lambda b: b.replace(b"x", b"\n")), max_size=30)


@given(chunks, st.integers(min_value=1, max_value=64))
def test_messages_are_the_stream_cut_at_newlines(parts: list[bytes], limit: int) -> None:
    """Whatever the reads were, the messages joined are the stream; each ends at a newline unless
    it is a piece of a line longer than the limit, or the last one, flushed."""
    lines = LineAssembler(max_message=limit)
    messages = []
    for now, part in enumerate(parts):
        messages += lines.feed(part, float(now))
    flushed = lines.flush()
    assert b"".join(messages + flushed) == b"".join(parts)
    for msg in messages:
        assert 0 < len(msg) <= limit
        assert msg.endswith(b"\n") or len(msg) == limit
        if not msg.endswith(b"\n"):
            assert b"\n" not in msg  # only a line too long to fit is cut
    assert all(len(m) <= limit for m in flushed)


def test_a_partial_line_waits_for_its_end() -> None:
    lines = LineAssembler()
    assert lines.feed(b"one\ntw", 10.0) == [b"one\n"]
    assert lines.deadline == 10.0 + PARTIAL_LINE_S
    assert lines.feed(b"o and", 10.01) == []
    assert lines.deadline == 10.0 + PARTIAL_LINE_S  # the deadline counts from the line's first byte
    assert lines.feed(b" three\nfo", 10.02) == [b"two and three\n"]
    assert lines.deadline == 10.02 + PARTIAL_LINE_S  # a new partial line
    assert lines.flush() == [b"fo"]
    assert lines.deadline == math.inf
    assert lines.feed(b"whole\n", 11.0) == [b"whole\n"] and lines.deadline == math.inf


def test_messages_carry_many_lines_up_to_the_limit() -> None:
    lines = LineAssembler()
    data = b"".join(b"%05d " % i + b"y" * 200 + b"\n" for i in range(1000))
    messages = lines.feed(data, 0.0)
    assert b"".join(messages) == data and len(messages) == math.ceil(len(data) / MAX_MESSAGE) + 0
    assert all(len(m) <= MAX_MESSAGE and m.endswith(b"\n") for m in messages)


def test_a_line_longer_than_a_message_is_cut() -> None:
    lines = LineAssembler(max_message=10)
    assert lines.feed(b"a" * 25, 0.0) == [b"a" * 10, b"a" * 10]
    assert lines.flush() == [b"a" * 5]


def test_split_keeps_lines_whole_when_they_fit() -> None:
    data = b"ab\ncd\nef\n"
    assert split_at_lines(data, 6) == [b"ab\ncd\n", b"ef\n"]
    assert split_at_lines(data, 100) == [data]
    assert split_at_lines(b"abcdefg\nh", 4) == [b"abcd", b"efg\n", b"h"]


def test_write_lines_to_a_shared_pipe_keeps_lines_whole() -> None:
    """Another writer of the same pipe (the program itself, under the background runtime) never lands
    inside a line of a large message: write_lines writes whole-line pieces of at most PIPE_BUF.

    The pipe is made as small as Linux allows (one page), so the large message cannot go in at once;
    with one plain write of it, the other writer's lines land inside its lines.
    """
    r, w = os.pipe()
    fcntl.fcntl(w, F_SETPIPE_SZ, 4096)
    message = b"".join(b"big %d " % i + b"z" * (i * 37 % 3000) + b"\n" for i in range(300))
    small = [b"small %d\n" % i for i in range(3000)]
    got = bytearray()

    def read_all() -> None:
        while chunk := os.read(r, 65536):
            got.extend(chunk)

    def write_small() -> None:
        for line in small:
            os.write(w, line)

    try:
        threads = [threading.Thread(target=read_all), threading.Thread(target=write_small)]
        for t in threads:
            t.start()
        for _ in range(5):
            write_lines(w, message)
        threads[1].join()
        os.close(w)
        threads[0].join()
    finally:
        os.close(r)
    expected = collections.Counter(message.splitlines(keepends=True) * 5 + small)
    assert collections.Counter(bytes(got).splitlines(keepends=True)) == expected
