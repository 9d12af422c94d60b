"""The training chassis (train/fit.py): shared flags, strategies, precision, resume, final weights, distribution.

The toy trainer and step recorders live in tests/fit_testing.py.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.enhancer_testing import read_scalars
from tests.fit_testing import (
    EpochRecorder,
    assert_whole_epochs,
    build_toy,
    record_steps,
    toy_args,
    toy_dataset,
    toy_pairs,
    toy_parser,
    weights_of,
)
from tests.image_folders import write_pairs
from train import fit
from train.data import paired_dataset
from train.errors import DatasetLayoutError
from train.fit import (
    FINAL_WEIGHTS,
    add_training_arguments,
    precision_policy,
    run_training,
    strategy_from_name,
    worker_run_dir,
)

# === Flags ===


def test_flags_have_the_given_defaults():
    args = toy_parser().parse_args([])
    assert (args.epochs, args.batch_size, args.patch_size, args.lr) == (3, 4, 8, 0.05)
    assert args.steps_per_epoch is None and args.seed == 0 and args.sample_every == 1 and args.verbose == 1
    assert args.run_dir == os.path.join("runs", "toy")
    assert (args.strategy, args.mixed_precision, args.resume) == ("default", "none", True)


def test_flags_parse_and_validate():
    args = toy_parser().parse_args(["--epochs", "5", "--lr", "1e-4", "--steps-per-epoch", "10", "--no-resume",
                                    "--strategy", "mirrored", "--mixed-precision", "mixed_bfloat16",
                                    "--verbose", "2", "--seed", "3", "--sample-every", "4"])
    assert (args.epochs, args.lr, args.steps_per_epoch, args.resume) == (5, 1e-4, 10, False)
    assert (args.strategy, args.mixed_precision, args.verbose, args.seed, args.sample_every) == (
        "mirrored", "mixed_bfloat16", 2, 3, 4)
    for bad in (["--epochs", "0"], ["--lr", "-1"], ["--strategy", "tpu"], ["--verbose", "3"]):
        with pytest.raises(SystemExit):
            toy_parser().parse_args(bad)


def test_model_name_sets_run_dir_default():
    parser = argparse.ArgumentParser(prog="whatever")
    add_training_arguments(parser, epochs=1, batch_size=1, patch_size=48, learning_rate=1e-3,
                           steps_per_epoch=100, model_name="kind-decom")
    args = parser.parse_args([])
    assert args.run_dir == os.path.join("runs", "kind-decom") and args.steps_per_epoch == 100


def test_help_mentions_every_flag_and_default():
    text = toy_parser().format_help()
    for flag in ("--epochs", "--batch-size", "--patch-size", "--lr", "--steps-per-epoch", "--seed", "--run-dir",
                 "--strategy", "--no-resume", "--sample-every", "--mixed-precision", "--verbose"):
        assert flag in text
    assert "default 3" in text and "runs/toy" in text and "default 0.05" in text


def test_help_shows_defaults_changed_later_and_whole_images():
    parser = argparse.ArgumentParser(prog="llie train whole")
    add_training_arguments(parser, epochs=3, batch_size=1, patch_size=None, learning_rate=0.05)
    parser.set_defaults(sample_every=7)
    text = " ".join(parser.format_help().split())
    assert "pixels (default: whole images)" in text and "None" not in text
    assert "sample images (default 7)" in text and parser.parse_args([]).sample_every == 7
    assert parser.parse_args([]).patch_size is None


@pytest.mark.parametrize("text, value", [("1", 1), ("12", 12), ("0", None), ("-3", None), ("x", None)])
def test_positive_int(text, value):
    if value is None:
        with pytest.raises((argparse.ArgumentTypeError, ValueError)):
            fit.positive_int(text)
    else:
        assert fit.positive_int(text) == value


# === Strategy and precision ===


def test_strategy_from_name():
    assert strategy_from_name("default") is tf.distribute.get_strategy()
    assert isinstance(strategy_from_name("mirrored"), tf.distribute.MirroredStrategy)
    with pytest.raises(ValueError, match="unknown strategy"):
        strategy_from_name("tpu")


def test_worker_run_dir_separates_non_chief_workers(tmp_path):
    assert worker_run_dir(tmp_path, tf.distribute.get_strategy()) == tmp_path
    worker = types.SimpleNamespace(extended=types.SimpleNamespace(should_checkpoint=False),
                                   cluster_resolver=types.SimpleNamespace(task_type="worker", task_id=2))
    assert worker_run_dir(tmp_path, worker) == tmp_path / "workers" / "worker_2"


def test_precision_policy_is_restored_even_on_error():
    assert keras.mixed_precision.global_policy().name == "float32"
    with pytest.raises(RuntimeError):
        with precision_policy("mixed_float16"):
            assert keras.mixed_precision.global_policy().name == "mixed_float16"
            raise RuntimeError
    assert keras.mixed_precision.global_policy().name == "float32"


# === run_training ===


def test_run_training_writes_loadable_final_weights_and_logs(tmp_path, capsys):
    args = toy_args(tmp_path, "--epochs", "2")
    model = run_training(args, build_model=build_toy, dataset=toy_dataset())
    final = tmp_path / FINAL_WEIGHTS
    assert str(final) in capsys.readouterr().out
    assert (tmp_path / "last.weights.h5").is_file()
    assert not (tmp_path / "backup").exists()  # deleted once fit completes
    reloaded = build_toy()
    reloaded.optimizer.build(reloaded.trainable_variables)  # model.save_weights keeps the Adam state too
    reloaded.load_weights(final)
    for got, want in zip(weights_of(reloaded), weights_of(model)):
        np.testing.assert_array_equal(got, want)
    # It did learn to brighten: the loss history decreases.
    history = model.history.history["loss"]
    assert len(history) == 2 and history[1] < history[0]


def test_run_training_uses_save_weights_for_final_and_checkpoint(tmp_path):
    calls = []

    def save_conv_only(model, path):
        calls.append(path)
        keras.Sequential([keras.Input((None, None, 3)), model.conv]).save_weights(path)

    run_training(toy_args(tmp_path, "--epochs", "1"), build_model=build_toy, dataset=toy_dataset(),
                 save_weights=save_conv_only)
    assert len(calls) == 2 and all(p.endswith(".weights.h5") and os.path.dirname(p) == str(tmp_path)
                                   for p in calls)
    assert sorted(os.listdir(tmp_path)) == ["final.weights.h5", "last.weights.h5", "logs"]


def test_resume_continues_from_last_finished_epoch(tmp_path):
    data = toy_dataset()
    crash = EpochRecorder(fail_after_epoch=0)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_training(toy_args(tmp_path / "a", "--epochs", "2"), build_model=build_toy, dataset=data,
                     extra_callbacks=[crash])
    assert crash.begun == [0]
    resumed = EpochRecorder()
    model = run_training(toy_args(tmp_path / "a", "--epochs", "2"), build_model=build_toy, dataset=data,
                         extra_callbacks=[resumed])
    assert resumed.begun == [1]

    uninterrupted = run_training(toy_args(tmp_path / "b", "--epochs", "2"), build_model=build_toy, dataset=data)
    # Adam's moments and step count come back too, otherwise the second epoch would differ.
    assert int(model.optimizer.iterations) == int(uninterrupted.optimizer.iterations) == 4
    for got, want in zip(weights_of(model), weights_of(uninterrupted)):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_no_resume_discards_an_earlier_backup(tmp_path):
    # A backup claiming epoch 1 was finished: resuming would skip epoch 0.
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "training_metadata.json").write_text(json.dumps({"epoch": 1, "batch": 0}))
    recorder = EpochRecorder()
    run_training(toy_args(tmp_path, "--epochs", "2", "--no-resume"), build_model=build_toy,
                 dataset=toy_dataset(), extra_callbacks=[recorder])
    assert recorder.begun == [0, 1]


def test_two_replicas_match_one_device_after_one_step(tmp_path, two_cpu_strategy):
    flags = ("--epochs", "1", "--steps-per-epoch", "1")
    sgd = lambda: build_toy(optimizer="sgd", lr=0.5)  # noqa: E731
    single = run_training(toy_args(tmp_path / "one", *flags), build_model=sgd, dataset=toy_dataset())
    mirrored = run_training(toy_args(tmp_path / "two", *flags), build_model=sgd, dataset=toy_dataset(),
                            strategy=two_cpu_strategy, sample_images=toy_pairs(1)[0])
    assert glob.glob(str(tmp_path / "two" / "logs" / "images" / "events.out.tfevents.*"))  # renders under it
    assert mirrored.distribute_strategy.num_replicas_in_sync == 2
    initial = weights_of(build_toy())  # same seed → the starting point both runs share
    for got, want, start in zip(weights_of(mirrored), weights_of(single), initial):
        assert np.abs(want - start).max() > 1e-3  # the step moved the weights
        np.testing.assert_allclose(got, want, atol=1e-5)
    # The reported loss is the unscaled global-batch mean, not divided by the replica count.
    np.testing.assert_allclose(mirrored.history.history["loss"], single.history.history["loss"], rtol=1e-5)


def test_mixed_precision_is_used_then_restored(tmp_path):
    seen = []

    def build():
        seen.append(keras.mixed_precision.global_policy().name)
        return build_toy()

    model = run_training(toy_args(tmp_path, "--epochs", "1", "--mixed-precision", "mixed_bfloat16"),
                         build_model=build, dataset=toy_dataset())
    assert seen == ["mixed_bfloat16"] and model.conv.compute_dtype == "bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"


def test_seed_flag_controls_initial_weights(tmp_path):
    built = []

    def build():
        built.append(weights_of(build_toy()))
        return build_toy()

    args = toy_args(tmp_path, "--epochs", "1", "--steps-per-epoch", "1")
    data = toy_dataset()
    run_training(args, build_model=build, dataset=data)
    run_training(args, build_model=build, dataset=data)
    run_training(toy_args(tmp_path, "--epochs", "1", "--steps-per-epoch", "1", "--seed", "1"),
                 build_model=build, dataset=data)
    np.testing.assert_array_equal(built[0][0], built[1][0])
    assert not np.allclose(built[0][0], built[2][0])


def test_warns_about_an_unbuilt_extra_optimizer(tmp_path):
    build = lambda: build_toy(extra_optimizer=keras.optimizers.Adam(name="disc_adam"))  # noqa: E731
    with pytest.warns(UserWarning, match="disc_adam"):
        run_training(toy_args(tmp_path, "--epochs", "1", "--steps-per-epoch", "1"), build_model=build,
                     dataset=toy_dataset())
    assert not glob.glob(str(tmp_path / "**" / "*.tmp.weights.h5"), recursive=True)


def test_extra_callback_logs_reach_tensorboard(tmp_path):
    # A model's schedule callback (e.g. EnlightenGAN's EpochLinearDecay) writes its value into the epoch logs;
    # it must run before the TensorBoard scalar writer for the value to be written.
    schedule = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: logs.__setitem__("lr", 0.5 / (epoch + 1)))
    run_training(toy_args(tmp_path, "--epochs", "2"), build_model=build_toy, dataset=toy_dataset(),
                 extra_callbacks=[schedule])
    written = read_scalars(tmp_path / "logs" / "train")
    assert written["epoch_lr"] == pytest.approx({1: 0.5, 2: 0.25})
    assert sorted(written["epoch_loss"]) == [1, 2]


def test_corrupt_training_image_is_one_line_naming_the_file(tmp_path, capsys):
    # `llie train` through the chassis: the decode failure inside model.fit comes out as our one-line error.
    from tests.enhancer_testing import error_lines, run_llie

    data = tmp_path / "data"
    data.mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (16, 16, 3), np.uint8)
    keras.utils.save_img(data / "0.png", noise, scale=False)  # read first for the sample images: must be good
    (data / "1.png").write_bytes((data / "0.png").read_bytes()[:80])  # header fine, pixels cut off
    status, _, stderr = run_llie(capsys, "train", "sci", "--data", data, "--epochs", "1", "--stages", "1",
                                 "--run-dir", tmp_path / "run", "--verbose", "0")
    assert status == 1
    assert error_lines(stderr, "train") == [stderr.strip()]
    assert stderr.strip().startswith(f"llie train: error: {data / '1.png'}: corrupt or truncated image")


# === Epochs and replicas ===


@pytest.mark.parametrize("drop_remainder, steps", [(False, 2), (True, 1)])
def test_a_train_data_pipeline_runs_whole_epochs(tmp_path, monkeypatch, drop_remainder, steps):
    """6 pairs in batches of 4: each epoch ends with its short batch (ceil: 2 steps) or, full batches only,
    runs 6 // 4 = 1 step. The pipeline is endless and of unknown length to Keras: the steps come from its
    epoch length, so no extra step at the epoch ends."""
    write_pairs(tmp_path / "lol", [f"{index}.png" for index in range(6)], size=(8, 8))
    dataset = paired_dataset(tmp_path / "lol", patch_size=8, batch_size=4, drop_remainder=drop_remainder)
    assert int(dataset.cardinality()) == tf.data.UNKNOWN_CARDINALITY
    recorder = record_steps(monkeypatch, fit)
    model = fit.run_training(toy_args(tmp_path / "run", "--epochs", "3"), build_model=build_toy, dataset=dataset)
    assert_whole_epochs(recorder, model.optimizer, epochs=3, steps=steps)


def test_a_dataset_of_unknown_length_needs_steps_per_epoch(tmp_path, monkeypatch):
    unknown = toy_dataset().filter(lambda low, high: True)  # 2 batches, which Keras cannot know in advance
    with pytest.raises(ValueError, match="epoch length is unknown"):
        run_training(toy_args(tmp_path, "--epochs", "2"), build_model=build_toy, dataset=unknown)
    recorder = record_steps(monkeypatch, fit)
    model = fit.run_training(toy_args(tmp_path, "--epochs", "2", "--steps-per-epoch", "3"), build_model=build_toy,
                             dataset=unknown)  # repeated: 3 steps run on into the second pass
    assert_whole_epochs(recorder, model.optimizer, epochs=2, steps=3)


def test_every_replica_needs_an_image(tmp_path, two_cpu_strategy):
    def never_built():
        raise AssertionError("the batch check comes first")

    with pytest.raises(DatasetLayoutError, match=r"--batch-size 1 is smaller than the 2 replicas"):
        run_training(toy_args(tmp_path, "--batch-size", "1"), build_model=never_built,
                     dataset=toy_dataset(batch_size=1), strategy=two_cpu_strategy)
    write_pairs(tmp_path / "lol", ["0.png", "1.png", "2.png"], size=(8, 8))
    short_batches = paired_dataset(tmp_path / "lol", patch_size=8, batch_size=2, drop_remainder=False)
    with pytest.raises(ValueError, match="drop_remainder=True under 2 replicas"):
        run_training(toy_args(tmp_path, "--batch-size", "2"), build_model=never_built, dataset=short_batches,
                     strategy=two_cpu_strategy)
