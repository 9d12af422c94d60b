"""EnlightenGAN's global and local discriminators: upstream `NoNormDiscriminator` (no norm, no sigmoid).

Every conv is 4×4 with zero padding 2 (Keras: `ZeroPadding2D(2)` + valid conv), so a stride-2 layer maps H to
⌊H/2⌋+1 and a stride-1 layer to H+1; each conv but the last is followed by LeakyReLU(0.2).
Input: (N, H, W, 3) in [-1,1]; output: float32 (N, H', W', 1) raw scores (LSGAN targets 1 real / 0 fake).
"""

from __future__ import annotations

import keras
import tensorflow as tf

# === Config ===

KERNEL_SIZE = 4
PADDING = 2  # upstream padw = ceil((kw - 1) / 2)
LEAKY_SLOPE = 0.2
MAX_FILTER_MULTIPLIER = 8


def discriminator_plan(n_layers: int, filters: int = 64) -> list[tuple[int, int]]:
    """(filters, stride) of every conv of `NoNormDiscriminator(3, filters, n_layers)`: n_layers stride-2 convs
    (filters × 1, 2, 4, 8, 8, ...), one stride-1 conv at ×min(2^n_layers, 8), then the 1-channel stride-1 conv."""
    plan = [(filters * min(2 ** n, MAX_FILTER_MULTIPLIER), 2) for n in range(n_layers)]
    plan.append((filters * min(2 ** n_layers, MAX_FILTER_MULTIPLIER), 1))
    plan.append((1, 1))
    return plan


# === Models ===


@keras.saving.register_keras_serializable(package="enlighten_tf")
class NoNormDiscriminator(keras.Model):
    """Upstream `NoNormDiscriminator(input_nc=3, ndf=filters, n_layers)`; `convs` are its convs in order."""

    def __init__(self, n_layers: int = 5, filters: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.n_layers = int(n_layers)
        self.filters = int(filters)
        self.pad = keras.layers.ZeroPadding2D(PADDING, name="zero_pad")
        self.convs = [keras.layers.Conv2D(out, KERNEL_SIZE, strides=stride, padding="valid", name=f"conv{index}")
                      for index, (out, stride) in enumerate(discriminator_plan(self.n_layers, self.filters))]
        self.build()  # the weights exist from the start (checkpoints load before any call)

    def build(self, input_shape=None):
        channels = 3
        for conv in self.convs:
            conv.build((None, None, None, channels))
            channels = conv.filters
        self.built = True

    def call(self, images):
        x = tf.cast(images, self.compute_dtype)
        for index, conv in enumerate(self.convs):
            x = conv(self.pad(x))
            if index < len(self.convs) - 1:
                x = tf.nn.leaky_relu(x, LEAKY_SLOPE)
        return tf.cast(x, tf.float32)

    def get_config(self):
        return {**super().get_config(), "n_layers": self.n_layers, "filters": self.filters}


@keras.saving.register_keras_serializable(package="enlighten_tf")
class GlobalDiscriminator(NoNormDiscriminator):
    """Global D of the official options (`n_layers_D=5`): 320² → 13×13, 64² → 5×5; 11,154,369 parameters."""

    def __init__(self, n_layers: int = 5, filters: int = 64, **kwargs):
        super().__init__(n_layers=n_layers, filters=filters, **kwargs)


@keras.saving.register_keras_serializable(package="enlighten_tf")
class LocalDiscriminator(NoNormDiscriminator):
    """Local (patch) D of the official options (`n_layers_patchD=4`): 32² → 5×5; 6,959,553 parameters."""

    def __init__(self, n_layers: int = 4, filters: int = 64, **kwargs):
        super().__init__(n_layers=n_layers, filters=filters, **kwargs)
