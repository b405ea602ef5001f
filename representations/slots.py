"""Slot Attention (Locatello et al. 2020, *Object-Centric Learning with Slot Attention*) with a
spatial broadcast decoder (Watters et al. 2019, *Spatial Broadcast Decoder: A Simple Architecture
for Learning Disentangled Representations in VAEs*).

Architecture (the reference, google-research ``slot_attention``, with what ports got wrong done
right):

* **Encoder**: conv layers with ReLU; a soft position embedding (a linear map of the 4-channel grid
  ``(x, y, 1 - x, 1 - y)``) is added to the features, which are flattened to ``N`` inputs, then
  LayerNorm and an MLP (Linear, ReLU, Linear) to ``slot_size``.
* **Slot initialisation** (``init``): ``"learned"`` (the default; Jia et al. 2023, *Improving
  Object-centric Learning with Query Optimization*, BO-QSA): one learned query per slot, and the
  last round starts from ``slots.detach() + init - init.detach()`` (a straight-through gradient
  to the queries); ``"gaussian"`` (the reference): ``K`` slots drawn from a learned Gaussian
  ``N(mu, sigma^2)`` (``mu`` and ``log_sigma`` both trainable, ``sigma = exp(log_sigma) > 0``).
  ``implicit=True`` detaches the slots before the last round (Chang et al. 2022).
* **Slot module** (:class:`SlotAttentionModule`): ``iters`` rounds of: ``q = W_q LN(slots)``,
  ``k = W_k LN(x)``, ``v = W_v LN(x)`` (no biases, as in the reference);
  ``attn = softmax over the SLOT axis of k q^T / sqrt(D)``; ``attn + eps`` (1e-8) renormalised
  over the inputs (a weighted mean); the updates go through a GRU cell and a residual MLP on
  ``LN(slots)``. The module is permutation-equivariant in the slots.
* **Decoder**: every slot is broadcast to a ``dec_broadcast`` x ``dec_broadcast`` grid, the soft
  position embedding is added, transposed convs (ReLU between them) upsample it, and a last
  transposed conv gives 4 channels: RGB and an alpha logit. Alpha is softmaxed across slots and
  the image is ``sum_k alpha_k * rgb_k``. When the decoder's output is smaller than the image, the
  4 channels are upsampled bilinearly before the softmax (``dec`` resolution below the image's).
* **Loss**: mean squared error of the reconstruction (per pixel and channel).

Presets (``preset``; any architecture field left empty takes the preset's value):

* ``"fast"`` (default): 32-channel encoder with two stride-2 layers (16x16 = 256 inputs to the
  slot module), decoder from 8x8 with two stride-2 4x4 transposed convs (32 then 16 channels) and
  a stride-2 4x4 output layer straight to 4 channels at 64x64. Far faster to train than
  ``"paper"`` on a 2-core CPU (``docs/slot_attention.md`` has the measured trade-off).
* ``"paper"``: the reference's CLEVR architecture scaled to the image size: 4 convs 5x5 with 64
  channels at full resolution; decoder from 8x8 with 64-channel 5x5 stride-2 transposed convs up
  to the image size, one stride-1 5x5 and a 3x3 output layer.

Determinism. With learned queries nothing is sampled. With the Gaussian initialisation, training
draws the initial slots from the learned Gaussian with the generator passed
to :meth:`SlotAttention.loss`. :meth:`SlotAttention.encode` must be deterministic, and the mean
alone cannot be used (identical initial slots stay identical through every iteration, the
attention is then uniform over slots), so evaluation uses ``mu + sigma * eps`` with a FIXED
``eps`` drawn from a generator seeded with ``eval_seed``; the same ``eps`` is used for every image
(an image's slots do not depend on the rest of the batch). ``eps`` for ``K`` slots is the first
``K`` rows of the draw for more slots, so changing the number of slots at test time (the paper's
property) keeps the first slots' initialisation.

The number of slots may change after training (with learned queries only downwards, to a prefix
of the trained queries): set :attr:`SlotAttention.num_slots` or pass ``num_slots=`` to
:meth:`~SlotAttention.encode`, :meth:`~SlotAttention.reconstruct` or
:meth:`~SlotAttention.forward_slots`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from sparseshift.envs.infra.config import SEED_MAX, opt
from sparseshift.envs.infra.errors import MAX_IMAGE_SIZE, ConfigError
from sparseshift.representations.base import (
    Batch,
    Capability,
    Learner,
    LearnerConfig,
    LRSchedule,
    frames_to_tensor,
    to_float_chw,
)
from sparseshift.representations.model_config import (
    MAX_CHANNELS,
    MAX_LAYERS,
    MAX_WIDTH,
    ParamParts,
    conv_params,
    gru_cell_params,
    linear_params,
)

#: Most slots, slot attention rounds, slot size and conv kernel size a config may ask for.
MAX_SLOTS = 256
MAX_ITERS = 100
MAX_SLOT_SIZE = 4096
MAX_KERNEL = 32

#: Architecture presets; the values of the architecture fields per preset (see module docstring).
Preset = Literal["fast", "paper"]
PRESETS: dict[Preset, dict[str, Any]] = {
    "fast": {
        "enc_channels": (32, 32, 32, 32),
        "enc_kernels": (5, 3, 3, 3),
        "enc_strides": (2, 1, 2, 1),
        "dec_broadcast": 8,
        "dec_channels": (32, 16),
        "dec_kernels": (4, 4),
        "dec_strides": (2, 2),
        "dec_out_kernel": 4,
        "dec_out_stride": 2,
    },
    "paper": {
        "enc_channels": (64, 64, 64, 64),
        "enc_kernels": (5, 5, 5, 5),
        "enc_strides": (1, 1, 1, 1),
        "dec_broadcast": 8,
        # stride-2 5x5 layers up to the image size, then one stride-1 5x5 (filled in per size)
        "dec_channels": (),
        "dec_kernels": (),
        "dec_strides": (),
        "dec_out_kernel": 3,
        "dec_out_stride": 1,
    },
}
ARCH_FIELDS: tuple[str, ...] = tuple(PRESETS["fast"])
#: Initialisations of the slots: ``gaussian`` (Locatello et al. 2020: ``mu + sigma * eps``) and
#: ``learned`` (Jia et al. 2023, BO-QSA: one learned query per slot, straight-through gradient).
SlotInit = Literal["gaussian", "learned"]


def _paper_decoder(image_size: int, broadcast: int) -> dict[str, tuple[int, ...]]:
    n = 0
    size = broadcast
    while size < image_size:
        size *= 2
        n += 1
    return {"dec_channels": (64,) * (n + 1), "dec_kernels": (5,) * (n + 1),
            "dec_strides": (2,) * n + (1,)}


@dataclass(frozen=True)
class SlotAttentionConfig(LearnerConfig):
    """Hyperparameters of :class:`SlotAttention` (defaults: the reference's slot module, the
    ``"fast"`` conv architecture).

    Architecture fields left at their empty value (``()`` or 0) take the preset's value. Encoder
    layer ``i`` is a ``enc_kernels[i]`` conv with stride ``enc_strides[i]`` (1 or 2) and
    ``enc_channels[i]`` filters. Decoder: broadcast to ``dec_broadcast``, transposed convs
    (``dec_channels``/``dec_kernels``/``dec_strides``), an output transposed conv to 4 channels
    (``dec_out_kernel``, ``dec_out_stride``); its output size must divide the image size
    (smaller outputs are upsampled bilinearly).
    """

    preset: Preset = opt("fast", "architecture preset")
    num_slots: int = opt(7, "slots", min=1, max=MAX_SLOTS)
    iters: int = opt(3, "slot attention rounds", min=1, max=MAX_ITERS)
    slot_size: int = opt(64, "slot dimensions", min=1, max=MAX_SLOT_SIZE)
    mlp_hidden: int = opt(128, "hidden units of the slot MLP", min=1, max=MAX_WIDTH)
    eps: float = opt(1e-8, "added to the attention before it is renormalised", gt=0.0, lt=1.0)
    eval_seed: int = opt(0, "seed of the fixed initial-slot noise of evaluation", min=0,
                         max=SEED_MAX)
    init: SlotInit = opt("learned", "slot initialisation")
    implicit: bool = opt(False, "detach the slots before the last round")
    enc_channels: tuple[int, ...] = opt((), min=1, max=MAX_CHANNELS, max_len=MAX_LAYERS)
    enc_kernels: tuple[int, ...] = opt((), min=1, max=MAX_KERNEL, max_len=MAX_LAYERS)
    enc_strides: tuple[int, ...] = opt((), min=1, max=2, max_len=MAX_LAYERS)
    dec_broadcast: int = opt(0, min=0, max=MAX_IMAGE_SIZE)
    dec_channels: tuple[int, ...] = opt((), min=1, max=MAX_CHANNELS, max_len=MAX_LAYERS)
    dec_kernels: tuple[int, ...] = opt((), min=1, max=MAX_KERNEL, max_len=MAX_LAYERS)
    dec_strides: tuple[int, ...] = opt((), min=1, max=2, max_len=MAX_LAYERS)
    dec_out_kernel: int = opt(0, min=0, max=MAX_KERNEL)
    dec_out_stride: int = opt(0, min=0, max=2)

    def validate(self) -> None:
        super().validate()
        preset = dict(PRESETS[self.preset])
        if self.preset == "paper":
            broadcast = self.dec_broadcast or int(preset["dec_broadcast"])
            preset.update(_paper_decoder(self.image_size, broadcast))
        for name in ARCH_FIELDS:
            if not getattr(self, name):
                object.__setattr__(self, name, preset[name])
        self._check_layers("enc", self.enc_channels, self.enc_kernels, self.enc_strides)
        self._check_layers("dec", self.dec_channels, self.dec_kernels, self.dec_strides)
        if self.dec_out_stride not in (1, 2) or self.dec_out_kernel < self.dec_out_stride:
            raise ConfigError(f"dec_out_stride must be 1 or 2 and dec_out_kernel >= it, got "
                              f"{self.dec_out_stride}, {self.dec_out_kernel}")
        if self.feature_size < 1 or self.image_size % self.feature_size:
            raise ConfigError(f"the encoder strides {self.enc_strides} must divide the image size "
                              f"{self.image_size}")
        out = self.decoder_size
        if out > self.image_size or self.image_size % out:
            raise ConfigError(
                f"the decoder's output ({out}x{out}: broadcast {self.dec_broadcast}, strides "
                f"{self.dec_strides} + {self.dec_out_stride}) must divide the image size "
                f"{self.image_size}"
            )
        self.check_params()

    def param_parts(self) -> ParamParts:
        """The parameters of :class:`SlotAttention` built from this config, by part."""
        convs, c_in = 0, 3
        for ch, k in zip(self.enc_channels, self.enc_kernels, strict=True):
            convs += conv_params(c_in, ch, k)
            c_in = ch
        d, h = self.slot_size, self.mlp_hidden
        encoder_rest = 5 * c_in + 2 * c_in + linear_params(c_in, d) + linear_params(d, d)
        module = (6 * d + 3 * linear_params(d, d, bias=False) + gru_cell_params(d, d)
                  + linear_params(d, h) + linear_params(h, d))
        init = self.num_slots * d if self.init == "learned" else 2 * d
        deconvs, c_in = 5 * d, d
        for ch, k in zip(self.dec_channels, self.dec_kernels, strict=True):
            deconvs += conv_params(c_in, ch, k)
            c_in = ch
        deconvs += conv_params(c_in, 4, self.dec_out_kernel)
        return {"encoder convs": (convs, ("enc_channels", "enc_kernels")),
                "encoder embedding and MLP": (encoder_rest, ("slot_size", "enc_channels")),
                "slot attention module": (module, ("slot_size", "mlp_hidden")),
                "slot initialisation": (init, ("num_slots", "slot_size")),
                "decoder": (deconvs, ("dec_channels", "dec_kernels", "slot_size"))}

    @staticmethod
    def _check_layers(what: str, channels: tuple[int, ...], kernels: tuple[int, ...],
                      strides: tuple[int, ...]) -> None:
        if not (len(channels) == len(kernels) == len(strides)):
            raise ConfigError(f"{what}_channels, {what}_kernels and {what}_strides need the same "
                              f"length, got {channels}, {kernels}, {strides}")
        if what == "enc" and not channels:
            raise ConfigError("the encoder needs at least one layer")
        if any(k < s for k, s in zip(kernels, strides, strict=True)):
            raise ConfigError(f"{what}_kernels must be >= the stride, got {kernels}, strides "
                              f"{strides}")

    @property
    def feature_size(self) -> int:
        """Side of the encoder's feature map (the slot module sees its square inputs)."""
        size = self.image_size
        for s in self.enc_strides:
            size //= s
        return size

    @property
    def decoder_size(self) -> int:
        """Side of the decoder's output before any bilinear upsampling."""
        size = self.dec_broadcast
        for s in (*self.dec_strides, self.dec_out_stride):
            size *= s
        return size


