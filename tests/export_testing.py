"""Tiny registered enhancers for the export tests (test_export, test_export_fixed_size): "toy_export" and
"toy_export_ratio", their fixtures, and image helpers."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from train import registry
from train.registry import ExtraInput, ModelSpec

RATIO = ExtraInput("ratio", 1.0, "exposure ratio")


# === Toy enhancers ===


@keras.saving.register_keras_serializable(package="tests_export")
class ToyEnhancer(keras.Model):
    """Three 3×3 convs (receptive radius 3) and a sigmoid; with `use_ratio`, the residual is scaled by `ratio`.

    The middle conv has ≥ 1024 weights, the converter's threshold for dynamic-range quantization of a tensor."""

    license_notice = None  # the enhancer contract: no licence travels with these weights

    def __init__(self, use_ratio: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.use_ratio = use_ratio
        self.conv1 = keras.layers.Conv2D(16, 3, padding="same", activation="relu")
        self.conv2 = keras.layers.Conv2D(16, 3, padding="same", activation="relu")
        self.conv3 = keras.layers.Conv2D(3, 3, padding="same")

    def call(self, image, ratio=None):
        residual = self.conv3(self.conv2(self.conv1(image)))
        if self.use_ratio:
            residual = residual * ratio[:, None, None, None]
        return keras.ops.sigmoid(residual + 4.0 * image - 2.0)

    def get_config(self):
        return {**super().get_config(), "use_ratio": self.use_ratio}


def _build_toy(use_ratio: bool, preset: str | None = None, weights: str | None = None) -> keras.Model:
    keras.utils.set_random_seed(7)
    model = ToyEnhancer(use_ratio)
    model(np.zeros((1, 8, 8, 3), np.float32), **({"ratio": np.ones((1,), np.float32)} if use_ratio else {}))
    if weights is not None:
        model.load_weights(weights)
    return model


registry.register(ModelSpec("toy_export", "test enhancer", lambda preset=None, weights=None:
                            _build_toy(False, preset, weights), presets=("tiny",), default_preset="tiny"))
registry.register(ModelSpec("toy_export_ratio", "test enhancer with a ratio",
                            lambda preset=None, weights=None: _build_toy(True, preset, weights),
                            presets=("tiny",), default_preset="tiny", extra_inputs=(RATIO,)))


def random_images(shape, seed=0):
    return np.random.default_rng(seed).uniform(0.0, 0.4, shape).astype(np.float32)


def psnr_db(a, b):
    return float(10.0 * np.log10(1.0 / max(np.mean((np.asarray(a) - np.asarray(b)) ** 2), 1e-20)))


@pytest.fixture(scope="module")
def toy():
    return registry.get("toy_export").build_enhancer(preset="tiny")


@pytest.fixture(scope="module")
def toy_ratio():
    return registry.get("toy_export_ratio").build_enhancer(preset="tiny")
