"""A tiny registered enhancer and an in-process `llie` runner for the CLI tests (enhance, evaluate, cli).

`scale-test`: clip(image × factor × boost, 0, 1), factor from the preset ("double" 2, "triple" 3) or from a text
"weights" file holding a number; `boost` is a per-image extra input (flag --boost, default 1) that the gt-ratio
protocol derives from the ground truth. `plain-test`: the same without extras, presets or reference hook.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from train import cli, registry
from train.errors import NotAvailableError
from train.registry import ExtraInput, ModelSpec

FACTORS = {"double": 2.0, "triple": 3.0}


class ScaleEnhancer(keras.Model):
    """(N, H, W, 3) in [0,1] → clip(x · factor · boost, 0, 1)."""

    def __init__(self, factor: float = 2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, image, boost=None, training=None):
        scale = self.factor if boost is None else self.factor * ops.reshape(boost, (-1, 1, 1, 1))
        return ops.clip(image * scale, 0.0, 1.0)


def build_scale_enhancer(preset: str | None = None, weights: str | None = None) -> ScaleEnhancer:
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise NotAvailableError(f"{path}: no such weights file")
        return ScaleEnhancer(float(path.read_text()))
    return ScaleEnhancer(FACTORS[preset])


def boost_from_reference(enhancer: ScaleEnhancer, low: np.ndarray, high: np.ndarray) -> dict[str, np.ndarray]:
    """gt-ratio hook: the boost that makes the unclipped output's mean equal the ground truth's."""
    return {"boost": np.array([np.mean(high) / (np.mean(low) * enhancer.factor)], np.float32)}


SCALE_SPEC = ModelSpec(
    name="scale-test", summary="test enhancer", build_enhancer=build_scale_enhancer, presets=tuple(FACTORS),
    default_preset="double", extra_inputs=(ExtraInput("boost", 1.0, "extra multiplier"),),
    extras_from_reference=boost_from_reference)
PLAIN_SPEC = ModelSpec(name="plain-test", summary="test enhancer without extras",
                       build_enhancer=lambda preset=None, weights=None: ScaleEnhancer(2.0))


@pytest.fixture
def test_models(monkeypatch):
    """Registers `scale-test` and `plain-test` for one test."""
    for spec in (SCALE_SPEC, PLAIN_SPEC):
        monkeypatch.setitem(registry._REGISTERED, spec.name, spec)


def run_llie(capsys, *argv: str) -> tuple[int, str, str]:
    """`llie argv...` in process → (exit status, stdout, stderr); argparse exits become statuses too."""
    try:
        status = cli.main([str(arg) for arg in argv])
    except SystemExit as exit_:
        status = exit_.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def error_lines(stderr: str, command: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(f"llie {command}: error: ")]
