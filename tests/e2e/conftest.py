"""The `placement` fixture of the e2e tests parametrized by placement (placement.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from placement import Placed, Placement

from netns import VirtualCluster


@pytest.fixture
def placement(request: pytest.FixtureRequest) -> Placed:
    """`Placed` for the test's `placement` parameter (`placements(...)` with `indirect=True`): a
    placement of several nodes gets an isolated virtual cluster of that many (`make_cluster`: checked
    for leftovers after the test, and removed)."""
    where: Placement = request.param
    if where.nodes == 1:
        return Placed(where, None)
    make: Callable[[int], VirtualCluster] = request.getfixturevalue("make_cluster")
    return Placed(where, make(where.nodes))
