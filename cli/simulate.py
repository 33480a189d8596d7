"""`aqpl simulate`: the whole AQPL loop with no browser, database or worker (issue 3, item 8).

The lead registers `simulate` on the `aqpl` Typer app. worker/ml (and so torch) is imported
inside the command, so other `aqpl` commands start without loading torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# scikit-learn's bundled digits ship with the library: the only format without a path.
_DATASET_FORMATS_WITHOUT_PATH = frozenset({"digits"})


def parse_dataset(value: str) -> tuple[str, Path | None]:
    """'FORMAT:PATH' (or a bare 'digits') -> (format, path); raises typer.BadParameter naming the problem."""
    from aqpl.datasets import DATASET_FORMATS

    dataset_format, separator, raw_path = value.partition(":")
    dataset_format = dataset_format.strip().lower()
    if dataset_format not in DATASET_FORMATS:
        raise typer.BadParameter(
            f"{value!r}: unknown dataset format {dataset_format!r}; expected FORMAT:PATH with FORMAT one of "
            f"{', '.join(DATASET_FORMATS)} (e.g. mnist:../shared/data/mnist, npz:data.npz, digits)",
            param_hint="--dataset",
        )
    if not separator or not raw_path.strip():
        if dataset_format in _DATASET_FORMATS_WITHOUT_PATH:
            return dataset_format, None
        raise typer.BadParameter(
            f"{value!r}: the {dataset_format} format needs a path, e.g. {dataset_format}:PATH",
            param_hint="--dataset",
        )
    path = Path(raw_path.strip()).expanduser()
    if not path.exists():
        raise typer.BadParameter(f"{value!r}: {path} does not exist", param_hint="--dataset")
    return dataset_format, path


def parse_names(value: str, allowed: tuple[str, ...], option: str) -> tuple[str, ...]:
    """A comma list checked against `allowed` (order kept, duplicates dropped, empty allowed)."""
    names = tuple(dict.fromkeys(name.strip().lower() for name in value.split(",") if name.strip()))
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise typer.BadParameter(
            f"unknown {', '.join(repr(n) for n in unknown)}; choose from {', '.join(allowed)}",
            param_hint=option,
        )
    return names


def parse_seeds(value: str) -> tuple[int, ...]:
    """'3' -> seeds 0, 1, 2 (a count); '0,4,7' or '7,' -> exactly those seeds."""
    try:
        if "," not in value:
            count = int(value)
            if count < 1:
                raise typer.BadParameter(
                    f"{value!r}: the seed count must be at least 1", param_hint="--seeds"
                )
            return tuple(range(count))
        seeds = tuple(dict.fromkeys(int(part) for part in value.split(",") if part.strip()))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r}: expected a count (3 -> seeds 0,1,2) or a comma list of integers (0,4,7)",
            param_hint="--seeds",
        ) from None
    if not seeds or any(seed < 0 for seed in seeds):
        raise typer.BadParameter(f"{value!r}: seeds must be non-negative integers", param_hint="--seeds")
    return seeds


def simulate(
    dataset: Annotated[
        str,
        typer.Option(
            help="FORMAT:PATH: mnist:../shared/data/mnist, cifar10:DIR, npz:FILE, imagefolder:DIR, digits"
        ),
    ] = "digits",
    model: Annotated[str, typer.Option(help="resnet18 or small_cnn")] = "small_cnn",
    methods: Annotated[
        str,
        typer.Option(
            help="comma list of standard,gnt,cat,gnt-ft,cat-ft,aqpl-gnt,aqpl-cat (the rows of the table; "
            "gnt-ft and cat-ft fine-tune like the AQPL rounds with no queries)"
        ),
    ] = "standard,gnt,cat,gnt-ft,cat-ft,aqpl-gnt,aqpl-cat",
    strategies: Annotated[
        str,
        typer.Option(
            help="comma list of random,clean_uncertainty,noise_uncertainty,aqpl (the curves; '' for none)"
        ),
    ] = "random,clean_uncertainty,noise_uncertainty,aqpl",
    rounds: Annotated[int, typer.Option(min=1, help="query rounds")] = 3,
    budget: Annotated[int, typer.Option(min=1, help="B: examples per side and round (a round asks 2B)")] = 25,
    draws: Annotated[
        int, typer.Option(min=1, help="M: noisy copies per example for the entropy H (Eq. 5)")
    ] = 20,
    adaptive_scoring: Annotated[
        bool, typer.Option(help="fewer than M draws where the draws so far already agree")
    ] = False,
    int8_scoring: Annotated[
        bool,
        typer.Option(
            help="classify the noisy copies with a static int8 copy of the model (CPU only; ResNet18 "
            "about 2x bf16, after 5-15 s of quantizing and compiling per round)"
        ),
    ] = False,
    seeds: Annotated[
        str, typer.Option(help="a count (3 -> 0,1,2) or a comma list (0,4,7; '7,' for seed 7 alone)")
    ] = "1",
    jobs: Annotated[
        int, typer.Option(min=1, help="seeds run at once, in processes of one torch thread each")
    ] = 1,
    train_limit: Annotated[
        int | None, typer.Option(min=1, help="stratified subset of the training split")
    ] = None,
    test_limit: Annotated[int | None, typer.Option(min=1, help="stratified subset of the test split")] = None,
    data_seed: Annotated[
        int, typer.Option(min=0, help="seed of the subsets, the corruptions, F_o and the oracle's noise")
    ] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    out: Annotated[Path, typer.Option(help="directory for results.json, results.md and the plots")] = Path(
        "simulation"
    ),
    epochs: Annotated[int, typer.Option(min=1, help="training epochs of Standard, GNT and CAT")] = 8,
    reference_epochs: Annotated[int, typer.Option(min=1, help="training epochs of the oracle's F_o")] = 8,
    reference_train_limit: Annotated[
        int | None,
        typer.Option(min=1, help="F_o's training images, from the whole training split [default: all]"),
    ] = None,
    finetune_epochs: Annotated[int, typer.Option(min=1, help="fine-tuning epochs after each round")] = 1,
    lr: Annotated[float, typer.Option(min=0.0, help="peak SGD learning rate of full training")] = 0.05,
    finetune_lr: Annotated[float, typer.Option(min=0.0, help="peak SGD learning rate of fine-tuning")] = 0.01,
    batch_size: Annotated[int, typer.Option(min=2, help="training batch size")] = 128,
    augment: Annotated[
        str, typer.Option(help="none, or crop-flip (random crop with 4-pixel padding + horizontal flip)")
    ] = "none",
    gnt_sigma_index: Annotated[
        int | None,
        typer.Option(
            min=0, max=90, help="GNT's level as a ladder index, σ = index/100 [default: per dataset]"
        ),
    ] = None,
    oracle_tau: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="τ of Eq. 7: share of noisy copies F_o must get right"),
    ] = 0.95,
    oracle_confidence: Annotated[
        float, typer.Option(min=0.5, max=0.9999, help="confidence of each level's sequential test")
    ] = 0.95,
    oracle_max_draws: Annotated[
        int,
        typer.Option(
            min=32, help="most noisy copies per level (τ = 0.997 needs 2048 to accept with confidence)"
        ),
    ] = 1024,
    suite: Annotated[
        str,
        typer.Option(help="corruption suite: auto (by image size), mnist-c, cifar10-c or imagenet-c-lowres"),
    ] = "auto",
    corruptions: Annotated[
        str, typer.Option(help="comma list of the suite's corruptions to evaluate, or 'all'")
    ] = "all",
    diagnostic_sample: Annotated[
        int, typer.Option(min=0, help="not-queried examples the oracle answers per round (Corollary 2.1)")
    ] = 200,
    bootstrap_resamples: Annotated[
        int, typer.Option(min=100, help="resamples of the bootstrap over seeds and test images")
    ] = 2000,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="corruption suites, F_o and oracle answers [default: OUT/cache]"),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="torch CPU threads [default: torch's choice]")
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="show progress bars")] = True,
) -> None:
    """Simulate AQPL with an oracle model: train, query, fine-tune, and benchmark robustness."""
    from aqpl.datasets import DatasetError
    from worker.ml.corruptions import SUITE_NAMES, suite_corruption_names
    from worker.ml.device import resolve_device
    from worker.ml.models import MODEL_NAMES
    from worker.ml.simulate.config import INT8_WITH_ADAPTIVE, METHODS, SimulationConfig
    from worker.ml.simulate.loop import run_simulation
    from worker.ml.simulate.report import finish, results_markdown, write_results
    from worker.ml.strategies import STRATEGY_NAMES
    from worker.ml.training import AUGMENTATIONS

    dataset_format, dataset_path = parse_dataset(dataset)
    if model not in MODEL_NAMES:
        raise typer.BadParameter(
            f"unknown model {model!r}; choose from {', '.join(MODEL_NAMES)}", param_hint="--model"
        )
    method_names = parse_names(methods, METHODS, "--methods")
    strategy_names = parse_names(strategies, STRATEGY_NAMES, "--strategies")
    if not method_names and not strategy_names:
        raise typer.BadParameter(
            "nothing to simulate: give at least one method or one strategy", param_hint="--methods"
        )
    suite_name = suite.strip().lower()
    if suite_name != "auto" and suite_name not in SUITE_NAMES:
        raise typer.BadParameter(
            f"unknown suite {suite!r}; choose from auto, {', '.join(SUITE_NAMES)}", param_hint="--suite"
        )
    if augment not in AUGMENTATIONS:
        raise typer.BadParameter(
            f"unknown augmentation {augment!r}; choose from {', '.join(AUGMENTATIONS)}",
            param_hint="--augment",
        )
    if not 0.0 < oracle_tau < 1.0:
        raise typer.BadParameter(f"τ must be in (0, 1), got {oracle_tau}", param_hint="--oracle-tau")
    corruption_names = None
    if corruptions.strip().lower() != "all":
        # The suite's own names, or every suite's when it is chosen by image size later.
        allowed = (
            suite_corruption_names(suite_name)
            if suite_name != "auto"
            else tuple(dict.fromkeys(n for s in SUITE_NAMES for n in suite_corruption_names(s)))
        )
        corruption_names = parse_names(corruptions, allowed, "--corruptions")
        if corruption_names == ():
            raise typer.BadParameter("give at least one corruption, or 'all'", param_hint="--corruptions")
    try:
        resolved_device = resolve_device(device)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--device") from None
    if int8_scoring and resolved_device.type != "cpu":
        raise typer.BadParameter(
            f"int8 scoring runs on the CPU only, not on {resolved_device}", param_hint="--device"
        )
    if int8_scoring and adaptive_scoring:
        raise typer.BadParameter(INT8_WITH_ADAPTIVE, param_hint="--int8-scoring")

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    config = SimulationConfig(
        dataset_format=dataset_format,
        dataset_path=dataset_path,
        model=model,
        methods=method_names,
        strategies=strategy_names,
        rounds=rounds,
        budget=budget,
        draws=draws,
        adaptive_scoring=adaptive_scoring,
        int8_scoring=int8_scoring,
        seeds=parse_seeds(seeds),
        train_limit=train_limit,
        test_limit=test_limit,
        data_seed=data_seed,
        device=device,
        epochs=epochs,
        reference_epochs=reference_epochs,
        reference_train_limit=reference_train_limit,
        finetune_epochs=finetune_epochs,
        lr=lr,
        finetune_lr=finetune_lr,
        batch_size=batch_size,
        augment=augment,
        gnt_sigma_index=gnt_sigma_index,
        oracle_tau=oracle_tau,
        oracle_confidence=oracle_confidence,
        oracle_max_draws=oracle_max_draws,
        suite=None if suite_name == "auto" else suite_name,
        corruption_names=corruption_names,
        diagnostic_sample=diagnostic_sample,
        bootstrap_resamples=bootstrap_resamples,
        cache_dir=cache_dir if cache_dir is not None else out / "cache",
    )
    try:
        run = run_simulation(config, progress=progress, jobs=jobs)
    except DatasetError as error:
        raise typer.BadParameter(str(error), param_hint="--dataset") from None
    except ValueError as error:  # e.g. a corruption the chosen suite does not have
        raise typer.BadParameter(str(error), param_hint="--corruptions") from None
    results = finish(run)
    paths = write_results(results, out)
    typer.echo(results_markdown(results))
    timing = results["timing"]
    typer.echo(f"wall time: {timing['wall_seconds']:.1f} s, CPU time: {timing['cpu_seconds']:.1f} s")
    for path in paths:
        typer.echo(f"wrote {path}")


if __name__ == "__main__":
    typer.run(simulate)
