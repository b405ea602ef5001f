"""The OOD proxy task of Träuble, Dittadi et al. (ICLR 2022): does a frozen representation still
tell the factors apart under colours it was not probed on?

A small model (a linear ridge map and an MLP) is trained per *factor group* to predict the group's
factors from the frozen latents of frames with IN colours, and scored on fresh frames with IN,
OOD1 and OOD2 colours and, for TriFinger, the ``real`` rendering shift (IN colours). The paper
finds that such a proxy's OOD score ranks encoders the way the OOD returns of RL agents built on
them do; the study report tests that claim on our agents (:mod:`sparseshift.experiments.study`).

Frames come from the dataset's env (its recorded ``env_kwargs`` with ``colours`` set per split):
factors sampled from the env's distribution under that split (:meth:`FactorEnv.sample_factors`),
set exactly and rendered; for ``real`` each frame also draws its own lighting/camera/noise
episode. :func:`render_proxy_set` makes the frames once (they do not depend on the encoder) and
:class:`ProxySet` saves them as a plain ``.npz`` (loaded with ``allow_pickle=False``).

Scores: R^2 for continuous and colour factors (averaged over the group's factors), accuracy for
discrete ones. The proxy's headline number per split, ``proxy_<probe>_<split>``, is the mean over
the non-colour groups, with a negative R^2 (worse than predicting the mean: it is unbounded
below, e.g. when a shift throws the codes far out of the probe's range) counted as 0: the colour
of an OOD cube is outside the probe's training range by construction, and what an agent needs
under a colour shift is everything else (the cube's pose, the finger's joints). The per-group
scores keep their raw values.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparseshift.envs.errors import ConfigError
from sparseshift.envs.factors import FactorSpec

SPLITS: tuple[str, ...] = ("in", "ood1", "ood2", "real")
PROBES: tuple[str, ...] = ("linear", "mlp")


@dataclass(frozen=True)
class ProxySet:
    """Frames and factors for the proxy task: ``train`` (IN colours) and one test set per
    split."""

    env_id: str
    factor_spec: FactorSpec
    frames: dict[str, np.ndarray]  # "train" and each split: uint8 [N, H, W, 3]
    factors: dict[str, np.ndarray]  # float32 [N, F]

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(k for k in self.frames if k != "train")

    def save(self, path: Path) -> Path:
        from sparseshift.envs.io import atomic_write_bytes

        buf = io.BytesIO()
        arrays: dict[str, Any] = {"env_id": np.array(self.env_id),
                                  "factor_spec": np.array(_dumps(self.factor_spec.to_json()))}
        for k in self.frames:
            arrays[f"frames_{k}"] = self.frames[k]
            arrays[f"factors_{k}"] = self.factors[k]
        np.savez_compressed(buf, **arrays)
        return atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> ProxySet:
        import json

        try:
            with np.load(path, allow_pickle=False) as z:
                keys = [k[len("frames_"):] for k in z.files if k.startswith("frames_")]
                spec = FactorSpec.from_json(json.loads(str(z["factor_spec"])))
                return cls(str(z["env_id"]), spec, {k: z[f"frames_{k}"] for k in keys},
                           {k: z[f"factors_{k}"] for k in keys})
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"{path} is not a proxy frame set ({exc})") from None


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)


def proxy_splits(env_id: str) -> tuple[str, ...]:
    """The splits an env supports: ``real`` only for TriFinger."""
    from sparseshift.envs.registry import entry

    return SPLITS if entry(env_id).family == "trifinger" else SPLITS[:3]


def render_proxy_set(env_id: str, env_kwargs: dict[str, Any], n_train: int, n_test: int,
                     seed: int, splits: tuple[str, ...] | None = None) -> ProxySet:
    """Render ``n_train`` IN frames and ``n_test`` frames per split (see the module docstring)."""
    from sparseshift.envs.registry import make

    chosen = splits or proxy_splits(env_id)
    frames: dict[str, np.ndarray] = {}
    factors: dict[str, np.ndarray] = {}
    spec: FactorSpec | None = None
    for i, name in enumerate(("train", *chosen)):
        split = "in" if name in ("train", "real") else name
        kw = {**env_kwargs, "colours": split}
        kw.pop("shift", None)
        if name == "real":
            kw["shift"] = "real"
        env = make(env_id, **kw)
        try:
            u: Any = env.unwrapped
            rng = np.random.default_rng([seed, i])
            env.reset(seed=int(rng.integers(2**31)))
            spec = u.factor_spec
            n = n_train if name == "train" else n_test
            first = u.render_frame()
            fr = np.empty((n, *first.shape), np.uint8)
            fa = np.empty((n, len(u.factor_spec)), np.float32)
            for j in range(n):
                if name == "real":  # a new lighting/camera/noise draw per frame
                    env.reset(seed=int(rng.integers(2**31)))
                vec = u.sample_factors(rng)
                u.set_factors(vec)
                fr[j] = u.render_frame()
                fa[j] = u.get_factors()
            frames[name], factors[name] = fr, fa
        finally:
            env.close()
    assert spec is not None
    return ProxySet(env_id, spec, frames, factors)


def _group_kind(spec: FactorSpec, idx: tuple[int, ...]) -> str:
    kinds = {spec.kinds[i] for i in idx}
    return "discrete" if kinds == {"discrete"} else ("colour" if "colour" in kinds
                                                      else "continuous")


def _fit_group(x: np.ndarray, y: np.ndarray, kind: str, seed: int) -> dict[str, Any]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if kind == "discrete":
            labels = y[:, 0]
            return {"linear": LogisticRegression(max_iter=500).fit(x, labels),
                    "mlp": MLPClassifier(hidden_layer_sizes=(64, 64), max_iter=300,
                                         early_stopping=True, random_state=seed).fit(x, labels)}
        mean, std = y.mean(0), y.std(0) + 1e-8
        yn = (y - mean) / std
        if yn.shape[1] == 1:
            yn = yn[:, 0]  # sklearn wants a 1-d target for one output
        return {"linear": Ridge(alpha=1e-3).fit(x, yn),
                "mlp": MLPRegressor(hidden_layer_sizes=(64, 64), max_iter=300,
                                    early_stopping=True, random_state=seed).fit(x, yn),
                "mean": mean, "std": std}


def _score(models: dict[str, Any], x: np.ndarray, y: np.ndarray, kind: str, probe: str
           ) -> float | None:
    if kind == "discrete":
        return float(np.mean(models[probe].predict(x) == y[:, 0]))
    pred = models[probe].predict(x).reshape(len(x), -1) * models["std"] + models["mean"]
    sst = ((y - y.mean(0)) ** 2).sum(0)
    keep = sst > 1e-12
    if not keep.any():
        return None
    r2 = 1.0 - ((y - pred) ** 2).sum(0)[keep] / sst[keep]
    return float(np.mean(r2))


def proxy_scores(encode: Any, data: ProxySet, seed: int = 0) -> dict[str, Any]:
    """Fit the per-group probes on the IN training codes and score every split.

    ``encode`` maps uint8 frames ``[N, H, W, 3]`` to codes ``[N, D]``. Returns per group its kind
    and, per probe and split, the score; ``summary`` holds ``proxy_<probe>_<split>`` (mean over
    non-colour groups).
    """
    codes = {k: np.asarray(encode(v), dtype=np.float64) for k, v in data.frames.items()}
    mu, sd = codes["train"].mean(0), codes["train"].std(0) + 1e-8
    x = {k: (c - mu) / sd for k, c in codes.items()}
    spec = data.factor_spec
    groups: dict[str, Any] = {}
    for g in spec.groups:
        idx = spec.group_indices(g)
        y_tr = data.factors["train"][:, list(idx)].astype(np.float64)
        if np.all(y_tr.std(0) < 1e-9):
            continue  # constant in the training frames: nothing to predict
        kind = _group_kind(spec, idx)
        models = _fit_group(x["train"], y_tr, kind, seed)
        groups[g] = {"kind": kind, "metric": "accuracy" if kind == "discrete" else "r2",
                     **{p: {s: _score(models, x[s], data.factors[s][:, list(idx)]
                                      .astype(np.float64), kind, p) for s in data.splits}
                        for p in PROBES}}
    summary: dict[str, float] = {}
    for p in PROBES:
        for s in data.splits:
            vals = [max(0.0, v[p][s]) for v in groups.values()
                    if v["kind"] != "colour" and v[p][s] is not None]
            if vals:
                summary[f"proxy_{p}_{s}"] = float(np.mean(vals))
    return {"groups": groups, "summary": summary, "splits": list(data.splits),
            "n_train": len(data.frames["train"]),
            "n_test": {s: len(data.frames[s]) for s in data.splits},
            "note": "probes trained on IN-colour frames per factor group; R^2 (continuous, "
                    "colour) or accuracy (discrete); summary: mean over non-colour groups of "
                    "max(0, score)"}
