"""tf.data pipelines for the three kinds of training data, and full-image evaluation pipelines.

- `paired_dataset`: LOL pairs (KinD) → batches of (low, high), each (B, P, P, 3).
- `unpaired_dataset`: EnlightenGAN trainA/trainB → batches of (low, normal), sample i = (A[i % |A|], B[i % |B|]).
- `low_only_dataset`: one folder of low-light images (SCI) → batches of low, (B, P, P, 3).
- `paired_eval_dataset` / `low_only_eval_dataset`: whole images, batch 1, no augmentation, with the file name.

All images are float32 RGB in [0,1], read with `train.io.read_image`. Folders, names and image headers are
checked when a pipeline is built (see `train.folders`); a file whose pixels cannot be decoded fails when it is
read, with an error naming it (wrap the loop or `model.fit` in `pipeline_errors()` to get it back as an
`ImageReadError`). Nothing is dropped silently: `skip_bad=True` skips bad files and logs each one instead, and
a training pipeline in which a whole epoch's files fail raises `DatasetLayoutError` (an endless stream would
otherwise skip forever).

Epochs: the training pipelines are endless by default (`repeat=True`), with their epoch length attached
(`epoch_layout(dataset)`: samples per epoch, batch size, full batches only or not), from which
`train.fit.run_training` takes its steps per epoch. `repeat=False` gives one epoch, for inspection.

Determinism: every random choice (epoch order, crop window, dihedral transform or EnlightenGAN's flips)
is a stateless function of (seed, epoch or sample number), and the pipelines run with `deterministic=True`, so
one seed gives identical batches on every run, at any parallelism.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from train.augment import crop_and_augment, unpaired_crop_and_flip
from train.errors import DatasetLayoutError
from train.folders import check_images, check_pairs, find_lol_pairs, list_images, unpaired_folders
from train.reading import path_table, pipeline_errors, read_images

__all__ = ["EpochLayout", "epoch_layout", "low_only_dataset", "low_only_eval_dataset", "paired_dataset",
           "paired_eval_dataset", "pipeline_errors", "unpaired_dataset"]

AUTOTUNE = tf.data.AUTOTUNE
log = logging.getLogger("train.data")

# Independent random streams derived from one seed.
_ORDER_STREAM, _AUGMENT_STREAM = 0, 1
# (images of one sample, key (2,) int64) → the cropped, augmented images.
Augmentation = Callable[[tuple[tf.Tensor, ...], tf.Tensor], tuple[tf.Tensor, ...]]


# === Epochs ===


@dataclasses.dataclass(frozen=True)
class EpochLayout:
    """How an endless training pipeline divides into epochs.

    samples: samples per epoch (the data set's length); batch_size: the global batch; full_batches: True when
    every batch is full (batches then run on into the next epoch's samples), False when each epoch ends with its
    own short batch.
    """

    samples: int
    batch_size: int
    full_batches: bool

    @property
    def steps(self) -> int:
        """Batches per epoch: samples // batch_size (at least 1) with full batches, else ceil(samples / batch)."""
        if self.full_batches:
            return max(1, self.samples // self.batch_size)
        return math.ceil(self.samples / self.batch_size)


_EPOCH_LAYOUT = "_llie_epoch_layout"


def epoch_layout(dataset: tf.data.Dataset) -> EpochLayout | None:
    """The `EpochLayout` of an endless training pipeline built here; None for any other dataset (including one
    derived from it by a further `map`, `filter`...: its epoch length is then the caller's to give)."""
    return getattr(dataset, _EPOCH_LAYOUT, None)


# === Building blocks ===


def _key(seed: int, stream: int) -> tf.Tensor:
    return tf.constant([seed, stream], dtype=tf.int64)


def _epoch_samples(num_items: int, epoch: tf.Tensor, *, seed: int, shuffle: bool) -> tf.data.Dataset:
    """(item index, sample number) of one epoch over `num_items` items.

    Each epoch is a fresh permutation drawn from (seed, epoch); the sample number counts across epochs and keys
    the per-sample random choices.
    """
    order = tf.range(num_items, dtype=tf.int64)
    if shuffle:
        order_key = tf.random.experimental.stateless_fold_in(_key(seed, _ORDER_STREAM), epoch)
        order = tf.random.experimental.stateless_shuffle(order, seed=order_key)
    return tf.data.Dataset.from_tensor_slices((order, epoch * num_items + tf.range(num_items, dtype=tf.int64)))


def _finish(dataset: tf.data.Dataset, batch_size: int | None, *, drop_remainder: bool = False) -> tf.data.Dataset:
    if batch_size is not None:
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE,
                                deterministic=True)
    options = tf.data.Options()
    options.deterministic = True
    return dataset.prefetch(AUTOTUNE).with_options(options)


def _check_batching(patch_size: int | None, batch_size: int, folder: str | os.PathLike) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if patch_size is None and batch_size != 1:
        raise DatasetLayoutError(f"{folder}: whole images (no patch size) can differ in size and cannot be "
                                 f"batched by {batch_size}: use batch size 1 or set a patch size")
    if patch_size is not None and patch_size < 1:
        raise ValueError(f"patch_size must be at least 1, got {patch_size}")


def _fail_on_an_empty_epoch(dataset: tf.data.Dataset, epoch_length: int, folders: str) -> tf.data.Dataset:
    """Raises `DatasetLayoutError` (through the pipeline, see `pipeline_errors`) at the last sample of an epoch in
    which no read succeeded; elements (ok, sample number, images) in sample order pass through unchanged."""
    message = (f"{folders}: no sample of a whole epoch ({epoch_length} samples) could be read; skip_bad=True "
               "skipped every one (see the warnings above)")

    def fail() -> np.bool_:
        raise DatasetLayoutError(message)

    def check(seen_ok: tf.Tensor, element: tuple):
        ok, sample, images = element
        position = sample % epoch_length
        seen_ok = tf.logical_or(tf.logical_and(seen_ok, position > 0), ok)  # reset at each epoch's first sample
        failed = tf.logical_and(tf.equal(position, epoch_length - 1), tf.logical_not(seen_ok))
        ok = tf.cond(failed, lambda: tf.reshape(tf.numpy_function(fail, [], tf.bool, stateful=True), []),
                     lambda: ok)
        return seen_ok, (ok, sample, images)

    return dataset.scan(tf.constant(False), check)


def _training_pipeline(
    sources: Sequence[Sequence[Path]],
    *,
    epoch_length: int,
    choose: Callable[[tf.Tensor], Sequence[tf.Tensor]],
    paired: bool,
    augmentation: Augmentation,
    patch_size: int | None,
    batch_size: int,
    shuffle: bool,
    repeat: bool,
    drop_remainder: bool | None,
    seed: int,
    skip_bad: bool,
    prepare: Callable[[tf.Tensor], tf.Tensor] | None = None,
) -> tf.data.Dataset:
    """Samples → one file per source (`choose(item index)`) → read → `augmentation` (crop, flips...) → batch.

    `paired`: the images of a sample must have one size. `prepare`: applied to each whole image before the crop.
    `drop_remainder` None: full batches when `repeat`, else one epoch's short last batch is kept.
    """
    tables = [path_table(paths) for paths in sources]
    augment_key = _key(seed, _AUGMENT_STREAM)
    full_batches = repeat if drop_remainder is None else drop_remainder

    def read(index: tf.Tensor, sample: tf.Tensor):
        picks = choose(index)
        ok, images = read_images([table[pick] for table, pick in zip(tables, picks)], same_size=paired,
                                 skip_bad=skip_bad, min_size=patch_size)
        return ok, sample, images

    def transform(_ok: tf.Tensor, sample: tf.Tensor, images: tuple[tf.Tensor, ...]):
        if prepare is not None:
            images = tuple(prepare(image) for image in images)
        images = augmentation(images, tf.random.experimental.stateless_fold_in(augment_key, sample))
        return images if len(images) > 1 else images[0]

    def samples(numbers: tf.data.Dataset) -> tf.data.Dataset:
        dataset = numbers.map(read, num_parallel_calls=AUTOTUNE, deterministic=True)
        if skip_bad:
            folders = ", ".join(dict.fromkeys(str(paths[0].parent) for paths in sources))
            dataset = _fail_on_an_empty_epoch(dataset, epoch_length, folders)
            dataset = dataset.filter(lambda ok, _sample, _images: ok)
        return dataset.map(transform, num_parallel_calls=AUTOTUNE, deterministic=True)

    def one_epoch(epoch: tf.Tensor) -> tf.data.Dataset:
        return _epoch_samples(epoch_length, epoch, seed=seed, shuffle=shuffle)

    epochs = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(1)
    if repeat and not full_batches:
        # Each epoch batched on its own, so that it ends with its short batch (as a PyTorch DataLoader).
        dataset = _finish(epochs.flat_map(lambda epoch: samples(one_epoch(epoch)).batch(
            batch_size, num_parallel_calls=AUTOTUNE, deterministic=True)), None)
    else:
        # Full batches of an endless stream run on across epochs (a static batch size, no sample dropped).
        dataset = _finish(samples(epochs.flat_map(one_epoch)), batch_size, drop_remainder=full_batches)
    if repeat:
        setattr(dataset, _EPOCH_LAYOUT, EpochLayout(epoch_length, batch_size, full_batches))
    return dataset


def _eval_pipeline(sources: Sequence[Sequence[Path]], *, paired: bool, skip_bad: bool) -> tf.data.Dataset:
    """Whole images of each sample, batch 1 ((1, H, W, 3) each), plus the file name of the first one (scalar)."""
    names = tf.constant([path.name for path in sources[0]])
    dataset = tf.data.Dataset.from_tensor_slices((tuple(path_table(paths) for paths in sources), names))

    def read(paths: tuple[tf.Tensor, ...], name: tf.Tensor):
        ok, images = read_images(paths, same_size=paired, skip_bad=skip_bad)
        return ok, images, name

    dataset = dataset.map(read, num_parallel_calls=AUTOTUNE, deterministic=True)
    if skip_bad:
        dataset = dataset.filter(lambda ok, _images, _name: ok)
    return _finish(dataset.map(lambda _ok, images, name: (*[image[None] for image in images], name)), None)


# === Training pipelines ===


def _same_crop_and_dihedral(patch_size: int | None, augment: bool) -> Augmentation:
    return lambda images, key: crop_and_augment(images, key, patch_size, augment)


def paired_dataset(
    root: str | os.PathLike,
    *,
    split: str = "train",
    patch_size: int | None = 48,
    batch_size: int = 16,
    augment: bool = True,
    shuffle: bool = True,
    repeat: bool = True,
    drop_remainder: bool | None = None,
    seed: int = 0,
    skip_bad: bool = False,
    prepare: Callable[[tf.Tensor], tf.Tensor] | None = None,
    augmentation: Augmentation | None = None,
) -> tf.data.Dataset:
    """LOL pairs (see `train.folders.lol_folders` for the layouts) → batches of (low, high).

    Each pair yields one random `patch_size`² window per epoch, the same for both images, and one of the 8
    dihedral transforms (if `augment`), also the same for both. Yields (low, high), each (B, P, P, 3) float32 in
    [0,1]. `repeat=True`: endless, epoch length attached (`epoch_layout`); `repeat=False`: one epoch.
    `drop_remainder`: True, full batches only (an endless stream's batches then run on across epochs, no sample
    is dropped); False, each epoch ends with its short batch; None (default), full batches when `repeat`, the
    short last batch of one epoch otherwise.
    `prepare`: a function applied to each WHOLE image (H, W, 3) before the crop, e.g. KinD's per-image min-max
    stretch, which its training scripts apply when loading (a per-patch stretch would differ).
    `augmentation`: replaces the crop and transform above, (whole (low, high), stateless key) → the sample (e.g.
    `kind_tf.context.context_crops`); images are still at least `patch_size` on each side. `augment` only
    switches the default transform: `augment=False` with an `augmentation` is a `ValueError`.
    """
    if augmentation is not None and not augment:
        raise ValueError("augment=False only switches off the default crop's transform, which the given "
                         "augmentation replaces: make the augmentation itself not augment")
    _check_batching(patch_size, batch_size, root)
    pairs = check_pairs(find_lol_pairs(root, split, skip_bad=skip_bad), min_size=patch_size, skip_bad=skip_bad)
    log.info("%s (%s split): %d pairs", root, split, len(pairs))
    lows, highs = zip(*pairs)
    return _training_pipeline([lows, highs], epoch_length=len(pairs), choose=lambda index: (index, index),
                              paired=True, augmentation=augmentation or _same_crop_and_dihedral(patch_size, augment),
                              patch_size=patch_size, batch_size=batch_size, shuffle=shuffle, repeat=repeat,
                              drop_remainder=drop_remainder, seed=seed, skip_bad=skip_bad, prepare=prepare)


def unpaired_dataset(
    low_dir: str | os.PathLike,
    normal_dir: str | os.PathLike | None = None,
    *,
    patch_size: int | None = 320,
    batch_size: int = 32,
    augment: bool = True,
    shuffle: bool = True,
    repeat: bool = True,
    drop_remainder: bool | None = None,
    seed: int = 0,
    skip_bad: bool = False,
) -> tf.data.Dataset:
    """Unpaired low / normal-light images (EnlightenGAN) → batches of (low, normal), each (B, P, P, 3).

    `low_dir` alone is a folder holding trainA (low) and trainB (normal); or pass both folders. As EnlightenGAN's
    UnalignedDataset: an epoch has max(|A|, |B|) samples, visited in a shuffled order (if `shuffle`), and sample
    i is (A[i % |A|], B[i % |B|]). Augmentation as upstream (`train.augment.unpaired_crop_and_flip`): each image
    its own random `patch_size`² window and horizontal flip, then one joint horizontal and one joint vertical
    flip (p = 0.5 each); no 90° rotations. `augment=False` keeps the crops only (upstream `no_flip`). Defaults
    are EnlightenGAN's (fineSize 320, batch 32). `repeat`, `drop_remainder`: as `paired_dataset` (upstream's
    DataLoader ends each epoch with its short batch: `drop_remainder=False`).
    """
    _check_batching(patch_size, batch_size, low_dir)
    if normal_dir is None:
        low_dir, normal_dir = unpaired_folders(low_dir)
    lows = check_images(list_images(low_dir), min_size=patch_size, skip_bad=skip_bad)
    normals = check_images(list_images(normal_dir), min_size=patch_size, skip_bad=skip_bad)
    log.info("%s: %d low-light images, %s: %d normal-light images", low_dir, len(lows), normal_dir, len(normals))
    return _training_pipeline([lows, normals], epoch_length=max(len(lows), len(normals)),
                              choose=lambda index: (index % len(lows), index % len(normals)), paired=False,
                              augmentation=lambda images, key: unpaired_crop_and_flip(images, key, patch_size,
                                                                                      augment),
                              patch_size=patch_size, batch_size=batch_size, shuffle=shuffle, repeat=repeat,
                              drop_remainder=drop_remainder, seed=seed, skip_bad=skip_bad)


def low_only_dataset(
    folder: str | os.PathLike,
    *,
    patch_size: int | None = None,
    batch_size: int = 1,
    augment: bool = True,
    shuffle: bool = True,
    repeat: bool = True,
    drop_remainder: bool | None = None,
    seed: int = 0,
    skip_bad: bool = False,
) -> tf.data.Dataset:
    """One folder of low-light images (SCI) → batches of low images, (B, P, P, 3) float32 in [0,1].

    The default (whole images, batch 1) is how SCI trains; set `patch_size` to crop and batch (whole images can
    differ in size: a batch size above 1 without a patch size is a `DatasetLayoutError`). `repeat`,
    `drop_remainder`: as `paired_dataset`.
    """
    _check_batching(patch_size, batch_size, folder)
    images = check_images(list_images(folder), min_size=patch_size, skip_bad=skip_bad)
    log.info("%s: %d images", folder, len(images))
    return _training_pipeline([images], epoch_length=len(images), choose=lambda index: (index,), paired=False,
                              augmentation=_same_crop_and_dihedral(patch_size, augment), patch_size=patch_size,
                              batch_size=batch_size, shuffle=shuffle, repeat=repeat, drop_remainder=drop_remainder,
                              seed=seed, skip_bad=skip_bad)


# === Evaluation pipelines ===


def paired_eval_dataset(root: str | os.PathLike, split: str = "eval", *, skip_bad: bool = False
                        ) -> tf.data.Dataset:
    """Every LOL pair of `split`, whole, in name order: (low, high, name); images (1, H, W, 3), name a scalar
    string (the low image's file name, e.g. b"1.png")."""
    pairs = check_pairs(find_lol_pairs(root, split, skip_bad=skip_bad), skip_bad=skip_bad)
    lows, highs = zip(*pairs)
    return _eval_pipeline([lows, highs], paired=True, skip_bad=skip_bad)


def low_only_eval_dataset(folder: str | os.PathLike, *, skip_bad: bool = False) -> tf.data.Dataset:
    """Every image of `folder`, whole, in name order: (low, name); low (1, H, W, 3), name a scalar string."""
    return _eval_pipeline([check_images(list_images(folder), skip_bad=skip_bad)], paired=False, skip_bad=skip_bad)
