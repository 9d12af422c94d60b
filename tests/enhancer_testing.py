"""A tiny registered enhancer and ways to run `llie` from a test: in process (with capsys, or without it for
module-scoped fixtures), or in a child process with its peak memory; and a reader of the TensorBoard events
that training writes. Not a test module itself.

`scale-test`: clip(image × factor × boost, 0, 1), factor from the preset ("double" 2, "triple" 3) or from a text
"weights" file holding a number; `boost` is a per-image extra input (flag --boost, default 1) that the gt-ratio
protocol derives from the ground truth. `plain-test`: the same without extras, presets or reference hook.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
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


def _main(argv) -> int:
    """`cli.main` of `argv` (paths become strings); argparse exits become statuses too."""
    try:
        return cli.main([str(arg) for arg in argv])
    except SystemExit as exit_:
        return exit_.code


def run_llie(capsys, *argv) -> tuple[int, str, str]:
    """`llie argv...` in process → (exit status, stdout, stderr), read from `capsys`."""
    status = _main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def llie(*argv) -> tuple[int, str, str]:
    """`llie argv...` in process → (exit status, stdout, stderr), captured without capsys (so usable in
    module-scoped fixtures)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = _main(argv)
    return status, out.getvalue(), err.getvalue()


# A fresh interpreter that runs `python -m train.cli ARGV` as its only child and prints the child's exit status
# and peak RSS: RUSAGE_CHILDREN of that wrapper is the llie process alone, not this test process's other children.
_PEAK_RSS_SCRIPT = textwrap.dedent("""
    import resource, subprocess, sys
    status = subprocess.run([sys.executable, "-m", "train.cli", *sys.argv[1:]]).returncode
    print(status, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)  # KiB on Linux
""")


def llie_peak_rss(*argv) -> tuple[int, str, int]:
    """`llie argv...` in a child process → (exit status, its stderr, its peak resident memory in bytes)."""
    result = subprocess.run([sys.executable, "-c", _PEAK_RSS_SCRIPT, *map(str, argv)], capture_output=True,
                            text=True, check=True)
    status, peak_kib = map(int, result.stdout.split()[-2:])
    return status, result.stderr, peak_kib * 1024


def error_lines(stderr: str, command: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(f"llie {command}: error: ")]


def read_events(folder) -> dict[str, dict[int, tuple[str, np.ndarray]]]:
    """{tag: {step: (plugin name, value)}} of every TensorBoard event file under `folder`. A tag written twice
    at one step (e.g. an epoch logged again after a resume) fails the calling test."""
    found: dict[str, dict[int, tuple[str, np.ndarray]]] = {}
    plugins: dict[str, str] = {}
    for path in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name or plugins.get(value.tag, "")
                plugins[value.tag] = plugin
                steps = found.setdefault(value.tag, {})
                assert event.step not in steps, f"{folder}: {value.tag} written twice at step {event.step}"
                steps[event.step] = (plugin, tf.make_ndarray(value.tensor))
    return found


def read_scalars(folder) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of the scalar summaries of `read_events(folder)`."""
    return {tag: {step: float(value) for step, (_, value) in steps.items()}
            for tag, steps in read_events(folder).items()
            if all(plugin == "scalars" for plugin, _ in steps.values())}
