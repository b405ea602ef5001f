"""Generate the rows of one collection part: video rollouts or intervention pairs.

Part ``i`` of a run draws all its randomness from ``np.random.SeedSequence([seed, i])``, so its
content depends on the run's manifest and ``i`` only, never on which worker computes it or when.

Intervention pairs follow Locatello et al. 2020 (*Weakly-Supervised Disentanglement Without
Compromises*, disentanglement_lib ``simple_dynamics``): with ``k == -1`` draw ``k_obs`` uniformly in
``[1, K]`` and change 1 or ``k_obs`` groups with equal probability; otherwise change ``k`` groups.
Unlike the reference we use a seeded Generator, resample each chosen group until it really differs,
and record exactly which scalar factors changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from sparseshift.envs.data.config import Resolved
from sparseshift.envs.data.layout import FINAL_FACTORS, FINAL_FRAMES, FINAL_PREFIX, OBS_PREFIX
from sparseshift.envs.infra.errors import ConfigError

#: Resamples of the chosen groups before the pair is redrawn from a new state (a group may be
#: unable to change in one state, e.g. the only object of the target shape keeps its shape).
MAX_RESAMPLES = 16
#: Fresh states tried for one pair before giving up.
MAX_RESTARTS = 100
#: Rows between progress reports.
REPORT_EVERY = 32

Progress = Callable[[int], None]


class Policy(Protocol):
    """What the collector needs from a behaviour policy (the policies themselves, which may be
    trained agents, are in :mod:`sparseshift.agents.collect.policies`)."""

    def reset(self) -> None: ...

    def act(self, obs: Any) -> Any: ...


def part_rngs(seed: int, index: int) -> tuple[np.random.Generator, np.random.Generator]:
    """The (env, policy) Generators of part ``index``."""
    env_ss, pol_ss = np.random.SeedSequence([seed, index]).spawn(2)
    return np.random.default_rng(env_ss), np.random.default_rng(pol_ss)


def _reset_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


def _frame_source(env: gym.Env[Any, Any], obs: Any) -> bool:
    """True if observations are exactly the frames (pixels mode): no second render needed."""
    u: Any = env.unwrapped
    s = int(u.image_size)
    return isinstance(obs, np.ndarray) and obs.dtype == np.uint8 and obs.shape == (s, s, 3)


def video_part(
    run: Resolved,
    env: gym.Env[Any, Any],
    make_policy: Callable[[np.random.Generator], Policy],
    index: int,
    progress: Progress,
    frames: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Roll out the behaviour policy for one part; every row is (frame s_t, a_t, r_t, flags),
    with the policy's observation of s_t (``obs/<key>``, the parts that are not the frame).

    Episodes start at the part's first row (a real boundary) and whenever the env ends one;
    ``truncated`` is also set on the part's last row because the collector cuts that episode.
    Every episode's final observation (after its last step: frame, factors and ``obs/<key>``)
    goes to the ``final/...`` arrays, one row per episode. ``frames`` is an optional buffer to
    fill (reusing one avoids page faults on every part).
    """
    start, stop = run.part_range(index)
    rows = stop - start
    u: Any = env.unwrapped
    s, nf = int(u.image_size), len(u.factor_spec)
    env_rng, pol_rng = part_rngs(run.config.seed, index)
    policy = make_policy(pol_rng)
    frames = np.empty((rows, s, s, 3), np.uint8) if frames is None else frames[:rows]
    # rows are written in place: no per-frame lists or copies (the loop's cost is counted against
    # the bare env loop in ``sparseshift bench collect``)
    factors = np.empty((rows, nf), np.float32)
    actions = np.empty((rows, *run.action_shape), np.dtype(run.action_dtype))
    rewards = np.empty(rows, np.float32)
    ends = np.zeros((rows, 2), bool)  # terminated, truncated
    starts = np.zeros(rows, bool)
    layout = run.observation.get("arrays", {})
    whole = run.observation.get("space") != "dict"  # the observation is one array
    obs_rows = {k: np.empty((rows, *v["shape"]), np.dtype(v["dtype"])) for k, v in layout.items()}
    finals: dict[str, list[np.ndarray]] = {k: [] for k in ("frames", "factors", *layout)}
    obs: Any = None
    info: dict[str, Any] = {}
    from_obs = False
    done = True
    step, act = env.step, policy.act
    for t in range(rows):
        if done:
            obs, info = env.reset(seed=_reset_seed(env_rng))
            policy.reset()
            from_obs = _frame_source(env, obs)
            starts[t] = True
        frames[t] = obs if from_obs else u.render_frame()
        factors[t] = info["factors"]
        for k, arr in obs_rows.items():
            arr[t] = obs if whole else obs[k]
        action = act(obs)
        actions[t] = action
        obs, rewards[t], term, trunc, info = step(action)
        done = bool(term or trunc)
        if done:
            ends[t] = term, trunc
        if done or t == rows - 1:  # the observation after the episode's last step
            finals["frames"].append(obs if from_obs else u.render_frame())
            finals["factors"].append(np.asarray(info["factors"], np.float32))
            for k in obs_rows:
                finals[k].append(np.asarray(obs if whole else obs[k]))
        if not (t + 1) % REPORT_EVERY:
            progress(REPORT_EVERY)
    progress(rows % REPORT_EVERY)
    ends[rows - 1, 1] |= not ends[rows - 1, 0]
    out = {
        "frames": frames,
        "factors": factors,
        "actions": actions,
        "rewards": rewards,
        "episode_starts": starts,
        "terminated": np.ascontiguousarray(ends[:, 0]),
        "truncated": np.ascontiguousarray(ends[:, 1]),
    }
    out.update({OBS_PREFIX + k: v for k, v in obs_rows.items()})
    out[FINAL_FRAMES] = np.stack(finals["frames"]).astype(np.uint8, copy=False)
    out[FINAL_FACTORS] = np.stack(finals["factors"])
    for k, v in layout.items():
        out[FINAL_PREFIX + OBS_PREFIX + k] = np.stack(finals[k]).astype(v["dtype"], copy=False)
    return out


