"""Slot Attention (Locatello et al. 2020) learner and the FG-ARI metric (Hubert & Arabie 1985)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.representations.ari import adjusted_rand_index, foreground_ari
from sparseshift.representations.model_config import LRSchedule
from sparseshift.representations.slots import (
    REFERENCE_LR_SCHEDULE,
    SlotAttention,
    SlotAttentionConfig,
    SlotAttentionModule,
)

TINY = {
    "image_size": 16, "num_slots": 3, "iters": 2, "slot_size": 8, "mlp_hidden": 16,
    "enc_channels": (4, 4), "enc_kernels": (3, 3), "enc_strides": (2, 1),
    "dec_broadcast": 4, "dec_channels": (4,), "dec_kernels": (4,), "dec_strides": (2,),
    "dec_out_kernel": 4, "dec_out_stride": 2,
}

# 64x64 frames (the envs' smallest size) through a cheap net: 8x8 features, decoded at 32x32
GRID64 = {**TINY, "image_size": 64, "enc_channels": (4, 4, 4), "enc_kernels": (3, 3, 3),
          "enc_strides": (2, 2, 2), "dec_broadcast": 8}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def tiny(**kw: object) -> SlotAttention:
    torch.manual_seed(0)
    return SlotAttention(SlotAttentionConfig(**{**TINY, **kw}))  # type: ignore[arg-type]


def frames(n: int = 4, size: int = 16, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8))


# ---------------------------------------------------------------- learner
def test_shapes_and_finite_loss() -> None:
    """The reference's Gaussian initialisation (``init="gaussian"``): mu and sigma both train."""
    m = tiny(init="gaussian")
    x = frames()
    terms = m.loss({"x": x}, torch.Generator().manual_seed(0))
    assert terms["loss"].ndim == 0 and torch.isfinite(terms["loss"])
    terms["loss"].backward()
    assert m.slots_mu.grad is not None and m.slots_log_sigma.grad is not None  # both trained
    assert m.latent_shape == (3, 8)
    assert m.encode(x).shape == (4, 3, 8)
    assert m.reconstruct(x).shape == (4, 16, 16, 3)
    masks = m.masks(x)
    assert masks.shape == (4, 3, 16, 16)
    torch.testing.assert_close(masks.sum(1), torch.ones(4, 16, 16))


def test_registered_and_presets() -> None:
    from sparseshift.representations.registry import learner_class

    assert learner_class("slot_attention") is SlotAttention
    fast = SlotAttentionConfig()
    assert fast.decoder_size == 64 and fast.feature_size == 16
    paper = SlotAttentionConfig(preset="paper")
    assert paper.enc_channels == (64, 64, 64, 64) and paper.enc_strides == (1, 1, 1, 1)
    assert paper.dec_strides == (2, 2, 2, 1) and paper.decoder_size == 64
    assert SlotAttentionConfig.from_json(paper.to_json()) == paper
    with pytest.raises(ConfigError):
        SlotAttentionConfig(preset="nope")
    with pytest.raises(ConfigError):
        SlotAttentionConfig(dec_strides=(2, 2), dec_channels=(8,), dec_kernels=(4,))
    with pytest.raises(ConfigError):
        SlotAttentionConfig(enc_strides=(2, 2, 2, 2, 2, 2, 2), enc_channels=(4,) * 7,
                            enc_kernels=(3,) * 7)


def test_low_resolution_decoder_is_upsampled() -> None:
    m = tiny(dec_out_stride=1, dec_out_kernel=3)  # decodes 8x8, upsampled to 16x16
    assert m.config.decoder_size == 8
    assert m.reconstruct(frames()).shape == (4, 16, 16, 3)


def test_encode_is_deterministic_and_batch_independent() -> None:
    m = tiny().eval()
    x = frames(6)
    a = m.encode(x)
    torch.testing.assert_close(a, m.encode(x), rtol=0, atol=0)
    torch.testing.assert_close(a[2:3], m.encode(x[2:3]), rtol=1e-5, atol=1e-6)


def test_training_noise_comes_from_generator() -> None:
    m = tiny(init="gaussian")
    x = frames()
    a = m.loss({"x": x}, torch.Generator().manual_seed(1))["loss"]
    b = m.loss({"x": x}, torch.Generator().manual_seed(1))["loss"]
    c = m.loss({"x": x}, torch.Generator().manual_seed(2))["loss"]
    assert float(a.detach()) == float(b.detach()) != float(c.detach())


