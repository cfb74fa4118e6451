"""Small helpers shared by the benchmarks in tools/: statistics over repetitions, number formatting,
Markdown tables and the machine description that goes with every set of figures.

Benchmarks here run on shared, noisy 2-core machines, so they report the *median* over repetitions
(with min–max next to it) and quote ratios against a reference measured in the same run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import statistics
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any


def median(values: Iterable[float]) -> float:
    """The median; NaN for no values."""
    vals = list(values)
    return statistics.median(vals) if vals else math.nan


def percentile(values: Sequence[float], pct: float) -> float:
    """The `pct` percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        return math.nan
    vals = sorted(values)
    if len(vals) == 1:
        return vals[0]
    k = (len(vals) - 1) * pct / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(vals) - 1)
    return vals[lo] + (vals[hi] - vals[lo]) * (k - lo)


def summary(values: Sequence[float]) -> dict[str, Any]:
    """{"median", "min", "max", "reps": [...]} of per-repetition results."""
    return {
        "median": median(values),
        "min": min(values) if values else math.nan,
        "max": max(values) if values else math.nan,
        "reps": list(values),
    }


def fmt(x: float, digits: int = 0) -> str:
    """A number with thousands separators and `digits` decimals; "–" for NaN/None."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.{digits}f}"


def fmt_range(s: dict[str, Any], digits: int = 0) -> str:
    """ "median (min–max)" of a `summary`."""
    return f"{fmt(s['median'], digits)} ({fmt(s['min'], digits)}–{fmt(s['max'], digits)})"


def md_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; numbers (int/float) are right-aligned."""
    body = [[str(c) for c in row] for row in rows]
    numeric = [
        all(isinstance(r[i], (int, float)) or _looks_numeric(str(r[i])) for r in body) and body != []
        for i in range(len(headers))
    ]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric, strict=False))
            + " |"
        )

    sep = (
        "|"
        + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2)) for w, num in zip(widths, numeric, strict=False))
        + "|"
    )
    return "\n".join([line(list(headers)), sep, *(line(r) for r in body)])


def _looks_numeric(s: str) -> bool:
    t = s.replace(",", "").replace("x", "").replace("×", "").strip()
    try:
        float(t.split(" ")[0])
    except ValueError:
        return False
    return True


def machine_info() -> dict[str, Any]:
    """What the figures were measured on (CPU count, load, kernel, Python)."""
    try:
        load: list[float] = list(os.getloadavg())
    except OSError:
        load = []
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in load],
    }


def json_line(obj: Any) -> str:
    """One line of JSON (NaN becomes null)."""
    return json.dumps(_nan_to_none(obj), separators=(",", ":"), sort_keys=False)


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


def dd_entries() -> set[str]:
    """The reference runtime's files in /dev/shm (it names them DD...)."""
    return {name for name in os.listdir("/dev/shm") if name.startswith("DD")}


@contextlib.contextmanager
def reference_shm_removed(active: bool) -> Iterator[None]:
    """The reference runtime leaves /dev/shm/DD* files behind: remove those that appeared while the
    block ran (`active`), and only those (another program's are not ours to remove)."""
    before = dd_entries() if active else set()
    try:
        yield
    finally:
        for name in sorted(dd_entries() - before) if active else []:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join("/dev/shm", name))
