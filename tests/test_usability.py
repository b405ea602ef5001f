"""What a new user sees (issue #15): progress, the files each command wrote, labelled pictures,
playable videos, the frame layouts encoders accept, the public features extractor, the warning
for an encoder from another env, and help texts that say what the code does."""

from __future__ import annotations

import io
import json
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import test_rep_support as support
import torch
from stable_baselines3.common.logger import Logger
from test_agents_fakes import SIZE, FakeEnv, StatefulLearner, TinyLearner
from test_agents_train import GRID, make_encoder_dir, tiny

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.experiments.cli import build_parser, main

one_thread = support.one_thread
pairs_path = support.pairs_path
video_path = support.video_path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def help_text(capsys: pytest.CaptureFixture[str], command: str) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def written_block(out: str) -> list[str]:
    """The paths listed under the final ``wrote:`` (or ``files ...:``) header."""
    lines = out.splitlines()
    start = max(i for i, line in enumerate(lines) if re.match(r"^(wrote|files .*):$", line))
    paths = []
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        paths.append(line.strip().rsplit(" (", 1)[0])
    return paths


# -- frames accepted by encode ------------------------------------------------------------------

def test_encode_takes_uint8_hwc_and_float_chw_and_names_both_otherwise() -> None:
    from sparseshift.representations.registry import make_learner

    torch.manual_seed(0)
    learner = make_learner("beta_vae", {"image_size": 64, **support.TINY}).eval()
    x = torch.randint(0, 256, (4, 64, 64, 3), dtype=torch.uint8)
    with torch.no_grad():
        a = learner.encode(x)
        b = learner.encode(x.permute(0, 3, 1, 2).float() / 255)
    torch.testing.assert_close(a, b)
    bad = {
        "float [B, H, W, 3]": (torch.rand(4, 64, 64, 3), "channels first"),
        "uint8 [B, 3, H, W]": (x.permute(0, 3, 1, 2).contiguous(), "channels last"),
        "float in [0, 255]": (torch.rand(4, 3, 64, 64) * 255, "divide by 255"),
        "wrong size": (torch.rand(4, 3, 32, 32), "32x32"),
        "numpy": (x.numpy(), "torch.from_numpy"),
        "int64": (x.long(), "uint8 or floating-point"),
    }
    for what, (frames, needle) in bad.items():
        with pytest.raises(ConfigError) as err:
            learner.encode(frames)  # type: ignore[arg-type]
        message = str(err.value)
        assert needle in message and "\n" not in message, (what, message)
    with pytest.raises(ConfigError, match=r"uint8 \[B, H, W, 3\] or float \[B, 3, H, W\]"):
        learner.encode(torch.rand(4, 64, 64, 3))


# -- the public features extractor ---------------------------------------------------------------

def test_frozen_encoder_extractor_matches_the_wrapper_and_stays_frozen() -> None:
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    from sparseshift.agents.encoding import FrozenEncoder
    from sparseshift.agents.extractors import FrozenEncoderExtractor

    learner = TinyLearner()
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    venv = DummyVecEnv([lambda i=i: FakeEnv(i, 5) for i in range(2)])
    model = PPO("MultiInputPolicy", venv, n_steps=16, batch_size=16, n_epochs=2, seed=0,
                device="cpu", policy_kwargs={"features_extractor_class": FrozenEncoderExtractor,
                                             "features_extractor_kwargs": {"encoder": learner}})
    extractor = model.policy.features_extractor
    assert isinstance(extractor, FrozenEncoderExtractor)
    assert extractor.features_dim == 4 + 3
    model.set_logger(Logger(None, []))  # SB3's default logger makes a folder in /tmp
    model.learn(64)
    for k, v in learner.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    model.policy.set_training_mode(True)
    assert not learner.training and not any(p.requires_grad for p in learner.parameters())
    obs = venv.reset()
    obs_t, _ = model.policy.obs_to_tensor(obs)
    with torch.no_grad():
        ours = model.policy.extract_features(obs_t, extractor).numpy()  # SB3's preprocessing
        raw = extractor({k: torch.as_tensor(v) for k, v in obs.items()}).numpy()  # uint8 HWC
    ref, _ = FrozenEncoder(learner, FakeEnv(0, 5).observation_space).features(obs)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(raw, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="stateful"):
        FrozenEncoderExtractor(FakeEnv(0, 5).observation_space, StatefulLearner())
    from gymnasium import spaces

    with pytest.raises(ConfigError, match=f"takes {SIZE}x{SIZE}"):
        FrozenEncoderExtractor(spaces.Box(0, 255, (32, 32, 3), np.uint8), learner)


