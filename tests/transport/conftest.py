"""Fixtures of the transport tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chan_names import destroy_leftover, fresh_name


@pytest.fixture
def name() -> Iterator[str]:
    """A fresh channel name; whatever channel of that name the test leaves is destroyed after it."""
    n = fresh_name()
    yield n
    destroy_leftover(n)
