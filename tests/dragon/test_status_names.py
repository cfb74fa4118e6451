"""What `dragon status` calls things, in one process (issue #12 item 7): the texts the start method
and the launcher give Global Services (dragon/mp/names.py, `cli.head_labels`), and how the status
tables fit a terminal (`dragon.tools.status_render.table`). Pure functions; the e2e side is tests/e2e/test_status.py."""

from __future__ import annotations

import functools
import multiprocessing
import sys
import types

import pytest

from dragon.cli import head_labels
from dragon.client import python_child
from dragon.ids import default_channel_name, default_process_name, title
from dragon.mp import names as _mp_names
from dragon.tools.status_render import MIN_CELL, table


def work(x: int) -> int:
    return x


class Job:
    def step(self) -> None:
        pass

    def __call__(self) -> None:
        pass


class Worker(multiprocessing.Process):
    def run(self) -> None:
        pass


HERE = __name__  # this module, as pytest imported it


def test_callables_are_named_module_and_qualname() -> None:
    assert python_child.callable_text(work) == f"{HERE}: work"
    assert python_child.callable_text(Job().step) == f"{HERE}: Job.step"
    assert python_child.callable_text(Job()) == f"{HERE}: Job"  # a callable object: by its class
    assert python_child.callable_text(functools.partial(work, 1)) == f"partial({HERE}: work)"
    assert python_child.callable_text(len) == "builtins: len"


def test_the_main_module_is_named_by_its_script_or_its_module(monkeypatch: pytest.MonkeyPatch) -> None:
    script = types.ModuleType("__mp_main__")  # what spawn calls the parent's main module in a child
    script.__file__ = "/home/someone/project/st.py"
    script.__spec__ = None
    monkeypatch.setitem(sys.modules, "__mp_main__", script)
    fn = types.FunctionType(work.__code__, script.__dict__, "work")
    fn.__module__, fn.__qualname__ = "__mp_main__", "work"
    assert python_child.callable_text(fn) == "st.py: work"
    module = types.ModuleType("__main__")  # `python -m pkg.tool`
    module.__spec__ = types.SimpleNamespace(name="pkg.tool")  # type: ignore[assignment]
    monkeypatch.setitem(sys.modules, "__main__", module)
    assert python_child.module_text("__main__") == "pkg.tool"


def test_a_process_target_is_its_target_or_its_own_run() -> None:
    ctx = multiprocessing.get_context("spawn")
    assert _mp_names.target_of(ctx.Process(target=work, args=(1,))) == f"{HERE}: work"
    assert _mp_names.target_of(Worker()) == f"{HERE}: Worker.run"
    assert _mp_names.target_of(ctx.Process()) == ""  # runs nothing


def test_a_channel_label_names_its_kind_and_maker() -> None:
    assert _mp_names.channel_label("Queue") == f"Queue of {multiprocessing.current_process().name}"


def test_the_head_is_labelled_only_when_it_is_python() -> None:
    assert head_labels(sys.executable, ["dir/hello.py", "a"]) == ("MainProcess", "hello.py")
    assert head_labels(sys.executable, ["-m", "pkg.tool", "a"]) == ("MainProcess", "pkg.tool")
    assert head_labels(sys.executable, ["-c", "print(1)"]) == ("MainProcess", "-c print(1)")
    assert head_labels("/bin/ls", ["-l"]) == ("", "")


def test_title_prefers_the_label_and_hides_default_names() -> None:
    assert title("Process-1", default_process_name(2**32), default_process_name(2**32)) == "Process-1"
    assert title("", "st-sleeper", default_process_name(2**32)) == "st-sleeper"
    assert title("", default_channel_name(2**63), default_channel_name(2**63)) == ""


ROWS = [
    ["4294967297", "SpawnPoolWorker-12", "12345", "multiprocessing.pool: worker"],
    ["1", "global_services", "7", "-"],
]
HEADERS = ["P_UID", "NAME", "CPU", "TARGET"]
RIGHT = [True, False, True, False]


def test_a_table_that_fits_is_not_touched() -> None:
    lines = table(HEADERS, ROWS, RIGHT, fit=200, shrink=[3, 1], drop=[2])
    assert lines == table(HEADERS, ROWS, RIGHT)
    assert lines[1].endswith("multiprocessing.pool: worker") and "12345" in lines[1]


def test_a_table_cuts_texts_then_leaves_out_figures_to_fit() -> None:
    natural = max(len(line) for line in table(HEADERS, ROWS, RIGHT))
    cut = table(HEADERS, ROWS, RIGHT, fit=natural - 4, shrink=[3, 1], drop=[2])
    assert max(map(len, cut)) == natural - 4  # the target gave 4 characters, nothing else changed
    assert cut[1].endswith("multiprocessing.pool:...") and "SpawnPoolWorker-12" in cut[1] and "CPU" in cut[0]
    narrow = table(HEADERS, ROWS, RIGHT, fit=50, shrink=[3, 1], drop=[2])
    assert max(map(len, narrow)) <= 50 and "CPU" not in narrow[0] and "12345" not in narrow[1]
    assert "SpawnPoolWorker-12" in narrow[1]  # the room of the figure went back to the texts
    tiny = table(HEADERS, ROWS, RIGHT, fit=10, shrink=[3, 1], drop=[2])
    assert tiny[1].split()[0] == "4294967297"  # figures are never cut: the line stays longer
    assert len(tiny[1].split()[1]) == MIN_CELL
