"""`llie train sci --data DIR`: unsupervised SCI training on a folder of low-light images (no references).

Defaults follow the original train.py (github.com/vis-opt-group/SCI, commit 9d28a3f1): `--batch_size 1`,
`--epochs 1000`, `--lr 0.0003`, `--stage 3`; whole images (no crops, no flips), shuffled each epoch; Adam
(β 0.9/0.999) with coupled weight decay 3e-4 and gradient clipping at global norm 5. The run saves what test.py
deploys: the EnhanceNetwork, as SCIEnhancer weights (`final.weights.h5`, loadable with `--weights`).
"""

from __future__ import annotations

import argparse

import tensorflow as tf
from keras import ops

from sci_tf.model import SCI
from sci_tf.optimizer import TorchAdam
from train.registry import TrainCommand

ORIGINAL_EPOCHS = 1000
ORIGINAL_BATCH_SIZE = 1
ORIGINAL_LEARNING_RATE = 3e-4
ORIGINAL_STAGES = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from train.fit import add_training_arguments, positive_int

    # patch_size None = whole images, as the original (set --patch-size to crop, needed for --batch-size > 1
    # on images of different sizes).
    add_training_arguments(parser, epochs=ORIGINAL_EPOCHS, batch_size=ORIGINAL_BATCH_SIZE, patch_size=None,
                           learning_rate=ORIGINAL_LEARNING_RATE, model_name="sci")
    parser.add_argument("--data", required=True, help="folder of low-light training images (any sizes)")
    parser.add_argument("--stages", type=positive_int, default=ORIGINAL_STAGES,
                        help="number of weight-shared stages (default %(default)s)")
    parser.add_argument("--augment", action="store_true",
                        help="random flips/rotations of the training images (the original uses none)")


def render_reflectance(model: SCI, images: tf.Tensor) -> tf.Tensor:
    """r = clamp(x / enhance(x), 0, 1): what the deployed enhancer outputs, and the first stage's reflectance
    (what the original train.py saves as sample images); the calibration network is not run."""
    return ops.clip(images / model.enhance(images, training=False), 0.0, 1.0)


def save_enhancer_weights(model: SCI, path: str) -> None:
    model.enhancer().save_weights(path)


def build_sci(learning_rate: float, stages: int) -> SCI:
    """A compiled, built SCI with the original optimizer (call inside the strategy scope)."""
    model = SCI(stages=stages)
    model.build()
    model.compile(optimizer=TorchAdam(learning_rate=learning_rate))
    return model


def train(args: argparse.Namespace) -> SCI:
    """Runs the training described by the parsed flags; returns the trained SCI."""
    from train.callbacks import sample_crop
    from train.data import low_only_dataset
    from train.fit import run_training
    from train.folders import list_images
    from train.io import read_image

    # Full batches (the original's batch 1 is always full): under several replicas no shard is ever empty.
    dataset = low_only_dataset(args.data, patch_size=args.patch_size, batch_size=args.batch_size,
                               augment=args.augment, shuffle=True, drop_remainder=True, seed=args.seed)
    return run_training(args, build_model=lambda: build_sci(args.lr, args.stages), dataset=dataset,
                        sample_images=sample_crop(read_image(list_images(args.data)[0])),
                        render_samples=render_reflectance, save_weights=save_enhancer_weights)


def run(args: argparse.Namespace) -> int:
    train(args)
    return 0


TRAIN_COMMAND = TrainCommand("sci", "train SCI without references on a folder of low-light images",
                             add_arguments, run)
