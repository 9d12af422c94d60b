"""`EnlightenGANEnhancer`: the generator behind the project's enhancer contract ([0,1] in, [0,1] out), and its
weights files.

A `.weights.h5` written by `save_enhancer_weights` (training, `llie convert enlightengan`) records, as HDF5
attributes of the file, the generator's bilinear upsampling mode (`align_corners`: it changes every output, and
the weights only work with the mode they were trained with) and whether the weights come from the authors'
checkpoint (then the BSD-2 notice `LICENSE_NOTICE` must travel with anything made from them).
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import tensorflow as tf

from enlighten_tf.convert import load_generator
from enlighten_tf.generator import Generator
from enlighten_tf.layers import attention_map
from train.callbacks import load_weights_file, read_weights_attributes, save_weights_atomically
from train.errors import NotAvailableError, WeightsMismatchError

# === Config ===

LICENSE_NOTICE = Path(__file__).resolve().parent / "LICENSE-EnlightenGAN-BSD2.txt"
ALIGN_CORNERS_ATTRIBUTE = "enlightengan_align_corners"
FROM_UPSTREAM_ATTRIBUTE = "enlightengan_from_upstream_checkpoint"
UPSTREAM_ALIGN_CORNERS = True  # torch 0.3.1's F.upsample, which the released checkpoint was trained with


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
        from_upstream: the weights come from the authors' checkpoint; `license_notice` is then the licence
            file to ship with anything exported from them.
    """

    def __init__(self, align_corners: bool = UPSTREAM_ALIGN_CORNERS, generator: Generator | None = None,
                 from_upstream: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator if generator is not None else Generator(align_corners, name="generator")
        self.from_upstream = bool(from_upstream)
        self.built = True  # the generator builds itself

    @property
    def license_notice(self) -> Path | None:
        """The licence that must travel with these weights (None: not derived from the authors' checkpoint)."""
        return LICENSE_NOTICE if self.from_upstream else None

    def call(self, images):
        return enhance(self.generator, images)

    def get_config(self):
        return {**super().get_config(), "align_corners": self.generator.align_corners,
                "from_upstream": self.from_upstream}


# === Weights files ===


def save_enhancer_weights(enhancer: EnlightenGANEnhancer, path: str | os.PathLike) -> Path:
    """The enhancer's weights at `path` (a .weights.h5, written atomically), recording the attributes
    `build_enhancer` reads back: the upsampling mode and whether the weights come from the authors' checkpoint."""
    return save_weights_atomically(enhancer, path, attributes={
        ALIGN_CORNERS_ATTRIBUTE: bool(enhancer.generator.align_corners),
        FROM_UPSTREAM_ATTRIBUTE: bool(enhancer.from_upstream)})


def _resolve_mode(path: str | os.PathLike, recorded: bool | None, requested: bool | None) -> bool:
    if recorded is not None and requested is not None and recorded != requested:
        raise WeightsMismatchError(f"{path}: these weights were trained with align_corners={recorded}; "
                                   f"they cannot run with align_corners={requested}")
    if recorded is not None:
        return recorded
    # Files written before the mode was recorded: the enhancer's default, as they were saved with.
    return UPSTREAM_ALIGN_CORNERS if requested is None else requested


def build_enhancer(preset: str | None = None, weights: str | os.PathLike | None = None,
                   align_corners: bool | None = None) -> EnlightenGANEnhancer:
    """The registry's builder. No official weights ship here (`preset` must be None).

    `weights`: a `.weights.h5` written by `llie convert enlightengan` or training (its recorded upsampling mode
    is used; an explicit `align_corners` that disagrees is an error), or an upstream `.pth`/.npz converted on the
    fly (`align_corners` default True, as the released checkpoint). Without weights the generator is randomly
    initialised (default True).
    """
    if preset is not None:
        raise NotAvailableError(f"enlightengan has no preset '{preset}': no official weights ship with this "
                                "package; convert the authors' checkpoint with `llie convert enlightengan`")
    default_mode = UPSTREAM_ALIGN_CORNERS if align_corners is None else align_corners
    if weights is None:
        return EnlightenGANEnhancer(align_corners=default_mode)
    if not str(weights).endswith(".weights.h5"):
        enhancer = EnlightenGANEnhancer(align_corners=default_mode, from_upstream=True)
        load_generator(enhancer.generator, weights)
        return enhancer
    attributes = read_weights_attributes(weights)
    recorded = attributes.get(ALIGN_CORNERS_ATTRIBUTE)
    enhancer = EnlightenGANEnhancer(align_corners=_resolve_mode(weights, recorded, align_corners),
                                    from_upstream=bool(attributes.get(FROM_UPSTREAM_ATTRIBUTE, False)))
    load_weights_file(enhancer, weights, "EnlightenGAN enhancer")
    return enhancer
