"""GSDumpState and SHDumpState (spec §4.1, §8): any process may ask Global Services and Local Services
to write their tables into a file; a file that cannot be written is logged and the runtime lives on."""

from __future__ import annotations

from pathlib import Path

from dragon.ids import FIRST_USER_PUID, GS_PROCESS_NAME, GS_PUID

from e2e_util import clean_env, program, run_dragon


async def test_gs_and_ls_dump_their_tables_and_survive_a_file_they_cannot_write(tmp_path: Path) -> None:
    gs_file, ls_file = tmp_path / "gs.txt", tmp_path / "ls.txt"
    done = await run_dragon(program("dump_state.py"), str(gs_file), str(ls_file), env=clean_env())
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b""
    p_uid, pid = (int(x) for x in done.stdout.split())
    assert p_uid == FIRST_USER_PUID  # the head

    gs = gs_file.read_text().splitlines()
    assert gs[0] == "processes"
    assert f"  {GS_PUID} {GS_PROCESS_NAME} ACTIVE ecode=None" in gs
    assert any(line.startswith(f"  {p_uid} ") and " ACTIVE " in line for line in gs)
    channels, pools = gs.index("channels"), gs.index("pools")
    assert any(f"gs_ret_{p_uid} ACTIVE" in line for line in gs[channels:pools])  # the head's GS-return channel

    ls = ls_file.read_text().splitlines()
    assert ls[0] == "Procs"
    assert f"  {p_uid}:{pid}" in ls
    assert ls.index("Chans") < ls.index("Pools")
