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


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="dragon-typecheck-") as tmp:
        top = Path(tmp)
        build_shadow(top)
        cmd = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(ROOT / ".mypy_cache"),
               "-p", "dragon", *sys.argv[1:]]
        proc = subprocess.run(cmd, cwd=top, capture_output=True, text=True,
                              env={**os.environ, "MYPYPATH": str(top)})
        out = proc.stdout + proc.stderr
        for dest, src in sorted(MAPPING.items(), key=lambda kv: -len(kv[0])):
            out = out.replace(dest + "/", str(src.relative_to(ROOT)) + "/")
        print(out, end="")
        return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
