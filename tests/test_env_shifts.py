"""Env side of the shift registry: the ``shift`` kwarg, scenes, per-episode draws, annotated frames.

Every env takes ``shift`` and declares its scene features; TriFinger offers all of them (lights,
camera, surfaces, frames), the grids frames and their floor. Shifts are seeded from the env's RNG
(same seed, same frames), graded (a higher level moves frames further from the un-shifted ones),
leave un-shifted envs exactly as they were, and :meth:`FactorEnv.annotated_frame` consumes no
randomness.
"""

from __future__ import annotations

import itertools
import pickle
from typing import Any

import cv2
import gymnasium as gym
import numpy as np
import pytest

import sparseshift  # noqa: F401  (registers the ids)
from sparseshift.envs.core.base import AnnotatedFrame, FactorEnv, LabelledBox, severity_of
from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.registry import ENV_IDS, env_class, env_features, scene_offer
from sparseshift.envs.shifts.frame_scene import FrameScene
from sparseshift.envs.shifts.lenses import DEFAULT_LENS, TRIFINGER_LENSES
from sparseshift.envs.shifts.nuisances import NUISANCES, Distortion
from sparseshift.envs.shifts.registry import EnvShift, default_registry

REACH = "sparseshift/TriFingerReach-v0"
GRID = "sparseshift/ColourGrid-v0"
MINIGRID = "sparseshift/MiniGrid-DoorKey-8x8-v0"
NUISANCE_NAMES = tuple(n.name for n in NUISANCES)
SEED = 7


def make(env_id: str = REACH, **kwargs: Any) -> FactorEnv[Any, Any]:
    env = gym.make(env_id, **kwargs).unwrapped
    assert isinstance(env, FactorEnv)
    return env


def first_frame(env_id: str = REACH, seed: int = SEED, **kwargs: Any) -> np.ndarray:
    env = make(env_id, **kwargs)
    obs, _ = env.reset(seed=seed)
    env.close()
    return np.asarray(obs)


