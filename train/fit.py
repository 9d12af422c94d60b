"""The training chassis every `llie train ...` command uses: shared flags, strategy, seed, precision, model.fit.

A trainer module only adds its own flags after `add_training_arguments(parser, <its defaults>)` and calls
`run_training(args, build_model=..., dataset=...)`; logs, checkpoints, resume and the final weights are handled
here, identically for every model.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import warnings
from pathlib import Path
from typing import Callable, Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf

from train.callbacks import RenderFn, SaveFn, save_weights_atomically, training_callbacks
from train.data import epoch_layout
from train.errors import DatasetLayoutError
from train.reading import pipeline_errors

STRATEGIES = ("default", "mirrored", "multiworker")
PRECISIONS = ("none", "mixed_float16", "mixed_bfloat16")
FINAL_WEIGHTS = "final.weights.h5"


def positive_int(text: str) -> int:
    """argparse `type=` of a count that must be at least 1 (a usage error otherwise)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


# === Flags ===


def add_training_arguments(
    parser: argparse.ArgumentParser,
    *,
    epochs: int,
    batch_size: int,
    patch_size: int | None,
    learning_rate: float,
    steps_per_epoch: int | None = None,
    model_name: str | None = None,
) -> None:
    """Adds the flags every trainer shares, with the model's original defaults.

    Namespace attributes: epochs, batch_size, patch_size, lr, steps_per_epoch, seed, run_dir, strategy, resume,
    sample_every, mixed_precision, verbose. `--run-dir` defaults to `runs/<model_name>`; without `model_name`,
    the last word of the parser's prog (`llie train sci` → `runs/sci`). `patch_size=None`: whole images. The help
    texts show each flag's current default (`%(default)s`), so a trainer changes one with `parser.set_defaults`.
    """
    name = model_name or parser.prog.split()[-1]
    group = parser.add_argument_group("training (shared by every trainer)")
    group.add_argument("--epochs", type=positive_int, default=epochs, help="number of epochs (default %(default)s)")
    group.add_argument("--batch-size", type=positive_int, default=batch_size,
                       help="global batch size, split across replicas (default %(default)s)")
    group.add_argument("--patch-size", type=positive_int, default=patch_size,
                       help="side of the square training crops in pixels ("
                            + ("default %(default)s)" if patch_size is not None else "default: whole images)"))
    group.add_argument("--lr", type=_positive_float, default=learning_rate, help="learning rate (default %(default)s)")
    group.add_argument("--steps-per-epoch", type=positive_int, default=steps_per_epoch,
                       help="batches per epoch ("
                            + ("default %(default)s)" if steps_per_epoch is not None else
                               "default: one pass over the training data, samples / batch size, rounded down "
                               "where a trainer uses full batches only)"))
    group.add_argument("--seed", type=int, default=0,
                       help="global random seed (Python, NumPy, TensorFlow; default %(default)s)")
    group.add_argument("--run-dir", default=os.path.join("runs", name),
                       help="folder for TensorBoard logs (logs/), the resume backup (backup/), the per-epoch "
                            "checkpoint last.weights.h5 and the final weights final.weights.h5 "
                            "(default %(default)s)")
    group.add_argument("--strategy", choices=STRATEGIES, default="default",
                       help="tf.distribute strategy: default (one device), mirrored (all local GPUs), "
                            "multiworker (MultiWorkerMirroredStrategy, reads TF_CONFIG) (default %(default)s)")
    group.add_argument("--no-resume", dest="resume", action="store_false",
                       help="start from epoch 0, deleting any backup of an interrupted run in the run dir "
                            "(default: resume from the last finished epoch)")
    group.add_argument("--sample-every", type=positive_int, default=1,
                       help="epochs between TensorBoard sample images (default %(default)s)")
    group.add_argument("--mixed-precision", choices=PRECISIONS, default="none",
                       help="Keras mixed-precision policy, none = float32 (default %(default)s)")
    group.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                       help="Keras progress output: 0 silent, 1 progress bar, 2 one line per epoch "
                            "(default %(default)s)")


# === Strategy and precision ===


def strategy_from_name(name: str) -> tf.distribute.Strategy:
    """'default' → the current (default) strategy; 'mirrored' → MirroredStrategy() over all local GPUs (one
    CPU if none); 'multiworker' → MultiWorkerMirroredStrategy(), which reads the cluster from TF_CONFIG."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r} (choose from {', '.join(STRATEGIES)})")


@contextlib.contextmanager
def precision_policy(name: str) -> Iterator[None]:
    """Sets the Keras global dtype policy (`"none"` means float32) and restores the previous one on exit."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32" if name == "none" else name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def worker_run_dir(run_dir: str | os.PathLike, strategy: tf.distribute.Strategy) -> Path:
    """Where this worker writes: `run_dir` on the chief (or single worker), `run_dir/workers/<type>_<id>`
    on the other workers of a multi-worker strategy, so they never overwrite the chief's files."""
    run_dir = Path(run_dir)
    if strategy.extended.should_checkpoint:
        return run_dir
    resolver = strategy.cluster_resolver
    return run_dir / "workers" / f"{resolver.task_type}_{resolver.task_id}"


def tracked_optimizers(model: keras.Model) -> list[keras.optimizers.Optimizer]:
    """Every optimizer held in an attribute of `model` (e.g. `optimizer`, or a GAN's `g_optimizer` and
    `d_optimizer`), each once, in attribute order."""
    found = [value for value in vars(model).values() if isinstance(value, keras.optimizers.Optimizer)]
    return list({id(optimizer): optimizer for optimizer in found}.values())


