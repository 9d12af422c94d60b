"""SCI's unsupervised illumination loss (Ma et al., CVPR 2022): fidelity + 24-term weighted smoothness.

`sci_loss(input, illu) = 1.5 · MSE(illu, input) + SmoothLoss(input, illu)`, as the original `LossFunction`.
Functions return per-image values (N,) like the rest of `losses_tf`; their batch mean is the original scalar.
`input` is the stage input (the low-light image, or x + att in later stages), `illu` the estimated illumination.
All tensors are NHWC float32; `illu` ∈ [1e-4, 1], `input` may leave [0, 1] (stage inputs x + att do).
Everything is computed in float32, also under a mixed-precision policy.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from losses_tf.core import ImageLoss, per_image_mean, to_float32

# Row-vector RGB → YCbCr matrix and offsets of the original `SmoothLoss.rgb2yCbCr` (BT.601, [0,1] range).
_YCBCR_MATRIX = ((0.257, -0.148, 0.439), (0.564, -0.291, -0.368), (0.098, 0.439, -0.071))
_YCBCR_BIAS = (16.0 / 255.0, 128.0 / 255.0, 128.0 / 255.0)
_SMOOTH_SIGMA = 10.0
# The 12 neighbour offsets (dy, dx) of the smoothness term. The original writes each one twice (w1/w2,
# w3/w4, ...: the pair differs only in the sign of the difference, which is squared / absolute), so every
# offset contributes two equal terms: 24 in all.
_SMOOTH_OFFSETS = ((1, 0), (0, 1), (1, 1), (1, -1), (2, 0), (0, 2), (2, 1), (2, -1), (1, 2), (1, -2), (2, 2),
                   (2, -2))
_FIDELITY_WEIGHT = 1.5


def sci_rgb_to_ycbcr(images: tf.Tensor) -> tf.Tensor:
    """The original `rgb2yCbCr`, quirk included: (N, H, W, 3) float → (N, H, W, 3) float32.

    Quirk (reproduced on purpose): the original calls `.view(-1, 3)` on an NCHW tensor, so each "pixel" it
    transforms is three consecutive elements of one channel row, not an (R, G, B) triple, and the result is
    viewed back as (N, 3, H, W). We do the same in NCHW order, then return NHWC.
    """
    (images,) = to_float32(images)
    nchw = tf.transpose(images, (0, 3, 1, 2))
    flat = tf.reshape(nchw, (-1, 3))
    mixed = tf.matmul(flat, tf.constant(_YCBCR_MATRIX, flat.dtype)) + tf.constant(_YCBCR_BIAS, flat.dtype)
    return tf.transpose(tf.reshape(mixed, tf.shape(nchw)), (0, 2, 3, 1))


def _neighbour_difference(images: tf.Tensor, dy: int, dx: int) -> tf.Tensor:
    """images[y + dy, x + dx] − images[y, x] over every valid (y, x): (N, H − dy, W − |dx|, C), dy ≥ 0."""
    # Constant (negative) slice bounds keep the graph free of shape arithmetic.
    rows_to, rows_from = slice(dy, None), slice(None, -dy or None)
    cols_to = slice(dx, None) if dx >= 0 else slice(None, dx)
    cols_from = slice(None, -dx or None) if dx >= 0 else slice(-dx, None)
    return images[:, rows_to, cols_to, :] - images[:, rows_from, cols_from, :]


def sci_smooth_loss(input: tf.Tensor, illu: tf.Tensor) -> tf.Tensor:
    """Smoothness term per image, (N,); its batch mean is the original `SmoothLoss()(input, illu)`.

    For each offset: weight w = exp(−Σ_c Δ(yuv(input))² / (2σ²)), σ = 10, times the L1 norm over channels of
    Δ(illu), averaged over the valid positions; the 12 offsets each count twice (see `_SMOOTH_OFFSETS`).
    """
    guide = sci_rgb_to_ycbcr(input)
    (illu,) = to_float32(illu)
    color_scale = -1.0 / (2.0 * _SMOOTH_SIGMA * _SMOOTH_SIGMA)
    total = 0.0
    for dy, dx in _SMOOTH_OFFSETS:
        weight = tf.exp(tf.reduce_sum(tf.square(_neighbour_difference(guide, dy, dx)), axis=-1) * color_scale)
        gradient = tf.reduce_sum(tf.abs(_neighbour_difference(illu, dy, dx)), axis=-1)
        total += 2.0 * per_image_mean(weight * gradient)
    return total


def sci_fidelity_loss(input: tf.Tensor, illu: tf.Tensor) -> tf.Tensor:
    """Mean squared error per image, (N,); its batch mean is the original `nn.MSELoss()(illu, input)`."""
    input, illu = to_float32(input, illu)
    return per_image_mean(tf.square(illu - input))


def sci_loss(input: tf.Tensor, illu: tf.Tensor) -> tf.Tensor:
    """1.5 · fidelity + smoothness per image, (N,); its batch mean is the original `LossFunction()(input, illu)`."""
    return _FIDELITY_WEIGHT * sci_fidelity_loss(input, illu) + sci_smooth_loss(input, illu)


# === Keras losses ===
# `y_true` is the (stage) input image, `y_pred` the illumination. The default reduction (batch mean) gives the
# original scalar.


@keras.saving.register_keras_serializable(package="losses_tf")
class SCISmoothnessLoss(ImageLoss):
    """SCI's 24-term smoothness loss: (input image, illumination) → per-image values, reduced by Keras."""

    def __init__(self, name: str = "sci_smoothness", reduction: str | None = "sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction)

    def call(self, y_true, y_pred):
        return sci_smooth_loss(y_true, y_pred)


@keras.saving.register_keras_serializable(package="losses_tf")
class SCILoss(ImageLoss):
    """SCI's full loss 1.5 · MSE + smoothness: (input image, illumination) → per-image values, reduced by Keras."""

    def __init__(self, name: str = "sci_loss", reduction: str | None = "sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction)

    def call(self, y_true, y_pred):
        return sci_loss(y_true, y_pred)
