"""Shared training callbacks (train/callbacks.py): TensorBoard scalars and images, atomic checkpoints."""

from __future__ import annotations

import argparse
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.enhancer_testing import read_events
from tests.fit_testing import build_toy, toy_dataset, toy_pairs
from train.callbacks import (
    INPUT_TAG,
    OUTPUT_TAG,
    AtomicWeightsCheckpoint,
    TensorBoardImages,
    TensorBoardScalars,
    load_weights_file,
    read_weights_attributes,
    sample_crop,
    save_weights_atomically,
    training_callbacks,
    weights_output_path,
)
from train.errors import WeightsMismatchError


def decode_images(value: np.ndarray) -> np.ndarray:
    """Image-plugin tensor [width, height, png...] → uint8 (N, H, W, 3), checking the stored size."""
    images = np.stack([tf.io.decode_png(png).numpy() for png in value[2:]])
    assert (int(value[0]), int(value[1])) == (images.shape[2], images.shape[1])
    return images


def as_uint8(images) -> np.ndarray:
    return np.round(np.clip(np.asarray(images, np.float32), 0, 1) * 255).astype(np.int32)


def invert_render(model, images):
    """A render different from the default, to prove the given one is used."""
    return 1.0 - model(images, training=False)


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """Three epochs of the toy trainer with the standard callbacks, samples every 2 epochs."""
    run_dir = tmp_path_factory.mktemp("run")
    samples = toy_pairs(2)[0]
    model = build_toy()
    history = model.fit(toy_dataset(), epochs=3, verbose=0, shuffle=False, callbacks=training_callbacks(
        run_dir, sample_images=samples, render_samples=invert_render, sample_every=2))
    return run_dir, model, samples, history.history


def test_scalars_hold_every_reported_metric_per_epoch(logged_run):
    run_dir, model, _, history = logged_run
    events = read_events(run_dir / "logs" / "train")
    losses = events["epoch_loss"]
    assert sorted(losses) == [1, 2, 3]
    assert {plugin for plugin, _ in losses.values()} == {"scalars"}
    np.testing.assert_allclose([losses[step][1] for step in (1, 2, 3)], history["loss"], rtol=1e-6)
    assert losses[3][1] < losses[1][1]
    np.testing.assert_allclose(events["epoch_learning_rate"][3][1], 0.05, rtol=1e-6)


def test_images_hold_inputs_once_and_renders_every_n_epochs(logged_run):
    run_dir, model, samples, _ = logged_run
    events = read_events(run_dir / "logs" / "images")
    assert sorted(events[INPUT_TAG]) == [0]
    assert sorted(events[OUTPUT_TAG]) == [2, 3]  # every 2nd epoch, and the last one
    plugin, inputs = events[INPUT_TAG][0]
    assert plugin == "images"
    np.testing.assert_array_equal(decode_images(inputs), as_uint8(samples))
    rendered = decode_images(events[OUTPUT_TAG][3][1]).astype(np.int32)
    assert np.abs(rendered - as_uint8(invert_render(model, samples))).max() <= 1


