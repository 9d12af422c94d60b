"""KinD deployment with the real converted weights: `llie convert/export` (SavedModel, TFLite), tiling of large
images, and `llie evaluate --protocol gt-ratio`.

Weights: the official DecomNet / adjust-net checkpoints plus the synthetic Restoration-Net checkpoint
(`checkpoints/Restoration_net_train_synthetic`, see ../shared/reference/kind/README.md), converted once per module.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kind_tf.convert import convert_all
from kind_tf.spec import SPEC
from tests.enhancer_testing import llie, llie_peak_rss
from tests.reference import reference_path, shared_data_path
from train import cli
from train.io import read_image, to_uint8, write_image
from train.export import export_tflite
from train.tflite import TFLiteEnhancer, tensor_dtypes
from train.tiling import enhance_tiled, tile_spans

RATIOS = (5.0, 2.5)  # evaluate.py's hard-coded ratio and another one
SIZES = ((37, 53), (48, 64))  # odd sizes exercise the SAME-pool end padding and the transposed-conv crop
# Max-pool strides: DecomNet pools twice, the Restoration U-Net four times, so KinD's output at a pixel depends
# on the pixel's position modulo 16 (the pooling grid); shifting the input by a multiple of 16 shifts the output.
POOLING_GRID = 16
# Measured: beyond ~112 px from any border the output no longer depends on it (up to 1e-7: effective receptive
# radius; the theoretical one of the 4-pooling Restoration U-Net is larger, its far taps carry no weight).
RECEPTIVE_RADIUS = 112
# kind_tf.spec's tile_overlap: 96 px of context per side keeps 8-bit tiled outputs within 2 grey levels (≤ 0.02 %
# of the pixels off by more than 1 on the e2e images, tile 256); 64 px left 1.8–5 % off by more than 1 (max 8).
DEFAULT_OVERLAP = 96


def _e2e_names() -> list[str]:
    """The e2e fixture's input file names, in order."""
    return sorted(path.name for path in (reference_path("kind", "e2e") / "inputs").glob("*.png"))


def _e2e_image(index: int) -> np.ndarray:
    return read_image(reference_path("kind", "e2e") / "inputs" / _e2e_names()[index])


# === Fixtures ===


@pytest.fixture(scope="module")
def kind():
    """The Keras reference: `convert_all` on the checkpoint folder (finds Restoration_net_train_synthetic)."""
    return convert_all(reference_path("kind", "checkpoints"))


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """`llie convert kind` → kind.weights.h5, then `llie export` of it to a SavedModel and a .tflite, once."""
    root = tmp_path_factory.mktemp("kind_deploy")
    weights, savedmodel, tflite = root / "kind.weights.h5", root / "savedmodel", root / "kind.tflite"
    convert = llie("convert", "kind", "--checkpoint-dir", reference_path("kind", "checkpoints"), "--out", weights)
    export_sm = llie("export", "--model", "kind", "--weights", weights, "--format", "savedmodel", "-o", savedmodel)
    export_lite = llie("export", "--model", "kind", "--weights", weights, "--format", "tflite", "-o", tflite)
    return types.SimpleNamespace(weights=weights, savedmodel=savedmodel, tflite=tflite,
                                 runs={"convert": convert, "savedmodel": export_sm, "tflite": export_lite})


def _test_crops() -> list[np.ndarray]:
    """Real-image crops (1, H, W, 3) of each test size, darkened to a low-light range."""
    image = _e2e_image(1)
    return [0.3 * image[None, 100:100 + h, 200:200 + w] for h, w in SIZES]


# === 1. Export: SavedModel and TFLite ===


