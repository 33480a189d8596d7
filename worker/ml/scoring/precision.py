"""The platform's scoring precision setting (`AQPL_SCORING_PRECISION`) as score_examples' arguments.

auto  bf16 autocast + channels-last on CUDA and on CPUs with native bf16 (AVX-512 BF16 or AMX),
      fp32 + channels-last elsewhere (bf16 is emulated and slower there; docs/engine.md)
fp32  fp32, channels-last
bf16  bf16 autocast, channels-last, on any device (slow where the CPU emulates it)
int8  a static int8 copy of the model per job (worker/ml/quantization.py): CPU only, opt-in
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from worker.ml.device import cpu_has_fast_bf16

PRECISION_NAMES: Final = ("auto", "fp32", "bf16", "int8")


@dataclass(frozen=True)
class ScoringPrecision:
    """score_examples' mixed_precision, channels_last and int8; `name`: fp32, bf16 or int8."""

    name: str
    mixed_precision: bool | None  # None: int8, whose copy has its own precision and layout
    channels_last: bool | None
    int8: bool

    def completion_arguments(self) -> dict[str, bool | None]:
        """complete_draws' arguments: it has no int8 path, so int8 scores are completed in fp32."""
        if self.int8:
            return {"mixed_precision": False, "channels_last": True}
        return {"mixed_precision": self.mixed_precision, "channels_last": self.channels_last}


def resolve_precision(name: str, device_type: str, *, cpu_bf16: bool | None = None) -> ScoringPrecision:
    """The precision `name` means on a device of `device_type` ("cpu" or "cuda").

    cpu_bf16: whether the CPU has native bf16 (default: ask this machine, `cpu_has_fast_bf16`).
    Raises ValueError for int8 on anything but the CPU, and for unknown names.
    """
    if name not in PRECISION_NAMES:
        raise ValueError(f"unknown scoring precision {name!r}: expected one of {', '.join(PRECISION_NAMES)}")
    if name == "int8":
        if device_type != "cpu":
            raise ValueError(
                f"AQPL_SCORING_PRECISION=int8 runs on the CPU only, but this worker scores on {device_type}: "
                "use auto or bf16 there (or AQPL_DEVICE=cpu)"
            )
        return ScoringPrecision("int8", mixed_precision=None, channels_last=None, int8=True)
    if name == "auto":
        fast_bf16 = device_type == "cuda" or (cpu_has_fast_bf16() if cpu_bf16 is None else cpu_bf16)
        name = "bf16" if fast_bf16 else "fp32"
    return ScoringPrecision(name, mixed_precision=name == "bf16", channels_last=True, int8=False)
