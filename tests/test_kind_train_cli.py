"""`llie train kind-decom | kind-restoration | kind-adjust | kind` (kind_tf/train_commands.py) on a tiny synthetic
LOL folder: run-dir layout, logs, weights that `llie enhance --model kind` loads, and the data/schedule helpers."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kind_tf import train_commands
from kind_tf.convert import convert_checkpoints, load_network
from kind_tf.layers import stretch_whole_image
from kind_tf.networks import DecomNet
from kind_tf.pipeline import KinD
from kind_tf.train_commands import STAGES as TRAIN_STAGES
from kind_tf.train_commands import restoration_learning_rate
from tests.enhancer_testing import read_events, read_scalars
from tests.reference import reference_path
from tests.fit_testing import assert_whole_epochs, record_steps
from train import registry
from train.cli import build_parser, main
from train.data import paired_dataset
from train.errors import WeightsMismatchError
from train.fit import FINAL_WEIGHTS
from train.io import read_image
from train.synthetic import make_synthetic_lol

TINY = ("--epochs", "1", "--batch-size", "2", "--patch-size", "16", "--verbose", "0")
STAGES = ("decom", "restoration", "adjust")
EARLY_MILESTONE = ("--lr-milestones", "-1", "5000", "5000")  # epoch 0 > -1: restoration trains at lr / 2


@pytest.fixture(scope="module")
def lol(tmp_path_factory) -> Path:
    """A 4-pair LOL-v1 folder (our485/{low,high}, 40×48) darkened from smooth coloured photos by train.synthetic."""
    root = tmp_path_factory.mktemp("kind_lol")
    y, x = np.mgrid[0:40, 0:48] / 40.0
    for index in range(4):
        photo = np.stack([0.5 + 0.4 * np.sin(3 * x + index + c) * np.cos(2 * y + c) for c in range(3)], -1)
        (root / "photos").mkdir(exist_ok=True)
        Image.fromarray((photo * 255).astype(np.uint8)).save(root / "photos" / f"{index}.png")
    make_synthetic_lol(root / "photos", root / "lol", eval_fraction=0.0)
    return root / "lol"


@pytest.fixture(scope="module")
def kind_run(lol, tmp_path_factory) -> Path:
    """`llie train kind` with every stage one step long; restoration's first lr milestone moved before epoch 0."""
    run_dir = tmp_path_factory.mktemp("kind_run")
    assert main(["train", "kind", "--data", str(lol), *TINY, "--steps-per-epoch", "1", "--run-dir",
                 str(run_dir), *EARLY_MILESTONE]) == 0
    return run_dir


def test_restoration_learning_rate_follows_the_script():
    # lr_schedule(epoch): lr while epoch <= 800, lr/2 <= 1250, lr/4 <= 1500, then lr/10.
    got = [restoration_learning_rate(epoch, 1e-4) for epoch in (0, 800, 801, 1250, 1251, 1500, 1501)]
    np.testing.assert_allclose(got, [1e-4, 1e-4, 5e-5, 5e-5, 2.5e-5, 2.5e-5, 1e-5])
    assert restoration_learning_rate(5, 1.0, (2, 3, 4), (3.0, 5.0, 7.0)) == 1.0 / 7.0


# The original scripts' values (github.com/zhangyhuaee/KinD): batch_size, patch_size, epoch, learning_rate and
# eval_every_epoch at the top of each; reflectance_restoration_net_train.py's lr_schedule(epoch) returns lr while
# epoch <= 800, lr/2 while <= 1250, lr/4 while <= 1500, then lr/10; adjustment_net_train.py swaps low/high when
# np.random.randint(0, 2) == 0; all use tf.train.AdamOptimizer (ε 1e-8).
ORIGINAL_DEFAULTS = {
    "decom": {"epochs": 2000, "batch_size": 10, "patch_size": 48, "lr": 1e-4, "sample_every": 200},
    "restoration": {"epochs": 1000, "batch_size": 4, "patch_size": 384, "lr": 1e-4, "sample_every": 50,
                    "lr_milestones": (800, 1250, 1500), "lr_divisors": (2.0, 4.0, 10.0), "target_exponent": 1.2},
    "adjust": {"epochs": 2000, "batch_size": 10, "patch_size": 48, "lr": 1e-4, "sample_every": 200,
               "swap_probability": 0.5},
}


