"""Plain-text summary of a dataset (``sparseshift inspect``): counts, sizes, factor ranges, colours.

Colours are classified into the splits of the colour scheme stored in the file, so the summary needs
neither the env nor its code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sparseshift.envs.data.dataset import Dataset
from sparseshift.envs.data.sampler import frames_left
from sparseshift.envs.infra.errors import ConfigError, safe_repr
from sparseshift.envs.shifts.colours import SPLITS, ColourSet

TOL = 1e-3


def colour_set(name: str, raw: Mapping[str, Any]) -> ColourSet:
    """A :class:`ColourSet` from its ``to_json()`` form."""
    if all(isinstance(raw[s], list) for s in SPLITS):
        pal = {s: np.asarray(raw[s], float).reshape(-1, 3) for s in SPLITS}
        return ColourSet(name, palettes=pal)
    return ColourSet(name, boxes={s: (np.asarray(raw[s]["low"], float),
                                      np.asarray(raw[s]["high"], float)) for s in SPLITS})


def split_counts(cs: ColourSet, rgb: np.ndarray) -> dict[str, int]:
    """How many of the colours ``rgb`` [M, 3] fall in each split (and in none)."""
    left = np.ones(len(rgb), bool)
    out: dict[str, int] = {}
    for s in SPLITS:
        if cs.palettes is not None:
            pal = cs.palettes[s]
            hit = (np.abs(rgb[:, None, :] - pal[None]) <= TOL).all(axis=2).any(axis=1)
        else:
            assert cs.boxes is not None
            low, high = cs.boxes[s]
            hit = ((rgb >= low - TOL) & (rgb <= high + TOL)).all(axis=1)
        out[s] = int((hit & left).sum())
        left &= ~hit
    out["none"] = int(left.sum())
    return out


def _all_factors(ds: Dataset) -> np.ndarray:
    if ds.kind == "video":
        return ds.take("factors", np.arange(len(ds)))
    idx = np.arange(len(ds))
    return np.concatenate([ds.take("factors_a", idx), ds.take("factors_b", idx)])


def summary(ds: Dataset, file_bytes: int) -> str:
    """The report printed by ``sparseshift inspect``."""
    a = ds.attrs
    collector = a.get("collector") or {}
    lines = [
        f"{ds.path}: {ds.kind} dataset, format v{ds.version}, fingerprint "
        f"{ds.fingerprint[:16]}",
        f"env {ds.env_id} {a['env_kwargs']}, colour split "
        f"{a.get('colours', '?')}, render preset {a.get('render_preset', '?')}, "
        f"{ds.image_size}x{ds.image_size} px",
        f"collected {a.get('created', '?')} with seed {a.get('seed', '?')}, policy/k: "
        f"{collector.get('policy') or {'k': collector.get('k')}}",
        f"size: {file_bytes / 1e6:.1f} MB on disk, {ds.nbytes / 1e6:.1f} MB decoded, "
        f"compression ratio {ds.nbytes / max(file_bytes, 1):.1f}x",
    ]
    if ds.kind == "video":
        starts = ds.take("episode_starts", np.arange(len(ds)))
        ep = int(starts.sum())
        longest = int(frames_left(starts).max()) + 1
        lines.append(f"{len(ds)} frames in {ep} episodes (mean {len(ds) / max(ep, 1):.1f}, "
                     f"longest {longest} frames)")
        if ds.version >= 3:
            parts = [f"obs/{k} {ds.dtypes['obs/' + k]} {list(ds.shapes['obs/' + k][1:])}"
                     for k in ds.obs_keys]
            frame = ds.observation.get("pixels")
            if frame is not None:
                parts.insert(0, "the frame" + (f" (as {frame!r})" if frame else ""))
            lines.append(f"policy observations ({a['env_kwargs'].get('obs_mode', '?')}): "
                         f"{', '.join(parts)}; final observations of all "
                         f"{ds.shapes['final/frames'][0]} episodes")
    else:
        changed = ds.take("changed", np.arange(len(ds)))
        groups = ds.take("intervened", np.arange(len(ds))).sum(axis=1)
        hist = np.bincount(groups)
        lines.append(f"{len(ds)} intervention pairs; changed factors per pair: mean "
                     f"{changed.sum(axis=1).mean():.2f}; changed groups per pair: "
                     + ", ".join(f"{k}: {c}" for k, c in enumerate(hist) if c))
    f = _all_factors(ds)
    spec = ds.factor_spec
    lines.append("factors (observed range / declared range):")
    for j, fac in enumerate(spec.factors):
        lines.append(f"  {fac.name:<24} {fac.kind:<10} [{f[:, j].min():9.4g}, {f[:, j].max():9.4g}]"
                     f"  / [{fac.low:g}, {fac.high:g}]")
    try:
        lines += _colours(ds, f)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ConfigError(f"{ds.path}: attribute 'colour_scheme' (or the collector's "
                          f"colour_objects) is malformed ({type(exc).__name__}: "
                          f"{safe_repr(str(exc))}); the file is damaged") from None
    return "\n".join(lines)


def _colours(ds: Dataset, f: np.ndarray) -> list[str]:
    """The colour lines of the summary: per coloured object, distinct colours and frames per
    split of the stored scheme."""
    a, spec = ds.attrs, ds.factor_spec
    if "colour_scheme" not in a:
        return ["colours: no colour scheme stored"]
    scheme = a["colour_scheme"]
    objects = (a.get("collector") or {}).get("env_info", {}).get("colour_objects", {})
    lines = [f"colours (scheme {safe_repr(scheme['name'])}, seed {safe_repr(scheme['seed'])}): "
             "distinct values, frames per split"]
    for group, obj in objects.items():
        rgb = f[:, list(spec.group_indices(group))].astype(np.float64)
        if rgb.ndim != 2 or rgb.shape[1] != 3:
            raise ValueError(f"group {group!r} is not an RGB colour")
        counts = split_counts(colour_set(obj, scheme["objects"][obj]), rgb)
        distinct = len(np.unique(rgb, axis=0))
        lines.append(f"  {group:<24} {distinct:6d} distinct  "
                     + "  ".join(f"{s}: {c}" for s, c in counts.items() if c))
    return lines
