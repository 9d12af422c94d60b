"""`llie train enlightengan --low DIR --normal DIR`: unpaired EnlightenGAN training.

Defaults follow the official `scripts/script.py --train` (github.com/VITA-Group/EnlightenGAN, commit b0349848):
batch 32, 320² crops, Adam(1e-4, β 0.5/0.999) for G and the discriminators, 200 epochs: constant lr for the
first half (niter 100), then linearly to 0 (niter_decay 100). The SFP loss needs real VGG16 weights: "imagenet"
(Keras' copy of the Caffe VGG16 upstream uses, downloaded once) or a local file (`--vgg-weights`). The run saves
the enhancer (`final.weights.h5`, with its upsampling mode recorded, loadable with `llie enhance --model
enlightengan --weights`).
"""

from __future__ import annotations

import argparse
import os

import keras
import tensorflow as tf

from train.errors import WeightsMismatchError
from train.registry import TrainCommand

ORIGINAL_EPOCHS = 200  # niter + niter_decay
ORIGINAL_BATCH_SIZE = 32
ORIGINAL_CROP = 320  # fineSize
ORIGINAL_LEARNING_RATE = 1e-4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from train.fit import add_training_arguments

    add_training_arguments(parser, epochs=ORIGINAL_EPOCHS, batch_size=ORIGINAL_BATCH_SIZE, patch_size=ORIGINAL_CROP,
                           learning_rate=ORIGINAL_LEARNING_RATE, model_name="enlightengan")
    parser.add_argument("--low", required=True, help="folder of low-light images (upstream trainA)")
    parser.add_argument("--normal", required=True, help="folder of normal-light images, unpaired (trainB)")
    parser.add_argument("--vgg-weights", default="imagenet",
                        help="VGG16 weights of the self feature preserving loss: 'imagenet' (downloads once), a "
                             "Keras VGG16 .h5, or upstream's PyTorch vgg16.weight / an .npz of it "
                             "(default imagenet)")
    parser.add_argument("--constant-epochs", type=int, default=None,
                        help="epochs at the full lr before the linear decay to 0 (default: half of --epochs, "
                             "upstream niter)")
    parser.add_argument("--no-align-corners", dest="align_corners", action="store_false",
                        help="bilinear upsampling with torch >= 0.4 semantics (default: align_corners=True, as "
                             "the released checkpoint and the enhancer's default)")
    parser.add_argument("--darken-probability", type=float, default=0.5,
                        help="probability of darkening a low-light input by 2-4x (upstream vary=1; default 0.5)")
    parser.add_argument("--no-augment", dest="augment", action="store_false",
                        help="no random flips of the crops (upstream: each image h-flipped independently, then a "
                             "joint h- and v-flip)")


def save_trained_weights(model: keras.Model, path: str) -> None:
    """The enhancer's weights with its upsampling mode recorded (`llie enhance/export --weights` use it)."""
    from enlighten_tf.enhancer import save_enhancer_weights

    save_enhancer_weights(model.enhancer(), path)


def build_enlightengan(args: argparse.Namespace) -> keras.Model:
    """A built, compiled `EnlightenGAN` with upstream's optimizers (call inside the strategy scope); the lr
    decay is the `lr_schedule(args)` callback."""
    from enlighten_tf.model import EnlightenGAN, default_optimizer

    model = EnlightenGAN(vgg_weights=args.vgg_weights, align_corners=args.align_corners,
                         darken_probability=args.darken_probability, seed=args.seed)
    model.compile(g_optimizer=default_optimizer(args.lr), d_optimizer=default_optimizer(args.lr))
    return model


def lr_schedule(args: argparse.Namespace) -> keras.callbacks.Callback:
    """Upstream's per-epoch schedule: `--constant-epochs` (default half of `--epochs`) at `--lr`, then linear
    decay to 0 over the remaining epochs."""
    from enlighten_tf.schedule import EpochLinearDecay

    constant = args.epochs // 2 if args.constant_epochs is None else args.constant_epochs
    return EpochLinearDecay(args.lr, constant, max(args.epochs - constant, 1))


def training_dataset(args: argparse.Namespace, replicas: int = 1) -> tf.data.Dataset:
    """The unpaired pipeline of the flags, in global batches, endless (reshuffled every epoch).

    One device keeps upstream's short last batch of each epoch (its DataLoader's drop_last=False): an epoch is
    ceil(samples / batch) steps. Under several replicas only full batches (running on into the next epoch's
    samples; an epoch is samples // batch steps): a short one can leave a replica with no image, whose
    BatchNorm statistics and relativistic means would be NaN, reaching every replica through the all-reduce
    (and TF 2.21's Conv2D returns such an empty batch with its input's channels, not the conv's).
    """
    from train.data import unpaired_dataset

    return unpaired_dataset(args.low, args.normal, patch_size=args.patch_size, batch_size=args.batch_size,
                            augment=args.augment, shuffle=True, drop_remainder=replicas > 1, seed=args.seed)


def train(args: argparse.Namespace) -> keras.Model:
    """Runs `llie train enlightengan` with the parsed flags; returns the trained `EnlightenGAN`."""
    from train.callbacks import sample_crop
    from train.fit import run_training, strategy_from_name
    from train.folders import list_images
    from train.io import read_image

    if args.vgg_weights != "imagenet" and not os.path.isfile(args.vgg_weights):
        raise WeightsMismatchError(f"{args.vgg_weights}: no such VGG16 weights file")
    strategy = strategy_from_name(args.strategy)
    dataset = training_dataset(args, strategy.num_replicas_in_sync)
    return run_training(args, build_model=lambda: build_enlightengan(args), dataset=dataset,
                        sample_images=sample_crop(read_image(list_images(args.low)[0])),
                        save_weights=save_trained_weights,
                        extra_callbacks=[lr_schedule(args)], strategy=strategy)


def run(args: argparse.Namespace) -> int:
    """The CLI entry: trains (see `train`), exit status 0."""
    train(args)
    return 0


TRAIN_COMMAND = TrainCommand("enlightengan", "train EnlightenGAN on unpaired low-light / normal-light folders",
                             add_arguments, run)
