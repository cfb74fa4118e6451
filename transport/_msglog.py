"""The one place where a message sent or received on a service link is logged (logger `dragon.messages`).

`dragon --log-level debug` writes the whole sequence of the spec (§2, §3), with times and actors, into
the run's log file from these lines (tools/bench_bringup.py reads its phases from them). Kept out of
`_codec` because `logging` is a module the client's processes do not import (tests/dragon/test_client_imports.py).
"""

from __future__ import annotations

import logging
import os

import msgspec

log = logging.getLogger("dragon.messages")


def log_message(direction: str, where: str, msg: object) -> None:
    """One DEBUG line per message: `sent GSIsUp on LA channel: GSIsUp(tag=3)`.

    A process's environment (`env` of GSProcessCreate, SHProcessCreate) is logged by variable name
    only, unless DRAGON_LOG_ENV_VALUES=1: it often holds tokens and passwords (dragon._log).
    """
    if log.isEnabledFor(logging.DEBUG):
        env = getattr(msg, "env", None)
        if isinstance(env, dict) and env and os.environ.get("DRAGON_LOG_ENV_VALUES") != "1":
            msg = msgspec.structs.replace(msg, env=dict.fromkeys(env, "..."))  # type: ignore[type-var]
        log.debug("%s %s %s: %r", direction, type(msg).__name__, where, msg)
