"""`Process(...)` arguments checked before any request (dragon.client.requests.process_spec), no runtime needed."""

from __future__ import annotations

import pytest

from dragon.client import requests as gs
from dragon.descriptors import DEVNULL
from dragon.errors import InvalidArgument


def _spec(**kw: object) -> gs.ProcessSpec:
    base: dict[str, object] = {"env": None, "cwd": None, "name": "", "stdin": None, "stdout": None, "stderr": None}
    base.update(kw)
    return gs.process_spec("/bin/true", [], **base)  # type: ignore[arg-type]


def test_identity_and_initial_stdin_reach_the_request() -> None:
    spec = _spec(user=1000, group=100, umask=0o22, initial_stdin=b"hello")
    req = gs.process_create(spec).request
    assert (req.user, req.group, req.umask, req.initial_stdin) == (1000, 100, 0o22, b"hello")
    assert (_spec().umask, _spec().user, _spec().initial_stdin) == (-1, None, b"")


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"user": -1}, "user must be a numeric id"),
        ({"group": "wheel"}, "group must be a numeric id"),
        ({"umask": 0o1777}, "umask must be 0 .. 0o777"),
        ({"initial_stdin": "text"}, "initial_stdin must be bytes"),
        ({"initial_stdin": b"x", "stdin": DEVNULL}, "needs a stdin to write to"),
    ],
)
def test_bad_values_are_refused_before_any_request(kw: dict[str, object], says: str) -> None:
    with pytest.raises(InvalidArgument, match=says):
        _spec(**kw)
