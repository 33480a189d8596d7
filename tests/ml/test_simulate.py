"""`aqpl simulate` end to end on a tiny generated dataset, and its input errors."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from cli.simulate import simulate

METHODS = ("standard", "gnt", "cat", "gnt-ft", "cat-ft", "aqpl-gnt", "aqpl-cat")
STRATEGIES = ("random", "clean_uncertainty", "noise_uncertainty", "aqpl")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    app.command()(simulate)
    return app


def _invoke(*args: str) -> Any:
    # A wide terminal keeps error messages on one line for the assertions.
    return CliRunner().invoke(_app(), list(args), env={"COLUMNS": "400", "NO_COLOR": "1"})


def _plain(text: str) -> str:
    """Output without the error box's frame characters and line breaks."""
    return re.sub(r"[\s│╭╮╰╯─]+", " ", text)


def _three_class_images(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """12x12 grey images of a horizontal bar, a vertical bar or a diagonal (classes 0, 1, 2), speckled."""
    labels = np.arange(count) % 3
    images = rng.integers(0, 60, size=(count, 12, 12), dtype=np.uint8)
    for image, label in zip(images, labels, strict=True):
        offset = int(rng.integers(3, 9))
        if label == 0:
            image[offset, 2:10] = 230
        elif label == 1:
            image[2:10, offset] = 230
        else:
            np.fill_diagonal(image, 230)
    return images, labels.astype(np.int64)


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    # Tiny models on a shared 2-core machine: a second thread only adds synchronisation (5-10x slower).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def tiny_npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    x_train, y_train = _three_class_images(60, rng)
    x_test, y_test = _three_class_images(30, rng)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


QUICK = (
    "--model", "small_cnn",
    "--rounds", "2",
    "--budget", "3",
    "--draws", "4",
    "--seeds", "2",
    "--epochs", "1",
    "--finetune-epochs", "1",
    "--reference-epochs", "1",
    "--batch-size", "16",
    "--corruptions", "gaussian_noise,brightness",
    "--device", "cpu",
    "--no-progress",
)  # fmt: skip


def test_simulate_end_to_end_writes_results_table_and_plots(tiny_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _invoke("--dataset", f"npz:{tiny_npz}", "--out", str(out), *QUICK)
    assert result.exit_code == 0, result.output

    results = json.loads((out / "results.json").read_text())
    assert set(results["methods"]) == set(METHODS)
    for row in results["methods"].values():
        for metric in ("clean", "gaussian", "corruptions"):
            assert 0.0 <= row[metric] <= 1.0
            assert row[f"{metric}_std"] >= 0.0
    assert set(results["curves"]) == set(STRATEGIES)
    for points in results["curves"].values():
        # Round 0 is the GNT model; every round asks 2B = 6 new examples.
        assert [p["queries"] for p in points] == [0, 6, 12]
        for point in points:
            assert all(0.0 <= point[m] <= 1.0 for m in ("clean", "gaussian", "corruptions"))
    assert results["config"]["seeds"] == [0, 1]
    assert results["config"]["corruption_names"] == ["gaussian_noise", "brightness"]
    assert results["dataset"]["suite"] == "imagenet-c-lowres"  # 12x12 images: the fallback suite

    # Every curve starts at GNT, and AQPL-GNT is the last point of the `aqpl` curve, per seed.
    for seed_result in results["per_seed"]:
        gnt = seed_result["methods"]["gnt"]
        aqpl_gnt = seed_result["methods"]["aqpl-gnt"]
        for points in seed_result["curves"].values():
            assert points[0]["clean"] == gnt["clean"]
        assert aqpl_gnt["gaussian"] == seed_result["curves"]["aqpl"][-1]["gaussian"]
        assert seed_result["oracle"]["examples_answered"] >= 12

    markdown = (out / "results.md").read_text()
    assert "| Method | Clean | Gaussian | Corruptions | Clean, mean of rounds |" in markdown
    for label in (
        "| Standard |", "| GNT |", "| CAT |", "| GNT-FT |", "| CAT-FT |", "| AQPL-GNT |", "| AQPL-CAT |",
        "| Random | 12 |", "## Comparisons", "## Corollary 2.1",
    ):  # fmt: skip
        assert label in markdown
    for name in ("curves_clean", "curves_gaussian", "curves_corruptions", "comparisons", "diagnostics"):
        assert (out / f"{name}.png").read_bytes().startswith(PNG_MAGIC), name
    assert "AQPL-GNT" in result.output


def test_simulate_without_curves_writes_no_plots(tiny_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [a for a in QUICK]
    args[args.index("--seeds") + 1] = "5,"
    result = _invoke(
        "--dataset", f"npz:{tiny_npz}", "--out", str(out), "--methods", "gnt", "--strategies", "", *args
    )
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert list(results["methods"]) == ["gnt"]
    assert results["curves"] == {}
    assert results["config"]["seeds"] == [5]
    assert not list(out.glob("curves_*.png"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--methods", "gnt,foo"], "unknown 'foo'"),
        (["--strategies", "aqpl,bogus"], "unknown 'bogus'"),
        (["--dataset", "mnist"], "the mnist format needs a path"),
        (["--dataset", "tarball:x.tgz"], "unknown dataset format 'tarball'"),
        (["--dataset", "npz:/no/such/file.npz"], "/no/such/file.npz does not exist"),
        (["--model", "vgg"], "unknown model 'vgg'"),
        (["--seeds", "a,b"], "expected a count"),
        (["--corruptions", "fog,rain"], "unknown 'rain'"),
        (["--suite", "cifar100-c"], "unknown suite 'cifar100-c'"),
        (["--suite", "mnist-c", "--corruptions", "frost"], "unknown 'frost'"),
        (["--augment", "mixup"], "unknown augmentation 'mixup'"),
        (["--oracle-tau", "1.0"], "τ must be in (0, 1)"),
        (["--methods", "", "--strategies", ""], "nothing to simulate"),
        (["--int8-scoring", "--adaptive-scoring"], "int8 scoring and adaptive scoring cannot be combined"),
    ],
)
def test_simulate_rejects_bad_input_with_a_clear_message(
    args: list[str], message: str, tmp_path: Path
) -> None:
    result = _invoke(*args, "--out", str(tmp_path / "out"), "--no-progress")
    assert result.exit_code == 2, result.output
    assert message in _plain(result.output)
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_simulate_reports_a_malformed_dataset_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip archive")
    result = _invoke("--dataset", f"npz:{broken}", "--out", str(tmp_path / "out"), *QUICK)
    assert result.exit_code == 2, result.output
    assert "broken.npz" in _plain(result.output)
    assert "Traceback" not in result.output


def test_command_defaults_match_the_simulation_config() -> None:
    """The command repeats SimulationConfig's defaults (so --help needs no torch): they must agree."""
    import inspect

    from worker.ml.simulate.config import SimulationConfig

    config = SimulationConfig()
    options = inspect.signature(simulate).parameters
    for name in (
        "model", "rounds", "budget", "draws", "adaptive_scoring", "int8_scoring", "data_seed", "device",
        "epochs", "reference_epochs", "reference_train_limit", "finetune_epochs", "lr", "finetune_lr",
        "batch_size", "augment", "gnt_sigma_index", "oracle_tau", "oracle_confidence", "oracle_max_draws",
        "train_limit", "test_limit", "diagnostic_sample", "bootstrap_resamples",
    ):  # fmt: skip
        assert options[name].default == getattr(config, name), name
    assert options["methods"].default.split(",") == list(config.methods)
    assert sorted(options["strategies"].default.split(",")) == sorted(config.strategies)


def _tiny_config(dataset: Path, **overrides: Any) -> Any:
    """A SimulationConfig of one quick seed on `dataset`, with `overrides`."""
    from worker.ml.simulate.config import SimulationConfig

    options: dict[str, Any] = {
        "methods": ("gnt", "aqpl-gnt"),
        "strategies": ("random",),
        "rounds": 1,
        "budget": 2,
        "draws": 3,
        "epochs": 1,
        "reference_epochs": 1,
        "finetune_epochs": 1,
        "batch_size": 16,
        "oracle_max_draws": 64,
        "diagnostic_sample": 10,
        "bootstrap_resamples": 200,
        "corruption_names": ("brightness",),
        "device": "cpu",
    }
    return SimulationConfig(dataset_format="npz", dataset_path=dataset, **{**options, **overrides})


def test_run_simulation_is_deterministic_on_cpu(tiny_npz: Path) -> None:
    from worker.ml.simulate.loop import run_simulation

    config = _tiny_config(tiny_npz)
    first, second = (run_simulation(config, progress=False).results for _ in range(2))
    for results in (first, second):
        del results["timing"]
    assert first == second
    # Two chains (random, and aqpl for AQPL-GNT) ask 2B = 4 each (an example both pick is asked once),
    # and the diagnostic asks about 10 examples aqpl did not query.
    assert 4 + 10 <= first["per_seed"][0]["oracle"]["examples_answered"] <= 8 + 10


def test_adaptive_scoring_spends_fewer_passes_and_completes_its_picks(tiny_npz: Path) -> None:
    from worker.ml.simulate.loop import run_simulation

    def passes(adaptive: bool) -> dict[str, int]:
        # M = 20 is above the pilot of 8, so adaptive scoring can stop early.
        config = _tiny_config(
            tiny_npz,
            methods=("gnt",),
            strategies=("aqpl",),
            rounds=2,
            budget=3,
            draws=20,
            adaptive_scoring=adaptive,
        )
        counted: dict[str, int] = run_simulation(config, progress=False).results["per_seed"][0][
            "forward_passes"
        ]
        return counted

    exact, adaptive = passes(False), passes(True)
    assert exact == {"scoring": 2 * 60 * 20, "completion": 0}  # two rounds, 60 examples, M = 20
    assert adaptive["scoring"] < exact["scoring"]
    assert adaptive["completion"] > 0  # some pick had stopped on its pilot and was drawn to M
    assert adaptive["scoring"] + adaptive["completion"] < exact["scoring"]


def test_simulate_with_int8_scoring(tiny_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [a for a in QUICK]
    args[args.index("--seeds") + 1] = "1"
    args[args.index("--rounds") + 1] = "1"
    result = _invoke(
        "--dataset", f"npz:{tiny_npz}", "--out", str(out), "--methods", "gnt,aqpl-gnt",
        "--strategies", "aqpl", "--int8-scoring", "--diagnostic-sample", "0", *args,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["int8_scoring"] is True
    seed = results["per_seed"][0]
    assert seed["forward_passes"]["scoring"] == 60 * 4  # one round, 60 examples, M = 4
    assert 0.0 <= results["methods"]["aqpl-gnt"]["gaussian"] <= 1.0
    assert seed["oracle"]["examples_answered"] == 6


def _results_of(config: Any) -> dict[str, Any]:
    from worker.ml.simulate.loop import run_simulation
    from worker.ml.simulate.report import finish

    results: dict[str, Any] = finish(run_simulation(config, progress=False))
    return results


def test_controls_change_no_sigma_and_methods_report_the_mean_over_rounds(tiny_npz: Path) -> None:
    config = _tiny_config(tiny_npz, methods=("gnt", "gnt-ft", "aqpl-gnt"), strategies=(), rounds=2)
    results = _results_of(config)
    for seed in results["per_seed"]:
        gnt = seed["methods"]["gnt"]
        control = seed["methods"]["gnt-ft"]
        assert [p["queries"] for p in control["rounds"]] == [0, 0, 0]
        assert {p["mean_sigma_index"] for p in control["rounds"]} == {gnt["mean_sigma_index"]}
        aqpl = seed["methods"]["aqpl-gnt"]
        assert [p["queries"] for p in aqpl["rounds"]] == [0, 4, 8]
        for name in ("clean", "gaussian", "corruptions"):
            rounds = [p[name] for p in aqpl["rounds"][1:]]
            assert aqpl["mean_over_rounds"][name] == pytest.approx(sum(rounds) / len(rounds))
    assert not seed.get("diagnostics", {}).get("none from gnt")


def test_paired_chains_given_the_same_sigma_end_identical(
    tiny_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An oracle that confirms every level leaves σ as it was: then a chain that asks (AQPL, Random) and
    the control that asks nothing must end with identical models: only which σ_i changed may differ."""
    from worker.ml.oracle import SimulatedOracle

    def confirm(self: Any, indices: np.ndarray) -> np.ndarray:
        return np.full(len(indices), 50, dtype=np.int64)  # the GNT level of this dataset family

    monkeypatch.setattr(SimulatedOracle, "answer", confirm)
    config = _tiny_config(
        tiny_npz, methods=("gnt-ft", "aqpl-gnt"), strategies=("random", "aqpl"), rounds=2, gnt_sigma_index=50
    )
    from worker.ml.simulate.loop import run_simulation

    run = run_simulation(config, progress=False)
    seed = run.results["per_seed"][0]
    control = seed["methods"]["gnt-ft"]["rounds"]
    for chain in (seed["methods"]["aqpl-gnt"]["rounds"], seed["curves"]["random"]):
        for point, reference in zip(chain, control, strict=True):
            for name in ("clean", "gaussian", "corruptions", "mean_sigma_index"):
                assert point[name] == reference[name]
    for round_index in range(3):
        for name in ("clean", "corruptions"):
            np.testing.assert_array_equal(
                run.images[0][("curve", "random", round_index)][name],
                run.images[0][("method", "gnt-ft", round_index)][name],
            )


def test_simulate_writes_comparisons_and_diagnostics_and_picks_mnist_c(tmp_path: Path) -> None:
    """Any MNIST-format folder: the 28x28 grey images get the mnist-c suite by themselves."""
    from tests.ml.test_datasets import write_mnist

    write_mnist(tmp_path / "mnist", gz=True, train=60, test=30)
    out = tmp_path / "out"
    args = [a for a in QUICK if a not in ("--corruptions", "gaussian_noise,brightness")]
    result = _invoke(
        "--dataset", f"mnist:{tmp_path / 'mnist'}", "--out", str(out), "--methods", "gnt,gnt-ft,aqpl-gnt",
        "--strategies", "random,aqpl", "--corruptions", "shot_noise,rotate", "--diagnostic-sample", "20",
        "--bootstrap-resamples", "200", *args,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"]["suite"] == "mnist-c"
    assert results["dataset"]["corruptions"] == {"shot_noise": [5], "rotate": [2]}
    assert results["oracle"]["tau"] == 0.95 and results["oracle"]["reference_train_examples"] == 60

    keys = {"a", "b", "metric", "queries", "mean", "ci95", "ci95_bootstrap", "n_seeds", "p_value", "over"}
    comparisons = results["comparisons"]
    assert all(keys <= set(entry) for entry in comparisons)
    pairs = {(e["a"], e["b"], e["metric"], e["over"], e["queries"]) for e in comparisons}
    for metric in ("clean", "gaussian", "corruptions"):
        assert ("aqpl", "random", metric, "round 2", 12) in pairs  # AQPL − Random at each query count
        assert ("aqpl", "random", metric, "round 1", 6) in pairs
        assert ("aqpl-gnt", "gnt-ft", metric, "last round", 12) in pairs
        assert ("aqpl-gnt", "gnt-ft", metric, "mean over query rounds", None) in pairs
    for entry in comparisons:
        assert entry["n_seeds"] == 2
        low, high = entry["ci95"]
        assert low <= entry["mean"] <= high
        assert entry["sentence"]

    (chain,) = results["diagnostics"]
    assert chain == "aqpl from gnt"
    rounds = results["diagnostics"][chain]
    assert [row["round"] for row in rounds] == [1, 2]
    for row in rounds:
        for side in ("excessive", "deficient"):
            moves = row["sides"][side]
            assert moves["queried"] == 2 * 3  # B = 3 per side, two seeds pooled
            assert moves["down"] + moves["up"] + moves["unchanged"] == moves["queried"]
        assert row["sample"] == 2 * 20
    markdown = (out / "results.md").read_text()
    assert "`mnist-c` suite" in markdown
    assert (
        "AQPL vs Random on Gaussian noise at 12 queries" in markdown
        or "Random on Gaussian noise by" in markdown
    )


def test_parallel_seeds_give_the_same_results_as_one_process(tiny_npz: Path, tmp_path: Path) -> None:
    """--jobs 2 runs each seed in its own process (one torch thread, inputs from the cache): same numbers."""
    from worker.ml.simulate.loop import run_simulation

    config = _tiny_config(tiny_npz, seeds=(0, 1), cache_dir=tmp_path / "cache")
    serial = run_simulation(config, progress=False).results
    parallel = run_simulation(config, progress=False, jobs=2).results
    assert parallel["timing"]["jobs"] == 2
    assert [seed["seed"] for seed in parallel["per_seed"]] == [0, 1]
    for together, alone in zip(parallel["per_seed"], serial["per_seed"], strict=True):
        # The oracle's cost differs (in one process seed 1 reuses seed 0's answers); its answers do not.
        assert together.pop("oracle")["examples_answered"] == alone.pop("oracle")["examples_answered"]
        assert together == alone
    with pytest.raises(ValueError, match="need a cache_dir"):
        run_simulation(_tiny_config(tiny_npz), progress=False, jobs=2)
