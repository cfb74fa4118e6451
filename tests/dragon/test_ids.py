"""Conventional ids and launch parameters (spec §1.3, §1.4)."""

from __future__ import annotations

import pickle
import subprocess

import pytest

from dragon import ids
from dragon.errors import BringupError, DragonError, ServiceDied


def test_ids_match_the_spec() -> None:
    assert (ids.LAUNCHER_PUID, ids.GS_PUID, ids.FIRST_USER_PUID) == (0, 1, 2**32)
    assert (ids.GS_INPUT_CUID, ids.BE_CUID, ids.SHEP_CUID, ids.FIRST_GS_CUID) == (2, 2**57, 2**62, 2**63)
    assert (ids.INF_POOL_MUID, ids.DEFAULT_POOL_MUID, ids.FIRST_GS_MUID) == (0, 2**62, 2**63)
    # process-local c_uids of node 0 stay below the GS range and above LS's own channel
    assert ids.SHEP_CUID < ids.PROCESS_LOCAL_CUID_BASE < ids.PROCESS_LOCAL_CUID_BASE + ids.PROCESS_LOCAL_CUID_STRIDE
    assert ids.PROCESS_LOCAL_CUID_BASE + ids.PROCESS_LOCAL_CUID_STRIDE <= ids.FIRST_GS_CUID


def test_default_names() -> None:
    assert ids.default_process_name(2**32) == "dragon_process_4294967296"
    assert ids.default_channel_name(2**63) == "dragon_channel_9223372036854775808"
    assert ids.default_pool_name(2**63) == "D9223372036854775808"
    assert ids.stdio_channel_name("stdout", 2**32 + 1) == "stdout_4294967297"


def test_defaults_from_empty_env() -> None:
    params = ids.LaunchParameters.from_env({})
    assert params == ids.LaunchParameters()
    assert (params.mode, params.index, params.my_puid, params.be_cuid) == ("test", 0, 1, 2**57)
    assert (params.default_seg_sz, params.inf_seg_sz, params.gs_cd) == (2**32, 2**30, "")


def test_env_round_trip() -> None:
    params = ids.LaunchParameters(
        mode="single",
        my_puid=2**32 + 5,
        gs_cd="gs-desc",
        gs_ret_cd="ret-desc",
        local_shep_cd="ls-desc",
        shep_ret_cd="sret",
        local_be_cd="be-desc",
        default_pd="def-pd",
        inf_pd="inf-pd",
        default_seg_sz=2**20,
        inf_seg_sz=2**21,
        run_id="run-1",
        parent_puid=2**32,
    )
    env = params.to_env()
    assert env["DRAGON_MY_PUID"] == str(2**32 + 5) and env["DRAGON_GS_CD"] == "gs-desc"
    assert all(k.startswith("DRAGON_") and isinstance(v, str) for k, v in env.items())
    assert ids.LaunchParameters.from_env({**env, "UNRELATED": "x"}) == params


@pytest.mark.parametrize(
    ("var", "value"), [("DRAGON_MY_PUID", "one"), ("DRAGON_INF_SEG_SZ", ""), ("DRAGON_MODE", "multi")]
)
def test_bad_value_names_the_variable(var: str, value: str) -> None:
    with pytest.raises(ValueError, match=var) as info:
        ids.LaunchParameters.from_env({var: value})
    assert repr(value) in str(info.value)


def test_ids_import_stays_light(python: str) -> None:
    code = "import sys, dragon.ids; print(sorted(m for m in ('trio', 'dragon.transport') if m in sys.modules))"
    out = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_errors_pickle_with_their_fields() -> None:
    err = pickle.loads(pickle.dumps(BringupError("Global Services", "GSPingSH", "no ping within 5.0 s")))
    assert isinstance(err, BringupError) and isinstance(err, DragonError)
    assert (err.actor, err.step, err.detail) == ("Global Services", "GSPingSH", "no ping within 5.0 s")
    assert "GSPingSH" in str(err)
    died = pickle.loads(pickle.dumps(ServiceDied("Local Services", -9)))
    assert isinstance(died, ServiceDied)
    assert (died.name, died.returncode) == ("Local Services", -9) and "-9" in str(died)
