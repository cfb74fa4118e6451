"""Run `mypy --strict` over the package as it installs (dragon, dragon.services, dragon.transport).

mypy cannot follow setuptools' editable finder, which maps `dragon.transport` to the top-level
`transport/` folder. This builds a throw-away tree of symlinks with the installed layout, runs mypy
there, and rewrites the paths in mypy's report back to the repository's own paths.

Usage: python tools/typecheck.py [extra mypy args]   (exit status is mypy's)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAPPING = {"dragon": ROOT / "dragon", "dragon/services": ROOT / "services", "dragon/transport": ROOT / "transport"}


def build_shadow(top: Path) -> None:
    """Mirror every .py/.pyi/py.typed file of the mapped folders under `top` as symlinks."""
    for dest, src in MAPPING.items():
        for path in src.rglob("*"):
            if path.is_file() and (path.suffix in (".py", ".pyi") or path.name == "py.typed"):
                target = top / dest / path.relative_to(src)
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    target.symlink_to(path)


def shadow_trio(top: Path) -> None:
    """Put the installed trio itself first on mypy's path.

    trio has shipped its own (inline, current) type hints since 0.22; the `trio-typing` package still
    installs `trio-stubs` for older releases, which mypy would otherwise prefer, and they lack newer
    API (generic TaskStatus, `abandon_on_cancel`, ...). A link named `trio` on MYPYPATH wins over them.
    """
    import trio

    (top / "trio").symlink_to(Path(trio.__file__).parent)
    (top / "mypy.ini").write_text("[mypy]\nstrict = True\n\n[mypy-trio.*]\nfollow_imports = silent\n")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="dragon-typecheck-") as tmp:
        top = Path(tmp)
        build_shadow(top)
        shadow_trio(top)
        cmd = [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(top / "mypy.ini"),
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            "-p",
            "dragon",
            *sys.argv[1:],
        ]
        proc = subprocess.run(cmd, cwd=top, capture_output=True, text=True, env={**os.environ, "MYPYPATH": str(top)})
        out = proc.stdout + proc.stderr
        for dest, src in sorted(MAPPING.items(), key=lambda kv: -len(kv[0])):
            out = out.replace(dest + "/", str(src.relative_to(ROOT)) + "/")
        print(out, end="")
        return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
