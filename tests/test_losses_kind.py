"""KinD losses: every term against the official training scripts' values (losses.npz), quirks, Keras losses."""

import numpy as np
import pytest
import tensorflow as tf

from losses_tf.kind import (DECOMPOSITION_WEIGHTS, KinDAdjustLoss, KinDDecompositionLoss, KinDRestorationLoss,
                            adjust_loss, decomposition_loss, kind_gradient, kind_ssim, restoration_loss)
from tests.loss_testing import assert_float32_under_mixed_bfloat16, assert_round_trips
from tests.reference import reference

REL = 1e-4


@pytest.fixture(scope="module")
def losses():
    return reference("kind", "losses")


def _close(value, expected, what):
    assert float(value) == pytest.approx(float(expected), rel=REL), what


def test_gradient_and_ssim_match_the_original(losses):
    for direction in ("x", "y"):
        np.testing.assert_allclose(kind_gradient(losses["grad_in"], direction), losses[f"grad_{direction}"],
                                   atol=1e-6, rtol=0, err_msg=direction)
    _close(kind_ssim(losses["ssim_a"], losses["ssim_b"]), losses["ssim_value"], "ssim")


def test_decomposition_terms_weights_and_total_match(losses):
    assert list(losses["dec_term_names"]) == list(DECOMPOSITION_WEIGHTS)
    np.testing.assert_allclose(list(DECOMPOSITION_WEIGHTS.values()), losses["dec_term_weights"])
    terms = decomposition_loss(*(losses[f"dec_{name}"] for name in
                                 ("R_low", "I_low", "R_high", "I_high", "input_low", "input_high")))
    for name in DECOMPOSITION_WEIGHTS:
        _close(terms[name], losses[f"dec_{name}"], name)
    _close(terms["total"], losses["dec_loss_Decom"], "total")


def test_restoration_and_adjust_terms_match(losses):
    terms = restoration_loss(losses["res_output_r"], losses["res_input_high_r"])
    for ours, theirs in (("square", "square"), ("ssim", "ssim"), ("grad", "grad"), ("total", "restoration")):
        _close(terms[ours], losses[f"res_loss_{theirs}"], ours)
    terms = adjust_loss(losses["adj_output_i"], losses["adj_input_high_i"])
    for ours, theirs in (("square", "square"), ("grad", "grad"), ("total", "adjust")):
        _close(terms[ours], losses[f"adj_loss_{theirs}"], ours)


def test_gradient_compares_with_zero_padding_and_normalises_over_the_whole_batch():
    x = np.zeros((2, 3, 3, 1), np.float32)
    x[0, 1, 2, 0], x[1, 2, 1, 0] = 1.0, 0.5
    gx = kind_gradient(x, "x").numpy()[..., 0]
    raw = np.zeros((2, 3, 3), np.float32)  # |x[i+1,j+1] − x[i+1,j]|, zero beyond the bottom/right edge
    raw[0, 0, 1], raw[0, 0, 2] = 1.0, 1.0  # (0, 2) compares x[1, 2] with the zero pad
    raw[1, 1, 0], raw[1, 1, 1] = 0.5, 0.5
    np.testing.assert_allclose(gx, raw / (1.0 + 1e-4), rtol=1e-6)  # batch item 1 is scaled by item 0's max
    with pytest.raises(ValueError, match="direction"):
        kind_gradient(x, "z")


def test_ssim_of_identical_images_is_one_and_drops_with_noise():
    image = np.random.default_rng(0).random((1, 16, 16, 1), np.float32)
    assert float(kind_ssim(image, image)) == pytest.approx(1.0, abs=1e-6)
    assert float(kind_ssim(image, np.clip(image + 0.2, 0, 1))) < 0.99


