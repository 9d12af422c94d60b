"""Tiny dataset folders written on the fly for the folder / pipeline / synthetic tests."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from tests.reference import shared_data_path


def coded_image(index: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """uint8 (H, W, 3): channel 0 holds 10·index everywhere (identifies the image), channels 1-2 are noise."""
    rng = np.random.default_rng([seed, index])
    image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    image[..., 0] = 10 * index
    return image


def invert(low: np.ndarray) -> np.ndarray:
    """The pixelwise relation high = f(low) of the test pairs: 255 - low."""
    return 255 - low


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def write_pairs(folder: Path, names: Sequence[str], size: tuple[int, int] = (12, 16), low: str = "low",
                high: str = "high", seed: int = 0) -> list[tuple[Path, Path]]:
    """folder/{low,high}/<name> pairs, the i-th coded with index i, high = invert(low)."""
    pairs = []
    for index, name in enumerate(names):
        image = coded_image(index, size, seed)
        pairs.append((save(folder / low / name, image), save(folder / high / name, invert(image))))
    return pairs


def real_low_images(count: int, size: tuple[int, int]) -> list[np.ndarray]:
    """The first `count` real LOL eval15 low-light images, resized to (H, W) = `size`, uint8 RGB."""
    folder = shared_data_path("lol_eval15_lowonly/low_600x396")
    images = []
    for path in sorted(folder.glob("*.png"))[:count]:
        with Image.open(path) as opened:
            images.append(np.asarray(opened.convert("RGB").resize(size[::-1], Image.Resampling.BOX)))
    return images
