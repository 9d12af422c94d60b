"""The toy trainer and step recorders shared by the chassis tests (tests/test_fit.py, test_callbacks.py) and the
trainers' whole-epoch checks: a 1×1-conv "enhancer" trained to brighten with MSE, written like the real trainers
(custom train_step, Mean tracker, loss scaled by 1/num_replicas_in_sync)."""

from __future__ import annotations

import argparse

import keras
import numpy as np
import pytest
import tensorflow as tf

from train.fit import add_training_arguments

BRIGHTEN = 1.5


class TinyBrightener(keras.Model):
    """1×1 conv trained to map a dark 8×8 image to a brighter one; reports the unscaled MSE as `loss`."""

    def __init__(self, extra_optimizer: keras.optimizers.Optimizer | None = None, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(3, 1, name="conv")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        if extra_optimizer is not None:
            self.extra_optimizer = extra_optimizer

    def call(self, images, training=False):
        return self.conv(images)

    @property
    def metrics(self):
        return [self.loss_tracker]

    def train_step(self, data):
        low, high = data
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(tf.cast(self(low, training=True), tf.float32) - high))
            # The convention for every trainer: gradients of the global-batch mean under any strategy.
            scaled = self.optimizer.scale_loss(loss / replicas)
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}


def toy_pairs(count: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(dark, bright) float32 (count, 8, 8, 3) in [0,1], fixed."""
    low = np.random.default_rng(7).uniform(0.0, 0.5, (count, 8, 8, 3)).astype(np.float32)
    return low, low * BRIGHTEN


def toy_dataset(batch_size: int = 4) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(toy_pairs()).batch(batch_size)


def build_toy(optimizer: str = "adam", lr: float = 0.05, **kwargs) -> TinyBrightener:
    model = TinyBrightener(**kwargs)
    model.compile(optimizer=keras.optimizers.get({"class_name": optimizer, "config": {"learning_rate": lr}}))
    model(tf.zeros((1, 8, 8, 3)))
    return model


def toy_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llie train toy")
    add_training_arguments(parser, epochs=3, batch_size=4, patch_size=8, learning_rate=0.05)
    return parser


def toy_args(run_dir, *flags: str) -> argparse.Namespace:
    return toy_parser().parse_args(["--run-dir", str(run_dir), "--verbose", "0", *flags])


class EpochRecorder(keras.callbacks.Callback):
    """Records the epoch indices fit runs; raises after `fail_after_epoch` ends (a simulated crash)."""

    def __init__(self, fail_after_epoch: int | None = None):
        super().__init__()
        self.begun: list[int] = []
        self.fail_after_epoch = fail_after_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.begun.append(epoch)

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.fail_after_epoch:
            raise RuntimeError("simulated crash")


def weights_of(model: keras.Model) -> list[np.ndarray]:
    return [np.asarray(w) for w in model.get_weights()]


class StepRecorder(keras.callbacks.Callback):
    """Per epoch: (steps fit ran, `metric` logged after the last step, `metric` in the epoch logs)."""

    def __init__(self, metric: str = "loss"):
        super().__init__()
        self.metric = metric
        self.epochs: list[tuple[int, float, float]] = []
        self._steps: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._steps = []

    def on_train_batch_end(self, batch, logs=None):
        self._steps.append(float(logs[self.metric]))

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append((len(self._steps), self._steps[-1], float(logs[self.metric])))


def record_steps(monkeypatch, owner, metric: str = "loss") -> StepRecorder:
    """Makes `owner.run_training` (the chassis, or a trainer module's imported name) also run a `StepRecorder`."""
    recorder = StepRecorder(metric)
    original = owner.run_training

    def run_training_recorded(*args, extra_callbacks=(), **kwargs):
        return original(*args, extra_callbacks=[*extra_callbacks, recorder], **kwargs)

    monkeypatch.setattr(owner, "run_training", run_training_recorded)
    return recorder


def assert_whole_epochs(recorder: StepRecorder, optimizer: keras.optimizers.Optimizer, epochs: int, steps: int):
    """Each of `epochs` epochs ran `steps` train steps and no more: the optimizer counted epochs · steps, and
    each epoch's logged metric is its Mean over those steps (the value after the last one). An extra,
    interrupted step at an epoch end (Keras on data of unknown length) would advance both."""
    assert [count for count, _, _ in recorder.epochs] == [steps] * epochs
    assert int(optimizer.iterations) == epochs * steps
    for _, after_last_step, logged in recorder.epochs:
        assert logged == pytest.approx(after_last_step, rel=1e-6)