def test_standard_callbacks_leave_checkpoint_and_no_backup(logged_run):
    run_dir, model, _, _ = logged_run
    assert sorted(os.listdir(run_dir)) == ["last.weights.h5", "logs"]  # backup/ removed when fit completed
    reloaded = build_toy()
    reloaded.optimizer.build(reloaded.trainable_variables)
    reloaded.load_weights(run_dir / "last.weights.h5")
    for got, want in zip(reloaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_training_callbacks_composition(tmp_path):
    kinds = [type(c) for c in training_callbacks(tmp_path, sample_images=np.zeros((1, 4, 4, 3)))]
    assert kinds == [keras.callbacks.BackupAndRestore, TensorBoardScalars, TensorBoardImages,
                     AtomicWeightsCheckpoint]
    kinds = [type(c) for c in training_callbacks(tmp_path, resume=False)]
    assert kinds == [TensorBoardScalars, AtomicWeightsCheckpoint]
    backup, *_, checkpoint = training_callbacks(tmp_path)
    assert backup.backup_dir == str(tmp_path / "backup")
    assert checkpoint.path == tmp_path / "last.weights.h5"
    # A model's own callbacks (e.g. an lr schedule writing `lr` into the epoch logs) run after the backup and
    # before the scalar writer, in their order.
    first, second = keras.callbacks.Callback(), keras.callbacks.Callback()
    callbacks = training_callbacks(tmp_path, extra_callbacks=[first, second])
    assert callbacks[1:3] == [first, second] and isinstance(callbacks[3], TensorBoardScalars)
    assert isinstance(callbacks[0], keras.callbacks.BackupAndRestore)
    assert training_callbacks(tmp_path, resume=False, extra_callbacks=[first])[0] is first


def test_sample_crop_is_a_small_top_left_batch():
    image = np.random.default_rng(0).uniform(0, 1, (600, 300, 3))
    crop = sample_crop(image)
    assert crop.shape == (1, 512, 300, 3) and crop.dtype == np.float32
    np.testing.assert_array_equal(crop[0], image[:512].astype(np.float32))
    assert sample_crop(tf.constant(image), max_side=16).shape == (1, 16, 16, 3)


def test_default_render_calls_the_model(tmp_path):
    model = build_toy()
    samples = toy_pairs(2)[0]
    callback = TensorBoardImages(tmp_path, samples, every=5)
    callback.set_model(model)
    callback.set_params({"epochs": 7})
    callback.on_train_begin()
    for epoch in range(7):
        callback.on_epoch_end(epoch)
    callback.on_train_end()
    outputs = read_events(tmp_path / "images")[OUTPUT_TAG]
    assert sorted(outputs) == [5, 7]
    rendered = decode_images(outputs[7][1]).astype(np.int32)
    assert np.abs(rendered - as_uint8(model(samples))).max() <= 1


def test_image_callback_validates_arguments(tmp_path):
    with pytest.raises(ValueError, match="every"):
        TensorBoardImages(tmp_path, np.zeros((1, 4, 4, 3)), every=0)
    with pytest.raises(ValueError, match="NHWC"):
        TensorBoardImages(tmp_path, np.zeros((4, 4, 3)))


def temp_files(folder) -> list[str]:
    return [name for name in os.listdir(folder) if name.endswith(".tmp.weights.h5")]


def test_atomic_checkpoint_writes_loadable_weights_without_temp_files(tmp_path):
    model = build_toy()
    checkpoint = AtomicWeightsCheckpoint(tmp_path / "last.weights.h5")
    checkpoint.set_model(model)
    checkpoint.on_epoch_end(0)
    assert os.listdir(tmp_path) == ["last.weights.h5"]
    other = build_toy()  # optimizer unbuilt on both sides: nothing was trained
    other.load_weights(tmp_path / "last.weights.h5")
    for got, want in zip(other.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_failing_save_keeps_the_previous_checkpoint(tmp_path):
    model = build_toy()
    path = tmp_path / "last.weights.h5"
    save_weights_atomically(model, path)
    good = path.read_bytes()

    def crash_half_way(_model, tmp):
        with open(tmp, "wb") as handle:
            handle.write(b"half a file")
        raise OSError("disk full")

    checkpoint = AtomicWeightsCheckpoint(path, save_fn=crash_half_way)
    checkpoint.set_model(model)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.on_epoch_end(1)
    assert path.read_bytes() == good
    assert temp_files(tmp_path) == [] and os.listdir(tmp_path) == ["last.weights.h5"]


def test_saved_weights_get_ordinary_permissions(tmp_path, umask_027):
    path = save_weights_atomically(build_toy(), tmp_path / "final.weights.h5")
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask_027


def test_weights_paths_must_be_weights_h5(tmp_path):
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        AtomicWeightsCheckpoint(tmp_path / "last.h5")
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        save_weights_atomically(build_toy(), tmp_path / "final.keras")
    assert weights_output_path("out/model.weights.h5") == "out/model.weights.h5"
    with pytest.raises(argparse.ArgumentTypeError, match=r"model\.h5: the output must end in \.weights\.h5"):
        weights_output_path("model.h5")


def test_recorded_attributes_round_trip_and_survive_a_failed_save(tmp_path):
    path = tmp_path / "final.weights.h5"
    recorded = {"flag": True, "missing": "restoration,adjust", "count": 3}
    save_weights_atomically(build_toy(), path, attributes=recorded)
    assert read_weights_attributes(path) == recorded
    assert type(read_weights_attributes(path)["flag"]) is bool  # a Python value, not numpy's
    def disk_full(_model, _tmp):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_weights_atomically(build_toy(), path, disk_full, attributes={"flag": False})
    assert read_weights_attributes(path) == recorded and os.listdir(tmp_path) == ["final.weights.h5"]
    save_weights_atomically(build_toy(), tmp_path / "plain.weights.h5")
    assert read_weights_attributes(tmp_path / "plain.weights.h5") == {}
    (tmp_path / "junk.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(WeightsMismatchError, match=r"junk\.weights\.h5: not a Keras \.weights\.h5 file"):
        read_weights_attributes(tmp_path / "junk.weights.h5")
    with pytest.raises(WeightsMismatchError, match=r"absent\.weights\.h5: no such weights file"):
        read_weights_attributes(tmp_path / "absent.weights.h5")


def test_load_weights_file_errors_are_one_line_naming_the_file(tmp_path):
    model = build_toy()
    save_weights_atomically(model, tmp_path / "toy.weights.h5")
    loaded = build_toy()
    load_weights_file(loaded, tmp_path / "toy.weights.h5", "toy")
    for got, want in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, want)
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2), keras.layers.Dense(3)])
    other.save_weights(str(tmp_path / "other.weights.h5"))
    (tmp_path / "junk.weights.h5").write_bytes(b"not hdf5")
    for name in ("other", "junk"):
        with pytest.raises(WeightsMismatchError, match=rf"{name}\.weights\.h5: not toy weights \(") as error:
            load_weights_file(build_toy(), tmp_path / f"{name}.weights.h5", "toy")
        assert "\n" not in str(error.value)
    with pytest.raises(WeightsMismatchError, match=r"absent\.weights\.h5: no such weights file"):
        load_weights_file(build_toy(), tmp_path / "absent.weights.h5", "toy")
