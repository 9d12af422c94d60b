import keras
import numpy as np

from train.layers import TorchBatchNormalization


def _torch_bn_reference(x, gamma, beta, mean0, var0, momentum=0.1, eps=1e-5):
    """float64 transcription of PyTorch BatchNorm2d.forward in train mode (NHWC)."""
    x = x.astype(np.float64)
    mean = x.mean(axis=(0, 1, 2))
    var_biased = x.var(axis=(0, 1, 2))
    n = x.shape[0] * x.shape[1] * x.shape[2]
    out = (x - mean) / np.sqrt(var_biased + eps) * gamma + beta
    new_mean = (1 - momentum) * mean0 + momentum * mean
    new_var = (1 - momentum) * var0 + momentum * var_biased * n / (n - 1)
    return out, new_mean, new_var


def test_train_mode_matches_pytorch_semantics():
    rng = np.random.default_rng(0)
    x = rng.normal(0.3, 2.0, (2, 5, 7, 4)).astype(np.float32)
    layer = TorchBatchNormalization()
    layer.build(x.shape)
    gamma, beta = rng.normal(1, 0.1, 4), rng.normal(0, 0.1, 4)
    mean0, var0 = rng.normal(0, 0.1, 4), rng.uniform(0.5, 1.5, 4)
    layer.set_weights([gamma, beta, mean0, var0])
    out = layer(x, training=True)
    want, want_mean, want_var = _torch_bn_reference(x, gamma, beta, mean0, var0)
    np.testing.assert_allclose(out, want, atol=1e-5)
    np.testing.assert_allclose(layer.moving_mean.numpy(), want_mean, rtol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.numpy(), want_var, rtol=1e-6)


def test_each_training_call_updates_statistics_once():
    x = np.arange(2 * 3 * 3 * 1, dtype=np.float32).reshape(2, 3, 3, 1)
    layer = TorchBatchNormalization()
    layer(x, training=True)
    once = layer.moving_mean.numpy().copy()
    layer(x, training=True)
    twice = layer.moving_mean.numpy()
    mean = x.mean()
    np.testing.assert_allclose(once, 0.1 * mean, rtol=1e-6)
    np.testing.assert_allclose(twice, 0.9 * 0.1 * mean + 0.1 * mean, rtol=1e-6)


def test_inference_uses_moving_statistics_and_defaults_are_pytorch():
    layer = TorchBatchNormalization()
    assert layer.epsilon == 1e-5 and layer.momentum == 0.9
    x = np.full((1, 2, 2, 1), 3.0, np.float32)
    layer.build(x.shape)
    layer.set_weights([np.ones(1), np.zeros(1), np.array([1.0]), np.array([4.0])])
    np.testing.assert_allclose(layer(x, training=False), (3.0 - 1.0) / np.sqrt(4.0 + 1e-5), rtol=1e-6)


def test_serialization_round_trip():
    layer = TorchBatchNormalization(name="bn")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(clone, TorchBatchNormalization)
    assert clone.epsilon == 1e-5 and clone.momentum == 0.9