def test_cli_exports_converted_weights_with_image_and_ratio_inputs(deployed):
    assert all(status == 0 for status, _, _ in deployed.runs.values()), deployed.runs
    assert deployed.weights.is_file() and (deployed.savedmodel / "saved_model.pb").is_file()
    assert "serving_default: image float32 [N,H,W,3], ratio float32 [N] -> enhanced float32 [N,H,W,3]" \
        in deployed.runs["savedmodel"][1]
    assert "image float32 [1,H,W,3], ratio float32 [1]" in deployed.runs["tflite"][1]
    loaded = tf.saved_model.load(str(deployed.savedmodel))
    serve = loaded.signatures["serving_default"]
    _, inputs = serve.structured_input_signature
    assert set(inputs) == {"image", "ratio"}
    assert inputs["image"].shape.as_list() == [None, None, None, 3] and inputs["image"].dtype == tf.float32
    assert inputs["ratio"].shape.as_list() == [None] and inputs["ratio"].dtype == tf.float32
    assert list(serve.structured_outputs) == ["enhanced"]


def test_savedmodel_matches_keras_at_any_size_and_ratio(kind, deployed):
    signatures = tf.saved_model.load(str(deployed.savedmodel)).signatures
    serve, serve_uint8 = signatures["serving_default"], signatures["serving_uint8"]
    for image in _test_crops():
        outputs = []
        for value in RATIOS:
            ratio = np.array([value], np.float32)
            expected = kind(image, ratio=ratio).numpy()
            got = serve(image=tf.constant(image), ratio=tf.constant(ratio))["enhanced"].numpy()
            assert got.shape == image.shape
            np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0, err_msg=f"{image.shape} ratio {value}")
            outputs.append(got)
        assert np.abs(outputs[0] - outputs[1]).max() > 1e-2  # the ratio input reaches the adjust net
        # Per-image ratios in one batch, and the uint8 signature (rounded, ±1 grey level).
        batch, ratios = np.concatenate([image, image[:, ::-1]]), np.array(RATIOS, np.float32)
        got = serve(image=tf.constant(batch), ratio=tf.constant(ratios))["enhanced"].numpy()
        np.testing.assert_allclose(got, kind(batch, ratio=ratios).numpy(), atol=1e-5, rtol=0)
        pixels = to_uint8(image[0], "round")[None]
        got8 = serve_uint8(image=tf.constant(pixels), ratio=tf.constant(ratios[:1]))["enhanced"].numpy()
        expected8 = to_uint8(kind(pixels / np.float32(255.0), ratio=ratios[:1]).numpy(), "round")
        assert got8.dtype == np.uint8 and np.abs(got8.astype(int) - expected8).max() <= 1


def test_tflite_has_no_flex_ops_and_matches_keras(kind, deployed):
    lite = TFLiteEnhancer(deployed.tflite)
    ops = set(lite.ops())
    assert {"CONV_2D", "TRANSPOSE_CONV", "MAX_POOL_2D", "LOGISTIC"} <= ops, ops
    assert not [op for op in ops if op.lower().startswith("flex")], ops
    details = lite.interpreter.get_signature_runner("serving_default").get_input_details()
    assert list(details["image"]["shape_signature"]) == [1, -1, -1, 3]
    assert list(details["ratio"]["shape_signature"]) == [1]
    for image in _test_crops():
        for value in RATIOS:
            ratio = np.array([value], np.float32)
            np.testing.assert_allclose(lite(image, ratio=ratio), kind(image, ratio=ratio).numpy(), atol=1e-4,
                                       rtol=0, err_msg=f"{image.shape} ratio {value}")


def test_int8_tflite_converts_with_integer_kernels(kind, tmp_path):
    # The decomposed illumination feeds two concats (with R, and with the ratio map) whose inputs the int8
    # quantizer must give one scale each; KinD hands the adjust net its own tensor, else conversion fails.
    lows = sorted(shared_data_path("lol_eval15_lowonly/low_600x400").glob("*.png"))
    path = export_tflite(kind, tmp_path / "kind_int8.tflite", quantize="int8",
                         representative_images=[read_image(p) for p in lows[1:]], extra_inputs=SPEC.extra_inputs,
                         calibration_size=128, calibration_samples=8)
    lite = TFLiteEnhancer(path)
    assert "int8" in tensor_dtypes(path) and not [op for op in lite.ops() if op.lower().startswith("flex")]
    crop, ratio = read_image(lows[0])[None, 100:228, 200:392], np.array([5.0], np.float32)  # not calibrated on
    got, expected = lite(crop, ratio=ratio), kind(crop, ratio=ratio).numpy()
    psnr = 10 * np.log10(1.0 / np.mean((got - expected) ** 2))
    assert 30.0 < psnr < 80.0, psnr  # quantized (not a float model), yet the same picture: measured 36.1 dB


