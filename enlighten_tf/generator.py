"""The EnlightenGAN generator: upstream `Unet_resize_conv` with the official options (self_attention,
times_residual, skip=1, use_norm=1, max pooling, no tanh).

Layer names are the upstream state_dict names (`conv1_1`, `bn1_1`, `deconv5`, ...), so `enlighten_tf.convert`
maps a checkpoint onto it by name.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from enlighten_tf.layers import (
    apply_if,
    avg_pool_2x,
    conv3x3,
    crop_padding,
    is_too_wide,
    max_pool_2x,
    padding_amounts,
    reflect_pad,
    upsample_bilinear_2x,
)
from train.layers import TorchBatchNormalization

# === Config ===

# (level, filters) of the encoder: two conv blocks per level; levels 1-4 end in a 2×2 max-pool.
ENCODER_FILTERS = ((1, 32), (2, 64), (3, 128), (4, 256), (5, 512))
# (level, filters) of the decoder: deconv{level-1} (up-conv) then two conv blocks, skip from encoder level 10-level.
DECODER_FILTERS = ((6, 256), (7, 128), (8, 64), (9, 32))
# Blocks with BatchNorm: every conv{l}_{k} except conv9_2 (upstream has no bn9_2).
BN_NAMES = tuple(f"bn{level}_{k}" for level in range(1, 9) for k in (1, 2)) + ("bn9_1",)
LEAKY_SLOPE = 0.2


@keras.saving.register_keras_serializable(package="enlighten_tf")
class Generator(keras.Model):
    """`Unet_resize_conv`: attention-guided U-Net in the original [-1,1] range.

    `call((images, gray))`: images (N, H, W, 3) in [-1,1], gray (N, H, W, 1) in [0,1] (see
    `layers.attention_map`), any H×W. Returns `(output, latent)`, both float32 (N, H, W, 3), unclamped:
    `latent = conv10(...)·gray`, `output = latent + images`. For inputs wider than 2200 px the U-Net runs on a
    2×2-average-pooled copy and `output` (not `latent`) is upsampled ×2, so odd sizes come back one pixel
    smaller, as upstream (the enhancer restores the size).

    Args:
        align_corners: bilinear upsampling mode. True = torch 0.3.1 `F.upsample` (what the released
            checkpoint was trained with); False = torch ≥ 0.4 default.
    """

    def __init__(self, align_corners: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.align_corners = bool(align_corners)
        for level, filters in ENCODER_FILTERS + DECODER_FILTERS:
            for k in (1, 2):
                setattr(self, f"conv{level}_{k}", conv3x3(filters, f"conv{level}_{k}"))
        for level, filters in DECODER_FILTERS:
            setattr(self, f"deconv{level - 1}", conv3x3(filters, f"deconv{level - 1}"))
        for name in BN_NAMES:
            setattr(self, name, TorchBatchNormalization(name=name))
        self.conv10 = keras.layers.Conv2D(3, 1, name="conv10")
        self.build()  # the weights exist from the start (checkpoints load by name before any call)

    def build(self, input_shape=None):
        channels = 4  # R, G, B, gray
        for level, filters in ENCODER_FILTERS:
            channels = self._build_level(level, channels, filters)
        for level, filters in DECODER_FILTERS:
            getattr(self, f"deconv{level - 1}").build((None, None, None, channels))
            channels = self._build_level(level, 2 * filters, filters)
        self.conv10.build((None, None, None, channels))
        self.built = True

    def _build_level(self, level: int, channels: int, filters: int) -> int:
        for k in (1, 2):
            getattr(self, f"conv{level}_{k}").build((None, None, None, channels))
            channels = filters
            if f"bn{level}_{k}" in BN_NAMES:
                getattr(self, f"bn{level}_{k}").build((None, None, None, filters))
        return channels

    def _block(self, x, name: str, training):
        """Upstream block order: conv → LeakyReLU(0.2) → BatchNorm (BN *after* the activation)."""
        x = tf.nn.leaky_relu(getattr(self, f"conv{name}")(x), LEAKY_SLOPE)
        bn = f"bn{name}"
        return getattr(self, bn)(x, training=training) if bn in BN_NAMES else x

    def _unet(self, images, gray, training):
        """The U-Net on padded inputs (H, W multiples of 16)."""
        dtype = self.compute_dtype
        grays = [tf.cast(gray, dtype)]
        for _ in range(4):
            grays.append(max_pool_2x(grays[-1]))  # gray₂..gray₅ at strides 2..16
        x = tf.concat([tf.cast(images, dtype), grays[0]], axis=-1)
        skips = []
        for level, _ in ENCODER_FILTERS[:-1]:
            x = self._block(self._block(x, f"{level}_1", training), f"{level}_2", training)
            skips.append(x)
            x = max_pool_2x(x)
        x = self._block(x, "5_1", training) * grays[4]
        x = self._block(x, "5_2", training)
        for level, _ in DECODER_FILTERS:
            skip_level = 10 - level
            up = getattr(self, f"deconv{level - 1}")(upsample_bilinear_2x(x, self.align_corners))
            x = tf.concat([up, skips[skip_level - 1] * grays[skip_level - 1]], axis=-1)
            x = self._block(self._block(x, f"{level}_1", training), f"{level}_2", training)
        latent = tf.cast(self.conv10(x), tf.float32) * tf.cast(gray, tf.float32)  # times_residual
        output = latent + tf.cast(images, tf.float32)  # skip = 1
        return output, latent

    def call(self, inputs, training=None):
        images, gray = inputs
        images = tf.cast(images, tf.float32)
        gray = tf.cast(gray, tf.float32)
        too_wide = is_too_wide(images)
        images, gray = apply_if(too_wide, lambda a, b: (avg_pool_2x(a), avg_pool_2x(b)), images, gray)
        amounts = padding_amounts(images)
        output, latent = self._unet(reflect_pad(images, amounts), reflect_pad(gray, amounts), training)
        output = crop_padding(output, amounts)
        latent = crop_padding(latent, amounts)
        # Upstream upsamples only the output (and the unused gray), not the latent.
        (output,) = apply_if(too_wide, lambda a: (upsample_bilinear_2x(a, self.align_corners),), output)
        return output, latent

    def get_config(self):
        return {**super().get_config(), "align_corners": self.align_corners}
