"""Programs this one starts with `subprocess` use the start method too; prints JSON. Run as `prog.py METHOD`.

Neither this program nor those import dragon: "dragon" is known through the package's .pth file.
Under `dragon prog.py` the programs inherit this head's launch parameters, which are not theirs: each
is a plain program with a runtime of its own, whose children's output reaches that program's own
stdout and stderr (where its caller captures it), as under "spawn"; and this head keeps its own
connection to its runtime. The second program is CPython's mp_fork_bomb.py: no `__main__` guard, so
its child fails with a RuntimeError while it bootstraps.
"""

import json
import multiprocessing as mp
import subprocess
import sys
import tempfile
from pathlib import Path

GUARDED = """
import multiprocessing as mp, sys
def hello():
    print("hello from the grandchild", flush=True)
if __name__ == "__main__":
    mp.set_start_method(sys.argv[1])
    p = mp.Process(target=hello)
    p.start()
    p.join()
    print("exit", p.exitcode)
"""
UNGUARDED = """
import multiprocessing, sys
def foo():
    print("123")
multiprocessing.set_start_method(sys.argv[1])
p = multiprocessing.Process(target=foo)
p.start()
p.join()
sys.exit(p.exitcode)
"""


def run(source: str, method: str, folder: Path) -> subprocess.CompletedProcess[str]:
    path = folder / f"prog{len(list(folder.iterdir()))}.py"
    path.write_text(source)
    return subprocess.run([sys.executable, str(path), method], capture_output=True, text=True, timeout=60)


if __name__ == "__main__":
    method = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        guarded = run(GUARDED, method, Path(tmp))
        unguarded = run(UNGUARDED, method, Path(tmp))
    mp.set_start_method(method)
    p = mp.Process(target=abs, args=(-1,))
    p.start()
    p.join()
    print(
        json.dumps(
            {
                "guarded": [guarded.returncode, guarded.stdout.splitlines(), guarded.stderr],
                "unguarded": [unguarded.returncode, unguarded.stdout, "RuntimeError" in unguarded.stderr],
                "head": p.exitcode,
            }
        )
    )
