"""The sizes of a runtime's two pools: `DRAGON_INF_SEG_SZ` and `DRAGON_DEFAULT_SEG_SZ` (spec §1.2, §1.4).

Read wherever a runtime is configured (the `dragon` command, `dragon.serve` and the background runtime
of the start method "dragon"), before anything of the run is made, so that a bad value is reported
and nothing is left. Local Services makes the infrastructure and default pools that size, and every
managed process finds the sizes, in bytes, in its launch parameters (`LaunchParameters`).

A size is a whole number of bytes, optionally followed by a suffix K, M, G or T, upper or lower case,
optionally followed by "B" or "iB" (`65536`, `64K`, `64KiB` and `64kb` are one size). **[choice]**
The suffixes are powers of 1024, as `docker --shm-size` and the kernel's `size=` option of tmpfs read
them: a pool is a tmpfs file, and nobody sizes one in powers of 1000.

Allowed: from MIN_SEG_SZ (64K: a pool's heap manifest with room for its first blocks) up to the size
of /dev/shm, where the pool lives. tmpfs hands out pages on first write, so a pool larger than /dev/shm
would be made without complaint and fail much later, with SIGBUS in whichever process writes the page
that does not fit. An unset (or empty) variable takes the spec's default (1 GiB, 4 GiB), unchecked
against /dev/shm: the defaults cost nothing until used.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Final, NamedTuple

from dragon.ids import DEFAULT_SEG_SZ, INF_SEG_SZ
from dragon.transport import SHM_DIR

INF_VAR: Final = "DRAGON_INF_SEG_SZ"
DEFAULT_VAR: Final = "DRAGON_DEFAULT_SEG_SZ"
MIN_SEG_SZ: Final = 64 * 1024
_UNITS: Final = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_SIZE: Final = re.compile(r"(\d+)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)


class PoolSizes(NamedTuple):
    """Sizes in bytes of the infrastructure pool and the default pool."""

    inf_seg_sz: int
    default_seg_sz: int


def pool_sizes(env: Mapping[str, str] = os.environ) -> PoolSizes:
    """The pool sizes `env` asks for (the spec's defaults for unset variables).

    Raises:
      ValueError: a variable is not a size or is out of range; the text names the variable, its
        value and what is allowed.
    """
    return PoolSizes(inf_seg_sz=_read(env, INF_VAR, INF_SEG_SZ), default_seg_sz=_read(env, DEFAULT_VAR, DEFAULT_SEG_SZ))


def parse_size(text: str) -> int | None:
    """Bytes of a size written as described in the module docstring; None if it is not one."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        return None
    return int(match[1]) * _UNITS[match[2].lower()]


def format_size(n: int) -> str:
    """`n` bytes for people: with the largest suffix not above it, to one decimal when not whole."""
    for suffix in ("T", "G", "M", "K"):
        unit = _UNITS[suffix.lower()]
        if n >= unit:
            return f"{n // unit}{suffix}" if n % unit == 0 else f"{n / unit:.1f}{suffix}"
    return f"{n} bytes"


def _read(env: Mapping[str, str], var: str, default: int) -> int:
    raw = env.get(var, "")
    if not raw.strip():
        return default
    size = parse_size(raw)
    if size is None:
        raise ValueError(
            f"{var}={raw!r} is not a size: give a whole number of bytes, optionally with a "
            "suffix K, M, G or T (powers of 1024), e.g. 64M"
        )
    if size < MIN_SEG_SZ:
        raise ValueError(
            f"{var}={raw!r} is too small: a pool needs at least {format_size(MIN_SEG_SZ)} ({MIN_SEG_SZ} bytes)"
        )
    limit = _shm_bytes()
    if size > limit:
        raise ValueError(
            f"{var}={raw!r} is larger than {SHM_DIR}, where the pool lives: give at most its "
            f"size, {limit} bytes ({format_size(limit)}) here"
        )
    return size


def _shm_bytes() -> int:
    """The size of the file system holding /dev/shm."""
    st = os.statvfs(SHM_DIR)
    return st.f_blocks * st.f_frsize
