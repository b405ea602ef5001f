"""The MuJoCo TriFingerPro model against the reference numbers (docs/trifinger.md)."""

from __future__ import annotations

from collections.abc import Iterator

import sparseshift.envs.trifinger  # noqa: F401  (selects the GL backend before mujoco is imported)

# isort: split

import mujoco
import numpy as np
import pytest

from sparseshift.envs.trifinger import model as M
from sparseshift.envs.trifinger.render import FrameRenderer, configure_model, get_preset


@pytest.fixture
def mj_messages() -> Iterator[list[str]]:
    """Collect MuJoCo warnings (compile and runtime) emitted through mju_warning."""
    msgs: list[str] = []
    old = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(msgs.append)
    try:
        yield msgs
    finally:
        mujoco.set_mju_user_warning(old)


def _default_state() -> tuple[mujoco.MjModel, mujoco.MjData, M.ModelIndex]:
    model = M.load_model()
    data = mujoco.MjData(model)
    ix = M.ModelIndex.build(model)
    data.qpos[ix.joint_qpos] = M.DEFAULT_Q
    data.ctrl[:] = M.DEFAULT_Q
    mujoco.mj_forward(model, data)
    return model, data, ix


def test_scene_compiles_and_steps_without_warnings(mj_messages: list[str]) -> None:
    model, data, _ = _default_state()
    assert model.opt.timestep == pytest.approx(M.PHYSICS_TIMESTEP)
    rng = np.random.default_rng(0)
    for _ in range(50):  # 2 s of physics with changing joint targets
        data.ctrl[:] = rng.uniform(M.JOINT_LOW, M.JOINT_HIGH)
        mujoco.mj_step(model, data, M.SUBSTEPS)
    counts = [int(w.number) for w in data.warning]
    assert counts == [0] * len(counts), counts
    assert mj_messages == []
    assert np.isfinite(data.qpos).all()


def test_warning_check_can_fail(mj_messages: list[str]) -> None:
    """The warning counters used above do register an unstable simulation."""
    model, data, _ = _default_state()
    data.qvel[:] = 1e20
    mujoco.mj_step(model, data)
    assert sum(int(w.number) for w in data.warning) > 0
    assert mj_messages


def test_default_pose_tips_match_reference() -> None:
    _, data, ix = _default_state()
    tips = data.site_xpos[ix.tip_sites]
    np.testing.assert_allclose(tips, M.REFERENCE_DEFAULT_TIPS, atol=2e-3)


def test_zero_pose_kinematics_match_reference() -> None:
    model, data, ix = _default_state()
    data.qpos[ix.joint_qpos] = 0.0
    mujoco.mj_kinematics(model, data)
    ref_tips = [(0.086, 0.0505, -0.03), (0.00073, -0.09973, -0.03), (-0.08673, 0.04923, -0.03)]
    ref_middle = [(0.01685, 0.0505, 0.29), (0.03531, -0.03984, 0.29), (-0.05216, -0.01066, 0.29)]
    np.testing.assert_allclose(data.site_xpos[ix.tip_sites], ref_tips, atol=2e-3)
    for f, ref in zip(M.FINGERS, ref_middle, strict=True):
        np.testing.assert_allclose(data.body(f"{f}.middle_link").xpos, ref, atol=1e-4)
        np.testing.assert_allclose(data.body(f"{f}.upper_link").xpos, (0, 0, 0.29), atol=1e-9)


def test_joint_limits_masses_and_actuators_match_reference() -> None:
    model, _, _ = _default_state()
    lows, highs = [-0.33, 0.0, -2.7] * 3, [1.0, 1.57, 0.0] * 3
    for name, lo, hi in zip(M.JOINT_NAMES, lows, highs, strict=True):
        j = model.joint(name)
        assert j.limited[0] == 1
        np.testing.assert_allclose(j.range, (lo, hi))
        a = model.actuator(name)
        np.testing.assert_allclose(a.ctrlrange, (lo, hi))
        np.testing.assert_allclose(a.forcerange, (-0.396, 0.396))
    kp = model.actuator_gainprm[:, 0]
    kv = -model.actuator_biasprm[:, 2]
    np.testing.assert_allclose(kp, [15, 15, 9] * 3)
    np.testing.assert_allclose(kv, [0.5, 1.0, 0.5] * 3)
    for f in M.FINGERS:
        for link, mass in M.LINK_MASSES.items():
            assert model.body(f"{f}.{link}").mass[0] == pytest.approx(mass)
    assert model.body("cube").mass[0] == pytest.approx(0.094)
    np.testing.assert_allclose(model.body("cube").inertia, 6.619e-5, rtol=1e-3)
    np.testing.assert_allclose(model.geom("cube").size, 0.0325)
    assert model.geom("cube").friction[0] == pytest.approx(1.0)


def test_table_and_boundary_geometry() -> None:
    model, data, _ = _default_state()
    table = data.geom("table")
    assert table.xpos[2] + model.geom("table").size[2] == pytest.approx(0.0)
    np.testing.assert_allclose(model.geom("table").size[:2], 0.38)
    # the boundary: vertical at BOUNDARY_INNER_RADIUS up to the knee, then the official flare
    data.qpos[model.joint("cube").qposadr[0] + 2] = -0.5  # out of the rays' way
    mujoco.mj_kinematics(model, data)
    groups = np.array([0, 0, 0, 1, 0, 0], dtype=np.uint8)  # the wall* collision segments
    for z in (0.005, 0.03, 0.1, 0.17):
        radii = [mujoco.mj_ray(model, data, np.array([0, 0, z]), np.array([np.cos(a), np.sin(a),
                               0]), groups, 1, -1, np.zeros(1, np.int32))
                 for a in np.linspace(0, 2 * np.pi, 37)[:-1] + 0.01]  # face centres
        np.testing.assert_allclose(radii, M.boundary_inner_radius(z), atol=1e-3)
    assert M.BOUNDARY_INNER_RADIUS > np.hypot(0.11, 0.11) + np.sqrt(2) * M.CUBE_HALF_WIDTH
    for mat in M.MATERIALS:
        assert mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_MATERIAL, mat) >= 0


@pytest.mark.parametrize("camera", ["camera60", "camera180", "camera300", "overview"])
def test_cameras_look_at_the_arena_centre(camera: str) -> None:
    model, data, ix = _default_state()
    configure_model(model, get_preset("fast"), 64)
    mujoco.mj_forward(model, data)
    # Optical axis (-z in MuJoCo) meets the table near the arena centre.
    pos, rot = data.cam_xpos[ix.cameras[camera]], data.cam_xmat[ix.cameras[camera]].reshape(3, 3)
    fwd = -rot[:, 2]
    hit = pos + fwd * (-pos[2] / fwd[2])
    assert np.hypot(hit[0], hit[1]) < 0.04, hit
    if camera != "overview":
        assert rot[2, 1] > 0.3  # image up points upwards in the world (not upside down)
    # The cube at the centre is visible and roughly central in the segmentation.
    r = FrameRenderer(model, ix, 64, camera)
    try:
        seg = r.segmentation(data)
    finally:
        r.close()
    ys, xs = np.nonzero(seg == M.OBJECT_NAMES.index("cube"))
    assert len(ys) > 10
    assert 16 <= ys.mean() <= 48 and 16 <= xs.mean() <= 48
