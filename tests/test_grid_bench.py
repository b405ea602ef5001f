"""Grid step-rate helpers, and the speed goal: at least MiniGrid's own RGBImgObsWrapper."""

from __future__ import annotations

import pytest

from envs.grid import bench


def test_bench_helpers_return_rates() -> None:
    for name, fn in bench.BENCHES.items():
        rate = fn(n_steps=200, seed=1)
        assert rate > 0, name
    assert bench.colourgrid_steps_per_s(n_steps=100, obs_mode="state") > 0
    assert (
        bench.adapter_steps_per_s(n_steps=100, env_id="sparseshift/MiniGrid-Empty-Random-6x6-v0")
        > 0
    )


@pytest.mark.slow
def test_pixel_stepping_at_least_minigrid_rgb() -> None:
    out = bench.compare(n_steps=2000, repeats=3)
    assert out["colourgrid_pixels/minigrid_rgb"] >= 1.0, out
    assert out["doorkey_adapter_pixels/minigrid_rgb"] >= 1.0, out
