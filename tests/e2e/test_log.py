"""`dragon --log-level debug --log-file F`: one log of every actor, where the protocol can be read in order."""

from __future__ import annotations

import re
from pathlib import Path

from e2e_util import program, run_dragon

# Spec §2 (bringup), the head's life, §3.1 (teardown): the order of their first appearances in the log.
# GS gets its launch parameters as soon as the channels exist, so its GSPingSH may come before or after
# the launcher's BEPingSH (services/local_services.py); it is checked apart, in BRINGUP_GS.
SEQUENCE = [
    "BENodeIdxSH",
    "SHPingBE",
    "BEPingSH",
    "SHChannelsUp",
    "SHPingGS",
    "GSIsUp",
    "GSProcessCreate",
    "SHProcessCreate",
    "SHProcessCreateResponse",
    "GSProcessCreateResponse",
    "SHProcessExit",
    "GSHeadExit",
    "GSTeardown",
    "GSHalted",
    "SHTeardown",
    "SHHaltBE",
    "BEHalted",
    "SHHalted",
]
BRINGUP_GS = ["BENodeIdxSH", "LaunchParameters", "GSPingSH", "SHPingGS"]
LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} (LA|LS|GS) ")


async def test_debug_log_shows_the_protocol_in_order(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    result = await run_dragon("--log-level", "debug", "--log-file", str(log), program("hello.py"))
    assert (result.returncode, result.stdout, result.stderr) == (0, b"hello\n", b"")
    lines = log.read_text().splitlines()
    assert lines
    bad = [line for line in lines if not LINE.match(line)]
    assert not bad, f"lines without a time and an actor: {bad[:5]}"
    assert {LINE.match(line).group(1) for line in lines} == {"LA", "LS", "GS"}  # type: ignore[union-attr]

    first: dict[str, int] = {}
    for n, line in enumerate(lines):
        for name in re.findall(r"\b(?:sent|received) (\w+)\b", line):
            first.setdefault(name, n)
    for sequence in (SEQUENCE, BRINGUP_GS):
        missing = [name for name in sequence if name not in first]
        assert not missing, f"messages not in the log: {missing}"
        order = sorted(sequence, key=lambda name: first[name])
        assert order == sequence, "first appearances out of order:\n" + "\n".join(lines[first[n]] for n in order)
