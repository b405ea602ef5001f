"""Evaluation of Slot Attention (Locatello et al. 2020) against ground-truth object masks:
foreground ARI (Hubert & Arabie 1985, :mod:`sparseshift.representations.ari`) and a labelled
figure of per-slot masks (:func:`slot_figure_png`).

Ground truth comes from the env: for each state (sampled with ``env.sample_factors`` or taken from
a dataset's stored factors) the env is put in that state (``set_factors``), the frame is rendered
(``render_frame``) and the segmentation read (``segmentation``, values index
``env.object_names``). The learner's prediction for a pixel is the slot with the largest decoder
alpha mask.

Foreground: every object except those named in :data:`BACKGROUND_NAMES`. The paper excludes only
the background mask; CLEVR's background there includes the floor. TriFinger's ``arena`` is the
same kind of large static surface, so it counts as background too: TriFinger's foreground is the
cube and each of the three fingers; ColourGrid's is the agent and the objects.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, cast

import numpy as np
import torch

from sparseshift.envs.infra.errors import ConfigError
from sparseshift.representations.ari import adjusted_rand_index, foreground_ari
from sparseshift.representations.base import Capability, Learner, LearnerConfig, frames_to_tensor
from sparseshift.representations.slots import SlotOutput

#: Object names treated as background by the foreground ARI.
BACKGROUND_NAMES: tuple[str, ...] = ("background", "arena")

#: Distinct colours for slot ids in figures.
PALETTE = np.array([
    [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
    [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128],
    [220, 190, 255], [170, 110, 40], [128, 0, 0], [170, 255, 195], [128, 128, 0],
], dtype=np.uint8)


class SlotMaskLearner(Protocol):
    """What :attr:`Capability.SLOT_MASKS` promises
    (:class:`sparseshift.representations.slots.SlotAttention` is one)."""

    training: bool
    num_slots: int

    @property
    def config(self) -> LearnerConfig: ...

    def eval(self) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...

    def masks(self, frames: torch.Tensor, num_slots: int | None = None) -> torch.Tensor: ...

    def forward_slots(self, frames: torch.Tensor, num_slots: int | None = None,
                      generator: torch.Generator | None = None, decode: bool = True
                      ) -> SlotOutput: ...


def slot_learner(learner: Learner) -> SlotMaskLearner:
    """``learner`` as a :class:`SlotMaskLearner`; a :class:`ConfigError` unless it declares
    :attr:`Capability.SLOT_MASKS`."""
    reason = learner.missing(Capability.SLOT_MASKS)
    if reason:
        raise ConfigError(f"no slot masks to evaluate: {reason}")
    return cast(SlotMaskLearner, learner)


def render_ground_truth(env: Any, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 frames ``[N, H, W, 3]`` and int32 segmentations ``[N, H, W]`` of factor vectors."""
    frames, segs = [], []
    for f in np.asarray(factors):
        env.set_factors(f)
        frames.append(env.render_frame())
        segs.append(env.segmentation())
    return np.stack(frames), np.stack(segs).astype(np.int32)


@torch.no_grad()
def predict_segmentation(learner: SlotMaskLearner, frames: np.ndarray, num_slots: int | None = None,
                         batch: int = 64) -> np.ndarray:
    """Slot ids ``[N, H, W]`` (argmax of the alpha masks over slots) of uint8 frames."""
    was_training = learner.training
    learner.eval()
    try:
        out = [learner.masks(frames_to_tensor(frames[i : i + batch]), num_slots).argmax(1)
               .cpu().numpy() for i in range(0, len(frames), batch)]
    finally:
        learner.train(was_training)
    return np.concatenate(out).astype(np.int64)


def segmentation_scores(true_seg: np.ndarray, pred: np.ndarray, object_names: Sequence[str],
                        background_names: Sequence[str] = BACKGROUND_NAMES) -> dict[str, Any]:
    """FG-ARI summary and per-object statistics of predicted slot ids against ground truth.

    Per foreground object: ``visible`` (fraction of images where it has pixels), ``pixels`` (mean
    pixel count when visible), ``coverage`` (mean fraction of its pixels that its majority slot
    holds) and ``shared`` (fraction of visible images where its majority slot is also another
    foreground object's majority slot: objects merged into one slot).
    """
    names = list(object_names)
    bg = [i for i, n in enumerate(names) if n in background_names]
    fg_ids = [i for i in range(len(names)) if i not in bg]
    fg = foreground_ari(true_seg, pred, bg)
    ok = fg[~np.isnan(fg)]
    ari_all = adjusted_rand_index(true_seg, pred)
    b = true_seg.shape[0]
    t = true_seg.reshape(b, -1).astype(np.int64)
    p = pred.reshape(b, -1)
    k = int(p.max()) + 1 if p.size else 1
    counts = np.zeros((b, len(names), k), dtype=np.int64)  # [B, objects, slots]
    np.add.at(counts, (np.arange(b)[:, None], t, p), 1)
    pixels = counts.sum(2)
    majority = counts.argmax(2)
    objects: dict[str, dict[str, float]] = {}
    for i in fg_ids:
        vis = pixels[:, i] > 0
        others = [j for j in fg_ids if j != i]
        if vis.any():
            cov = counts[vis, i].max(1) / pixels[vis, i]
            other_vis = pixels[:, others] > 0 if others else np.zeros((b, 0), bool)
            same = (majority[:, others] == majority[:, [i]]) & other_vis
            shared = float(same[vis].any(1).mean()) if others else 0.0
            objects[names[i]] = {"visible": float(vis.mean()),
                                 "pixels": float(pixels[vis, i].mean()),
                                 "coverage": float(cov.mean()), "shared": shared}
        else:
            objects[names[i]] = {"visible": 0.0, "pixels": 0.0, "coverage": float("nan"),
                                 "shared": float("nan")}
    return {
        "fg_ari": float(ok.mean()) if ok.size else float("nan"),
        "fg_ari_std": float(ok.std()) if ok.size else float("nan"),
        "fg_ari_median": float(np.median(ok)) if ok.size else float("nan"),
        "fg_ari_per_image": fg.tolist(),
        "ari_with_background": float(ari_all.mean()),
        "n": b,
        "n_without_foreground": int(np.isnan(fg).sum()),
        "background": [names[i] for i in bg],
        "foreground": [names[i] for i in fg_ids],
        "slots_used": float(np.mean([len(np.unique(r)) for r in p])),
        "objects": objects,
    }