def test_slot_sigma_positive() -> None:
    m = tiny(init="gaussian")
    with torch.no_grad():
        m.slots_log_sigma.fill_(-30.0)
    assert bool((m.slots_sigma > 0).all())


def test_num_slots_changes_at_eval() -> None:
    m = tiny(init="gaussian").eval()
    x = frames()
    assert m.encode(x, num_slots=5).shape == (4, 5, 8)
    assert m.masks(x, num_slots=6).shape == (4, 6, 16, 16)
    m.num_slots = 4
    assert m.latent_shape == (4, 8) and m.encode(x).shape == (4, 4, 8)
    # the fixed initial noise of K slots is the first K rows of the draw for more slots
    torch.testing.assert_close(m.initial_slots(2, 3), m.initial_slots(2, 5)[:, :3])
    with pytest.raises(ConfigError):
        m.encode(x, num_slots=0)


def test_learned_queries_bo_qsa() -> None:
    """init='learned' (Jia et al. 2023; the default): one query per slot, the same for every
    image, trained through the straight-through last round; at most the trained number of
    slots."""
    assert SlotAttentionConfig().init == "learned"
    m = tiny()
    assert not hasattr(m, "slots_mu") and m.slots_query.shape == (1, 3, 8)
    x = frames()
    init = m.initial_slots(4)
    torch.testing.assert_close(init[0], init[3])
    assert not torch.allclose(init[0, 0], init[0, 1])  # distinct slots without noise
    a = m.loss({"x": x}, torch.Generator().manual_seed(1))["loss"]
    b = m.loss({"x": x}, torch.Generator().manual_seed(2))["loss"]
    assert float(a.detach()) == float(b.detach())  # no sampling noise
    a.backward()
    assert m.slots_query.grad is not None and float(m.slots_query.grad.abs().sum()) > 0
    assert m.encode(x, num_slots=2).shape == (4, 2, 8)
    with pytest.raises(ConfigError, match="at most 3 slots"):
        m.encode(x, num_slots=4)
    with pytest.raises(ConfigError, match="unknown init 'kmeans'; valid: gaussian, learned"):
        SlotAttentionConfig(init="kmeans")


def test_straight_through_and_implicit_gradients() -> None:
    """The last round starts from detached slots: with ``implicit`` the initial slots get no
    gradient, with ``straight_through`` they get exactly the last round's gradient (as if it had
    started from them); the forward values are unchanged by either."""
    torch.manual_seed(0)
    mod = SlotAttentionModule(8, 8, 16, iters=3, eps=1e-8)
    inputs = torch.randn(2, 10, 8)
    init = torch.randn(2, 3, 8, requires_grad=True)
    plain, _ = mod(inputs, init)
    imp, _ = mod(inputs, init, implicit=True)
    st, _ = mod(inputs, init, straight_through=True)
    torch.testing.assert_close(plain, imp)
    torch.testing.assert_close(plain, st)
    assert not imp.requires_grad or torch.autograd.grad(
        imp.sum(), init, allow_unused=True)[0] is None
    (g_st,) = torch.autograd.grad(st.sum(), init)
    # reference: the last round alone, run from the slots of the first two rounds, with respect
    # to its starting point
    two = SlotAttentionModule(8, 8, 16, iters=2, eps=1e-8)
    one = SlotAttentionModule(8, 8, 16, iters=1, eps=1e-8)
    two.load_state_dict(mod.state_dict())
    one.load_state_dict(mod.state_dict())
    start = two(inputs, init)[0].detach().requires_grad_(True)
    (g_ref,) = torch.autograd.grad(one(inputs, start)[0].sum(), start)
    torch.testing.assert_close(g_st, g_ref)


