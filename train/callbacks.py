"""Callbacks every trainer shares: TensorBoard sample images, atomic weight checkpoints, resume after a crash;
and the `.weights.h5` helpers (atomic save, checked load, attributes) that trainers, converters and presets use.

`training_callbacks(run_dir, ...)` assembles the standard list that `train.fit.run_training` hands to
`model.fit`; the classes are usable on their own.

TensorBoard logs are written with core `tf.summary.write` plus the scalars/images plugin metadata, because
TensorFlow 2.21 no longer installs the `tensorboard` package that `tf.summary.scalar`/`image` and
`keras.callbacks.TensorBoard` need; the files are the same TensorBoard reads (`pip install tensorboard` to view).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Callable, Mapping

import h5py
import keras
import numpy as np
import tensorflow as tf

from train.errors import WeightsMismatchError
from train.io import atomic_output

# (model, images float32 NHWC [0,1]) -> rendered images NHWC in [0,1] (any float dtype; cast here).
RenderFn = Callable[[keras.Model, tf.Tensor], tf.Tensor]
# (model, path ending in .weights.h5) -> None; e.g. saves only the enhancer sub-network.
SaveFn = Callable[[keras.Model, str], None]

SCALARS_SUBDIR = "train"
IMAGES_SUBDIR = "images"
INPUT_TAG = "samples/input"
OUTPUT_TAG = "samples/output"
SAMPLE_SIDE = 512  # the largest side of a training run's sample image (`sample_crop`)


def _plugin(name: str) -> tf.compat.v1.SummaryMetadata:
    return tf.compat.v1.SummaryMetadata(plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name=name))


_SCALAR_METADATA = _plugin("scalars")
_IMAGE_METADATA = _plugin("images")


def write_scalar_summary(tag: str, value, step: int) -> None:
    """One float32 scalar point, as `tf.summary.scalar` writes it, to the default summary writer."""
    tf.summary.write(tag, tf.cast(value, tf.float32), step=step, metadata=_SCALAR_METADATA)


def write_image_summary(tag: str, images: tf.Tensor, step: int) -> None:
    """NHWC images in [0,1] (any float dtype; clipped, rounded to uint8) as TensorBoard's image plugin stores
    them: a string vector [width, height, png_0, png_1, ...]."""
    pixels = tf.cast(tf.round(tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 1.0) * 255.0), tf.uint8)
    pngs = tf.map_fn(tf.io.encode_png, pixels, fn_output_signature=tf.string)
    size = tf.strings.as_string(tf.stack([tf.shape(pixels)[2], tf.shape(pixels)[1]]))
    tf.summary.write(tag, tf.concat([size, pngs], axis=0), step=step, metadata=_IMAGE_METADATA)


def default_render(model: keras.Model, images: tf.Tensor) -> tf.Tensor:
    """Renders samples by calling the model itself (an enhancer-like training model)."""
    return model(images, training=False)


def sample_crop(image, max_side: int = SAMPLE_SIDE) -> np.ndarray:
    """A training run's TensorBoard sample: the top-left crop of at most `max_side`² of one (H, W, 3) image in
    [0,1] (array or tensor), as a batch (1, h, w, 3) float32; small, since every render runs eagerly."""
    return np.asarray(image, np.float32)[None, :max_side, :max_side]


# === Weights files ===

# Attribute values recorded in a .weights.h5 (HDF5 root attributes), e.g. how the weights were made.
AttributeValue = bool | int | float | str


def weights_output_path(text: str) -> str:
    """argparse `type=` of an output weights path: it must end in .weights.h5 (Keras picks the format from it)."""
    if not text.endswith(".weights.h5"):
        raise argparse.ArgumentTypeError(f"{text}: the output must end in .weights.h5 (Keras' weights format)")
    return text


def save_weights_atomically(model: keras.Model, path: str | os.PathLike, save_fn: SaveFn | None = None, *,
                            attributes: Mapping[str, AttributeValue] | None = None) -> Path:
    """Writes `model`'s weights to `path` (a .weights.h5) through a temp file beside it + os.replace
    (`train.io.atomic_output`; the file gets the usual permissions, 0o666 minus the umask), with `attributes`
    recorded in the file (read back by `read_weights_attributes`).

    A crash or a failing `save_fn(model, tmp_path)` leaves any previous file at `path` untouched and no temp
    file behind; the exception propagates.
    """
    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise ValueError(f"{path}: weights files must end in .weights.h5")
    # The temp name keeps the .weights.h5 suffix because Keras picks the format from it.
    with atomic_output(path, suffix=".weights.h5") as tmp:
        if save_fn is None:
            model.save_weights(str(tmp), overwrite=True)
        else:
            save_fn(model, str(tmp))
        if attributes:
            with h5py.File(tmp, "a") as file:
                file.attrs.update(attributes)
    return path


def read_weights_attributes(path: str | os.PathLike) -> dict[str, AttributeValue]:
    """The attributes `save_weights_atomically` recorded in a .weights.h5 ({} when none were);
    `WeightsMismatchError` naming the file when it is missing or not HDF5."""
    if not os.path.isfile(path):
        raise WeightsMismatchError(f"{path}: no such weights file")
    try:
        with h5py.File(path, "r") as file:
            stored = dict(file.attrs)
    except OSError as err:
        raise WeightsMismatchError(f"{path}: not a Keras .weights.h5 file (not HDF5)") from err
    return {name: value.decode() if isinstance(value, bytes) else value.item() if isinstance(value, np.generic)
            else value for name, value in stored.items()}


def load_weights_file(model: keras.Model, path: str | os.PathLike, what: str) -> None:
    """Loads the .weights.h5 at `path` into the built `model`; a one-line `WeightsMismatchError` naming the file
    when it is missing or does not fit ("PATH: not <what> weights (<Keras' first line>)")."""
    if not os.path.isfile(path):
        raise WeightsMismatchError(f"{path}: no such weights file")
    try:
        model.load_weights(os.fspath(path))
    except (ValueError, OSError, KeyError) as err:  # how Keras and h5py report a foreign or corrupt file
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise WeightsMismatchError(f"{path}: not {what} weights ({reason})") from err


# === Callbacks ===


class TensorBoardImages(keras.callbacks.Callback):
    """Writes `render(model, images)` every `every` epochs, and the inputs once per run, as TensorBoard images.

    Args:
        log_dir: the run's TensorBoard folder; images go to `<log_dir>/images`.
        images: float32 NHWC in [0,1], a handful of fixed samples (kept small: they are rendered eagerly).
        render: `(model, images) -> NHWC [0,1]`; defaults to `model(images, training=False)`.
        every: epochs between renders (epoch e is written when (e + 1) % every == 0, and at the last epoch).

    Image steps are epoch numbers counted from 1 (the inputs are written at step 0), so a resumed run continues
    the same time line.
    """

    def __init__(self, log_dir: str | os.PathLike, images: np.ndarray, render: RenderFn | None = None,
                 every: int = 1):
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4:
            raise ValueError(f"sample images must be NHWC, got shape {images.shape}")
        self.log_dir = os.fspath(log_dir)
        self.images = tf.constant(images)
        self.render = render or default_render
        self.every = every
        self._writer = None

    def _write(self, tag: str, images: tf.Tensor, step: int) -> None:
        with self._writer.as_default():
            write_image_summary(tag, images, step)
        self._writer.flush()

    def on_train_begin(self, logs=None):
        self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, IMAGES_SUBDIR))
        self._write(INPUT_TAG, self.images, step=0)

    def on_epoch_end(self, epoch, logs=None):
        last = self.params.get("epochs") if self.params else None
        if (epoch + 1) % self.every == 0 or (last is not None and epoch + 1 == last):
            self._write(OUTPUT_TAG, self.render(self.model, self.images), step=epoch + 1)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class TensorBoardScalars(keras.callbacks.Callback):
    """Writes every value in the epoch logs (each metric the model reports) and the learning rate, as scalars
    `epoch_<name>` under `<log_dir>/train`, the layout of `keras.callbacks.TensorBoard`.

    Steps are epoch numbers counted from 1 (like `TensorBoardImages`), so a resumed run continues the line.
    """

    def __init__(self, log_dir: str | os.PathLike):
        super().__init__()
        self.log_dir = os.fspath(log_dir)
        self._writer = None

    def on_train_begin(self, logs=None):
        self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, SCALARS_SUBDIR))

    def on_epoch_end(self, epoch, logs=None):
        values = dict(logs or {})
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and "learning_rate" not in values:
            values["learning_rate"] = optimizer.learning_rate
        with self._writer.as_default():
            for name, value in values.items():
                write_scalar_summary(f"epoch_{name}", value, epoch + 1)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class AtomicWeightsCheckpoint(keras.callbacks.Callback):
    """At each epoch end writes the weights to `path` (a .weights.h5) via a temp file + os.replace.

    An interrupted or failing write never corrupts the last good checkpoint. `save_fn(model, tmp_path)`
    replaces `model.save_weights` (e.g. to save only the enhancer sub-network).
    """

    def __init__(self, path: str | os.PathLike, save_fn: SaveFn | None = None):
        super().__init__()
        self.path = Path(path)
        self.save_fn = save_fn
        if not self.path.name.endswith(".weights.h5"):
            raise ValueError(f"{self.path}: weights files must end in .weights.h5")

    def on_epoch_end(self, epoch, logs=None):
        save_weights_atomically(self.model, self.path, self.save_fn)


def training_callbacks(
    run_dir: str | os.PathLike,
    *,
    sample_images: np.ndarray | None = None,
    render_samples: RenderFn | None = None,
    sample_every: int = 1,
    resume: bool = True,
    save_weights: SaveFn | None = None,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
) -> list[keras.callbacks.Callback]:
    """The standard callback list of a training run in `run_dir`.

    - `keras.callbacks.BackupAndRestore(<run_dir>/backup)` (when `resume`): backs the whole training state
      (weights, every tracked optimizer, epoch) up at each epoch end, so a killed run restarts at the first
      unfinished epoch; it is deleted when fit completes. It comes first so the backup exists before any later
      callback can fail.
    - `extra_callbacks`, in their order (e.g. a model's lr schedule): before the scalar writer, so what they put
      in the epoch logs (EnlightenGAN's `lr`) reaches TensorBoard.
    - `TensorBoardScalars(<run_dir>/logs)`: one scalar per metric the model reports (and the learning rate),
      per epoch.
    - `TensorBoardImages(<run_dir>/logs)` when `sample_images` is given.
    - `AtomicWeightsCheckpoint(<run_dir>/last.weights.h5, save_weights)`.
    """
    run_dir = Path(run_dir)
    log_dir = run_dir / "logs"
    callbacks: list[keras.callbacks.Callback] = []
    if resume:
        callbacks.append(keras.callbacks.BackupAndRestore(os.fspath(run_dir / "backup")))
    callbacks.extend(extra_callbacks)
    callbacks.append(TensorBoardScalars(log_dir))
    if sample_images is not None:
        callbacks.append(TensorBoardImages(log_dir, sample_images, render_samples, every=sample_every))
    callbacks.append(AtomicWeightsCheckpoint(run_dir / "last.weights.h5", save_weights))
    return callbacks
