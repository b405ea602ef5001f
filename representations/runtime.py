"""How torch runs a stage: device, precision, thread count and deterministic algorithms, in one
place.

Every stage that runs torch (representation training and evaluation, agent training, study
stages, benchmarks) enters :func:`torch_run`: results are bitwise reproducible on the CPU for a
fixed seed and thread count, and the caller's settings come back afterwards.
:func:`resolve_device` turns ``--device auto|cpu|cuda|cuda:N|mps`` into a ``torch.device`` (or a
one-line :class:`~sparseshift.envs.infra.errors.ConfigError` when that device is not available);
:func:`resolve_precision` turns ``--precision auto`` into bf16 where the hardware computes bf16
natively and the learner was checked with it, else fp32; :func:`autocast` enters it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from sparseshift.envs.infra.config import check_int
from sparseshift.envs.infra.errors import ConfigError

#: What ``--device`` accepts.
DEVICE_HELP = ("auto (an accelerator if one is available, else cpu), cpu, cuda, cuda:N or mps")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")


def available_devices() -> list[str]:
    """The torch devices this process can use, CPU first."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def no_cuda_reason() -> str:
    """Why no CUDA device is usable: a CPU build of torch, or a CUDA build that finds no GPU."""
    cuda = torch.version.cuda
    return ("this torch is a CPU build" if cuda is None else
            f"torch {torch.__version__} (CUDA {cuda}) finds no GPU")


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``auto`` -> the first CUDA device, else MPS, else the CPU; an explicit device must exist."""
    text = str(spec).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda:0")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {spec}: no CUDA device ({no_cuda_reason()}); use "
                              "--device cpu or auto")
        index = 0 if text == "cuda" else text.split(":", 1)[1]
        if not str(index).isdigit() or int(index) >= torch.cuda.device_count():
            raise ConfigError(f"--device {spec}: valid CUDA devices are cuda:0.."
                              f"cuda:{torch.cuda.device_count() - 1}")
        return torch.device(f"cuda:{int(index)}")
    if text == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"--device {spec}: MPS is not available here; use --device cpu "
                              "or auto")
        return torch.device("mps")
    raise ConfigError(f"unknown --device {spec!r}; valid: {DEVICE_HELP}")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 in hardware: a CPU with AVX-512 BF16 or AMX (where
    oneDNN's bf16 kernels run), or a CUDA GPU that supports bf16 (Ampere and later). Elsewhere
    bf16 autocast is emulated and slower than fp32."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        cpu = getattr(torch, "cpu", None)
        checks = [getattr(cpu, n, None) for n in ("_is_avx512_bf16_supported",
                                                  "_is_amx_tile_supported")]
        return any(bool(f()) for f in checks if callable(f))
    return False


def resolve_precision(precision: str, device: torch.device, bf16_checked: bool) -> str:
    """The precision a run computes in: ``auto`` is ``bf16`` when ``device`` has native bf16
    (:func:`native_bf16`) and the learner declares ``bf16_checked``, else ``fp32``; any other
    value is returned as it is (checked)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    return "bf16" if bf16_checked and native_bf16(device) else "fp32"


def resolve_compute(device: str, precision: str, bf16_checked: bool
                    ) -> tuple[torch.device, str]:
    """``--device`` and ``--precision`` of a run, resolved together (:func:`resolve_device`,
    then :func:`resolve_precision` on that device)."""
    where = resolve_device(device)
    return where, resolve_precision(precision, where, bf16_checked)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision for the block: ``fp32`` (off), ``bf16`` or ``fp16`` autocast on
    ``device`` (fp16 needs CUDA; bf16 on a CPU without native bf16 works but is slower).
    ``auto`` must be resolved first (:func:`resolve_precision`)."""
    if precision not in PRECISIONS or precision == "auto":
        valid = ", ".join(p for p in PRECISIONS if p != "auto")
        raise ConfigError(f"unresolved or unknown precision {precision!r}; valid: {valid}")
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("fp16 mixed precision needs a CUDA device; use bf16 or fp32")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def torch_run(threads: int | None = None, deterministic: bool = True) -> Iterator[None]:
    """Pin torch to ``threads`` CPU threads (``None``: leave as is) and, with ``deterministic``,
    turn on ``torch.use_deterministic_algorithms(True, warn_only=True)`` for the block; restore
    both afterwards."""
    if threads is not None:
        check_int("threads", threads, 1, 1024)
    old_threads = torch.get_num_threads()
    was = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if threads is not None:
        torch.set_num_threads(threads)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(was, warn_only=was_warn)
