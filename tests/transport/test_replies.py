"""Replies matched to requests by ref (transport/_replies.py): filing, late replies, a dead link."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from dragon.transport import LinkDown, PendingReplies
from dragon.transport._replies import HasRef

WAIT_S = 10.0  # guard against hangs only


class Reply:
    def __init__(self, ref: int, text: str = "") -> None:
        self.ref, self.text = ref, text


def test_a_reply_type_is_anything_with_an_int_ref() -> None:
    reply: HasRef = Reply(1)  # checked by mypy: the protocol the table is generic over
    assert reply.ref == 1


async def test_each_waiter_gets_the_reply_with_its_ref_whatever_the_order() -> None:
    pending: PendingReplies[Reply] = PendingReplies("the test link")
    got: dict[int, str] = {}

    async def requester(tag: int, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with pending.expect(tag) as waiter:
            task_status.started()
            got[tag] = (await waiter.reply()).text

    with trio.fail_after(WAIT_S):
        async with trio.open_nursery() as nursery:
            for tag in (1, 2, 3):
                await nursery.start(requester, tag)
            assert len(pending) == 3
            for tag in (3, 1, 2):
                assert pending.file(Reply(tag, f"answer {tag}"))
    assert got == {1: "answer 1", 2: "answer 2", 3: "answer 3"}
    assert len(pending) == 0


async def test_a_reply_filed_before_the_requester_waits_is_kept() -> None:
    pending: PendingReplies[Reply] = PendingReplies("the test link")
    with pending.expect(7) as waiter:
        assert pending.file(Reply(7, "early"))  # e.g. it came while the request was being sent
        with trio.fail_after(WAIT_S):
            assert (await waiter.reply()).text == "early"


async def test_a_late_reply_after_a_timeout_is_dropped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    pending: PendingReplies[Reply] = PendingReplies("the test link")
    with trio.move_on_after(0.01) as scope, pending.expect(5) as waiter:
        await waiter.reply()
    assert scope.cancelled_caught
    assert len(pending) == 0
    with caplog.at_level(logging.WARNING, logger="dragon.messages"):
        assert not pending.file(Reply(5, "late"))
    assert "a reply nobody waits for on the test link (ref=5)" in caplog.text


def test_a_late_reply_where_late_is_normal_is_dropped_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    pending: PendingReplies[Reply] = PendingReplies("the test link", late_is_normal=True)
    with caplog.at_level(logging.DEBUG, logger="dragon.messages"):
        assert not pending.file(Reply(5, "late"))
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]
    assert "a reply nobody waits for on the test link (ref=5)" in caplog.text


def test_a_reply_to_no_request_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    pending: PendingReplies[Reply] = PendingReplies("the test link")
    with caplog.at_level(logging.WARNING, logger="dragon.messages"):
        assert not pending.file(Reply(99))
    assert "ref=99" in caplog.text


async def test_a_second_reply_to_one_request_is_dropped() -> None:
    pending: PendingReplies[Reply] = PendingReplies("the test link")
    with pending.expect(1) as waiter:
        assert pending.file(Reply(1, "first"))
        assert not pending.file(Reply(1, "second"))
        assert (await waiter.reply()).text == "first"


def test_a_tag_waited_for_twice_is_refused() -> None:
    pending: PendingReplies[Reply] = PendingReplies("the test link")
    with pending.expect(1), pytest.raises(ValueError, match="tag 1 is already waiting"), pending.expect(1):
        pass
    with pending.expect(1):  # free again once its block is left
        pass


async def test_when_the_link_dies_every_waiter_raises_link_down() -> None:
    pending: PendingReplies[Reply] = PendingReplies("the LS channel")
    errors: list[str] = []

    async def requester(tag: int, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with pending.expect(tag) as waiter:
            task_status.started()
            try:
                await waiter.reply()
            except LinkDown as exc:
                errors.append(str(exc))

    with trio.fail_after(WAIT_S):
        async with trio.open_nursery() as nursery:
            for tag in (1, 2):
                await nursery.start(requester, tag)
            await trio.testing.wait_all_tasks_blocked()
            pending.fail_all("Local Services exited")
    assert errors == ["the LS channel is down: Local Services exited"] * 2
    assert len(pending) == 0


async def test_after_the_link_died_a_new_request_fails_at_once_with_the_first_reason() -> None:
    pending: PendingReplies[Reply] = PendingReplies("the LS channel")
    pending.fail_all("first reason")
    pending.fail_all("second reason")
    with trio.fail_after(WAIT_S), pending.expect(1) as waiter, pytest.raises(LinkDown, match="first reason"):
        await waiter.reply()


async def test_a_reply_that_came_before_the_link_died_is_still_returned() -> None:
    pending: PendingReplies[Reply] = PendingReplies("the test link")
    with pending.expect(1) as waiter:
        pending.file(Reply(1, "in time"))
        pending.fail_all("gone")
        assert (await waiter.reply()).text == "in time"


def test_a_blocking_requester_sees_its_reply_without_a_trio_loop() -> None:
    """`dragon status` reads its reply channel in a plain loop: `arrived` is None, then the reply."""
    pending: PendingReplies[Reply] = PendingReplies("the test link", late_is_normal=True)
    with pending.expect(1) as first, pending.expect(2) as second:
        assert first.arrived is None and second.arrived is None
        assert pending.file(Reply(2, "two"))
        assert first.arrived is None
        assert second.arrived is not None and second.arrived.text == "two"
        pending.fail_all("the runtime went away")
        with pytest.raises(LinkDown, match="the runtime went away"):
            _ = first.arrived
        assert second.arrived.text == "two"  # a reply that came before the link died stays
