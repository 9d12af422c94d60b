"""Building blocks of SCI's networks: 3×3 convolutions and the Conv → BatchNorm → ReLU unit.

Every convolution of the original is `nn.Conv2d(k=3, stride=1, padding=1)` with bias, i.e. Keras "same" zero
padding; every BatchNorm is `nn.BatchNorm2d`, ported as `train.layers.TorchBatchNormalization` so running
statistics evolve as in PyTorch (one update per call, also when a block is reused).
"""

from __future__ import annotations

import keras

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
    running-statistics update per call) or the running statistics.
    """

    def __init__(self, filters: int, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.conv = conv3x3(filters, name="conv")
        self.norm = TorchBatchNormalization(
            gamma_initializer=keras.initializers.RandomNormal(1.0, INIT_STDDEV), name="norm")

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.norm.build(tuple(input_shape[:-1]) + (self.filters,))

    def call(self, inputs, training=None):
        return keras.ops.relu(self.norm(self.conv(inputs), training=training))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    # === Config ===
    def get_config(self):
        return {**super().get_config(), "filters": self.filters}
