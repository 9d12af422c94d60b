"""EnlightenGAN deployment through the CLI: `llie convert/export/enhance --model enlightengan` with the calibrated
fixture weights (the README's `seed0_net_G_A.pth` content): SavedModel and TFLite against the Keras enhancer at
several sizes, builtin TFLite ops only, the licence beside every artefact, and tiled 4K enhancement in bounded
memory.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from enlighten_tf.enhancer import LICENSE_NOTICE, build_enhancer
from tests.reference import reference, reference_path
from train import cli
from train.io import read_image, to_uint8
from train.tflite import TFLiteEnhancer

# (H, W): not a multiple of 16 (reflect padding), a multiple, and wider than 2200 with a tiny odd height (the
# average-pooled path, whose odd sizes come back one pixel short and are restored by the enhancer).
SIZES = ((52, 75), (64, 96), (17, 2209))


def _llie(*argv) -> tuple[int, str]:
    """`llie argv...` in process → (exit status, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = cli.main([str(arg) for arg in argv])
    return status, out.getvalue()


def _low_light(height: int, width: int, seed: int = 0) -> np.ndarray:
    """(1, H, W, 3) float32: a dark crop of a real e2e image, tiled to the size."""
    image = read_image(sorted((reference_path("enlightengan", "e2e") / "inputs").glob("*.png"))[0])
    reps = (-(-height // image.shape[0]), -(-width // image.shape[1]), 1)
    return (0.35 * np.tile(image, reps)[:height, :width])[None].astype(np.float32)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """`llie convert enlightengan` of the checkpoint content (`w/` + `calib/`, `module.` keys), then `llie export`
    of the result to a SavedModel and a .tflite, once."""
    root = tmp_path_factory.mktemp("enlightengan_deploy")
    fixture = reference("enlightengan", "generator_seed0")
    state = {key[2:]: value for key, value in fixture.items()
             if key.startswith("w/") and not key.endswith("num_batches_tracked")}
    state.update({key[len("calib/"):]: value for key, value in fixture.items() if key.startswith("calib/")})
    source = root / "net_G_A.npz"
    np.savez(source, **{f"module.{name}": value for name, value in state.items()})
    weights, savedmodel, tflite = root / "w" / "eg.weights.h5", root / "sm" / "eg", root / "lite" / "eg.tflite"
    runs = {"convert": _llie("convert", "enlightengan", source, "--out", weights),
            "savedmodel": _llie("export", "--model", "enlightengan", "--weights", weights, "--format", "savedmodel",
                                "-o", savedmodel),
            "tflite": _llie("export", "--model", "enlightengan", "--weights", weights, "--format", "tflite",
                            "-o", tflite)}
    return types.SimpleNamespace(weights=weights, savedmodel=savedmodel, tflite=tflite, runs=runs,
                                 keras=build_enhancer(weights=weights))


def test_cli_runs_succeed_and_ship_the_licence(deployed):
    assert all(status == 0 for status, _ in deployed.runs.values()), deployed.runs
    # Beside a file, inside a SavedModel folder (copied as a whole).
    for notice in (deployed.weights.parent, deployed.savedmodel, deployed.tflite.parent):
        assert (notice / LICENSE_NOTICE.name).read_text() == LICENSE_NOTICE.read_text(), notice
    assert "serving_default: image float32 [N,H,W,3] -> enhanced float32 [N,H,W,3]" in deployed.runs["savedmodel"][1]


def test_savedmodel_matches_keras_at_any_size(deployed):
    serve = tf.saved_model.load(str(deployed.savedmodel)).signatures["serving_default"]
    for height, width in SIZES:
        image = _low_light(height, width)
        expected = deployed.keras(image).numpy()
        got = serve(image=tf.constant(image))["enhanced"].numpy()
        assert got.shape == image.shape
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0, err_msg=f"{height}x{width}")
        assert np.abs(got - image).max() > 1e-2  # the network acts (not an identity export)
    batch = np.concatenate([_low_light(52, 75), _low_light(52, 75)[:, ::-1]])
    np.testing.assert_allclose(serve(image=tf.constant(batch))["enhanced"].numpy(), deployed.keras(batch).numpy(),
                               atol=1e-5, rtol=0)


def test_tflite_has_builtin_ops_only_and_matches_keras(deployed):
    lite = TFLiteEnhancer(deployed.tflite)
    ops = set(lite.ops())
    assert {"CONV_2D", "MIRROR_PAD", "RESIZE_BILINEAR", "MAX_POOL_2D", "LEAKY_RELU"} <= ops, ops
    # A Flex (TF kernel) op is named Flex...; a custom op CUSTOM or an unknown name outside the builtins.
    assert not [op for op in ops if op.lower().startswith("flex") or op == "CUSTOM"], ops
    for height, width in SIZES[0], SIZES[2]:
        image = _low_light(height, width)
        np.testing.assert_allclose(lite(image), deployed.keras(image).numpy(), atol=1e-4, rtol=0,
                                   err_msg=f"{height}x{width}")


def test_llie_enhance_with_converted_weights_matches_keras(deployed, tmp_path):
    image = _low_light(52, 75)[0]
    Image.fromarray(to_uint8(image)).save(tmp_path / "dark.png")
    status, _ = _llie("enhance", tmp_path / "dark.png", "-o", tmp_path / "out", "--model", "enlightengan",
                      "--weights", deployed.weights, "-q")
    assert status == 0
    written = np.asarray(Image.open(tmp_path / "out" / "dark.png"), np.int16)
    expected = to_uint8(deployed.keras(read_image(tmp_path / "dark.png")[None]).numpy()[0]).astype(np.int16)
    assert np.abs(written - expected).max() <= 1
    assert np.abs(written - to_uint8(image).astype(np.int16)).max() > 3  # enhanced, not copied


_PEAK_RSS_SCRIPT = textwrap.dedent("""
    import resource, subprocess, sys
    status = subprocess.run([sys.executable, "-m", "train.cli", *sys.argv[1:]]).returncode
    print(status, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)  # KiB on Linux
""")


@pytest.mark.slow
def test_4k_image_tiled_enhance_stays_under_2gb(deployed, tmp_path):
    # A 3840×2160 real photo (an e2e input resized), through the CLI in a child process. Below the 2200-px
    # width limit per tile, so every tile runs the full-resolution U-Net.
    source = tmp_path / "uhd.png"
    Image.fromarray(to_uint8(_low_light(384, 512)[0])).resize((3840, 2160), Image.BICUBIC).save(source)
    result = subprocess.run([sys.executable, "-c", _PEAK_RSS_SCRIPT, "enhance", source, "-o", tmp_path / "out",
                             "--model", "enlightengan", "--weights", deployed.weights, "--tile", "512", "-q"],
                            capture_output=True, text=True, check=True)
    status, peak_kib = map(int, result.stdout.split()[-2:])
    assert status == 0, result.stderr
    enhanced = read_image(tmp_path / "out" / "uhd.png")
    assert enhanced.shape == (2160, 3840, 3) and np.abs(enhanced - read_image(source)).max() > 1e-2
    print(f"3840x2160, --tile 512: peak RSS {peak_kib / 1024:.0f} MiB")
    assert peak_kib * 1024 < 2 * 1024 ** 3, f"peak RSS {peak_kib / 1024:.0f} MiB"
