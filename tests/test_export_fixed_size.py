"""Export for one image size (`image_size=`, `llie export --size HxW`): fixed signatures, the runner's check,
calibration at that size, and SCI's width-packed graph in the file."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import tensorflow as tf

from tests.enhancer_testing import llie
from tests.reference import shared_data_path
from tests.export_testing import psnr_db, random_images, toy  # noqa: F401 (fixture)
from train import registry
from train.export import export_savedmodel, export_tflite
from train.io import read_image
from train.sizes import parse_size
from train.tflite import TFLiteEnhancer, calibration_crops

SIZE = (16, 24)


def test_parse_size_reads_height_x_width_and_rejects_the_rest():
    assert parse_size("400x600") == (400, 600) and parse_size("16X24") == (16, 24)
    for text in ("400", "400x", "0x600", "axb", "4x5x6"):
        with pytest.raises(argparse.ArgumentTypeError, match="HEIGHTxWIDTH|positive"):
            parse_size(text)


def test_fixed_size_savedmodel_takes_that_size_only(toy, tmp_path):
    served = tf.saved_model.load(str(export_savedmodel(toy, tmp_path / "sm", image_size=SIZE))).signatures
    for name in ("serving_default", "serving_uint8"):
        assert served[name].structured_input_signature[1]["image"].shape.as_list() == [None, *SIZE, 3]
    images = random_images((2, *SIZE, 3))
    got = served["serving_default"](image=tf.constant(images))["enhanced"].numpy()
    np.testing.assert_allclose(got, toy(images).numpy(), atol=1e-6, rtol=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Shape of tensor"):
        served["serving_default"](image=tf.constant(random_images((1, 16, 25, 3))))


def test_fixed_size_tflite_runs_that_size_and_names_it_otherwise(toy, tmp_path):
    fixed = TFLiteEnhancer(export_tflite(toy, tmp_path / "fixed.tflite", image_size=SIZE))
    assert fixed.fixed_size == SIZE
    assert TFLiteEnhancer(export_tflite(toy, tmp_path / "any.tflite")).fixed_size is None
    images = random_images((1, *SIZE, 3))
    np.testing.assert_allclose(fixed(images), toy(images).numpy(), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match=r"fixed.tflite: exported for 16×24 images .* got 16×25"):
        fixed(random_images((1, 16, 25, 3)))


def test_calibration_crops_of_a_fixed_shape(toy, tmp_path):
    images = [random_images((30, 40, 3), 0), random_images((10, 12, 3), 1)]  # the second is smaller than the shape
    crops = calibration_crops(images, count=4, shape=(20, 24))
    assert [crop.shape for crop in crops] == [(1, 20, 24, 3)] * 4
    windows = np.lib.stride_tricks.sliding_window_view(images[0], (20, 24, 3))
    assert (windows == crops[0][0]).all(axis=(-3, -2, -1)).any()  # a real window of the large image
    enlarged = crops[1][0]
    assert 0.0 <= enlarged.min() and enlarged.max() <= 1.0 and abs(enlarged.mean() - images[1].mean()) < 0.05
    quantized = TFLiteEnhancer(export_tflite(toy, tmp_path / "q.tflite", quantize="int8", image_size=SIZE,
                                             representative_images=images, calibration_samples=4))
    assert quantized.fixed_size == SIZE and "QUANTIZE" in quantized.ops()
    sample = random_images((1, *SIZE, 3), seed=5)
    assert psnr_db(quantized(sample), toy(sample).numpy()) >= 30.0


@pytest.fixture(scope="module")
def sci_fixed(tmp_path_factory):
    """`llie export --model sci --size 400x600` as TFLite and SavedModel: {format: (path, stdout)}."""
    root = tmp_path_factory.mktemp("sci_fixed")
    results = {}
    for fmt, path in (("tflite", root / "sci.tflite"), ("savedmodel", root / "sm")):
        status, out, err = llie("export", "--model", "sci", "--size", "400x600", "--format", fmt, "-o", path)
        assert status == 0, err
        results[fmt] = (path, out)
    return results


def test_sci_fixed_size_exports_pack_and_match_keras(sci_fixed):
    image = read_image(shared_data_path("lol_eval15_lowonly/low_600x400/1.png"))[None]
    keras_model = registry.get("sci").build_enhancer(preset="medium")
    want = keras_model(image, training=False).numpy()
    path, out = sci_fixed["tflite"]
    assert "image float32 [1,400,600,3] -> enhanced float32 [1,400,600,3]" in out
    runner = TFLiteEnhancer(path)
    # The width-packed graph: each of the 3 convolutions reshaped back from its packed output (the any-size file
    # has no reshape).
    assert runner.fixed_size == (400, 600) and runner.ops().count("RESHAPE") == 3
    np.testing.assert_allclose(runner(image), want, atol=1e-4, rtol=0)
    path, out = sci_fixed["savedmodel"]
    assert "signature serving_uint8: image uint8 [N,400,600,3]" in out
    served = tf.saved_model.load(str(path)).signatures["serving_default"]
    np.testing.assert_allclose(served(image=tf.constant(image))["enhanced"].numpy(), want, atol=1e-6, rtol=0)
