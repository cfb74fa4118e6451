"""Logging of a run: one file for all actors, configured by the launcher or `dragon.serve`.

`--log-level LEVEL` (or `DRAGON_LOG_LEVEL`) turns it on; the file is `DRAGON_LOG_FILE`, by default
`dragon-<run_id>.log` in the current directory. At DEBUG every message sent and received is written
with its time and actor (transport/_msglog.py), so the sequence of spec §2 and §3 can be read in it.
The services are forked from the launcher (or exec'd with these variables), so they inherit the
setting and append to the same file; each line names its actor (LA, LS, GS).

The log says much about the run, so it is private (issue 13): the file is created mode 0600 without
following a symlink at its path (`open_log`), an existing file must be a regular file of this user's
(its mode is narrowed to 0600), and the environments of processes are logged by variable name only
(transport/_msglog.py), unless `DRAGON_LOG_ENV_VALUES=1` asks for the values too.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import stat

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
            fd = open_log(handler.baseFilename)
            if fd != handler.stream.fileno():
                os.dup2(fd, handler.stream.fileno())
                os.close(fd)


def open_log(path: str) -> int:
    """An fd to append to the log at `path`: created 0600, never through a symlink, and only a
    regular file of this user's (module docstring). Raises OSError (PermissionError when refused)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
            raise PermissionError(errno.EPERM, "it is not a file of yours")
        if stat.S_IMODE(st.st_mode) != 0o600:
            os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


class _PrivateFileHandler(logging.FileHandler):
    """A FileHandler whose file is opened by `open_log`."""

    def _open(self) -> io.TextIOWrapper:
        return io.TextIOWrapper(
            io.FileIO(open_log(self.baseFilename), "a"),
            encoding=self.encoding or "utf-8",
            errors=self.errors,
            write_through=True,
        )


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
    try:
        handler: logging.FileHandler = _PrivateFileHandler(path)
    except OSError as exc:
        why = (
            "it is a symbolic link (a private log is never written through one)"
            if exc.errno == errno.ELOOP
            else exc.strerror or str(exc)
        )
        raise ValueError(f"cannot write the log file {path}: {why}") from None
    handler.addFilter(_ActorFilter())
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s.%(msecs)03d %(actor)s pid=%(process)d %(name)s %(levelname)s %(message)s", "%H:%M:%S"
        )
    )
    root = logging.getLogger("dragon")
    root.addHandler(handler)
    root.setLevel(numeric)
    os.environ["DRAGON_LOG_LEVEL"] = level
    os.environ["DRAGON_LOG_FILE"] = path
    return path
