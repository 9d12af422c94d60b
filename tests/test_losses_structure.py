import numpy as np
import pytest
import tensorflow as tf

from losses_tf import structure
from tests.loss_testing import (
    assert_float32_under_mixed_bfloat16,
    assert_round_trips,
    gradient,
    random_images,
    ssim_and_cs,
)

SMALL_MS_SSIM = {"power_factors": (0.0448, 0.2856, 0.3001), "filter_size": 5}


@pytest.fixture(scope="module")
def images():
    """A target, a noisy version of it (high SSIM), an unrelated image and the inverted target (negative cs)."""
    target = random_images(0, (2, 45, 51, 3))
    noisy = np.clip(target + np.random.default_rng(1).normal(0, 0.1, target.shape), 0, 1).astype(np.float32)
    return {"target": target, "noisy": noisy, "unrelated": random_images(2, target.shape), "inverted": 1 - target}


def _np_ms_ssim(a, b, power_factors, size):
    """float64 MS-SSIM: cs at every scale but the last, SSIM at the last; 2×2 mean pooling after symmetric
    padding of odd sizes (as tf.image.ssim_multiscale); negative terms clipped to 0."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    result = 1.0
    for scale, power in enumerate(power_factors):
        if scale > 0:
            pad = ((0, 0), (0, a.shape[1] % 2), (0, a.shape[2] % 2), (0, 0))
            a, b = (np.pad(x, pad, mode="symmetric") for x in (a, b))
            a, b = (x.reshape(x.shape[0], x.shape[1] // 2, 2, x.shape[2] // 2, 2, -1).mean(axis=(2, 4))
                    for x in (a, b))
        ssim, cs = ssim_and_cs(a, b, size=size)
        result = result * np.maximum(ssim if scale == len(power_factors) - 1 else cs, 0) ** power
    return 1 - result.mean(axis=-1)


@pytest.mark.parametrize("other", ["noisy", "unrelated", "inverted"])
def test_ssim_loss_matches_float64_numpy(images, other):
    target, prediction = images["target"], images[other]
    expected = 1 - ssim_and_cs(target, prediction)[0].mean(axis=-1)
    np.testing.assert_allclose(structure.ssim_loss(target, prediction).numpy(), expected, atol=2e-6)
    np.testing.assert_allclose(float(structure.SSIMLoss()(target, prediction)), expected.mean(), atol=2e-6)


def test_ssim_loss_options_reach_the_computation(images):
    target, noisy = images["target"], images["noisy"]
    options = {"max_val": 2.0, "filter_size": 7, "filter_sigma": 1.0, "k1": 0.02, "k2": 0.05}
    expected = 1 - ssim_and_cs(target, noisy, 2.0, 7, 1.0, 0.02, 0.05)[0].mean(axis=-1)
    np.testing.assert_allclose(structure.SSIMLoss(**options).call(target, noisy).numpy(), expected, atol=2e-6)


@pytest.mark.parametrize("other", ["noisy", "unrelated", "inverted"])
def test_ms_ssim_loss_matches_numpy_and_tf_image(images, other):
    target, prediction = images["target"], images[other]
    ours = structure.ms_ssim_loss(target, prediction, **SMALL_MS_SSIM).numpy()
    expected = _np_ms_ssim(target, prediction, SMALL_MS_SSIM["power_factors"], SMALL_MS_SSIM["filter_size"])
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    tf_value = 1 - tf.image.ssim_multiscale(target, prediction, 1.0, **SMALL_MS_SSIM).numpy()
    np.testing.assert_allclose(ours, tf_value, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 176, 176, 3), (1, 181, 190, 3)], ids=["176px", "odd"])
def test_default_five_scale_ms_ssim_matches_tf_image(shape):
    # The smallest size the defaults accept (176 → 88 → 44 → 22 → 11 = filter_size) and odd sides (padding).
    target = random_images(5, shape)
    noisy = np.clip(target + np.random.default_rng(6).normal(0, 0.05, shape), 0, 1).astype(np.float32)
    expected = 1 - tf.image.ssim_multiscale(target, noisy, 1.0).numpy()
    assert len(structure.MS_SSIM_POWER_FACTORS) == 5 and expected.min() > 0
    np.testing.assert_allclose(structure.ms_ssim_loss(target, noisy).numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(float(structure.MSSSIMLoss()(target, noisy)), expected.mean(), atol=1e-5)


@pytest.mark.parametrize("other", ["unrelated", "inverted"])
def test_ms_ssim_gradient_finite_where_tf_image_gives_nan(images, other):
    target, prediction = images["target"], images[other]

    def tf_ms_ssim(a, b):
        return tf.image.ssim_multiscale(a, b, 1.0, **SMALL_MS_SSIM)

    # The trap is real for these inputs (else this test would prove nothing) ...
    assert np.isnan(gradient(tf_ms_ssim, target, prediction)).any()
    # ... and guarded here.
    assert np.isfinite(gradient(structure.MSSSIMLoss(**SMALL_MS_SSIM), target, prediction)).all()


@pytest.mark.parametrize("loss", [structure.SSIMLoss(), structure.MSSSIMLoss(**SMALL_MS_SSIM)],
                         ids=["SSIMLoss", "MSSSIMLoss"])
def test_identical_images_zero_loss_and_gradient(images, loss):
    target = images["target"]
    assert abs(float(loss(target, target))) < 1e-6
    at_minimum = gradient(loss, target, target.copy())
    assert np.isfinite(at_minimum).all() and np.abs(at_minimum).max() < 1e-7
    assert np.isfinite(gradient(loss, target, images["noisy"])).all()


def test_ms_ssim_rejects_images_too_small_for_its_scales():
    with pytest.raises(ValueError, match="coarsest scale"):
        structure.MSSSIMLoss()(random_images(0), random_images(1))


@pytest.mark.parametrize("loss", [structure.SSIMLoss(filter_size=7, k2=0.05),
                                  structure.MSSSIMLoss(power_factors=(0.3, 0.7), filter_size=7, max_val=1.5)],
                         ids=["SSIMLoss", "MSSSIMLoss"])
def test_float32_under_mixed_bfloat16_and_round_trip(images, loss, tmp_path):
    assert_float32_under_mixed_bfloat16(loss, images["target"], images["noisy"])
    assert_round_trips(loss, images["target"], images["noisy"], tmp_path)
