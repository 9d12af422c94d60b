import numpy as np
import pytest

from losses_tf import lowlight
from tests.loss_testing import (
    assert_float32_under_mixed_bfloat16,
    assert_round_trips,
    gradient,
    random_images,
)

SOBEL_Y = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], np.float64)


def _correlate3x3(images, kernel, mode):
    """Per-channel 3×3 correlation, 'same' size, with np.pad `mode` at the border."""
    padded = np.pad(images.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)), mode=mode)
    height, width = images.shape[1:3]
    return sum(kernel[i, j] * padded[:, i:i + height, j:j + width] for i in range(3) for j in range(3))


def _per_image(values):
    return values.reshape(values.shape[0], -1).mean(axis=1)


def _block_mean(images, size):
    n, h, w, c = images.shape
    h, w = h // size * size, w // size * size
    return images[:, :h, :w].reshape(n, h // size, size, w // size, size, c).mean(axis=(2, 4))


def np_edge(y_true, y_pred):
    def magnitude(x):
        return np.hypot(_correlate3x3(x, SOBEL_Y, "reflect"), _correlate3x3(x, SOBEL_Y.T, "reflect"))
    return _per_image(np.abs(magnitude(y_pred) - magnitude(y_true)))


def np_frequency(y_true, y_pred):
    def amplitude(x):
        return np.abs(np.fft.rfft2(x.astype(np.float64), axes=(1, 2)))
    return _per_image(np.abs(amplitude(y_pred) - amplitude(y_true)))


def np_color(enhanced):
    r, g, b = enhanced.astype(np.float64).mean(axis=(1, 2)).T
    return np.sqrt((r - g) ** 4 + (r - b) ** 4 + (g - b) ** 4)


def np_exposure(enhanced, patch_size, level, distance):
    deviation = _block_mean(enhanced.astype(np.float64).mean(axis=-1, keepdims=True), patch_size) - level
    return _per_image(np.abs(deviation) if distance == "l1" else deviation**2)


def np_spatial(original, enhanced):
    """Zero-DCE's L_spa literally: four 3×3 difference kernels, zero padding 1, on 4×4-pooled channel means."""
    kernels = [np.array(k, np.float64) for k in (
        [[0, 0, 0], [-1, 1, 0], [0, 0, 0]], [[0, 0, 0], [0, 1, -1], [0, 0, 0]],
        [[0, -1, 0], [0, 1, 0], [0, 0, 0]], [[0, 0, 0], [0, 1, 0], [0, -1, 0]])]
    pooled = [_block_mean(x.astype(np.float64).mean(axis=-1, keepdims=True), 4) for x in (original, enhanced)]
    energy = sum((_correlate3x3(pooled[0], k, "constant") - _correlate3x3(pooled[1], k, "constant")) ** 2
                 for k in kernels)
    return _per_image(energy)


def np_tv(maps, weight):
    maps = maps.astype(np.float64)
    n, h, w, _ = maps.shape
    vertical = ((maps[:, 1:] - maps[:, :-1]) ** 2).reshape(n, -1).sum(axis=1) / ((h - 1) * w)
    horizontal = ((maps[:, :, 1:] - maps[:, :, :-1]) ** 2).reshape(n, -1).sum(axis=1) / (h * (w - 1))
    return weight * 2 * (vertical + horizontal)


def np_region(y_true, y_pred):
    grey = y_true.astype(np.float64) @ np.array([0.39, 0.5, 0.11])
    flat = grey.reshape(grey.shape[0], -1)
    threshold = np.sort(flat, axis=1)[:, int(flat.shape[1] * 0.4 - 1)]
    weights = np.where(grey <= threshold[:, None, None], 4.0, 1.0)[..., None]
    return _per_image(weights * np.abs(y_pred.astype(np.float64) - y_true))


# (Loss, kwargs, reference(y_true, y_pred) → per-image float64). Zero-DCE no-reference losses ignore y_true.
CASES = [
    (lowlight.EdgeLoss, {}, np_edge),
    (lowlight.FrequencyLoss, {}, np_frequency),
    (lowlight.ColorConstancyLoss, {}, lambda y_true, y_pred: np_color(y_pred)),
    (lowlight.ExposureControlLoss, {}, lambda y_true, y_pred: np_exposure(y_pred, 16, 0.6, "l1")),
    (lowlight.ExposureControlLoss, {"patch_size": 5, "well_exposed_level": 0.4, "distance": "l2"},
     lambda y_true, y_pred: np_exposure(y_pred, 5, 0.4, "l2")),
    (lowlight.SpatialConsistencyLoss, {}, np_spatial),
    (lowlight.IlluminationSmoothnessLoss, {"weight": 3.0}, lambda y_true, y_pred: np_tv(y_pred, 3.0)),
    (lowlight.RegionLoss, {}, np_region),
]
IDS = [f"{case[0].__name__}{case[1]}" for case in CASES]


@pytest.fixture(scope="module")
def images():
    """A dark input and a brighter result with a colour cast. Odd sizes on purpose: partial pooling windows are
    dropped, not averaged."""
    low = random_images(0, (2, 34, 37, 3)) * 0.3
    cast = np.array([1.0, 0.8, 0.6], np.float32)
    return low, np.clip(low * 2.5 * cast + random_images(1, low.shape) * 0.2, 0, 1).astype(np.float32)


@pytest.mark.parametrize("loss_class, kwargs, reference", CASES, ids=IDS)
def test_matches_float64_numpy(loss_class, kwargs, reference, images):
    y_true, y_pred = images
    expected = reference(y_true, y_pred)
    assert expected.min() > 0
    loss = loss_class(**kwargs)
    np.testing.assert_allclose(loss.call(y_true, y_pred).numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(float(loss(y_true, y_pred)), expected.mean(), rtol=1e-5)


def test_no_reference_losses_ignore_y_true(images):
    _, enhanced = images
    for loss in (lowlight.ColorConstancyLoss(), lowlight.ExposureControlLoss(), lowlight.IlluminationSmoothnessLoss()):
        assert float(loss(np.zeros_like(enhanced), enhanced)) == float(loss(enhanced, enhanced))


def test_functions_take_the_zero_dce_inputs_directly(images):
    low, enhanced = images
    maps = random_images(3, (2, 16, 20, 24))  # Zero-DCE's 24 curve-parameter maps
    np.testing.assert_allclose(lowlight.illumination_smoothness_loss(maps, 200.0).numpy(), np_tv(maps, 200.0),
                               rtol=1e-5)
    np.testing.assert_allclose(lowlight.spatial_consistency_loss(low, enhanced).numpy(), np_spatial(low, enhanced),
                               rtol=1e-5)
    np.testing.assert_allclose(lowlight.color_constancy_loss(enhanced).numpy(), np_color(enhanced), rtol=1e-5)


def test_region_loss_weights_the_darkest_40_percent_of_the_ground_truth(images):
    y_true, _ = images
    # |error| = 1 everywhere, so the loss is the mean weight: (4·k + 1·(HW − k)) / HW, k = int(0.4·HW − 1) + 1.
    count = y_true.shape[1] * y_true.shape[2]
    dark = int(count * 0.4 - 1) + 1
    expected = (4 * dark + (count - dark)) / count
    np.testing.assert_allclose(lowlight.region_loss(y_true, y_true + 1.0).numpy(), [expected] * 2, rtol=1e-6)
    # The mask follows y_true only: moving the prediction does not move it.
    np.testing.assert_allclose(lowlight.region_loss(y_true, y_true - 1.0).numpy(), [expected] * 2, rtol=1e-6)


@pytest.mark.parametrize("loss_class, kwargs, reference", CASES, ids=IDS)
def test_gradients_finite_on_flat_grey_and_identical_images(loss_class, kwargs, reference, images):
    """Flat grey images zero the Sobel magnitudes, the non-DC spectrum and the colour differences (sqrt at 0)."""
    y_true, y_pred = images
    loss = loss_class(**kwargs)
    grey = np.full_like(y_true, 0.5)
    for target, prediction in ((y_true, y_pred), (y_true, y_true.copy()), (grey, grey.copy())):
        assert np.isfinite(gradient(loss, target, prediction)).all()
    if loss_class in (lowlight.EdgeLoss, lowlight.FrequencyLoss, lowlight.ColorConstancyLoss, lowlight.RegionLoss,
                      lowlight.SpatialConsistencyLoss, lowlight.IlluminationSmoothnessLoss):
        # Each is at its minimum 0 there: the gradient must vanish, not blow up.
        np.testing.assert_array_equal(gradient(loss, grey, grey.copy()), 0.0)


@pytest.mark.parametrize("loss_class, kwargs", [(case[0], case[1]) for case in CASES], ids=IDS)
def test_float32_under_mixed_bfloat16_and_round_trip(loss_class, kwargs, images, tmp_path):
    assert_float32_under_mixed_bfloat16(loss_class(**kwargs), *images)
    assert_round_trips(loss_class(**kwargs), *images, tmp_path)


def test_exposure_rejects_unknown_distance():
    with pytest.raises(ValueError, match="distance"):
        lowlight.ExposureControlLoss(distance="huber")


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5])
def test_region_loss_dark_fraction_must_be_inside_zero_one(fraction):
    y = random_images(0, (1, 4, 4, 3))
    with pytest.raises(ValueError, match=r"dark_fraction must be in \(0, 1\)"):
        lowlight.RegionLoss(dark_fraction=fraction)
    with pytest.raises(ValueError, match=r"dark_fraction must be in \(0, 1\)"):
        lowlight.region_loss(y, y, dark_fraction=fraction)
