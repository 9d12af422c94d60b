"""Pixel-wise distances between two images: L1, L2, smooth L1, Huber, log-MSE and Charbonnier.

Inputs: y_true, y_pred NHWC (any rank ≥ 2 works) of the same shape, any float dtype (computed in float32).
Functions return per-image losses, shape (N,); `tf.reduce_mean` of them is the batch loss, which is what the
Loss classes return with the default reduction.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from losses_tf.core import ImageLoss, check_non_negative, per_image_mean, safe_sqrt, to_float32

# === Functions ===


def l1_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Mean absolute error per image, (N,)."""
    y_true, y_pred = to_float32(y_true, y_pred)
    return per_image_mean(tf.abs(y_pred - y_true))


def l2_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Mean squared error per image, (N,)."""
    y_true, y_pred = to_float32(y_true, y_pred)
    return per_image_mean(tf.square(y_pred - y_true))


def _huber(difference: tf.Tensor, delta: float) -> tf.Tensor:
    absolute = tf.abs(difference)
    return tf.where(absolute < delta, 0.5 * tf.square(difference), delta * (absolute - 0.5 * delta))


def smooth_l1_loss(y_true: tf.Tensor, y_pred: tf.Tensor, beta: float = 1.0) -> tf.Tensor:
    """PyTorch `smooth_l1_loss`: 0.5·d²/β where |d| < β, else |d| − 0.5·β; β = 0 is L1. Per image, (N,).

    Raises ValueError for β < 0 (as PyTorch)."""
    beta = check_non_negative("beta", beta)
    y_true, y_pred = to_float32(y_true, y_pred)
    difference = y_pred - y_true
    if beta == 0.0:
        return per_image_mean(tf.abs(difference))
    return per_image_mean(_huber(difference, beta) / beta)


def huber_loss(y_true: tf.Tensor, y_pred: tf.Tensor, delta: float = 1.0) -> tf.Tensor:
    """Huber (1964): 0.5·d² where |d| < δ, else δ·(|d| − 0.5·δ). Per image, (N,).

    Raises ValueError for δ ≤ 0 (δ = 0 would be a loss of 0 everywhere; PyTorch's HuberLoss also needs δ > 0)."""
    delta = check_non_negative("delta", delta, allow_zero=False)
    y_true, y_pred = to_float32(y_true, y_pred)
    return per_image_mean(_huber(y_pred - y_true, delta))


def log_mse_loss(y_true: tf.Tensor, y_pred: tf.Tensor, eps: float = 1e-8) -> tf.Tensor:
    """10·log10(MSE + eps) per image, (N,): minus the PSNR of [0,1] images (HINet's "PSNR loss").

    `eps` keeps the value and its gradient finite for identical images (−80 dB at the default).
    """
    return (10.0 / math.log(10.0)) * tf.math.log(l2_loss(y_true, y_pred) + eps)


def charbonnier_loss(y_true: tf.Tensor, y_pred: tf.Tensor, eps: float = 1e-3) -> tf.Tensor:
    """Mean of sqrt(d² + eps²) per image, (N,); the sqrt is guarded so eps = 0 (plain L1) has finite gradients.

    Raises ValueError for eps < 0."""
    eps = check_non_negative("eps", eps)
    y_true, y_pred = to_float32(y_true, y_pred)
    return per_image_mean(safe_sqrt(tf.square(y_pred - y_true) + eps * eps))


# === Loss classes ===


@keras.saving.register_keras_serializable(package="losses_tf")
class L1Loss(ImageLoss):
    """Mean absolute error (L1)."""

    def call(self, y_true, y_pred):
        return l1_loss(y_true, y_pred)


@keras.saving.register_keras_serializable(package="losses_tf")
class L2Loss(ImageLoss):
    """Mean squared error (L2 / MSE)."""

    def call(self, y_true, y_pred):
        return l2_loss(y_true, y_pred)


@keras.saving.register_keras_serializable(package="losses_tf")
class SmoothL1Loss(ImageLoss):
    """PyTorch's smooth L1 (Girshick, "Fast R-CNN", ICCV 2015) with threshold `beta`."""

    def __init__(self, beta: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.beta = check_non_negative("beta", beta)

    def call(self, y_true, y_pred):
        return smooth_l1_loss(y_true, y_pred, self.beta)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta}


@keras.saving.register_keras_serializable(package="losses_tf")
class HuberLoss(ImageLoss):
    """Huber loss (Huber, "Robust estimation of a location parameter", 1964) with threshold `delta`."""

    def __init__(self, delta: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.delta = check_non_negative("delta", delta, allow_zero=False)

    def call(self, y_true, y_pred):
        return huber_loss(y_true, y_pred, self.delta)

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}


@keras.saving.register_keras_serializable(package="losses_tf")
class LogMSELoss(ImageLoss):
    """10·log10(MSE + eps): the PSNR loss of Chen et al., "HINet: Half Instance Normalization Network", CVPRW 2021."""

    def __init__(self, eps: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        self.eps = float(eps)

    def call(self, y_true, y_pred):
        return log_mse_loss(y_true, y_pred, self.eps)

    def get_config(self):
        return {**super().get_config(), "eps": self.eps}


@keras.saving.register_keras_serializable(package="losses_tf")
class CharbonnierLoss(ImageLoss):
    """sqrt(d² + eps²): Charbonnier et al., ICIP 1994; as a loss in Lai et al., "LapSRN", CVPR 2017."""

    def __init__(self, eps: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.eps = check_non_negative("eps", eps)

    def call(self, y_true, y_pred):
        return charbonnier_loss(y_true, y_pred, self.eps)

    def get_config(self):
        return {**super().get_config(), "eps": self.eps}
