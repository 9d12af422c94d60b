"""GAN losses on discriminator outputs, as plain functions (the keras-io GAN idiom): standard GAN (BCE on logits),
LSGAN and relativistic-average LSGAN as EnlightenGAN uses them.

Inputs: discriminator outputs of any shape (raw logits / scores, no sigmoid), any float dtype; every mean runs
over the whole tensor (batch and spatial positions of a PatchGAN alike). Returns a float32 scalar.
"""

from __future__ import annotations

import tensorflow as tf

from losses_tf.core import to_float32


def _mean_squared(values: tf.Tensor, target: float) -> tf.Tensor:
    return tf.reduce_mean(tf.square(values - target))


def _bce_with_logits(logits: tf.Tensor, target: float) -> tf.Tensor:
    labels = tf.fill(tf.shape(logits), target)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


def gan_bce_generator_loss(pred_fake: tf.Tensor) -> tf.Tensor:
    """Non-saturating generator loss of Goodfellow et al., "Generative adversarial nets", NeurIPS 2014:
    BCE(D(fake), 1) on logits."""
    (pred_fake,) = to_float32(pred_fake)
    return _bce_with_logits(pred_fake, 1.0)


def gan_bce_discriminator_loss(pred_real: tf.Tensor, pred_fake: tf.Tensor) -> tf.Tensor:
    """Discriminator loss of Goodfellow et al. (2014): BCE(D(real), 1) + BCE(D(fake), 0) on logits."""
    pred_real, pred_fake = to_float32(pred_real, pred_fake)
    return _bce_with_logits(pred_real, 1.0) + _bce_with_logits(pred_fake, 0.0)


def lsgan_generator_loss(pred_fake: tf.Tensor) -> tf.Tensor:
    """LSGAN generator loss (Mao et al., "Least squares generative adversarial networks", ICCV 2017):
    MSE(D(fake), 1). EnlightenGAN's local (patch) generator loss."""
    (pred_fake,) = to_float32(pred_fake)
    return _mean_squared(pred_fake, 1.0)


def lsgan_discriminator_loss(pred_real: tf.Tensor, pred_fake: tf.Tensor) -> tf.Tensor:
    """LSGAN discriminator loss (Mao et al., 2017): 0.5·[MSE(D(real), 1) + MSE(D(fake), 0)]."""
    pred_real, pred_fake = to_float32(pred_real, pred_fake)
    return 0.5 * (_mean_squared(pred_real, 1.0) + _mean_squared(pred_fake, 0.0))


def relativistic_lsgan_generator_loss(pred_real: tf.Tensor, pred_fake: tf.Tensor) -> tf.Tensor:
    """Relativistic-average LSGAN generator loss (Jolicoeur-Martineau, "The relativistic discriminator", ICLR 2019)
    as EnlightenGAN's global loss: [MSE(Pr − mean(Pf), 0) + MSE(Pf − mean(Pr), 1)] / 2."""
    pred_real, pred_fake = to_float32(pred_real, pred_fake)
    return 0.5 * (_mean_squared(pred_real - tf.reduce_mean(pred_fake), 0.0)
                  + _mean_squared(pred_fake - tf.reduce_mean(pred_real), 1.0))


def relativistic_lsgan_discriminator_loss(pred_real: tf.Tensor, pred_fake: tf.Tensor) -> tf.Tensor:
    """Relativistic-average LSGAN discriminator loss (Jolicoeur-Martineau, ICLR 2019) as EnlightenGAN's global
    loss: [MSE(Pr − mean(Pf), 1) + MSE(Pf − mean(Pr), 0)] / 2."""
    pred_real, pred_fake = to_float32(pred_real, pred_fake)
    return 0.5 * (_mean_squared(pred_real - tf.reduce_mean(pred_fake), 1.0)
                  + _mean_squared(pred_fake - tf.reduce_mean(pred_real), 0.0))