# === 2. Tiling ===


def test_spec_tiles_on_the_16_px_grid_with_the_default_overlap():
    assert SPEC.tile_alignment == POOLING_GRID
    assert SPEC.tile_overlap == DEFAULT_OVERLAP


def _seam_distance(height: int, width: int, tile: int, overlap: int) -> np.ndarray:
    """(H, W) distance in px from each pixel to the nearest tile edge inside the image (the seams)."""
    distances = []
    for length in (height, width):
        spans = tile_spans(length, tile, overlap, POOLING_GRID)
        edges = np.array(sorted({edge for span in spans for edge in span if 0 < edge < length}))
        positions = np.arange(length)
        distances.append(np.abs(positions[:, None] - edges[None]).min(axis=1) if edges.size
                         else np.full(length, np.iinfo(np.int32).max))
    return np.minimum(distances[0][:, None], distances[1][None, :])


def _tiled(kind, image: np.ndarray, tile: int, overlap: int) -> np.ndarray:
    """`enhance_tiled` as `llie enhance --model kind --tile` runs it: the spec's grid and whole-image stretch."""
    return enhance_tiled(kind, image, tile=tile, overlap=overlap, alignment=SPEC.tile_alignment,
                         extras={"ratio": 5.0}, prepare=SPEC.prepare_for_tiling)


