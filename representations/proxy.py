"""The OOD proxy task of Träuble, Dittadi et al. (ICLR 2022): does a frozen representation still
tell the factors apart under shifts it was not probed on?

A small model (a linear ridge map and an MLP) is trained per *factor group* to predict the group's
factors from the frozen latents of frames with IN colours, and scored on fresh frames under each
shift. The shifts come from the shift registry (:mod:`sparseshift.envs.shifts.registry`), in the
list syntax of every command (``in,ood2,lighting:1-5,real:3``,
:mod:`sparseshift.envs.shifts.severity`); by default the colour splits (IN, OOD1, OOD2) and every
shipped composition the env supports (``real`` on TriFinger,
:func:`~sparseshift.envs.registry.default_shifts`). A shift the
env cannot render (``real`` on a grid) is left out, and a list with none left is a
:class:`ConfigError`. The paper finds that such a proxy's OOD score ranks encoders the way the OOD
returns of RL agents built on them do; the study report tests that claim on our agents
(:mod:`sparseshift.experiments.study`), per nuisance too (probe robustness against agent
robustness).

Frames come from the dataset's env (its recorded ``env_kwargs`` with ``colours`` = the shift's
colour split and ``shift`` = its nuisances at their effective severities,
:meth:`~sparseshift.envs.shifts.registry.ResolvedShift.env_shift`): factors sampled from the env's
distribution under that split (:meth:`FactorEnv.sample_factors`), set exactly and rendered. Under
a rendering shift each frame also draws its own nuisance episode (lighting direction, camera
pose, ...). The states are *paired*: every shift on the same colour split draws the same factor
states (one generator per colour split), and every rendering shift draws its nuisance episodes
from the same seeds, so ``lighting:1`` and ``lighting:5`` show the same scenes under the same
light direction at two strengths, and IN shows them unshifted; the IN, OOD1 and OOD2 frames are
those of earlier versions. :func:`render_proxy_set` makes the frames once (they do not depend on
the encoder) and :class:`ProxySet` saves them as a plain ``.npz`` (loaded with
``allow_pickle=False``) with each shift's definition record (verbatim user files and their
SHA-256 included).

Result keys use the shift's *label* as the results of ``evaluate`` do: ``in``, ``real``,
``lighting:3``, ``noise@2.5`` (``proxy_mlp_lighting:3_task``). Labels hold only lower-case
letters, digits, ``_``, ``-``, ``:``, ``@`` and ``.``, so they are valid JSON keys and table
cells as they are; ``train`` is reserved for the probes' training frames.

Scores: R^2 for continuous and colour factors (averaged over the group's factors), accuracy for
discrete ones (one classifier per factor, averaged over the group's factors). The proxy's
headline number per shift, ``proxy_<probe>_<label>``, is the mean over the non-colour groups,
with a negative R^2 (worse than predicting the mean: it is unbounded below, e.g. when a shift
throws the codes far out of the probe's range) counted as 0: the colour of an OOD cube is outside
the probe's training range by construction, and what an agent needs under a colour shift is
everything else (the cube's pose, the finger's joints). The per-group and per-factor scores keep
their raw values. The probes run with one BLAS thread: on these small problems more threads only
contend (measured: 3 s instead of 30-100 s for ColourGrid on 2 busy cores).

The *task score* ``proxy_<probe>_<label>_task`` is the same mean (negative R^2 counted as 0) over
the env's task factors only (:attr:`sparseshift.envs.core.base.FactorEnv.task_factors`: what the
reward depends on that the agent must read from the image, e.g. ObjectReach's cube x and y), each
scored by its group's probe. The all-factor score also averages factors an agent gets as
proprioception (the finger joints) and ones no encoder reads (cube yaw), so it barely ranks
encoders by what the task needs. Envs that declare no task factors get no task score.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sparseshift.envs.core.factors import FactorSpec
from sparseshift.envs.infra.errors import ConfigError
from sparseshift.envs.registry import default_shifts
from sparseshift.envs.shifts.registry import registry_for
from sparseshift.representations.splits import TRAIN, resolve_splits

if TYPE_CHECKING:
    from sparseshift.envs.shifts.registry import ResolvedShift, ShiftRegistry
    from sparseshift.representations.config import ProxyConfig

PROBES: tuple[str, ...] = ("linear", "mlp")


@dataclass(frozen=True)
class ProxySet:
    """Frames and factors for the proxy task: ``train`` (IN colours) and one test set per
    shift, keyed by the shift's label; ``shift_defs``: each shift's definition record
    (:meth:`~sparseshift.envs.shifts.registry.ResolvedShift.record`; empty for sets made before
    shifts were recorded)."""

    env_id: str
    factor_spec: FactorSpec
    frames: dict[str, np.ndarray]  # "train" and each shift label: uint8 [N, H, W, 3]
    factors: dict[str, np.ndarray]  # float32 [N, F]
    shift_defs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def splits(self) -> tuple[str, ...]:
        """The shift labels, in the order they were rendered."""
        return tuple(k for k in self.frames if k != TRAIN)

    def save(self, path: Path) -> Path:
        from sparseshift.envs.infra.io import atomic_write_bytes

        buf = io.BytesIO()
        arrays: dict[str, Any] = {"env_id": np.array(self.env_id),
                                  "factor_spec": np.array(_dumps(self.factor_spec.to_json())),
                                  "shift_defs": np.array(_dumps(dict(self.shift_defs)))}
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
                defs = json.loads(str(z["shift_defs"])) if "shift_defs" in z.files else {}
                if not isinstance(defs, dict):
                    raise ValueError("shift_defs is not an object")
                return cls(str(z["env_id"]), spec, {k: z[f"frames_{k}"] for k in keys},
                           {k: z[f"factors_{k}"] for k in keys}, defs)
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"{path} is not a proxy frame set ({exc})") from None

    def select(self, n_train: int, n_test: int, splits: Sequence[str]) -> ProxySet:
        """The first ``n_train`` training and ``n_test`` test frames of the shift labels
        ``splits`` (frames are independent draws, so a prefix is a smaller sample); a set with
        fewer is a :class:`ConfigError`."""
        missing = [s for s in splits if s not in self.frames]
        if missing:
            raise ConfigError(f"the proxy frame set has no {', '.join(missing)} frames (it has "
                              f"{', '.join(self.splits)}); render it again")
        for name in (TRAIN, *splits):
            want = n_train if name == TRAIN else n_test
            if len(self.frames[name]) < want:
                raise ConfigError(f"the proxy frame set has {len(self.frames[name])} {name} "
                                  f"frames, {want} asked; render it again")
        keep = {name: n_train if name == TRAIN else n_test for name in (TRAIN, *splits)}
        return ProxySet(self.env_id, self.factor_spec,
                        {k: self.frames[k][:n] for k, n in keep.items()},
                        {k: self.factors[k][:n] for k, n in keep.items()},
                        {k: v for k, v in self.shift_defs.items() if k in splits})


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)


def env_splits(env_id: str, splits: Sequence[str] | None = None,
               registry: ShiftRegistry | None = None) -> tuple[ResolvedShift, ...]:
    """The proxy shifts of ``env_id``: ``splits`` (None: :func:`default_shifts`) resolved, in
    the order given, less those the env cannot render (``real`` on a grid: left out, so one
    study config serves grid and TriFinger envs). None left is a :class:`ConfigError`."""
    from sparseshift.envs.registry import scene_offer

    if splits is None:
        return resolve_splits(default_shifts(env_id, registry), registry)
    wanted = resolve_splits(splits, registry)
    offer = scene_offer(env_id)
    out = tuple(r for r in wanted if r.needs <= offer.features)
    if not out:
        raise ConfigError(f"{env_id} has none of the proxy splits "
                          f"{[r.label for r in wanted]} (it renders: "
                          f"{', '.join(registry_for(None, registry).supported(offer))})")
    return out


def proxy_set(config: ProxyConfig, env_id: str, env_kwargs: Mapping[str, Any] | None,
              given: ProxySet | None = None, registry: ShiftRegistry | None = None
              ) -> ProxySet:
    """The frames ``config`` asks for (its counts, seed and shifts): ``given`` cut to them
    (:meth:`ProxySet.select`), else rendered from ``env_kwargs``."""
    if given is not None:
        chosen = env_splits(given.env_id, config.splits, registry)
        return given.select(config.n_train, config.n_test, [r.label for r in chosen])
    if env_kwargs is None:
        raise ConfigError("no env_kwargs to render the proxy frames with")
    return render_proxy_set(env_id, dict(env_kwargs), config.n_train, config.n_test,
                            config.seed, config.splits, registry)


def _stream(seed: int, colours: str) -> np.random.Generator:
    """The factor-state generator of one colour split (``[seed, 1 + index]``: every shift on
    that split sees the same states; the training frames use ``[seed, 0]``)."""
    from sparseshift.envs.shifts.registry import COLOUR_SPLITS

    return np.random.default_rng([seed, 1 + COLOUR_SPLITS.index(colours)])


def render_proxy_set(env_id: str, env_kwargs: dict[str, Any], n_train: int, n_test: int,
                     seed: int, splits: Sequence[str] | None = None,
                     registry: ShiftRegistry | None = None) -> ProxySet:
    """Render ``n_train`` IN frames and ``n_test`` frames per shift (see the module docstring;
    ``splits``: as :func:`env_splits`)."""
    from sparseshift.envs.registry import make

    chosen = env_splits(env_id, splits, registry)
    frames: dict[str, np.ndarray] = {}
    factors: dict[str, np.ndarray] = {}
    spec: FactorSpec | None = None
    base = {k: v for k, v in env_kwargs.items() if k not in ("shift", "shift_strength")}
    jobs: list[tuple[str, ResolvedShift | None]] = [(TRAIN, None), *((r.label, r)
                                                                    for r in chosen)]
    for name, shift in jobs:
        colours = "in" if shift is None else shift.colours
        env_shift = None if shift is None else shift.env_shift()
        kw = {**base, "colours": colours}
        if env_shift is not None:
            kw["shift"] = env_shift
        rng = np.random.default_rng([seed, 0]) if shift is None else _stream(seed, colours)
        # the nuisance episodes' seeds: one stream, the same for every rendering shift
        episodes = np.random.default_rng([seed, 0, 1])
        env = make(env_id, **kw)
        try:
            u: Any = env.unwrapped
            env.reset(seed=int(rng.integers(2**31)))
            spec = u.factor_spec
            n = n_train if shift is None else n_test
            first = u.render_frame()
            fr = np.empty((n, *first.shape), np.uint8)
            fa = np.empty((n, len(u.factor_spec)), np.float32)
            for j in range(n):
                if env_shift is not None:  # a new nuisance episode per frame
                    env.reset(seed=int(episodes.integers(2**31)))
                vec = u.sample_factors(rng)
                u.set_factors(vec)
                fr[j] = u.render_frame()
                fa[j] = u.get_factors()
            frames[name], factors[name] = fr, fa
        finally:
            env.close()
    assert spec is not None
    return ProxySet(env_id, spec, frames, factors, {r.label: r.record() for r in chosen})


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
        if kind == "discrete":  # one classifier per factor of the group (x and y of a cell)
            varied = [len(np.unique(c)) > 1 for c in y.T]  # None: constant, nothing to fit
            return {"linear": [LogisticRegression(max_iter=500).fit(x, c) if v else None
                               for c, v in zip(y.T, varied, strict=True)],
                    "mlp": [MLPClassifier(hidden_layer_sizes=(64, 64), max_iter=300,
                                          early_stopping=True, random_state=seed).fit(x, c)
                            if v else None for c, v in zip(y.T, varied, strict=True)]}
        mean, std = y.mean(0), y.std(0) + 1e-8
        yn = (y - mean) / std
        if yn.shape[1] == 1:
            yn = yn[:, 0]  # sklearn wants a 1-d target for one output
        return {"linear": Ridge(alpha=1e-3).fit(x, yn),
                "mlp": MLPRegressor(hidden_layer_sizes=(64, 64), max_iter=300,
                                    early_stopping=True, random_state=seed).fit(x, yn),
                "mean": mean, "std": std}


def _score(models: dict[str, Any], x: np.ndarray, y: np.ndarray, kind: str, probe: str
           ) -> list[float | None]:
    """Per factor of the group: accuracy (discrete; None where it was constant in training) or
    R^2 (None where the factor is constant in ``y``)."""
    if kind == "discrete":
        return [None if m is None else float(np.mean(m.predict(x) == c))
                for m, c in zip(models[probe], y.T, strict=True)]
    pred = models[probe].predict(x).reshape(len(x), -1) * models["std"] + models["mean"]
    sst = ((y - y.mean(0)) ** 2).sum(0)
    sse = ((y - pred) ** 2).sum(0)
    return [float(1.0 - e / t) if t > 1e-12 else None for e, t in zip(sse, sst, strict=True)]


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def _fit_all(spec: FactorSpec, x: dict[str, np.ndarray], data: ProxySet, seed: int,
             groups: dict[str, Any], factors: dict[str, Any]) -> None:
    """Fit and score every group's probes; fills ``groups`` and ``factors``."""
    for g in spec.groups:
        idx = spec.group_indices(g)
        y_tr = data.factors["train"][:, list(idx)].astype(np.float64)
        if np.all(y_tr.std(0) < 1e-9):
            continue  # constant in the training frames: nothing to predict
        kind = _group_kind(spec, idx)
        metric = "accuracy" if kind == "discrete" else "r2"
        models = _fit_group(x["train"], y_tr, kind, seed)
        per = {p: {s: _score(models, x[s], data.factors[s][:, list(idx)].astype(np.float64),
                             kind, p) for s in data.splits} for p in PROBES}
        groups[g] = {"kind": kind, "metric": metric,
                     **{p: {s: _mean(v) for s, v in per[p].items()} for p in PROBES}}
        for j, i in enumerate(idx):
            factors[spec.names[i]] = {"group": g, "kind": kind, "metric": metric,
                                      **{p: {s: v[j] for s, v in per[p].items()}
                                         for p in PROBES}}


