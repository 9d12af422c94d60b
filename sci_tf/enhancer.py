"""`SCIEnhancer`: the deployable SCI model — the illumination estimator alone, as the original `Finetunemodel`.

At test time SCI drops the self-calibration module: r = clamp(x / EnhanceNetwork(x), 0, 1) (original test.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
from keras import ops

from sci_tf.networks import EnhanceNetwork
from sci_tf.presets import LICENSE_NOTICE, preset_weights_path
from train.callbacks import load_weights_file, read_weights_attributes

# HDF5 attribute of a .weights.h5 made from the authors' weights (`llie convert sci`, the presets).
FROM_AUTHORS_ATTRIBUTE = "sci_from_authors"


@keras.saving.register_keras_serializable(package="sci_tf")
class SCIEnhancer(keras.Model):
    """Low-light image (N, H, W, 3) float32 in [0, 1] → enhanced image, same shape, in [0, 1].

    Any H×W, batch ≥ 1. BatchNorm uses its running statistics unless called with `training=True` (SCI's
    per-image finetuning uses batch statistics). `return_illumination=True` also returns the illumination
    i ∈ [1e-4, 1] (same shape): `(enhanced, illumination)`.

    `fuse()` gives the inference form that `llie enhance`, `llie export` and the benchmark run: the same
    network with the BatchNorm folded into its convolution (`fused=True`; inference only) and, by default,
    width-packed convolutions wherever the image width is known when the graph is built (`pack_width`, see
    `EnhanceNetwork`).

    `from_authors`: the weights derive from the authors' release (the presets, an original state dict); their
    MIT notice, `license_notice`, then travels with anything converted or exported from them.
    """

    def __init__(self, channels: int = 3, num_layers: int = 1, fused: bool = False, from_authors: bool = False,
                 pack_width: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.num_layers = num_layers
        self.fused = fused
        self.from_authors = bool(from_authors)
        self.pack_width = pack_width
        self.enhance = EnhanceNetwork(channels, num_layers, norm_folded=fused, pack_width=pack_width,
                                      name="enhance")

    @property
    def license_notice(self) -> Path | None:
        """The licence file that must travel with these weights (None: not derived from the authors')."""
        return LICENSE_NOTICE if self.from_authors else None

    def build(self, input_shape=(None, None, None, 3)):
        self.enhance.build(input_shape)
        self.built = True

    def call(self, image, training=None, return_illumination: bool = False):
        if self.fused and training:
            raise ValueError("a fused SCIEnhancer has no BatchNorm statistics to train; use the unfused model")
        illumination = self.enhance(image, training=training)
        # Retinex division; the clamp keeps over-bright pixels at 1 (original `Finetunemodel.forward`).
        enhanced = ops.clip(ops.cast(image, illumination.dtype) / illumination, 0.0, 1.0)
        # float32 at the boundary, also under a mixed-precision policy.
        enhanced, illumination = ops.cast(enhanced, "float32"), ops.cast(illumination, "float32")
        return (enhanced, illumination) if return_illumination else enhanced

    def fuse(self, pack_width: bool = True) -> "SCIEnhancer":
        """A new, inference-only enhancer computing the same output from this one's current weights, with the
        block's BatchNorm (running statistics) folded into the preceding convolution: one convolution instead of
        conv + two element-wise passes, ~1e-7 rounding difference; `pack_width`: width-packed convolutions
        where the width allows (see `EnhanceNetwork`). Its weights file is not an SCIEnhancer one. An enhancer
        that is already fused is returned as it is, whatever `pack_width`."""
        if self.fused:
            return self
        if not self.built:
            self.build()
        fused = SCIEnhancer(self.channels, self.num_layers, fused=True, from_authors=self.from_authors,
                            pack_width=pack_width, name=f"{self.name}_fused")
        fused.build()
        source, target = self.enhance, fused.enhance
        for layer in ("in_conv", "out_conv"):
            getattr(target, layer).set_weights(getattr(source, layer).get_weights())
        target.block.conv.set_weights(list(source.block.folded_weights()))
        return fused

    @classmethod
    def from_preset(cls, preset: str = "medium") -> "SCIEnhancer":
        """The authors' weights for `preset` ∈ {"easy", "medium", "difficult"} (MIT; see `sci_tf.presets`)."""
        return cls.from_weights(preset_weights_path(preset))

    @classmethod
    def from_weights(cls, path: str | os.PathLike) -> "SCIEnhancer":
        """An enhancer of the default architecture loaded from a `.weights.h5` file of an SCIEnhancer (from
        `llie convert sci`, a preset, a training run's final.weights.h5) or of a full `SCI` (same `enhance/`
        layout; the calibration weights are not used); `from_authors` as the file records it (`llie convert
        sci` and the presets do). `WeightsMismatchError` if it does not fit."""
        from_authors = bool(read_weights_attributes(path).get(FROM_AUTHORS_ATTRIBUTE, False))
        model = cls(from_authors=from_authors)
        model.build()
        load_weights_file(model, path, "SCIEnhancer")
        return model

    # === Config ===
    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "num_layers": self.num_layers,
                "fused": self.fused, "from_authors": self.from_authors, "pack_width": self.pack_width}
