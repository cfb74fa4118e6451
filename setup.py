"""Installs `dragon-start-method.pth` into site-packages, from a wheel and from `pip install -e .` alike.

Everything else about the package is in pyproject.toml. The .pth file makes the multiprocessing
start method "dragon" known in every interpreter of the environment, also one that never imports
dragon (a `python -c`, a child of "spawn"). At start-up its one line only puts a finder on
`sys.meta_path` that looks at one module name, importing nothing (sys is loaded already; even
`types` would cost 0.26 ms): dragon is imported when `multiprocessing.context` is, by
`dragon._mp_hook.find_spec_from_pth`.
"""

from __future__ import annotations

import os
from typing import Final

from setuptools import setup
from setuptools.command.build_py import build_py

PTH_NAME: Final = "dragon-start-method.pth"
PTH_TEXT: Final = (
    '# The multiprocessing start method "dragon" in every interpreter: see dragon._mp_hook (imported only\n'
    "# when multiprocessing.context is).\n"
    "import sys; sys.meta_path.insert(0, type('DragonStartMethodFinder', (), {'find_spec': staticmethod("
    "lambda name, path, target=None: __import__('dragon._mp_hook', None, None, ['_']).find_spec_from_pth("
    "name, path, target) if name == 'multiprocessing.context' else None)}))\n"
)


class BuildPyWithPth(build_py):
    """build_py, plus the .pth file at the root of what gets installed into site-packages."""

    def run(self) -> None:
        super().run()
        # A wheel installs the root of build_lib into site-packages. An editable wheel (PEP 660) holds
        # setuptools' own finder and .pth instead of build_lib, plus what the build writes into the
        # wheel's directory, which setuptools makes the install command's install_lib.
        root = self.get_finalized_command("install").install_lib if self.editable_mode else self.build_lib
        os.makedirs(root, exist_ok=True)
        with open(os.path.join(root, PTH_NAME), "w", encoding="ascii") as pth:
            pth.write(PTH_TEXT)


setup(cmdclass={"build_py": BuildPyWithPth})
