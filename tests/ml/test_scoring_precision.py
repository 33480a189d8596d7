"""AQPL_SCORING_PRECISION resolved to score_examples' arguments (pure: the CPU's bf16 is passed in)."""

from __future__ import annotations

import pytest
import torch

from backend.settings import Settings
from worker.ml.device import cpu_has_fast_bf16
from worker.ml.scoring import PRECISION_NAMES, resolve_precision


def test_the_setting_and_the_engine_know_the_same_names() -> None:
    assert set(PRECISION_NAMES) == set(Settings.model_fields["scoring_precision"].annotation.__args__)  # type: ignore[union-attr]
    assert Settings.model_fields["scoring_precision"].default == "auto"


@pytest.mark.parametrize(
    ("device_type", "cpu_bf16", "expected"),
    [("cpu", True, "bf16"), ("cpu", False, "fp32"), ("cuda", False, "bf16"), ("cuda", True, "bf16")],
)
def test_auto_is_bf16_on_cuda_and_on_cpus_with_native_bf16(
    device_type: str, cpu_bf16: bool, expected: str
) -> None:
    precision = resolve_precision("auto", device_type, cpu_bf16=cpu_bf16)
    assert precision.name == expected
    assert (precision.mixed_precision, precision.channels_last, precision.int8) == (
        expected == "bf16",
        True,
        False,
    )


def test_auto_on_this_cpu_follows_its_bf16_support() -> None:
    expected = "bf16" if cpu_has_fast_bf16() else "fp32"
    assert resolve_precision("auto", "cpu").name == expected
    capabilities = torch.cpu.get_capabilities()
    assert cpu_has_fast_bf16() == bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


@pytest.mark.parametrize("device_type", ["cpu", "cuda"])
def test_fp32_and_bf16_are_taken_as_asked(device_type: str) -> None:
    assert resolve_precision("fp32", device_type, cpu_bf16=True).mixed_precision is False
    assert resolve_precision("bf16", device_type, cpu_bf16=False).mixed_precision is True


def test_int8_is_for_the_cpu_and_completes_in_fp32() -> None:
    precision = resolve_precision("int8", "cpu", cpu_bf16=True)
    assert (precision.name, precision.int8, precision.mixed_precision, precision.channels_last) == (
        "int8",
        True,
        None,
        None,
    )
    assert precision.completion_arguments() == {"mixed_precision": False, "channels_last": True}


def test_int8_on_cuda_is_refused_with_what_to_do() -> None:
    with pytest.raises(ValueError, match=r"int8 runs on the CPU only.*cuda.*auto or bf16"):
        resolve_precision("int8", "cuda")


def test_an_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown scoring precision 'fp16'"):
        resolve_precision("fp16", "cpu")
