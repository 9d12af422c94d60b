"""losses_tf.sci against the original LossFunction / SmoothLoss / rgb2yCbCr (fixture train_network_seed0)."""

import numpy as np
import pytest
import tensorflow as tf

from losses_tf.sci import (SCILoss, SCISmoothnessLoss, sci_fidelity_loss, sci_loss, sci_rgb_to_ycbcr,
                           sci_smooth_loss)
from tests.loss_testing import assert_float32_under_mixed_bfloat16, assert_round_trips, bfloat16_policy


@pytest.fixture(scope="module")
def lossfn():
    from tests.reference import reference

    data = reference("sci", "train_network_seed0")
    return {key[len("lossfn/"):]: value for key, value in data.items() if key.startswith("lossfn/")}


def _rel(a, b):
    return abs(float(a) - float(b)) / abs(float(b))


def test_losses_match_original(lossfn):
    x, illu = lossfn["input"], lossfn["illu"]
    for fn, key in ((sci_loss, "total"), (sci_smooth_loss, "smooth"), (sci_fidelity_loss, "fidelity_mse")):
        per_image = fn(x, illu)
        assert per_image.shape == (x.shape[0],)
        assert _rel(np.mean(per_image), lossfn[key]) <= 1e-6, key


def test_ycbcr_reproduces_nchw_view_quirk(lossfn):
    x = lossfn["input"]
    got = sci_rgb_to_ycbcr(x).numpy()
    np.testing.assert_allclose(got, lossfn["ycbcr"], atol=1e-6)
    # A per-pixel (R,G,B) transform, what the code was presumably meant to do, is a different function.
    matrix = np.array([[0.257, -0.148, 0.439], [0.564, -0.291, -0.368], [0.098, 0.439, -0.071]], np.float32)
    per_pixel = x @ matrix + np.array([16, 128, 128], np.float32) / 255
    assert np.abs(per_pixel - lossfn["ycbcr"]).max() > 0.05


def _smooth_loss_numpy(input_nhwc, illu_nhwc):
    """float64 NCHW transcription of the original SmoothLoss, its 24 slice pairs written out one by one."""
    x = np.transpose(input_nhwc, (0, 3, 1, 2)).astype(np.float64)
    out = np.transpose(illu_nhwc, (0, 3, 1, 2)).astype(np.float64)
    matrix = np.array([[0.257, -0.148, 0.439], [0.564, -0.291, -0.368], [0.098, 0.439, -0.071]])
    guide = (x.reshape(-1, 3) @ matrix + np.array([16, 128, 128]) / 255).reshape(x.shape)
    s = slice
    pairs = [  # (slices of term a, slices of term b) over (H, W), in the original's order w1..w24
        ((s(1, None), s(None)), (s(None, -1), s(None))), ((s(None, -1), s(None)), (s(1, None), s(None))),
        ((s(None), s(1, None)), (s(None), s(None, -1))), ((s(None), s(None, -1)), (s(None), s(1, None))),
        ((s(None, -1), s(None, -1)), (s(1, None), s(1, None))), ((s(1, None), s(1, None)), (s(None, -1), s(None, -1))),
        ((s(1, None), s(None, -1)), (s(None, -1), s(1, None))), ((s(None, -1), s(1, None)), (s(1, None), s(None, -1))),
        ((s(2, None), s(None)), (s(None, -2), s(None))), ((s(None, -2), s(None)), (s(2, None), s(None))),
        ((s(None), s(2, None)), (s(None), s(None, -2))), ((s(None), s(None, -2)), (s(None), s(2, None))),
        ((s(None, -2), s(None, -1)), (s(2, None), s(1, None))), ((s(2, None), s(1, None)), (s(None, -2), s(None, -1))),
        ((s(2, None), s(None, -1)), (s(None, -2), s(1, None))), ((s(None, -2), s(1, None)), (s(2, None), s(None, -1))),
        ((s(None, -1), s(None, -2)), (s(1, None), s(2, None))), ((s(1, None), s(2, None)), (s(None, -1), s(None, -2))),
        ((s(1, None), s(None, -2)), (s(None, -1), s(2, None))), ((s(None, -1), s(2, None)), (s(1, None), s(None, -2))),
        ((s(None, -2), s(None, -2)), (s(2, None), s(2, None))), ((s(2, None), s(2, None)), (s(None, -2), s(None, -2))),
        ((s(2, None), s(None, -2)), (s(None, -2), s(2, None))), ((s(None, -2), s(2, None)), (s(2, None), s(None, -2))),
    ]
    total = 0.0
    for (ya, xa), (yb, xb) in pairs:
        weight = np.exp(np.sum((guide[:, :, ya, xa] - guide[:, :, yb, xb]) ** 2, axis=1) / -200.0)
        total += np.mean(weight * np.sum(np.abs(out[:, :, ya, xa] - out[:, :, yb, xb]), axis=1))
    return total


def test_smoothness_matches_a_term_by_term_transcription_on_odd_sizes():
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.2, 1.2, (2, 7, 10, 3)).astype(np.float32)  # stage inputs x + att leave [0, 1]
    illu = rng.uniform(1e-4, 1, (2, 7, 10, 3)).astype(np.float32)
    assert float(np.mean(sci_smooth_loss(x, illu))) == pytest.approx(_smooth_loss_numpy(x, illu), rel=1e-5)
    np.testing.assert_array_equal(sci_smooth_loss(x, np.full_like(x, 0.5)), [0.0, 0.0])


def test_keras_losses_equal_the_functions_and_weight_images(lossfn):
    x, illu = lossfn["input"], lossfn["illu"]
    for loss, fn in ((SCILoss(), sci_loss), (SCISmoothnessLoss(), sci_smooth_loss)):
        assert float(loss(x, illu)) == pytest.approx(float(np.mean(fn(x, illu))), rel=1e-6)
    # Sample weights select images: weight 1 on the first, 0 on the others gives its loss over the batch size.
    weights = np.zeros(x.shape[0], np.float32)
    weights[0] = 1.0
    weighted = SCILoss()(x, illu, sample_weight=weights)
    assert float(weighted) == pytest.approx(float(sci_loss(x[:1], illu[:1])[0]) / x.shape[0], rel=1e-5)


def test_float32_under_mixed_precision_with_finite_gradients(lossfn):
    assert_float32_under_mixed_bfloat16(SCILoss(), lossfn["input"], lossfn["illu"])
    x = tf.constant(lossfn["input"], tf.bfloat16)
    illu = tf.Variable(tf.constant(lossfn["illu"], tf.bfloat16))
    with bfloat16_policy(), tf.GradientTape() as tape:
        value = SCILoss()(x, illu)
    assert _rel(value, lossfn["total"]) < 1e-2  # bf16 inputs lose ~3 digits
    grad = tf.cast(tape.gradient(value, illu), tf.float32).numpy()
    assert np.isfinite(grad).all() and np.abs(grad).max() > 0


def test_keras_losses_round_trip_through_model_save(lossfn, tmp_path):
    for loss in (SCILoss(), SCISmoothnessLoss()):
        assert_round_trips(loss, lossfn["input"], lossfn["illu"], tmp_path)
