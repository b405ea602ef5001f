"""The proxy task reads its shifts from the shift registry (issue 22): the severity grammar,
env support, paired frames across severities, labels as result keys, and each shift's record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.registry import default_shifts
from sparseshift.representations.config import EvalConfig, ProxyConfig
from sparseshift.representations.proxy import (
    ProxySet,
    env_splits,
    proxy_scores,
    proxy_set,
    render_proxy_set,
)
from sparseshift.representations.splits import check_splits

GRID = "sparseshift/ColourGrid-v0"
OBJECT_REACH = "sparseshift/TriFingerObjectReach-v0"


def test_default_shifts_come_from_the_registry() -> None:
    assert default_shifts(OBJECT_REACH) == ("in", "ood1", "ood2", "real")
    assert default_shifts(GRID) == ("in", "ood1", "ood2")  # real needs lights and a camera
    assert [r.label for r in env_splits(GRID)] == ["in", "ood1", "ood2"]


def test_the_list_syntax_and_one_line_errors(tmp_path: Path) -> None:
    assert check_splits(("in", "ood2", "lighting:1-3", "real:3", "noise@2.5")) == (
        "in", "ood2", "lighting:1", "lighting:2", "lighting:3", "real:3", "noise@2.5")
    for bad, why in (("real:0.5", "integer 1-5"), ("sideways", "unknown shift"),
                     ("lighting:0", "integer 1-5"), ("ood1:2", "takes no severity")):
        with pytest.raises(ConfigError, match=why) as err:
            check_splits(("in", bad))
        assert str(err.value).startswith("proxy splits: ") and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="proxy splits"):
        EvalConfig(proxy_splits=("in", "real:9"))
    with pytest.raises(ConfigError, match="listed twice"):
        ProxyConfig(splits=("noise:3", "noise"))  # the bare name is level 3
    clash = tmp_path / "train.toml"
    clash.write_text('name = "train"\n[nuisances]\nnoise = 2\n')
    with pytest.raises(ConfigError, match="training frames"):
        check_splits(("in", str(clash)))


def test_graded_frames_are_paired_and_grow_with_severity() -> None:
    """Every shift on IN colours shows the same states; stronger noise moves pixels more; a
    shift's frames do not depend on the other shifts asked for."""
    data = render_proxy_set(GRID, {}, 12, 16, 3, ("in", "noise:1", "noise:5", "ood2"))
    assert data.splits == ("in", "noise:1", "noise:5", "ood2")
    for k in ("noise:1", "noise:5"):
        np.testing.assert_array_equal(data.factors[k], data.factors["in"])
    diff = {k: np.abs(data.frames[k].astype(float) - data.frames["in"]).mean()
            for k in ("noise:1", "noise:5")}
    assert 0 < diff["noise:1"] < diff["noise:5"]
    assert not np.array_equal(data.factors["ood2"], data.factors["in"])  # its own states
    alone = render_proxy_set(GRID, {}, 12, 16, 3, ("noise:5",))
    np.testing.assert_array_equal(alone.frames["noise:5"], data.frames["noise:5"])
    np.testing.assert_array_equal(alone.frames["train"], data.frames["train"])
    rec = data.shift_defs["noise:5"]
    assert rec["name"] == "noise" and rec["severity"] == 5.0 and rec["effective"] == {
        "noise": 5.0}
    assert data.shift_defs["ood2"]["kind"] == "colours"


def test_real_renders_on_trifinger_and_is_left_out_on_a_grid() -> None:
    data = proxy_set(ProxyConfig(10, 10, 0, ("in", "real", "lighting:5")), OBJECT_REACH, {})
    assert data.splits == ("in", "real", "lighting:5")
    np.testing.assert_array_equal(data.factors["real"], data.factors["in"])
    assert np.abs(data.frames["real"].astype(float) - data.frames["in"]).mean() > 5
    grid = proxy_set(ProxyConfig(10, 10, 0, ("in", "real", "lighting:5", "blur:2")), GRID, {})
    assert grid.splits == ("in", "blur:2")


def test_labels_are_result_keys_and_survive_saving(tmp_path: Path) -> None:
    data = render_proxy_set(GRID, {}, 40, 20, 0, ("in", "noise:4", "noise@2.5"))
    path = data.save(tmp_path / "proxy.npz")
    back = ProxySet.load(path)
    assert back.splits == data.splits and dict(back.shift_defs) == dict(data.shift_defs)
    np.testing.assert_array_equal(back.frames["noise@2.5"], data.frames["noise@2.5"])
    cut = proxy_set(ProxyConfig(20, 10, 0, ("noise:4",)), GRID, None, back)
    assert cut.splits == ("noise:4",) and list(cut.shift_defs) == ["noise:4"]
    res = proxy_scores(lambda f: f.reshape(len(f), -1)[:, ::97].astype(float), cut)
    assert "proxy_linear_noise:4" in res["summary"] and res["splits"] == ["noise:4"]
    assert "proxy_mlp_noise:4_task" in res["summary"]
    assert res["shift_defs"]["noise:4"]["severity"] == 4.0
    again: Any = json.loads(json.dumps(res))  # labels are plain JSON keys
    assert again["summary"] == res["summary"]
