"""Event, Condition, Barrier, Value and the Lock family whose users are on different nodes (issue 17 item
2): mp_programs/event_objects.py's checks and mp_programs/locks.py's children, run three ways, which
must agree (prints one JSON report):

- "here": as on one node (objects and children on node 0, the head's);
- "children_there": the objects of node 0, every child on node 1;
- "objects_there": the objects made on node 1 (a maker process there makes each one on request),
  the head and its children on node 0, so every user is on another node than the objects.
"""

import json
import multiprocessing as mp
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mp_programs"))

import locks  # mp_programs/locks.py
from event_objects import WAIT_S, barrier, condition, event  # mp_programs/event_objects.py

from dragon.native import Policy

MADE_THERE = frozenset(
    {"Event", "Condition", "Barrier", "Lock", "RLock", "Semaphore", "BoundedSemaphore", "Value", "Array"}
)
_Base: Any = mp.get_context("dragon").Process


class OnNode(_Base):  # type: ignore[misc]
    """A Process started on node `ON_NODE` (a class attribute set per context)."""

    on_node = 0

    def start(self) -> None:
        with Policy(node=self.on_node):
            super().start()


class OnNode0(OnNode):
    on_node = 0


class OnNode1(OnNode):
    on_node = 1


def maker(requests: Any, made: Any) -> None:
    """Make each object asked for (a name and its arguments) here, keep it, send it back (or the error
    making it raised); until None."""
    kept: list[Any] = []
    while (asked := requests.get(timeout=10 * WAIT_S)) is not None:
        name, args, kwargs = asked
        try:
            kept.append(getattr(mp, name)(*args, **kwargs))
        except Exception as exc:
            kept.append(exc)
        made.put(kept[-1])


class Placed:
    """The "dragon" context, its processes started on node `node`, its objects made by `maker` if given."""

    def __init__(self, process: type, maker: tuple[Any, Any] | None = None) -> None:
        self.Process, self._maker = process, maker

    def __getattr__(self, name: str) -> Any:
        if self._maker is None or name not in MADE_THERE:
            return getattr(mp.get_context("dragon"), name)
        requests, made = self._maker

        def make(*args: Any, **kwargs: Any) -> Any:
            requests.put((name, args, kwargs))
            obj = made.get(timeout=WAIT_S)
            if isinstance(obj, Exception):
                raise obj
            return obj

        return make


def run(ctx: Any) -> dict[str, Any]:
    return {
        "event": event(ctx),
        "condition": condition(ctx),
        "barrier": barrier(ctx),
        "locks_across": locks.across(ctx),
    }


if __name__ == "__main__":
    mp.set_start_method("dragon")
    requests, made = mp.Queue(), mp.Queue()
    with Policy(node=1):
        the_maker = mp.Process(target=maker, args=(requests, made))
        the_maker.start()
    here = run(Placed(OnNode0))
    report = {
        "here": here,
        "children_there": run(Placed(OnNode1)) == here,
        "objects_there": run(Placed(OnNode0, (requests, made))) == here,
    }
    requests.put(None)
    the_maker.join(WAIT_S)
    report["maker_exit"] = the_maker.exitcode
    print(json.dumps(report))
