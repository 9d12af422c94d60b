"""Layers that more than one ported model needs.

`TorchBatchNormalization` is BatchNorm with PyTorch's `BatchNorm2d` semantics, used by the SCI and EnlightenGAN
ports so that their running statistics evolve exactly as in the originals.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="train")
class TorchBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with PyTorch `BatchNorm2d` behaviour.

    Differences from Keras, all reproduced on purpose:
    - defaults eps 1e-5 and PyTorch momentum 0.1, i.e. Keras `momentum=0.9` (new = 0.9·old + 0.1·batch);
    - in training, inputs are normalised with the *biased* batch variance but `moving_variance` is updated with
      the *unbiased* one (×n/(n−1), n = N·H·W), as PyTorch does;
    - each call in training mode updates the statistics once, so a block applied k times (SCI's weight sharing)
      updates them k times, like a PyTorch module used k times.
    Statistics are per replica (not synchronised), like PyTorch's `DataParallel`.
    Inputs: NHWC (axis -1), any float dtype; statistics are computed in float32 (float64 for float64 inputs).
    """

    def __init__(self, momentum: float = 0.9, epsilon: float = 1e-5, **kwargs):
        super().__init__(momentum=momentum, epsilon=epsilon, **kwargs)

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or self.renorm or mask is not None:
            return super().call(inputs, training=training, mask=mask)
        statistics_dtype = "float64" if keras.backend.standardize_dtype(inputs.dtype) == "float64" else "float32"
        x = ops.cast(inputs, statistics_dtype)
        mean, variance = ops.moments(x, axes=self._reduction_axes)
        count = ops.cast(ops.prod(ops.shape(x)[:-1]), statistics_dtype)
        unbiased = variance * count / ops.maximum(count - 1.0, 1.0)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + unbiased * (1.0 - self.momentum))
        outputs = ops.batch_normalization(
            x, mean, variance, axis=-1,
            offset=ops.cast(self.beta, statistics_dtype) if self.center else None,
            scale=ops.cast(self.gamma, statistics_dtype) if self.scale else None,
            epsilon=self.epsilon,
        )
        return ops.cast(outputs, self.compute_dtype)
