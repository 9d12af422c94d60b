"""SavedModel / TFLite export and `llie export`, on tiny registered enhancers (and SCI when it is available)."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.enhancer_testing import llie
from tests.export_testing import RATIO, psnr_db, random_images, toy, toy_ratio  # noqa: F401 (fixtures)
from tests.reference import reference, shared_data_path
from train import cli, registry
from train.errors import NotAvailableError
from train.export import export_savedmodel, export_tflite
from train.io import read_image, write_image
from train.tflite import TFLiteEnhancer, calibration_crops, tensor_dtypes
from train.tiling import enhance_tiled

@pytest.fixture(scope="module")
def calibration():
    return [random_images((64, 80, 3), seed) for seed in range(3)] + [random_images((48, 70, 3), 3)]


@pytest.fixture(scope="module")
def saved(toy, toy_ratio, tmp_path_factory):
    root = tmp_path_factory.mktemp("savedmodel")
    export_savedmodel(toy, root / "toy")
    export_savedmodel(toy_ratio, root / "toy_ratio", extra_inputs=(RATIO,))
    return {name: tf.saved_model.load(str(root / name)) for name in ("toy", "toy_ratio")}


@pytest.fixture(scope="module")
def tflites(toy, toy_ratio, calibration, tmp_path_factory):
    root = tmp_path_factory.mktemp("tflite")
    paths = {mode: export_tflite(toy, root / f"toy_{mode}.tflite", quantize=mode,
                                 representative_images=calibration) for mode in ("none", "float16", "int8")}
    paths["ratio"] = export_tflite(toy_ratio, root / "toy_ratio.tflite", extra_inputs=(RATIO,))
    return {name: TFLiteEnhancer(path) for name, path in paths.items()}


# === SavedModel ===


def test_savedmodel_signatures_are_named_and_dynamic(saved):
    signatures = saved["toy_ratio"].signatures
    assert set(signatures) == {"serving_default", "serving_uint8"}
    _, inputs = signatures["serving_default"].structured_input_signature
    assert set(inputs) == {"image", "ratio"}
    assert inputs["image"].shape.as_list() == [None, None, None, 3] and inputs["image"].dtype == tf.float32
    assert inputs["ratio"].shape.as_list() == [None]
    assert signatures["serving_uint8"].structured_input_signature[1]["image"].dtype == tf.uint8
    assert list(signatures["serving_default"].structured_outputs) == ["enhanced"]


@pytest.mark.parametrize("shape", [(2, 17, 23, 3), (2, 40, 31, 3)])
def test_savedmodel_matches_keras(saved, toy, toy_ratio, shape):
    images = random_images(shape)
    ratio = np.array([0.5, 2.0], np.float32)
    plain = saved["toy"].signatures["serving_default"](image=tf.constant(images))["enhanced"].numpy()
    with_ratio = saved["toy_ratio"].signatures["serving_default"](
        image=tf.constant(images), ratio=tf.constant(ratio))["enhanced"].numpy()
    assert plain.shape == shape
    np.testing.assert_allclose(plain, toy(images).numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(with_ratio, toy_ratio(images, ratio=ratio).numpy(), atol=1e-6, rtol=0)
    assert np.abs(with_ratio[0] - with_ratio[1]).max() > 1e-3  # the ratio input is really used


def test_savedmodel_uint8_signature_rounds(saved, toy):
    pixels = np.random.default_rng(1).integers(0, 100, (2, 19, 26, 3)).astype(np.uint8)
    result = saved["toy"].signatures["serving_uint8"](image=tf.constant(pixels))["enhanced"].numpy()
    expected = np.round(np.clip(toy(pixels.astype(np.float32) / 255.0).numpy(), 0, 1) * 255.0)
    assert result.dtype == np.uint8 and result.shape == pixels.shape
    assert np.abs(result.astype(np.int32) - expected).max() <= 1
    assert np.mean(result == expected) > 0.999


# === TFLite ===


@pytest.mark.parametrize("shape", [(1, 21, 34, 3), (2, 48, 40, 3)])
def test_tflite_fp32_matches_keras_at_any_size(tflites, toy, toy_ratio, shape):
    images = random_images(shape, seed=3)
    ratio = np.linspace(0.5, 3.0, shape[0]).astype(np.float32)
    np.testing.assert_allclose(tflites["none"](images), toy(images).numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(tflites["ratio"](images, ratio=ratio), toy_ratio(images, ratio=ratio).numpy(),
                               atol=1e-4, rtol=0)


def test_tflite_has_builtin_ops_only_and_float_io(tflites):
    for name, runner in tflites.items():
        ops = runner.ops()
        assert "CONV_2D" in ops, name
        assert not [op for op in ops if op.startswith("Flex")], (name, ops)
        details = runner.interpreter.get_signature_runner().get_input_details()
        assert details["image"]["dtype"] == np.float32
        assert list(details["image"]["shape_signature"]) == [1, -1, -1, 3]
    assert tflites["ratio"].extra_names == ("ratio",)
    # int8: the convolutions run on int8 tensors between a QUANTIZE at the input and a DEQUANTIZE at the output
    tensors = tflites["int8"].interpreter.get_tensor_details()
    conv_inputs = [tensors[i]["dtype"] for op in tflites["int8"].interpreter._get_ops_details()
                   if op["op_name"] == "CONV_2D" for i in op["inputs"][:2]]
    assert conv_inputs and all(dtype == np.int8 for dtype in conv_inputs)
    assert {"QUANTIZE", "DEQUANTIZE"} <= set(tflites["int8"].ops())


def test_tflite_quantized_drift(tflites):
    images = random_images((1, 56, 72, 3), seed=5)
    reference_out = tflites["none"](images)
    psnr = {mode: psnr_db(tflites[mode](images), reference_out) for mode in ("float16", "int8")}
    print(f"toy PSNR vs fp32: float16 {psnr['float16']:.1f} dB, int8 {psnr['int8']:.1f} dB")
    assert psnr["float16"] >= 50.0
    assert 25.0 <= psnr["int8"] < psnr["float16"]  # quantized, but calibrated sensibly


def test_tflite_dynamic_range_and_unsupported_ops(toy, tmp_path):
    runner = TFLiteEnhancer(export_tflite(toy, tmp_path / "dynamic.tflite", quantize="dynamic"))
    images = random_images((1, 30, 20, 3), seed=2)
    assert any(t["dtype"] == np.int8 for t in runner.interpreter.get_tensor_details())
    assert psnr_db(runner(images), toy(images).numpy()) >= 35.0

    class NeedsFlex(keras.Model):
        def call(self, image):
            return tf.math.bessel_i0e(image)

    with pytest.raises(NotAvailableError, match=r"outside TFLITE_BUILTINS: tf\.BesselI0e"):
        export_tflite(NeedsFlex(), tmp_path / "flex.tflite")
    assert not (tmp_path / "flex.tflite").exists()


def test_tflite_runner_tiles_like_whole_image(tflites):
    image = random_images((45, 70, 3), seed=4)
    whole = tflites["none"](image)
    np.testing.assert_allclose(enhance_tiled(tflites["none"], image, tile=24, overlap=6), whole, atol=1e-5)
    with pytest.raises(ValueError, match="extra inputs must be"):
        tflites["ratio"](image)


def test_calibration_crops_share_one_shape(calibration):
    crops = calibration_crops(calibration, size=56, count=6)
    assert [crop.shape for crop in crops] == [(1, 48, 56, 3)] * 6  # the calibrator sizes the model once
    sources = [calibration[i % 4] for i in range(6)]
    for crop, source in zip(crops, sources):  # each crop is a real window of its image
        windows = np.lib.stride_tricks.sliding_window_view(source, crop.shape[1:])
        assert (windows == crop[0]).all(axis=(-3, -2, -1)).any()


# === CLI ===


def test_cli_exports_savedmodel_and_tflite(toy, tmp_path, capsys):
    weights = tmp_path / "toy.weights.h5"
    toy.save_weights(weights)
    out = tmp_path / "out"
    assert cli.main(["export", "--model", "toy_export_ratio", "-o", str(out / "sm")]) == 0
    assert "signature serving_default: image float32 [N,H,W,3], ratio float32 [N]" in capsys.readouterr().out
    assert cli.main(["export", "--model", "toy_export_ratio", "-o", str(out / "sm")]) == 0  # replaces it
    loaded = tf.saved_model.load(str(out / "sm"))
    assert set(loaded.signatures) == {"serving_default", "serving_uint8"}

    assert cli.main(["export", "--model", "toy_export", "--weights", str(weights), "-o", str(out / "m.tflite")]) == 0
    printed = capsys.readouterr().out
    assert str(out / "m.tflite") in printed and "[1,H,W,3]" in printed
    images = random_images((1, 16, 24, 3))
    np.testing.assert_allclose(TFLiteEnhancer(out / "m.tflite")(images), toy(images).numpy(), atol=1e-4)
    assert sorted(os.listdir(out)) == ["m.tflite", "sm"]  # no temporary leftovers, no licence notice
    assert "licence" not in printed and not [name for name in os.listdir(out / "sm") if "LICENSE" in name]


def test_cli_dynamic_quantization_says_what_it_quantized(toy, tmp_path, capsys):
    # The toy's middle conv has ≥ 1024 weights, so dynamic-range quantization stores it as int8.
    assert cli.main(["export", "--model", "toy_export", "--quantize", "dynamic", "-o", str(tmp_path / "d.tflite")]) == 0
    captured = capsys.readouterr()
    assert "(dynamic quantized)" in captured.out and "warning" not in captured.err
    assert tensor_dtypes(tmp_path / "d.tflite")["int8"] > 0


def test_cli_int8_calibrates_on_a_folder(toy, tmp_path, capsys):
    folder = tmp_path / "calibration"
    for seed in range(2):
        write_image(folder / f"{seed}.png", random_images((40, 52, 3), seed))
    (folder / "notes.txt").write_text("not an image")
    argv = ["export", "--model", "toy_export", "--quantize", "int8", "--calibration", str(folder),
            "--calibration-size", "32", "--calibration-samples", "4", "-o", str(tmp_path / "q.tflite")]
    assert cli.main(argv) == 0
    assert "(int8 quantized)" in capsys.readouterr().out
    runner = TFLiteEnhancer(tmp_path / "q.tflite")
    images = random_images((1, 40, 52, 3), seed=0)
    assert "QUANTIZE" in runner.ops() and psnr_db(runner(images), toy(images).numpy()) >= 35.0


@pytest.mark.parametrize("argv, message", [
    (["--preset", "huge"], "has no preset 'huge' (presets: tiny)"),
    (["--weights", "missing.weights.h5"], "missing.weights.h5: no such weights file"),
    (["--quantize", "int8", "--calibration", "nowhere"], "nowhere"),
    (["--format", "savedmodel", "--quantize", "float16"], "applies to --format tflite only"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    status = cli.main(["export", "--model", "toy_export", *argv, "-o", str(tmp_path / "x.tflite")])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("llie export: error:") and message in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


# === SCI (the real model) ===


@pytest.fixture(scope="module")
def sci(tmp_path_factory):
    spec = registry.get("sci")
    model = spec.build_enhancer(preset="medium")
    root = tmp_path_factory.mktemp("sci")
    low = shared_data_path("lol_eval15_lowonly/low_600x400")
    calibration = [read_image(low / name) for name in ("22.png", "79.png", "780.png")]
    runners = {mode: TFLiteEnhancer(export_tflite(model, root / f"{mode}.tflite", quantize=mode,
                                                  representative_images=calibration,
                                                  extra_inputs=spec.extra_inputs))
               for mode in ("none", "float16", "int8")}
    export_savedmodel(model, root / "sm", extra_inputs=spec.extra_inputs)
    return model, tf.saved_model.load(str(root / "sm")), runners


def test_sci_savedmodel_and_tflite_match_keras(sci):
    model, saved_model, runners = sci
    fixture = reference("sci", "pretrained_medium")
    for key in ("input_0", "input_1"):
        image = fixture[key]
        keras_out = model(image, training=False).numpy()
        np.testing.assert_allclose(keras_out, fixture[key.replace("input", "enhanced")], atol=1e-5)
        served = saved_model.signatures["serving_default"](image=tf.constant(image))["enhanced"].numpy()
        print(f"sci {key}: savedmodel {np.abs(served - keras_out).max():.2e}, "
              f"tflite {np.abs(runners['none'](image) - keras_out).max():.2e}")
        np.testing.assert_allclose(served, keras_out, atol=1e-6, rtol=0)
        np.testing.assert_allclose(runners["none"](image), keras_out, atol=1e-4, rtol=0)


def test_sci_quantized_psnr_on_real_image(sci):
    _, _, runners = sci
    image = read_image(shared_data_path("lol_eval15_lowonly/low_600x400/1.png"))
    fp32 = runners["none"](image)
    psnr = {mode: psnr_db(runners[mode](image), fp32) for mode in ("float16", "int8")}
    print(f"sci medium 1.png PSNR vs fp32: float16 {psnr['float16']:.1f} dB, int8 {psnr['int8']:.1f} dB")
    assert psnr["float16"] >= 45.0
    assert psnr["int8"] >= 35.0


# === SCI through `llie export` ===


@pytest.fixture(scope="module")
def sci_cli(tmp_path_factory):
    """What `llie export --model sci --preset medium` writes: {name: (path, stdout, stderr)}."""
    root = tmp_path_factory.mktemp("sci_cli")
    runs = {"savedmodel": ("--format", "savedmodel"), "none": ("--format", "tflite"),
            "dynamic": ("--format", "tflite", "--quantize", "dynamic"),
            "int8": ("--format", "tflite", "--quantize", "int8")}  # no --calibration: the demo images
    results = {}
    for name, flags in runs.items():
        path = root / (name if name == "savedmodel" else f"{name}.tflite")
        status, out, err = llie("export", "--model", "sci", "--preset", "medium", *flags, "-o", path)
        assert status == 0, (name, err)
        results[name] = (path, out, err)
    return results


def test_sci_cli_savedmodel_matches_keras(sci_cli):
    keras_model = registry.get("sci").build_enhancer(preset="medium")
    served = tf.saved_model.load(str(sci_cli["savedmodel"][0])).signatures
    assert "signature serving_uint8: image uint8 [N,H,W,3]" in sci_cli["savedmodel"][1]
    images = random_images((3, 37, 53, 3), seed=11)  # batch 3, odd H×W
    got = served["serving_default"](image=tf.constant(images))["enhanced"].numpy()
    want = keras_model(images, training=False).numpy()
    assert got.shape == images.shape
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
    pixels = np.random.default_rng(12).integers(0, 90, (3, 29, 41, 3)).astype(np.uint8)
    got_uint8 = served["serving_uint8"](image=tf.constant(pixels))["enhanced"].numpy()
    want_uint8 = np.round(np.clip(keras_model(pixels / np.float32(255.0), training=False).numpy(), 0, 1) * 255.0)
    assert got_uint8.dtype == np.uint8 and got_uint8.shape == pixels.shape
    assert np.abs(got_uint8.astype(np.int32) - want_uint8).max() <= 1 and np.mean(got_uint8 == want_uint8) > 0.999


def test_sci_cli_tflite_any_size_builtin_ops_only(sci_cli):
    from tensorflow.lite.python import schema_py_generated as schema

    keras_model = registry.get("sci").build_enhancer(preset="medium")
    runner = TFLiteEnhancer(sci_cli["none"][0])
    for shape in ((1, 37, 53, 3), (1, 64, 96, 3)):  # resize_tensor_input to each size
        images = random_images(shape, seed=shape[1])
        np.testing.assert_allclose(runner(images), keras_model(images, training=False).numpy(), atol=1e-4, rtol=0)
    builtin = {name for name in vars(schema.BuiltinOperator) if name.isupper()} - {"CUSTOM"}
    ops = runner.ops()
    # Builtins only: a Flex op (named Flex...) or a custom op (its custom code) falls outside this set.
    assert "CONV_2D" in ops and set(ops) <= builtin, ops


def test_sci_cli_ships_the_mit_notice_inside_the_savedmodel_and_beside_the_tflite(sci_cli):
    from sci_tf.presets import LICENSE_NOTICE

    savedmodel, tflite = sci_cli["savedmodel"][0], sci_cli["none"][0]
    for notice, (_, out, _) in ((savedmodel / LICENSE_NOTICE.name, sci_cli["savedmodel"]),
                                (tflite.parent / LICENSE_NOTICE.name, sci_cli["none"])):
        assert notice.read_text() == LICENSE_NOTICE.read_text() and f"licence of the weights: {notice}" in out
    assert "Copyright (c) 2022 Tengyu Ma" in LICENSE_NOTICE.read_text()


def test_sci_cli_dynamic_quantization_is_reported_as_a_no_op(sci_cli):
    _, out, err = sci_cli["dynamic"]
    assert "(dynamic quantized)" not in out and "(float32: nothing quantized)" in out
    assert err.startswith("llie export: warning: --quantize dynamic quantized nothing") and err.count("\n") == 1
    assert tensor_dtypes(sci_cli["dynamic"][0])["int8"] == 0


def test_sci_cli_int8_without_calibration_uses_the_demorandom_images(sci_cli):
    path, out, err = sci_cli["int8"]
    assert "(int8 quantized)" in out
    assert "note: no --calibration DIR given: calibrating int8 on the 3 bundled demo images" in err
    runner = TFLiteEnhancer(path)
    assert {"QUANTIZE", "DEQUANTIZE"} <= set(runner.ops()) and tensor_dtypes(path)["int8"] > 0
    image = read_image(shared_data_path("lol_eval15_lowonly/low_600x400/1.png"))
    psnr = psnr_db(runner(image), TFLiteEnhancer(sci_cli["none"][0])(image))
    print(f"sci medium int8 (demo calibration) on 1.png: {psnr:.1f} dB vs fp32")
    assert psnr >= 35.0
