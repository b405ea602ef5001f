"""``bench agents --profile`` and ``bench train --profile`` / ``--variants`` at tiny sizes: the
tables name every component and their shares sum to 100%; the timers change nothing they time
(the timed renderer draws the same frames)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import test_rep_support as support

from sparseshift.experiments.bench.agents import profile_rows
from sparseshift.experiments.cli import main

one_thread = support.one_thread
pairs_path = support.pairs_path

ROW = re.compile(r"^  (\S.*?)\s+(-?\d+\.\d+)\s+(-?\d+\.\d+)%(?:\s+-?\d+\.\d+)?$")


def table(text: str) -> dict[str, float]:
    """Component -> share (%) of the profile tables in ``text`` (the last table wins)."""
    return {m[1]: float(m[3]) for line in text.splitlines() if (m := ROW.match(line))}


def shares_sum(rows: dict[str, float]) -> float:
    return sum(v for k, v in rows.items() if k != "total (wall)")


def test_profile_rows_split_the_wall_time_and_follow_the_busiest_worker() -> None:
    before = {"main": {}, "steps": 0.0, "workers": {}}
    main = {"envs": 6.0, "encoded": 7.0, "collect": 8.0, "train": 1.5, "learn": 10.0}
    busy = {"physics": 1.0, "reset": 0.1, "update_scene": 0.1, "gl_draw": 3.0, "readback": 0.2,
            "frame": 0.1, "env_total": 4.5}
    idle = {k: v / 3 for k, v in busy.items()}
    after = {"main": main, "steps": 1000.0, "workers": {1.0: idle, 2.0: busy}}
    prof = profile_rows(before, after, workers=2)
    parts = dict(prof.rows)
    assert sum(parts.values()) == pytest.approx(prof.total) and prof.total == 10.0
    assert parts["rendering: GL draw (mjr_render + finish, llvmpipe)"] == 3.0  # the busiest
    assert parts["inter-process transfer + wait (pipes, pickling, worker VecEnv, imbalance)"] \
        == pytest.approx(1.5)
    assert parts["encoding (frozen encoder forward + features)"] == 1.0
    assert parts["policy inference + rollout buffer"] == 1.0
    assert parts["other (learn(): setup, logger, callbacks)"] == pytest.approx(0.5)
    assert prof.steps == 1000.0 and prof.busy == pytest.approx(0.6)
    assert len(prof.cpu) == len(prof.rows)


def test_timed_env_draws_the_same_frames_and_fills_its_timers() -> None:
    from sparseshift.agents.config import AgentConfig
    from sparseshift.agents.envs import EnvFactory
    from sparseshift.experiments.bench.agents import PROFILE_ENV, ProfiledEnvFactory

    cfg = AgentConfig(PROFILE_ENV, "random")
    plain, timed = EnvFactory(cfg)(), ProfiledEnvFactory(cfg)()
    try:
        a, _ = plain.reset(seed=3)
        b, _ = timed.reset(seed=3)
        assert np.array_equal(a["pixels"], b["pixels"])
        rng = np.random.default_rng(0)
        for _ in range(3):
            act = rng.uniform(-1, 1, plain.action_space.shape).astype(np.float32)
            a, *_ = plain.step(act)
            b, *_ = timed.step(act)
            assert np.array_equal(a["pixels"], b["pixels"])
            assert np.array_equal(a["proprio"], b["proprio"])
        times = timed.get_wrapper_attr("profile_times")()
        for key in ("physics", "reset", "update_scene", "gl_draw", "readback", "frame"):
            assert times[key] > 0, key
        parts = sum(times[k] for k in ("physics", "reset", "update_scene", "gl_draw",
                                       "readback", "frame"))
        assert parts == pytest.approx(times["env_total"])
    finally:
        plain.close()
        timed.close()


@pytest.mark.slow  # 4 PPO rollouts of 8 pixel envs: ~15 s idle, ~30 s on a loaded machine
def test_bench_agents_profile_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "agents", "--profile", "--workers", "1", "--steps", "64",
                 "--repeats", "1"]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert "PPO latents, 1 env worker:" in out and "steps/s with timers" in out
    assert "cpu ms/step" in out
    rows = table(out)
    for name in ("physics (mj_step + action/reward/factors + wrappers)",
                 "rendering: update_scene", "rendering: GL draw (mjr_render + finish, llvmpipe)",
                 "frame readback (glReadPixels + flip)", "frame copy / shift + obs dict + Monitor",
                 "VecEnv bookkeeping (DummyVecEnv obs copies)",
                 "encoding (frozen encoder forward + features)",
                 "policy inference + rollout buffer", "policy update (PPO train())",
                 "other (learn(): setup, logger, callbacks)", "total (wall)"):
        assert name in rows, name
    assert shares_sum(rows) == pytest.approx(100.0, abs=0.6)


def test_bench_train_profile_table(capsys: pytest.CaptureFixture[str], pairs_path: Path) -> None:
    rc = main(["bench", "train", "--profile", "--learner", "beta_vae", "--data", str(pairs_path),
               "--batch", "2", "--steps", "2", "--repeats", "1"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    rows = table(out)
    for name in ("data: batch sampling (BatchSource)", "data: to tensors / device",
                 "forward (loss)", "backward (zero_grad + backward)", "optimizer step (Adam)",
                 "other (noise seeding, set_step, the loop itself)", "total (wall)"):
        assert name in rows, name
    assert shares_sum(rows) == pytest.approx(100.0, abs=0.6)
    assert rows["forward (loss)"] > 0 and rows["backward (zero_grad + backward)"] > 0
    assert "training loop (train()) on cpu" in out and "beyond the timed steps" in out


def test_bench_train_variants_rows(capsys: pytest.CaptureFixture[str], pairs_path: Path) -> None:
    rc = main(["bench", "train", "--variants", "--data", str(pairs_path), "--batch", "2",
               "--steps", "1", "--repeats", "1", "--k", "2", "--no-compile"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "quick preset: ada_gvae" in out
    assert re.search(r"--precision auto, computes in (bf16|fp32) here$", out, re.M)
    for name in ("bf16 autocast", "channels_last", "bf16 autocast + channels_last",
                 "2 models, one after the other (fp32)", "2 models stacked, vmap (fp32)"):
        assert re.search(rf"^{re.escape(name)}\s+[\d.]+ images/s.*x fp32$",
                         out, re.M), name
    assert re.search(r"^torch\.compile \(fp32\)\s+failed: skipped \(--no-compile\)$", out, re.M)
