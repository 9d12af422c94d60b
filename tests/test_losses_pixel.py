import numpy as np
import pytest
import tensorflow as tf

from losses_tf import pixel
from tests.loss_testing import (
    assert_float32_under_mixed_bfloat16,
    assert_round_trips,
    gradient,
    random_images,
)


def _per_image(values):
    return values.reshape(values.shape[0], -1).mean(axis=1)


def _np_huber(d, delta):
    return np.where(np.abs(d) < delta, 0.5 * d**2, delta * (np.abs(d) - 0.5 * delta))


# (loss class, kwargs, function, float64 NumPy reference of d = y_pred - y_true → per-image loss)
CASES = [
    (pixel.L1Loss, {}, pixel.l1_loss, lambda d: _per_image(np.abs(d))),
    (pixel.L2Loss, {}, pixel.l2_loss, lambda d: _per_image(d**2)),
    (pixel.SmoothL1Loss, {"beta": 0.3}, pixel.smooth_l1_loss,
     lambda d: _per_image(np.where(np.abs(d) < 0.3, 0.5 * d**2 / 0.3, np.abs(d) - 0.15))),
    (pixel.SmoothL1Loss, {"beta": 0.0}, pixel.smooth_l1_loss, lambda d: _per_image(np.abs(d))),
    (pixel.HuberLoss, {"delta": 0.25}, pixel.huber_loss, lambda d: _per_image(_np_huber(d, 0.25))),
    (pixel.LogMSELoss, {"eps": 1e-8}, pixel.log_mse_loss, lambda d: 10 * np.log10(_per_image(d**2) + 1e-8)),
    (pixel.CharbonnierLoss, {"eps": 1e-3}, pixel.charbonnier_loss,
     lambda d: _per_image(np.sqrt(d**2 + 1e-6))),
    (pixel.CharbonnierLoss, {"eps": 0.0}, pixel.charbonnier_loss, lambda d: _per_image(np.abs(d))),
]
IDS = [f"{case[0].__name__}{case[1]}" for case in CASES]


@pytest.fixture(scope="module")
def images():
    return random_images(0), random_images(1)


@pytest.mark.parametrize("loss_class, kwargs, function, reference", CASES, ids=IDS)
def test_matches_float64_numpy(loss_class, kwargs, function, reference, images):
    y_true, y_pred = images
    expected = reference(y_pred.astype(np.float64) - y_true.astype(np.float64))
    per_image = function(y_true, y_pred, **kwargs)
    assert per_image.shape == (2,) and per_image.dtype == tf.float32
    np.testing.assert_allclose(per_image.numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(float(loss_class(**kwargs)(y_true, y_pred)), expected.mean(), rtol=1e-5)


@pytest.mark.parametrize("loss_class, kwargs, function, reference", CASES, ids=IDS)
def test_gradient_finite_and_zero_for_identical_images(loss_class, kwargs, function, reference, images):
    y_true, y_pred = images
    assert np.isfinite(gradient(loss_class(**kwargs), y_true, y_pred)).all()
    at_minimum = gradient(loss_class(**kwargs), y_true, y_true.copy())
    assert np.isfinite(at_minimum).all()
    np.testing.assert_array_equal(at_minimum, 0.0)


def test_charbonnier_gradient_is_analytic(images):
    y_true, y_pred = images
    d = y_pred.astype(np.float64) - y_true
    expected = d / np.sqrt(d**2 + 1e-4) / d[0].size / d.shape[0]
    np.testing.assert_allclose(gradient(pixel.CharbonnierLoss(eps=1e-2), y_true, y_pred), expected, rtol=1e-4)


def test_reduction_and_sample_weight_apply_to_per_image_values(images):
    y_true, y_pred = images
    per_image = pixel.l1_loss(y_true, y_pred).numpy()
    np.testing.assert_allclose(float(pixel.L1Loss(reduction="sum")(y_true, y_pred)), per_image.sum(), rtol=1e-6)
    weighted = pixel.L1Loss()(y_true, y_pred, sample_weight=np.array([1.0, 3.0], np.float32))
    np.testing.assert_allclose(float(weighted), (per_image[0] + 3 * per_image[1]) / 2, rtol=1e-6)


@pytest.mark.parametrize("loss_class, kwargs", [(case[0], case[1]) for case in CASES], ids=IDS)
def test_float32_under_mixed_bfloat16(loss_class, kwargs, images):
    assert_float32_under_mixed_bfloat16(loss_class(**kwargs), *images)


@pytest.mark.parametrize("loss_class, kwargs", [(case[0], case[1]) for case in CASES], ids=IDS)
def test_serialization_round_trip(loss_class, kwargs, images, tmp_path):
    assert_round_trips(loss_class(name="custom_name", **kwargs), *images, tmp_path)


@pytest.mark.parametrize("loss_class, function, name, bad, allowed, reference", [
    (pixel.SmoothL1Loss, pixel.smooth_l1_loss, "beta", -0.1, 0.0, np.abs),
    (pixel.HuberLoss, pixel.huber_loss, "delta", 0.0, 1e-3, lambda d: _np_huber(d, 1e-3)),
    (pixel.HuberLoss, pixel.huber_loss, "delta", -1.0, 1e-3, lambda d: _np_huber(d, 1e-3)),
    (pixel.CharbonnierLoss, pixel.charbonnier_loss, "eps", -1e-3, 0.0, np.abs),
])
def test_threshold_arguments_are_validated(loss_class, function, name, bad, allowed, reference, images):
    y = random_images(0, (1, 4, 4, 3))
    with pytest.raises(ValueError, match=rf"^{name} must be .*got {bad}"):
        loss_class(**{name: bad})
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        function(y, y, bad)
    # The smallest accepted value computes its formula (β = 0 and eps = 0 are plain L1).
    y_true, y_pred = images
    expected = reference(y_pred.astype(np.float64) - y_true.astype(np.float64)).mean()
    np.testing.assert_allclose(float(loss_class(**{name: allowed})(y_true, y_pred)), expected, rtol=1e-5)
