import numpy as np
import pytest
import tensorflow as tf

from losses_tf import adversarial
from tests.loss_testing import gradient

RTOL = 1e-4  # losses: ≤ 1e-4 relative to the original's numbers


@pytest.fixture
def enlighten_losses(reference):
    return reference("enlightengan", "losses")


def test_global_relativistic_lsgan_matches_enlightengan(enlighten_losses):
    real, fake = enlighten_losses["pred_real_global"], enlighten_losses["pred_fake_global"]
    np.testing.assert_allclose(float(adversarial.relativistic_lsgan_generator_loss(real, fake)),
                               enlighten_losses["loss_G_global"], rtol=RTOL)
    np.testing.assert_allclose(float(adversarial.relativistic_lsgan_discriminator_loss(real, fake)),
                               enlighten_losses["loss_D_global"], rtol=RTOL)


def test_local_patch_losses_match_enlightengan(enlighten_losses):
    """hybrid_loss (default): plain LSGAN per patch averaged over the 6 patches; without it relativistic."""
    real, fake = enlighten_losses["pred_real_local"], enlighten_losses["pred_fake_local"]
    patches = range(real.shape[0])
    cases = [
        (lambda i: adversarial.lsgan_generator_loss(fake[i]), "loss_G_local"),
        (lambda i: adversarial.lsgan_discriminator_loss(real[i], fake[i]), "loss_D_local"),
        (lambda i: adversarial.relativistic_lsgan_generator_loss(real[i], fake[i]), "loss_G_local_nohybrid"),
        (lambda i: adversarial.relativistic_lsgan_discriminator_loss(real[i], fake[i]), "loss_D_local_nohybrid"),
    ]
    for per_patch, key in cases:
        mean = np.mean([float(per_patch(i)) for i in patches])
        np.testing.assert_allclose(mean, enlighten_losses[key], rtol=RTOL, err_msg=key)
    total = float(adversarial.relativistic_lsgan_generator_loss(
        enlighten_losses["pred_real_global"], enlighten_losses["pred_fake_global"])) + np.mean(
        [float(adversarial.lsgan_generator_loss(fake[i])) for i in patches])
    np.testing.assert_allclose(total, enlighten_losses["loss_G_A_total"], rtol=RTOL)


@pytest.fixture(scope="module")
def predictions():
    rng = np.random.default_rng(0)
    return rng.normal(0.5, 2.0, (3, 5, 5, 1)).astype(np.float32), rng.normal(-0.5, 2.0, (3, 5, 5, 1)).astype(
        np.float32)


def _np_bce(logits, target):
    logits = logits.astype(np.float64)
    probability = 1 / (1 + np.exp(-logits))
    return -np.mean(target * np.log(probability) + (1 - target) * np.log(1 - probability))


def test_bce_gan_losses_match_float64_numpy(predictions):
    real, fake = predictions
    np.testing.assert_allclose(float(adversarial.gan_bce_generator_loss(fake)), _np_bce(fake, 1.0), rtol=1e-5)
    np.testing.assert_allclose(float(adversarial.gan_bce_discriminator_loss(real, fake)),
                               _np_bce(real, 1.0) + _np_bce(fake, 0.0), rtol=1e-5)


def test_lsgan_and_relativistic_match_float64_numpy(predictions):
    real, fake = (p.astype(np.float64) for p in predictions)
    cases = [
        (adversarial.lsgan_generator_loss(predictions[1]), np.mean((fake - 1) ** 2)),
        (adversarial.lsgan_discriminator_loss(*predictions), 0.5 * (np.mean((real - 1) ** 2) + np.mean(fake**2))),
        (adversarial.relativistic_lsgan_generator_loss(*predictions),
         0.5 * (np.mean((real - fake.mean()) ** 2) + np.mean((fake - real.mean() - 1) ** 2))),
        (adversarial.relativistic_lsgan_discriminator_loss(*predictions),
         0.5 * (np.mean((real - fake.mean() - 1) ** 2) + np.mean((fake - real.mean()) ** 2))),
    ]
    for value, expected in cases:
        np.testing.assert_allclose(float(value), expected, rtol=1e-5)


ALL = {
    "gan_bce_generator_loss": lambda real, fake: adversarial.gan_bce_generator_loss(fake),
    "gan_bce_discriminator_loss": adversarial.gan_bce_discriminator_loss,
    "lsgan_generator_loss": lambda real, fake: adversarial.lsgan_generator_loss(fake),
    "lsgan_discriminator_loss": adversarial.lsgan_discriminator_loss,
    "relativistic_lsgan_generator_loss": adversarial.relativistic_lsgan_generator_loss,
    "relativistic_lsgan_discriminator_loss": adversarial.relativistic_lsgan_discriminator_loss,
}


@pytest.mark.parametrize("function", ALL.values(), ids=ALL.keys())
def test_float32_scalar_for_bf16_inputs_and_finite_gradients(function, predictions):
    real, fake = (tf.cast(p, tf.bfloat16) for p in predictions)
    value = function(real, fake)
    assert value.dtype == tf.float32 and value.shape == ()
    np.testing.assert_allclose(float(value), float(function(tf.cast(real, tf.float32), tf.cast(fake, tf.float32))),
                               rtol=1e-6)
    assert np.isfinite(gradient(function, *predictions)).all()
    # Saturated logits stay finite too (BCE on logits, not on probabilities).
    assert np.isfinite(gradient(function, predictions[0] * 1e4, predictions[1] * 1e4)).all()
