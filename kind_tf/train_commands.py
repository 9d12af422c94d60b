"""`llie train kind-decom | kind-restoration | kind-adjust | kind --data LOLDIR`: KinD's three training stages.

Defaults are those of the original scripts (github.com/zhangyhuaee/KinD; behaviour reproduced, code not copied):

- decom (decomposition_net_train.py): 2000 epochs, batch 10, patch 48, lr 1e-4;
- restoration (reflectance_restoration_net_train.py): 1000 epochs, batch 4, patch 384, lr 1e-4 divided by 2
  after epoch 800, by 4 after 1250, by 10 after 1500 (the last two unreached in 1000 epochs);
- adjust (adjustment_net_train.py): 2000 epochs, batch 10, patch 48, lr 1e-4;
all with TF1 Adam (β 0.9/0.999, ε 1e-8).

As there: an epoch is len(pairs) // batch steps (`numBatch`); every image is min-max stretched as a whole when
loaded (`load_images`; `--no-normalize` skips it), then one random crop per sample with one of the 8
flips/rotations shared by the pair. Stages 2 and 3 use a frozen DecomNet (`--decom-weights`) and, as the scripts,
crop and transform the maps of the WHOLE image's decomposition (`kind_tf.context`: windows with DecomNet context,
exact, instead of the scripts' decompose-everything-first).
Differences, named: the restoration / adjust scripts hold out the last pairs of our485 for their own eval
([0:466] / [0:450] train) — here every pair of the train split trains; the adjust script draws its flip mode
with np.random.randint(0, 7), never using mode 7, and walks the data unshuffled — here all 8 modes and a shuffled
order.
`llie train kind` runs the three in order into <run-dir>/{decom,restoration,adjust}/ and writes the combined
enhancer weights <run-dir>/kind.weights.h5 for `llie enhance --model kind --weights ...`.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Callable

import keras
import tensorflow as tf
from keras import ops

from kind_tf.context import context_crops
from kind_tf.convert import convert_checkpoints, load_network
from kind_tf.layers import stretch_whole_image
from kind_tf.pipeline import DEFAULT_RATIO, KinD
from kind_tf.trainers import (ORIGINAL_SWAP_PROBABILITY, ORIGINAL_TARGET_EXPONENT, AdjustTrainer, DecomTrainer,
                              RestorationTrainer, StageTrainer, original_optimizer)
from train.callbacks import sample_crop, save_weights_atomically
from train.data import paired_dataset
from train.fit import FINAL_WEIGHTS, add_training_arguments, run_training
from train.folders import find_lol_pairs
from train.io import read_image
from train.registry import TrainCommand

# reflectance_restoration_net_train.py's lr_schedule(epoch): lr for epoch <= 800, lr/2 <= 1250, lr/4 <= 1500,
# else lr/10 (epochs counted from 0).
ORIGINAL_LR_MILESTONES = (800, 1250, 1500)
ORIGINAL_LR_DIVISORS = (2.0, 4.0, 10.0)
KIND_WEIGHTS = "kind.weights.h5"
_SHARED_STAGE_FLAGS = ("epochs", "batch_size", "patch_size", "lr", "sample_every")


def restoration_learning_rate(epoch: int, initial: float, milestones=ORIGINAL_LR_MILESTONES,
                              divisors=ORIGINAL_LR_DIVISORS) -> float:
    """The restoration script's step schedule: `initial / divisors[k]` once epoch (from 0) > milestones[k]."""
    divisor = 1.0
    for milestone, candidate in zip(milestones, divisors):
        if epoch > milestone:
            divisor = candidate
    return initial / divisor


# === Stages ===


def _compiled(trainer: StageTrainer, args: argparse.Namespace) -> StageTrainer:
    trainer.build()
    trainer.compile(optimizer=original_optimizer(args.lr))
    trainer.optimizer.build(trainer.trainable_variables)
    return trainer


def _build_decom(args: argparse.Namespace) -> StageTrainer:
    return _compiled(DecomTrainer(), args)


def _build_restoration(args: argparse.Namespace) -> StageTrainer:
    trainer = RestorationTrainer(target_exponent=args.target_exponent)
    trainer.build()
    load_network(trainer.decom_net, args.decom_weights)
    return _compiled(trainer, args)


def _build_adjust(args: argparse.Namespace) -> StageTrainer:
    trainer = AdjustTrainer(swap_probability=args.swap_probability, seed=args.seed)
    trainer.build()
    load_network(trainer.decom_net, args.decom_weights)
    return _compiled(trainer, args)


def _grey(illumination):
    return ops.repeat(illumination, 3, axis=-1)


