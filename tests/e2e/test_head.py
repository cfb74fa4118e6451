"""`dragon PROG ARGS`: the head process runs as under `python PROG ARGS`, and its exit status is dragon's.

Each test compares with what plain Python does where that is the definition (argv, cwd, environment).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from e2e_util import DRAGON, RUN_TIMEOUT_S, StreamReader, clean_env, program, run_command, run_dragon, start_process

HEAD_PUID = 2**32
ARGS = ["a", "b c", "ü", "", "--flag"]


def _seen(stdout: bytes) -> dict[str, Any]:
    seen: dict[str, Any] = json.loads(stdout)
    return seen


def _split_env(env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(the DRAGON_* variables, all others)."""
    return (
        {k: v for k, v in env.items() if k.startswith("DRAGON_")},
        {k: v for k, v in env.items() if not k.startswith("DRAGON_")},
    )


async def _compare_with_python(head_args: list[str], cwd: Path) -> dict[str, Any]:
    """Run `python HEAD_ARGS` and `dragon HEAD_ARGS` alike; assert the program saw the same; return dragon's view."""
    env = clean_env(E2E_MARKER="value with spaces and ü")
    python = await run_command([sys.executable, *head_args], cwd=cwd, env=env)
    dragon = await run_dragon(*head_args, cwd=cwd, env=env)
    assert python.returncode == 0, python.stderr
    assert dragon.returncode == 0, dragon.stderr
    assert dragon.stderr == b""
    expected, got = _seen(python.stdout), _seen(dragon.stdout)
    assert got["argv"] == expected["argv"]
    assert got["cwd"] == expected["cwd"] == str(cwd)
    assert got["name"] == expected["name"] == "__main__"
    launch, rest = _split_env(got["env"])
    assert rest == expected["env"], "the head's environment is the caller's plus DRAGON_* launch parameters"
    assert _split_env(expected["env"])[0] == {}
    assert launch["DRAGON_MY_PUID"] == str(HEAD_PUID)
    assert launch["DRAGON_MODE"] == "single"
    assert launch["DRAGON_RUN_ID"]
    return got


async def test_script_runs_as_under_python(tmp_path: Path) -> None:
    shutil.copy(program("show.py"), tmp_path / "prog.py")
    got = await _compare_with_python(["prog.py", *ARGS], tmp_path)
    assert got["argv"] == ["prog.py", *ARGS]


async def test_module_runs_as_under_python_m(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    shutil.copy(program("show.py"), tmp_path / "pkg" / "mod.py")
    got = await _compare_with_python(["-m", "pkg.mod", *ARGS], tmp_path)
    assert got["argv"] == [str(tmp_path / "pkg" / "mod.py"), *ARGS]


async def test_code_runs_as_under_python_c(tmp_path: Path) -> None:
    code = Path(program("show.py")).read_text()
    got = await _compare_with_python(["-c", code, *ARGS], tmp_path)
    assert got["argv"] == ["-c", *ARGS]


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("pass", 0),
        ("import sys; sys.exit(3)", 3),
        ("import sys; sys.exit(255)", 255),
        ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", 128 + signal.SIGTERM),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 128 + signal.SIGKILL),
        ("import os; os._exit(7)", 7),
    ],
    ids=["0", "exit3", "exit255", "SIGTERM", "SIGKILL", "_exit7"],
)
async def test_exit_status_is_the_heads(tmp_path: Path, code: str, status: int) -> None:
    prog = tmp_path / "prog.py"
    prog.write_text(code + "\n")
    result = await run_dragon(str(prog))
    assert result.returncode == status, result.stderr
    assert result.stdout == b""


async def test_uncaught_exception_prints_traceback_and_exits_1(tmp_path: Path) -> None:
    prog = tmp_path / "prog.py"
    prog.write_text("def f():\n    raise ValueError('boom 42')\n\nf()\n")
    result = await run_dragon(str(prog))
    assert result.returncode == 1
    err = result.stderr.decode()
    assert err.startswith("Traceback (most recent call last):\n"), err
    assert f'File "{prog}", line 4, in <module>' in err
    assert err.endswith("ValueError: boom 42\n"), err
    assert result.stdout == b""


async def test_missing_script_is_an_error_before_any_runtime(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    result = await run_dragon(
        "--log-level", "debug", "--log-file", str(log), "missing.py", "x", cwd=tmp_path, timeout_s=15
    )
    assert result.returncode == 2
    assert result.stdout == b""
    err = result.stderr.decode()
    assert str(tmp_path / "missing.py") in err, err
    assert err.count("\n") == 1 and err.startswith("dragon: error:"), err
    assert not log.exists(), "no runtime may have been started (its log would exist)"


async def test_no_program_is_a_usage_error() -> None:
    result = await run_dragon(timeout_s=15)
    assert result.returncode == 2
    assert result.stdout == b""
    assert b"dragon: error:" in result.stderr
    assert b"PROG" in result.stderr


async def test_help() -> None:
    result = await run_dragon("--help", timeout_s=15)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"usage: dragon")
    assert b"-m MODULE" in result.stdout and b"-c CODE" in result.stdout
    assert result.stderr == b""


@pytest.mark.parametrize(
    ("sig", "status", "head_out"),
    [
        (signal.SIGINT, 128 + signal.SIGINT, b"ready\ninterrupted\n"),  # forwarded to the head: KeyboardInterrupt
        (signal.SIGTERM, 128 + signal.SIGTERM, b"ready\n"),  # orderly teardown; the head gets SIGTERM
    ],
    ids=["SIGINT", "SIGTERM"],
)
async def test_signal_to_dragon(sig: signal.Signals, status: int, head_out: bytes) -> None:
    async with trio.open_nursery() as nursery:
        with trio.fail_after(RUN_TIMEOUT_S):
            proc = await start_process(
                nursery,
                [DRAGON, program("wait_for_signal.py")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            assert proc.stdout is not None and proc.stderr is not None and proc.stdin is not None
            out = StreamReader(proc.stdout)
            await out.until(b"ready\n")
            proc.send_signal(sig)
            err = await StreamReader(proc.stderr).to_end()
            await out.to_end()
            await proc.wait()
            await proc.stdin.aclose()
    assert proc.returncode == status, err
    assert bytes(out.data) == head_out
    if sig == signal.SIGINT:
        assert err.endswith(b"KeyboardInterrupt\n"), err
