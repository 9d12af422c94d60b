"""EnlightenGAN training: one iteration's losses and gradient against upstream (train_step_seed0), the random
darkening / patch helpers, the lr schedule, distribution (and short last batches on several replicas), mixed
precision, the VGG weights errors and `llie train enlightengan` (resume, logs, the recorded upsampling mode)."""

import argparse
import re
import types

import keras
import numpy as np
import pytest
import tensorflow as tf


from enlighten_tf import model as enlighten_model
from enlighten_tf import train_command
from enlighten_tf.discriminators import GlobalDiscriminator, LocalDiscriminator
from enlighten_tf.enhancer import ALIGN_CORNERS_ATTRIBUTE, FROM_UPSTREAM_ATTRIBUTE, build_enhancer
from enlighten_tf.layers import padding_amounts, reflect_pad
from enlighten_tf.model import EnlightenGAN, darken, extract_patches, random_patch_offsets
from enlighten_tf.schedule import EpochLinearDecay, decayed_learning_rate
from enlighten_tf.train_command import TRAIN_COMMAND, training_dataset
from losses_tf.vgg import download_failure
from tests.enhancer_testing import read_events, read_scalars
from tests.enlighten_testing import GRAD_RTOL, rel, upstream_gan
from tests.image_folders import coded_image, save
from tests.reference import reference, reference_path
from tests.fit_testing import assert_whole_epochs, record_steps
from train import cli
from train import fit
from train.callbacks import read_weights_attributes
from train.data import EpochLayout, epoch_layout
from train.errors import WeightsMismatchError
from train.fit import precision_policy

RTOL = 1e-4
TRACKED = {"g_loss", "g_gan_global", "g_gan_local", "sfp", "d_global", "d_local"}


@pytest.mark.parametrize("align_corners, suffix", [(False, ""), (True, "_acT")])
def test_losses_and_gradient_of_one_iteration_match_upstream(align_corners, suffix):
    model = upstream_gan(align_corners)
    f = reference("enlightengan", "train_step_seed0")
    with tf.GradientTape() as tape:
        losses = model.compute_losses(f["real_A"], f["input_img"], f["real_B"], f["patch_offsets_hw"])
    gradient = tape.gradient(losses["g_loss"], model.generator.conv1_1.kernel)
    np.testing.assert_allclose(losses["fake_B"], f[f"fake_B{suffix}"], atol=1e-5)
    np.testing.assert_allclose(losses["latent"], f[f"latent{suffix}"], atol=1e-5)
    assert rel(losses["g_gan_global"] + losses["g_gan_local"], f[f"loss_G_A{suffix}"]) <= RTOL
    assert rel(losses["sfp"], f[f"loss_vgg_b{suffix}"]) <= RTOL
    assert rel(losses["g_loss"], f[f"loss_G{suffix}"]) <= RTOL
    assert rel(losses["d_global"], f[f"loss_D_A{suffix}"]) <= RTOL
    assert rel(losses["d_local"], f[f"loss_D_P{suffix}"]) <= RTOL
    assert rel(tf.norm(gradient), f[f"grad_norm_G_conv1_1_weight{suffix}"]) <= GRAD_RTOL


def test_darkening_follows_upstream_vary():
    images = np.full((400, 2, 2, 3), 0.6, np.float32)  # [-1,1] value; (x+1)/2 = 0.8
    key = tf.constant([3, 4], tf.int64)
    np.testing.assert_array_equal(darken(images, key, probability=0.0), images)
    always = darken(images, key, probability=1.0).numpy()
    times = 0.8 / ((always[:, 0, 0, 0] + 1) / 2)
    assert times.min() >= 2.0 - 1e-4 and times.max() <= 4.0 + 1e-4
    np.testing.assert_allclose(times * 100, np.round(times * 100), atol=1e-2)  # randint(200, 400) / 100
    half = darken(images, key, probability=0.5).numpy()
    fraction = np.mean(half[:, 0, 0, 0] != images[:, 0, 0, 0])
    assert 0.4 < fraction < 0.6
    np.testing.assert_array_equal(half, darken(images, key, probability=0.5))  # a function of the key


def test_patch_offsets_range_and_extraction():
    offsets = random_patch_offsets(tf.constant([1, 2], tf.int64), 40, 70, num_patches=500).numpy()
    assert offsets.shape == (500, 2)
    # randint(0, size - 33) inclusive: the last row/column is never covered (upstream off-by-one).
    assert offsets[:, 0].min() == 0 and offsets[:, 0].max() == 40 - 33
    assert offsets[:, 1].min() == 0 and offsets[:, 1].max() == 70 - 33
    images = np.random.default_rng(0).normal(size=(2, 40, 70, 3)).astype(np.float32)
    patches = extract_patches(images, offsets[:3]).numpy()
    assert patches.shape == (6, 32, 32, 3)
    top, left = offsets[1]
    np.testing.assert_array_equal(patches[3], images[1, top:top + 32, left:left + 32])  # patch-major order