def mad(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute pixel difference."""
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


# ---------------------------------------------------------------------------- declarations


def test_every_env_declares_its_features_and_takes_shift() -> None:
    for env_id in ENV_IDS:
        cls = env_class(env_id)
        assert "frame" in cls.SHIFT_FEATURES
        assert env_features(env_id) == cls.SHIFT_FEATURES
    assert env_features(REACH) == {"frame", "lights", "camera", "surfaces"}
    assert env_features(GRID) == env_features(MINIGRID) == {"frame", "surfaces"}
    supported = default_registry().supported(scene_offer(GRID))
    assert {"noise", "blur", "texture", "distortion", "jpeg", "colour"} <= set(supported)
    assert not {"real", "lighting", "ambient", "camera"} & set(supported)


def test_labels_and_severities() -> None:
    assert make().shift_label is None and make().shift_severity is None
    for token, label, severity in (("real", "real", 3.0), ("lighting:4", "lighting:4", 4.0),
                                   ("noise@2.5", "noise@2.5", 2.5)):
        env = make(shift=token)
        assert (env.shift_label, env.shift_severity) == (label, severity)
        assert env.shift_runtime is not None and env.shift_runtime.label == label
    assert severity_of("not a token!") is None
    for token in (None, "none", "in", "real@0"):  # nothing to apply: no runtime at all
        env = make(shift=token)
        assert env.shift_runtime is None and env.shift_label is None


# ---------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("token", ["real:5", *(f"{n}:3" for n in NUISANCE_NAMES)])
def test_same_seed_same_frames(token: str) -> None:
    a, b = make(shift=token), make(shift=token)
    act = np.zeros(a.action_space.shape, dtype=np.float32)  # type: ignore[arg-type]
    oa, _ = a.reset(seed=SEED)
    ob, _ = b.reset(seed=SEED)
    assert np.array_equal(oa, ob)
    for _ in range(2):
        assert np.array_equal(a.step(act)[0], b.step(act)[0])
    oa, _ = a.reset(seed=SEED + 1)
    ob, _ = b.reset(seed=SEED + 1)
    assert np.array_equal(oa, ob)


def test_unshifted_env_is_unchanged_and_shift_keeps_the_factors() -> None:
    """No shift: frames and the reset RNG stream are those of a make without ``shift``. A shift
    draws after the reset state: the first episode's factors are the same."""
    plain, none = make(), make(shift=None)
    shifted = make(shift="real:5")
    for seed in (SEED, SEED + 1):
        p, ip = plain.reset(seed=seed)
        n, i_n = none.reset(seed=seed)
        s, i_s = shifted.reset(seed=seed)
        assert np.array_equal(p, n) and np.array_equal(ip["factors"], i_n["factors"])
        assert np.array_equal(ip["factors"], i_s["factors"])
        assert mad(p, s) > 5.0
    # Without a seed the stream continues: un-shifted envs stay in step.
    _, ip = plain.reset()
    _, i_n = none.reset()
    assert np.array_equal(ip["factors"], i_n["factors"])
    assert plain.shift_runtime is None


# ---------------------------------------------------------------------------- grading


@pytest.mark.parametrize("name", NUISANCE_NAMES)
def test_every_nuisance_changes_trifinger_frames_at_level_5(name: str) -> None:
    assert mad(first_frame(shift=f"{name}:5"), first_frame()) > 2.0


@pytest.mark.parametrize("name", ["noise", "blur", "distortion", "jpeg", "texture", "lighting"])
def test_higher_level_moves_frames_further(name: str) -> None:
    base = first_frame()
    dists = [mad(first_frame(shift=f"{name}:{level}"), base) for level in range(1, 6)]
    assert all(a < b for a, b in itertools.pairwise(dists)), dists
    assert dists[-1] > 5.0, dists


def test_scene_changes_are_restored_every_episode() -> None:
    """Lights and camera go back to nominal at each reset before the new draw (no drift)."""
    env = make(shift="lighting:5")
    env2 = make(shift="camera:5")
    model: Any = env.model  # type: ignore[attr-defined]
    nominal = np.array(model.light_dir)
    for e in (env, env2):
        e.reset(seed=SEED)
    assert not np.allclose(model.light_dir, nominal)
    rt = env.shift_runtime
    assert rt is not None
    rt.scene.restore()
    assert np.array_equal(model.light_dir, nominal)
    cam = env2.index.cameras[env2.camera]  # type: ignore[attr-defined]
    pos0 = np.array(make().model.cam_pos[cam])  # type: ignore[attr-defined]
    m2: Any = env2.model  # type: ignore[attr-defined]
    assert not np.allclose(m2.cam_pos[cam], pos0)
    # Re-seeding reproduces the same pose: the draw starts from nominal, not from the last one.
    first = np.array(m2.cam_pos[cam])
    env2.reset(seed=SEED + 1)
    env2.reset(seed=SEED)
    assert np.allclose(m2.cam_pos[cam], first)


def test_distortion_uses_the_cameras_calibrated_lens() -> None:
    """Level 3 is the real camera's lens: the frame is the un-shifted one remapped through
    OpenCV's Brown-Conrady model with that camera's coefficients (camera180's differ from
    camera60's, and the result is closer with its own)."""
    plain = first_frame(camera="camera180")
    shifted = first_frame(camera="camera180", shift="distortion:3")
    h, w = plain.shape[:2]
    f = h / (2 * np.tan(np.radians(52.0) / 2))

    def remap(coeffs: tuple[float, ...]) -> np.ndarray:
        k = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]])
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
        pts = np.stack([xs.ravel(), ys.ravel()], axis=1).reshape(-1, 1, 2)
        und = cv2.undistortPoints(pts, k, np.array(coeffs), P=k).reshape(h, w, 2)
        out = cv2.remap(plain.astype(np.float32), und[..., 0].astype(np.float32),
                        und[..., 1].astype(np.float32), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

    own, other = remap(TRIFINGER_LENSES["camera180"]), remap(TRIFINGER_LENSES["camera60"])
    assert mad(shifted, own) < 0.05
    assert mad(shifted, other) > mad(shifted, own) + 0.05
    assert mad(shifted, plain) > 2.0


def test_barrel_distortion_bends_straight_lines_outward() -> None:
    """k1 < 0 (every TriFinger lens): a straight horizontal line above the centre bows away from
    it (its middle stays put, its ends are pulled towards the centre)."""
    assert all(lens[0] < 0 for lens in TRIFINGER_LENSES.values())
    scene = FrameScene(64)
    nuisance = Distortion()
    state = nuisance.episode(5.0, np.random.default_rng(0), scene)
    img = np.zeros((64, 64, 3), dtype=np.float32)
    img[6, :] = 255.0
    out = nuisance.frame(img.copy(), state, np.random.default_rng(0), scene)

    def row(col: int) -> float:
        column = out[:, col, 0]
        return float((column * np.arange(64)).sum() / column.sum())

    middle, left, right = row(32), row(4), row(59)
    assert middle < 8.0 and left > middle + 1.0 and right > middle + 1.0
    assert scene.lens() == DEFAULT_LENS == TRIFINGER_LENSES["camera60"]


# ---------------------------------------------------------------------------- annotated frames


@pytest.mark.parametrize("token", [None, "noise:3", "real"])
def test_annotated_frame_consumes_no_randomness(token: str | None) -> None:
    a, b = make(shift=token), make(shift=token)
    act = np.zeros(a.action_space.shape, dtype=np.float32)  # type: ignore[arg-type]
    oa, _ = a.reset(seed=SEED)
    b.reset(seed=SEED)
    frame = a.annotated_frame()
    assert isinstance(frame, AnnotatedFrame)
    assert frame.image.dtype == np.uint8 and frame.image.shape == oa.shape
    assert (frame.shift, frame.severity) == (a.shift_label, a.shift_severity)
    a.annotated_frame()
    for _ in range(3):
        assert np.array_equal(a.step(act)[0], b.step(act)[0])


def test_trifinger_annotated_frame_shows_the_goal_markers() -> None:
    env = make()
    marked = make(goal_markers=True)
    obs, _ = env.reset(seed=SEED)
    ref, _ = marked.reset(seed=SEED)
    frame = env.annotated_frame()
    assert np.array_equal(frame.image, ref) and not np.array_equal(frame.image, obs)
    assert frame.boxes == () and frame.shift is None and frame.severity is None
    # With a deterministic frame shift, the annotated image is the marked frame shifted.
    shifted = make(shift="distortion:3")
    shifted_marked = make(shift="distortion:3", goal_markers=True)
    shifted.reset(seed=SEED)
    ref, _ = shifted_marked.reset(seed=SEED)
    frame = shifted.annotated_frame()
    assert np.array_equal(frame.image, ref)
    assert (frame.shift, frame.severity) == ("distortion:3", 3.0)


def test_grid_target_boxes() -> None:
    grid = make(GRID)
    grid.reset(seed=SEED)
    (box,) = grid.annotated_frame().boxes
    assert isinstance(box, LabelledBox) and box.label == "target"
    seg = grid.segmentation()
    names = grid.object_names
    inside = {names[v] for v in np.unique(seg[box.y0:box.y1, box.x0:box.x1])} - {"background"}
    (obj,) = inside
    spec, f = grid.factor_spec, grid.get_factors()
    assert int(f[spec.index(f"{obj}.shape")]) == grid.target_id  # type: ignore[attr-defined]
    assert box.x1 - box.x0 == box.y1 - box.y0 == grid.renderer.tile  # type: ignore[attr-defined]
    mg = make(MINIGRID)
    mg.reset(seed=SEED)
    (goal,) = mg.annotated_frame().boxes
    spec, f = mg.factor_spec, mg.get_factors()
    tile = mg.renderer.tile  # type: ignore[attr-defined]
    gx, gy = int(f[spec.index("goal.x")]), int(f[spec.index("goal.y")])
    assert goal.label == "goal" and (goal.x1 - goal.x0, goal.y1 - goal.y0) == (tile, tile)
    cell = mg.segmentation()[goal.y0:goal.y1, goal.x0:goal.x1]
    label = mg.object_names.index("goal")
    assert np.isin(cell, (0, label)).all() and (cell == label).mean() > 0.5
    assert (goal.x0 - mg.renderer.x0, goal.y0 - mg.renderer.y0) == (  # type: ignore[attr-defined]
        gx * tile, gy * tile)
    no_target = make(GRID, target_shape=None)
    no_target.reset(seed=SEED)
    assert no_target.annotated_frame().boxes == ()


# ---------------------------------------------------------------------------- grids


@pytest.mark.parametrize("env_id", [GRID, MINIGRID])
@pytest.mark.parametrize("token", ["noise:3", "blur:4", "distortion:3", "jpeg:5"])
def test_grid_frame_shifts(env_id: str, token: str) -> None:
    env = gym.make(env_id, shift=token)
    obs, info = env.reset(seed=SEED)
    plain, pinfo = gym.make(env_id).reset(seed=SEED)
    again, _ = gym.make(env_id, shift=token).reset(seed=SEED)
    assert np.array_equal(info["factors"], pinfo["factors"]) and np.array_equal(obs, again)
    assert mad(obs, plain) > 1.0


def test_grid_texture_patterns_the_floor_only() -> None:
    bright = {"factors": {"background_colour": [0.8, 0.8, 0.8]}}
    env, plain = make(GRID, shift="texture:5"), make(GRID)
    obs, _ = env.reset(seed=SEED, options=bright)
    ref, _ = plain.reset(seed=SEED, options=bright)
    floor = env.segmentation() == 0
    changed = np.any(obs != ref, axis=-1)
    assert changed.any() and not changed[~floor].any()
    assert 0.2 < changed[floor].mean() < 0.8  # a pattern, not a uniform change
    assert np.all(obs[changed] <= ref[changed])


@pytest.mark.parametrize("env_id", [GRID, MINIGRID])
@pytest.mark.parametrize(("token", "missing"), [
    ("real", "camera, lights"), ("lighting:2", "lights"), ("camera", "camera"),
    ("ambient@1.5", "lights")])
def test_grids_refuse_scene_shifts(env_id: str, token: str, missing: str) -> None:
    with pytest.raises(ConfigError) as err:
        gym.make(env_id, shift=token)
    msg = str(err.value)
    assert "\n" not in msg and f"feature(s) {missing}," in msg and "shift" in msg


# ---------------------------------------------------------------------------- pickling


def test_env_shift_pickles_and_rebuilds_the_same_shift() -> None:
    resolved = default_registry().resolve("real:4")
    env_shift = resolved.env_shift()
    assert isinstance(env_shift, EnvShift)
    back = pickle.loads(pickle.dumps(env_shift))
    assert back == env_shift and back.label == "real:4"
    a = first_frame(shift=back)
    assert np.array_equal(a, first_frame(shift=env_shift))
    assert np.array_equal(a, first_frame(shift="real:4"))
    assert np.array_equal(a, first_frame(shift=resolved))
    env = make(shift=back)
    assert (env.shift_label, env.shift_severity) == ("real:4", 4.0)


def test_colour_split_shifts_are_the_colours_kwarg() -> None:
    with pytest.raises(ConfigError, match="colours='ood2'"):
        make(shift=default_registry().resolve("ood2"))


def test_camera_rotation_is_in_the_camera_frame() -> None:
    """A roll about the camera's own optical axis keeps where it looks; the quaternion helpers
    agree with MuJoCo's."""
    import mujoco

    from sparseshift.envs.shifts.mujoco_scene import MujocoScene, quat_from_matrix
    from sparseshift.envs.shifts.nuisance import random_rotation, rotation_matrix

    for seed in range(5):
        r = random_rotation(np.random.default_rng(seed), 120.0)
        q = np.empty(4)
        mujoco.mju_mat2Quat(q, r.ravel())
        assert np.allclose(quat_from_matrix(r), q * np.sign(q[0]), atol=1e-9)
    env = make(camera="camera180")
    model: Any = env.model  # type: ignore[attr-defined]
    data: Any = env.data  # type: ignore[attr-defined]
    cam = env.index.cameras["camera180"]  # type: ignore[attr-defined]
    mujoco.mj_forward(model, data)
    pos, axes = np.array(data.cam_xpos[cam]), np.array(data.cam_xmat[cam]).reshape(3, 3)
    scene = MujocoScene(model, cam, 64, TRIFINGER_LENSES["camera180"])
    scene.camera().move_camera(np.zeros(3), rotation_matrix(np.array([0.0, 0.0, 1.0]), 0.3))
    mujoco.mj_forward(model, data)
    rolled = np.array(data.cam_xmat[cam]).reshape(3, 3)
    assert np.allclose(data.cam_xpos[cam], pos)
    assert np.allclose(rolled[:, 2], axes[:, 2], atol=1e-9)  # same optical axis
    assert not np.allclose(rolled[:, 0], axes[:, 0], atol=1e-3)  # rolled about it
    scene.camera().move_camera(np.array([0.01, 0.0, 0.0]), np.eye(3))
    mujoco.mj_forward(model, data)
    assert np.allclose(data.cam_xpos[cam], pos + np.array([0.01, 0.0, 0.0]))
    scene.restore()
    mujoco.mj_forward(model, data)
    assert np.allclose(data.cam_xmat[cam], axes.ravel()) and np.allclose(data.cam_xpos[cam], pos)


def test_registry_features_match_the_env_classes() -> None:
    """Each registry entry's shift_features (read without importing the env) equals its class's
    SHIFT_FEATURES (what the env itself checks its shift kwarg against)."""
    from sparseshift.envs.registry import ENTRIES, env_class

    for e in ENTRIES:
        assert frozenset(env_class(e.id).SHIFT_FEATURES) == e.shift_features, e.id
