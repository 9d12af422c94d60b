"""Losses specific to low-light enhancement: edges, Fourier amplitude, Zero-DCE's no-reference losses, MBLLEN's
region loss.

Inputs: NHWC, RGB in [0,1] unless stated, any float dtype (computed in float32). Functions return per-image
losses, shape (N,). Zero-DCE's losses look at the enhanced image (and the input), not at a ground truth: their
Loss classes take the enhanced image as `y_pred` and document what `y_true` is (ignored, or the input image).
Zero-DCE's training weights them as 200·L_tvA + L_spa + 5·L_col + 10·L_exp.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from losses_tf.core import ImageLoss, per_image_mean, safe_sqrt, to_float32

# MBLLEN's grey conversion (its training code, not BT.601).
MBLLEN_GREY_WEIGHTS = (0.39, 0.5, 0.11)

# === Functions ===


def _sobel_magnitude(images: tf.Tensor) -> tf.Tensor:
    edges = tf.image.sobel_edges(images)  # (N, H, W, C, [d/dy, d/dx]), reflect-padded 3×3 Sobel.
    return safe_sqrt(tf.reduce_sum(tf.square(edges), axis=-1))


def edge_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """L1 between per-channel Sobel gradient magnitudes sqrt(gx² + gy²), (N,)."""
    y_true, y_pred = to_float32(y_true, y_pred)
    return per_image_mean(tf.abs(_sobel_magnitude(y_pred) - _sobel_magnitude(y_true)))


def _amplitude(images: tf.Tensor) -> tf.Tensor:
    spectrum = tf.signal.rfft2d(tf.transpose(images, [0, 3, 1, 2]))  # over H, W per channel; unnormalised.
    return safe_sqrt(tf.square(tf.math.real(spectrum)) + tf.square(tf.math.imag(spectrum)))


def frequency_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """L1 between the rFFT2 amplitude spectra (over H, W per channel, no normalisation), (N,)."""
    y_true, y_pred = to_float32(y_true, y_pred)
    return per_image_mean(tf.abs(_amplitude(y_pred) - _amplitude(y_true)))


def color_constancy_loss(enhanced: tf.Tensor) -> tf.Tensor:
    """Zero-DCE L_col per image, (N,): sqrt(Drg² + Drb² + Dgb²), D_pq = (mean_p − mean_q)², means over H, W."""
    (enhanced,) = to_float32(enhanced)
    mean_r, mean_g, mean_b = tf.unstack(tf.reduce_mean(enhanced, axis=[1, 2]), axis=-1)
    d_rg = tf.square(mean_r - mean_g)
    d_rb = tf.square(mean_r - mean_b)
    d_gb = tf.square(mean_b - mean_g)
    # Guarded sqrt: a grey image (all D = 0) gives gradient 0, not NaN.
    return safe_sqrt(tf.square(d_rg) + tf.square(d_rb) + tf.square(d_gb))


def exposure_control_loss(enhanced: tf.Tensor, patch_size: int = 16, well_exposed_level: float = 0.6,
                          distance: str = "l1") -> tf.Tensor:
    """Zero-DCE L_exp per image, (N,): mean over non-overlapping patch_size² patches of the channel-mean (grey)
    image of |patch mean − E|. Partial patches at the right/bottom border are dropped (AvgPool2d floor mode).

    `distance="l1"` is the paper's equation; the official code squares instead (`distance="l2"`).
    """
    (enhanced,) = to_float32(enhanced)
    grey = tf.reduce_mean(enhanced, axis=-1, keepdims=True)
    patches = tf.nn.avg_pool2d(grey, ksize=patch_size, strides=patch_size, padding="VALID")
    deviation = patches - well_exposed_level
    if distance == "l1":
        return per_image_mean(tf.abs(deviation))
    if distance == "l2":
        return per_image_mean(tf.square(deviation))
    raise ValueError(f"distance must be 'l1' or 'l2', got {distance!r}")


def _neighbour_differences(pooled: tf.Tensor) -> tf.Tensor:
    """(N, h, w, 1) → (N, h, w, 4): centre minus left, right, up, down neighbour.

    Zero-DCE computes these with 3×3 conv kernels and padding=1, so a neighbour outside the map is 0 and the
    border "difference" is the value itself; reproduced with zero padding.
    """
    padded = tf.pad(pooled, [[0, 0], [1, 1], [1, 1], [0, 0]])
    neighbours = [padded[:, 1:-1, :-2], padded[:, 1:-1, 2:], padded[:, :-2, 1:-1], padded[:, 2:, 1:-1]]
    return tf.concat([pooled - neighbour for neighbour in neighbours], axis=-1)


def spatial_consistency_loss(original: tf.Tensor, enhanced: tf.Tensor, pool_size: int = 4) -> tf.Tensor:
    """Zero-DCE L_spa per image, (N,): on pool_size² average-pooled channel means of the input and the enhanced
    image, the mean over regions of Σ over the 4 neighbours of (D_input − D_enhanced)²."""
    original, enhanced = to_float32(original, enhanced)

    def pooled_grey(images):
        grey = tf.reduce_mean(images, axis=-1, keepdims=True)
        return tf.nn.avg_pool2d(grey, ksize=pool_size, strides=pool_size, padding="VALID")

    difference = _neighbour_differences(pooled_grey(original)) - _neighbour_differences(pooled_grey(enhanced))
    return per_image_mean(tf.reduce_sum(tf.square(difference), axis=-1))


def illumination_smoothness_loss(maps: tf.Tensor, weight: float = 1.0) -> tf.Tensor:
    """Zero-DCE L_tvA (its `L_TV`) per image, (N,): weight·2·(Σ Δh²/((H−1)·W) + Σ Δw²/(H·(W−1))).

    `maps`: NHWC, any values and channels (Zero-DCE: its 24 curve-parameter maps). The sums run over channels
    too while the counts do not, as in the original (so the value grows with C).
    """
    (maps,) = to_float32(maps)
    height = tf.cast(tf.shape(maps)[1], tf.float32)
    width = tf.cast(tf.shape(maps)[2], tf.float32)
    vertical = tf.reduce_sum(tf.square(maps[:, 1:] - maps[:, :-1]), axis=[1, 2, 3])
    horizontal = tf.reduce_sum(tf.square(maps[:, :, 1:] - maps[:, :, :-1]), axis=[1, 2, 3])
    return weight * 2.0 * (vertical / ((height - 1.0) * width) + horizontal / (height * (width - 1.0)))


def _check_dark_fraction(dark_fraction: float) -> float:
    if not 0.0 < float(dark_fraction) < 1.0:
        raise ValueError(f"dark_fraction must be in (0, 1), got {dark_fraction}")
    return float(dark_fraction)


def region_loss(y_true: tf.Tensor, y_pred: tf.Tensor, dark_fraction: float = 0.4, dark_weight: float = 4.0,
                bright_weight: float = 1.0) -> tf.Tensor:
    """MBLLEN region loss per image, (N,): mean of w·|y_pred − y_true|, w = dark_weight on the darkest
    `dark_fraction` of pixels of y_true's grey (0.39 R + 0.5 G + 0.11 B), bright_weight elsewhere.

    The threshold is the sorted grey value at index int(H·W·dark_fraction − 1), ties included, as in MBLLEN's code.
    Raises ValueError unless 0 < dark_fraction < 1.
    """
    _check_dark_fraction(dark_fraction)
    y_true, y_pred = to_float32(y_true, y_pred)
    grey = tf.tensordot(y_true, tf.constant(MBLLEN_GREY_WEIGHTS, tf.float32), axes=[[3], [0]])
    flat = tf.reshape(grey, [tf.shape(grey)[0], -1])
    # Index computed in float64 like MBLLEN's Python int(256 * 256 * percent - 1).
    count = tf.cast(tf.shape(flat)[1], tf.float64)
    index = tf.maximum(tf.cast(tf.floor(count * dark_fraction - 1.0), tf.int32), 0)
    threshold = tf.sort(flat, axis=1)[:, index]
    dark = grey <= threshold[:, None, None]
    weights = tf.where(dark, dark_weight, bright_weight)[..., None]
    return per_image_mean(weights * tf.abs(y_pred - y_true))


# === Loss classes ===


@keras.saving.register_keras_serializable(package="losses_tf")
class EdgeLoss(ImageLoss):
    """L1 between Sobel gradient magnitudes (Sobel & Feldman's 3×3 operator, 1968), per channel: a gradient-domain
    loss like the gradient difference loss of Mathieu, Couprie & LeCun, "Deep multi-scale video prediction beyond
    mean square error", ICLR 2016, used in low-light work to keep edges sharp."""

    def call(self, y_true, y_pred):
        return edge_loss(y_true, y_pred)


@keras.saving.register_keras_serializable(package="losses_tf")
class FrequencyLoss(ImageLoss):
    """L1 between rFFT2 amplitude spectra. Frequency-domain L1 as in Cho et al., "MIMO-UNet" (ICCV 2021); on the
    amplitude because that is where lightness lives (Li et al., "UHDFour", ICLR 2023)."""

    def call(self, y_true, y_pred):
        return frequency_loss(y_true, y_pred)


@keras.saving.register_keras_serializable(package="losses_tf")
class ColorConstancyLoss(ImageLoss):
    """Zero-DCE colour constancy loss L_col (Guo et al., "Zero-Reference Deep Curve Estimation for Low-Light Image
    Enhancement", CVPR 2020). `y_pred`: the enhanced image; `y_true` is ignored."""

    def call(self, y_true, y_pred):
        return color_constancy_loss(y_pred)


@keras.saving.register_keras_serializable(package="losses_tf")
class ExposureControlLoss(ImageLoss):
    """Zero-DCE exposure control loss L_exp (Guo et al., CVPR 2020). `y_pred`: the enhanced image; `y_true` is
    ignored. `distance`: "l1" (paper) or "l2" (official code)."""

    def __init__(self, patch_size: int = 16, well_exposed_level: float = 0.6, distance: str = "l1", **kwargs):
        super().__init__(**kwargs)
        if distance not in ("l1", "l2"):
            raise ValueError(f"distance must be 'l1' or 'l2', got {distance!r}")
        self.patch_size = int(patch_size)
        self.well_exposed_level = float(well_exposed_level)
        self.distance = distance

    def call(self, y_true, y_pred):
        return exposure_control_loss(y_pred, self.patch_size, self.well_exposed_level, self.distance)

    def get_config(self):
        return {**super().get_config(), "patch_size": self.patch_size,
                "well_exposed_level": self.well_exposed_level, "distance": self.distance}


@keras.saving.register_keras_serializable(package="losses_tf")
class SpatialConsistencyLoss(ImageLoss):
    """Zero-DCE spatial consistency loss L_spa (Guo et al., CVPR 2020). `y_true`: the low-light input image;
    `y_pred`: the enhanced image."""

    def __init__(self, pool_size: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = int(pool_size)

    def call(self, y_true, y_pred):
        return spatial_consistency_loss(y_true, y_pred, self.pool_size)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size}


@keras.saving.register_keras_serializable(package="losses_tf")
class IlluminationSmoothnessLoss(ImageLoss):
    """Zero-DCE illumination smoothness (total variation) loss L_tvA (Guo et al., CVPR 2020). `y_pred`: the maps
    to smooth (curve parameters or an illumination map, any channels); `y_true` is ignored."""

    def __init__(self, weight: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.weight = float(weight)

    def call(self, y_true, y_pred):
        return illumination_smoothness_loss(y_pred, self.weight)

    def get_config(self):
        return {**super().get_config(), "weight": self.weight}


@keras.saving.register_keras_serializable(package="losses_tf")
class RegionLoss(ImageLoss):
    """MBLLEN region loss (Lv, Lu, Wu & Lim, "MBLLEN: Low-light Image/Video Enhancement Using CNNs", BMVC 2018):
    L1 weighted 4 on the darkest 40 % of the ground truth's grey pixels and 1 elsewhere.

    Differences from MBLLEN's released code, on purpose: its mask is computed from the *prediction* and, through a
    sign slip (`gray <= -kth_smallest`), is empty for non-negative images, so that code trains with plain L1. Here
    the mask comes from the ground truth (the paper does not say which image), so the weighted region is a fixed
    property of the target, and it is not differentiated. Normalisation is MBLLEN code's: one mean over all
    pixels (the paper's equation averages each region separately).
    """

    def __init__(self, dark_fraction: float = 0.4, dark_weight: float = 4.0, bright_weight: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.dark_fraction = _check_dark_fraction(dark_fraction)
        self.dark_weight = float(dark_weight)
        self.bright_weight = float(bright_weight)

    def call(self, y_true, y_pred):
        return region_loss(y_true, y_pred, self.dark_fraction, self.dark_weight, self.bright_weight)

    def get_config(self):
        return {**super().get_config(), "dark_fraction": self.dark_fraction, "dark_weight": self.dark_weight,
                "bright_weight": self.bright_weight}
