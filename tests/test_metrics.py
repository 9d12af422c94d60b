import keras
import numpy as np
import pytest
import tensorflow as tf

from losses_tf import metrics
from tests.loss_testing import bfloat16_policy, random_images, ssim_and_cs


@pytest.fixture(scope="module")
def pairs():
    """Three image pairs of increasing distortion, split into batches of 1 and 2."""
    clean = random_images(0, (3, 24, 28, 3))
    noise = np.random.default_rng(1).normal(0, 1, clean.shape) * np.array([0.02, 0.1, 0.3])[:, None, None, None]
    return clean, np.clip(clean + noise, 0, 1).astype(np.float32)


def np_psnr(a, b, data_range):
    mse = ((a.astype(np.float64) - b) ** 2).reshape(a.shape[0], -1).mean(axis=1)
    return 10 * np.log10(data_range**2 / mse)


def test_psnr_function_per_image_matches_numpy(pairs):
    clean, noisy = pairs
    values = metrics.psnr(clean, noisy)
    assert values.shape == (3,) and values.dtype == tf.float32
    np.testing.assert_allclose(values.numpy(), np_psnr(clean, noisy, 1.0), rtol=1e-5)
    np.testing.assert_allclose(metrics.psnr(clean * 255, noisy * 255, data_range=255.0).numpy(),
                               np_psnr(clean, noisy, 1.0), rtol=1e-5)
    assert np.isposinf(metrics.psnr(clean, clean).numpy()).all()


def test_ssim_function_per_image_matches_numpy(pairs):
    clean, noisy = pairs
    expected = ssim_and_cs(clean, noisy)[0].mean(axis=-1)
    np.testing.assert_allclose(metrics.ssim(clean, noisy).numpy(), expected, atol=2e-6)
    np.testing.assert_allclose(metrics.ssim(clean * 255, noisy * 255, data_range=255.0).numpy(), expected, atol=2e-5)


@pytest.mark.parametrize("metric_class, function", [(metrics.PSNR, metrics.psnr), (metrics.SSIM, metrics.ssim)])
def test_metric_is_the_running_mean_over_images(metric_class, function, pairs):
    clean, noisy = pairs
    per_image = function(clean, noisy).numpy()
    metric = metric_class()
    metric.update_state(clean[:1], noisy[:1])
    metric.update_state(clean[1:], noisy[1:])
    np.testing.assert_allclose(float(metric.result()), per_image.mean(), rtol=1e-6)
    metric.reset_state()
    metric.update_state(clean, noisy, sample_weight=np.array([1.0, 0.0, 3.0], np.float32))
    np.testing.assert_allclose(float(metric.result()), (per_image[0] + 3 * per_image[2]) / 4, rtol=1e-6)


@pytest.mark.parametrize("metric_class", [metrics.PSNR, metrics.SSIM])
def test_float32_under_mixed_bfloat16(metric_class, pairs):
    clean, noisy = (tf.cast(image * 255, tf.bfloat16) for image in pairs)
    reference = metric_class(data_range=255.0)
    reference.update_state(tf.cast(clean, tf.float32), tf.cast(noisy, tf.float32))
    with bfloat16_policy():
        metric = metric_class(data_range=255.0)
        metric.update_state(clean, noisy)
        result = metric.result()
    assert result.dtype == tf.float32
    np.testing.assert_allclose(float(result), float(reference.result()), rtol=1e-6)


@pytest.mark.parametrize("metric_class", [metrics.PSNR, metrics.SSIM])
def test_serialization_round_trip_and_compiled_model(metric_class, pairs, tmp_path):
    clean, noisy = pairs
    metric = metric_class(data_range=2.0, name="custom")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(restored) is metric_class and restored.get_config() == metric.get_config()
    assert restored.data_range == 2.0

    model = keras.Sequential([keras.Input(clean.shape[1:]), keras.layers.Conv2D(3, 1)])
    model.compile(optimizer="sgd", loss="mse", metrics=[metric_class()])
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    logs = loaded.evaluate(clean, noisy, verbose=0, return_dict=True)
    name = metric_class().name
    prediction = loaded.predict(clean, verbose=0)
    expected = (metrics.psnr if metric_class is metrics.PSNR else metrics.ssim)(noisy, prediction).numpy().mean()
    np.testing.assert_allclose(logs[name], expected, rtol=1e-5)
