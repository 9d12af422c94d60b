"""EnlightenGAN generator and enhancer: parity with upstream `Unet_resize_conv` (generator_seed0 fixture, both
upsampling modes, init / calibrated / train-mode BN), the official test path on real images (e2e), and the
padding, wide-image and enhancer-contract behaviour."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from enlighten_tf.convert import assign_state_dict, generator_layers, load_generator
from enlighten_tf.enhancer import EnlightenGANEnhancer
from enlighten_tf.generator import BN_NAMES, Generator
from enlighten_tf.layers import attention_map, padding_amounts, reflect_pad, upsample_bilinear_2x
from tests.enlighten_testing import calibrated_state
from tests.reference import reference, reference_path
from train.io import read_image, to_uint8
from train.torch_weights import read_state_dict

FORWARD_ATOL = 1e-5
MODES = {False: "", True: "_acT"}  # align_corners → fixture key suffix


@pytest.fixture(scope="module")
def fixture():
    return reference("enlightengan", "generator_seed0")


def _size_suffixes(fixture) -> list[str]:
    """Key suffixes of the eval-mode inputs: "" (`input`), "_1", "_2", ... (public: 64×64, 96×128, 52×75)."""
    suffixes = sorted(key[len("input"):] for key in fixture if re.fullmatch(r"input(_\d+)?", key))
    assert suffixes, "no eval-mode inputs in the fixture"
    return suffixes


def _init_state() -> dict:
    """generator_seed0's `w/` tensors: the BatchNorm running statistics at their init values."""
    return read_state_dict(reference_path("enlightengan", "generator_seed0.npz"))


@pytest.fixture(scope="module")
def generators():
    """align_corners → Generator loaded from the fixture file (exercises the .npz reader and its `w/` prefix)."""
    path = reference_path("enlightengan", "generator_seed0.npz")
    return {mode: load_generator(Generator(align_corners=mode), path) for mode in MODES}


def _reload(generator, state) -> Generator:
    assign_state_dict(generator_layers(generator), state, source="fixture")
    return generator


@pytest.mark.parametrize("calibrated", [False, True], ids=["init_statistics", "calibrated_statistics"])
@pytest.mark.parametrize("align_corners", list(MODES))
def test_eval_forward(fixture, generators, align_corners, calibrated):
    """BatchNorm running statistics at init (mean 0, var 1: the deep path adds < 1e-6) or calibrated (`calib/`,
    fixture keys `*_calib*`: where the deep path matters)."""
    generator = _reload(generators[align_corners], calibrated_state() if calibrated else _init_state())
    group, suffix = "_calib" if calibrated else "", MODES[align_corners]
    for size in _size_suffixes(fixture):
        output, latent = generator((fixture[f"input{size}"], fixture[f"gray{size}"]), training=False)
        assert output.shape == fixture[f"input{size}"].shape
        np.testing.assert_allclose(output, fixture[f"output{group}{size}{suffix}"], atol=FORWARD_ATOL)
        np.testing.assert_allclose(latent, fixture[f"latent{group}{size}{suffix}"], atol=FORWARD_ATOL)
    if calibrated:  # the deep path matters: the other upsampling mode is far off (≈0.037)
        other = fixture[f"latent_calib{MODES[not align_corners]}"]
        assert np.abs(generator((fixture["input"], fixture["gray"]), training=False)[1] - other).max() > 1e-2


def test_train_mode_forward_updates_running_statistics_once(fixture, generators):
    generator = _reload(generators[False], _init_state())
    output, latent = generator((fixture["input_train"], fixture["gray_train"]), training=True)
    np.testing.assert_allclose(output, fixture["output_train"], atol=FORWARD_ATOL)
    np.testing.assert_allclose(latent, fixture["latent_train"], atol=FORWARD_ATOL)
    for name in BN_NAMES:
        layer = getattr(generator, name)
        np.testing.assert_allclose(layer.moving_mean, fixture[f"bn_after_train/{name}.running_mean"], atol=1e-6)
        np.testing.assert_allclose(layer.moving_variance, fixture[f"bn_after_train/{name}.running_var"],
                                   rtol=1e-5, atol=1e-6)
    output, latent = generator((fixture["input"], fixture["gray"]), training=False)
    np.testing.assert_allclose(output, fixture["output_after_train"], atol=FORWARD_ATOL)
    np.testing.assert_allclose(latent, fixture["latent_after_train"], atol=FORWARD_ATOL)


def test_train_mode_forward_align_corners(fixture, generators):
    generator = _reload(generators[True], _init_state())
    output, latent = generator((fixture["input_train"], fixture["gray_train"]), training=True)
    np.testing.assert_allclose(output, fixture["output_train_acT"], atol=FORWARD_ATOL)
    np.testing.assert_allclose(latent, fixture["latent_train_acT"], atol=FORWARD_ATOL)


def test_parameter_and_buffer_counts(generators):
    generator = generators[True]
    trainable = sum(int(np.prod(v.shape)) for v in generator.trainable_variables)
    buffers = sum(int(np.prod(v.shape)) for v in generator.non_trainable_variables)
    assert (trainable, buffers) == (8_636_675, 5_824)


def test_attention_map_matches_fixture(fixture):
    for size in _size_suffixes(fixture):
        np.testing.assert_allclose(attention_map(fixture[f"input{size}"]), fixture[f"gray{size}"], atol=1e-6)