def proxy_scores(encode: Any, data: ProxySet, seed: int = 0,
                 task: Sequence[str] | None = None) -> dict[str, Any]:
    """Fit the per-group probes on the IN training codes and score every shift.

    ``encode`` maps uint8 frames ``[N, H, W, 3]`` to codes ``[N, D]``. Returns per group and per
    factor its kind and, per probe and shift label, the score; ``summary`` holds
    ``proxy_<probe>_<label>`` (mean over non-colour groups) and, where the env declares task
    factors, ``proxy_<probe>_<label>_task`` (mean over them); ``shift_defs`` the shifts'
    definition records. ``task``: the task factors (None:
    :func:`sparseshift.envs.registry.task_factors` of the set's env and factor spec).
    """
    if task is None:
        from sparseshift.envs.registry import task_factors

        task = task_factors(data.env_id, data.factor_spec)
    unknown = [n for n in task if n not in data.factor_spec.names]
    if unknown:
        raise ConfigError(f"task factors {unknown} are not factors of {data.env_id}")
    from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

    codes = {k: np.asarray(encode(v), dtype=np.float64) for k, v in data.frames.items()}
    mu, sd = codes["train"].mean(0), codes["train"].std(0) + 1e-8
    x = {k: (c - mu) / sd for k, c in codes.items()}
    spec = data.factor_spec
    groups: dict[str, Any] = {}
    factors: dict[str, Any] = {}
    with threadpool_limits(1):  # small fits: more BLAS threads only contend (module doc)
        _fit_all(spec, x, data, seed, groups, factors)
    summary: dict[str, float] = {}
    for p in PROBES:
        for s in data.splits:
            vals = [max(0.0, v[p][s]) for v in groups.values()
                    if v["kind"] != "colour" and v[p][s] is not None]
            if vals:
                summary[f"proxy_{p}_{s}"] = float(np.mean(vals))
            tvals = [max(0.0, factors[n][p][s]) for n in task
                     if n in factors and factors[n][p][s] is not None]
            if tvals:
                summary[f"proxy_{p}_{s}_task"] = float(np.mean(tvals))
    return {"groups": groups, "factors": factors, "task_factors": list(task),
            "summary": summary, "splits": list(data.splits),
            "shift_defs": dict(data.shift_defs),
            "n_train": len(data.frames["train"]),
            "n_test": {s: len(data.frames[s]) for s in data.splits},
            "note": "probes trained on IN-colour frames per factor group; R^2 (continuous, "
                    "colour) or accuracy (discrete), per group and per factor; summary: mean "
                    "over non-colour groups of max(0, score), and (_task) over the env's task "
                    "factors (what the reward needs from the image) of max(0, score)"}
