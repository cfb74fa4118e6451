"""The wheel installs what users import: dragon.transport and dragon.services, never top-level names
(besides the .pth file that makes the start method "dragon" known everywhere).

pyproject.toml maps the repository's top-level services/ and transport/ into the dragon package
(ARCHITECTURE.md). An editable install hides mistakes in that mapping, so this builds a real wheel,
installs it into a fresh venv and imports from there, with the dev venv's trio and msgspec on
PYTHONPATH but not its editable dragon (.pth files on PYTHONPATH are not processed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 300  # a guard against hangs, not a speed assertion


def run(
    argv: list[str | Path], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a helper command to completion; on failure the assertion shows its output."""
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def build_wheel(out: Path) -> Path:
    """Build the repository's wheel from a clean copy of its sources into `out`.

    The copy keeps the repository's build/ folder out of it: setuptools never deletes files there, so a
    module removed from the sources would still ship from a stale build/lib.
    """
    src = out / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git", "build", "dist", "*.egg-info", ".venv", ".ci-venv", "__pycache__", "*_cache", ".hypothesis"
        ),
    )
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", out, src])
    (wheel,) = out.glob("dragon-*.whl")
    return wheel


def test_wheel_installs_services_and_transport_inside_dragon(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "dragon/transport/__init__.py" in names
    assert "dragon/services/__init__.py" in names
    top_level = {name.split("/")[0] for name in names}
    assert not top_level & {"transport", "services"}, sorted(top_level)

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv])
    bindir = venv / "bin"
    run([bindir / "python", "-m", "pip", "install", "--no-deps", "--no-index", wheel])

    # trio's site-packages (the dev venv's) holds msgspec too, and the editable dragon only as a .pth
    env = {**os.environ, "PYTHONPATH": str(Path(trio.__file__).parent.parent)}
    code = "import dragon.transport, dragon.services; print(dragon.transport.__file__)"
    imported = run([bindir / "python", "-c", code], cwd=tmp_path, env=env).stdout.strip()
    assert Path(imported).is_relative_to(venv), imported

    dragon = bindir / "dragon"
    assert dragon.is_file()
    run([dragon, "--help"], cwd=tmp_path, env=env)

    # The .pth file (setup.py): "dragon" is a start method of an interpreter that never imported
    # dragon, and start-up imports neither dragon nor multiprocessing.
    assert "dragon-start-method.pth" in names
    code = (
        "import sys; light = not {'dragon', 'multiprocessing'} & set(sys.modules)\n"
        "import multiprocessing as mp; ctx = mp.get_context('dragon')\n"
        "print(light, sys.modules['dragon'].__file__)"
    )
    light, imported = run([bindir / "python", "-c", code], cwd=tmp_path, env=env).stdout.split()
    assert light == "True" and Path(imported).is_relative_to(venv), imported
