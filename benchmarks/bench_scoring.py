"""Scoring throughput: score_examples against a naive reference, in the same run on the same model and data.

Naive reference: one example at a time, its M noisy copies in one batch, noise made on the CPU
(torch.randn with a CPU generator) and moved to the device, fp32, NCHW, inference mode.
Both are timed on the same model and the same images; the variants take turns, `--repeats`
rounds, and each keeps its best round (the machine may be shared: turns spread the noise).
Throughput is in noisy images classified per second; images are random uint8 pixels
(throughput does not depend on content) and the model is untrained.
On the CPU an int8 variant (score_examples(int8=True)) is timed from its first classified
batch to its last, i.e. after it has quantized and compiled its copy of the model; that fixed
cost per call is printed on its own.

    .venv/bin/python benchmarks/bench_scoring.py                        # CPU-sized default (< 2 min)
    .venv/bin/python benchmarks/bench_scoring.py --device cuda --model resnet18 --examples 20000
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from worker.ml.device import cpu_has_fast_bf16, resolve_device
from worker.ml.models import build_model, spec_for_images
from worker.ml.scoring import histogram_entropy, score_examples

# model -> (H, W, C) of its default benchmark images, and default example counts per device kind
SHAPES = {"small_cnn": (28, 28, 1), "resnet18": (32, 32, 3)}
DEFAULT_EXAMPLES = {
    ("small_cnn", "cpu"): 200,
    ("resnet18", "cpu"): 12,
    ("small_cnn", "cuda"): 20000,
    ("resnet18", "cuda"): 20000,
}
DEFAULT_NAIVE_EXAMPLES = {"cpu": None, "cuda": 500}  # None: all of them


@torch.inference_mode()
def naive_scores(
    model: nn.Module, images: np.ndarray, sigmas: np.ndarray, draws: int, seed: int, device: torch.device
) -> np.ndarray:
    """H per example, the straightforward way: the reference the engine is measured against."""
    model.to(device).to(memory_format=torch.contiguous_format).eval()
    generator = torch.Generator().manual_seed(seed)
    entropies = np.zeros(len(images))
    for index, image in enumerate(images):
        clean = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
        noise = torch.randn((draws, *clean.shape), generator=generator)
        copies = (clean.unsqueeze(0) + float(sigmas[index]) * noise).clamp(0.0, 1.0).to(device)
        predictions = model(copies).argmax(dim=1).cpu().numpy()
        entropies[index] = histogram_entropy(np.bincount(predictions))
    return entropies


# A timed run: (noisy images classified, wall-clock seconds, CPU seconds of this process).
Timed = Callable[[], tuple[int, float, float]]


def whole_call(run: Callable[[], int], device: torch.device) -> Timed:
    def timed() -> tuple[int, float, float]:
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        images = run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return images, time.perf_counter() - wall, time.process_time() - cpu

    return timed


def best_rates(runs: dict[str, Timed], repeats: int) -> dict[str, tuple[float, float]]:
    """Highest images/s of each run over `repeats` rounds in turns (after one untimed warm-up each):
    (per wall-clock second, per CPU second of this process). On a shared machine the second is
    the steadier measure of the work each variant needs."""
    for run in runs.values():
        run()
    best = dict.fromkeys(runs, (0.0, 0.0))
    for _ in range(repeats):
        for name, run in runs.items():
            images, wall, cpu = run()
            best[name] = (max(best[name][0], images / wall), max(best[name][1], images / max(cpu, 1e-9)))
    return best


def bench(
    model_name: str,
    examples: int | None,
    naive_examples: int | None,
    draws: int,
    device: torch.device,
    batch_size: int | None,
    repeats: int,
) -> None:
    count = examples or DEFAULT_EXAMPLES[(model_name, device.type)]
    naive_count = min(count, naive_examples or DEFAULT_NAIVE_EXAMPLES[device.type] or count)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (count, *SHAPES[model_name]), dtype=np.uint8)
    sigma_indices = rng.integers(10, 60, count)
    model = build_model(spec_for_images(images, 10, model_name), seed=0)

    def engine_variant(mixed_precision: bool | None, channels_last: bool | None) -> Callable[[], int]:
        def run() -> int:
            scores = score_examples(
                model,
                images,
                sigma_indices,
                draws=draws,
                seed=1,
                device=device,
                batch_size=batch_size,
                mixed_precision=mixed_precision,
                channels_last=channels_last,
            )
            return scores.forward_passes

        return run

    def naive() -> int:
        naive_scores(model, images[:naive_count], sigma_indices[:naive_count] / 100.0, draws, 1, device)
        return naive_count * draws

    int8_fixed_seconds: list[float] = []

    def int8_after_compiling() -> tuple[int, float, float]:
        marks: list[tuple[int, float, float]] = []
        started = time.perf_counter()

        def progress(done: int, planned: int) -> None:
            marks.append((done, time.perf_counter(), time.process_time()))

        score_examples(
            model, images, sigma_indices, draws=draws, seed=1, device=device, int8=True, progress=progress
        )
        (first_done, first_wall, first_cpu), (done, wall, cpu) = marks[0], marks[-1]
        batch_seconds = (wall - first_wall) / max(len(marks) - 1, 1)
        int8_fixed_seconds.append(first_wall - started - batch_seconds)
        return done - first_done, wall - first_wall, cpu - first_cpu

    runs = {
        "engine": whole_call(engine_variant(None, None), device),
        "fp32_cl": whole_call(engine_variant(False, True), device),
        "fp32": whole_call(engine_variant(False, False), device),
        "naive": whole_call(naive, device),
    }
    if device.type == "cpu":
        runs["int8"] = int8_after_compiling
    rates = best_rates(runs, repeats)
    height, width, channels = SHAPES[model_name]
    print(f"\n{model_name} on {height}x{width}x{channels}, {count} examples x {draws} draws, device {device}")
    print(f"  {'noisy images per':<30}{'wall-clock s':>14}{'CPU s':>12}")
    labels = {
        "engine": "engine (defaults)",
        "fp32_cl": "engine (fp32, channels-last)",
        "fp32": "engine (fp32, NCHW)",
        "int8": "engine (int8)",
        "naive": f"naive ({naive_count} examples)",
    }
    labels = {name: label for name, label in labels.items() if name in rates}
    for name, label in labels.items():
        print(f"  {label:<30}{rates[name][0]:14,.0f}{rates[name][1]:12,.0f}")
    for name in [name for name in labels if name != "naive"]:
        wall_ratio, cpu_ratio = (rates[name][k] / rates["naive"][k] for k in (0, 1))
        print(f"  {labels[name] + ' / naive':<38}{wall_ratio:6.2f}x{cpu_ratio:11.2f}x")
    if int8_fixed_seconds:
        print(
            "  int8: quantizing + compiling before the first batch took "
            f"{int8_fixed_seconds[0]:.1f} s on the first call, "
            f"{min(int8_fixed_seconds[1:]):.1f} s at best later (inductor's cache warm)"
        )
    engine_rate = rates["engine"][0]
    if device.type == "cuda" and model_name == "resnet18":
        seconds = 50_000 * 50 / engine_rate
        print(f"  a CIFAR-10 round of 50,000 x 50 would take {seconds:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=["small_cnn", "resnet18", "both"], default="both")
    parser.add_argument(
        "--examples", type=int, default=None, help="examples scored by the engine (default per model/device)"
    )
    parser.add_argument(
        "--naive-examples",
        type=int,
        default=None,
        help="examples for the naive reference (default: all on CPU, 500 on CUDA)",
    )
    parser.add_argument("--draws", type=int, default=50, help="M noisy copies per example")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="engine's noisy images per forward pass (default: its own)",
    )
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per variant; the best counts")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch_threads = torch.get_num_threads()
    capabilities = torch.cpu.get_capabilities()
    print(
        f"torch {torch.__version__}, {torch_threads} CPU threads, CPU {capabilities.get('cpu_name', '?')}, "
        f"native bf16 (AVX-512 BF16 or AMX): {cpu_has_fast_bf16()}"
    )
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}")
    models = ["small_cnn", "resnet18"] if args.model == "both" else [args.model]
    for model_name in models:
        bench(
            model_name, args.examples, args.naive_examples, args.draws, device, args.batch_size, args.repeats
        )


if __name__ == "__main__":
    main()
