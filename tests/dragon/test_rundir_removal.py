"""`_rundir.remove_run_dir`: a run directory that a file lands in while it is emptied is removed on
another try; one that cannot be removed is reported (a warning naming it), never raised."""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from dragon import _rundir

RUN_ID = "0badc0de"


@pytest.fixture
def run_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    path = _rundir.create_run_dir(RUN_ID)
    Path(path, _rundir.INFO_FILE).write_text("{}")
    return path


def test_a_run_directory_is_removed(run_dir: str) -> None:
    _rundir.remove_run_dir(RUN_ID)
    assert not os.path.exists(run_dir)
    _rundir.remove_run_dir(RUN_ID)  # gone already: nothing to do, no error


def test_a_file_made_while_it_is_emptied_is_removed_on_the_next_try(
    run_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real, calls = shutil.rmtree, []

    def file_lands_first(path: str, *args: Any, **kwargs: Any) -> None:
        calls.append(path)
        if len(calls) == 1:  # as if a file came between the listing and the rmdir
            raise OSError(errno.ENOTEMPTY, "Directory not empty")
        real(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", file_lands_first)
    _rundir.remove_run_dir(RUN_ID)
    assert len(calls) == 2 and not os.path.exists(run_dir)


def test_a_directory_that_stays_is_reported_not_raised(
    run_dir: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = []

    def never(path: str, *args: Any, **kwargs: Any) -> None:
        calls.append(path)
        raise OSError(errno.EBUSY, "Device or resource busy")

    monkeypatch.setattr(shutil, "rmtree", never)
    logger = logging.getLogger("dragon")
    monkeypatch.setattr(logger, "propagate", True)  # a configured run stops it at "dragon"
    with caplog.at_level(logging.WARNING, logger="dragon.rundir"):
        _rundir.remove_run_dir(RUN_ID)
    assert len(calls) == _rundir.RMTREE_TRIES
    assert os.path.exists(run_dir)
    [record] = [r for r in caplog.records if r.name == "dragon.rundir"]
    assert run_dir in record.getMessage() and "dragon cleanup" in record.getMessage()