def ground_truth(env_id: str, env_kwargs: Mapping[str, Any] | None = None, n: int = 256,
                 seed: int = 0, factors: np.ndarray | None = None, image_size: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Frames, segmentations and object names of ``n`` states of env ``env_id``.

    States are ``n`` rows of ``factors`` (drawn without replacement with ``seed``; all rows if
    there are fewer) when given (e.g. a dataset's stored factors), else sampled with the env's
    ``sample_factors`` from ``numpy.random.default_rng(seed)``. ``image_size``: the size the
    frames must have (a :class:`ConfigError` otherwise).
    """
    from sparseshift.envs.registry import make

    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    env = make(env_id, **dict(env_kwargs or {}))
    try:
        base: Any = env.unwrapped  # a FactorEnv
        if image_size is not None and base.image_size != image_size:
            raise ConfigError(f"{env_id} renders {base.image_size}x{base.image_size} frames but "
                              f"the learner takes {image_size}")
        rng = np.random.default_rng(seed)
        if factors is not None:
            rows = np.asarray(factors)
            idx = np.sort(rng.choice(len(rows), size=min(n, len(rows)), replace=False))
            chosen = rows[idx]
        else:
            env.reset(seed=seed)
            chosen = np.stack([base.sample_factors(rng) for _ in range(n)])
        frames, segs = render_ground_truth(base, chosen)
        return frames, segs, tuple(base.object_names)
    finally:
        env.close()


def dataset_ground_truth(data: Any, n: int = 256, seed: int = 0, image_size: int | None = None
                         ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """:func:`ground_truth` of ``n`` states stored in a dataset (path or opened dataset), drawn
    with ``seed``, rendered by the env (and env kwargs) it was collected with."""
    from sparseshift.representations.data import frames_at, num_frames, open_data

    ds = open_data(data)
    total = num_frames(ds)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(total, size=min(n, total), replace=False))
    _, factors = frames_at(ds, idx)
    return ground_truth(str(ds.env_id), dict(ds.attrs.get("env_kwargs") or {}), len(idx), seed,
                        factors=factors, image_size=image_size)


def score_slots(learner: SlotMaskLearner, frames: np.ndarray, segs: np.ndarray,
                names: Sequence[str], num_slots: int | None = None,
                background_names: Sequence[str] = BACKGROUND_NAMES) -> dict[str, Any]:
    """:func:`segmentation_scores` of the learner's segmentation of ``frames``."""
    pred = predict_segmentation(learner, frames, num_slots)
    return segmentation_scores(segs, pred, names, background_names)


def evaluate_slots(learner: SlotMaskLearner, env_id: str,
                   env_kwargs: Mapping[str, Any] | None = None, n: int = 256, seed: int = 0,
                   factors: np.ndarray | None = None, num_slots: int | None = None,
                   background_names: Sequence[str] = BACKGROUND_NAMES) -> dict[str, Any]:
    """FG-ARI of ``learner`` on ``n`` states of env ``env_id`` (made with ``env_kwargs``; the
    states as in :func:`ground_truth`). Returns the summary of :func:`segmentation_scores` plus
    the env id, seed and number of slots.
    """
    frames, segs, names = ground_truth(env_id, env_kwargs, n, seed, factors,
                                       learner.config.image_size)
    out = score_slots(learner, frames, segs, names, num_slots, background_names)
    out.update({"env_id": env_id, "seed": seed,
                "num_slots": learner.num_slots if num_slots is None else num_slots,
                "states": "dataset" if factors is not None else "sampled"})
    return out


def evaluate_slots_on_dataset(learner: SlotMaskLearner, data: Any, n: int = 256, seed: int = 0,
                              num_slots: int | None = None) -> dict[str, Any]:
    """:func:`evaluate_slots` on the states stored in a dataset (path or opened dataset), with the
    env id and env kwargs the dataset was collected with."""
    from sparseshift.representations.data import open_data

    ds = open_data(data)
    frames, segs, names = dataset_ground_truth(ds, n, seed, learner.config.image_size)
    out = score_slots(learner, frames, segs, names, num_slots)
    out.update({"env_id": str(ds.env_id), "seed": seed,
                "num_slots": learner.num_slots if num_slots is None else num_slots,
                "states": "dataset"})
    return out


@torch.no_grad()
def slot_panels(learner: SlotMaskLearner, frames: np.ndarray, num_slots: int | None = None
                ) -> tuple[np.ndarray, list[str], list[Any]]:
    """The cells of the slot figure: uint8 ``[B, 3 + 2K, H, W, 3]`` (per frame: the input, the
    reconstruction, the segmentation (argmax of the masks, coloured by slot), then for each slot
    ``k`` its alpha mask (white = 1) and its RGB times the mask on white), the column captions
    and each caption's colour (slot ``k``'s segmentation colour, None for black)."""
    was_training = learner.training
    learner.eval()
    try:
        out = learner.forward_slots(frames_to_tensor(np.asarray(frames)), num_slots)
    finally:
        learner.train(was_training)
    recon = out.recon.permute(0, 2, 3, 1).clamp(0, 1)
    masks = out.masks  # [B, K, 1, H, W]
    per_slot = (masks * out.rgb.clamp(0, 1) + (1 - masks)).permute(0, 1, 3, 4, 2)
    mask_rgb = masks.permute(0, 1, 3, 4, 2).expand(*per_slot.shape)
    seg = PALETTE[masks[:, :, 0].argmax(1).cpu().numpy() % len(PALETTE)]

    def u8(x: torch.Tensor) -> np.ndarray:
        return (x * 255).round().to(torch.uint8).cpu().numpy()

    k = int(masks.shape[1])
    slots = np.stack([u8(mask_rgb), u8(per_slot)], axis=2).reshape(len(seg), 2 * k,
                                                                  *seg.shape[1:])
    cells = np.concatenate([np.stack([np.asarray(frames), u8(recon), seg], axis=1), slots],
                           axis=1)
    labels = ["input", "reconstruction", "segmentation"]
    colours: list[Any] = [None, None, None]
    for i in range(k):
        colour = tuple(float(c) / 255 for c in PALETTE[i % len(PALETTE)])
        labels += [f"mask {i + 1}", f"slot {i + 1}"]
        colours += [colour, colour]
    return cells, labels, colours


def slot_figure(learner: SlotMaskLearner, frames: np.ndarray, num_slots: int | None = None
                ) -> np.ndarray:
    """uint8 image (no labels; the PNG is :func:`slot_figure_png`): one row per frame of the
    cells of :func:`slot_panels`."""
    from sparseshift.representations.viz import tile

    return tile(slot_panels(learner, frames, num_slots)[0])


def slot_figure_png(learner: SlotMaskLearner, frames: np.ndarray, num_slots: int | None = None,
                    scale: int = 2) -> bytes:
    """PNG of the labelled slot figure: a row per frame; columns captioned input,
    reconstruction, segmentation (each pixel coloured by the slot whose mask is largest), then
    ``mask k`` and ``slot k`` for every slot, captioned in slot ``k``'s segmentation colour."""
    from sparseshift.representations.viz import figure_png, grid_axes, new_figure

    cells, labels, colours = slot_panels(learner, frames, num_slots)
    rows, cols, h, _, _ = cells.shape
    cell = max(48, int(h * min(scale, 1.5)))
    fig = new_figure(max(cols * (cell + 3) + 90, 700), rows * (cell + 3) + 120)
    ax = fig.add_axes((70 / fig.bbox.width, 20 / fig.bbox.height,
                       1 - 85 / fig.bbox.width, 1 - 115 / fig.bbox.height))
    grid_axes(ax, cells, 2, [f"frame {i}" for i in range(rows)], labels, colours)
    for label in ax.get_xticklabels():
        label.set_rotation(35)
        label.set_horizontalalignment("left")
    name = str(getattr(learner, "name", "slot learner"))
    fig.suptitle(f"{name}: {cols // 2 - 1} slots (Locatello et al. 2020)\nsegmentation: the "
                 "slot with the largest mask, in its caption colour; mask k: slot k's alpha "
                 "(white = 1); slot k: its RGB x its mask", fontsize=9,
                 y=1 - 4 / fig.bbox.height, va="top")
    return figure_png(fig)


def save_slot_figure(learner: SlotMaskLearner, frames: np.ndarray, path: str | os.PathLike[str],
                     num_slots: int | None = None, scale: int = 2) -> None:
    """Write :func:`slot_figure_png` atomically."""
    from pathlib import Path

    from sparseshift.representations.checkpoint import atomic_write_bytes

    atomic_write_bytes(Path(path), slot_figure_png(learner, frames, num_slots, scale))
