"""Image quality metrics: PSNR and SSIM as per-image functions and as running-mean `keras.metrics.Metric`s.

Inputs: NHWC images of the same shape in [0, data_range], any float dtype (computed in float32).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from losses_tf.core import to_float32

# === Functions ===


def psnr(a: tf.Tensor, b: tf.Tensor, data_range: float = 1.0) -> tf.Tensor:
    """10·log10(data_range² / MSE) per image, (N,), in dB; +inf for identical images (`tf.image.psnr`)."""
    a, b = to_float32(a, b)
    return tf.image.psnr(a, b, max_val=data_range)


def ssim(a: tf.Tensor, b: tf.Tensor, data_range: float = 1.0) -> tf.Tensor:
    """SSIM per image, (N,) (`tf.image.ssim`: 11×11 gaussian window σ 1.5, k1 0.01, k2 0.03, mean over channels).
    Needs H, W ≥ 11."""
    a, b = to_float32(a, b)
    return tf.image.ssim(a, b, max_val=data_range)


# === Metric classes ===


class _PerImageMean(keras.metrics.Metric):
    """Running (sample-weighted) mean over every image seen of a per-image score."""

    def __init__(self, data_range: float = 1.0, name: str | None = None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.data_range = float(data_range)
        self.total = self.add_variable(shape=(), initializer="zeros", dtype="float32", aggregation="sum",
                                       name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", dtype="float32", aggregation="sum",
                                       name="count")

    def score(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = self.score(y_true, y_pred)
        if sample_weight is None:
            weights = tf.ones_like(values)
        else:
            weights = tf.broadcast_to(tf.reshape(tf.cast(sample_weight, tf.float32), [-1]), tf.shape(values))
        self.total.assign_add(tf.reduce_sum(values * weights))
        self.count.assign_add(tf.reduce_sum(weights))

    def result(self):
        return tf.math.divide_no_nan(self.total, self.count)

    def get_config(self):
        return {**super().get_config(), "data_range": self.data_range}


@keras.saving.register_keras_serializable(package="losses_tf")
class PSNR(_PerImageMean):
    """Mean PSNR (dB) over the images seen; +inf once an identical pair was seen."""

    def __init__(self, data_range: float = 1.0, name: str = "psnr", dtype=None):
        super().__init__(data_range=data_range, name=name, dtype=dtype)

    def score(self, y_true, y_pred):
        return psnr(y_true, y_pred, self.data_range)


@keras.saving.register_keras_serializable(package="losses_tf")
class SSIM(_PerImageMean):
    """Mean SSIM (Wang et al., IEEE TIP 2004) over the images seen."""

    def __init__(self, data_range: float = 1.0, name: str = "ssim", dtype=None):
        super().__init__(data_range=data_range, name=name, dtype=dtype)

    def score(self, y_true, y_pred):
        return ssim(y_true, y_pred, self.data_range)