def _unbuilt_extra_optimizers(model: keras.Model) -> list[str]:
    """Names of optimizers tracked by the model, besides `model.optimizer` (which BackupAndRestore builds
    itself), that hold no variables yet: their state would silently not be restored on resume."""
    main = getattr(model, "optimizer", None)
    return [optimizer.name for optimizer in tracked_optimizers(model) if optimizer is not main and not optimizer.built]


def _check_replicas(args: argparse.Namespace, dataset: tf.data.Dataset, replicas: int) -> None:
    """Every replica needs at least one image of every batch: an empty shard gives NaN batch statistics
    (BatchNorm, EnlightenGAN's relativistic means, KinD's batch-wide min-max gradient terms), which the
    all-reduce spreads to every replica."""
    if args.batch_size < replicas:
        raise DatasetLayoutError(f"--batch-size {args.batch_size} is smaller than the {replicas} replicas of "
                                 f"--strategy {args.strategy}: each replica needs at least one image")
    layout = epoch_layout(dataset)
    if replicas > 1 and layout is not None and not layout.full_batches:
        raise ValueError("a pipeline whose epochs end with a short batch can leave a replica without an image: "
                         f"build it with drop_remainder=True under {replicas} replicas")


def epoch_steps(dataset: tf.data.Dataset, steps_per_epoch: int | None = None) -> int:
    """Batches per epoch: `steps_per_epoch` if given, else the epoch length of a `train.data` pipeline
    (`train.data.epoch_layout`), else the dataset's own length (a dataset of known cardinality).

    A `ValueError` for a dataset of unknown length: Keras would run one extra, interrupted step at the end of
    each of its epochs, which still advances the optimizer's step counter and the metrics' counts.
    """
    if steps_per_epoch is not None:
        return steps_per_epoch
    layout = epoch_layout(dataset)
    if layout is not None:
        return layout.steps
    cardinality = int(dataset.cardinality())
    if cardinality > 0:
        return cardinality
    raise ValueError("the training dataset's epoch length is unknown (or it is empty or endless): use a "
                     "train.data training pipeline, a dataset of known cardinality, or give steps_per_epoch")


# === Training ===


def run_training(
    args: argparse.Namespace,
    *,
    build_model: Callable[[], keras.Model],
    dataset: tf.data.Dataset,
    sample_images: np.ndarray | None = None,
    render_samples: RenderFn | None = None,
    save_weights: SaveFn | None = None,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
    strategy: tf.distribute.Strategy | None = None,
) -> keras.Model:
    """Trains `build_model()` on `dataset` with the shared flags of `add_training_arguments`; returns the model.

    Sets the global seed and the precision policy (restored on return), creates the strategy (`strategy`
    overrides `args.strategy`), calls `build_model()` inside `strategy.scope()` (it must return a compiled
    model; build it and every optimizer it uses so a resumed run restores their state), then runs `model.fit`
    with `training_callbacks(..., extra_callbacks=...)`. A file that fails to decode inside `dataset` raises the
    `ImageReadError` / `DatasetLayoutError` naming it (`pipeline_errors`), not TensorFlow's error. The final
    weights go atomically to `<run-dir>/final.weights.h5` via `save_weights(model, path)` if given (e.g. only
    the enhancer), else `model.save_weights`.

    `dataset` yields GLOBAL batches (at least one image per replica, else a `DatasetLayoutError`); `model.fit`
    splits them across replicas. It is repeated, and an epoch is `epoch_steps(dataset, args.steps_per_epoch)`
    batches: a `train.data` pipeline's epoch length (endless, reshuffled every epoch) or one pass over a dataset
    of known length.

    Resume restores weights, optimizer state and the epoch; a dataset that shuffles restarts its seeded order,
    so a resumed run equals an uninterrupted one exactly only for unshuffled data.
    """
    keras.utils.set_random_seed(args.seed)
    steps = epoch_steps(dataset, args.steps_per_epoch)
    with precision_policy(args.mixed_precision):
        strategy = strategy or strategy_from_name(args.strategy)
        _check_replicas(args, dataset, strategy.num_replicas_in_sync)
        run_dir = worker_run_dir(args.run_dir, strategy)
        backup_dir = run_dir / "backup"
        if not args.resume and backup_dir.exists():
            print(f"--no-resume: deleting the backup of an earlier run in {backup_dir}")
            shutil.rmtree(backup_dir)
        with strategy.scope():
            model = build_model()
        unbuilt = _unbuilt_extra_optimizers(model)
        if unbuilt:
            warnings.warn(f"optimizer(s) {', '.join(unbuilt)} are not built: build them in build_model() "
                          "(optimizer.build(variables)) so that a resumed run restores their state",
                          stacklevel=2)
        # Always backed up, even under --no-resume, so that this run itself can be resumed.
        callbacks = training_callbacks(run_dir, sample_images=sample_images, render_samples=render_samples,
                                       sample_every=args.sample_every, resume=True, save_weights=save_weights,
                                       extra_callbacks=extra_callbacks)
        print(f"training in {run_dir} (TensorBoard: tensorboard --logdir {run_dir / 'logs'})")
        with pipeline_errors():
            # Repeated with a fixed number of steps per epoch: Keras then never meets the end of the data.
            model.fit(dataset.repeat(), epochs=args.epochs, steps_per_epoch=steps, callbacks=callbacks,
                      verbose=args.verbose,
                      shuffle=False)  # the dataset shuffles itself; fit cannot shuffle a tf.data.Dataset
        final = save_weights_atomically(model, run_dir / FINAL_WEIGHTS, save_weights)
    print(f"final weights: {final}")
    return model
