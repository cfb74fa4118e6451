"""`dragon status` of runs of one and of several nodes (issue 16 item 7), in one process: a report is
built by `status_report.fill` from a handmade Global Services answer (what GS sends: GSStatusResponse
with its nodes), then rendered as text and as the JSON document. The e2e side (a real single-node
runtime) is tests/e2e/test_status.py."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import msgspec

from dragon import _rundir
from dragon.descriptors import ChannelDescriptor, NodeDescriptor, ObjectState, PoolDescriptor, ProcessDescriptor
from dragon.messages import GSStatusResponse, ListErr, TATraffic
from dragon.tools.status_render import render
from dragon.tools.status_report import JSON_VERSION, ServiceRow, StatusReport, fill
from dragon.transport import Channel, run_prefix

GIB = 1 << 30


def _node(idx: int, host: str) -> NodeDescriptor:
    return NodeDescriptor(
        idx=idx,
        host_name=host,
        is_primary=idx == 0,
        num_cpus=2 + idx,
        physical_mem_bytes=(4 + idx) * GIB,
        shep_cd="",
        run_id=f"{idx:08x}",
    )


def _proc(p_uid: int, node: int, state: ObjectState = ObjectState.ACTIVE) -> ProcessDescriptor:
    return ProcessDescriptor(
        p_uid=p_uid,
        name=f"p{p_uid}",
        node=node,
        state=state,
        pid=None,
        ecode=0 if state == ObjectState.DEAD else None,
    )


def _report(resp: GSStatusResponse) -> StatusReport:
    """A report of run `0badc0de` (this process is node 0) filled from `resp`."""
    info = _rundir.RunInfo(
        run_id="0badc0de",
        launcher_pid=1,
        ls_pid=1,
        gs_pid=1,
        pgid=1,
        gs_cd="",
        la_cd="",
        shep_cd="",
        started=time.time(),
        nodes=len(resp.nodes),
    )
    services = [
        ServiceRow(name=name, pid=1, state="gone", uptime_s=None, cpu_s=None, rss_bytes=None)
        for name in ("launcher", "local_services", "global_services")
    ]
    report = StatusReport(
        run_id=info.run_id,
        runtime_dir="/nowhere",
        answering=False,
        error=None,
        gs_state=None,
        security=None,
        started=info.started,
        uptime_s=1.0,
        pgid=1,
        services=services,
        processes=[],
        channels=[],
        pools=[],
    )
    fill(report, info, resp, None, time.monotonic() + 5)
    return report


def _json(report: StatusReport) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(msgspec.json.encode(report))
    return doc


def _section(text: str, title: str) -> list[str]:
    found = [s for s in text.split("\n\n") if s.startswith(title)]
    assert len(found) == 1, (title, text)
    return found[0].splitlines()


def test_a_single_node_has_one_node_row_and_no_node_column() -> None:
    resp = GSStatusResponse(
        ref=1,
        err=ListErr.SUCCESS,
        state="HAS_HEAD",
        processes=[_proc(1, 0), _proc(2, 0), _proc(3, 0, ObjectState.DEAD)],
        nodes=[_node(0, "solo")],
    )
    report = _report(resp)
    doc = _json(report)
    assert doc["version"] == JSON_VERSION == 2
    assert doc["security"] is None
    [node] = doc["nodes"]
    assert {k: node[k] for k in ("idx", "host", "primary", "state", "cpus", "memory_bytes", "processes")} == {
        "idx": 0,
        "host": "solo",
        "primary": True,
        "state": "ACTIVE",
        "cpus": 2,
        "memory_bytes": 4 * GIB,
        "processes": 2,  # the dead one is not counted
    }
    assert node["run_id"] == "00000000" and len(node["load"]) == 3  # this machine's node: its load
    assert node["memory_available_bytes"] > 0
    assert [p["node"] for p in doc["processes"]] == [0, 0, 0]

    text = render(report, 200)
    nodes = _section(text, "NODES")
    assert nodes[0] == "NODES (1)"  # no transport on one node: no security said
    assert nodes[1].split() == ["NODE", "HOST", "ROLE", "STATE", "CPUS", "MEMORY", "AVAIL", "LOAD", "PROCS"]
    assert nodes[2].split()[:6] == ["0", "solo", "primary", "ACTIVE", "2", "4.0"]
    assert nodes[2].split()[-1] == "2"
    assert _section(text, "PROCESSES")[1].split()[:3] == ["P_UID", "PID", "NAME"]  # unchanged: no NODE


def test_three_nodes_show_each_process_node_and_the_transport_security() -> None:
    name = run_prefix("t" + uuid.uuid4().hex[:7]) + "c5"
    remote = Channel.create(name, capacity=8, block_size=1024)  # here, but GS says it lives on node 1
    try:
        resp = GSStatusResponse(
            ref=1,
            err=ListErr.SUCCESS,
            state="HAS_HEAD",
            processes=[
                _proc(1, 0),
                _proc(10, 0),
                _proc(11, 1),
                _proc(12, 2),
                _proc(13, 2),
                _proc(14, 2, ObjectState.DEAD),
            ],
            channels=[
                ChannelDescriptor(c_uid=5, m_uid=2**62 + 1, name="far", node=1, sdesc=name, state=ObjectState.ACTIVE)
            ],
            pools=[PoolDescriptor(m_uid=7, name="far-pool", node=2, sdesc="", state=ObjectState.ACTIVE)],
            nodes=[_node(2, "n2"), _node(0, "n0"), _node(1, "n1")],
            security="curve",
        )
        report = _report(resp)
    finally:
        remote.destroy()
    doc = _json(report)
    assert doc["version"] == 2 and doc["security"] == "curve"
    assert [(n["idx"], n["host"], n["primary"], n["cpus"], n["processes"]) for n in doc["nodes"]] == [
        (0, "n0", True, 2, 2),
        (1, "n1", False, 3, 1),
        (2, "n2", False, 4, 2),
    ]
    assert doc["nodes"][0]["load"] is not None
    assert [(n["load"], n["memory_available_bytes"]) for n in doc["nodes"][1:]] == [(None, None)] * 2  # not here
    assert {p["p_uid"]: p["node"] for p in doc["processes"]} == {1: 0, 10: 0, 11: 1, 12: 2, 13: 2, 14: 2}
    far = next(c for c in doc["channels"] if c["c_uid"] == 5)
    assert far["node"] == 1 and far["capacity"] is None  # another node's shared memory is not read
    assert next(p for p in doc["pools"] if p["m_uid"] == 7)["node"] == 2

    text = render(report, 200)
    nodes = _section(text, "NODES")
    assert nodes[0] == "NODES (3)  transport security: curve (authenticated and encrypted)"
    rows = [line.split() for line in nodes[2:]]
    assert [r[:3] for r in rows] == [["0", "n0", "primary"], ["1", "n1", "-"], ["2", "n2", "-"]]
    assert [r[-2:] for r in rows[1:]] == [["-", "1"], ["-", "2"]]  # no load known; live processes
    procs = _section(text, "PROCESSES")
    assert procs[1].split()[:3] == ["P_UID", "NODE", "PID"]
    assert {r.split()[0]: r.split()[1] for r in procs[2:]} == {
        "1": "0",
        "10": "0",
        "11": "1",
        "12": "2",
        "13": "2",
        "14": "2",
    }


def test_an_unencrypted_transport_is_said_plainly() -> None:
    resp = GSStatusResponse(ref=1, err=ListErr.SUCCESS, nodes=[_node(0, "a"), _node(1, "b")], security="none")
    text = render(_report(resp), 200)
    assert _section(text, "NODES")[0] == (
        "NODES (2)  transport security: none (neither authenticated nor encrypted: --transport-security none)"
    )


def test_a_narrow_terminal_leaves_out_load_and_available_memory_first() -> None:
    resp = GSStatusResponse(ref=1, err=ListErr.SUCCESS, nodes=[_node(0, "host-" + "x" * 40)])
    lines = _section(render(_report(resp), 60), "NODES")
    assert lines[1].split() == ["NODE", "HOST", "ROLE", "STATE", "CPUS", "MEMORY", "PROCS"]
    assert all(len(line) <= 60 for line in lines), lines


def test_each_nodes_transport_traffic_is_shown() -> None:
    """Issue 17 item 5: the agents' reports (GSStatusResponse.traffic) become each node's `transport`
    in JSON and a TRANSPORT table; a node whose agent has not reported yet has none."""
    traffic = [
        TATraffic(node_idx=0, frames_out=10, bytes_out=2048, frames_in=12, bytes_in=4096, queued=3, ops=1, dropped=0),
    ]
    resp = GSStatusResponse(
        ref=1, err=ListErr.SUCCESS, nodes=[_node(0, "a"), _node(1, "b")], security="curve", traffic=traffic
    )
    report = _report(resp)
    assert report.nodes[0].transport is not None and report.nodes[0].transport.bytes_in == 4096
    assert report.nodes[1].transport is None
    lines = _section(render(report, 200), "TRANSPORT")
    assert lines[1].split() == ["NODE", "SENT", "BYTES_OUT", "RECEIVED", "BYTES_IN", "QUEUED", "OPS", "DROPPED"]
    assert lines[2].split()[:2] == ["0", "10"] and lines[2].split()[-3:] == ["3", "1", "0"]
    assert len(lines) == 3