def test_learning_rate_schedule_per_epoch():
    lr = lambda epoch: decayed_learning_rate(epoch, 1e-4, 100, 100)  # noqa: E731  (0-based epochs)
    assert lr(0) == lr(100) == 1e-4  # epochs 1..101 (1-based) at full lr
    assert lr(101) == pytest.approx(0.99e-4, rel=1e-12) and lr(199) == pytest.approx(1e-6, rel=1e-12)
    assert lr(200) == 0.0 and lr(300) == 0.0
    model = types.SimpleNamespace(g_optimizer=keras.optimizers.Adam(1.0),
                                  d_optimizer=keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1.0)))
    callback = EpochLinearDecay(1e-4, constant_epochs=1, decay_epochs=2)
    callback.set_model(model)
    for epoch, expected in ((0, 1e-4), (1, 1e-4), (2, 0.5e-4), (3, 0.0)):
        callback.on_epoch_begin(epoch)
        logs = {}
        callback.on_epoch_end(epoch, logs)
        assert logs["lr"] == pytest.approx(expected)
        for optimizer in (model.g_optimizer, model.d_optimizer):
            assert float(optimizer.learning_rate) == pytest.approx(expected)


def _tiny_gan(**kwargs) -> EnlightenGAN:
    """Real generator, narrow discriminators and a one-conv stand-in for VGG: cheap to trace."""
    features = keras.Input((None, None, 3))
    extractor = keras.Model(features, keras.layers.Conv2D(8, 3, strides=8, activation="relu")(features))
    return EnlightenGAN(sfp_extractor=extractor, global_discriminator=GlobalDiscriminator(filters=4),
                        local_discriminator=LocalDiscriminator(filters=4), **kwargs)


def test_two_replicas_give_the_single_device_update(two_cpu_strategy):
    """One step on 2 replicas == one step on one device. Each replica holds one copy of the same image, so BN
    batch statistics and the relativistic means (per replica) equal the global ones; SGD keeps the gradient
    scale visible (Adam would hide a wrong 1/replicas)."""
    rng = np.random.default_rng(0)
    low = np.repeat(rng.uniform(0, 1, (1, 40, 40, 3)).astype(np.float32), 2, axis=0)
    normal = np.repeat(rng.uniform(0, 1, (1, 40, 40, 3)).astype(np.float32), 2, axis=0)
    batch = (low, normal)
    results = {}
    initial = None
    for name, strategy in (("one", tf.distribute.get_strategy()), ("two", two_cpu_strategy)):
        with strategy.scope():
            keras.utils.set_random_seed(5)
            model = _tiny_gan(darken_probability=0.0)
            if initial is None:
                initial = [w.numpy() for w in model.weights]
                trainable_before = [w.numpy() for w in model.trainable_variables]
            for variable, value in zip(model.weights, initial):
                variable.assign(value)
            model.compile(g_optimizer=keras.optimizers.SGD(0.1), d_optimizer=keras.optimizers.SGD(0.1))
        data = next(iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch))))
        logs = strategy.run(model.train_step, args=(data,))
        results[name] = (model, {key: float(strategy.reduce("MEAN", value, None)) for key, value in logs.items()})
    (one, one_logs), (two, two_logs) = results["one"], results["two"]
    assert set(one_logs) == TRACKED
    for key in TRACKED:
        assert two_logs[key] == pytest.approx(one_logs[key], rel=1e-5)
    moved = []
    for a, b, before in zip(one.trainable_variables, two.trainable_variables, trainable_before):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, err_msg=a.path)
        moved.append(np.abs(a.numpy() - before).max() > 1e-4)
    assert np.mean(moved) > 0.9  # nearly every variable took a visible step (not a no-op comparison)


