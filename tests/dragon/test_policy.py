"""`dragon.native.Policy` (dragon/policy.py): its checks, its wire form, nesting and its context
(what requests it puts into GSProcessCreate), with no runtime: requests are built, not sent."""

from __future__ import annotations

import asyncio
import pickle
import threading

import pytest

from dragon.client import requests as gs
from dragon.descriptors import ProcessPolicy
from dragon.errors import InvalidArgument
from dragon.native import Policy
from dragon.policy import current_policy, wire_policy


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"node": -1}, "node must be a node index"),
        ({"node": 1.0}, "node must be a node index"),
        ({"node": True}, "node must be a node index"),
        ({"host": 3}, "host must be a host name"),
        ({"node": 0, "host": "a"}, "a node or a host, not both"),
        ({"cpus": "01"}, "cpus must be a sequence of CPU numbers"),
        ({"cpus": 3}, "cpus must be a sequence of CPU numbers"),
        ({"cpus": [0, "1"]}, r"these are not: \['1'\]"),
        ({"cpus": [-1]}, r"these are not: \[-1\]"),
        ({"cpus": [False]}, "these are not"),
        ({"host": "a", "host_name": "b"}, "host or host_name"),
        ({"cpus": [0], "cpu_affinity": [1]}, "cpus or cpu_affinity"),
    ],
)
def test_bad_arguments_are_refused_saying_what_is_wrong(kw: dict[str, object], says: str) -> None:
    with pytest.raises(InvalidArgument, match=says):
        Policy(**kw)  # type: ignore[arg-type]


def test_the_reference_spellings_and_the_wire_form() -> None:
    assert Policy(host_name="n1", cpu_affinity=range(2)) == Policy(host="n1", cpus=[1, 0, 1])
    assert Policy(cpus={3, 1}).cpus == Policy(cpus=[1, 3]).cpu_affinity == (1, 3)
    assert Policy(node=2, cpus=[5]).to_wire() == ProcessPolicy(node=2, host="", cpus=[5])
    assert Policy().to_wire() == ProcessPolicy()
    assert repr(Policy(host="n1", cpus=[0])) == "Policy(host='n1', cpus=[0])"
    assert pickle.loads(pickle.dumps(Policy(node=1, cpus=[2]))) == Policy(node=1, cpus=[2])


def test_nesting_merges_innermost_first_and_the_place_is_one_setting() -> None:
    assert current_policy() is None
    with Policy(node=1, cpus=[0]):
        with Policy(cpus=[1]):
            assert current_policy() == Policy(node=1, cpus=[1])
        with Policy(host="n2"):  # the inner place replaces the outer one: no node 1 left over
            assert current_policy() == Policy(host="n2", cpus=[0])
            assert wire_policy(Policy(node=3)) == ProcessPolicy(node=3, cpus=[0])
        assert current_policy() == Policy(node=1, cpus=[0])
    assert current_policy() is None
    assert wire_policy() is None


def test_the_block_ends_on_an_exception_too() -> None:
    with pytest.raises(KeyError), Policy(node=1):
        raise KeyError("x")
    assert current_policy() is None


def test_a_process_takes_the_policy_current_when_its_request_is_built() -> None:
    spec = gs.process_spec(
        "/bin/true", [], env=None, cwd=None, name="", stdin=None, stdout=None, stderr=None, policy=Policy(cpus=[0])
    )
    assert gs.process_create(spec).request.policy == ProcessPolicy(cpus=[0])
    with Policy(node=1):
        assert gs.process_create(spec).request.policy == ProcessPolicy(node=1, cpus=[0])
        mp_req = gs.mp_process_create(["python"], b"", what="p", label="", target="").request
        assert mp_req.policy == ProcessPolicy(node=1)
    assert gs.mp_process_create(["python"], b"", what="p", label="", target="").request.policy is None
    with pytest.raises(InvalidArgument, match="policy must be a dragon"):
        gs.process_spec("/bin/true", [], env=None, cwd=None, name="", stdin=None, stdout=None, stderr=None, policy=1)  # type: ignore[arg-type]


def test_other_threads_and_tasks_do_not_see_the_block() -> None:
    seen: dict[str, Policy | None] = {}
    with Policy(node=1):
        thread = threading.Thread(target=lambda: seen.setdefault("thread", current_policy()))
        thread.start()
        thread.join()

    async def main() -> None:
        async def inside() -> None:
            with Policy(node=2):
                await asyncio.sleep(0)  # the other task runs meanwhile
                seen["inside"] = current_policy()

        async def beside() -> None:
            await asyncio.sleep(0)
            seen["beside"] = current_policy()

        await asyncio.gather(inside(), beside())

    asyncio.run(main())
    assert seen == {"thread": None, "inside": Policy(node=2), "beside": None}
