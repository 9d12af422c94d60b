"""KinD converter: TF1 checkpoints → Keras networks, validation errors, `llie convert kind`, the registry entry."""

import shutil

import numpy as np
import pytest
import tensorflow as tf

from kind_tf.convert import convert_all, convert_checkpoints, load_network, load_tf1_checkpoint, missing_networks
from kind_tf.networks import DecomNet, IlluminationAdjustNet, RestorationNet
from kind_tf.pipeline import KinD
from kind_tf.spec import SPEC
from tests.reference import reference_path
from train.cli import main
from train.errors import NotAvailableError, WeightsMismatchError

FOLDERS = ("decom_net_train", "Restoration_net_train_synthetic", "illumination_adjust_net_train")


def _official(folder: str):
    return reference_path("kind", f"checkpoints/{folder}")


def _write_tf1_checkpoint(prefix, arrays: dict) -> None:
    """A name-based (TF1 Saver V2) checkpoint, as the original scripts write."""
    names = list(arrays)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(arrays[name]) for name in names])


@pytest.fixture(scope="module")
def adjust_arrays():
    reader = tf.train.load_checkpoint(str(_official("illumination_adjust_net_train")))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


@pytest.fixture
def adjust_net():
    net = IlluminationAdjustNet()
    net([np.zeros((1, 4, 4, 1), np.float32)] * 2)
    return net


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    """The official `checkpoint/` layout (symlinks), with the synthetic restoration set under its real name."""
    root = tmp_path_factory.mktemp("checkpoint")
    for folder in FOLDERS:
        (root / folder.replace("_synthetic", "")).symlink_to(_official(folder), target_is_directory=True)
    return root


def test_subset_conversion_loads_only_the_given_networks(adjust_arrays):
    kind = convert_checkpoints(adjust_dir=_official("illumination_adjust_net_train"))
    for name, variable in kind.adjust_net.tf1_variables().items():
        np.testing.assert_array_equal(variable.numpy(), adjust_arrays[name], err_msg=name)
    decom = tf.train.load_checkpoint(str(_official("decom_net_train")))
    kernel = kind.decom_net.tf1_variables()["DecomNet/g_conv1_1/weights"].numpy()
    assert not np.array_equal(kernel, decom.get_tensor("DecomNet/g_conv1_1/weights"))


def test_prefix_and_folder_without_checkpoint_file_both_load(tmp_path, adjust_net, adjust_arrays):
    load_tf1_checkpoint(adjust_net, _official("illumination_adjust_net_train") / "model.ckpt")
    np.testing.assert_array_equal(adjust_net.convs[0].kernel.numpy(),
                                  adjust_arrays["Illumination_adjust_net/en_conv_1/weights"])
    _write_tf1_checkpoint(tmp_path / "model.ckpt-200", {**adjust_arrays,
                                                        "Illumination_adjust_net/en_conv_1/weights/Adam": np.zeros(1)})
    load_tf1_checkpoint(adjust_net, tmp_path)  # no `checkpoint` file, one *.index; optimizer slots ignored


@pytest.mark.parametrize("change, message", [
    ("missing", "missing variable Illumination_adjust_net/en_conv_4/biases"),
    ("shape", r"variable Illumination_adjust_net/en_conv_2/weights has shape \(3, 3, 32, 16\), "
              r"expected \(3, 3, 32, 32\)"),
    ("unexpected", "unexpected variable Illumination_adjust_net/en_conv_5/weights"),
])
def test_mismatched_checkpoint_names_the_variable_and_loads_nothing(tmp_path, adjust_net, adjust_arrays,
                                                                    change, message):
    arrays = dict(adjust_arrays)
    if change == "missing":
        del arrays["Illumination_adjust_net/en_conv_4/biases"]
    elif change == "shape":
        arrays["Illumination_adjust_net/en_conv_2/weights"] = np.zeros((3, 3, 32, 16), np.float32)
    else:
        arrays["Illumination_adjust_net/en_conv_5/weights"] = np.zeros((3, 3, 1, 1), np.float32)
    _write_tf1_checkpoint(tmp_path / "model.ckpt", arrays)
    before = [variable.numpy() for variable in adjust_net.weights]
    with pytest.raises(WeightsMismatchError, match=message):
        load_tf1_checkpoint(adjust_net, tmp_path / "model.ckpt")
    for old, variable in zip(before, adjust_net.weights):
        np.testing.assert_array_equal(old, variable.numpy())


