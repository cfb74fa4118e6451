"""Head program for test_native_wait: dragon.native.wait (GSProcessJoinList) in every mode."""

import json
import sys

from dragon.errors import JoinSelf
from dragon.native import Process, current, wait


def sleeper(seconds: float, code: int = 0) -> Process:
    p = Process(sys.executable, ["-c", f"import time, sys; time.sleep({seconds}); sys.exit({code})"])
    p.start()
    return p


out: dict[str, object] = {}
fast, slow, stuck = sleeper(0.1), sleeper(0.6, 3), sleeper(60)
any_done = wait([fast, slow, stuck])  # any: returns once `fast` is done
out["any"] = [any_done[p.p_uid] for p in (fast, slow, stuck)]  # type: ignore[index]
timed = wait([slow, stuck], timeout=0.01, join_all=True)  # all, but time runs out first
out["all_timeout"] = [timed[p.p_uid] for p in (slow, stuck)]  # type: ignore[index]
stuck.kill()
out["all"] = list(wait([fast, slow, stuck], join_all=True).values())
ok, bad = sleeper(30), sleeper(0.1, 5)
early = wait([ok, bad], join_all=True, return_on_bad_exit=True)  # returns on the bad exit, not after 30 s
out["bad_exit"] = [early[ok.p_uid], early[bad.p_uid]]  # type: ignore[index]
ok.kill()
ok.join()
try:
    wait([current()])
    out["self"] = "no error"
except JoinSelf as exc:
    out["self"] = type(exc).__name__
print(json.dumps(out))
