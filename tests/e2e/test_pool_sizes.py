"""DRAGON_INF_SEG_SZ and DRAGON_DEFAULT_SEG_SZ (spec §1.2, §1.4) size the two pools of a runtime, under
`dragon prog.py`, `dragon.serve` and the background runtime of the start method "dragon" alike; the
managed processes see the sizes in their launch parameters. A bad value is one clear error, before
anything of the run is made (the leak check of conftest.py sees that nothing is left).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import trio

import dragon
from dragon import _pool_sizes, _rundir
from dragon.errors import BringupError
from dragon.ids import DEFAULT_POOL_MUID, INF_POOL_MUID
from dragon.messages import (
    GSProcessCreate,
    GSProcessCreateResponse,
    GSProcessJoin,
    GSProcessJoinResponse,
    ProcessCreateErr,
)
from dragon.transport import shm_path

from e2e_util import DRAGON, RUN_TIMEOUT_S, clean_env, run_command, run_dragon

SMALL = {"DRAGON_INF_SEG_SZ": "192K", "DRAGON_DEFAULT_SEG_SZ": "3MiB"}
SMALL_BYTES = {"DRAGON_INF_SEG_SZ": 192 * 1024, "DRAGON_DEFAULT_SEG_SZ": 3 * 2**20}

SHOW_SIZES = "import os; print(os.environ['DRAGON_INF_SEG_SZ'], os.environ['DRAGON_DEFAULT_SEG_SZ'])"
SIZES_LINE = f"{SMALL_BYTES['DRAGON_INF_SEG_SZ']} {SMALL_BYTES['DRAGON_DEFAULT_SEG_SZ']}"

HEAD = r"""
import json, os, subprocess, sys
print(os.environ["DRAGON_INF_SEG_SZ"], os.environ["DRAGON_DEFAULT_SEG_SZ"])
status = subprocess.run([sys.argv[1], "status", "--json", os.environ["DRAGON_RUN_ID"]], capture_output=True,
                        check=True)
