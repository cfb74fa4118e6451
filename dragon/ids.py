"""Conventional ids (spec §1.1, §1.3), default names (§1.3, §4.2) and launch parameters (§1.4).

Imported by every managed process, so it stays light: stdlib and msgspec only, no trio.
All node-indexed ids are given for node 0, the only node of a single-node runtime.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Final, Literal

import msgspec

# p_uids (spec §1.1, §1.3)
LAUNCHER_PUID: Final = 0
GS_PUID: Final = 1
FIRST_TA_PUID: Final = 2**8  # 2**8 .. 2**32-1 reserved for transport agents (multi-node; unused)
FIRST_USER_PUID: Final = 2**32  # GS counter, +1 per create, never reused; the first is the head process

# c_uids (spec §1.1, §1.3)
GS_STDOUT_R_C_UID: Final = 1  # r_c_uid 1 in a GS request means "reply on GS's stdout" (test harnesses)
GS_INPUT_CUID: Final = 2
FIRST_USER_MANAGED_CUID: Final = 2**54  # 2**54 .. 2**55-1: c_uids a user may pick without asking GS
TA_CUID: Final = 2**55  # transport agent input channel of node 0 (2**55 + node index; many nodes)
BE_CUID: Final = 2**57  # LA/BE input channel of node 0 (2**57 + node index)
SHEP_CUID: Final = 2**62  # LS input channel of node 0 (2**62 + node index)
PROCESS_LOCAL_CUID_BASE: Final = 2**62 + 2**24  # LS counter for process-local channels of node 0
PROCESS_LOCAL_CUID_STRIDE: Final = (2**63 - 2**24) // 2**24  # size of each node's process-local c_uid range
FIRST_GS_CUID: Final = 2**63  # GS counter: every channel created through GS

# m_uids (spec §1.2, §1.3)
INF_POOL_MUID: Final = 0  # infrastructure pool of node 0 (m_uid = node index)
PROCESS_LOCAL_MUID_BASE: Final = 2**59  # LS counter for process-local pools of node 0
PROCESS_LOCAL_MUID_STRIDE: Final = 2**35  # size of each node's process-local m_uid range
LOGGING_POOL_MUID: Final = 2**61
DEFAULT_POOL_MUID: Final = 2**62  # default (user) pool of node 0 (2**62 + node index)
FIRST_GS_MUID: Final = 2**63  # GS counter: user pools; any m_uid below this is a pre-defined pool

# Pool sizes (spec §1.2)
DEFAULT_SEG_SZ: Final = 2**32
INF_SEG_SZ: Final = 2**30


GS_PROCESS_NAME: Final = "global_services"
"""The name of Global Services' own entry (p_uid 1) in its process table."""


def default_process_name(p_uid: int) -> str:
    """Name of a process created without a user name (spec §1.3)."""
    return f"dragon_process_{p_uid}"


def default_channel_name(c_uid: int) -> str:
    """Name of a channel created without a user name (spec §1.3)."""
    return f"dragon_channel_{c_uid}"


def default_pool_name(m_uid: int) -> str:
    """Name of a pool created without a user name (spec §1.3)."""
    return f"D{m_uid}"


def title(label: str, name: str, default: str) -> str:
    """What to call a process or channel for people (`dragon status`): its label, else the name given
    at create; "" when it has neither (its `default` name says no more than its uid)."""
    return label or ("" if name == default else name)


def stdio_channel_name(stream: Literal["stdin", "stdout", "stderr"], p_uid: int) -> str:
    """Name of the PIPE channel GS creates for one stdio stream of process `p_uid` (spec §4.2)."""
    return f"{stream}_{p_uid}"


Mode = Literal["single", "crayhpe-multi", "test"]
CHILD_MAIN: Final = "from dragon.mp.child import main; main()"
"""The program of a child of the "dragon" start method (`python -c CHILD_MAIN`): the client makes its
command line with it, and Local Services serves exactly this one from its fork server."""

ENV_PREFIX: Final = "DRAGON_"


class LaunchParameters(msgspec.Struct, frozen=True, kw_only=True):
    """The launch parameters every managed process finds in its environment (spec §1.4).

    Each field `name` is the variable `DRAGON_<NAME>`; `*_cd`/`*_pd` are serialized channel/pool
    descriptors ("" = not available). `run_id` and `parent_puid` are our additions: the runtime this
    process belongs to, and the p_uid of the process that created it.
    """

    mode: Mode = "test"
    index: int = 0
    """Node index of the process's node (0 = the primary node)."""
    my_puid: int = GS_PUID
    gs_cd: str = ""
    gs_ret_cd: str = ""
    """This process's own GS-return channel, where GS replies."""
    gs_ret_cuid: int = 0
    """Its c_uid: the `r_c_uid` this process puts in its GS requests (our addition; 0 = none)."""
    local_shep_cd: str = ""
    shep_ret_cd: str = ""
    local_be_cd: str = ""
    be_cuid: int = BE_CUID
    default_pd: str = ""
    inf_pd: str = ""
    default_seg_sz: int = DEFAULT_SEG_SZ
    """Size of the default pool in bytes."""
    inf_seg_sz: int = INF_SEG_SZ
    """Size of the infrastructure pool in bytes."""
    run_id: str = ""
    parent_puid: int = LAUNCHER_PUID
    nodes: int = 1
    """How many nodes the runtime has (our addition); `index` is this process's."""
    ta_cd: str = ""
    """This node's transport agent's channel (many nodes; ""): the way to channels of other nodes."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> LaunchParameters:
        """Read the parameters from `env`; an unset variable takes the spec's default.

        Raises:
          ValueError: a variable is set but does not parse (not an integer, or an unknown mode); the
            text names the variable and its value.
        """
        values: dict[str, Any] = {}
        for field in msgspec.structs.fields(cls):
            var = ENV_PREFIX + field.name.upper()
            raw = env.get(var)
            if raw is None:
                continue
            try:
                # strict=False parses "42" into an int field; a Literal field checks the mode
                values[field.name] = msgspec.convert(raw, field.type, strict=False)
            except msgspec.ValidationError as exc:
                raise ValueError(f"bad launch parameter {var}={raw!r}: {exc}") from exc
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """Every parameter as a `DRAGON_<NAME>` variable, ready to merge into a child's environment."""
        return {ENV_PREFIX + f.name.upper(): str(getattr(self, f.name)) for f in msgspec.structs.fields(self)}


CONNECTED_PID_VAR: Final = "DRAGON_GS_CLIENT_PID"
"""Set in the environment of a connected process: a process it forks or spawns by other means than
GS inherits the launch parameters but is not that managed process, and must not take its replies."""

TRANSPORT_KEYS_VAR: Final = "DRAGON_TRANSPORT_KEYS"
"""Many nodes: the client half of the run's CURVE keys (`transport.zsecurity.RunKeys.for_processes`),
with which a process reaches the transport agent of another node (`dragon.client.remote`). Set by the
node's backend in its Local Services' environment, so every process of the node has it; never in a
message (a process's request carries its environment without it: NOT_INHERITED)."""

# Launch parameters are per process: LS fills in the child's own, so the parent's are not passed on.
NOT_INHERITED: Final = frozenset(
    [ENV_PREFIX + f.name.upper() for f in msgspec.structs.fields(LaunchParameters)]
    + [CONNECTED_PID_VAR, "DRAGON_PARENT_PUID", TRANSPORT_KEYS_VAR]
)