def test_keras_losses_equal_the_totals_and_are_float32_under_mixed_bfloat16(losses):
    restoration = KinDRestorationLoss()
    _close(restoration(losses["res_input_high_r"], losses["res_output_r"]), losses["res_loss_restoration"], "res")
    adjust = KinDAdjustLoss()
    _close(adjust(losses["adj_input_high_i"], losses["adj_output_i"]), losses["adj_loss_adjust"], "adjust")
    assert_float32_under_mixed_bfloat16(restoration, losses["res_input_high_r"], losses["res_output_r"])
    assert_float32_under_mixed_bfloat16(adjust, losses["adj_input_high_i"], losses["adj_output_i"])


def test_losses_have_finite_gradients_with_flat_inputs():
    flat = tf.Variable(tf.fill((2, 16, 16, 1), 0.5))
    with tf.GradientTape() as tape:
        total = adjust_loss(flat, tf.zeros((2, 16, 16, 1)))["total"]
    gradient = tape.gradient(total, flat)
    assert np.isfinite(gradient.numpy()).all() and np.abs(gradient.numpy()).max() > 0


def _packed_decomposition(losses):
    """(y_true, y_pred) of KinDDecompositionLoss from the fixture's six tensors."""
    y_true = np.concatenate([losses["dec_input_low"], losses["dec_input_high"]], axis=-1)
    y_pred = np.concatenate([losses[f"dec_{name}"] for name in ("R_low", "I_low", "R_high", "I_high")], axis=-1)
    return y_true, y_pred


def test_decomposition_keras_loss_equals_the_original_total(losses):
    y_true, y_pred = _packed_decomposition(losses)
    _close(KinDDecompositionLoss()(y_true, y_pred), losses["dec_loss_Decom"], "keras decomposition total")
    with pytest.raises(ValueError, match=r"y_pred must stack .* = 8 channels"):
        KinDDecompositionLoss()(y_true, y_pred[..., :7])
    with pytest.raises(ValueError, match=r"y_true must stack .* = 6 channels"):
        KinDDecompositionLoss()(y_true[..., :3], y_pred)


def test_keras_losses_round_trip_through_model_save(losses, tmp_path):
    assert_round_trips(KinDDecompositionLoss(), *_packed_decomposition(losses), tmp_path)
    assert_round_trips(KinDRestorationLoss(), losses["res_input_high_r"], losses["res_output_r"], tmp_path)
    assert_round_trips(KinDAdjustLoss(), losses["adj_input_high_i"], losses["adj_output_i"], tmp_path)


def _finite_gradients(function, *tensors):
    variables = [tf.Variable(tensor) for tensor in tensors]
    with tf.GradientTape() as tape:
        value = function(*variables)
    gradients = tape.gradient(value, variables)
    assert np.isfinite(float(value))
    for variable, grad in zip(variables, gradients):
        assert grad is not None and np.isfinite(grad.numpy()).all(), variable.name
    return float(value), gradients


@pytest.mark.parametrize("case", ["identical", "flat"])
def test_decomposition_and_restoration_have_finite_gradients(case):
    rng = np.random.default_rng(3)
    if case == "identical":  # low == high and R_low == R_high, I_low == I_high: the mutual terms' fixed point
        image = rng.random((2, 16, 16, 3), np.float32)
        r, i = rng.random((2, 16, 16, 3), np.float32), rng.random((2, 16, 16, 1), np.float32)
    else:  # constant maps: every gradient map is 0, max − min = 0 in the normalisation
        image = np.full((2, 16, 16, 3), 0.3, np.float32)
        r, i = np.full((2, 16, 16, 3), 0.5, np.float32), np.full((2, 16, 16, 1), 0.6, np.float32)
    _finite_gradients(lambda *t: decomposition_loss(*t)["total"], r, i, r.copy(), i.copy(), image, image.copy())
    value, _ = _finite_gradients(lambda a, b: restoration_loss(a, b)["total"], r, r.copy())
    assert value == pytest.approx(0.0, abs=1e-6)  # identical images: MSE 0, SSIM 1, equal gradients