def test_padding_amounts_static_and_dynamic():
    images = tf.zeros((1, 52, 75, 3))
    assert padding_amounts(images) == (6, 6, 2, 3)
    assert padding_amounts(tf.zeros((1, 64, 96, 1))) == (0, 0, 0, 0)
    dynamic = tf.function(lambda x: tf.stack(padding_amounts(x)),
                          input_signature=[tf.TensorSpec((None, None, None, 3))])
    np.testing.assert_array_equal(dynamic(images), [6, 6, 2, 3])
    padded = reflect_pad(np.arange(5, dtype=np.float32).reshape(1, 1, 5, 1), (0, 0, 2, 1))
    np.testing.assert_array_equal(np.ravel(padded), [2, 1, 0, 1, 2, 3, 4, 3])  # edge not repeated


@pytest.mark.parametrize("align_corners", [False, True])
def test_bilinear_upsampling_matches_torch_formula(align_corners):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(1, 3, 5, 2)).astype(np.float32)

    def axis_matrix(n):
        matrix = np.zeros((2 * n, n))
        for i in range(2 * n):
            src = i * (n - 1) / (2 * n - 1) if align_corners else max((i + 0.5) / 2 - 0.5, 0.0)
            low = int(np.floor(src))
            high = min(low + 1, n - 1)
            matrix[i, low] += 1 - (src - low)
            matrix[i, high] += src - low
        return matrix

    want = np.einsum("ia,jb,nabc->nijc", axis_matrix(3), axis_matrix(5), images)
    np.testing.assert_allclose(upsample_bilinear_2x(images, align_corners), want, atol=1e-6)


def test_wide_inputs_run_at_half_resolution(generators):
    """Width > 2200: the U-Net sees the 2×2 average-pooled inputs; only the output is upsampled ×2."""
    generator = generators[True]
    rng = np.random.default_rng(1)
    images = rng.uniform(-1, 1, (1, 16, 2208, 3)).astype(np.float32)
    gray = attention_map(images)
    output, latent = generator((images, gray), training=False)
    half_output, half_latent = generator((tf.nn.avg_pool2d(images, 2, 2, "VALID"),
                                          tf.nn.avg_pool2d(gray, 2, 2, "VALID")), training=False)
    assert output.shape == (1, 16, 2208, 3) and latent.shape == (1, 8, 1104, 3)
    np.testing.assert_allclose(latent, half_latent, atol=1e-6)
    np.testing.assert_allclose(output, upsample_bilinear_2x(half_output, True), atol=1e-6)


def test_enhancer_keeps_odd_sizes_of_wide_inputs(generators):
    enhancer = EnlightenGANEnhancer(generator=generators[True])
    images = np.random.default_rng(2).uniform(0, 1, (1, 17, 2209, 3)).astype(np.float32)
    enhanced = enhancer(images).numpy()
    assert enhanced.shape == images.shape
    # Upstream returns 16×2208 here; the contract's extra row and column repeat the last ones.
    np.testing.assert_array_equal(enhanced[:, -1], enhanced[:, -2])
    np.testing.assert_array_equal(enhanced[:, :, -1], enhanced[:, :, -2])


def test_enhancer_contract_dynamic_shapes_and_range(generators):
    generator = _reload(generators[True], calibrated_state())
    enhancer = EnlightenGANEnhancer(generator=generator)
    images = np.random.default_rng(3).uniform(0, 1, (2, 52, 75, 3)).astype(np.float32)
    traced = tf.function(enhancer.call, input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])
    enhanced = traced(images).numpy()
    assert enhanced.shape == images.shape and enhanced.min() >= 0.0 and enhanced.max() <= 1.0
    x = images * 2 - 1
    output, _ = generator((x, attention_map(x)), training=False)
    np.testing.assert_allclose(enhanced, np.clip((output + 1) / 2, 0, 1), atol=1e-6)
    assert np.abs(enhanced - images).max() > 1e-3  # not the identity


def test_e2e_official_test_path_on_real_images(generators):
    """`scripts/script.py --predict` outputs (align_corners=True, uint8 by truncation) within one grey level."""
    enhancer = EnlightenGANEnhancer(generator=_reload(generators[True], calibrated_state()))
    folder = reference_path("enlightengan", "e2e")
    traced = tf.function(enhancer.call, input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])
    inputs = sorted((folder / "inputs").glob("*.png"))
    assert inputs
    for path in inputs:
        enhanced = traced(read_image(path)[None]).numpy()[0]
        want = np.asarray(Image.open(folder / "outputs" / f"{path.stem}_fake_B.png").convert("RGB"), np.int16)
        difference = np.abs(to_uint8(enhanced, "truncate").astype(np.int16) - want)
        assert difference.max() <= 1, path.name
        assert (difference > 0).mean() < 1e-3, path.name


def test_serialization_round_trip():
    generator = Generator(align_corners=False, name="g")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(generator))
    assert isinstance(clone, Generator) and clone.align_corners is False
    enhancer = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(
        EnlightenGANEnhancer(generator=clone)))
    assert isinstance(enhancer, EnlightenGANEnhancer) and enhancer.generator.align_corners is False


def test_tflite_export_with_dynamic_sizes(tmp_path, generators):
    """Builtin ops only (ResizeBilinear with align_corners, MirrorPad, IF for the wide-input branch), any size."""
    from ai_edge_litert.interpreter import Interpreter

    from train.export import export_tflite

    enhancer = EnlightenGANEnhancer(generator=_reload(generators[True], calibrated_state()))
    interpreter = Interpreter(model_path=str(export_tflite(enhancer, tmp_path / "enlightengan.tflite")))
    rng = np.random.default_rng(4)
    for shape in ((1, 52, 75, 3), (1, 17, 2209, 3)):
        images = rng.uniform(0, 1, shape).astype(np.float32)
        index = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(index, shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(index, images)
        interpreter.invoke()
        enhanced = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        np.testing.assert_allclose(enhanced, enhancer(images), atol=1e-5)
