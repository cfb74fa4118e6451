"""Fault injection for the test suite: `DRAGON_TEST_FAULT=name[,name...]` in the environment.

Only the fault tests set it. Each name is one deliberate failure at one place of the services, so
that failure paths (spec §2.1, §3.2) are tested with real processes rather than mocks:

- `ls-hang-bringup`: Local Services stops after reading BENodeIdxSH (bringup timeout; kill during bringup);
- `gs-hang-bringup`: Global Services stops before GSPingSH;
- `gs-crash-bringup`: Global Services raises an exception before GSPingSH;
- `gs-garbage-stdout`: Global Services writes text that is not a frame on its stdout once it is up;
- `gs-crash`: Global Services raises an exception once it is up (AbnormalTermination from GS).
"""

from __future__ import annotations

import os


def active(name: str) -> bool:
    """True if the fault `name` is requested for this run."""
    return name in os.environ.get("DRAGON_TEST_FAULT", "").split(",")
