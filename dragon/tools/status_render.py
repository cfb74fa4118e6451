"""`dragon status`'s text: a header line and one aligned table per kind of object.

Tables fit the terminal: long texts are cut, then the less needed figures are left out, never a
figure cut (`table`).

Nodes: the NODES table is shown always, one line on a single node, because it answers "where and on
how loaded a machine" (CPUs, memory, load) for one node as for many, and one layout is easier to read
and to parse than two. What exists only with several nodes is shown only then: the transport
security (in the NODES title: there is no transport on one node) and the NODE column of the process
table (a column of zeros on one node would take the room of the command line). Objects are shown by what people call them (`ids.title`), not by the default
names that only repeat a uid; `--json` has every name and figure.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Final

from dragon.ids import default_channel_name, default_process_name, title
from dragon.tools.status_report import NodeRow, ObjectRow, ProcessRow, RunSummary, StatusReport
from dragon.transport import records

WIDTH: Final = 100
"""Columns the tables fit in when the output is not a terminal (and COLUMNS is not set)."""
COMFORT_CELL: Final = 20
"""How narrow a text column gets, to fit a table in the terminal, before figures are left out."""
MIN_CELL: Final = 12
"""The narrowest a text column gets to fit a table in the terminal."""
SECURITY_WORDS: Final = {
    "curve": "curve (authenticated and encrypted)",
    "none": "none (neither authenticated nor encrypted: --transport-security none)",
}


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _duration(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h < 48 else f"{h // 24}d{h % 24:02d}h"


def _opt(v: object) -> str:
    return "-" if v is None else str(v)


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    right: Sequence[bool],
    *,
    fit: int | None = None,
    shrink: Sequence[int] = (),
    drop: Sequence[int] = (),
) -> list[str]:
    """Aligned text columns, two spaces apart; `right[i]` right-aligns column i (figures).

    With `fit`, lines are kept within `fit` characters where that can be done: the text columns
    `shrink` lists are narrowed, in that order, to COMFORT_CELL characters (a cut cell ends in
    "..."); then the columns `drop` lists are left out, in that order; then the texts are narrowed
    down to MIN_CELL; room a dropped column left goes back to the texts. Figures are never cut, so a
    very narrow terminal still gets longer lines."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    shown = list(range(len(headers)))
    if fit is not None:
        natural = list(widths)

        def over() -> int:
            return sum(widths[i] for i in shown) + 2 * (len(shown) - 1) - fit

        def narrow(floor: int) -> None:
            for i in shrink:
                widths[i] -= max(0, min(over(), widths[i] - max(floor, len(headers[i]))))

        narrow(COMFORT_CELL)
        for i in drop:
            if over() <= 0:
                break
            shown.remove(i)
        narrow(MIN_CELL)
        for i in reversed(shrink):
            widths[i] += max(0, min(-over(), natural[i] - widths[i]))

    def line(cells: Sequence[str]) -> str:
        out = []
        for i in shown:
            c, w = cells[i], widths[i]
            c = c if len(c) <= w else c[: w - 3] + "..."
            out.append(c.rjust(w) if right[i] else c.ljust(w))
        return "  ".join(out).rstrip()

    return [line(headers)] + [line(r) for r in rows]


def render(report: StatusReport, width: int = WIDTH) -> str:
    """The human-readable form of a report: a header line and one aligned table per kind of object,
    each within `width` columns where cutting texts and leaving out the less needed figures
    (PARENT and CPU, SENT and RECV, LARGEST and ALLOCS) can make it so (`table`).

    Processes and channels are shown by what people call them (`ids.title`: the label, else a name
    given at create, else "-": the default names only repeat the uid); --json has every name. A live
    process's STATE is its OS state (sleeping, running, ...), a dead one's DEAD(exit code); TARGET is
    what it runs as its creator said (`st.py: work`), else its command line. BLOCKED_S/R counts the
    senders and receivers waiting on a channel."""
    lines = [
        f"Dragon runtime {report.run_id}  up {_duration(report.uptime_s)}  "
        f"state {report.gs_state or 'unknown'}  pgid {report.pgid}  dir {report.runtime_dir}"
    ]
    if not report.answering:
        lines.append(f"NOT ANSWERING: {report.error}")
    lines += ["", "SERVICES", *_services_table(report)]
    if not report.answering:
        return "\n".join(lines) + "\n"
    lines += ["", _nodes_title(report), *_nodes_table(report, width)]
    if any(n.transport is not None for n in report.nodes):
        lines += ["", "TRANSPORT (each node's agent, since it started)", *_transport_table(report, width)]
    lines += ["", f"PROCESSES ({len(report.processes)})", *_processes_table(report, width)]
    lines += ["", f"CHANNELS ({len(report.channels)})", *_channels_table(report, width)]
    if report.objects:
        lines += ["", f"SYNCHRONIZATION OBJECTS ({len(report.objects)})", *_objects_table(report, width)]
    lines += ["", f"POOLS ({len(report.pools)})", *_pools_table(report, width)]
    return "\n".join(lines) + "\n"


