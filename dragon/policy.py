"""`Policy`: where a process runs (a node, by index or host name) and on which CPUs (`dragon.native.Policy`).

A Policy is given to a process in two ways (MULTINODE.md §1):
* explicitly: `dragon.native.Process(..., policy=Policy(node=1))`;
* as a context manager, for the processes that take no policy argument (multiprocessing's):

      with Policy(cpus=[0]):
          p = mp.Process(target=f); p.start()       # runs on CPU 0
          pool = mp.Pool(4)                          # so do its workers, replacements included

[choice] A process takes the policy current when it is *started* (`start()`, which is when it is
created; the reference captures it when the Process object is constructed): a `multiprocessing.Process`
object is the stdlib's, made before anything of ours sees it, and `start()` is the first moment the
start method does. A `Pool` starts its workers in its constructor and remembers the policy current
then for the workers it starts later (maxtasksperchild replacements, from its own thread): every
worker of a pool runs under the same policy (`dragon.mp.pool`).

Nesting merges, innermost first (as the reference): `with Policy(node=1): with Policy(cpus=[0]):`
places on node 1, CPU 0. The place (node or host) is one setting: an inner policy that names either
replaces the outer one's. An explicit `policy=` is the innermost. The current policy lives in a
ContextVar: another thread does not see it (a new thread starts with none), nor does another trio
task started outside the block.

Spellings: `host` and `cpus`, and the reference's `host_name` and `cpu_affinity` for them. The
reference's `host_id` (a host's numeric id, not a node index), `placement`, `distribution` and the
GPU settings are not taken. Checked here (a clear InvalidArgument); whether the node, host or CPUs
exist is Global Services' and Local Services' to say, at start.

Light to import (stdlib and the catalog's descriptors): the client's request builders use it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence, Sized
from collections.abc import Set as AbstractSet
from types import TracebackType
from typing import TypeAlias

from dragon.descriptors import ProcessPolicy
from dragon.errors import InvalidArgument

Cpus: TypeAlias = "Sequence[int] | AbstractSet[int]"
"""CPU numbers: a list, a tuple, a range, or a set (what `os.sched_getaffinity` returns)."""

_current: contextvars.ContextVar[tuple[Policy, ...]] = contextvars.ContextVar("dragon_policy", default=())
"""The merged policies of the `with` blocks this context is in, outermost first (the last is current)."""


class Policy:
    """Where a process runs: `node` (an index, 0 = the primary node) or `host` (a node's host name),
    and `cpus` (the CPU numbers it may run on, on that node; empty = any). Nothing given = the
    default placement (Global Services' round robin over the nodes). See the module docstring.

    Raises:
      InvalidArgument: a node that is not an int of 0 or more, a host that is not a string, CPUs
        that are not ints of 0 or more, both a node and a host, or a setting given under both its
        names (host and host_name, cpus and cpu_affinity).
    """

    __slots__ = ("_cpus", "_host", "_node")

    def __init__(
        self,
        host: str = "",
        node: int | None = None,
        cpus: Cpus = (),
        *,
        host_name: str = "",
        cpu_affinity: Cpus = (),
    ) -> None:
        where = _one_of("host", host, "host_name", host_name)
        if not isinstance(where, str):
            raise InvalidArgument(f"Policy host must be a host name (a str), not {where!r}")
        if node is not None and (not isinstance(node, int) or isinstance(node, bool) or node < 0):
            raise InvalidArgument(f"Policy node must be a node index (an int, 0 or more) or None, not {node!r}")
        if node is not None and where:
            raise InvalidArgument(f"Policy takes a node or a host, not both (node={node}, host={where!r})")
        self._node, self._host = node, where
        self._cpus = _check_cpus(_one_of("cpus", cpus, "cpu_affinity", cpu_affinity))

    @property
    def node(self) -> int | None:
        """The node index to run on; None = not set (see `host`)."""
        return self._node

    @property
    def host(self) -> str:
        """The host name of the node to run on; "" = not set."""
        return self._host

    host_name = host  # the reference's name

    @property
    def cpus(self) -> tuple[int, ...]:
        """The CPUs to run on, ascending; () = any."""
        return self._cpus

    cpu_affinity = cpus  # the reference's name

    def to_wire(self) -> ProcessPolicy:
        """As GSProcessCreate carries it."""
        return ProcessPolicy(node=self._node, host=self._host, cpus=list(self._cpus))

    def over(self, outer: Policy | None) -> Policy:
        """This policy with what it leaves unset taken from `outer` (the place, node or host, as one
        setting; then the CPUs)."""
        if outer is None:
            return self
        placed = self._node is not None or bool(self._host)
        merged = Policy.__new__(Policy)
        merged._node, merged._host = (self._node, self._host) if placed else (outer._node, outer._host)
        merged._cpus = self._cpus or outer._cpus
        return merged

    def __enter__(self) -> Policy:
        stack = _current.get()
        _current.set((*stack, self.over(stack[-1] if stack else None)))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _current.set(_current.get()[:-1])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Policy):
            return NotImplemented
        return (self._node, self._host, self._cpus) == (other._node, other._host, other._cpus)

    def __hash__(self) -> int:
        return hash((self._node, self._host, self._cpus))

    def __repr__(self) -> str:
        given = [f"node={self._node}"] if self._node is not None else []
        given += [f"host={self._host!r}"] if self._host else []
        given += [f"cpus={list(self._cpus)}"] if self._cpus else []
        return f"Policy({', '.join(given)})"

    def __reduce__(self) -> tuple[type[Policy], tuple[str, int | None, tuple[int, ...]]]:
        return (Policy, (self._host, self._node, self._cpus))


def current_policy() -> Policy | None:
    """The policy of the innermost `with Policy(...)` block this code runs in (merged with the outer
    ones), or None outside any."""
    stack = _current.get()
    return stack[-1] if stack else None


def wire_policy(explicit: Policy | None = None) -> ProcessPolicy | None:
    """What a process created now gets in GSProcessCreate.policy: `explicit` over the current policy;
    None when there is neither (the default placement)."""
    current = current_policy()
    policy = explicit.over(current) if explicit is not None else current
    return policy.to_wire() if policy is not None else None


def _one_of(name: str, value: object, alias: str, alias_value: object) -> object:
    """The setting given under either name (InvalidArgument if under both)."""
    if not _given(alias_value):
        return value
    if _given(value):
        raise InvalidArgument(f"Policy takes {name} or {alias} (the same setting), not both")
    return alias_value


def _given(value: object) -> bool:
    return value is not None and not (isinstance(value, Sized) and len(value) == 0)


def _check_cpus(cpus: object) -> tuple[int, ...]:
    if isinstance(cpus, (str, bytes)) or not isinstance(cpus, (Sequence, AbstractSet)):
        raise InvalidArgument(f"Policy cpus must be a sequence of CPU numbers (ints), not {cpus!r}")
    bad = [c for c in cpus if not isinstance(c, int) or isinstance(c, bool) or c < 0]
    if bad:
        raise InvalidArgument(f"Policy cpus must be CPU numbers (ints, 0 or more); these are not: {bad!r}")
    return tuple(sorted(set(cpus)))