def test_wrong_network_and_non_checkpoints_are_rejected(tmp_path, adjust_net):
    with pytest.raises(WeightsMismatchError, match="holds no 'Illumination_adjust_net' variables"):
        load_tf1_checkpoint(adjust_net, _official("decom_net_train"))
    with pytest.raises(WeightsMismatchError, match="found 0"):
        load_tf1_checkpoint(adjust_net, tmp_path)
    with pytest.raises(WeightsMismatchError, match="nothing.ckpt: no TF1 checkpoint"):
        load_tf1_checkpoint(adjust_net, tmp_path / "nothing.ckpt")


def test_cli_converts_the_official_layout_and_the_enhancer_loads_it(tmp_path, checkpoint_dir, capsys):
    out = tmp_path / "kind.weights.h5"
    assert main(["convert", "kind", "--checkpoint-dir", str(checkpoint_dir), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    image = np.random.default_rng(0).random((1, 20, 28, 3), np.float32) * 0.25
    ratio = np.array([3.0], np.float32)
    from_file = SPEC.build_enhancer(weights=str(out))
    from_folder = SPEC.build_enhancer(weights=str(checkpoint_dir))  # the official folder, converted on the fly
    np.testing.assert_array_equal(from_file(image, ratio=ratio).numpy(), from_folder(image, ratio=ratio).numpy())
    restoration = from_file.restoration_net.tf1_variables()["Restoration_net/de_conv5_2/weights"].numpy()
    stored = tf.train.load_checkpoint(str(_official("Restoration_net_train_synthetic")))
    np.testing.assert_array_equal(restoration, stored.get_tensor("Restoration_net/de_conv5_2/weights"))


def test_cli_names_missing_networks_and_per_net_flags_fill_them(tmp_path, capsys):
    partial = tmp_path / "checkpoint"
    partial.mkdir()
    shutil.copytree(_official("decom_net_train"), partial / "decom_net_train")
    out = tmp_path / "kind.weights.h5"
    assert main(["convert", "kind", "--checkpoint-dir", str(partial), "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert "restoration, adjust" in error and "Restoration_net_train" in error and not out.exists()
    assert "--allow-partial converts the others" in error
    assert main(["convert", "kind", "--checkpoint-dir", str(partial), "--out", str(out),
                 "--restoration", str(_official("Restoration_net_train_synthetic")),
                 "--adjust", str(_official("illumination_adjust_net_train"))]) == 0
    assert out.is_file()
    with pytest.raises(SystemExit):
        main(["convert", "kind", "--checkpoint-dir", str(partial), "--out", str(tmp_path / "kind.h5")])


@pytest.fixture
def official_repo_layout(tmp_path):
    """What the official repository ships: checkpoint/{decom_net_train, illumination_adjust_net_train} only."""
    root = tmp_path / "checkpoint"
    root.mkdir()
    for folder in ("decom_net_train", "illumination_adjust_net_train"):
        (root / folder).symlink_to(_official(folder), target_is_directory=True)
    return root


def test_allow_partial_converts_the_official_subset_and_marks_the_file(tmp_path, official_repo_layout, capsys):
    out = tmp_path / "kind_partial.weights.h5"
    assert main(["convert", "kind", "--checkpoint-dir", str(official_repo_layout), "--out", str(out),
                 "--allow-partial"]) == 0
    captured = capsys.readouterr()
    assert f"decom: loaded {official_repo_layout / 'decom_net_train'}" in captured.out
    assert f"adjust: loaded {official_repo_layout / 'illumination_adjust_net_train'}" in captured.out
    assert "restoration: MISSING" in captured.out and f"{out} lacks restoration" in captured.err
    assert missing_networks(out) == ("restoration",)
    # The converted networks are the authors' weights; the file refuses to enhance, but serves as --decom-weights.
    kind = KinD()
    kind.build()
    kind.load_weights(str(out))
    for net, folder in ((kind.decom_net, "decom_net_train"), (kind.adjust_net, "illumination_adjust_net_train")):
        stored = tf.train.load_checkpoint(str(_official(folder)))
        for name, variable in net.tf1_variables().items():
            np.testing.assert_array_equal(variable.numpy(), stored.get_tensor(name), err_msg=name)
    with pytest.raises(WeightsMismatchError, match="lacks restoration, so it cannot enhance"):
        SPEC.build_enhancer(weights=str(out))
    decom = DecomNet()
    decom(np.zeros((1, 4, 4, 3), np.float32))
    load_network(decom, out)
    for got, want in zip(decom.get_weights(), kind.decom_net.get_weights()):
        np.testing.assert_array_equal(got, want)
    restoration = RestorationNet()
    restoration.build()
    with pytest.raises(WeightsMismatchError, match="kind_partial.weights.h5: converted with --allow-partial "
                                                   "without the Restoration_net"):
        load_network(restoration, out)
    # The same file as a per-net source of `llie convert kind`: its adjust net, the others from elsewhere.
    completed = tmp_path / "kind_completed.weights.h5"
    assert main(["convert", "kind", "--decom", str(out), "--adjust", str(out), "--restoration",
                 str(_official("Restoration_net_train_synthetic")), "--out", str(completed)]) == 0
    assert missing_networks(completed) == ()
    again = KinD()
    again.build()
    again.load_weights(str(completed))
    for got, want in zip(again.adjust_net.get_weights(), kind.adjust_net.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert main(["convert", "kind", "--restoration", str(out), "--checkpoint-dir", str(official_repo_layout),
                 "--out", str(tmp_path / "refused.weights.h5")]) == 1
    assert "converted with --allow-partial without the Restoration_net" in capsys.readouterr().err
    assert main(["convert", "kind", "--out", str(tmp_path / "none.weights.h5"), "--allow-partial"]) == 1
    assert "no network to convert" in capsys.readouterr().err


def test_a_trained_network_file_completes_the_official_subset(tmp_path, official_repo_layout, capsys):
    """The Restoration-Net the official repo lacks, from a Keras file (here: the synthetic one, saved as
    `llie train kind-restoration` saves its final.weights.h5), gives the same enhancer as the full folder."""
    full = convert_all(reference_path("kind", "checkpoints"))
    restoration = tmp_path / "final.weights.h5"
    full.restoration_net.save_weights(str(restoration))
    out = tmp_path / "kind.weights.h5"
    assert main(["convert", "kind", "--checkpoint-dir", str(official_repo_layout), "--restoration",
                 str(restoration), "--out", str(out)]) == 0
    assert f"restoration: loaded {restoration}" in capsys.readouterr().out
    assert missing_networks(out) == ()
    image = np.random.default_rng(1).random((1, 20, 28, 3), np.float32) * 0.25
    np.testing.assert_array_equal(SPEC.build_enhancer(weights=str(out))(image).numpy(), full(image).numpy())
    adjust = IlluminationAdjustNet()
    adjust([np.zeros((1, 4, 4, 1), np.float32)] * 2)
    adjust.save_weights(str(tmp_path / "adjust.weights.h5"))
    with pytest.raises(WeightsMismatchError, match="adjust.weights.h5: not Restoration_net or KinD weights"):
        convert_checkpoints(restoration_dir=tmp_path / "adjust.weights.h5")


def test_synthetic_restoration_folder_is_named_and_warned_about(tmp_path, capsys):
    checkpoints = reference_path("kind", "checkpoints")
    assert main(["convert", "kind", "--checkpoint-dir", str(checkpoints), "--out",
                 str(tmp_path / "kind.weights.h5")]) == 0
    captured = capsys.readouterr()
    for folder in FOLDERS:
        assert f"loaded {checkpoints / folder}" in captured.out
    warnings = [line for line in captured.err.splitlines() if line.startswith("llie convert kind: warning: ")]
    assert len(warnings) == 1 and "SYNTHETIC" in warnings[0] and "Restoration_net_train_synthetic" in warnings[0]


def test_enhancer_needs_user_converted_weights(tmp_path):
    assert SPEC.presets == () and SPEC.default_preset is None
    assert [command.name for command in SPEC.train_commands] == ["kind-decom", "kind-restoration", "kind-adjust",
                                                             "kind"]
    assert [(extra.name, extra.default) for extra in SPEC.extra_inputs] == [("ratio", 5.0)]
    with pytest.raises(NotAvailableError, match="llie convert kind"):
        SPEC.build_enhancer()
    with pytest.raises(NotAvailableError, match="llie convert kind"):
        SPEC.build_enhancer(preset="lol")
    with pytest.raises(WeightsMismatchError, match="missing.weights.h5: no such weights file"):
        SPEC.build_enhancer(weights=str(tmp_path / "missing.weights.h5"))
    wrong = tmp_path / "adjust_only.weights.h5"
    net = IlluminationAdjustNet()
    net([np.zeros((1, 4, 4, 1), np.float32)] * 2)
    net.save_weights(wrong)
    with pytest.raises(WeightsMismatchError, match="adjust_only.weights.h5: not KinD weights"):
        SPEC.build_enhancer(weights=str(wrong))