def test_output_shifts_with_the_input_only_by_multiples_of_16(kind):
    # Why tiles must start on the pooling grid: the same content at an offset of 16 px gives the same output
    # (away from the borders); at an offset of 8 px the pooling windows pair other pixels and the output changes.
    size, largest = 272, POOLING_GRID
    prepared, kwargs = SPEC.prepare_for_tiling(_e2e_image(0)[:size + largest, :size + largest],
                                               ratio=5.0)
    # Compared where every crop is farther than the receptive radius from its borders: [128, 160)² of the image.
    first, last = RECEPTIVE_RADIUS + largest, size - RECEPTIVE_RADIUS
    centres = {}
    for shift in (0, POOLING_GRID // 2, POOLING_GRID):
        out = kind(prepared[None, shift:shift + size, shift:shift + size], **kwargs).numpy()[0]
        centres[shift] = out[first - shift:last - shift, first - shift:last - shift]
    assert np.abs(centres[POOLING_GRID] - centres[0]).max() <= 1e-6
    assert np.abs(centres[POOLING_GRID // 2] - centres[0]).mean() > 1e-3


@pytest.fixture(scope="module")
def e2e_whole(kind):
    """"whole": the first real e2e image (600×450 here: neither side a multiple of 16); "crop": a 448×448
    window of it, where the old geometry (last tile pulled back to the border) happened to stay on the grid →
    (image, whole-image output at ratio 5)."""
    image = _e2e_image(0)
    assert image.shape[0] >= 528 and image.shape[1] >= 448 and image.shape[0] % 16 and image.shape[1] % 16
    images = {"whole": image, "crop": image[80:528, :448]}
    return {name: (image, kind(image[None], ratio=np.array([5.0], np.float32)).numpy()[0])
            for name, image in images.items()}


# (all pixels: mean, 99th percentile, max of |diff| (max over RGB); pixels ≥ 32 px from every seam: mean, 99th
# percentile), each ≥ 2× the value measured (the 16-px grid, synthetic restoration weights, ratio 5).
_SEAM_BOUNDS = {
    # 448×448 crop, tile 256: 1.6e-3, 2.5e-2, 0.11; 4.5e-5, 1.8e-5 (4.9 % of the 8-bit pixels off by > 1).
    ("crop", 256, 32): (3e-3, 5e-2, 0.2, 2e-4, 1e-3),
    # 448×448 crop, tile 256: 6.7e-4, 6.3e-3, 2.1e-2; 4.4e-4, 4.3e-3 (0.6 % of the 8-bit pixels off by > 1).
    ("crop", 256, 64): (1.5e-3, 1.2e-2, 4e-2, 1e-3, 1e-2),
    # the whole 600×450 image, tile 320, the default overlap 96: 1.1e-4, 1.2e-3, 5.4e-3; 1.3e-4, 1.3e-3.
    ("whole", 320, DEFAULT_OVERLAP): (3e-4, 3e-3, 1.2e-2, 3e-4, 3e-3),
}


@pytest.mark.parametrize("crop, tile, overlap", list(_SEAM_BOUNDS))
def test_tiles_agree_with_whole_image_away_from_seams(kind, e2e_whole, crop, tile, overlap):
    """Stated bound: the tiled output (whole-image min-max stretch via `prepare_for_tiling`, tiles on the 16-px
    grid) equals whole-image inference within 1e-6 at every pixel farther than 112 px from any seam (a tile edge
    inside the image); the |diff| of all pixels, and of those ≥ 32 px from every seam, stay under the bounds."""
    image, whole = e2e_whole[crop]
    tiled = _tiled(kind, image, tile, overlap)
    diff = np.abs(tiled - whole).max(axis=-1)
    distance = _seam_distance(*image.shape[:2], tile, overlap)
    far, away = diff[distance >= RECEPTIVE_RADIUS], diff[distance >= 32]
    assert far.size > 200 and far.max() <= 1e-6
    mean_all, p99_all, max_all, mean_away, p99_away = _SEAM_BOUNDS[crop, tile, overlap]
    assert diff.mean() <= mean_all and np.quantile(diff, 0.99) <= p99_all and diff.max() <= max_all
    assert away.mean() <= mean_away and np.quantile(away, 0.99) <= p99_away
    assert diff.max() > 1e-4  # the seams are really within the networks' reach: the bound is not vacuous


def test_unaligned_image_size_tiles_agree_with_whole_image(kind):
    # 264 rows, tile 256: the old geometry put a second tile at 264 − 256 = 8, off the 16-px grid (mean
    # |diff| 8.1e-3 away from the seam). On the grid, a tile may run up to 15 px past `tile` to the border,
    # so this is one 264-row tile: whole-image inference.
    image = _e2e_image(0)[:264, :256]
    assert tile_spans(264, 256, 64, POOLING_GRID) == [(0, 264)]
    whole = kind(image[None], ratio=np.array([5.0], np.float32)).numpy()[0]
    np.testing.assert_allclose(_tiled(kind, image, 256, 64), whole, atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def tall_image() -> np.ndarray:
    """1080×96 of a real photo (the e2e image resized to 1080 rows): not a multiple of 16 tall (67.5 × 16)."""
    image = Image.fromarray(to_uint8(_e2e_image(1))).resize((810, 1080), Image.BICUBIC)
    return 0.4 * (np.asarray(image, np.float32)[:, 300:396] / 255.0)


def test_1080_rows_tile_not_a_multiple_of_16_keeps_the_grid(kind, tall_image):
    # --tile 500 → 496-px tiles at 0 and 368, and a last one at 576 (1080 − 496 = 584 is off the grid), 504 long.
    spans = tile_spans(1080, 500, 64, POOLING_GRID)
    assert spans == [(0, 496), (368, 864), (576, 1080)]
    whole = kind(tall_image[None], ratio=np.array([5.0], np.float32)).numpy()[0]
    diff = np.abs(_tiled(kind, tall_image, 500, 64) - whole).max(axis=-1)
    distance = _seam_distance(1080, 96, 500, 64)
    # The last tile's rows beyond 112 px from its top edge (976..1079) come from it alone: exact, as whole-image.
    assert (distance[976:] >= RECEPTIVE_RADIUS).all() and diff[976:].max() <= 1e-6
    assert diff[distance >= RECEPTIVE_RADIUS].max() <= 1e-6
    assert diff.max() <= 0.03 and diff.max() > 1e-4  # measured 0.013


def test_cli_tiles_1080_rows_with_the_default_overlap_within_the_stated_bound(deployed, tall_image, tmp_path):
    """`llie enhance --tile 300` (→ 288-px tiles on the 16-px grid, default overlap 96): the written 8-bit image
    matches whole-image enhancement within 2 grey levels, and within 1 at ≥ 99.5 % of the pixels."""
    source = tmp_path / "tall.png"
    write_image(source, tall_image)
    outputs = {}
    for name, flags in (("whole", ()), ("tiled", ("--tile", "300"))):
        status, _, err = llie("enhance", source, "-o", tmp_path / name, "--model", "kind", "--weights",
                              deployed.weights, "-q", *flags)
        assert status == 0, err
        outputs[name] = np.asarray(Image.open(tmp_path / name / "tall.png"), np.int32)
    levels = np.abs(outputs["tiled"] - outputs["whole"]).max(axis=-1)
    assert levels.max() <= 2 and (levels > 1).mean() <= 0.005
    assert levels.max() >= 1  # the tiles really differ from one whole-image pass (measured: max 1)


@pytest.mark.slow
def test_4k_image_tiled_enhance_stays_under_2gb(deployed, tmp_path):
    # A 3840×2160 real photo (the e2e image resized), through the installed CLI in a child process.
    image = Image.fromarray(to_uint8(_e2e_image(1))).resize((3840, 2160), Image.BICUBIC)
    source = tmp_path / "uhd.png"
    image.save(source)
    status, err, peak = llie_peak_rss("enhance", source, "-o", tmp_path / "out", "--model", "kind", "--weights",
                                      deployed.weights, "--tile", "512", "-q")
    assert status == 0, err
    assert read_image(tmp_path / "out" / "uhd.png").shape == (2160, 3840, 3)
    assert peak < 2 * 1024 ** 3, f"peak RSS {peak / 2**20:.0f} MiB"


# === 3. gt-ratio evaluation ===


def test_evaluate_gt_ratio_psnr_equals_direct_computation(kind, deployed, tmp_path, capsys):
    names = _e2e_names()[:2]
    for index, name in enumerate(names):
        image = _e2e_image(index)
        height, width = (96, 72) if image.shape[0] > image.shape[1] else (64, 96)
        low = np.asarray(Image.fromarray(to_uint8(image)).resize((width, height), Image.LANCZOS)) / 255.0
        for folder, picture in zip(("low", "high"), (low, np.sqrt(low))):  # high: a gamma-brightened copy
            write_image(tmp_path / "lol" / folder / name, picture.astype(np.float32))
    status = cli.main(["evaluate", "--model", "kind", "--weights", str(deployed.weights), "--data",
                       str(tmp_path / "lol"), "--protocol", "gt-ratio", "-q"])
    table = capsys.readouterr().out
    assert status == 0
    header, *lines = table.splitlines()
    assert "protocol: gt-ratio" in header
    printed = {line.split()[0]: float(line.split()[1]) for line in lines[1:]}
    # evaluate_LOLdataset.py: ratio from the ground truth's illumination, output restored·adjusted (LOL mode),
    # on the same networks as the evaluate.py-mode model the weights load into.
    lol = kind.with_mode("lol")

    def psnr_8bit(model, low, high, ratio):
        output = to_uint8(model(low, ratio=ratio).numpy(), "round").astype(np.float64) / 255.0
        return 10 * np.log10(1.0 / np.mean((output - high) ** 2))

    for name in names:
        low, high = (read_image(tmp_path / "lol" / folder / name)[None] for folder in ("low", "high"))
        ratio = kind.lol_ratio(low, high).numpy()
        assert abs(float(ratio[0]) - SPEC.extra_inputs[0].default) > 0.5  # the ground truth really sets it
        expected = psnr_8bit(lol, low, high, ratio)
        assert printed[name] == pytest.approx(expected, abs=1e-3), (name, table)
        assert abs(psnr_8bit(kind, low, high, ratio) - expected) > 0.1  # the evaluate.py fusion scores otherwise
    assert printed["mean"] == pytest.approx(np.mean([printed[name] for name in names]), abs=1e-4)
    assert "(split eval, 2 pairs)" in header
