"""KinD's training losses (decomposition, restoration, adjustment), as in the three official training scripts.

All inputs NHWC float32 (cast to float32 first, so the losses stay float32 under mixed precision); every loss
is a batch scalar. Quirk shared by every gradient term: `kind_gradient` min-max normalises over the WHOLE tensor
(all images of the batch together), so a batch loss is not the mean of per-image losses; under a distribution
strategy each replica normalises over its own shard, like the original on one GPU with that batch.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from losses_tf.core import ImageLoss, to_float32

# Weights of decomposition_net_train.py's loss_Decom, in this order.
DECOMPOSITION_WEIGHTS = {
    "recon_loss_low": 1.0,
    "recon_loss_high": 1.0,
    "equal_R_loss": 0.01,
    "i_mutual_loss": 0.2,
    "i_input_mutual_loss_high": 0.15,
    "i_input_mutual_loss_low": 0.15,
}

# === Functions ===


def kind_gradient(x: tf.Tensor, direction: str) -> tf.Tensor:
    """The original `gradient()`: |conv2d(x, [[0,0],[-1,1]] or its transpose, SAME)|, min-max normalised.

    SAME with a 2×2 kernel pads one zero row/column at the bottom/right, so gx[i,j] = |x[i+1,j+1] − x[i+1,j]|
    and gy[i,j] = |x[i+1,j+1] − x[i,j+1]| (the last row/column compares with the zero padding).
    Quirk kept: normalised as (g − min)/(max − min + 1e-4) with min/max over the WHOLE tensor (batch included).
    x (N,H,W,C) (C=1 in the original) → same shape, in [0,1).
    """
    if direction not in ("x", "y"):
        raise ValueError(f"direction must be 'x' or 'y', got {direction!r}")
    (x,) = to_float32(x)
    padded = tf.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]])
    if direction == "x":
        gradient = tf.abs(padded[:, 1:, 1:] - padded[:, 1:, :-1])
    else:
        gradient = tf.abs(padded[:, 1:, 1:] - padded[:, :-1, 1:])
    low, high = tf.reduce_min(gradient), tf.reduce_max(gradient)
    return (gradient - low) / (high - low + 1e-4)


def _ssim_window(size: int = 11, sigma: float = 1.5) -> tf.Tensor:
    """`_tf_fspecial_gauss`: the normalised 2-D Gaussian window, shaped (size, size, 1, 1)."""
    coords = np.arange(-size // 2 + 1, size // 2 + 1, dtype=np.float64)
    window = np.exp(-(coords[:, None] ** 2 + coords[None, :] ** 2) / (2.0 * sigma**2))
    return tf.constant((window / window.sum()).astype(np.float32)[:, :, None, None])


def kind_ssim(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """The original `tf_ssim`: 11×11 Gaussian (σ=1.5) local statistics, VALID convolution, C1=1e-4, C2=9e-4.

    a, b (N,H,W,1) in [0,1], H and W ≥ 11 → scalar mean SSIM over the batch and all valid positions.
    """
    a, b = to_float32(a, b)
    window = _ssim_window()

    def blur(x):
        return tf.nn.conv2d(x, window, strides=1, padding="VALID")

    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = blur(a), blur(b)
    mu_aa, mu_bb, mu_ab = mu_a * mu_a, mu_b * mu_b, mu_a * mu_b
    var_a, var_b, cov = blur(a * a) - mu_aa, blur(b * b) - mu_bb, blur(a * b) - mu_ab
    value = ((2 * mu_ab + c1) * (2 * cov + c2)) / ((mu_aa + mu_bb + c1) * (var_a + var_b + c2))
    return tf.reduce_mean(value)


def _gradient_difference(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """mean((grad_x(a) − grad_x(b))² + (grad_y(a) − grad_y(b))²): both scripts' `grad_loss` on 1-channel maps."""
    x_loss = tf.square(kind_gradient(a, "x") - kind_gradient(b, "x"))
    y_loss = tf.square(kind_gradient(a, "y") - kind_gradient(b, "y"))
    return tf.reduce_mean(x_loss + y_loss)


def _mutual_i_loss(i_low: tf.Tensor, i_high: tf.Tensor) -> tf.Tensor:
    """mean(g·exp(−10g)) over x and y, g = grad(I_low) + grad(I_high): shared illumination edges only."""
    total = 0.0
    for direction in ("x", "y"):
        g = kind_gradient(i_low, direction) + kind_gradient(i_high, direction)
        total += g * tf.exp(-10.0 * g)
    return tf.reduce_mean(total)


def _mutual_i_input_loss(illumination: tf.Tensor, image: tf.Tensor) -> tf.Tensor:
    """mean(|grad(I) / max(grad(grey(S)), 0.01)|) over x and y: I smooth where the input image is smooth."""
    grey = tf.image.rgb_to_grayscale(image)  # BT.601 (0.2989, 0.5870, 0.1140), as the original
    total = 0.0
    for direction in ("x", "y"):
        total += tf.abs(kind_gradient(illumination, direction) / tf.maximum(kind_gradient(grey, direction), 0.01))
    return tf.reduce_mean(total)


