"""Registers the multiprocessing start method "dragon" (spec §7.3) without importing multiprocessing.

`import dragon` calls `install()`. If `multiprocessing.context` is loaded already, the "dragon" context
is added to its table of start methods at once; otherwise a one-shot import hook adds it right after
`multiprocessing.context` is first executed. Either way `multiprocessing.set_start_method("dragon")`
and `multiprocessing.get_context("dragon")` work, and a program that never uses multiprocessing pays
nothing (`multiprocessing.context` is not a free import). `after_import` is the same one-shot
hook for any module (registering uses it for `multiprocessing.spawn` too).

An interpreter that never imports dragon knows "dragon" too, through the `.pth` file installed with
the package (`setup.py`): at start-up it only puts a finder on `sys.meta_path` (it imports nothing),
which calls `find_spec_from_pth` when `multiprocessing.context` is first imported. That imports
dragon (this module, which installs the hook as above) and registers the start method then. So
`multiprocessing.get_context("dragon")` works in any interpreter of the environment, a child started
by "spawn" or a `python -c` included, and only programs that import multiprocessing pay for it. What
runs then (this module, `dragon/__init__`, `dragon.mp.context`) imports nothing that multiprocessing
does not import anyway, `typing` included (`tools/bench_pth.py` measures the cost).
"""

from __future__ import annotations

import sys
from importlib.machinery import ModuleSpec, PathFinder
from types import ModuleType

TYPE_CHECKING = False  # for mypy only: typing costs every such program milliseconds to import (2-8 ms here)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Final

MP_CONTEXT: Final = "multiprocessing.context"


def install() -> None:
    """Make "dragon" a start method of multiprocessing, now or when multiprocessing is imported."""
    after_import(MP_CONTEXT, _register)


def after_import(name: str, callback: Callable[[ModuleType], None]) -> None:
    """Call `callback(module)` once module `name` is imported: now if it is, else right after it is
    first executed (a one-shot import hook). Once per (name, callback)."""
    module = sys.modules.get(name)
    if module is not None:
        callback(module)
    elif _pending(name, callback) is None:
        sys.meta_path.insert(0, _Finder(name, callback))


def _pending(name: str, callback: Callable[[ModuleType], None]) -> _Finder | None:
    """The hook waiting on `sys.meta_path` to call `callback` after module `name` is executed, if any."""
    return next((f for f in sys.meta_path if isinstance(f, _Finder) and (f.name, f.callback) == (name, callback)), None)


def find_spec_from_pth(name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
    """The finder of the `.pth` file calls this when `multiprocessing.context` is being imported in an
    interpreter that had not imported dragon: importing this module installed the one-shot hook
    (`install`), which finds the module and registers "dragon" once it is executed."""
    install()
    finder = _pending(name, _register)
    return None if finder is None else finder.find_spec(name, path, target)


def _register(module: ModuleType) -> None:
    contexts = getattr(module, "_concrete_contexts", None)
    if isinstance(contexts, dict) and "dragon" not in contexts:
        # Here, for start-up cost: a program that never imports multiprocessing never pays for it.
        from dragon.mp.context import (
            DragonContext,
            guard_shared_memory,
            keep_other_children_working,
            route_handles,
            route_wait,
        )

        contexts["dragon"] = DragonContext()
        after_import("multiprocessing.spawn", keep_other_children_working)
        after_import("multiprocessing.connection", route_wait)
        after_import("multiprocessing.reduction", route_handles)
        after_import("multiprocessing.shared_memory", guard_shared_memory)


class _Finder:
    """Finds module `name` as usual, and calls `callback` with it after it is executed."""

    def __init__(self, name: str, callback: Callable[[ModuleType], None]) -> None:
        self.name, self.callback = name, callback

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != self.name:
            return None
        try:
            sys.meta_path.remove(self)  # one-shot
        except ValueError:
            pass
        spec = PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _CallingLoader(spec.loader, self.callback)  # type: ignore[assignment]  # duck-typed
        return spec


class _CallingLoader:
    """Wraps a module's loader: runs the module, then calls the callback with it."""

    def __init__(self, loader: object, callback: Callable[[ModuleType], None]) -> None:
        self._loader = loader
        self._callback = callback

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)  # type: ignore[attr-defined]
        self._callback(module)

    def __getattr__(self, name: str) -> object:  # get_source, get_filename, ... for tracebacks and inspect
        return getattr(self._loader, name)
