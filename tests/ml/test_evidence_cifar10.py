"""benchmarks/evidence_cifar10.sh runs (shrunk) end to end; the run-time estimator counts its work right."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import SHARED_DATA
from worker.ml.simulate.config import SimulationConfig

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "evidence_cifar10.sh"
CIFAR_SUBSET = SHARED_DATA / "cifar10-subset.npz"


def _estimator() -> ModuleType:
    """benchmarks/ is not a package: load the script as a module (registered first, for dataclasses)."""
    spec = importlib.util.spec_from_file_location(
        "estimate_simulation_time", REPO / "benchmarks" / "estimate_simulation_time.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _run_script(*overrides: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *overrides],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHON": sys.executable, **(env or {})},
        check=False,
    )


@pytest.mark.slow
@pytest.mark.skipif(
    not CIFAR_SUBSET.is_file(), reason=f"{CIFAR_SUBSET} is absent (set AQPL_TEST_SHARED_DATA)"
)
def test_evidence_script_runs_its_configuration_shrunk(tmp_path: Path) -> None:
    """The script's own options, with the sizes overridden by appended options (the last one wins)."""
    out = tmp_path / "out"
    result = _run_script(
        "--dataset", f"npz:{CIFAR_SUBSET}", "--device", "cpu", "--train-limit", "40", "--test-limit", "10",
        "--rounds", "1", "--budget", "2", "--draws", "2", "--epochs", "1", "--reference-epochs", "1",
        "--reference-train-limit", "40", "--seeds", "1", "--corruptions", "brightness,contrast",
        "--diagnostic-sample", "4", "--bootstrap-resamples", "100", "--oracle-max-draws", "32",
        "--strategies", "random,aqpl", "--no-progress", "--threads", "1", "--out", str(out),
        env={"CIFAR10_DIR": str(tmp_path / "no-cifar10")},  # --dataset overrides it: no exit 2
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    config = results["config"]
    assert results["dataset"]["suite"] == "cifar10-c"
    assert results["dataset"]["corruptions"] == {"brightness": [1, 2, 3, 4, 5], "contrast": [1, 2, 3, 4, 5]}
    assert (config["model"], config["augment"], config["budget"], config["rounds"]) == (
        "resnet18",
        "crop-flip",
        2,
        1,
    )
    assert config["methods"] == ["standard", "gnt", "cat", "gnt-ft", "cat-ft", "aqpl-gnt", "aqpl-cat"]
    assert config["finetune_epochs"] == 1 and config["device"] == "cpu"
    assert results["comparisons"]
    assert set(results["diagnostics"]) == {"aqpl from gnt", "aqpl from cat"}
    assert "CIFAR-10 evidence run:" in result.stdout


def test_evidence_script_says_when_cifar10_is_missing(tmp_path: Path) -> None:
    missing = tmp_path / "cifar-10-batches-py"
    result = _run_script(env={"CIFAR10_DIR": str(missing)})
    assert result.returncode == 2
    assert f"{missing}/data_batch_1 is missing" in result.stderr
    assert "CIFAR10_DIR" in result.stderr


def test_estimator_counts_the_work_of_a_tiny_configuration() -> None:
    """Counted by hand: chain_plan gives bases gnt, cat and chains (gnt, random), (gnt, aqpl), (gnt, none)
    (aqpl-gnt is the aqpl curve's chain); 65 training images at batch 16 train on 64 per epoch."""
    estimator = _estimator()
    config = SimulationConfig(
        model="small_cnn",
        methods=("gnt", "cat", "gnt-ft", "aqpl-gnt"),
        strategies=("random", "aqpl"),
        rounds=2,
        budget=3,
        draws=4,
        seeds=(0, 1),
        epochs=2,
        reference_epochs=3,
        finetune_epochs=1,
        batch_size=16,
        suite="mnist-c",
        corruption_names=("shot_noise", "rotate"),  # one severity each in MNIST-C
        diagnostic_sample=5,
    )
    work = estimator.count_work(
        config,
        train_size=65,
        test_size=10,
        reference_train_size=50,
        oracle_levels=2,
        oracle_draws_per_level=10,
    )
    assert work.train == 2 * 2 * 2 * 64  # seeds x bases x epochs x images per epoch
    assert work.reference == 3 * 50  # F_o once per run; 50 % 16 = 2, nothing dropped
    assert work.finetune == 2 * 3 * 2 * 1 * 64  # seeds x chains x rounds x epochs x images
    assert work.cat_probe == 2 * 2 * 65  # seeds x epochs (warm-up 1) x examples
    # Per seed: round 1 once for start gnt with M = 4, round 2 for the aqpl chain alone; M + 1 clean.
    assert work.score == 2 * 2 * 65 * (4 + 1)
    # Per seed 2 bases + 3 chains x 2 rounds = 8 models, 10 images x (clean + 5 Gaussian + 2 sets).
    assert work.evaluate == 2 * 8 * 10 * (1 + 5 + 2)
    # Per seed: 2 querying chains x 2 rounds x 2B = 24, plus the diagnostic sample 5; two seeds: 58.
    assert work.oracle_examples == 58
    assert work.oracle == 58 * 2 * 10
    assert work.corrupt == 10 * (5 + 2)


def test_estimator_caps_the_oracle_at_the_training_set_and_keeps_the_last_batch() -> None:
    estimator = _estimator()
    config = SimulationConfig(
        methods=("aqpl-gnt",), strategies=(), rounds=3, budget=10, draws=2, seeds=(0, 1, 2), batch_size=8
    )
    work = estimator.count_work(config, train_size=40, test_size=1)
    assert work.oracle_examples == 40  # per seed min(3 x 2B, 40) + min(200, 40) = 80, at most 40 in all
    assert work.oracle == 40 * estimator.ORACLE_LEVELS * estimator.ORACLE_DRAWS_PER_LEVEL
    assert work.train == 3 * 1 * 8 * 40  # 40 % 8 = 0: every image trains
    assert estimator.epoch_images(17, 8) == 16 and estimator.epoch_images(18, 8) == 18