def test_slot_module_permutation_equivariant_and_attention_normalised() -> None:
    torch.manual_seed(0)
    mod = SlotAttentionModule(in_dim=6, slot_size=8, mlp_hidden=16, iters=3, eps=1e-8)
    inputs = torch.randn(2, 10, 6)
    slots = torch.randn(2, 5, 8)
    out, attn = mod(inputs, slots)
    perm = torch.tensor([3, 0, 4, 1, 2])
    out_p, attn_p = mod(inputs, slots[:, perm])
    torch.testing.assert_close(out_p, out[:, perm], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(attn_p, attn[:, perm], rtol=1e-5, atol=1e-6)
    assert attn.shape == (2, 5, 10)
    torch.testing.assert_close(attn.sum(1), torch.ones(2, 10))  # softmax over SLOTS


def test_whole_model_permutation_equivariant() -> None:
    m = tiny().eval()
    x = frames(2)
    feats = m.features(x)
    init = m.initial_slots(2, 3)
    perm = torch.tensor([2, 0, 1])
    a, _ = m.slot_attention(feats, init)
    b, _ = m.slot_attention(feats, init[:, perm])
    torch.testing.assert_close(b, a[:, perm], rtol=1e-5, atol=1e-5)
    ra, _, _ = m.decode_slots(a)
    rb, _, _ = m.decode_slots(b)
    torch.testing.assert_close(ra, rb, rtol=1e-5, atol=1e-5)  # image ignores slot order


def test_save_load_round_trip(tmp_path: Path) -> None:
    from sparseshift.agents.collect.collect import collect
    from sparseshift.envs.data import open_dataset
    from sparseshift.envs.data.config import CollectConfig
    from sparseshift.representations.checkpoint import load_learner
    from sparseshift.representations.train import TrainConfig, train

    data = tmp_path / "cg.h5"
    collect(CollectConfig("sparseshift/ColourGrid-v0", "pairs", n=32,
                          part_rows=32), data, progress=False)
    ds = open_dataset(data)
    out = tmp_path / "run"
    model = {k: v for k, v in GRID64.items() if k != "image_size"}
    train(TrainConfig(learner="slot_attention", model=model, steps=3, batch=4, lr=4e-4,
                      progress=False, tensorboard=False), ds, out)
    loaded = load_learner(out, expect_learner="slot_attention")
    assert isinstance(loaded, SlotAttention)
    x = torch.from_numpy(np.asarray(ds.frames_a[:5]))
    # train again from scratch in another folder: same seed -> same weights -> same encodings
    train(TrainConfig(learner="slot_attention", model=model, steps=3, batch=4, lr=4e-4,
                      progress=False, tensorboard=False), ds, tmp_path / "run2")
    again = load_learner(tmp_path / "run2")
    torch.testing.assert_close(loaded.encode(x), again.encode(x), rtol=0, atol=0)
    fresh = SlotAttention(loaded.config)
    fresh.load_state_dict(loaded.state_dict())
    fresh.eval()
    torch.testing.assert_close(loaded.encode(x), fresh.encode(x), rtol=0, atol=0)
    assert loaded.encode(x).shape == (5, 3, 8)


# ---------------------------------------------------------------- ARI
@pytest.mark.parametrize("seed", range(5))
def test_ari_matches_sklearn_on_random_labelings(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 1 + seed, (6, 40))
    p = rng.integers(0, 4, (6, 40))
    p[0] = t[0]  # one perfect row
    p[1] = rng.permutation(5)[t[1] % 5] if seed else p[1]
    want = [adjusted_rand_score(a, b) for a, b in zip(t, p, strict=True)]
    np.testing.assert_allclose(adjusted_rand_index(t, p), want, rtol=1e-10, atol=1e-12)


def test_ari_masked_matches_sklearn_on_valid_points() -> None:
    rng = np.random.default_rng(7)
    t = rng.integers(0, 4, (5, 8, 8))
    p = rng.integers(0, 6, (5, 8, 8))
    valid = rng.random((5, 8, 8)) < 0.6
    got = adjusted_rand_index(t, p, valid)
    want = [adjusted_rand_score(a[v], b[v]) for a, b, v in zip(t, p, valid, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_ari_special_cases_like_sklearn() -> None:
    cases = [([0, 0, 0], [1, 1, 1]), ([0, 1, 2], [2, 0, 1]), ([0, 0, 1], [0, 1, 2]),
             ([0, 0, 0], [0, 1, 2]), ([5], [3]), ([0, 0, 1, 1], [0, 0, 0, 0])]
    for a, b in cases:
        got = adjusted_rand_index(np.array([a]), np.array([b]))[0]
        assert got == pytest.approx(adjusted_rand_score(a, b), abs=1e-12), (a, b)


def test_fg_ari_perfect_permuted_and_ignores_background() -> None:
    rng = np.random.default_rng(0)
    seg = rng.integers(0, 5, (3, 16, 16))  # 0 = background
    perm = np.array([4, 2, 0, 3, 1])
    assert np.allclose(foreground_ari(seg, perm[seg]), 1.0)
    # whatever the prediction does on background pixels does not matter
    pred = perm[seg].copy()
    pred[seg == 0] = rng.integers(0, 7, int((seg == 0).sum()))
    assert np.allclose(foreground_ari(seg, pred), 1.0)
    # several background ids (TriFinger: background and arena)
    pred2 = perm[seg].copy()
    pred2[seg == 1] = rng.integers(0, 7, int((seg == 1).sum()))
    assert np.allclose(foreground_ari(seg, pred2, background_ids=(0, 1)), 1.0)
    assert not np.allclose(foreground_ari(seg, pred2, background_ids=(0,)), 1.0)
    # a prediction that merges two objects scores < 1; no foreground -> NaN
    merged = np.where(seg == 2, 1, seg)
    assert (foreground_ari(seg, merged) < 1).all()
    assert np.isnan(foreground_ari(np.zeros((1, 4, 4), int), np.zeros((1, 4, 4), int))).all()


def test_segmentation_scores_and_figure(tmp_path: Path) -> None:
    from sparseshift.representations.slot_eval import save_slot_figure, segmentation_scores

    seg = np.zeros((2, 8, 8), np.int64)
    seg[:, :4, :4] = 2  # cube
    seg[:, 4:, 4:] = 3  # finger0
    seg[:, :4, 4:] = 1  # arena
    pred = seg.copy()
    names = ("background", "arena", "cube", "finger0")
    s = segmentation_scores(seg, pred, names)
    assert s["fg_ari"] == 1.0 and s["background"] == ["background", "arena"]
    assert s["objects"]["cube"]["coverage"] == 1.0 and s["objects"]["cube"]["shared"] == 0.0
    merged = np.where(seg == 3, 2, seg)
    s2 = segmentation_scores(seg, merged, names)
    assert s2["fg_ari"] == 0.0 and s2["objects"]["cube"]["shared"] == 1.0
    m = tiny().eval()
    path = tmp_path / "slots.png"
    save_slot_figure(m, frames(2).numpy(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_slots_on_env() -> None:
    from sparseshift.representations.slot_eval import (
        evaluate_slots,
        ground_truth,
        predict_segmentation,
    )

    m = tiny(**GRID64).eval()
    out = evaluate_slots(m, "sparseshift/ColourGrid-v0", {}, n=4, seed=0)
    assert out["n"] == 4 and out["foreground"] == ["agent", "object0", "object1", "object2"]
    # FG-ARI recomputed with sklearn on the foreground pixels of the same states and masks
    frames, segs, names = ground_truth("sparseshift/ColourGrid-v0", {}, 4, 0)
    pred = predict_segmentation(m, frames)
    assert sklearn_fg_ari(segs, pred, names, out["background"]) == pytest.approx(
        out["fg_ari"], abs=1e-12)
    again = evaluate_slots(m, "sparseshift/ColourGrid-v0", {}, n=4, seed=0)
    assert again["fg_ari"] == out["fg_ari"]


def sklearn_fg_ari(segs: np.ndarray, pred: np.ndarray, names: tuple[str, ...] | list[str],
                   background: list[str]) -> float:
    """Mean over images with foreground of sklearn's ARI on the non-background pixels."""
    fg = ~np.isin(segs, [i for i, n in enumerate(names) if n in background])
    return float(np.mean([adjusted_rand_score(t[f], p[f])
                          for t, p, f in zip(segs, pred, fg, strict=True) if f.any()]))


def test_reference_lr_schedule() -> None:
    factor = REFERENCE_LR_SCHEDULE.factor
    assert factor(0) == pytest.approx(1e-4)
    assert factor(9_999) == pytest.approx(0.5 ** 0.09999)
    assert factor(100_000) == pytest.approx(0.5)
    assert LRSchedule(0, 100_000, 0.5).factor(5) == pytest.approx(0.5 ** (5 / 100_000))
