"""Ask Global Services and Local Services for a dump of their tables (GSDumpState, SHDumpState, spec
§8) as any process may: raw messages on their channels. First into files that cannot be written (the
runtime must live on), then into argv[1] (GS) and argv[2] (LS); waits (bounded) for both, then prints
its p_uid and pid."""

from __future__ import annotations

import os
import sys
import time

import msgspec

from dragon.ids import LaunchParameters
from dragon.messages import GSDumpState, SHDumpState
from dragon.transport import Channel


def send(sdesc: str, msg: msgspec.Struct) -> None:
    chan = Channel.attach(sdesc)
    try:
        chan.send(msgspec.msgpack.encode(msg), 10.0)
    finally:
        chan.close()


def written(path: str, last_section: str) -> bool:
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return False
    return last_section in text and text.endswith("\n")


params = LaunchParameters.from_env()
gs_file, ls_file = sys.argv[1], sys.argv[2]
unwritable = os.path.join(gs_file + ".missing-dir", "dump")
send(params.gs_cd, GSDumpState(filename=unwritable))
send(params.local_shep_cd, SHDumpState(filename=unwritable))
send(params.gs_cd, GSDumpState(filename=gs_file))
send(params.local_shep_cd, SHDumpState(filename=ls_file))
deadline = time.monotonic() + 30.0
while not (written(gs_file, "pools") and written(ls_file, "Pools")):
    if time.monotonic() > deadline:
        sys.exit("no dump within 30 s")
    time.sleep(0.01)
print(params.my_puid, os.getpid())
