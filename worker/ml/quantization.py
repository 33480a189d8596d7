"""Static int8 copies of a classifier for scoring on the CPU.

torchao's pt2e flow: `torch.export` (strict, so torchvision's BasicBlock, which calls one ReLU
module twice, is not read as a single two-output ReLU), `X86InductorQuantizer` (per-channel
int8 weights, per-tensor int8 activations), calibration on noisy images, `convert_pt2e`, then
inductor with freezing, which folds the weights into oneDNN's prepacked int8 kernels. Linear
layers stay in fp32: there is little to gain there, and inductor's int8 linear lowering warns.

On CPUs with AVX-512 VNNI, ResNet18 runs about 2x faster than bf16 and 4x faster than fp32
(docs/engine.md). The price: 13 s to export, calibrate and compile ResNet18 (3-4 s once
inductor's cache in /tmp holds the kernels), and about 1 % of noisy images get
a different top class than in fp32 (bf16: 0.3 %). The copy is compiled for one batch size; it
pads smaller batches.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

Classifier = Callable[[torch.Tensor], torch.Tensor]


def quantize_for_cpu(model: nn.Module, calibration: torch.Tensor, *, batch_size: int) -> Classifier:
    """An int8 copy of `model` (eval mode, CPU) that classifies NCHW batches of up to `batch_size`.

    `calibration`: [0, 1] images like the ones to classify (noisy copies for scoring); their
    activation ranges set the int8 scales. The model itself is not changed.
    """
    # Imported here: torchao and inductor take seconds to import and only this path needs them.
    # torchao 0.18 registers an Enum through a torch API that now logs a deprecation notice on
    # every import; it is harmless, so the notice is kept out of the log.
    pytree_log = logging.getLogger("torch.utils._pytree")
    previous_level = pytree_log.level
    pytree_log.setLevel(logging.ERROR)
    try:
        import torch._inductor.config as inductor_config
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer,
            get_default_x86_inductor_quantization_config,
        )
    finally:
        pytree_log.setLevel(previous_level)

    if len(calibration) == 0:
        raise ValueError("int8 quantization needs at least one calibration image")
    example = _padded(calibration[:batch_size], batch_size)
    with torch.inference_mode(False), torch.no_grad():
        exported = torch.export.export(model.eval(), (example,), strict=True).module()
        quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
        quantizer.set_module_type_qconfig(nn.Linear, None)
        prepared = prepare_pt2e(exported, quantizer)
        for begin in range(0, len(calibration), batch_size):
            prepared(_padded(calibration[begin : begin + batch_size], batch_size))
        compiled = torch.compile(convert_pt2e(prepared))

    def classify(images: torch.Tensor) -> torch.Tensor:
        count = len(images)
        if count > batch_size:
            raise ValueError(f"the int8 model takes batches of up to {batch_size} images, got {count}")
        # Freezing is what lowers the quantized convolutions to oneDNN's int8 kernels; it is read
        # at compile time (the first call, and any recompile), so it is set around every call.
        with inductor_config.patch(freezing=True), torch.inference_mode(False), torch.no_grad():
            logits: torch.Tensor = compiled(_padded(images, batch_size))  # type: ignore[no-untyped-call]
        return logits[:count]

    return classify


def _padded(images: torch.Tensor, size: int) -> torch.Tensor:
    """A new contiguous batch of `size`: `images`, then zero images.

    Always a fresh tensor made outside inference mode: the compiled graph is specialised on
    its input's kind, and an inference-mode tensor after a normal one (or the other way round)
    would cost a recompile of several seconds.
    """
    with torch.inference_mode(False):
        batch = images.new_zeros((size, *images.shape[1:]))
        batch[: len(images)] = images
    return batch
