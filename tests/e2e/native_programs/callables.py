"""Head program for test_native_api's callable targets: `dragon.native.Process(f, args, kwargs)` runs
f in a new process as multiprocessing's spawn would, also made from a `ProcessTemplate`; prints one
JSON report.

Each child writes what it saw to a file of the working directory (a report of its own); the head
collects them with the exit codes and the errors raised at start."""

import json
import multiprocessing
import os
import sys
from typing import Any

from dragon.errors import InvalidArgument
from dragon.native import Process, ProcessTemplate, Queue, current_puid


def work(name: str, data: Any, *, extra: int = 0) -> None:
    """Reports what it got and where it runs (the main module is this script, as `__mp_main__`)."""
    seen = {
        "data": data,
        "extra": extra,
        "module": __name__,
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "mp_name": multiprocessing.current_process().name,
        "p_uid": current_puid(),
    }
    with open(name, "w") as f:
        json.dump(seen, f)


def exits(code: object) -> None:
    sys.exit(code)


def raises() -> None:
    raise ValueError("raised by the target")


def grandparent(name: str) -> None:
    """Starts a callable child of its own: exits with its exit code."""
    p = Process(work, (name, "from a child"))
    p.start()
    sys.exit(p.join(60))


def feeds(queue: "Queue") -> None:
    """A runtime object as an argument: puts into the head's native Queue."""
    queue.put(("fed", current_puid()))


def error_text(call: Any) -> str:
    try:
        call()
    except InvalidArgument as exc:
        return str(exc)
    return "none"


def run(target: Any, *args: Any, **kwargs: Any) -> int | None:
    p = Process(target, args, kwargs, stderr="stderr.txt")
    p.start()
    return p.join(60)


if __name__ == "__main__":
    report: dict[str, Any] = {"start_method": multiprocessing.get_start_method(allow_none=True)}
    report["work"] = run(work, "work.json", {"a": [1, 2], "b": (3, None)}, extra=5)
    report["seen"] = json.load(open("work.json"))
    os.mkdir("sub")
    in_sub = Process(work, ("where.json", None), cwd="sub")
    in_sub.start()
    report["in_sub"] = [in_sub.join(60), json.load(open("sub/where.json"))["cwd"]]
    report["exits"] = [run(exits, 3), run(exits, None), run(exits, "a text exit")]
    report["raises"] = run(raises)
    report["grandparent"] = run(grandparent, "grandchild.json")
    report["grandchild"] = json.load(open("grandchild.json"))
    queue = Queue()
    report["feeds"] = run(feeds, queue)
    report["fed"] = list(queue.get(timeout=30))
    report["stderr"] = open("stderr.txt").read()
    report["lambda"] = error_text(lambda: Process(lambda: None).start())
    report["exe_kwargs"] = error_text(lambda: Process(sys.executable, ["-c", "pass"], {"k": 1}))
    report["not_callable"] = error_text(lambda: Process(123))  # type: ignore[arg-type]
    template = ProcessTemplate(exits, (4,), stderr="stderr.txt")
    made = [Process.from_template(template, name=f"from-template-{i}") for i in range(3)]
    for p in made:
        p.start()
    report["template"] = [[p.name, p.join(60)] for p in made]
    unnamed = Process.from_template(ProcessTemplate(sys.executable, ["-c", "pass"], name="template-name"))
    unnamed.start()
    report["template_name"] = [unnamed.name, unnamed.join(60)]
    report["bad_template"] = error_text(lambda: ProcessTemplate(sys.executable, [1]))
    report["head_puid"] = current_puid()
    report["cwd"] = os.getcwd()
    report["start_method_after"] = multiprocessing.get_start_method(allow_none=True)
    print(json.dumps(report))
