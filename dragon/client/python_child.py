"""A Python child of the runtime: its command line, the start data it finds in its handshake, and what
people call the callable it runs.

Two kinds of process run a Python callable: a child of the start method "dragon" (`dragon.mp.popen`
starts it, `dragon.mp.child` runs it) and a managed process whose target is a callable
(`dragon.native.Process(f, args, kwargs)`, `dragon.aio.Process`; spec §7.2). Both are `python -c
CHILD_MAIN` with this interpreter and its flags (`child_argv`: what Local Services' fork server serves,
so both start as fast as it allows), and both get their pickled start data as the `argdata` of their
handshake with Global Services (ArgMode.PYTHON_IMMEDIATE): a header (a dict with "format": FORMAT;
for a callable target "call": its text), spawn's preparation data (sys.path, the main module to
import as `__mp_main__`, the authkey; for a call, not the directory, which is the process's `cwd`,
nor a start method the program has not chosen yet: asking spawn for it would fix it), then the
process object or the call.

**[choice] A callable target behaves as under multiprocessing's spawn**, which is what its users know:
the target and its arguments are pickled when the process starts (`pack_call`; a lambda or a nested
function cannot be, and the start raises InvalidArgument saying so), a target defined in the main
script needs the script's `if __name__ == "__main__":` guard (the child imports the script as
`__mp_main__`), and the exit code is the target's (`run_call`): 0 when it returns, `sys.exit`'s code,
1 after an exception, whose traceback goes to the process's stderr. Unlike a multiprocessing child
it has no parent sentinel or inherited descriptors: it is a process of the runtime like any other.
**[choice]** The spec's `ident` and `options` arguments are not taken: a process is found with
`Process.from_puid`/`from_name`, and named with `name=` (also in `Process.from_template`).
"""

from __future__ import annotations

import functools
import io
import os
import pickle
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any, Final

from dragon.client.interpreter import interpreter_argv
from dragon.errors import InvalidArgument
from dragon.ids import CHILD_MAIN

FORMAT: Final = 3
"""Version of the start data's header (a child refuses another one: parent and child differ); 3 since
a header may say "call"."""


def child_argv() -> list[str]:
    """The command line of a Python child of this process: multiprocessing's executable and this
    interpreter's flags, as spawn gives them, then `-c CHILD_MAIN`."""
    return [*interpreter_argv(), "-c", CHILD_MAIN]


def preparation_data(name: str) -> dict[str, Any]:
    """spawn's preparation data for a child of "dragon": the stdlib's own, "dragon" included (unwrapping
    `dragon.mp.context.keep_other_children_working`)."""
    from multiprocessing import spawn

    get = spawn.get_preparation_data
    data: dict[str, Any] = getattr(get, "__wrapped__", get)(name)
    return data


def pack_call(target: Callable[..., object], args: tuple[Any, ...], kwargs: Mapping[str, Any], what: str) -> bytes:
    """The start data of a process that runs `target(*args, **kwargs)` (`what`: its `callable_text`,
    for the child's errors). Raises InvalidArgument if the
    target or an argument cannot be pickled, RuntimeError (spawn's) when called while a child imports
    its parent's main module (a script without its `__main__` guard)."""
    import multiprocessing
    from multiprocessing import context

    chosen = multiprocessing.get_start_method(allow_none=True)
    data = preparation_data("MainProcess")
    if chosen is None:  # spawn's data asks for the start method, which fixes it: leave it to the program
        context._default_context._actual_context = None
        del data["start_method"]
    del data["name"]  # the child's multiprocessing name stays "MainProcess": it is no mp child
    del data["dir"]  # its directory is the process's own: `cwd`, or this process's (Local Services')
    data["authkey"] = bytes(data["authkey"])  # pickles outside a spawning Popen (prepare wraps it back)
    fp = io.BytesIO()
    pickle.dump({"format": FORMAT, "call": what}, fp)
    pickle.dump(data, fp)
    try:
        pickle.dump((target, args, dict(kwargs)), fp)
    except Exception as exc:
        raise InvalidArgument(
            f"cannot start {what}: its target and arguments must pickle, as for multiprocessing's spawn "
            f"(a function defined at the top of a module, not a lambda or a nested function): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return fp.getvalue()


def load_prepared(fp: io.BytesIO) -> Any:
    """Prepare this child with the spawn preparation data `fp` holds next (its main module imported
    as `__mp_main__`, ...), then unpickle the object after it, both while this process counts as
    inheriting, as spawn's child does: a script without its `__main__` guard then gets spawn's
    error when it starts a process, not a second run."""
    from multiprocessing import process, spawn

    current = process.current_process()
    current._inheriting = True  # type: ignore[attr-defined]
    try:
        spawn.prepare(pickle.load(fp))
        return pickle.load(fp)
    finally:
        del current._inheriting  # type: ignore[attr-defined]


def run_call(fp: io.BytesIO, what: str) -> int:
    """Run the call `what` (its text, from the header) whose start data (after the header) `fp` holds:
    its exit code (the module docstring). Everything from the main module's import on fails as the
    target would."""
    try:
        target, args, kwargs = load_prepared(fp)
        target(*args, **kwargs)
        return 0
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        print(stop.code, file=sys.stderr)
        return 1
    except BaseException:
        print(f"dragon.native.Process running {what}:", file=sys.stderr)
        traceback.print_exc()
        return 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, ValueError, OSError):
                pass


def callable_text(fn: Any) -> str:
    """`module-or-script: qualname` of a callable (`st.py: work`); a partial as `partial(...)`, a
    callable object by its class."""
    if isinstance(fn, functools.partial):
        return f"partial({callable_text(fn.func)})"
    qualname, module = getattr(fn, "__qualname__", None), getattr(fn, "__module__", None)
    if not isinstance(qualname, str):
        qualname, module = type(fn).__qualname__, type(fn).__module__
    return f"{module_text(module)}: {qualname}" if isinstance(module, str) else qualname


def module_text(name: str) -> str:
    """A module as people know it: the main module (`__mp_main__` in a child of spawn) by its script's
    file name, or the module it was run as with `-m`; any other module by its name."""
    if name not in ("__main__", "__mp_main__"):
        return name
    main = sys.modules.get(name)
    spec = getattr(main, "__spec__", None)
    if spec is not None and isinstance(spec.name, str):
        return spec.name
    path = getattr(main, "__file__", None)
    return os.path.basename(path) if isinstance(path, str) else name
