"""Checks shared by the losses_tf test modules: float64 NumPy references, serialisation round trips, gradients,
mixed precision. Not a test module itself."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from train.fit import precision_policy


def random_images(seed: int, shape=(2, 32, 32, 3)) -> np.ndarray:
    """Uniform [0,1) float32 images."""
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def bfloat16_policy() -> contextlib.AbstractContextManager[None]:
    """The mixed_bfloat16 global policy inside the block, the previous one again afterwards (even on failure)."""
    return precision_policy("mixed_bfloat16")


def gradient(function: Callable, *inputs) -> np.ndarray:
    """d function(*inputs) / d inputs[-1] (the prediction), as a NumPy array."""
    tensors = [tf.constant(value, tf.float32) for value in inputs]
    with tf.GradientTape() as tape:
        tape.watch(tensors[-1])
        value = tf.reduce_sum(function(*tensors))
    return tape.gradient(value, tensors[-1]).numpy()


def assert_float32_under_mixed_bfloat16(loss: keras.losses.Loss, y_true: np.ndarray, y_pred: np.ndarray) -> None:
    """With bf16 inputs under mixed_bfloat16 the loss is float32 and equals the float32 loss of the same values."""
    y_true_bf16, y_pred_bf16 = tf.cast(y_true, tf.bfloat16), tf.cast(y_pred, tf.bfloat16)
    with bfloat16_policy():
        mixed = loss(y_true_bf16, y_pred_bf16)
    expected = loss(tf.cast(y_true_bf16, tf.float32), tf.cast(y_pred_bf16, tf.float32))
    assert mixed.dtype == tf.float32
    np.testing.assert_allclose(mixed.numpy(), expected.numpy(), rtol=1e-6, atol=1e-7)


def assert_round_trips(loss: keras.losses.Loss, y_true: np.ndarray, y_pred: np.ndarray, folder) -> None:
    """serialize/deserialize and model.save/load_model of a model compiled with `loss` give an equal loss."""
    expected = float(loss(y_true, y_pred))
    config = loss.get_config()

    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == config
    np.testing.assert_allclose(float(restored(y_true, y_pred)), expected, rtol=1e-6)

    model = keras.Sequential([keras.Input(y_pred.shape[1:]), keras.layers.Conv2D(y_pred.shape[-1], 1)])
    model.compile(optimizer="sgd", loss=loss)
    path = str(folder / f"{type(loss).__name__}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path).loss
    assert type(loaded) is type(loss)
    assert loaded.get_config() == config
    np.testing.assert_allclose(float(loaded(y_true, y_pred)), expected, rtol=1e-6)


# === float64 NumPy references ===


def gaussian_window(size: int, sigma: float) -> np.ndarray:
    coords = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    window = np.exp(-(coords[:, None] ** 2 + coords[None, :] ** 2) / (2.0 * sigma**2))
    return window / window.sum()


def valid_filter(images: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Per-channel 'valid' correlation of (N, H, W, C) with a 2-D window."""
    patches = np.lib.stride_tricks.sliding_window_view(images, window.shape, axis=(1, 2))
    return np.einsum("nhwcij,ij->nhwc", patches, window)


def ssim_and_cs(a: np.ndarray, b: np.ndarray, max_val: float = 1.0, size: int = 11, sigma: float = 1.5,
                k1: float = 0.01, k2: float = 0.03) -> tuple[np.ndarray, np.ndarray]:
    """Per-image, per-channel SSIM and contrast-structure (N, C), Wang et al. 2004 with a gaussian window."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    window = gaussian_window(size, sigma)
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    mu_a, mu_b = valid_filter(a, window), valid_filter(b, window)
    var_a = valid_filter(a * a, window) - mu_a**2
    var_b = valid_filter(b * b, window) - mu_b**2
    cov = valid_filter(a * b, window) - mu_a * mu_b
    luminance = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    cs = (2 * cov + c2) / (var_a + var_b + c2)
    return (luminance * cs).mean(axis=(1, 2)), cs.mean(axis=(1, 2))
