"""EnlightenGAN losses: GAN terms and the self feature preserving loss against upstream (losses.npz)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from enlighten_tf.convert import load_vgg16
from losses_tf.adversarial import relativistic_lsgan_generator_loss
from losses_tf.enlighten import (
    SelfFeaturePreservingLoss,
    enlighten_discriminator_losses,
    enlighten_generator_gan_loss,
    instance_norm,
    local_discriminator_loss,
    local_generator_loss,
    self_feature_preserving_loss,
    sfp_image_loss,
    sfp_preprocess,
    sfp_vgg16,
)
from tests.reference import reference, reference_path

RTOL = 1e-4


@pytest.fixture(scope="module")
def fixture():
    return reference("enlightengan", "losses")


@pytest.fixture(scope="module")
def vgg():
    """VGG16 up to relu5_1 with the fixture's random (He-init, fp16-grid) PyTorch weights."""
    return load_vgg16(sfp_vgg16(None), reference_path("enlightengan", "losses.npz"))


def _assert_rel(actual, expected, rtol=RTOL):
    actual, expected = float(actual), float(expected)
    assert abs(actual - expected) <= rtol * abs(expected), (actual, expected)


def test_generator_gan_terms(fixture):
    real_g, fake_g = fixture["pred_real_global"], fixture["pred_fake_global"]
    real_l, fake_l = fixture["pred_real_local"], fixture["pred_fake_local"]
    _assert_rel(relativistic_lsgan_generator_loss(real_g, fake_g), fixture["loss_G_global"])
    _assert_rel(local_generator_loss(fake_l), fixture["loss_G_local"])
    _assert_rel(enlighten_generator_gan_loss(real_g, fake_g, fake_l), fixture["loss_G_A_total"])
    _assert_rel(local_generator_loss(fake_l, real_l, hybrid=False), fixture["loss_G_local_nohybrid"])
    _assert_rel(enlighten_generator_gan_loss(real_g, fake_g, fake_l, real_l, hybrid=False),
                fixture["loss_G_A_total_nohybrid"])


def test_discriminator_gan_terms(fixture):
    real_g, fake_g = fixture["pred_real_global"], fixture["pred_fake_global"]
    real_l, fake_l = fixture["pred_real_local"], fixture["pred_fake_local"]
    d_global, d_local = enlighten_discriminator_losses(real_g, fake_g, real_l, fake_l)
    _assert_rel(d_global, fixture["loss_D_global"])
    _assert_rel(d_local, fixture["loss_D_local"])
    _assert_rel(local_discriminator_loss(real_l, fake_l, hybrid=False), fixture["loss_D_local_nohybrid"])


def test_patch_predictions_as_list_or_stacked_tensor(fixture):
    real_l, fake_l = fixture["pred_real_local"], fixture["pred_fake_local"]
    as_list = [tf.constant(patch) for patch in fake_l]
    np.testing.assert_allclose(local_generator_loss(as_list), local_generator_loss(tf.constant(fake_l)), rtol=1e-6)
    relativistic = local_generator_loss(fake_l, real_l, hybrid=False)
    # Relativistic means are per patch, not over all patches: the two differ.
    assert abs(float(relativistic) - float(relativistic_lsgan_generator_loss(real_l, fake_l))) > 1e-3


def test_relu5_1_features_match_upstream(fixture, vgg):
    for side in ("a", "b"):
        image = fixture[f"sfp_img_{side}"]
        features = vgg(sfp_preprocess(image)).numpy()
        expected = fixture[f"sfp_feat_{side}"]
        # Stride 8: no pool before block 5.
        assert features.shape == expected.shape == (image.shape[0], image.shape[1] // 8, image.shape[2] // 8, 512)
        assert np.abs(features - expected).max() <= RTOL * np.abs(expected).max()


def test_sfp_loss_and_variants(fixture, vgg):
    a, b = fixture["sfp_img_a"], fixture["sfp_img_b"]
    # Per-image values; upstream's mean over the whole tensor is their mean (images of one size).
    _assert_rel(np.mean(sfp_image_loss(a, b, vgg)), fixture["sfp_loss"])
    _assert_rel(np.mean(sfp_image_loss(a, b, vgg, subtract_mean=True)), fixture["sfp_loss_vgg_mean"])
    _assert_rel(np.mean(sfp_image_loss(a, b, vgg, instance_norm=False)), fixture["sfp_loss_no_instance"])
    _assert_rel(np.mean(self_feature_preserving_loss(fixture["sfp_feat_a"], fixture["sfp_feat_b"])),
                fixture["sfp_loss"])


def test_sfp_keras_loss(fixture, vgg):
    loss = SelfFeaturePreservingLoss(extractor=vgg)
    a, b = fixture["sfp_img_a"], fixture["sfp_img_b"]
    _assert_rel(loss(b, a), fixture["sfp_loss"])  # loss(y_true=target, y_pred=image)
    batch = loss(np.concatenate([b, a]), np.concatenate([a, a]))  # per-image values, batch mean
    _assert_rel(batch, float(fixture["sfp_loss"]) / 2)


def test_sfp_gradient_flows_to_the_image_only(fixture, vgg):
    image = tf.Variable(fixture["sfp_img_a"])
    target = tf.Variable(fixture["sfp_img_b"])
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(sfp_image_loss(image, target, vgg))
    image_grad, target_grad = tape.gradient(loss, [image, target])
    assert float(tf.norm(image_grad)) > 0 and target_grad is None


def test_sfp_loss_config_round_trip():
    loss = SelfFeaturePreservingLoss(weights=None, subtract_mean=True, instance_norm=False, name="sfp")
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(clone, SelfFeaturePreservingLoss)
    assert (clone.weights, clone.subtract_mean, clone.instance_norm) == (None, True, False)


def test_instance_norm_is_biased_per_image_and_channel():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (2, 4, 5, 3)).astype(np.float32)
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)  # biased, as nn.InstanceNorm2d
    np.testing.assert_allclose(instance_norm(x), (x - mean) / np.sqrt(var + 1e-5), atol=1e-5)
    constant = instance_norm(np.full((1, 2, 2, 1), 7.0, np.float32))
    np.testing.assert_array_equal(constant, np.zeros((1, 2, 2, 1)))  # eps keeps it finite


def test_losses_are_float32_for_half_inputs(fixture):
    features = tf.constant(fixture["sfp_feat_a"][..., :8], tf.float16)
    assert self_feature_preserving_loss(features, features * 2).dtype == tf.float32
    assert local_generator_loss(tf.constant(fixture["pred_fake_local"], tf.float16)).dtype == tf.float32
