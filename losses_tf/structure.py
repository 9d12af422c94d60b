"""Structural similarity losses: 1 − SSIM and 1 − MS-SSIM.

Inputs: y_true, y_pred NHWC of the same shape, values in [0, max_val], any float dtype (computed in float32).
SSIM needs H, W ≥ filter_size; MS-SSIM needs the coarsest of its len(power_factors) scales (each halves H and W,
rounding up) to be ≥ filter_size, e.g. 176 px for the defaults, 20 px for 3 scales with filter_size 5.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from losses_tf.core import ImageLoss, to_float32

# Wang, Simoncelli & Bovik (2003), as in tf.image.ssim_multiscale.
MS_SSIM_POWER_FACTORS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

# === Functions ===


def ssim_loss(y_true: tf.Tensor, y_pred: tf.Tensor, max_val: float = 1.0, filter_size: int = 11,
              filter_sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> tf.Tensor:
    """1 − `tf.image.ssim` per image, (N,). Gaussian window, valid convolution, mean over channels."""
    y_true, y_pred = to_float32(y_true, y_pred)
    return 1.0 - tf.image.ssim(y_true, y_pred, max_val, filter_size=filter_size, filter_sigma=filter_sigma,
                               k1=k1, k2=k2)


def _gaussian_window(filter_size: int, filter_sigma: float, channels: int) -> tf.Tensor:
    """The normalised 2-D gaussian of tf.image.ssim as a depthwise kernel (size, size, channels, 1)."""
    coords = tf.range(filter_size, dtype=tf.float32) - (filter_size - 1) / 2.0
    logits = -0.5 * tf.square(coords) / (filter_sigma * filter_sigma)
    window = tf.exp(logits[:, None] + logits[None, :])
    window = window / tf.reduce_sum(window)
    return tf.tile(window[:, :, None, None], [1, 1, channels, 1])


def _ssim_and_cs(x: tf.Tensor, y: tf.Tensor, window: tf.Tensor, max_val: float, k1: float,
                 k2: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-channel SSIM and contrast-structure term, (N, C) each, computed as tf.image.ssim does."""
    def blur(images):
        return tf.nn.depthwise_conv2d(images, window, strides=[1, 1, 1, 1], padding="VALID")

    c1 = (k1 * max_val) ** 2
    c2 = (k2 * max_val) ** 2
    mean_x, mean_y = blur(x), blur(y)
    mean_xy = 2.0 * mean_x * mean_y
    mean_sq = tf.square(mean_x) + tf.square(mean_y)
    luminance = (mean_xy + c1) / (mean_sq + c1)
    cs = (2.0 * blur(x * y) - mean_xy + c2) / (blur(tf.square(x) + tf.square(y)) - mean_sq + c2)
    return tf.reduce_mean(luminance * cs, axis=[1, 2]), tf.reduce_mean(cs, axis=[1, 2])


def _halve(images: tf.Tensor) -> tf.Tensor:
    """2×2 average pooling; odd H/W are first padded by one symmetric row/column, as tf.image.ssim_multiscale."""
    remainder = tf.shape(images)[1:3] % 2
    paddings = [[0, 0], [0, remainder[0]], [0, remainder[1]], [0, 0]]
    padded = tf.pad(images, paddings, mode="SYMMETRIC")
    return tf.nn.avg_pool2d(padded, ksize=2, strides=2, padding="VALID")


def _safe_power(base: tf.Tensor, exponent: float) -> tf.Tensor:
    """relu(base)**exponent with a zero (not NaN) gradient where base ≤ 0."""
    positive = base > 0.0
    powered = tf.pow(tf.where(positive, base, tf.ones_like(base)), exponent)
    return tf.where(positive, powered, tf.zeros_like(base))


def _check_ms_ssim_size(images: tf.Tensor, scales: int, filter_size: int) -> None:
    height, width = images.shape[1], images.shape[2]
    for size in (height, width):
        if size is None:
            continue
        coarsest = size
        for _ in range(scales - 1):
            coarsest = (coarsest + 1) // 2
        if coarsest < filter_size:
            raise ValueError(
                f"MS-SSIM with {scales} scales and filter_size {filter_size} needs larger images than "
                f"{height}×{width} (coarsest scale {coarsest} px); use fewer power_factors or a smaller filter_size")


def ms_ssim_loss(y_true: tf.Tensor, y_pred: tf.Tensor, max_val: float = 1.0,
                 power_factors: Sequence[float] = MS_SSIM_POWER_FACTORS, filter_size: int = 11,
                 filter_sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> tf.Tensor:
    """1 − MS-SSIM per image, (N,), equal in value to 1 − `tf.image.ssim_multiscale`.

    tf.image.ssim_multiscale takes relu(cs)**p with fractional p: where cs < 0 (unrelated or inverted images) the
    gradient is inf·0 = NaN. This re-implementation computes the same value with a zero gradient there instead.
    """
    y_true, y_pred = to_float32(y_true, y_pred)
    _check_ms_ssim_size(y_pred, len(power_factors), filter_size)
    window = _gaussian_window(filter_size, filter_sigma, y_pred.shape[-1])
    ms_ssim = 1.0
    for scale, power in enumerate(power_factors):
        if scale > 0:
            y_true, y_pred = _halve(y_true), _halve(y_pred)
        ssim, cs = _ssim_and_cs(y_true, y_pred, window, max_val, k1, k2)
        # Wang et al.: contrast-structure at every scale but the coarsest, where the full SSIM is used.
        ms_ssim = ms_ssim * _safe_power(ssim if scale == len(power_factors) - 1 else cs, power)
    return 1.0 - tf.reduce_mean(ms_ssim, axis=-1)


# === Loss classes ===


@keras.saving.register_keras_serializable(package="losses_tf")
class SSIMLoss(ImageLoss):
    """1 − SSIM (Wang, Bovik, Sheikh & Simoncelli, "Image quality assessment: from error visibility to structural
    similarity", IEEE TIP 2004), via `tf.image.ssim`."""

    def __init__(self, max_val: float = 1.0, filter_size: int = 11, filter_sigma: float = 1.5, k1: float = 0.01,
                 k2: float = 0.03, **kwargs):
        super().__init__(**kwargs)
        self.max_val = float(max_val)
        self.filter_size = int(filter_size)
        self.filter_sigma = float(filter_sigma)
        self.k1 = float(k1)
        self.k2 = float(k2)

    def call(self, y_true, y_pred):
        return ssim_loss(y_true, y_pred, self.max_val, self.filter_size, self.filter_sigma, self.k1, self.k2)

    def get_config(self):
        return {**super().get_config(), "max_val": self.max_val, "filter_size": self.filter_size,
                "filter_sigma": self.filter_sigma, "k1": self.k1, "k2": self.k2}


@keras.saving.register_keras_serializable(package="losses_tf")
class MSSSIMLoss(SSIMLoss):
    """1 − MS-SSIM (Wang, Simoncelli & Bovik, "Multiscale structural similarity for image quality assessment",
    Asilomar 2003), the value of `tf.image.ssim_multiscale` with NaN-free gradients (see `ms_ssim_loss`)."""

    def __init__(self, power_factors: Sequence[float] = MS_SSIM_POWER_FACTORS, **kwargs):
        super().__init__(**kwargs)
        self.power_factors = tuple(float(power) for power in power_factors)

    def call(self, y_true, y_pred):
        return ms_ssim_loss(y_true, y_pred, self.max_val, self.power_factors, self.filter_size, self.filter_sigma,
                            self.k1, self.k2)

    def get_config(self):
        return {**super().get_config(), "power_factors": list(self.power_factors)}