def _render_decom(_args):
    def render(trainer, images):
        reflectance, illumination = trainer(images)
        return ops.concatenate([reflectance, _grey(illumination)], axis=2)  # R | I, as the script's save_images

    return render


def _render_restoration(_args):
    return lambda trainer, images: trainer(images)


def _render_adjust(args):
    return lambda trainer, images: _grey(trainer(images, ratio=args.sample_ratio))


def _restoration_callbacks(args: argparse.Namespace) -> list[keras.callbacks.Callback]:
    def schedule(epoch, _lr):
        return restoration_learning_rate(epoch, args.lr, args.lr_milestones, args.lr_divisors)

    return [keras.callbacks.LearningRateScheduler(schedule)]


@dataclasses.dataclass(frozen=True)
class Stage:
    """One training stage: its original defaults, trainer builder, saved network, samples and extra callbacks."""

    name: str
    epochs: int
    batch_size: int
    patch_size: int
    learning_rate: float
    sample_every: int  # the script's eval_every_epoch (sample images)
    build: Callable[[argparse.Namespace], StageTrainer]
    network: str  # the trainer attribute saved as <run-dir>/final.weights.h5
    render: Callable[[argparse.Namespace], Callable]
    callbacks: Callable[[argparse.Namespace], list] = lambda _args: []
    # Samples are `kind_tf.context.ContextCrops` for the frozen DecomNet (stages 2, 3), else (low, high) patches.
    context: bool = False


STAGES = (
    Stage("decom", 2000, 10, 48, 1e-4, 200, _build_decom, "decom_net", _render_decom),
    Stage("restoration", 1000, 4, 384, 1e-4, 50, _build_restoration, "restoration_net", _render_restoration,
          _restoration_callbacks, context=True),
    Stage("adjust", 2000, 10, 48, 1e-4, 200, _build_adjust, "adjust_net", _render_adjust, context=True),
)


def run_stage(args: argparse.Namespace, stage: Stage) -> StageTrainer:
    """Trains one stage with the chassis; the trained network goes to <run-dir>/final.weights.h5."""
    prepare = stretch_whole_image if args.normalize else None
    # Full batches running on across epochs, pairs // batch steps per epoch: the scripts' image_id and numBatch.
    dataset = paired_dataset(args.data, patch_size=args.patch_size, batch_size=args.batch_size, seed=args.seed,
                             drop_remainder=True, prepare=prepare,
                             augmentation=context_crops(args.patch_size) if stage.context else None)
    sample = tf.constant(read_image(find_lol_pairs(args.data, "train")[0][0]))
    sample = prepare(sample) if prepare else sample

    def save(trainer: StageTrainer, path: str) -> None:
        getattr(trainer, stage.network).save_weights(path)

    return run_training(args, build_model=lambda: stage.build(args), dataset=dataset,
                        sample_images=sample_crop(sample), render_samples=stage.render(args),
                        save_weights=save, extra_callbacks=stage.callbacks(args))


def run_kind(args: argparse.Namespace) -> KinD:
    """All three stages into <run-dir>/<stage>/, then <run-dir>/kind.weights.h5 (the combined enhancer).

    Stages 2 and 3 start from the DecomNet just trained. With resume on (default), a stage whose final weights
    exist and that left no backup (it finished) is not trained again.
    """
    run_dir = Path(args.run_dir)
    finals = {stage.name: run_dir / stage.name / FINAL_WEIGHTS for stage in STAGES}
    for stage in STAGES:
        stage_dir = run_dir / stage.name
        if args.resume and finals[stage.name].is_file() and not (stage_dir / "backup").exists():
            print(f"{stage.name}: {finals[stage.name]} exists (finished earlier); not retrained "
                  "(--no-resume retrains)")
            continue
        defaults = {"epochs": stage.epochs, "batch_size": stage.batch_size, "patch_size": stage.patch_size,
                    "lr": stage.learning_rate, "sample_every": stage.sample_every}
        values = {key: defaults[key] if getattr(args, key) is EACH_STAGES_OWN else getattr(args, key)
                  for key in _SHARED_STAGE_FLAGS}
        print(f"=== KinD stage {stage.name}: {values}")
        run_stage(argparse.Namespace(**{**vars(args), **values, "run_dir": str(stage_dir),
                                        "decom_weights": str(finals["decom"])}), stage)
    kind = convert_checkpoints(finals["decom"], finals["restoration"], finals["adjust"])
    out = save_weights_atomically(kind, run_dir / KIND_WEIGHTS)
    print(f"KinD enhancer weights: {out} (llie enhance --model kind --weights {out})")
    return kind


