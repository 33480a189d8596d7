"""The common-corruption benchmark's names and severities: one list for the API and worker/ml.

The 15 corruptions of ImageNet-C/CIFAR-10-C as `imagecorruptions-imaug` names them, each at
severities 1..5. Pure Python so the API (no torch) and worker/ml can both import it.
"""

from __future__ import annotations

CORRUPTION_NAMES: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
CORRUPTION_SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