def test_mixed_float16_step_uses_loss_scaling():
    rng = np.random.default_rng(1)
    batch = (rng.uniform(0, 0.3, (2, 36, 36, 3)).astype(np.float32), rng.uniform(0, 1, (2, 36, 36, 3)).astype(
        np.float32))
    with precision_policy("mixed_float16"):
        model = _tiny_gan()
        model.compile()
        assert isinstance(model.g_optimizer, keras.optimizers.LossScaleOptimizer)
        assert isinstance(model.d_optimizer, keras.optimizers.LossScaleOptimizer)
        assert model.generator.conv1_1.compute_dtype == "float16"
        kernel_before = model.generator.conv1_1.kernel.numpy()
        initial_scale = float(model.g_optimizer.dynamic_scale)
        for _ in range(3):
            logs = model.train_step(batch)
    assert all(logs[key].dtype == tf.float32 and np.isfinite(float(logs[key])) for key in TRACKED)
    assert model.generator.conv1_1.kernel.dtype == "float32"
    # The generator's first fp16 gradients overflow at the initial scale 2^15: those steps are skipped and the
    # scale halved (LossScaleOptimizer), then it trains; the discriminators step every time.
    assert float(model.g_optimizer.dynamic_scale) < initial_scale
    assert int(model.g_optimizer.iterations) in (1, 2) and int(model.d_optimizer.iterations) == 3
    assert np.abs(model.generator.conv1_1.kernel.numpy() - kernel_before).max() > 0


def test_missing_vgg_weights_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(ValueError, match="needs real VGG16 weights"):
        EnlightenGAN(vgg_weights=None)
    missing = tmp_path / "vgg16.weight"
    status = cli.main(["train", "enlightengan", "--low", str(tmp_path), "--normal", str(tmp_path),
                       "--vgg-weights", str(missing)])
    assert status == 1 and f"{missing}: no such VGG16 weights file" in capsys.readouterr().err