# === Flags ===


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True,
                        help="paired LOL folder (our485/{low,high}, LOL-v2 Train/{Low,Normal}, or low/ + high/)")
    parser.add_argument("--no-normalize", dest="normalize", action="store_false",
                        help="do not min-max stretch each whole image when loading (the original does)")


def _add_restoration_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("restoration stage")
    group.add_argument("--target-exponent", type=float, default=ORIGINAL_TARGET_EXPONENT,
                       help=f"target = R_high ** this (default {ORIGINAL_TARGET_EXPONENT:g})")
    group.add_argument("--lr-milestones", type=int, nargs=3, default=ORIGINAL_LR_MILESTONES, metavar="EPOCH",
                       help="epochs (from 0) after which the lr is divided (default 800 1250 1500)")
    group.add_argument("--lr-divisors", type=float, nargs=3, default=ORIGINAL_LR_DIVISORS, metavar="D",
                       help="lr divisors after each milestone (default 2 4 10)")


def _add_adjust_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("adjust stage")
    group.add_argument("--swap-probability", type=float, default=ORIGINAL_SWAP_PROBABILITY,
                       help="probability that a sample trains darkening (high → low) instead of brightening "
                            f"(default {ORIGINAL_SWAP_PROBABILITY:g})")
    group.add_argument("--sample-ratio", type=float, default=DEFAULT_RATIO,
                       help=f"brightening ratio of the TensorBoard sample images (default {DEFAULT_RATIO:g})")


def _add_decom_weights_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--decom-weights", required=True,
                        help="the frozen DecomNet: a kind-decom final.weights.h5, a KinD .weights.h5, or the "
                             "official checkpoint/ (or checkpoint/decom_net_train/) folder")


def _stage_arguments(stage: Stage, *extra: Callable[[argparse.ArgumentParser], None]):
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        add_training_arguments(parser, epochs=stage.epochs, batch_size=stage.batch_size,
                               patch_size=stage.patch_size, learning_rate=stage.learning_rate,
                               model_name=f"kind-{stage.name}")
        parser.set_defaults(sample_every=stage.sample_every)  # the script's eval_every_epoch
        _add_data_flags(parser)
        for add in extra:
            add(parser)

    return add_arguments


class _EachStagesOwn:
    """The default of a shared training flag of `llie train kind`: each stage's own value (as --help says)."""

    def __repr__(self) -> str:
        return "each stage's own, see below"


EACH_STAGES_OWN = _EachStagesOwn()


def _add_kind_arguments(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser, epochs=STAGES[0].epochs, batch_size=STAGES[0].batch_size,
                           patch_size=STAGES[0].patch_size, learning_rate=STAGES[0].learning_rate,
                           model_name="kind")
    parser.set_defaults(**dict.fromkeys(_SHARED_STAGE_FLAGS, EACH_STAGES_OWN))
    per_stage = ", ".join(f"{s.name} {s.epochs}/{s.batch_size}/{s.patch_size}/{s.learning_rate:g}/{s.sample_every}"
                          for s in STAGES)
    parser.epilog = (f"Per-stage defaults of --epochs/--batch-size/--patch-size/--lr/--sample-every (a flag given "
                     f"applies to every stage): {per_stage}.")
    _add_data_flags(parser)
    _add_restoration_flags(parser)
    _add_adjust_flags(parser)


def _stage_command(stage: Stage) -> Callable[[argparse.Namespace], int]:
    def run_command(args: argparse.Namespace) -> int:
        run_stage(args, stage)
        return 0

    return run_command


def _kind_command(args: argparse.Namespace) -> int:
    run_kind(args)
    return 0


TRAIN_COMMANDS = (
    TrainCommand("kind-decom", "train KinD's decomposition net on paired LOL data (stage 1)",
                 _stage_arguments(STAGES[0]), _stage_command(STAGES[0])),
    TrainCommand("kind-restoration", "train KinD's reflectance restoration net on a frozen DecomNet (stage 2)",
                 _stage_arguments(STAGES[1], _add_decom_weights_flag, _add_restoration_flags),
                 _stage_command(STAGES[1])),
    TrainCommand("kind-adjust", "train KinD's illumination adjustment net on a frozen DecomNet (stage 3)",
                 _stage_arguments(STAGES[2], _add_decom_weights_flag, _add_adjust_flags),
                 _stage_command(STAGES[2])),
    TrainCommand("kind", "train all three KinD stages in order and save the combined enhancer weights",
                 _add_kind_arguments, _kind_command),
)
