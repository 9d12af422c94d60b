"""sci_tf.packing: width-packed convolutions equal the plain ones; the fused SCIEnhancer uses them when the
width is known and packs, and computes the authors' numbers either way."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from sci_tf.enhancer import SCIEnhancer
from sci_tf.networks import EnhanceNetwork
from sci_tf.packing import PACK_FACTORS, pack_factor, packed_conv
from tests.reference import reference


@pytest.mark.parametrize("width, factor", [(600, 4), (1920, 4), (597, 3), (598, 2), (599, 1), (1, 1), (None, 1)])
def test_pack_factor_is_the_first_candidate_dividing_the_width(width, factor):
    assert pack_factor(width) == factor
    assert factor == 1 or factor in PACK_FACTORS


def _conv(kernel_in: int, kernel_out: int, seed: int) -> keras.layers.Conv2D:
    conv = keras.layers.Conv2D(kernel_out, 3, padding="same")
    conv.build((None, None, None, kernel_in))
    rng = np.random.default_rng(seed)
    conv.set_weights([rng.normal(0, 0.5, (3, 3, kernel_in, kernel_out)).astype(np.float32),
                      rng.normal(0, 0.5, (kernel_out,)).astype(np.float32)])
    return conv


@pytest.mark.parametrize("k", [2, 3, 4, 5])
@pytest.mark.parametrize("kernel_in, kernel_out", [(3, 3), (3, 5), (5, 3)])
def test_packed_convolution_equals_the_plain_one(k, kernel_in, kernel_out):
    conv = _conv(kernel_in, kernel_out, seed=k)
    images = np.random.default_rng(10 + k).uniform(-1, 1, (2, 7, 6 * k, kernel_in)).astype(np.float32)
    plain = conv(images).numpy()  # zero "same" padding, as the original's padding=1
    packed = packed_conv(images, conv, k).numpy()
    assert packed.shape == plain.shape == (2, 7, 6 * k, kernel_out)
    # Each packed weight is one original weight or 0, so only the summation order can differ.
    np.testing.assert_allclose(packed, plain, atol=2e-6, rtol=0)


@pytest.fixture(scope="module")
def medium():
    trained = SCIEnhancer.from_preset("medium")
    return trained, trained.fuse(pack_width=False), trained.fuse()


@pytest.mark.parametrize("width", [96, 597, 598, 599])
def test_packed_enhancer_equals_the_plain_fused_and_the_trained_one(medium, width):
    trained, plain, packed = medium
    images = np.random.default_rng(width).uniform(0.0, 0.4, (2, 21, width, 3)).astype(np.float32)
    got, illumination = (t.numpy() for t in packed(images, return_illumination=True))
    want, want_illumination = (t.numpy() for t in plain(images, return_illumination=True))
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
    np.testing.assert_allclose(illumination, want_illumination, atol=1e-6, rtol=0)
    np.testing.assert_allclose(got, trained(images).numpy(), atol=1e-5, rtol=0)


def _conv_strides(fn, spec) -> list[list[int]]:
    graph = tf.function(fn).get_concrete_function(spec).graph
    return [list(op.get_attr("strides")) for op in graph.get_operations() if op.type == "Conv2D"]


def test_packing_runs_when_the_traced_width_packs_and_not_for_any_width(medium):
    _, plain, packed = medium
    static = _conv_strides(lambda x: packed(x), tf.TensorSpec([1, 40, 600, 3], tf.float32))
    assert static == [[1, 1, 4, 1]] * 3  # every conv computes 4 columns per position
    for model, spec in ((packed, tf.TensorSpec([1, None, None, 3], tf.float32)),
                        (packed, tf.TensorSpec([1, 40, 599, 3], tf.float32)),
                        (plain, tf.TensorSpec([1, 40, 600, 3], tf.float32))):
        assert _conv_strides(lambda x, model=model: model(x), spec) == [[1, 1, 1, 1]] * 3


def test_packed_enhancer_reproduces_the_reference_at_a_packing_width(medium):
    _, _, packed = medium
    fixture = reference("sci", "pretrained_medium")
    image = fixture["input_0"]
    assert pack_factor(image.shape[2]) > 1
    np.testing.assert_allclose(packed(image).numpy(), fixture["enhanced_0"], atol=1e-5, rtol=0)


def test_pack_width_is_configured_and_needs_the_folded_form(medium):
    _, plain, packed = medium
    assert packed.pack_width and not plain.pack_width
    restored = SCIEnhancer.from_config(packed.get_config())
    assert restored.pack_width and restored.enhance.pack_width and restored.fused
    with pytest.raises(ValueError, match="pack_width needs norm_folded=True"):
        EnhanceNetwork(pack_width=True)