# -- an encoder trained on another env ------------------------------------------------------------

def _encoder_from(env_id: str, path: Path) -> Path:
    enc = make_encoder_dir(path)
    run = json.loads((enc / "run.json").read_text())
    run["dataset"] = {"env_id": env_id, "fingerprint": "x", "kind": "pairs", "image_size": 64}
    (enc / "run.json").write_text(json.dumps(run))
    return enc


def test_encoder_of_another_env_is_a_warning_naming_both(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    from sparseshift.agents.encoders import EncoderEnvWarning, check_encoder_env, load_encoder
    from sparseshift.agents.train import train_agent

    reach = "sparseshift/TriFingerReach-v0"
    enc = _encoder_from(reach, tmp_path / "enc")
    with pytest.warns(EncoderEnvWarning, match=re.escape(reach)) as record:
        load_encoder(str(enc), 64, 0, env_id=GRID)
    assert GRID in str(record[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_encoder(str(enc), 64, 0, env_id=reach)  # same env: silent
        load_encoder(str(enc), 64, 0)  # no env given: silent
    assert check_encoder_env({"run": {}}, GRID) == ""
    with pytest.warns(EncoderEnvWarning):
        train_agent(tiny(str(enc), steps=128, eval_every=0, checkpoint_every=0,
                         tensorboard=False), tmp_path / "agent")
    rc, _, err = cli(capsys, "train-agent", "--env", GRID, "--encoder", str(enc), "--steps",
                     "128", "--hp", "n_envs=2", "--hp", "n_steps=64", "--eval-every", "0",
                     "--checkpoint-every", "0", "--out", str(tmp_path / "agent2"))
    assert rc == 0
    line = next(x for x in err.splitlines() if "warning" in x)
    assert line.startswith("sparseshift train-agent: warning: ") and reach in line and GRID in line


# -- train-agent: rounding said up front, progress, files ---------------------------------------

def test_planned_steps_round_to_whole_rollouts() -> None:
    from sparseshift.agents.config import AgentConfig
    from sparseshift.agents.train import planned_steps

    cfg = tiny("state", steps=300)
    assert planned_steps(cfg, cfg.resolved_hyperparams()) == (384, 128)
    sac = AgentConfig(env_id="sparseshift/TriFingerReach-v0", encoder="state", algo="sac",
                      steps=1001, hyperparams={"n_envs": 2})
    assert planned_steps(sac, sac.resolved_hyperparams()) == (1002, 2)


def test_train_agent_states_rounding_shows_progress_and_lists_files(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "agent"
    args = ("train-agent", "--env", GRID, "--encoder", "state", "--steps", "300", "--seed", "1",
            "--hp", "n_envs=2", "--hp", "n_steps=64", "--hp", "batch_size=64",
            "--eval-every", "128", "--eval-episodes", "2", "--checkpoint-every", "0",
            "--out", str(out))
    rc, stdout, err = cli(capsys, *args)
    assert rc == 0
    first = err.splitlines()[0]  # said before the bar starts
    assert first.startswith(f"training ppo on {GRID} with encoder state: 384 env steps "
                            "(--steps 300 rounded up: PPO trains in whole rollouts of 2 envs x "
                            "64 steps = 128)"), first
    assert "step/s" in err and "eval@" in err  # the progress bar and its last evaluation
    assert json.loads((out / "DONE.json").read_text())["result"]["steps"] == 384
    assert "384 steps (300 asked)" in stdout
    listed = written_block(stdout)
    for name in ("agent.json", "policy.safetensors", "agent.sb3.zip", "evaluations.json",
                 "DONE.json", "logs/progress.csv"):
        assert str(out / name) in listed, name
    rc, stdout, err = cli(capsys, *args)  # finished: nothing to do, said so
    assert rc == 0 and "nothing to do" in err and "step/s" not in err
    assert "files (already there):" in stdout


# -- evaluate: progress, H.264 videos at the env's rate, side by side, TensorBoard ---------------

def _probe(path: str) -> tuple[str, str, float, int]:
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return (stream.codec_context.name, stream.codec_context.format.name,
                float(stream.average_rate), frames)


def test_evaluate_videos_play_and_do_not_change_results(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from sparseshift.agents.evaluate import evaluate
    from sparseshift.agents.train import train_agent

    out = train_agent(tiny("state", eval_every=0, checkpoint_every=0, tensorboard=False),
                      tmp_path / "agent")
    plain = evaluate(out, "in,ood2", episodes=3, seed=2)
    rc, stdout, err = cli(capsys, "evaluate", str(out), "--shifts", "in,ood2", "--episodes", "3",
                          "--seed", "2", "--video", "2", "--side-by-side")
    assert rc == 0
    assert "evaluate in" in err and "evaluate ood2" in err and "episode" in err
    result = json.loads((out / "eval.json").read_text())
    for shift in ("in", "ood2"):
        assert result["shifts"][shift]["returns"] == plain["shifts"][shift]["returns"]
    listed = written_block(stdout)
    videos = out / "videos"
    expected = [videos / f"{s}_{k}.{ext}" for s in ("in", "ood2") for k in (0, 1)
                for ext in ("mp4", "gif")]
    expected += [videos / f"side_by_side_{k}.{ext}" for k in (0, 1) for ext in ("mp4", "gif")]
    for path in [out / "eval.json", *expected]:
        assert str(path) in listed, path
    codec, pix, fps, n = _probe(str(videos / "in_0.mp4"))
    assert (codec, pix, fps) == ("h264", "yuv420p", 10.0)  # ColourGrid's render_fps
    assert n >= 2
    side = _probe(str(videos / "side_by_side_0.mp4"))
    assert side[:3] == ("h264", "yuv420p", 10.0)
    import av

    with av.open(str(videos / "in_0.mp4")) as c1, av.open(str(videos / "side_by_side_0.mp4")) as c2:
        w1, w2 = c1.streams.video[0].width, c2.streams.video[0].width
    assert w2 > 2 * w1  # two shifts next to each other
    gif = Image.open(videos / "in_0.gif")
    assert gif.is_animated and gif.n_frames >= 2
    acc = EventAccumulator(result["tensorboard"], size_guidance={"images": 0})
    acc.Reload()
    tags = set(acc.Tags()["images"])
    assert {"evaluate/in/episode_0", "evaluate/ood2/episode_1",
            "evaluate/side_by_side/episode_0"} <= tags
    image = acc.Images("evaluate/in/episode_0")[0]
    assert image.encoded_image_string[:6] in (b"GIF89a", b"GIF87a")
    rc, _, err = cli(capsys, "evaluate", str(out), "--side-by-side")
    assert rc == 2 and "--side-by-side needs --video" in err


def test_grid_target_is_outlined_in_videos() -> None:
    from sparseshift.agents.video import RecordedFrame, grid_target_boxes, panel
    from sparseshift.envs.registry import make

    env = make(GRID)
    env.reset(seed=3)
    u: Any = env.unwrapped
    names = list(u.factor_spec.names)
    f = u.get_factors()
    target = next(i for i in range(u.n_objects)
                  if int(f[names.index(f"object{i}.shape")]) == u.target_id)
    rows, cols = u.renderer.cell_box(int(f[names.index(f"object{target}.x")]),
                                     int(f[names.index(f"object{target}.y")]))
    boxes = grid_target_boxes(u)
    assert boxes == [(cols.start, rows.start, cols.stop, rows.stop)]
    frame = u.render_frame()
    img = panel(RecordedFrame(frame, boxes, "in", 0, 0, 0.0), 4)
    cell = img[-frame.shape[0] * 4:][rows.start * 4:rows.stop * 4, cols.start * 4:cols.stop * 4]
    assert (cell == 255).all(-1).any() and (cell == 0).all(-1).any()  # white and black outline
    env.close()


def test_trifinger_video_frames_show_goals_without_touching_the_env() -> None:
    from sparseshift.agents.video import EpisodeRecorder
    from sparseshift.envs.registry import make

    reach = "sparseshift/TriFingerReach-v0"
    plain = make(reach, obs_mode="pixels", shift="real")
    recorded = EpisodeRecorder(make(reach, obs_mode="pixels", shift="real"), {7: 0}, "real")
    o1, _ = plain.reset(seed=7)
    o2, _ = recorded.reset(seed=7)
    rng = np.random.default_rng(0)
    for _ in range(3):
        a = rng.uniform(-1, 1, plain.action_space.shape).astype(np.float32)
        o1 = plain.step(a)[0]
        o2 = recorded.step(a)[0]
        np.testing.assert_array_equal(o1, o2)  # the real shift's noise is untouched
    frames = recorded.frames[0]
    assert len(frames) == 4
    green = frames[-1].image.astype(int)
    obs = np.asarray(o2, dtype=int)
    marker = (green[..., 1] - np.maximum(green[..., 0], green[..., 2])) > 60
    assert marker.sum() > ((obs[..., 1] - np.maximum(obs[..., 0], obs[..., 2])) > 60).sum()
    plain.close()
    recorded.close()


# -- eval-rep: named steps, files, labelled figures ----------------------------------------------

def test_eval_rep_names_its_steps_and_lists_its_files(
        tmp_path: Path, pairs_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sparseshift.representations.train import TrainConfig, train

    run = tmp_path / "run"
    train(TrainConfig("beta_vae", model=support.TINY, steps=1, batch=4, progress=False,
                      tensorboard=False), pairs_path, run)
    metrics = tmp_path / "m.json"
    rc, out, err = cli(capsys, "eval-rep", str(run), "--data", str(pairs_path), "--out",
                       str(metrics), "--num-train", "60", "--num-test", "30", "--factor-vae",
                       "off", "--dci-estimators", "2", "--no-proxy",
                       "--export-codes", str(tmp_path / "codes.npz"))
    assert rc == 0, err
    for step in ("encode", "per_dimension_metrics", "probes", "reconstruction", "traversal"):
        assert f"eval-rep: {step}" in err, step
    listed = written_block(out)
    assert listed == [str(metrics), str(metrics.with_suffix(".traversal.png")),
                      str(tmp_path / "codes.npz")]


def test_traversal_rows_are_latents_with_their_kl(pairs_path: Path) -> None:
    from PIL import Image

    from sparseshift.envs.data import open_dataset
    from sparseshift.representations.registry import make_learner
    from sparseshift.representations.vae import gaussian_kl
    from sparseshift.representations.viz import latent_kl, traversal_figure, traversal_labels

    torch.manual_seed(0)
    learner: Any = make_learner("beta_vae", {"image_size": 64, **support.TINY}).eval()
    frames = np.asarray(open_dataset(pairs_path).take("frames_a", np.arange(16)))
    kl = latent_kl(learner, frames, batch=5)
    assert kl is not None
    with torch.no_grad():
        mu, logvar = learner.posterior(torch.from_numpy(frames))
    np.testing.assert_allclose(kl, gaussian_kl(mu, logvar).mean(0).numpy(), rtol=1e-5)
    labels = traversal_labels(np.array([1.234, 0.001]), 2)
    assert labels == ["z0  KL 1.23", "z1  KL 0.00  unused"]
    png = Image.open(io.BytesIO(traversal_figure(learner, frames)))
    grid_w = 10 * 66  # input + 9 values, 64px cells
    assert png.width > grid_w and png.height > 4 * 66


def test_slot_figure_columns_are_captioned() -> None:
    from PIL import Image

    from sparseshift.representations.registry import make_learner
    from sparseshift.representations.slot_eval import slot_figure_png, slot_panels

    torch.manual_seed(0)
    learner: Any = make_learner("slot_attention", {"image_size": 64, "num_slots": 3})
    frames = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    cells, labels, colours = slot_panels(learner, frames)
    assert labels == ["input", "reconstruction", "segmentation", "mask 1", "slot 1", "mask 2",
                      "slot 2", "mask 3", "slot 3"]
    assert cells.shape == (2, 9, 64, 64, 3) and colours[3] == colours[4] != colours[5]
    png = Image.open(io.BytesIO(slot_figure_png(learner, frames)))
    assert png.width >= 9 * 64


# -- pictures of datasets and envs ---------------------------------------------------------------

def test_captions_wrap_and_are_never_cut() -> None:
    from sparseshift.experiments.commands.imaging import contact_sheet, text_width, wrap

    text = "object0_colour, object1_pos, object2.shape, background_colour"
    lines = wrap(text, 120)
    assert len(lines) > 1 and all(text_width(line) <= 120 for line in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")
    long = wrap("a_single_factor_name_much_wider_than_the_cell", 60)
    assert "".join(long) == "a_single_factor_name_much_wider_than_the_cell"
    frame = np.zeros((8, 8, 3), np.uint8)
    short = contact_sheet([("r", [frame])], captions=[["x"]])
    tall = contact_sheet([("r", [frame])], captions=[[text]])
    assert tall.shape[0] > short.shape[0]  # the sheet grows to hold the caption


def test_inspect_sheet_gap_agrees_with_help(video_path: Path, pairs_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from sparseshift.envs.data import open_dataset
    from sparseshift.experiments.commands.inspect import sheet_content

    args = build_parser().parse_args(["inspect", str(video_path)])
    assert args.gap == 5 and "(default 5)" in help_text(capsys, "inspect")
    rows, captions, title = sheet_content(open_dataset(video_path), 8, args.gap, 0)
    assert "k drawn from 1..5" in title and rows[1][0] == "frame t+k"
    gaps = [int(re.match(r"k=(\d+): ", c).group(1)) for c in captions]  # type: ignore[union-attr]
    assert all(1 <= g <= 5 for g in gaps)
    _, captions, _ = sheet_content(open_dataset(pairs_path), 16, 5, 0)
    names = {n for c in captions for n in c.split(", ")}
    assert names <= {"agent_pos", "agent_colour", "background_colour", "nothing changed",
                     *(f"object{i}{s}" for i in range(3)
                       for s in ("_pos", ".shape", "_colour"))}, names
    rc, out, _ = cli(capsys, "inspect", str(pairs_path), "--sheet",
                     str(video_path.parent / "sheet.png"))
    assert rc == 0 and written_block(out) == [str(video_path.parent / "sheet.png")]


def test_render_defaults_to_the_training_preset(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from sparseshift.envs.data.config import CollectConfig

    args = build_parser().parse_args(["render", GRID, "--out", "x.png"])
    assert args.preset == "fast" and CollectConfig(GRID, "pairs", 8).render_preset in (None,
                                                                                         "fast")
    assert "pretty" in help_text(capsys, "render")
    out = tmp_path / "grid.png"
    rc, stdout, _ = cli(capsys, "render", GRID, "--out", str(out), "--n", "2")
    assert rc == 0 and written_block(stdout) == [str(out)]


def test_envs_lists_only_the_colours_that_vary(capsys: pytest.CaptureFixture[str]) -> None:
    from sparseshift.experiments.commands.envs import describe

    grid = describe(GRID)
    assert set(grid["colour_splits"]) == {"object", "agent", "background"}
    assert "wall" in grid["fixed_colour_objects"]
    reach = describe("sparseshift/TriFingerObjectReach-v0")
    assert set(reach["colour_splits"]) == {"cube"}
    assert reach["colour_groups"] == {"cube_colour": "cube"}
    rc, out, _ = cli(capsys, "envs", "--env", GRID)
    assert rc == 0 and "wall (" not in out and "object (object0_colour" in out


# -- help texts say what the code does ----------------------------------------------------------

def test_help_texts(capsys: pytest.CaptureFixture[str]) -> None:
    from sparseshift.envs.data.layout import FRAME_CHUNK_ROWS

    evaluate = help_text(capsys, "evaluate")
    assert "%%" not in evaluate and "--side-by-side" in evaluate and "H.264" in evaluate
    collect = help_text(capsys, "collect")
    assert f"multiple of {FRAME_CHUNK_ROWS})" in collect
    study = help_text(capsys, "study")
    assert ".;" not in study and "colourGrid" not in study
    train = help_text(capsys, "train-agent")
    assert "rounded up" in train


def test_format_written_lists_files_and_folders(tmp_path: Path) -> None:
    from sparseshift.experiments.commands.written import format_written, human_size

    (tmp_path / "a.json").write_text("x" * 1500)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "one").write_text("1")
    (tmp_path / "logs" / "two").write_text("2")
    text = format_written([tmp_path / "a.json", tmp_path / "logs", tmp_path / "missing"])
    assert text.splitlines() == ["wrote:", f"  {tmp_path / 'a.json'} (1.5 kB)",
                                 f"  {tmp_path / 'logs'}/ (2 files, 2 B)"]
    assert format_written([tmp_path / "missing"]) == ""
    assert human_size(999) == "999 B" and human_size(2_500_000) == "2.5 MB"


def test_train_rep_bar_shows_small_losses(tmp_path: Path, pairs_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = cli(capsys, "train-rep", "--learner", "slot_attention", "--data",
                     str(pairs_path), "--steps", "1", "--batch", "2", "--model", "num_slots=2",
                     "--out", str(tmp_path / "slots"))
    assert rc == 0
    losses = re.findall(r"loss=([0-9.e+-]+)", err)
    assert losses and float(losses[-1]) > 0 and losses[-1] != "0.0", err