print(json.dumps({str(p["m_uid"]): p["size_bytes"] for p in json.loads(status.stdout)["pools"]}))
"""

BAD = [
    ("DRAGON_INF_SEG_SZ", "lots", "is not a size: give a whole number of bytes, optionally with a suffix K, M, G or T"),
    ("DRAGON_DEFAULT_SEG_SZ", "1.5G", "is not a size"),
    ("DRAGON_DEFAULT_SEG_SZ", "-4096", "is not a size"),
    ("DRAGON_INF_SEG_SZ", "4096", "is too small: a pool needs at least 64K"),
    ("DRAGON_DEFAULT_SEG_SZ", "99999T", "is larger than /dev/shm"),
]


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("65536", 65536),
        ("64K", 65536),
        ("64kib", 65536),
        ("64KB", 65536),
        (" 3M ", 3 << 20),
        ("1g", 1 << 30),
        ("2T", 2 << 40),
        ("1.5G", None),
        ("", None),
        ("12 parsecs", None),
        ("0x100", None),
        ("K", None),
    ],
)
def test_size_syntax(text: str, size: int | None) -> None:
    assert _pool_sizes.parse_size(text) == size


def test_unset_or_empty_variables_give_the_spec_defaults() -> None:
    assert _pool_sizes.pool_sizes({}) == (2**30, 2**32)
    assert _pool_sizes.pool_sizes({"DRAGON_INF_SEG_SZ": "", "DRAGON_DEFAULT_SEG_SZ": " "}) == (2**30, 2**32)


async def test_dragon_makes_the_pools_of_the_sizes_asked_for(tmp_path: Path) -> None:
    done = await run_dragon("-c", HEAD, DRAGON, cwd=tmp_path, env=clean_env(**SMALL))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    params, pools = done.stdout.decode().splitlines()
    assert params == SIZES_LINE  # the head's launch parameters
    assert json.loads(pools) == {
        str(INF_POOL_MUID): SMALL_BYTES["DRAGON_INF_SEG_SZ"],
        str(DEFAULT_POOL_MUID): SMALL_BYTES["DRAGON_DEFAULT_SEG_SZ"],
    }


@pytest.mark.parametrize(("var", "value", "says"), BAD)
async def test_dragon_with_a_bad_size_says_so_and_runs_nothing(tmp_path: Path, var: str, value: str, says: str) -> None:
    done = await run_dragon(
        "-c", "print('ran')", cwd=tmp_path, env=clean_env(XDG_RUNTIME_DIR=str(tmp_path), **{var: value})
    )
    assert done.returncode == 2
    assert done.stdout == b""
    line = done.stderr.decode()
    assert line.startswith(f"dragon: error: {var}={value!r} {says}") and line.count("\n") == 1, line
    assert _runs_in(tmp_path) == []


async def test_serve_makes_the_pools_of_the_sizes_asked_for(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    for var, value in SMALL.items():
        monkeypatch.setenv(var, value)
    with trio.fail_after(RUN_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            handle = await nursery.start(dragon.serve)
            with trio.fail_after(5):  # bounded poll: runtime.json is written just after GS is up
                while (info := _rundir.read_info(handle.run_id)) is None:
                    await trio.sleep(0.01)
            for pd, var in ((info.inf_pd, "DRAGON_INF_SEG_SZ"), (info.default_pd, "DRAGON_DEFAULT_SEG_SZ")):
                assert os.stat(shm_path(pd)).st_size == SMALL_BYTES[var]
            created = await handle.call(
                GSProcessCreate(p_uid=0, r_c_uid=0, exe=sys.executable, args=["-c", SHOW_SIZES]),
                GSProcessCreateResponse,
            )
            assert created.err == ProcessCreateErr.SUCCESS and created.desc is not None, created.err_info
            joined = await handle.call(
                GSProcessJoin(p_uid=0, r_c_uid=0, t_p_uid=created.desc.p_uid), GSProcessJoinResponse
            )
            assert joined.exit_code == 0
            nursery.cancel_scope.cancel()
    assert f"{SIZES_LINE}\n" in capfd.readouterr().out


@pytest.mark.parametrize(("var", "value", "says"), BAD[:1] + BAD[-1:])
async def test_serve_with_a_bad_size_raises_before_making_anything(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, var: str, value: str, says: str
) -> None:
    monkeypatch.setenv(var, value)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    with trio.fail_after(RUN_TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            with pytest.raises(BringupError) as info:
                await nursery.start(dragon.serve)
    assert f"{var}={value!r} {says}" in str(info.value)
    assert _runs_in(tmp_path) == []


BACKGROUND = r"""
import dragon, multiprocessing as mp, os, sys
from dragon.errors import BringupError

def show():
    print("child", os.environ["DRAGON_INF_SEG_SZ"], os.environ["DRAGON_DEFAULT_SEG_SZ"], flush=True)

if __name__ == "__main__":
    mp.set_start_method("dragon")
    p = mp.Process(target=show)
    try:
        p.start()
    except BringupError as exc:
        print("error", exc)
        sys.exit(0)
    p.join()
    print("exit", p.exitcode)
"""


async def test_background_runtime_makes_the_pools_of_the_sizes_asked_for(tmp_path: Path) -> None:
    script = tmp_path / "bg.py"
    script.write_text(BACKGROUND)
    done = await run_command([sys.executable, str(script)], cwd=tmp_path, env=clean_env(**SMALL))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stdout.decode().splitlines() == [f"child {SIZES_LINE}", "exit 0"]


async def test_background_runtime_with_a_bad_size_raises_in_the_program(tmp_path: Path) -> None:
    script = tmp_path / "bg.py"
    script.write_text(BACKGROUND)
    var, value, says = BAD[3]
    done = await run_command([sys.executable, str(script)], cwd=tmp_path, env=clean_env(**{var: value}))
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    out = done.stdout.decode()
    assert out.startswith("error the background Dragon runtime failed") and f"{var}={value!r} {says}" in out, out


def _runs_in(xdg_runtime_dir: Path) -> list[str]:
    """The runtime directories under a private XDG_RUNTIME_DIR (none: nothing of a run was made)."""
    root = xdg_runtime_dir / "dragon"
    return sorted(os.listdir(root)) if root.exists() else []
