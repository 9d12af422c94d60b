"""Shared base of the losses: float32 computation under any dtype policy, Keras (de)serialisation, safe sqrt.

Every loss class here returns per-image values of shape (N,) from `call`, so Keras' `reduction` and
`sample_weight` work as for built-in losses; the default reduction ("sum_over_batch_size") is the batch mean.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras
import tensorflow as tf

# === Helpers ===


def to_float32(*tensors: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """Casts each input to float32 (bf16/fp16 inputs under a mixed policy become exact float32 values)."""
    return tuple(tf.cast(tensor, tf.float32) for tensor in tensors)


def per_image_mean(values: tf.Tensor) -> tf.Tensor:
    """Mean over every axis but the batch axis: (N, ...) → (N,)."""
    return tf.reduce_mean(values, axis=list(range(1, values.shape.rank)))


def safe_sqrt(values: tf.Tensor) -> tf.Tensor:
    """sqrt(values) for values ≥ 0 whose gradient is 0 (not inf·0 = NaN) where values == 0."""
    positive = values > 0.0
    roots = tf.sqrt(tf.where(positive, values, tf.ones_like(values)))
    return tf.where(positive, roots, tf.zeros_like(values))


def check_non_negative(name: str, value: float, *, allow_zero: bool = True) -> float:
    """`value` as a float; `ValueError` naming the argument if it is negative (or zero, unless `allow_zero`)."""
    value = float(value)
    if value < 0.0 or (value == 0.0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return value


@contextlib.contextmanager
def float32_policy() -> Iterator[None]:
    """Builds layers inside this block with the float32 policy, whatever the global (mixed) policy is."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


# === Base class ===


class ImageLoss(keras.losses.Loss):
    """A `keras.losses.Loss` that always computes in float32 (Keras casts y_true/y_pred to the loss dtype).

    Subclasses implement `call(y_true, y_pred) -> (N,)` and extend `get_config` with their own arguments;
    `from_config` is Keras' `cls(**config)`.
    """

    def __init__(self, name: str | None = None, reduction: str | None = "sum_over_batch_size"):
        # dtype is fixed, not configurable: the whole point is float32 losses under mixed_bfloat16/float16.
        super().__init__(name=name, reduction=reduction, dtype="float32")
