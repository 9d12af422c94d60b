"""SCI's two sub-networks: the illumination estimator (`EnhanceNetwork`) and the self-calibration module
(`CalibrateNetwork`). Shapes are NHWC; images float32 in [0, 1] unless stated.

Weight sharing (original quirk 2): the original appends the *same* module object to `self.blocks` several
times, so each network has ONE residual block applied `num_layers` times (the original's `layers` argument):
`fea = fea + block(fea)`, with one BatchNorm statistics update per application. Here that is one Keras block
called `num_layers` times.
"""

from __future__ import annotations

import keras
from keras import ops

from sci_tf.layers import ConvNormReLU, conv3x3
from sci_tf.packing import apply_conv, pack_factor

# Illumination is clamped to [1e-4, 1] so that x / i stays finite (original `EnhanceNetwork.forward`).
ILLUMINATION_FLOOR = 1e-4


# === Layers ===


@keras.saving.register_keras_serializable(package="sci_tf")
class EnhanceNetwork(keras.layers.Layer):
    """Illumination estimator: (N, H, W, 3) stage input → illumination (N, H, W, 3) in [1e-4, 1].

    in_conv (conv 3→C + ReLU) → `num_layers` × [fea + ConvNormReLU(fea)] with one shared block → out_conv
    (conv C→3 + sigmoid); illumination = clamp(sigmoid(...) + input, 1e-4, 1). The original: C = 3, num_layers = 1.
    `norm_folded`: the block's BatchNorm folded into its conv (inference only, see `ConvNormReLU`).
    `pack_width` (with `norm_folded`): when the input width is known at trace time (eager calls, a graph traced
    for one size) and divisible by a pack factor, each convolution computes several columns per position
    (`sci_tf.packing`): the same sums, faster on CPU; otherwise (e.g. a graph traced for any width) the plain
    convolutions run.
    """

    def __init__(self, channels: int = 3, num_layers: int = 1, norm_folded: bool = False,
                 pack_width: bool = False, **kwargs):
        super().__init__(**kwargs)
        if pack_width and not norm_folded:
            raise ValueError("pack_width needs norm_folded=True (the packed form has no BatchNorm)")
        self.channels = channels
        self.num_layers = num_layers
        self.norm_folded = norm_folded
        self.pack_width = pack_width
        self.in_conv = conv3x3(channels, name="in_conv", activation="relu")
        self.block = ConvNormReLU(channels, norm_folded=norm_folded, name="block")
        self.out_conv = conv3x3(3, name="out_conv", activation="sigmoid")

    def build(self, input_shape):
        features = tuple(input_shape[:-1]) + (self.channels,)
        self.in_conv.build(input_shape)
        self.block.build(features)
        self.out_conv.build(features)

    def call(self, inputs, training=None):
        pack = pack_factor(inputs.shape[2]) if self.pack_width else 1
        features = apply_conv(self.in_conv, inputs, pack)
        for _ in range(self.num_layers):
            features = features + self.block(features, training=training, pack=pack)
        return ops.clip(apply_conv(self.out_conv, features, pack) + inputs, ILLUMINATION_FLOOR, 1.0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    # === Config ===
    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "num_layers": self.num_layers,
                "norm_folded": self.norm_folded, "pack_width": self.pack_width}


@keras.saving.register_keras_serializable(package="sci_tf")
class CalibrateNetwork(keras.layers.Layer):
    """Self-calibration module: reflectance (N, H, W, 3) in [0, 1] → att = r − sigmoid(...), (N, H, W, 3).

    in_conv (ConvNormReLU 3→C) → `num_layers` × [fea + block(fea)] with ONE shared block of two ConvNormReLU
    (the original `convs` = Conv-BN-ReLU-Conv-BN-ReLU) → out_conv (conv C→3 + sigmoid). The original uses C = 16,
    num_layers = 3. `att` is signed; the next stage's input is x + att.
    """

    def __init__(self, channels: int = 16, num_layers: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.num_layers = num_layers
        self.in_conv = ConvNormReLU(channels, name="in_conv")
        self.block_first = ConvNormReLU(channels, name="block_first")
        self.block_second = ConvNormReLU(channels, name="block_second")
        self.out_conv = conv3x3(3, name="out_conv", activation="sigmoid")

    def build(self, input_shape):
        features = tuple(input_shape[:-1]) + (self.channels,)
        self.in_conv.build(input_shape)
        self.block_first.build(features)
        self.block_second.build(features)
        self.out_conv.build(features)

    def call(self, inputs, training=None):
        features = self.in_conv(inputs, training=training)
        for _ in range(self.num_layers):
            block = self.block_second(self.block_first(features, training=training), training=training)
            features = features + block
        return inputs - self.out_conv(features)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    # === Config ===
    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "num_layers": self.num_layers}
