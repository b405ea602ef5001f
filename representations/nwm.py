"""Neural Wave Machine (Keller & Welling, ICML 2023, *Neural Wave Machines: Learning Spatially
Structured Representations with Coupled Oscillator Networks*) on the coupled oscillatory RNN of
Rusch & Mishra (ICLR 2021, *Coupled Oscillatory Recurrent Neural Network (coRNN)*).

The hidden state is a 2-D sheet of ``C x S x S`` oscillators with positions ``y`` and velocities
``z``. Each frame is encoded by the shared conv encoder
(:class:`sparseshift.representations.nets.ConvEncoder`, whose last linear layer plays the role of
coRNN's
``V u``) into a forcing map ``u`` on the sheet, and the sheet is integrated with coRNN's IMEX
(symplectic Euler) scheme for ``substeps`` steps per frame::

    z <- z + dt * (tanh(W * y + Wd * z + u + b) - gamma * y - eps * z)
    y <- y + dt * z

where ``W`` and ``Wd`` are 3x3 convolutions with circular padding (local coupling on a torus, which
is what lets travelling waves form) and ``b`` is ``W``'s bias. ``dt``, ``gamma`` and ``eps`` are
learnable per sheet channel and constrained:

* ``dt = sigmoid(a)`` in (0, 1);
* ``gamma = softplus(g)`` > 0 (stiffness; natural frequency ``sqrt(gamma)``);
* ``eps = 2 * sqrt(gamma) * 0.99 * sigmoid(e)``, i.e. a damping ratio in (0, 0.99): positive and
  always under-damped (``eps**2 < 4 gamma``), so the linear part of every oscillator rings.

Frames are decoded from ``y`` by the shared conv decoder
(:class:`sparseshift.representations.nets.ConvDecoder`).

Training (batch kind ``"sequences"``, ``{"x": uint8 [B, T, H, W, 3]}``; ``T`` is the training
loop's ``seq_len``): the first ``T_in = T - forecast_steps`` frames drive the sheet and are
reconstructed from its state after each frame (``recon``); the sheet then runs for
``forecast_steps`` frames without input (``forecast_mode="free"``: zero forcing) or fed with its
own decoded predictions (``"feedback"``), and each of those states must decode to the true future
frame (``forecast``).
``loss = recon + forecast_weight * forecast`` (per-frame reconstruction loss summed over pixels,
averaged over frames and examples); ``forecast_per_step`` is logged per element. The model is a
deterministic sequence autoencoder (the reference's sequence VAE without the KL term).

``cell="gru"`` swaps the sheet for a GRU with the same number of hidden units as oscillators (same
encoder, decoder, loss and training), the latent-dynamics baseline of the forecasting comparison.

As a frozen encoder the learner is stateful: :meth:`NWM.initial_state` is the sheet at rest
(``y = z = 0``), :meth:`NWM.encode_step` advances it by one frame and returns the flattened state
(``y`` and ``z`` for ``latent="yz"``, ``y`` alone for ``"y"``; the GRU's ``h``).
:meth:`NWM.encode` is the single-frame view: one step from the rest state, no history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args

import torch
import torch.nn.functional as F
from torch import nn

from sparseshift.envs.infra.config import opt
from sparseshift.envs.infra.errors import ConfigError
from sparseshift.representations.base import (
    Batch,
    Capability,
    Learner,
    LearnerConfig,
    to_float_chw,
)
from sparseshift.representations.model_config import (
    MAX_CHANNELS,
    MAX_LAYERS,
    MAX_WIDTH,
    ParamParts,
    ReconLoss,
    conv_params,
    gru_cell_params,
)
from sparseshift.representations.nets import (
    ConvDecoder,
    ConvEncoder,
    decoder_params,
    encoder_params,
    reconstruction_loss,
    resolve_arch,
)

#: Largest sheet side, sheet channels, sub-steps per frame and forecast horizon a config may
#: ask for (the sheet has ``sheet_channels * sheet**2`` oscillators; sub-steps and forecast
#: steps multiply the time of every step).
MAX_SHEET = 256
MAX_SHEET_CHANNELS = 64
MAX_SUBSTEPS = 64
MAX_FORECAST_STEPS = 1000

Cell = Literal["wave", "gru"]
ForecastMode = Literal["free", "feedback"]
Latent = Literal["yz", "y"]
FORECAST_MODES: tuple[str, ...] = get_args(ForecastMode)
#: Upper bound of the damping ratio ``eps / (2 sqrt(gamma))``: strictly under-damped.
MAX_DAMPING_RATIO = 0.99

#: Encoder state: ``(y, z)`` for the wave sheet, ``(h,)`` for the GRU; each ``[B, C, S, S]``.
State = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class NWMConfig(LearnerConfig):
    """Hyperparameters of the Neural Wave Machine (and of its GRU baseline, ``cell="gru"``).

    ``sheet`` x ``sheet`` oscillators in ``sheet_channels`` channels; ``dt_init``, ``gamma_init``
    and ``damping_init`` (the damping ratio ``eps / (2 sqrt(gamma))``) initialise the learnable
    constants. With the defaults one frame advances the sheet by ``substeps * dt = 0.4`` time
    units and an uncoupled oscillator's period is ``2 pi / sqrt(2.7) / 0.4`` ~ 9.6 frames (the
    sMNIST constants of the paper, dt 0.042 with one step per pixel, are far too slow for
    8-16 frame clips). Empty ``channels``/``kernels`` mean the disentanglement_lib defaults.
    """

    sheet: int = opt(16, "side of the sheet (at least 3: 3x3 circular coupling)", min=3,
                     max=MAX_SHEET)
    sheet_channels: int = opt(1, "channels of the sheet", min=1, max=MAX_SHEET_CHANNELS)
    substeps: int = opt(2, "integration steps per frame", min=1, max=MAX_SUBSTEPS)
    dt_init: float = opt(0.2, "initial time step", gt=0.0, lt=1.0)
    gamma_init: float = opt(2.7, "initial stiffness", gt=0.0)
    damping_init: float = opt(0.2, "initial damping ratio", gt=0.0, lt=MAX_DAMPING_RATIO)
    forecast_steps: int = opt(4, "frames forecast without input", min=0,
                              max=MAX_FORECAST_STEPS)
    forecast_weight: float = opt(1.0, "weight of the forecast loss", min=0.0)
    forecast_mode: ForecastMode = opt("free", "forecast input: none (free) or the model's "
                                      "own predictions (feedback)")
    cell: Cell = opt("wave", "the oscillator sheet or the GRU baseline")
    latent: Latent = opt("yz", "encoder output: positions and velocities, or positions")
    channels: tuple[int, ...] = opt((), "conv channels per stage (empty: the defaults)", min=1,
                                    max=MAX_CHANNELS, max_len=MAX_LAYERS)
    kernels: tuple[int, ...] = opt((), "conv kernel per stage, 2 or 4 (empty: the defaults)",
                                   min=2, max=4, max_len=MAX_LAYERS)
    hidden: int = opt(256, "units of the fully connected layers", min=1, max=MAX_WIDTH)
    recon: ReconLoss = opt("bernoulli", "reconstruction loss")

    def validate(self) -> None:
        super().validate()
        resolve_arch(self)
        self.check_params()

    def param_parts(self) -> ParamParts:
        """The parameters of :class:`NWM` built from this config, by part: encoder to and
        decoder from the ``units`` oscillators, and the sheet (or the GRU)."""
        n, c = self.units, self.sheet_channels
        enc_conv, enc_fc = encoder_params(self.channels, self.kernels, self.hidden, n)
        dec_fc, dec_conv = decoder_params(self.channels, self.hidden, n)
        sheet = (gru_cell_params(n, n) if self.cell == "gru"
                 else conv_params(c, c, 3) + conv_params(c, c, 3, bias=False) + 3 * c)
        sized = ("sheet", "sheet_channels", "hidden")
        return {"encoder convs": (enc_conv, ("channels", "kernels")),
                "encoder fully connected layers": (enc_fc, sized),
                "decoder fully connected layers": (dec_fc, sized),
                "decoder transposed convs": (dec_conv, ("channels",)),
                "sheet" if self.cell == "wave" else "GRU": (sheet, ("sheet", "sheet_channels"))}

    @property
    def units(self) -> int:
        """Number of oscillators (GRU hidden units): ``sheet_channels * sheet**2``."""
        return self.sheet_channels * self.sheet * self.sheet


def _inverse_softplus(x: float) -> float:
    return x + math.log(-math.expm1(-x))


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


class WaveSheet(nn.Module):
    """The coRNN oscillator sheet with 3x3 circular coupling (Keller & Welling 2023, eq. 1-2)."""

    def __init__(self, channels: int, size: int, substeps: int, dt: float, gamma: float,
                 damping: float) -> None:
        super().__init__()
        self.channels, self.size, self.substeps = channels, size, substeps
        self.coupling = nn.Conv2d(channels, channels, 3, padding=1, padding_mode="circular")
        self.coupling_vel = nn.Conv2d(channels, channels, 3, padding=1, padding_mode="circular",
                                      bias=False)
        shape = (channels, 1, 1)
        self.dt_raw = nn.Parameter(torch.full(shape, _logit(dt)))
        self.gamma_raw = nn.Parameter(torch.full(shape, _inverse_softplus(gamma)))
        self.damping_raw = nn.Parameter(torch.full(shape, _logit(damping / MAX_DAMPING_RATIO)))

    @property
    def dt(self) -> torch.Tensor:
        """Step size per channel, ``[C, 1, 1]`` in (0, 1)."""
        return torch.sigmoid(self.dt_raw)

    @property
    def gamma(self) -> torch.Tensor:
        """Stiffness per channel, ``[C, 1, 1]``, positive."""
        return F.softplus(self.gamma_raw)

    @property
    def eps(self) -> torch.Tensor:
        """Damping per channel, ``[C, 1, 1]``, in (0, 2 sqrt(gamma)): positive, under-damped."""
        return 2.0 * torch.sqrt(self.gamma) * MAX_DAMPING_RATIO * torch.sigmoid(self.damping_raw)

    def initial(self, batch: int, device: torch.device) -> State:
        shape = (batch, self.channels, self.size, self.size)
        return (torch.zeros(shape, device=device), torch.zeros(shape, device=device))

    def step(self, u: torch.Tensor | None, state: State, trace: list[torch.Tensor] | None = None
             ) -> State:
        """Advance one frame (``substeps`` IMEX steps) under forcing ``u`` ``[B, N]`` (None: 0)."""
        y, z = state
        forcing = None if u is None else u.view(y.shape)
        dt, gamma, eps = self.dt, self.gamma, self.eps
        for _ in range(self.substeps):
            drive = self.coupling(y) + self.coupling_vel(z)
            if forcing is not None:
                drive = drive + forcing
            z = z + dt * (torch.tanh(drive) - gamma * y - eps * z)
            y = y + dt * z
            if trace is not None:
                trace.append(y)
        return (y, z)


class GRUSheet(nn.Module):
    """The baseline: a GRU whose ``C * S * S`` hidden units are laid out like the sheet."""

    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        self.channels, self.size = channels, size
        n = channels * size * size
        self.gru = nn.GRUCell(n, n)

    def initial(self, batch: int, device: torch.device) -> State:
        return (torch.zeros(batch, self.channels, self.size, self.size, device=device),)

    def step(self, u: torch.Tensor | None, state: State, trace: list[torch.Tensor] | None = None
             ) -> State:
        (h,) = state
        flat = h.flatten(1)
        inp = torch.zeros_like(flat) if u is None else u
        h = self.gru(inp, flat).view(h.shape)
        if trace is not None:
            trace.append(h)
        return (h,)


class Rollout(NamedTuple):
    """What :meth:`NWM.rollout` returns."""

    #: Decoder logits per frame ``[B, T, 3, H, W]`` (first the driven, then the free frames).
    logits: torch.Tensor
    #: Sheet positions (GRU: hidden state) after every sub-step ``[B, T * substeps, C, S, S]``.
    trace: torch.Tensor | None
    #: The state after the last frame.
    state: State


class NWM(Learner):
    """Neural Wave Machine (Keller & Welling 2023): a coRNN (Rusch & Mishra 2021) oscillator sheet
    with circular 3x3 coupling, driven by encoded frames, trained to reconstruct and forecast.

    Capabilities: a stateful vector code (the flattened sheet), the wave analysis
    (:mod:`sparseshift.representations.waves`) and reconstructions; no latent decoding (see
    :meth:`decode`).
    """

    name = "nwm"
    capabilities = frozenset({Capability.VECTOR_CODE, Capability.STATEFUL, Capability.WAVES,
                              Capability.RECONSTRUCT})
    config_cls = NWMConfig
    config: NWMConfig
    batch_kind = "sequences"

    def __init__(self, config: LearnerConfig) -> None:
        super().__init__(config)
        c = self.config
        n = c.units
        self.encoder = ConvEncoder(c.image_size, c.channels, c.kernels, c.hidden, n)
        self.decoder = ConvDecoder(c.image_size, c.channels, c.hidden, n)
        self.sheet: WaveSheet | GRUSheet
        if c.cell == "wave":
            self.sheet = WaveSheet(c.sheet_channels, c.sheet, c.substeps, c.dt_init,
                                   c.gamma_init, c.damping_init)
        else:
            self.sheet = GRUSheet(c.sheet_channels, c.sheet)

    # -- Learner interface ------------------------------------------------------------------

    @property
    def latent_shape(self) -> tuple[int, ...]:
        both = self.config.cell == "wave" and self.config.latent == "yz"
        return (self.config.units * (2 if both else 1),)

    @property
    def substeps(self) -> int:
        """Sub-steps per frame (1 for the GRU)."""
        return self.config.substeps if self.config.cell == "wave" else 1

    def initial_state(self, batch: int) -> State:
        """The sheet at rest (``y = z = 0``; GRU: ``h = 0``) for ``batch`` streams."""
        return self.sheet.initial(batch, next(self.parameters()).device)

    def latents(self, state: State) -> torch.Tensor:
        """Flattened state ``[B, D]``: ``[y, z]`` (``latent="yz"``) or ``y``; the GRU's ``h``."""
        if self.config.latent == "y":
            return state[0].flatten(1)
        return torch.cat([s.flatten(1) for s in state], dim=1)

    def encode_step(self, frames: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """Drive the sheet with one frame per stream: ``(latents [B, D], new state)``.

        Deterministic; pass :meth:`initial_state` to start a new episode.
        """
        frames = self.check_frames(frames)
        state = self.sheet.step(self.encoder(to_float_chw(frames)), state)
        return self.latents(state), state

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Single-frame view: :meth:`encode_step` from the rest state (no history)."""
        return self.encode_step(frames, self.initial_state(frames.shape[0]))[0]

    def reconstruct(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames decoded from the sheet after one step from rest (the single-frame view)."""
        _, state = self.encode_step(frames, self.initial_state(frames.shape[0]))
        return self.decode_sheet(state[0])

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Not offered (no :attr:`Capability.DECODE`): latent traversals over hundreds of coupled
        oscillators mean little (use :meth:`decode_sheet`, :meth:`reconstruct` or
        :meth:`rollout`)."""
        raise NotImplementedError("nwm latents are an oscillator sheet; no latent traversals")

    def decode_sheet(self, y: torch.Tensor) -> torch.Tensor:
        """Sheet positions ``[B, C, S, S]`` (or ``[B, N]``) -> images ``[B, H, W, 3]`` in [0, 1]."""
        return torch.sigmoid(self.decoder(y.flatten(1))).permute(0, 2, 3, 1)

    # -- dynamics ---------------------------------------------------------------------------

    def rollout(self, frames: torch.Tensor, n_free: int = 0, state: State | None = None,
                trace: bool = False, mode: str | None = None) -> Rollout:
        """Drive the sheet with ``frames`` (uint8 ``[B, T_in, H, W, 3]``), then run ``n_free``
        more frames without input (``mode="free"``) or on its own predictions (``"feedback"``;
        default: the config's ``forecast_mode``). Returns logits for all ``T_in + n_free`` frames.
        """
        frames = self.check_frames(frames)
        mode = self.config.forecast_mode if mode is None else mode
        if mode not in FORECAST_MODES:
            raise ConfigError(f"unknown forecast mode {mode!r}; valid: {', '.join(FORECAST_MODES)}")
        b, t_in = frames.shape[:2]
        if state is None:
            state = self.initial_state(b)
        steps: list[torch.Tensor] | None = [] if trace else None
        ys: list[torch.Tensor] = []
        if t_in:
            u = self.encoder(to_float_chw(frames.flatten(0, 1))).view(b, t_in, -1)
            for t in range(t_in):
                state = self.sheet.step(u[:, t], state, steps)
                ys.append(state[0])
        for _ in range(n_free):
            forcing = None
            if mode == "feedback" and ys:
                forcing = self.encoder(torch.sigmoid(self.decoder(ys[-1].flatten(1))))
            state = self.sheet.step(forcing, state, steps)
            ys.append(state[0])
        logits = self.decoder(torch.stack(ys, 1).flatten(0, 1).flatten(1))
        logits = logits.view(b, len(ys), *logits.shape[1:])
        return Rollout(logits, torch.stack(steps, 1) if steps else None, state)

    def loss(self, batch: Batch, generator: torch.Generator | None = None
             ) -> dict[str, torch.Tensor]:
        x = batch["x"]
        if x.dim() != 5:
            raise ConfigError(f"nwm trains on sequences [B, T, H, W, 3], got {tuple(x.shape)}")
        b, t = x.shape[:2]
        f = self.config.forecast_steps
        if t <= f:
            raise ConfigError(f"sequences of {t} frames leave no input frame before the "
                              f"{f} forecast steps; raise seq_len above forecast_steps")
        out = self.rollout(x[:, : t - f], n_free=f)
        target = to_float_chw(x.flatten(0, 1))
        per = reconstruction_loss(out.logits.flatten(0, 1), target, self.config.recon).view(b, t)
        recon = per[:, : t - f].mean()
        terms: dict[str, torch.Tensor] = {"recon": recon}
        total = recon
        if f:
            forecast = per[:, t - f :].mean()
            total = recon + self.config.forecast_weight * forecast
            terms["forecast"] = forecast
            terms["forecast_per_step"] = per[:, t - f :].mean(0).detach()
        if isinstance(self.sheet, WaveSheet):
            terms["dt"] = self.sheet.dt.mean().detach()
            terms["gamma"] = self.sheet.gamma.mean().detach()
            terms["eps"] = self.sheet.eps.mean().detach()
        return {"loss": total, **terms}
