"""Which heads get their fork server booted while the runtime comes up (`cli.fork_server_for`, issue
#12 item 4): a Python script or `-c CODE` whose source names multiprocessing and dragon. Pure
function; the runtime's side is tests/e2e/test_mp_forkserver.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dragon.cli import fork_server_for

OURS = [sys.executable, *subprocess._args_from_interpreter_flags()]  # type: ignore[attr-defined]


def test_a_script_or_code_naming_multiprocessing_and_dragon_gets_our_interpreter_and_flags(tmp_path: Path) -> None:
    script = tmp_path / "work.py"
    script.write_text("import dragon\nfrom multiprocessing import Pool\n")
    assert fork_server_for(sys.executable, [str(script), "arg"]) == OURS
    code = "import multiprocessing as mp; mp.set_start_method('dragon')"
    assert fork_server_for(sys.executable, ["-c", code, "arg"]) == OURS


def test_anything_else_gets_none(tmp_path: Path) -> None:
    hello = tmp_path / "hello.py"
    hello.write_text('print("hello")\n')
    assert fork_server_for(sys.executable, [str(hello)]) == []
    assert fork_server_for(sys.executable, ["-c", "print(1)"]) == []
    assert fork_server_for(sys.executable, ["-c", "import multiprocessing"]) == []  # another start method's
    assert fork_server_for(sys.executable, ["-c", "import dragon.native"]) == []  # no start method
    assert fork_server_for(sys.executable, ["-m", "multiprocessing.dragon"]) == []  # a module's source is not read
    assert fork_server_for(sys.executable, [str(tmp_path)]) == []  # a directory (with __main__.py) is not read
    assert fork_server_for("/bin/echo", ["multiprocessing dragon"]) == []  # not a Python program
