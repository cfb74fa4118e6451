"""`Process(...)` arguments checked before any request (dragon.client.requests.process_spec), no runtime needed."""

from __future__ import annotations

import sys

import pytest

from dragon.client import requests as gs
from dragon.client.python_child import child_argv
from dragon.descriptors import DEVNULL, ArgMode
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


def work(x: int, *, y: int = 0) -> int:
    return x + y


def test_a_callable_target_runs_python_with_its_call_in_the_handshake() -> None:
    spec = gs.process_spec(work, [1], {"y": 2}, env=None, cwd=None, name="", stdin=None, stdout=None, stderr=None)
    assert [spec.exe, *spec.args] == child_argv()
    assert spec.call == (work, (1,), {"y": 2})
    req = gs.process_create(spec).request
    assert req.options.mode == ArgMode.PYTHON_IMMEDIATE and req.options.argdata
    assert req.target == f"{__name__}: work"  # what `dragon status` shows
    plain = gs.process_create(_spec()).request
    assert (plain.options.mode, plain.options.argdata, plain.target) == (ArgMode.NONE, None, "")


def test_a_call_that_does_not_pickle_is_refused_at_start() -> None:
    spec = gs.process_spec(lambda: 0, None, env=None, cwd=None, name="", stdin=None, stdout=None, stderr=None)
    with pytest.raises(InvalidArgument, match="must pickle, as for multiprocessing's spawn"):
        gs.process_create(spec)


@pytest.mark.parametrize(
    ("target", "args", "kwargs", "says"),
    [
        ("/bin/true", [], {"k": 1}, "kwargs are for a Python callable target"),
        ("/bin/true", [1], None, "args of an executable must be strings"),
        ("/bin/true", "-v", None, "must be a sequence, not the string"),
        (work, [], {1: 2}, "kwargs must be a mapping of names"),
        (work, [], [("y", 2)], "kwargs must be a mapping of names"),
        (123, [], None, "or a Python callable, not 123"),
        ("", [], None, "or a Python callable, not ''"),
    ],
)
def test_bad_targets_and_arguments_are_refused(target: object, args: object, kwargs: object, says: str) -> None:
    with pytest.raises(InvalidArgument, match=says):
        gs.process_spec(
            target,
            args,
            kwargs,
            env=None,
            cwd=None,
            name="",
            stdin=None,
            stdout=None,
            stderr=None,  # type: ignore[arg-type]
        )


def test_an_executable_keeps_its_path_and_argv() -> None:
    spec = gs.process_spec(
        sys.executable, ["-c", "pass"], env=None, cwd=None, name="", stdin=None, stdout=None, stderr=None
    )
    assert (spec.exe, spec.args, spec.call) == (sys.executable, ["-c", "pass"], None)


def test_a_template_keeps_arguments_given_as_an_iterator_and_a_process_shows_its_callable() -> None:
    from dragon.native import Process, ProcessTemplate

    template = ProcessTemplate(work, iter([1]), {"y": 2})
    assert (template.args, template.kwargs) == ((1,), {"y": 2})
    made = Process.from_template(template, name="w")
    assert made.name == "w" and repr(made) == f"<Process '{__name__}: work' not started>"
    assert repr(Process("/bin/true")) == "<Process '/bin/true' not started>"
