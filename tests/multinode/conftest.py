"""Fixtures of the multi-node tests: isolated virtual clusters (netns.py), checked for leftovers.

`cluster` is a 2-node `VirtualCluster` (parametrize it indirectly for another size); `make_cluster(n)`
makes any number. After the test, each cluster must be empty (no process in its namespaces, no entry in
any node's /dev/shm, after a grace for processes still exiting), or the test fails naming what was
left; either way everything is killed and removed. When the test itself failed, only the cleanup runs
(its leftovers are a symptom, not news). Tests skip, saying why, only without root or without `ip`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator

import pytest

from netns import VirtualCluster, sweep_stale, unavailable

LEFTOVER_GRACE_S = 10.0  # as LEAK_GRACE_S in tests/conftest.py
_CALL_REPORT = pytest.StashKey[pytest.TestReport]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep the call phase's report on the item, for the fixtures' teardown to see whether it failed."""
    report = yield
    if report.when == "call":
        item.stash[_CALL_REPORT] = report
    return report


@pytest.fixture(scope="session", autouse=True)
def _sweep_stale_clusters() -> None:
    """Remove what a crashed earlier run left (its namespaces, processes, directories) once per session."""
    if unavailable() is None:
        sweep_stale()


@pytest.fixture
def make_cluster(request: pytest.FixtureRequest) -> Iterator[Callable[[int], VirtualCluster]]:
    """Factory of open virtual clusters of n nodes, checked and removed after the test."""
    if reason := unavailable():
        pytest.skip(reason)
    made: list[VirtualCluster] = []

    def make(n: int) -> VirtualCluster:
        cluster = VirtualCluster(n)
        cluster.open()
        made.append(cluster)
        return cluster

    yield make
    report = request.node.stash.get(_CALL_REPORT, None)
    check = report is not None and report.passed
    problems = []
    for cluster in made:
        left = cluster.wait_clear(LEFTOVER_GRACE_S) if check else {}
        try:
            cluster.close()
        except RuntimeError as e:
            problems.append(str(e))
        if left:
            problems.append(f"left in virtual cluster {cluster.prefix} (now killed and removed): {left}")
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture
def cluster(request: pytest.FixtureRequest, make_cluster: Callable[[int], VirtualCluster]) -> VirtualCluster:
    """An open 2-node virtual cluster (another size: `@pytest.mark.parametrize("cluster", [3], indirect=True)`)."""
    return make_cluster(getattr(request, "param", 2))
