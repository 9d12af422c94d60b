"""VGG19 perceptual loss: weighted distance between VGG feature maps of two images.

Inputs: y_true, y_pred NHWC RGB in [0,1], any H×W (≥ 16 px so relu5_1 exists), any float dtype; the features are
computed in float32 even under a mixed policy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras
import tensorflow as tf

from losses_tf.core import ImageLoss, float32_policy, per_image_mean, to_float32
from losses_tf.vgg import caffe_preprocess, vgg_features

PERCEPTUAL_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
# pix2pixHD's VGGLoss weights: deeper (more semantic) layers count more.
PERCEPTUAL_LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
_DISTANCES = {"l1": tf.abs, "l2": tf.square}

# === Functions ===


def _as_list(features):
    # A one-output Keras model returns a tensor, not a one-element list.
    return list(features) if isinstance(features, (list, tuple)) else [features]


def perceptual_loss(y_true: tf.Tensor, y_pred: tf.Tensor, extractor: keras.Model,
                    layer_weights: Sequence[float] = PERCEPTUAL_LAYER_WEIGHTS, distance: str = "l1") -> tf.Tensor:
    """Σ_l w_l · mean(distance(φ_l(y_pred) − φ_l(y_true))) per image, (N,).

    `extractor` maps Caffe-preprocessed images (`caffe_preprocess`: BGR, 0..255, ImageNet mean removed) to one
    feature map per weight, e.g. `vgg_features("vgg19", PERCEPTUAL_LAYERS, ...)`. The target's features are
    constants (no gradient flows into y_true), as in pix2pixHD.
    """
    if distance not in _DISTANCES:
        raise ValueError(f"distance must be one of {sorted(_DISTANCES)}, got {distance!r}")
    y_true, y_pred = to_float32(y_true, y_pred)
    features_true = _as_list(extractor(caffe_preprocess(y_true)))
    features_pred = _as_list(extractor(caffe_preprocess(y_pred)))
    if len(features_true) != len(layer_weights):
        raise ValueError(f"{len(layer_weights)} layer weights for {len(features_true)} feature maps")
    total = 0.0
    for weight, feature_true, feature_pred in zip(layer_weights, features_true, features_pred):
        difference = tf.cast(feature_pred, tf.float32) - tf.stop_gradient(tf.cast(feature_true, tf.float32))
        total += weight * per_image_mean(_DISTANCES[distance](difference))
    return total


# === Loss class ===


@keras.saving.register_keras_serializable(package="losses_tf")
class PerceptualLoss(ImageLoss):
    """Perceptual (VGG feature) loss: Johnson, Alahi & Fei-Fei, "Perceptual losses for real-time style transfer and
    super-resolution", ECCV 2016; layers and weights of Wang et al., "pix2pixHD", CVPR 2018.

    `weights`: "imagenet" (Keras' Caffe-converted VGG19, downloaded once), a path to a Keras VGG19 notop `.h5` or a
    `.weights.h5` saved from `vgg_features("vgg19", layers)`, or None (random init, tests only). Only this string
    is serialised; the VGG is built on the first call (or by `build_extractor()`), always in float32.
    """

    def __init__(self, layers: Sequence[str] = PERCEPTUAL_LAYERS,
                 layer_weights: Sequence[float] = PERCEPTUAL_LAYER_WEIGHTS, distance: str = "l1",
                 weights: str | os.PathLike | None = "imagenet", **kwargs):
        super().__init__(**kwargs)
        if len(layers) != len(layer_weights):
            raise ValueError(f"{len(layers)} layers but {len(layer_weights)} layer_weights")
        if distance not in _DISTANCES:
            raise ValueError(f"distance must be one of {sorted(_DISTANCES)}, got {distance!r}")
        self.layers = tuple(layers)
        self.layer_weights = tuple(float(weight) for weight in layer_weights)
        self.distance = distance
        self.weights = None if weights is None else os.fspath(weights)
        self.extractor: keras.Model | None = None

    def build_extractor(self) -> keras.Model:
        """Builds (once) and returns the frozen float32 VGG19 feature extractor."""
        if self.extractor is None:
            # init_scope: the first call may come from inside a tf.function (model.fit); the variables must not.
            with tf.init_scope(), float32_policy():
                self.extractor = vgg_features("vgg19", self.layers, weights=self.weights,
                                              name=f"{self.name}_vgg19")
        return self.extractor

    def call(self, y_true, y_pred):
        return perceptual_loss(y_true, y_pred, self.build_extractor(), self.layer_weights, self.distance)

    def get_config(self):
        return {**super().get_config(), "layers": list(self.layers), "layer_weights": list(self.layer_weights),
                "distance": self.distance, "weights": self.weights}
