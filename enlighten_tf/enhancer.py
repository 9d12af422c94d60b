"""`EnlightenGANEnhancer`: the generator behind the project's enhancer contract ([0,1] in, [0,1] out)."""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from enlighten_tf.convert import load_generator
from enlighten_tf.generator import Generator
from enlighten_tf.layers import attention_map
from train.errors import NotAvailableError, WeightsMismatchError


def enhance(generator: Generator, images: tf.Tensor) -> tf.Tensor:
    """The test path of upstream `predict.py` around `generator` (eval mode): (N, H, W, 3) [0,1] → [0,1].

    x·2−1 (ToTensor + Normalize(0.5, 0.5)), the attention map of that [-1,1] image, then (output+1)/2 clipped
    to [0,1] (upstream clips when it saves the PNG).
    """
    images = tf.cast(images, tf.float32)
    x = images * 2.0 - 1.0
    output, _ = generator((x, attention_map(x)), training=False)
    # Inputs wider than 2200 px are processed at half size, so an odd side comes back one pixel short
    # (upstream quirk). The enhancer contract keeps the input size: the last row/column is repeated.
    if tuple(output.shape[1:3]) != tuple(images.shape[1:3]) or None in tuple(images.shape[1:3]):
        short = tf.shape(images)[1:3] - tf.shape(output)[1:3]
        output = tf.pad(output, [[0, 0], [0, short[0]], [0, short[1]], [0, 0]], mode="SYMMETRIC")
    return tf.clip_by_value((output + 1.0) / 2.0, 0.0, 1.0)


@keras.saving.register_keras_serializable(package="enlighten_tf")
class EnlightenGANEnhancer(keras.Model):
    """Enhances float32 NHWC images in [0,1] (any H×W, batch ≥ 1) → [0,1], same shape (see `enhance`).

    Args:
        align_corners: upsampling mode of the generator; True (default) matches the official checkpoint.
        generator: an existing `Generator` to wrap (shared, e.g. with the `EnlightenGAN` trainer); its own
            `align_corners` then applies.
    """

    def __init__(self, align_corners: bool = True, generator: Generator | None = None, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator if generator is not None else Generator(align_corners, name="generator")
        self.built = True  # the generator builds itself

    def call(self, images):
        return enhance(self.generator, images)

    def get_config(self):
        return {**super().get_config(), "align_corners": self.generator.align_corners}


def build_enhancer(preset: str | None = None, weights: str | os.PathLike | None = None,
                   align_corners: bool = True) -> EnlightenGANEnhancer:
    """The registry's builder. No official weights ship here (`preset` must be None); `weights` is a
    `.weights.h5` written by `llie convert enlightengan` or training, or an upstream `.pth`/.npz converted on
    the fly. Without weights the generator is randomly initialised."""
    if preset is not None:
        raise NotAvailableError(f"enlightengan has no preset '{preset}': no official weights ship with this "
                                "package; convert the authors' checkpoint with `llie convert enlightengan`")
    enhancer = EnlightenGANEnhancer(align_corners=align_corners)
    if weights is not None:
        if str(weights).endswith(".weights.h5"):
            if not os.path.isfile(weights):
                raise WeightsMismatchError(f"{weights}: no such weights file")
            try:
                enhancer.load_weights(weights)
            except (ValueError, OSError, KeyError) as err:  # how Keras reports a foreign or corrupt file
                first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise WeightsMismatchError(f"{weights}: not EnlightenGAN enhancer weights ({first_line})") from err
        else:
            load_generator(enhancer.generator, weights)
    return enhancer
