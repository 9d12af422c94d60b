"""EnlightenGAN's learning-rate schedule: constant for `niter` epochs, then linearly to 0 over `niter_decay`."""

from __future__ import annotations

import keras

from train.fit import tracked_optimizers


def decayed_learning_rate(epoch: int, initial_learning_rate: float, constant_epochs: int,
                          decay_epochs: int) -> float:
    """lr of 0-based `epoch` under upstream `update_learning_rate`.

    Upstream trains epochs 1..niter at `lr` and, after each epoch e > niter, lowers lr by lr/niter_decay; so
    0-based epoch k runs at `lr · (niter_decay − max(0, k − niter)) / niter_decay` (the last epoch at
    lr/niter_decay, then 0). Official: lr 1e-4, niter = niter_decay = 100.
    """
    remaining = min(max(decay_epochs - max(epoch - constant_epochs, 0), 0), decay_epochs)
    return initial_learning_rate * remaining / decay_epochs


class EpochLinearDecay(keras.callbacks.Callback):
    """Sets the lr of every optimizer the model holds (e.g. `g_optimizer` and `d_optimizer`) at each epoch start,
    per `decayed_learning_rate`, and logs it as `lr`.

    Per epoch, like upstream, rather than a per-step `LearningRateSchedule`: the optimizers' step counters are no
    clock for epochs (a step that mixed-precision loss scaling skips counts none). A resumed run gets the lr of
    the epoch it restarts at.
    """

    def __init__(self, initial_learning_rate: float, constant_epochs: int, decay_epochs: int):
        super().__init__()
        if decay_epochs < 1 or constant_epochs < 0:
            raise ValueError(f"need decay_epochs >= 1 and constant_epochs >= 0, got {decay_epochs}, "
                             f"{constant_epochs}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.constant_epochs = int(constant_epochs)
        self.decay_epochs = int(decay_epochs)
        self.current = self.initial_learning_rate

    def on_epoch_begin(self, epoch, logs=None):
        self.current = decayed_learning_rate(epoch, self.initial_learning_rate, self.constant_epochs,
                                             self.decay_epochs)
        for optimizer in tracked_optimizers(self.model):
            optimizer.learning_rate = self.current

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = self.current