def _services_table(report: StatusReport) -> list[str]:
    """The launcher, Local Services and Global Services: pid, state, uptime, CPU, memory."""
    return table(
        ["NAME", "PID", "STATE", "UPTIME", "CPU", "RSS"],
        [
            [
                s.name,
                str(s.pid),
                s.state,
                _duration(s.uptime_s),
                "-" if s.cpu_s is None else f"{s.cpu_s:.2f}s",
                _size(s.rss_bytes),
            ]
            for s in report.services
        ],
        [False, True, False, True, True, True],
    )


def _nodes_title(report: StatusReport) -> str:
    """NODES (n), and with several nodes the transport security between them."""
    text = f"NODES ({len(report.nodes)})"
    if len(report.nodes) > 1:
        security = report.security or "unknown"
        text += f"  transport security: {SECURITY_WORDS.get(security, security)}"
    return text


def _nodes_table(report: StatusReport, width: int) -> list[str]:
    """One row per node: ROLE says which is the primary; PROCS counts its live processes; AVAIL
    (available memory) and LOAD (1, 5 and 15-minute averages) are known for this machine's node only."""
    return table(
        ["NODE", "HOST", "ROLE", "STATE", "CPUS", "MEMORY", "AVAIL", "LOAD", "PROCS"],
        [
            [
                str(n.idx),
                _text(n.host),
                "primary" if n.primary else "-",
                n.state,
                str(n.cpus),
                _size(n.memory_bytes),
                _size(n.memory_available_bytes),
                _load(n),
                str(n.processes),
            ]
            for n in report.nodes
        ],
        [True, False, False, False, True, True, True, False, True],
        fit=width,
        shrink=[1],
        drop=[6, 7],
    )


def _transport_table(report: StatusReport, width: int) -> list[str]:
    """Per node: frames and bytes its transport agent sent and received, frames queued for it to send,
    remote operations running on its channels, frames dropped."""
    rows = [
        [
            str(n.idx),
            str(t.frames_out),
            _size(t.bytes_out),
            str(t.frames_in),
            _size(t.bytes_in),
            str(t.queued),
            str(t.ops),
            str(t.dropped),
        ]
        for n in report.nodes
        if (t := n.transport) is not None
    ]
    headers = ["NODE", "SENT", "BYTES_OUT", "RECEIVED", "BYTES_IN", "QUEUED", "OPS", "DROPPED"]
    return table(headers, rows, [True] * len(headers), fit=width)


def _load(n: NodeRow) -> str:
    return "-" if n.load is None else "/".join(f"{x:.2f}" for x in n.load)


def _processes_table(report: StatusReport, width: int) -> list[str]:
    """One row per managed process; PARENT and CPU go first when the width is short. With several
    nodes, NODE (after P_UID) says where each runs."""
    headers = ["P_UID", "PID", "NAME", "PARENT", "STATE", "CPU", "RSS", "TARGET"]
    rows = [
        [
            str(p.p_uid),
            _opt(p.pid),
            _text(title(p.label, p.name, default_process_name(p.p_uid))),
            str(p.parent),
            _process_state(p),
            "-" if p.cpu_s is None else f"{p.cpu_s:.2f}s",
            _size(p.rss_bytes),
            _text(p.target) if p.target else _command(p.command),
        ]
        for p in report.processes
    ]
    right = [True, True, False, True, False, True, True, False]
    shrink, drop = [7, 2], [3, 5]
    if len(report.nodes) > 1:
        headers.insert(1, "NODE")
        right.insert(1, True)
        for row, p in zip(rows, report.processes, strict=True):
            row.insert(1, str(p.node))
        shrink, drop = [i + 1 for i in shrink], [i + 1 for i in drop]
    return table(headers, rows, right, fit=width, shrink=shrink, drop=drop)


