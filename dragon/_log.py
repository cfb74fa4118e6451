"""Logging of a run: one file for all actors, configured by the launcher or `dragon.serve`.

`--log-level LEVEL` (or `DRAGON_LOG_LEVEL`) turns it on; the file is `DRAGON_LOG_FILE`, by default
`dragon-<run_id>.log` in the current directory. At DEBUG every message sent and received is written
with its time and actor (services/_links.py), so the sequence of spec §2 and §3 can be read in it.
The services are forked from the launcher (or exec'd with these variables), so they inherit the
setting and append to the same file; each line names its actor (LA, LS, GS).
"""

from __future__ import annotations

import logging
import os

_actor = "LA"


class _ActorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.actor = _actor
        return True


def set_actor(name: str) -> None:
    """Name the actor this process is; called first thing in a forked service (LS or GS).

    A forked service closed every inherited fd above 2, the log file's too, so the file is opened
    again here (append mode: all actors write to the one file) and put back under the fd number the
    handler's stream already uses. (Replacing the stream object instead would let the old object's
    finalizer close that number, which the new file may just have been given.)
    """
    global _actor
    _actor = name
    for handler in logging.getLogger("dragon").handlers:
        if isinstance(handler, logging.FileHandler) and handler.stream is not None:
            fd = os.open(handler.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            if fd != handler.stream.fileno():
                os.dup2(fd, handler.stream.fileno())
                os.close(fd)


def configure(level: str | None, log_file: str | None) -> str | None:
    """Send the `dragon` loggers to `log_file` at `level`; returns the file used, or None (off)."""
    level = level or os.environ.get("DRAGON_LOG_LEVEL")
    if not level or level.upper() == "NONE":
        # Off: and Python's last-resort handler must not print our warnings on the user's terminal
        # (the launcher says what matters in one `dragon: error:` line).
        logging.getLogger("dragon").addHandler(logging.NullHandler())
        logging.getLogger("dragon").propagate = False
        return None
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}: use DEBUG, INFO, WARNING, ERROR or NONE")
    path = os.path.abspath(log_file or os.environ.get("DRAGON_LOG_FILE") or "dragon.log")
    handler = logging.FileHandler(path)
    handler.addFilter(_ActorFilter())
    handler.setFormatter(logging.Formatter(
        "%(asctime)s.%(msecs)03d %(actor)s pid=%(process)d %(name)s %(levelname)s %(message)s",
        "%H:%M:%S"))
    root = logging.getLogger("dragon")
    root.addHandler(handler)
    root.setLevel(numeric)
    os.environ["DRAGON_LOG_LEVEL"] = level
    os.environ["DRAGON_LOG_FILE"] = path
    return path