def decomposition_loss(r_low: tf.Tensor, i_low: tf.Tensor, r_high: tf.Tensor, i_high: tf.Tensor,
                       input_low: tf.Tensor, input_high: tf.Tensor) -> dict[str, tf.Tensor]:
    """decomposition_net_train.py's loss_Decom: each term of `DECOMPOSITION_WEIGHTS` (unweighted) and "total".

    r_* (N,H,W,3) and i_* (N,H,W,1) are DecomNet outputs on input_low / input_high (N,H,W,3) in [0,1].
    """
    r_low, i_low, r_high, i_high, input_low, input_high = to_float32(
        r_low, i_low, r_high, i_high, input_low, input_high)
    terms = {
        # I is repeated to 3 channels (I_low_3 in the script): recon = mean|R·I − S|.
        "recon_loss_low": tf.reduce_mean(tf.abs(r_low * tf.tile(i_low, [1, 1, 1, 3]) - input_low)),
        "recon_loss_high": tf.reduce_mean(tf.abs(r_high * tf.tile(i_high, [1, 1, 1, 3]) - input_high)),
        "equal_R_loss": tf.reduce_mean(tf.abs(r_low - r_high)),
        "i_mutual_loss": _mutual_i_loss(i_low, i_high),
        "i_input_mutual_loss_high": _mutual_i_input_loss(i_high, input_high),
        "i_input_mutual_loss_low": _mutual_i_input_loss(i_low, input_low),
    }
    terms["total"] = tf.add_n([weight * terms[name] for name, weight in DECOMPOSITION_WEIGHTS.items()])
    return terms


def restoration_loss(output_r: tf.Tensor, target_r: tf.Tensor) -> dict[str, tf.Tensor]:
    """reflectance_restoration_net_train.py's loss: {"square", "ssim", "grad", "total"} (total = unweighted sum).

    square = MSE; ssim = 1 − mean of the three per-channel `kind_ssim`; grad = `grad_loss` of the BT.601 grey
    images. output_r, target_r (N,H,W,3) in [0,1], H, W ≥ 11.
    """
    output_r, target_r = to_float32(output_r, target_r)
    square = tf.reduce_mean(tf.square(output_r - target_r))
    channel_ssim = [kind_ssim(output_r[..., c : c + 1], target_r[..., c : c + 1]) for c in range(3)]
    ssim = 1.0 - (channel_ssim[0] + channel_ssim[1] + channel_ssim[2]) / 3.0
    grad = _gradient_difference(tf.image.rgb_to_grayscale(output_r), tf.image.rgb_to_grayscale(target_r))
    return {"square": square, "ssim": ssim, "grad": grad, "total": square + grad + ssim}


def adjust_loss(output_i: tf.Tensor, target_i: tf.Tensor) -> dict[str, tf.Tensor]:
    """illumination_adjustment_net_train.py's loss: {"square", "grad", "total"}; (N,H,W,1) maps in [0,1]."""
    output_i, target_i = to_float32(output_i, target_i)
    square = tf.reduce_mean(tf.square(output_i - target_i))
    grad = _gradient_difference(output_i, target_i)
    return {"square": square, "grad": grad, "total": square + grad}


# === Losses ===

# Channel layout of KinDDecompositionLoss's packed arguments.
DECOMPOSITION_INPUT_CHANNELS = {"input_low": 3, "input_high": 3}
DECOMPOSITION_OUTPUT_CHANNELS = {"r_low": 3, "i_low": 1, "r_high": 3, "i_high": 1}


def _unpack(packed: tf.Tensor, layout: dict[str, int], what: str) -> list[tf.Tensor]:
    channels = sum(layout.values())
    if packed.shape[-1] is not None and packed.shape[-1] != channels:
        raise ValueError(f"{what} must stack {' + '.join(f'{name} ({n})' for name, n in layout.items())} = "
                         f"{channels} channels, got shape {packed.shape}")
    return tf.split(packed, list(layout.values()), axis=-1)


@keras.saving.register_keras_serializable(package="losses_tf")
class KinDDecompositionLoss(ImageLoss):
    """`decomposition_loss(...)["total"]` as a Keras loss, its six tensors packed into the two of the interface.

    y_true: the input pair stacked on channels, concat([input_low, input_high], -1), (N, H, W, 6) in [0,1].
    y_pred: the DecomNet outputs stacked, concat([r_low, i_low, r_high, i_high], -1), (N, H, W, 8): R 3 channels,
    I 1 channel each (see `DECOMPOSITION_OUTPUT_CHANNELS`). Returns the batch scalar (the gradient terms
    normalise over the whole batch), so `sample_weight` scales the whole batch, not single images.
    """

    def __init__(self, name: str = "kind_decomposition_loss", reduction: str | None = "sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction)

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        input_low, input_high = _unpack(y_true, DECOMPOSITION_INPUT_CHANNELS, "y_true")
        r_low, i_low, r_high, i_high = _unpack(y_pred, DECOMPOSITION_OUTPUT_CHANNELS, "y_pred")
        return decomposition_loss(r_low, i_low, r_high, i_high, input_low, input_high)["total"]


@keras.saving.register_keras_serializable(package="losses_tf")
class KinDRestorationLoss(ImageLoss):
    """`restoration_loss(y_pred, y_true)["total"]` as a Keras loss (y_true: the reference reflectance).

    Returns the batch scalar (the gradient term normalises over the whole batch), so `sample_weight` scales
    the whole batch, not single images.
    """

    def __init__(self, name: str = "kind_restoration_loss", reduction: str | None = "sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction)

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        return restoration_loss(y_pred, y_true)["total"]


@keras.saving.register_keras_serializable(package="losses_tf")
class KinDAdjustLoss(ImageLoss):
    """`adjust_loss(y_pred, y_true)["total"]` as a Keras loss (y_true: the target illumination), batch scalar."""

    def __init__(self, name: str = "kind_adjust_loss", reduction: str | None = "sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction)

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        return adjust_loss(y_pred, y_true)["total"]