def _unpaired_folders(root, lows: int = 4, normals: int = 2, size=(40, 44)):
    for index in range(lows):
        save(root / "low" / f"{index}.png", coded_image(index, size) // 4)
    for index in range(normals):
        save(root / "normal" / f"{index}.png", coded_image(index + 5, size))
    return ["--low", str(root / "low"), "--normal", str(root / "normal")]


def test_a_failed_vgg_download_is_one_line_naming_the_flag(tmp_path, monkeypatch, capsys):
    """`llie train enlightengan` with the default --vgg-weights, when the ImageNet download fails (here: the
    loader raises what losses_tf.vgg makes of Keras' offline error; nothing is downloaded): one line that
    names --vgg-weights, exit 1."""
    offline = Exception("URL fetch failure on https://storage.googleapis.com/vgg16_notop.h5: None -- [Errno -3] "
                        "Temporary failure in name resolution")
    loads = []

    def unavailable(weights, *args, **kwargs):
        loads.append(weights)
        raise download_failure("vgg16", offline)

    monkeypatch.setattr(enlighten_model, "sfp_vgg16", unavailable)
    status = cli.main(["train", "enlightengan", *_unpaired_folders(tmp_path), "--batch-size", "2",
                       "--patch-size", "32", "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    parser = argparse.ArgumentParser()
    train_command.add_arguments(parser)
    assert loads == [parser.get_default("vgg_weights")]  # the default, not a path
    assert status == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert re.search(r"could not be downloaded \(URL fetch failure.*--vgg-weights PATH", err), err


def _train_argv(tmp_path, run_dir) -> list[str]:
    """`llie train enlightengan`: 2 epochs of 3 images in batches of 2 (as upstream, a full and a short batch per
    epoch: the default steps per epoch), lr decaying linearly from the first epoch, the torch >= 0.4 upsampling
    mode."""
    return ["train", "enlightengan", *_unpaired_folders(tmp_path, lows=3, normals=3),
            "--vgg-weights", str(reference_path("enlightengan", "losses.npz")), "--epochs", "2", "--lr", "2e-4",
            "--constant-epochs", "0", "--batch-size", "2", "--patch-size", "32",
            "--no-align-corners", "--run-dir", str(run_dir), "--verbose", "2"]


def test_llie_train_enlightengan_exits_0_with_logs_and_the_recorded_mode(tmp_path, monkeypatch):
    """Through the CLI: exit status 0, whole epochs of ceil(3 / 2) steps (no extra step at an epoch end), the six
    trackers and the lr per epoch, sample images, and final.weights.h5 carrying the --no-align-corners mode into
    `build_enhancer`."""
    run_dir = tmp_path / "run"
    recorder = record_steps(monkeypatch, fit, metric="g_loss")
    assert cli.main(_train_argv(tmp_path, run_dir)) == 0
    assert_whole_epochs(recorder, recorder.model.g_optimizer, epochs=2, steps=2)
    assert int(recorder.model.d_optimizer.iterations) == 4
    assert not (run_dir / "backup").exists()  # finished
    scalars = read_scalars(run_dir / "logs" / "train")
    for name in TRACKED:
        points = scalars[f"epoch_{name}"]
        assert sorted(points) == [1, 2] and np.isfinite(list(points.values())).all(), name
    np.testing.assert_allclose([scalars["epoch_lr"][step] for step in (1, 2)], [2e-4, 1e-4], rtol=1e-6)
    images = read_events(run_dir / "logs" / "images")
    assert sorted(images["samples/input"]) == [0]
    assert sorted(images["samples/output"]) == [1, 2]
    final = run_dir / "final.weights.h5"
    enhancer = build_enhancer(weights=final)
    assert enhancer.generator.align_corners is False and enhancer.license_notice is None
    assert read_weights_attributes(run_dir / "last.weights.h5") == {ALIGN_CORNERS_ATTRIBUTE: False,
                                                                    FROM_UPSTREAM_ATTRIBUTE: False}
    images = np.random.default_rng(2).uniform(0, 1, (1, 32, 48, 3)).astype(np.float32)
    assert np.abs(enhancer(images) - build_enhancer(align_corners=False)(images)).max() > 1e-4  # trained weights
    with pytest.raises(WeightsMismatchError, match="trained with align_corners=False"):
        build_enhancer(weights=final, align_corners=True)


class _CrashAtSecondEpoch(EpochLinearDecay):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("simulated crash")
        super().on_epoch_begin(epoch, logs)


@pytest.mark.slow
def test_llie_train_enlightengan_resumes_after_a_crash(tmp_path, monkeypatch, capsys):
    """A run killed after epoch 1 resumes at epoch 2 (not from scratch) on the second invocation, with the lr of
    epoch 2, and one scalar point per epoch."""
    run_dir = tmp_path / "run"
    argv = _train_argv(tmp_path, run_dir)
    monkeypatch.setattr(train_command, "lr_schedule", lambda args: _CrashAtSecondEpoch(args.lr, 0, args.epochs))
    with pytest.raises(RuntimeError, match="simulated crash"):
        cli.main(argv)
    assert (run_dir / "backup").is_dir() and (run_dir / "last.weights.h5").is_file()
    monkeypatch.undo()
    capsys.readouterr()
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "Epoch 2/2" in out and "Epoch 1/2" not in out  # resumed at the second epoch
    assert not (run_dir / "backup").exists()
    scalars = read_scalars(run_dir / "logs" / "train")  # fails on an epoch written twice
    for name in TRACKED:
        assert sorted(scalars[f"epoch_{name}"]) == [1, 2], name
    np.testing.assert_allclose([scalars["epoch_lr"][step] for step in (1, 2)], [2e-4, 1e-4], rtol=1e-6)
    assert build_enhancer(weights=run_dir / "final.weights.h5").generator.align_corners is False


def test_short_last_batch_never_reaches_two_replicas(tmp_path, two_cpu_strategy):
    """3 images in batches of 2: one device keeps upstream's short last batch of each epoch; on 2 replicas the
    batches are all full (running on into the next epoch), since a single image would leave one replica empty
    (NaN BatchNorm statistics and relativistic means). (A global batch below the replica count is refused by
    `train.fit.run_training`, for every trainer: tests/test_fit.py.)"""
    parser = argparse.ArgumentParser(prog="llie train enlightengan")
    TRAIN_COMMAND.add_arguments(parser)
    args = parser.parse_args([*_unpaired_folders(tmp_path, lows=3, normals=3), "--batch-size", "2",
                              "--patch-size", "32", "--vgg-weights", "unused"])
    single = training_dataset(args, replicas=1)
    assert epoch_layout(single) == EpochLayout(samples=3, batch_size=2, full_batches=False)
    assert [int(low.shape[0]) for low, _ in single.take(4)] == [2, 1, 2, 1]
    dataset = training_dataset(args, replicas=two_cpu_strategy.num_replicas_in_sync)
    assert epoch_layout(dataset) == EpochLayout(samples=3, batch_size=2, full_batches=True)
    assert [int(low.shape[0]) for low, _ in dataset.take(3)] == [2, 2, 2]
    with two_cpu_strategy.scope():
        model = _tiny_gan(darken_probability=0.0)
        model.compile(g_optimizer=keras.optimizers.SGD(0.01), d_optimizer=keras.optimizers.SGD(0.01))
    history = model.fit(dataset, epochs=1, steps_per_epoch=2, verbose=0).history  # the second crosses epochs
    assert all(np.isfinite(history[key]).all() for key in TRACKED), history
    assert all(np.isfinite(variable.numpy()).all() for variable in model.generator.non_trainable_variables)


def test_reflect_pad_of_statically_zero_amounts_adds_no_op():
    """Training crops (multiples of 16) need no padding: the input comes back as it is, no MirrorPad copy."""
    crops = tf.zeros((2, 32, 48, 3))
    assert padding_amounts(crops) == (0, 0, 0, 0) and reflect_pad(crops, (0, 0, 0, 0)) is crops