def _channels_table(report: StatusReport, width: int) -> list[str]:
    """One row per channel; RECV and SENT go first when the width is short."""
    return table(
        ["C_UID", "STATE", "CAP", "WAITING", "BLOCKED_S/R", "SENT", "RECV", "NAME"],
        [
            [
                str(c.c_uid),
                c.state,
                _opt(c.capacity),
                _opt(c.depth),
                "-" if c.blocked_senders is None else f"{c.blocked_senders}/{c.blocked_receivers}",
                _opt(c.sent),
                _opt(c.received),
                _text(title(c.label, c.name, default_channel_name(c.c_uid))),
            ]
            for c in report.channels
        ],
        [True, False, True, True, True, True, True, False],
        fit=width,
        shrink=[7],
        drop=[6, 5],
    )


def _objects_table(report: StatusReport, width: int) -> list[str]:
    """One row per Lock, Event, Barrier...: who holds it, how many wait, its value; NOTE says it was
    broken by a death (or aborted) or taken back from a dead holder."""
    return table(
        ["C_UID", "KIND", "WAITERS", "HOLDER", "VALUE", "NOTE", "NAME"],
        [
            [
                str(o.c_uid),
                o.kind,
                _opt(o.waiters),
                ",".join(map(_who, o.holders)) if o.holders else "-",
                _opt(o.value),
                _object_note(o),
                _text(title(o.label, o.name, default_channel_name(o.c_uid))),
            ]
            for o in report.objects
        ],
        [True, False, True, True, True, False, False],
        fit=width,
        shrink=[6],
        drop=[5],
    )


def _object_note(o: ObjectRow) -> str:
    if o.broken_by:
        return "aborted" if o.broken_by < 0 else f"broken: pid {_who(o.broken_by)} died"
    if o.reclaimed_from:
        return f"taken back from dead pid {_who(o.reclaimed_from)}"
    return "-"


def _who(word: int) -> str:
    """A pid word of a record (a holder, the party whose death broke it...) as the table shows it: the
    pid, and for a process of another node than the record's (`records.remote_holder`, a number above
    2**32 in the words and in --json) its node: "1234 on node 1"."""
    pid, node = records.holder_of(word)
    return str(pid) if node is None else f"{pid} on node {node}"


def _pools_table(report: StatusReport, width: int) -> list[str]:
    """One row per pool; LARGEST and ALLOCS go first when the width is short."""
    return table(
        ["M_UID", "NAME", "STATE", "SIZE", "USED", "FREE", "LARGEST", "ALLOCS"],
        [
            [
                str(p.m_uid),
                _text(p.name),
                p.state,
                _size(p.size_bytes),
                _size(p.used_bytes),
                _size(p.free_bytes),
                _size(p.largest_free_bytes),
                _opt(p.allocations),
            ]
            for p in report.pools
        ],
        [True, False, False, True, True, True, True, True],
        fit=width,
        shrink=[1],
        drop=[6, 7],
    )


def _process_state(p: ProcessRow) -> str:
    if p.state == "DEAD":
        return f"DEAD({_opt(p.exit_code)})"
    return p.os_state if p.state == "ACTIVE" and p.os_state else p.state


def _text(text: str) -> str:
    """A text on one line of a table cell ("-" if empty): a name, label or code may hold newlines."""
    return " ".join(text.split()) or "-"


def _command(cmd: list[str] | None) -> str:
    """The command line for the table: the program's base name (a venv path says little and takes
    the room of the arguments), then its arguments (--json has it all)."""
    if not cmd:
        return "-"
    return _text(" ".join([os.path.basename(cmd[0]), *cmd[1:]]))


def render_runs(summaries: Sequence[RunSummary]) -> str:
    """The list of running runtimes shown when several run and none is named."""
    return "\n".join(
        table(
            ["RUN_ID", "LAUNCHER_PID", "UPTIME", "NODES", "DIR"],
            [[s.run_id, str(s.launcher_pid), _duration(s.uptime_s), str(s.nodes), s.runtime_dir] for s in summaries],
            [False, True, True, True, False],
        )
    )


def render_node_dirs(summaries: Sequence[RunSummary]) -> str:
    """The runtime directories here of nodes other than a primary (listed apart: not runtimes to ask)."""
    return "\n".join(
        table(
            ["RUN_ID", "NODE", "OF_RUN", "LAUNCHER_PID", "UPTIME", "DIR"],
            [
                [
                    s.run_id,
                    f"{s.node_idx} of {s.nodes}",
                    s.primary_run_id or "?",
                    str(s.launcher_pid),
                    _duration(s.uptime_s),
                    s.runtime_dir,
                ]
                for s in summaries
            ],
            [False, True, False, True, True, False],
        )
    )
