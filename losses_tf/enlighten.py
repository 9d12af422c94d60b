"""EnlightenGAN's losses (Jiang et al., "EnlightenGAN: Deep light enhancement without paired supervision", TIP 2021).

- Self feature preserving (SFP) loss: mean((IN(φ(a)) − IN(φ(b)))²) with φ = VGG16 relu5_1 (no max-pool before
  block 5), IN = instance norm without affine, on images in [-1,1] preprocessed as upstream `vgg_preprocess`
  (RGB→BGR, (x+1)·127.5, *no* ImageNet mean subtraction by default: the official `vgg_mean=False`).
- GAN terms: a relativistic-average LSGAN on the global discriminator and, with the official `hybrid_loss`, a
  plain LSGAN on the local (patch) discriminator averaged over the patches.

Patch predictions (`pred_*_local`) are a sequence of per-patch tensors or one tensor whose axis 0 is the patch
index. Everything is computed in float32 under any dtype policy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras
import tensorflow as tf

from losses_tf.adversarial import (
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    relativistic_lsgan_discriminator_loss,
    relativistic_lsgan_generator_loss,
)
from losses_tf.core import ImageLoss, float32_policy, per_image_mean, to_float32
from losses_tf.vgg import caffe_preprocess, vgg_features

SFP_LAYER = "relu5_1"
INSTANCE_NORM_EPSILON = 1e-5  # nn.InstanceNorm2d default

# === SFP loss ===


def instance_norm(features: tf.Tensor, epsilon: float = INSTANCE_NORM_EPSILON) -> tf.Tensor:
    """`nn.InstanceNorm2d(C, affine=False)`: per image and channel, (x − mean) / sqrt(biased var + eps) over H, W.

    (N, H, W, C) any float → float32, same shape."""
    (features,) = to_float32(features)
    mean, variance = tf.nn.moments(features, axes=[1, 2], keepdims=True)
    return (features - mean) * tf.math.rsqrt(variance + epsilon)


_instance_norm = instance_norm  # `self_feature_preserving_loss`'s flag of the same name shadows it


def self_feature_preserving_loss(features_a: tf.Tensor, features_b: tf.Tensor,
                                 instance_norm: bool = True) -> tf.Tensor:
    """Per-image mean squared distance of two feature maps (N, H, W, C), after instance norm if asked: (N,).

    The batch mean is upstream `PerceptualLoss.compute_vgg_loss` (`no_vgg_instance=False` ↔ instance_norm).
    """
    features_a, features_b = to_float32(features_a, features_b)
    if instance_norm:
        features_a, features_b = _instance_norm(features_a), _instance_norm(features_b)
    return per_image_mean(tf.square(features_a - features_b))


def sfp_preprocess(images_m11: tf.Tensor, subtract_mean: bool = False) -> tf.Tensor:
    """Upstream `vgg_preprocess`: RGB [-1,1] → BGR [0,255] (minus the BGR ImageNet mean only if `subtract_mean`;
    the official `vgg_mean=False` feeds the Caffe VGG un-centred inputs, a quirk kept on purpose)."""
    return caffe_preprocess(images_m11, input_range=(-1.0, 1.0), subtract_mean=subtract_mean)


def sfp_image_loss(images: tf.Tensor, targets: tf.Tensor, extractor: keras.Model, *, subtract_mean: bool = False,
                   instance_norm: bool = True) -> tf.Tensor:
    """SFP loss of images against targets, both (N, H, W, 3) in [-1,1]: (N,).

    `extractor` maps preprocessed images to relu5_1 features (e.g. `sfp_vgg16()`). No gradient flows into
    `targets` (upstream targets are data: the input image and its patches).
    """
    images, targets = to_float32(images, targets)
    features = extractor(sfp_preprocess(images, subtract_mean))
    target_features = tf.stop_gradient(extractor(sfp_preprocess(targets, subtract_mean)))
    return self_feature_preserving_loss(features, target_features, instance_norm=instance_norm)


def sfp_vgg16(weights: str | os.PathLike | None = "imagenet", name: str = "sfp_vgg16") -> keras.Model:
    """EnlightenGAN's φ: VGG16 up to relu5_1 with no pool after block 4 (`vgg_maxpooling=False`), stride 8.

    `weights`: "imagenet", a Keras VGG16 `.h5` / `.weights.h5`, or None (random; load other formats afterwards,
    e.g. `enlighten_tf.convert.load_vgg16` for upstream's PyTorch `vgg16.weight`).
    """
    return vgg_features("vgg16", (SFP_LAYER,), weights=weights, pool_after_block4=False, name=name)


@keras.saving.register_keras_serializable(package="losses_tf")
class SelfFeaturePreservingLoss(ImageLoss):
    """EnlightenGAN's self feature preserving loss as a Keras loss: `loss(y_true, y_pred)` with both NHWC in
    [-1,1]; per-image values (N,), reduced to the batch mean by default.

    Args:
        weights: VGG16 weights (see `sfp_vgg16`); only this string is serialised.
        extractor: a ready relu5_1 extractor to use instead (not serialised), e.g. one loaded from upstream's
            PyTorch VGG16 file.
        subtract_mean: subtract the ImageNet BGR mean (upstream `vgg_mean`; official False).
        instance_norm: instance-normalise the features (upstream `not no_vgg_instance`; official True).
    """

    def __init__(self, weights: str | os.PathLike | None = "imagenet", *, extractor: keras.Model | None = None,
                 subtract_mean: bool = False, instance_norm: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.weights = None if weights is None else os.fspath(weights)
        self.extractor = extractor
        self.subtract_mean = bool(subtract_mean)
        self.instance_norm = bool(instance_norm)

    def build_extractor(self) -> keras.Model:
        """Builds (once, in float32, outside any tf.function) and returns the VGG16 relu5_1 extractor."""
        if self.extractor is None:
            with tf.init_scope(), float32_policy():
                self.extractor = sfp_vgg16(self.weights, name=f"{self.name}_vgg16")
        return self.extractor

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        return sfp_image_loss(y_pred, y_true, self.build_extractor(), subtract_mean=self.subtract_mean,
                              instance_norm=self.instance_norm)

    def get_config(self) -> dict:
        return {**super().get_config(), "weights": self.weights, "subtract_mean": self.subtract_mean,
                "instance_norm": self.instance_norm}


# === GAN terms ===


def _patches(predictions: tf.Tensor | Sequence[tf.Tensor]) -> list[tf.Tensor]:
    if isinstance(predictions, (list, tuple)):
        return list(predictions)
    return tf.unstack(tf.convert_to_tensor(predictions), axis=0)


def local_generator_loss(pred_fake_local: tf.Tensor | Sequence[tf.Tensor],
                         pred_real_local: tf.Tensor | Sequence[tf.Tensor] | None = None,
                         hybrid: bool = True) -> tf.Tensor:
    """Generator term of the local discriminator, averaged over the patches (float32 scalar).

    `hybrid=True` (official `hybrid_loss`): LSGAN MSE(D(fake patch), 1). `hybrid=False`: relativistic LSGAN per
    patch, which needs `pred_real_local`.
    """
    fakes = _patches(pred_fake_local)
    if hybrid:
        terms = [lsgan_generator_loss(fake) for fake in fakes]
    else:
        terms = [relativistic_lsgan_generator_loss(real, fake) for real, fake in zip(_patches(pred_real_local), fakes)]
    return tf.add_n(terms) / float(len(terms))


def local_discriminator_loss(pred_real_local: tf.Tensor | Sequence[tf.Tensor],
                             pred_fake_local: tf.Tensor | Sequence[tf.Tensor], hybrid: bool = True) -> tf.Tensor:
    """Local discriminator loss averaged over the patches (upstream `loss_D_P`): LSGAN ½[MSE(Pr,1) + MSE(Pf,0)]
    per patch with `hybrid=True` (official), relativistic LSGAN per patch otherwise."""
    per_patch = lsgan_discriminator_loss if hybrid else relativistic_lsgan_discriminator_loss
    terms = [per_patch(real, fake) for real, fake in zip(_patches(pred_real_local), _patches(pred_fake_local))]
    return tf.add_n(terms) / float(len(terms))


def enlighten_generator_gan_loss(pred_real_global: tf.Tensor, pred_fake_global: tf.Tensor,
                                 pred_fake_local: tf.Tensor | Sequence[tf.Tensor],
                                 pred_real_local: tf.Tensor | Sequence[tf.Tensor] | None = None,
                                 hybrid: bool = True) -> tf.Tensor:
    """Upstream `loss_G_A`: relativistic LSGAN on the global D + the local term (`local_generator_loss`)."""
    return (relativistic_lsgan_generator_loss(pred_real_global, pred_fake_global)
            + local_generator_loss(pred_fake_local, pred_real_local, hybrid))


def enlighten_discriminator_losses(pred_real_global: tf.Tensor, pred_fake_global: tf.Tensor,
                                   pred_real_local: tf.Tensor | Sequence[tf.Tensor],
                                   pred_fake_local: tf.Tensor | Sequence[tf.Tensor],
                                   hybrid: bool = True) -> tuple[tf.Tensor, tf.Tensor]:
    """Upstream (`loss_D_A`, `loss_D_P`): relativistic LSGAN on the global D, `local_discriminator_loss`."""
    return (relativistic_lsgan_discriminator_loss(pred_real_global, pred_fake_global),
            local_discriminator_loss(pred_real_local, pred_fake_local, hybrid))