def choose_count(rng: np.random.Generator, k: int, n_groups: int) -> int:
    """How many groups one pair changes: ``k``, or for ``k == -1`` 1 or k_obs ~ U[1, K], 50/50."""
    if k > 0:
        return k
    k_obs = int(rng.integers(1, n_groups + 1))
    return 1 if rng.random() < 0.5 else k_obs


def intervene(
    u: Any, rng: np.random.Generator, base: np.ndarray, groups: list[str]
) -> np.ndarray | None:
    """Resample ``groups`` of ``base`` until every one differs from ``base`` (None: gave up)."""
    spec = u.factor_spec
    new = base
    pending = groups
    for _ in range(MAX_RESAMPLES):
        new = np.asarray(u.sample_factors(rng, base=new, groups=pending), dtype=np.float32)
        pending = [g for g in pending if not np.any(new[list(spec.group_indices(g))]
                                                    != base[list(spec.group_indices(g))])]
        if not pending:
            return new
    return None


def draw_pair(
    u: Any, rng: np.random.Generator, k: int, groups: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One intervention pair: (factors a, factors b, indices of the changed groups).

    If the chosen groups cannot all change in the drawn state, the whole pair is drawn again, so
    pairs follow the Locatello et al. 2020 protocol conditioned on the change being possible.
    """
    for _ in range(MAX_RESTARTS):
        a = np.asarray(u.sample_factors(rng), dtype=np.float32)
        count = choose_count(rng, k, len(groups))
        chosen = np.sort(rng.choice(len(groups), size=count, replace=False))
        b = intervene(u, rng, a, [groups[j] for j in chosen])
        if b is not None:
            return a, b, chosen
    raise ConfigError(f"could not draw a pair changing {k} of the groups {groups} in "
                      f"{MAX_RESTARTS} states")


def pairs_part(
    run: Resolved,
    env: gym.Env[Any, Any],
    index: int,
    progress: Progress,
    buffers: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Intervention pairs (Locatello et al. 2020): sample a state, change k groups, render both.

    ``buffers`` optionally holds ``frames_a`` / ``frames_b`` arrays of at least the part's rows
    to render into (the collector's writer process reads them from there).
    """
    start, stop = run.part_range(index)
    rows = stop - start
    u: Any = env.unwrapped
    s, nf = int(u.image_size), len(u.factor_spec)
    groups = list(run.groups)
    assert run.config.k is not None
    rng, _ = part_rngs(run.config.seed, index)
    env.reset(seed=_reset_seed(rng))
    bufs = buffers or {}
    out: dict[str, np.ndarray] = {
        "frames_a": bufs["frames_a"][:rows] if bufs else np.empty((rows, s, s, 3), np.uint8),
        "frames_b": bufs["frames_b"][:rows] if bufs else np.empty((rows, s, s, 3), np.uint8),
        "factors_a": np.empty((rows, nf), np.float32),
        "factors_b": np.empty((rows, nf), np.float32),
        "changed": np.empty((rows, nf), bool),
        "intervened": np.zeros((rows, len(groups)), bool),
    }
    for i in range(rows):
        a, b, chosen = draw_pair(u, rng, run.config.k, groups)
        for side, vec in (("a", a), ("b", b)):
            u.set_factors(vec)
            out[f"factors_{side}"][i] = u.get_factors()
            out[f"frames_{side}"][i] = u.render_frame()
        out["intervened"][i, chosen] = True
        if (i + 1) % REPORT_EVERY == 0:
            progress(REPORT_EVERY)
    out["changed"][:] = out["factors_a"] != out["factors_b"]
    progress(rows % REPORT_EVERY)
    return out
