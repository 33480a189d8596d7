"""Pictures of the three corruption suites on real test images, for docs/datasets.md.

One PNG per suite, `corruptions-<suite>.png` under --out: the clean images, Gaussian noise at the
suite's levels, then each corruption at each of its severities (worker/ml/corruptions/grid.py).
mnist-c is drawn on MNIST test digits; cifar10-c and the fallback imagenet-c-lowres on CIFAR-10
test images (the same ones, so the two suites' parameters can be compared side by side). The images
are a seeded, class-stratified pick of the test set; the corruptions use seed 0, as a run does.

    .venv/bin/python benchmarks/corruption_grids.py                # ../shared/data -> docs/, ~15 s
    .venv/bin/python benchmarks/corruption_grids.py --data /path/to/data --out /tmp/grids
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from aqpl.datasets import load_dataset
from worker.ml.corruptions import build_corruption_suite
from worker.ml.corruptions.grid import suite_grid

# suite -> (dataset format, path under --data, images per cell, enlargement)
SOURCES = {
    # MNIST-C uses one severity per corruption, so its rows are sparse: more digits per cell fill them.
    # Two CIFAR images per cell keep each PNG near 0.5 MB (photo pixels hardly compress).
    "mnist-c": ("mnist", "mnist", 4, 3),
    "cifar10-c": ("npz", "cifar10-subset.npz", 2, 3),
    "imagenet-c-lowres": ("npz", "cifar10-subset.npz", 2, 3),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=Path("../shared/data"), help="folder with mnist/ and cifar10-subset.npz"
    )
    parser.add_argument("--out", type=Path, default=Path("docs"), help="folder the PNGs are written to")
    parser.add_argument("--seed", type=int, default=0, help="picks the test images and seeds the corruptions")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    for suite_name, (dataset_format, relative_path, images_per_cell, scale) in SOURCES.items():
        started = time.perf_counter()
        # test_limit = 10 takes one image per class; the grid shows the first few of them.
        dataset = load_dataset(dataset_format, args.data / relative_path, test_limit=10, seed=args.seed)
        clean = dataset.x_test[:images_per_cell]
        suite = build_corruption_suite(clean, dataset_key=dataset.name, seed=args.seed, suite=suite_name)
        title = f"{suite_name} on {len(clean)} {dataset.name} test images (seed {args.seed})"
        picture = suite_grid(suite, clean, images_per_cell=images_per_cell, scale=scale, title=title)
        path = args.out / f"corruptions-{suite_name}.png"
        picture.save(path, optimize=True)
        print(
            f"wrote {path}: {picture.width}x{picture.height} px, {path.stat().st_size / 1024:.0f} KiB, "
            f"{len(suite.corruptions)} corruptions, {len(list(suite.items()))} cells "
            f"({time.perf_counter() - started:.1f} s)"
        )


if __name__ == "__main__":
    main()
