"""Registers the multiprocessing start method "dragon" (spec §7.3) without importing multiprocessing.

`import dragon` calls `install()`. If `multiprocessing.context` is loaded already, the "dragon" context
is added to its table of start methods at once; otherwise a one-shot import hook adds it right after
`multiprocessing.context` is first executed. Either way `multiprocessing.set_start_method("dragon")`
and `multiprocessing.get_context("dragon")` work, and a program that never uses multiprocessing pays
nothing (importing `multiprocessing.context` costs about 8 ms).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec, PathFinder
from types import ModuleType
from typing import Final

MP_CONTEXT: Final = "multiprocessing.context"


def install() -> None:
    """Make "dragon" a start method of multiprocessing, now or when multiprocessing is imported."""
    module = sys.modules.get(MP_CONTEXT)
    if module is not None:
        _register(module)
    elif not any(isinstance(f, _ContextFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _ContextFinder())


def _register(module: ModuleType) -> None:
    contexts = getattr(module, "_concrete_contexts", None)
    if isinstance(contexts, dict) and "dragon" not in contexts:
        from dragon._mp_context import DragonContext

        contexts["dragon"] = DragonContext()


class _ContextFinder:
    """Finds `multiprocessing.context` as usual, and registers "dragon" after it is executed."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
                  ) -> ModuleSpec | None:
        if fullname != MP_CONTEXT:
            return None
        try:
            sys.meta_path.remove(self)  # one-shot
        except ValueError:
            pass
        spec = PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _RegisteringLoader(spec.loader)  # type: ignore[assignment]  # duck-typed Loader
        return spec


class _RegisteringLoader:
    """Wraps the loader of `multiprocessing.context`: runs the module, then registers "dragon"."""

    def __init__(self, loader: object) -> None:
        self._loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)  # type: ignore[attr-defined]
        _register(module)

    def __getattr__(self, name: str) -> object:  # get_source, get_filename, ... for tracebacks and inspect
        return getattr(self._loader, name)