def _flags(args, stage: str) -> dict:
    """The values of the flags in ORIGINAL_DEFAULTS[stage] (lists as tuples)."""
    return {flag: tuple(getattr(args, flag)) if isinstance(getattr(args, flag), list) else getattr(args, flag)
            for flag in ORIGINAL_DEFAULTS[stage]}


@pytest.mark.parametrize("stage", STAGES)
def test_stage_commands_default_to_the_original_scripts(stage, tmp_path):
    argv = ["train", f"kind-{stage}", "--data", str(tmp_path), "--run-dir", str(tmp_path / stage)]
    if stage != "decom":
        argv += ["--decom-weights", str(reference_path("kind", "checkpoints"))]
    args = build_parser().parse_args(argv)
    assert _flags(args, stage) == ORIGINAL_DEFAULTS[stage]
    trainer = next(s for s in TRAIN_STAGES if s.name == stage).build(args)
    assert trainer.optimizer.epsilon == 1e-8 and float(trainer.optimizer.learning_rate) == pytest.approx(1e-4)
    assert (trainer.optimizer.beta_1, trainer.optimizer.beta_2) == (0.9, 0.999)
    if stage == "adjust":
        assert trainer.swap_probability == 0.5


@pytest.mark.parametrize("command, expected", [
    ("kind-decom", ["number of epochs (default 2000)", "sample images (default 200)", "pixels (default 48)"]),
    ("kind-restoration", ["number of epochs (default 1000)", "sample images (default 50)"]),
    ("kind", ["number of epochs (default each stage's own, see below)", "sample images (default each stage's own",
              "Per-stage defaults", "decom 2000/10/48/0.0001/200", "restoration 1000/4/384/0.0001/50"]),
])
def test_help_shows_each_commands_own_defaults(command, expected, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in expected:
        assert phrase in text
    assert "None" not in text


def test_kind_command_runs_each_stage_with_its_original_defaults(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(train_commands, "run_stage", lambda args, stage: seen.setdefault(stage.name, args))
    monkeypatch.setattr(train_commands, "convert_checkpoints", lambda *paths: KinD())
    monkeypatch.setattr(train_commands, "save_weights_atomically", lambda model, path: path)
    args = build_parser().parse_args(["train", "kind", "--data", str(tmp_path), "--run-dir", str(tmp_path)])
    train_commands.run_kind(args)
    assert list(seen) == list(STAGES)
    for stage, args in seen.items():
        assert _flags(args, stage) == ORIGINAL_DEFAULTS[stage]
    assert seen["restoration"].decom_weights == str(tmp_path / "decom" / FINAL_WEIGHTS)


def test_whole_images_are_stretched_before_the_crop(lol):
    """load_images stretches each whole image; a crop of it keeps that image's scale (not its own min/max)."""
    low_path = sorted((lol / "our485" / "low").glob("*.png"))[0]
    whole = read_image(low_path)
    stretched = (whole - whole.min()) / max(whole.max() - whole.min(), 0.001)
    dataset = paired_dataset(lol, patch_size=16, batch_size=4, augment=False, shuffle=False, repeat=False,
                             prepare=stretch_whole_image)
    patch = next(iter(dataset))[0].numpy()[0]
    windows = np.lib.stride_tricks.sliding_window_view(stretched, (16, 16, 3))[..., 0, :, :, :]
    assert np.abs(windows - patch).max(axis=(-3, -2, -1)).min() < 1e-6
    assert patch.min() > 0.0 or patch.max() < 1.0  # a per-patch stretch would span exactly [0, 1]


def test_kind_decom_command_writes_weights_and_logs(lol, tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "decom"
    recorder = record_steps(monkeypatch, train_commands)
    assert main(["train", "kind-decom", "--data", str(lol), *TINY, "--epochs", "2", "--batch-size", "3",
                 "--verbose", "2", "--run-dir", str(run_dir)]) == 0
    assert "1/1 - " in capsys.readouterr().out  # default steps per epoch: 4 pairs // 3 (the scripts' numBatch)
    assert_whole_epochs(recorder, recorder.model.optimizer, epochs=2, steps=1)
    decom = DecomNet()
    decom(np.zeros((1, 4, 4, 3), np.float32))
    before = [np.array(w) for w in decom.get_weights()]
    decom.load_weights(str(run_dir / FINAL_WEIGHTS))
    assert any(np.abs(a - b).max() > 0 for a, b in zip(decom.get_weights(), before))
    scalars = set(read_scalars(run_dir / "logs" / "train"))
    assert {"epoch_loss", "epoch_recon_loss_low", "epoch_recon_loss_high", "epoch_equal_R_loss",
            "epoch_i_mutual_loss", "epoch_i_input_mutual_loss_high", "epoch_i_input_mutual_loss_low",
            "epoch_learning_rate"} <= scalars
    assert {"samples/input", "samples/output"} <= set(read_events(run_dir / "logs" / "images"))


def test_kind_command_trains_every_stage_into_its_own_folder(kind_run):
    for stage in STAGES:
        assert (kind_run / stage / FINAL_WEIGHTS).is_file()
        assert list((kind_run / stage / "logs" / "train").glob("events.out.tfevents.*"))
        assert not (kind_run / stage / "backup").exists()  # finished
    assert "epoch_ssim_loss" in read_scalars(kind_run / "restoration" / "logs" / "train")
    assert "epoch_square_loss" in read_scalars(kind_run / "adjust" / "logs" / "train")
    learning_rates = {stage: read_scalars(kind_run / stage / "logs" / "train")["epoch_learning_rate"][1]
                      for stage in STAGES}  # epoch 1's
    np.testing.assert_allclose(list(learning_rates.values()), [1e-4, 5e-5, 1e-4], rtol=1e-6)


def test_kind_weights_load_in_the_enhancer(kind_run):
    enhancer = registry.get("kind").build_enhancer(weights=str(kind_run / "kind.weights.h5"))
    image = np.random.default_rng(0).uniform(0.0, 0.3, (1, 24, 32, 3)).astype(np.float32)
    enhanced = np.asarray(enhancer(image))
    assert enhanced.shape == image.shape and 0.0 <= enhanced.min() and enhanced.max() <= 1.0
    stages = [kind_run / stage / FINAL_WEIGHTS for stage in STAGES]
    np.testing.assert_array_equal(enhanced, np.asarray(convert_checkpoints(*stages)(image)))
    fresh = KinD()
    fresh.build()
    assert np.abs(enhanced - np.asarray(fresh(image))).max() > 1e-3


def test_rerun_keeps_finished_stages(kind_run, lol, capsys):
    stamps = {stage: (kind_run / stage / FINAL_WEIGHTS).stat().st_mtime_ns for stage in STAGES}
    assert main(["train", "kind", "--data", str(lol), *TINY, "--steps-per-epoch", "1", "--run-dir",
                 str(kind_run), *EARLY_MILESTONE]) == 0
    assert capsys.readouterr().out.count("not retrained") == 3
    assert stamps == {stage: (kind_run / stage / FINAL_WEIGHTS).stat().st_mtime_ns for stage in STAGES}


def test_frozen_stages_need_a_decom_net(lol):
    for command in ("kind-restoration", "kind-adjust"):
        with pytest.raises(SystemExit) as exit_info:
            main(["train", command, "--data", str(lol)])
        assert exit_info.value.code == 2


def test_decom_weights_accept_every_format(kind_run, tmp_path):
    def fresh() -> DecomNet:
        net = DecomNet()
        net(np.zeros((1, 4, 4, 3), np.float32))
        return net

    trained = fresh()
    trained.load_weights(str(kind_run / "decom" / FINAL_WEIGHTS))
    from_kind = fresh()
    load_network(from_kind, kind_run / "kind.weights.h5")
    for got, want in zip(from_kind.get_weights(), trained.get_weights()):
        np.testing.assert_array_equal(got, want)
    checkpoints = reference_path("kind", "checkpoints")
    from_root, from_folder = fresh(), fresh()
    load_network(from_root, checkpoints)
    load_network(from_folder, checkpoints / "decom_net_train")
    for got, want in zip(from_root.get_weights(), from_folder.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert np.abs(from_root.get_weights()[0] - trained.get_weights()[0]).max() > 0
    (tmp_path / "junk.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(WeightsMismatchError, match="junk.weights.h5"):
        load_network(fresh(), tmp_path / "junk.weights.h5")
    with pytest.raises(WeightsMismatchError, match="missing.weights.h5"):
        load_network(fresh(), tmp_path / "missing.weights.h5")
