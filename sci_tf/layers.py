"""Building blocks of SCI's networks: 3×3 convolutions and the Conv → BatchNorm → ReLU unit.

Every convolution of the original is `nn.Conv2d(k=3, stride=1, padding=1)` with bias, i.e. Keras "same" zero
padding; every BatchNorm is `nn.BatchNorm2d`, ported as `train.layers.TorchBatchNormalization` so running
statistics evolve as in PyTorch (one update per call, also when a block is reused).
"""

from __future__ import annotations

import keras
import numpy as np

from sci_tf.packing import apply_conv
from train.layers import TorchBatchNormalization


# The original train.py's `weights_init`: conv weights ~ N(0, 0.02), conv biases 0, BN γ ~ N(1, 0.02), β 0.
INIT_STDDEV = 0.02


def conv3x3(filters: int, name: str, activation: str | None = None) -> keras.layers.Conv2D:
    """3×3 convolution, stride 1, zero "same" padding, with bias (= PyTorch `padding=1`), SCI's initialisation."""
    return keras.layers.Conv2D(filters, 3, padding="same", use_bias=True, activation=activation, name=name,
                               kernel_initializer=keras.initializers.RandomNormal(0.0, INIT_STDDEV),
                               bias_initializer="zeros")


# === Layers ===


@keras.saving.register_keras_serializable(package="sci_tf")
class ConvNormReLU(keras.layers.Layer):
    """Conv3×3 (with bias) → PyTorch-style BatchNorm → ReLU: (N, H, W, C_in) → (N, H, W, filters).

    The original `nn.Sequential(Conv2d, BatchNorm2d, ReLU)`; `training` selects batch statistics (and one
    running-statistics update per call) or the running statistics. With `norm_folded=True` the layer has no
    BatchNorm: its conv holds conv∘BN of a trained layer in inference mode (`folded_weights`), which saves two
    element-wise passes per call; such a layer is for inference only (`training` is then ignored). `pack` > 1
    computes the conv that many columns per position (`sci_tf.packing`; it must divide W).
    """

    def __init__(self, filters: int, norm_folded: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.norm_folded = norm_folded
        self.conv = conv3x3(filters, name="conv")
        self.norm = None if norm_folded else TorchBatchNormalization(
            gamma_initializer=keras.initializers.RandomNormal(1.0, INIT_STDDEV), name="norm")

    def build(self, input_shape):
        self.conv.build(input_shape)
        if self.norm is not None:
            self.norm.build(tuple(input_shape[:-1]) + (self.filters,))

    def call(self, inputs, training=None, pack: int = 1):
        features = apply_conv(self.conv, inputs, pack)
        if self.norm is not None:
            features = self.norm(features, training=training)
        return keras.ops.relu(features)

    def folded_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """(kernel HWIO, bias) of one convolution equal to conv → BatchNorm with the running statistics:
        k·s and (b − mean)·s + β, with s = γ / sqrt(var + eps) per output channel (computed in float64)."""
        norm = self.norm
        scale = np.asarray(norm.gamma, np.float64) / np.sqrt(np.asarray(norm.moving_variance, np.float64)
                                                             + norm.epsilon)
        kernel = np.asarray(self.conv.kernel, np.float64) * scale
        bias = (np.asarray(self.conv.bias, np.float64) - np.asarray(norm.moving_mean, np.float64)) * scale \
            + np.asarray(norm.beta, np.float64)
        return kernel.astype(np.float32), bias.astype(np.float32)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    # === Config ===
    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "norm_folded": self.norm_folded}
