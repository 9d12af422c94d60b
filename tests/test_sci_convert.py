"""SCI converter: the authors' state dicts (.pt and .npz twins) → Keras, its validation, CLI and presets."""

import keras
import numpy as np
import pytest

from sci_tf.convert import convert_file, load_state_dict, read_state_dict
from sci_tf.enhancer import SCIEnhancer
from sci_tf.model import SCI
from sci_tf.presets import LICENSE_FILE, LICENSE_NOTICE, PRESETS, WEIGHTS_DIR, preset_weights_path
from sci_tf.spec import build_enhancer
from tests.reference import reference, reference_path
from train.callbacks import save_weights_atomically
from train.cli import main
from train.errors import WeightsMismatchError


@pytest.fixture(scope="module")
def medium_state():
    return read_state_dict(reference_path("sci", "weights/medium_state_dict.npz"))


def _weights_equal(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


def test_state_dict_layout_and_aliases(medium_state):
    assert len(medium_state) == 83
    model = SCI()
    load_state_dict(model, medium_state)  # every key used or recognised (aliases, num_batches_tracked)
    kernel = medium_state["calibrate.convs.3.weight"]  # OIHW
    np.testing.assert_array_equal(model.calibrate.block_second.conv.kernel.numpy(), kernel.transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(model.enhance.block.norm.moving_variance.numpy(),
                                  medium_state["enhance.conv.1.running_var"])


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.pop("enhance.out_conv.0.bias"), r"missing tensor\(s\) enhance.out_conv.0.bias"),
    (lambda s: s.update({"enhance.out_conv.0.weight": np.zeros((4, 3, 3, 3), np.float32)}),
     r"tensor enhance.out_conv.0.weight has shape \(4, 3, 3, 3\), expected \(3, 3, 3, 3\)"),
    (lambda s: s.update({"enhance.extra.weight": np.zeros(3, np.float32)}), r"unexpected tensor\(s\) enhance.extra"),
    (lambda s: s.update({"calibrate.blocks.1.3.bias": np.ones(16, np.float32)}),
     "tensor calibrate.blocks.1.3.bias should repeat calibrate.convs.3.bias"),
])
def test_mismatches_name_the_tensor_and_assign_nothing(medium_state, edit, message):
    state = dict(medium_state)
    edit(state)
    model = SCI()
    model.build()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(WeightsMismatchError, match=message):
        load_state_dict(model, state, source="medium.pt")
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_enhancer_ignores_calibrate_but_full_model_needs_it(medium_state):
    enhance_only = {k: v for k, v in medium_state.items() if k.startswith("enhance.")}
    enhancer = SCIEnhancer()
    load_state_dict(enhancer, medium_state)  # calibrate.* ignored, as Finetunemodel does
    with pytest.raises(WeightsMismatchError, match=r"missing tensor\(s\) calibrate\.convs\.0\.bias"):
        load_state_dict(SCI(), enhance_only)


def test_pt_file_equals_npz_twin(medium_state):
    # torch.load when torch is installed, else the torch-free reader (CI).
    from_pt = read_state_dict(reference_path("sci", "weights/medium.pt"))
    assert sorted(from_pt) == sorted(medium_state)
    for name, value in medium_state.items():
        np.testing.assert_array_equal(from_pt[name], value, err_msg=name)


def test_convert_file_and_cli(tmp_path):
    data = reference("sci", "pretrained_easy")
    source = reference_path("sci", "weights/easy_state_dict.npz")
    enhancer_file = convert_file(source, tmp_path / "easy.weights.h5")
    enhancer = SCIEnhancer.from_weights(enhancer_file)
    np.testing.assert_allclose(enhancer(data["input_1"]), data["enhanced_1"], atol=1e-5)

    assert main(["convert", "sci", str(source), "--out", str(tmp_path / "full.weights.h5"), "--full"]) == 0
    full = SCI()
    full.build()
    full.load_weights(str(tmp_path / "full.weights.h5"))
    outputs = full(data["input_0"], training=False)
    np.testing.assert_allclose(np.stack(outputs["attlist"]), data["net_eval/attlist_0"], atol=1e-5)

    with pytest.raises(SystemExit):
        main(["convert", "sci", str(source), "--out", str(tmp_path / "easy.h5")])
    assert main(["convert", "sci", str(tmp_path / "absent.pt"), "--out", str(tmp_path / "x.weights.h5")]) == 1
    # A full SCI file also serves the enhancer (same `enhance/...` layout; the calibration part is unused).
    assert _weights_equal(SCIEnhancer.from_weights(tmp_path / "full.weights.h5"), enhancer)
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    other.save_weights(str(tmp_path / "other.weights.h5"))
    with pytest.raises(WeightsMismatchError, match="other.weights.h5: not SCIEnhancer weights"):
        SCIEnhancer.from_weights(tmp_path / "other.weights.h5")


def test_the_authors_licence_travels_with_their_weights(tmp_path, capsys):
    """`llie convert sci` writes the MIT notice beside its output and records the origin in the file, so the
    enhancer of a converted file, a preset, an original state dict, and their fused forms all carry the notice
    (which `llie export` ships); weights of one's own training carry none."""
    source = reference_path("sci", "weights/easy_state_dict.npz")
    out = tmp_path / "converted" / "easy.weights.h5"
    assert main(["convert", "sci", str(source), "--out", str(out)]) == 0
    notice = out.parent / LICENSE_FILE
    assert notice.read_text() == LICENSE_NOTICE.read_text() and f"its licence {notice}" in capsys.readouterr().out
    for enhancer in (SCIEnhancer.from_weights(out), SCIEnhancer.from_preset("easy"),
                     build_enhancer(weights=str(source), fused=False), build_enhancer(preset="easy")):
        assert enhancer.license_notice == LICENSE_NOTICE and enhancer.fuse().license_notice == LICENSE_NOTICE
    own = save_weights_atomically(SCIEnhancer.from_weights(out), tmp_path / "trained.weights.h5")
    assert SCIEnhancer.from_weights(own).license_notice is None and SCIEnhancer().license_notice is None
    assert SCIEnhancer.from_config(SCIEnhancer.from_preset("easy").get_config()).license_notice == LICENSE_NOTICE


def test_convert_file_replaces_the_output_atomically(tmp_path, monkeypatch):
    source = reference_path("sci", "weights/easy_state_dict.npz")
    target = convert_file(source, tmp_path / "easy.weights.h5")
    before = target.read_bytes()

    def crash_midway(model, path, *args, **kwargs):
        with open(path, "wb") as half_written:
            half_written.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(SCIEnhancer, "save_weights", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        convert_file(source, target)
    assert target.read_bytes() == before  # the previous file is intact...
    assert sorted(p.name for p in tmp_path.iterdir()) == ["easy.weights.h5"]  # ...and no temp file is left


def test_shipped_presets_are_the_converted_authors_weights():
    assert (WEIGHTS_DIR / LICENSE_FILE).read_text().startswith("MIT License")
    assert "Copyright (c) 2022 Tengyu Ma" in (WEIGHTS_DIR / LICENSE_FILE).read_text()
    for name in PRESETS:
        shipped = SCIEnhancer.from_weights(preset_weights_path(name))
        converted = SCIEnhancer()
        load_state_dict(converted, read_state_dict(reference_path("sci", f"weights/{name}_state_dict.npz")))
        assert _weights_equal(shipped, converted), name