#: The reference's learning-rate schedule (Locatello et al. 2020: lr 4e-4, linear warm-up over
#: 10k steps, halved every 100k); :func:`sparseshift.representations.train.train` uses it for
#: ``slot_attention`` unless the run sets another (``TrainConfig.lr_schedule``).
REFERENCE_LR_SCHEDULE = LRSchedule(warmup_steps=10_000, decay_steps=100_000, decay_rate=0.5)
#: The default: the reference's decay with a 1,000-step warm-up, sized for a CPU budget (the
#: reference warm-up takes about an hour of 2-core training before the rate is reached, and a
#: 10-minute run never leaves it: FG-ARI 0.008 measured). ``--lr-schedule 10000:100000:0.5`` is
#: the paper's.
DEFAULT_LR_SCHEDULE = LRSchedule(warmup_steps=1_000, decay_steps=100_000, decay_rate=0.5)


def build_grid(size: int) -> torch.Tensor:
    """``[1, 4, size, size]`` grid of ``(x, y, 1 - x, 1 - y)`` with coordinates in [0, 1]."""
    r = torch.linspace(0.0, 1.0, size)
    y, x = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([x, y, 1.0 - x, 1.0 - y])[None]


class SoftPositionEmbed(nn.Module):
    """Adds a learned linear map of the ``(x, y, 1 - x, 1 - y)`` grid to ``[B, C, S, S]`` maps
    (Locatello et al. 2020)."""

    grid: torch.Tensor

    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(4, channels, 1)
        self.register_buffer("grid", build_grid(size), persistent=False)

    def embedding(self) -> torch.Tensor:
        return self.proj(self.grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.embedding()


class SlotAttentionModule(nn.Module):
    """The iterative attention of Locatello et al. 2020 (Algorithm 1).

    ``forward(inputs [B, N, D_in], slots [B, K, D])`` returns the slots after ``iters`` rounds and
    the last round's attention ``[B, K, N]`` (softmax over slots: it sums to 1 over ``K``).
    Permuting the initial slots permutes the outputs identically (no slot-specific parameters).
    """

    def __init__(self, in_dim: int, slot_size: int, mlp_hidden: int, iters: int, eps: float
                 ) -> None:
        super().__init__()
        self.iters = iters
        self.eps = eps
        self.scale = slot_size ** -0.5
        self.norm_inputs = nn.LayerNorm(in_dim)
        self.norm_slots = nn.LayerNorm(slot_size)
        self.norm_mlp = nn.LayerNorm(slot_size)
        self.to_q = nn.Linear(slot_size, slot_size, bias=False)
        self.to_k = nn.Linear(in_dim, slot_size, bias=False)
        self.to_v = nn.Linear(in_dim, slot_size, bias=False)
        self.gru = nn.GRUCell(slot_size, slot_size)
        self.mlp = nn.Sequential(nn.Linear(slot_size, mlp_hidden), nn.ReLU(),
                                 nn.Linear(mlp_hidden, slot_size))

    def forward(self, inputs: torch.Tensor, slots: torch.Tensor, implicit: bool = False,
                straight_through: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``implicit``: the last round starts from detached slots (Chang et al. 2022, *Object
        Representations as Fixed Points*: the first-order implicit gradient).
        ``straight_through``: the last round starts from ``slots.detach() + init - init.detach()``
        (Jia et al. 2023, BO-QSA), so the initial slots get the last round's gradient."""
        b, k, d = slots.shape
        init = slots
        x = self.norm_inputs(inputs)
        keys = self.to_k(x)  # [B, N, D]
        values = self.to_v(x)
        attn = slots.new_zeros(0)
        for i in range(self.iters):
            if i == self.iters - 1 and i > 0:
                if straight_through:
                    slots = slots.detach() + init - init.detach()
                elif implicit:
                    slots = slots.detach()
            prev = slots
            q = self.to_q(self.norm_slots(slots)) * self.scale  # [B, K, D]
            logits = torch.bmm(q, keys.transpose(1, 2))  # [B, K, N]
            attn = logits.softmax(dim=1)  # over SLOTS: slots compete for each input
            weights = attn + self.eps
            weights = weights / weights.sum(dim=2, keepdim=True)  # weighted mean over inputs
            updates = torch.bmm(weights, values)  # [B, K, D]
            slots = self.gru(updates.reshape(b * k, d), prev.reshape(b * k, d)).reshape(b, k, d)
            slots = slots + self.mlp(self.norm_mlp(slots))
        return slots, attn


def _conv_padding(kernel: int) -> int:
    return (kernel - 1) // 2


def _deconv(c_in: int, c_out: int, kernel: int, stride: int) -> nn.ConvTranspose2d:
    """Transposed conv whose output is exactly ``stride`` times its input."""
    pad = (kernel - stride + 1) // 2
    return nn.ConvTranspose2d(c_in, c_out, kernel, stride=stride, padding=pad,
                              output_padding=stride + 2 * pad - kernel)


class SlotOutput(NamedTuple):
    """Everything one pass computes; images are ``[B, 3, H, W]``, masks ``[B, K, 1, H, W]``."""

    slots: torch.Tensor  # [B, K, D]
    attn: torch.Tensor  # [B, K, N]
    recon: torch.Tensor  # [B, 3, H, W]
    rgb: torch.Tensor  # [B, K, 3, H, W]
    masks: torch.Tensor  # [B, K, 1, H, W], softmax over K


class SlotAttention(Learner):
    """Slot Attention autoencoder (Locatello et al. 2020) with a spatial broadcast decoder
    (Watters et al. 2019); latents are sets of slots ``[B, K, slot_size]``. See the module
    docstring for the architecture, presets and how evaluation is made deterministic.

    Capabilities: set-valued latents (no dimension order, so no per-dimension metrics or latent
    traversals), per-slot alpha masks (FG-ARI, slot figures) and reconstructions.
    """

    name = "slot_attention"
    capabilities = frozenset({Capability.SET_LATENTS, Capability.SLOT_MASKS,
                              Capability.RECONSTRUCT})
    config_cls = SlotAttentionConfig
    batch_kind = "singles"
    default_lr_schedule = DEFAULT_LR_SCHEDULE
    default_lr = 4e-4  # the reference's
    default_batch = 32  # CPU-sized (the reference's is 64: --batch 64)
    config: SlotAttentionConfig

    def __init__(self, config: LearnerConfig) -> None:
        super().__init__(config)
        c = self.config
        #: Number of slots used by encode/reconstruct; may be changed after training.
        self.num_slots = c.num_slots
        layers: list[nn.Module] = []
        c_in = 3
        for ch, k, s in zip(c.enc_channels, c.enc_kernels, c.enc_strides, strict=True):
            layers += [nn.Conv2d(c_in, ch, k, stride=s, padding=_conv_padding(k)), nn.ReLU()]
            c_in = ch
        self.encoder_cnn = nn.Sequential(*layers)
        self.encoder_pos = SoftPositionEmbed(c_in, c.feature_size)
        self.encoder_norm = nn.LayerNorm(c_in)
        self.encoder_mlp = nn.Sequential(nn.Linear(c_in, c.slot_size), nn.ReLU(),
                                         nn.Linear(c.slot_size, c.slot_size))
        self.slot_attention = SlotAttentionModule(c.slot_size, c.slot_size, c.mlp_hidden,
                                                  c.iters, c.eps)
        if c.init == "learned":
            # BO-QSA (Jia et al. 2023): one learned query per slot (Glorot uniform)
            q_limit = (6.0 / (c.num_slots + c.slot_size)) ** 0.5
            self.slots_query = nn.Parameter(
                torch.empty(1, c.num_slots, c.slot_size).uniform_(-q_limit, q_limit))
        else:
            # Learned Gaussian of the initial slots: both trainable, sigma = exp(log_sigma) > 0.
            limit = (6.0 / (1 + c.slot_size)) ** 0.5  # Glorot uniform, as the reference
            self.slots_mu = nn.Parameter(torch.empty(1, 1, c.slot_size).uniform_(-limit, limit))
            self.slots_log_sigma = nn.Parameter(
                torch.empty(1, 1, c.slot_size).uniform_(-limit, limit))
        self.decoder_pos = SoftPositionEmbed(c.slot_size, c.dec_broadcast)
        dec: list[nn.Module] = []
        c_in = c.slot_size
        for ch, k, s in zip(c.dec_channels, c.dec_kernels, c.dec_strides, strict=True):
            dec += [_deconv(c_in, ch, k, s), nn.ReLU()]
            c_in = ch
        dec.append(_deconv(c_in, 4, c.dec_out_kernel, c.dec_out_stride))
        self.decoder_cnn = nn.Sequential(*dec)

    # ------------------------------------------------------------------ pieces
    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.num_slots, self.config.slot_size)

    @property
    def slots_sigma(self) -> torch.Tensor:
        return self.slots_log_sigma.exp()

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames ``[B, H, W, 3]`` -> slot-module inputs ``[B, N, slot_size]``."""
        frames = self.check_frames(frames)
        x = self.encoder_pos(self.encoder_cnn(to_float_chw(frames)))
        x = x.flatten(2).transpose(1, 2)  # [B, N, C]
        return self.encoder_mlp(self.encoder_norm(x))

    def initial_slots(self, batch: int, num_slots: int | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """``[B, K, D]`` initial slots: ``mu + sigma * eps``.

        With a ``generator`` ``eps`` is drawn per image and slot (training); without one it is the
        fixed draw of ``eval_seed``, shared by all images (deterministic encoding).
        """
        k = self.num_slots if num_slots is None else int(num_slots)
        if k < 1:
            raise ConfigError(f"num_slots must be >= 1, got {k}")
        d = self.config.slot_size
        if self.config.init == "learned":
            if k > self.config.num_slots:
                raise ConfigError(f"learned slot queries: at most {self.config.num_slots} slots "
                                  f"(the number trained), got {k}")
            return self.slots_query[:, :k].expand(batch, k, d)
        mu, sigma = self.slots_mu, self.slots_sigma
        if generator is not None:
            eps = torch.randn((batch, k, d), generator=generator, dtype=mu.dtype)
        else:
            eps = self.eval_noise(k).to(mu.dtype).expand(batch, k, d)
        return mu + sigma * eps.to(mu.device)

    def eval_noise(self, num_slots: int) -> torch.Tensor:
        """The fixed ``eps`` ``[K, D]`` of deterministic encoding: row ``i`` is drawn from a
        generator seeded with ``(eval_seed, i)``, so fewer slots get a prefix of more slots'."""
        rows = []
        g = torch.Generator()
        for i in range(num_slots):
            g.manual_seed(self.config.eval_seed * 1_000_003 + i)
            rows.append(torch.randn(self.config.slot_size, generator=g))
        return torch.stack(rows)

    def decode_slots(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Slots ``[B, K, D]`` -> (recon ``[B, 3, H, W]``, per-slot RGB ``[B, K, 3, H, W]``,
        alpha masks ``[B, K, 1, H, W]`` softmaxed across slots) (Watters et al. 2019)."""
        c = self.config
        b, k, d = slots.shape
        s = c.dec_broadcast
        x = slots.reshape(b * k, d, 1, 1).expand(b * k, d, s, s)
        out = self.decoder_cnn(self.decoder_pos(x))  # [B*K, 4, h, w]
        if out.shape[-1] != c.image_size:
            out = F.interpolate(out, size=(c.image_size, c.image_size), mode="bilinear",
                                align_corners=False)
        out = out.reshape(b, k, 4, c.image_size, c.image_size)
        rgb, alpha = out[:, :, :3], out[:, :, 3:]
        masks = alpha.softmax(dim=1)
        recon = (masks * rgb).sum(dim=1)
        return recon, rgb, masks

    def forward_slots(self, frames: torch.Tensor, num_slots: int | None = None,
                      generator: torch.Generator | None = None, decode: bool = True
                      ) -> SlotOutput:
        """Full pass on uint8 frames (``generator``: training noise; None: deterministic)."""
        inputs = self.features(frames)
        init = self.initial_slots(inputs.shape[0], num_slots, generator)
        slots, attn = self.slot_attention(inputs, init, implicit=self.config.implicit,
                                          straight_through=self.config.init == "learned")
        if not decode:
            empty = slots.new_zeros(0)
            return SlotOutput(slots, attn, empty, empty, empty)
        recon, rgb, masks = self.decode_slots(slots)
        return SlotOutput(slots, attn, recon, rgb, masks)

    # ------------------------------------------------------------------ Learner API
    def loss(self, batch: Batch, generator: torch.Generator | None = None
             ) -> dict[str, torch.Tensor]:
        """Mean squared reconstruction error (per pixel and channel), as the reference."""
        x = batch["x"]
        gen = generator if generator is not None else torch.default_generator
        out = self.forward_slots(x, self.config.num_slots, gen)
        mse = (out.recon - to_float_chw(x)).square().mean()
        terms = {"loss": mse, "mse": mse.detach()}
        if self.config.init == "gaussian":
            terms["slot_sigma"] = self.slots_sigma.detach().mean()
        return terms

    def encode(self, frames: torch.Tensor, num_slots: int | None = None) -> torch.Tensor:
        """uint8 frames ``[B, H, W, 3]`` -> slots ``[B, K, slot_size]`` (deterministic)."""
        return self.forward_slots(frames_to_tensor(frames), num_slots, decode=False).slots

    def reconstruct(self, frames: torch.Tensor, num_slots: int | None = None) -> torch.Tensor:
        out = self.forward_slots(frames_to_tensor(frames), num_slots)
        return out.recon.permute(0, 2, 3, 1)

    def masks(self, frames: torch.Tensor, num_slots: int | None = None) -> torch.Tensor:
        """Decoder alpha masks ``[B, K, H, W]`` (softmax over slots) of uint8 frames."""
        return self.forward_slots(frames_to_tensor(frames), num_slots).masks[:, :, 0]

    def extra_repr(self) -> str:
        fields = {f.name: getattr(self.config, f.name) for f in dataclasses.fields(self.config)}
        return ", ".join(f"{k}={v}" for k, v in fields.items() if k in ("preset", "num_slots",
                                                                       "iters", "slot_size"))
