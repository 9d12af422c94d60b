"""EnlightenGAN weight conversion: the official checkpoint format (.pth with `module.` keys, legacy
serialisation, no num_batches_tracked), .npz twins, validation errors, `llie convert enlightengan` (the
upsampling mode kept with the weights, the licence beside them), the bench's fixture loader and the registry
entry."""

import numpy as np
import pytest
import tensorflow as tf

from enlighten_tf.convert import generator_layers, load_generator, load_vgg16
from enlighten_tf.discriminators import LocalDiscriminator
from enlighten_tf.enhancer import LICENSE_NOTICE, EnlightenGANEnhancer, build_enhancer
from enlighten_tf.generator import Generator
from losses_tf.enlighten import sfp_vgg16
from tests.enlighten_testing import calibrated_state
from tests.reference import reference, reference_path
from train import cli, registry
from train.errors import NotAvailableError, WeightsMismatchError
from train.torch_weights import assign_state_dict, read_state_dict

ATOL = 1e-5


@pytest.fixture(scope="module")
def fixture():
    return reference("enlightengan", "generator_seed0")


@pytest.fixture(scope="module")
def checkpoint_state():
    """The README's `seed0_net_G_A.pth` content: `w/` + `calib/` running stats, `module.` keys, no
    num_batches_tracked."""
    return calibrated_state("module.")


@pytest.fixture(scope="module")
def generator():
    return Generator(align_corners=True)


def _assert_calibrated_output(generator, fixture):
    output, latent = generator((fixture["input"], fixture["gray"]), training=False)
    np.testing.assert_allclose(output, fixture["output_calib_acT"], atol=ATOL)
    np.testing.assert_allclose(latent, fixture["latent_calib_acT"], atol=ATOL)


def test_reads_official_pth_checkpoint(tmp_path, fixture, checkpoint_state, generator):
    torch = pytest.importorskip("torch")
    path = tmp_path / "200_net_G_A.pth"
    torch.save({name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in checkpoint_state.items()},
               path, _use_new_zipfile_serialization=False)
    state = read_state_dict(path)
    assert set(state) == {name[len("module."):] for name in checkpoint_state}
    _assert_calibrated_output(load_generator(generator, path), fixture)


def test_reads_npz_twin_with_module_prefix(tmp_path, fixture, checkpoint_state, generator):
    path = tmp_path / "net_G_A.npz"
    np.savez(path, **checkpoint_state)
    _assert_calibrated_output(load_generator(generator, path), fixture)


def test_missing_unexpected_and_misshaped_tensors_are_named(generator):
    state = calibrated_state()
    layers = generator_layers(generator)
    without = {name: value for name, value in state.items() if name != "bn5_2.running_var"}
    with pytest.raises(WeightsMismatchError, match=r"ckpt: missing tensor\(s\) bn5_2.running_var"):
        assign_state_dict(layers, without, source="ckpt")
    with pytest.raises(WeightsMismatchError, match=r"unexpected tensor\(s\) bn9_2.weight"):
        assign_state_dict(layers, {**state, "bn9_2.weight": np.ones(32, np.float32)}, source="ckpt")
    wrong = {**state, "conv10.weight": np.zeros((3, 64, 1, 1), np.float32)}
    message = r"conv10.weight has shape \(3, 64, 1, 1\), expected \(3, 32, 1, 1\)"
    with pytest.raises(WeightsMismatchError, match=message):
        assign_state_dict(layers, wrong, source="ckpt")


def test_vgg16_loader_ignores_unused_convs_and_transposes(tmp_path):
    rng = np.random.default_rng(0)
    extractor = sfp_vgg16(None)
    state = {}
    for layer in extractor.layers[1:]:
        if hasattr(layer, "kernel"):
            name = f"conv{layer.name[5]}_{layer.name[-1]}"
            h, w, i, o = layer.kernel.shape
            state[f"{name}.weight"] = rng.normal(size=(o, i, h, w)).astype(np.float32)
            state[f"{name}.bias"] = rng.normal(size=o).astype(np.float32)
    state["conv5_3.weight"] = np.zeros((512, 512, 3, 3), np.float32)  # upstream has it; relu5_1 does not need it
    path = tmp_path / "vgg16.npz"
    np.savez(path, **state)
    load_vgg16(extractor, path)
    kernel = extractor.get_layer("block4_conv2").kernel.numpy()
    np.testing.assert_array_equal(kernel, state["conv4_2.weight"].transpose(2, 3, 1, 0))


def test_llie_convert_writes_enhancer_weights_and_licence(tmp_path, fixture, checkpoint_state):
    source = tmp_path / "net_G_A.npz"
    np.savez(source, **checkpoint_state)
    out = tmp_path / "models" / "enlightengan.weights.h5"
    assert cli.main(["convert", "enlightengan", str(source), "--out", str(out)]) == 0
    enhancer = build_enhancer(weights=out)
    assert enhancer.generator.align_corners is True  # the released checkpoint's mode, recorded in the file
    x = (fixture["input"] + 1) / 2
    want = np.clip((fixture["output_calib_acT"] + 1) / 2, 0, 1)
    np.testing.assert_allclose(enhancer(x), want, atol=ATOL)
    # An upstream file works directly too (converted on the fly).
    np.testing.assert_allclose(build_enhancer(weights=source)(x), want, atol=ATOL)
    notice = out.parent / "LICENSE-EnlightenGAN-BSD2.txt"
    assert enhancer.license_notice == LICENSE_NOTICE and notice.read_text() == LICENSE_NOTICE.read_text()


def test_licence_notice_reproduces_both_upstream_sections():
    text = LICENSE_NOTICE.read_text()
    bsd2, dcgan = text.split("-- LICENSE FOR DCGAN --")
    assert "BSD 2-Clause License" in bsd2 and "Copyright (c) 2019, Yifan Jiang and Zhangyang Wang" in bsd2
    assert "For dcgan.torch software" in dcgan and "Copyright (c) 2015, Facebook, Inc." in dcgan
    assert "Neither the name Facebook nor the names of its contributors" in dcgan
    for section in (bsd2, dcgan):  # each keeps its conditions and its disclaimer
        assert "Redistributions in binary form must reproduce the above copyright notice" in section
        assert "EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE" in section


def test_convert_with_an_explicit_upsampling_mode(tmp_path, fixture, checkpoint_state):
    """A checkpoint trained on torch >= 0.4 (align_corners=False): `--no-align-corners` is kept with the
    weights, and enhance/export (which build the enhancer from the file alone) use it."""
    source = tmp_path / "net_G_A.npz"
    np.savez(source, **checkpoint_state)
    out = tmp_path / "modern.weights.h5"
    assert cli.main(["convert", "enlightengan", str(source), "--out", str(out), "--no-align-corners"]) == 0
    enhancer = registry.get("enlightengan").build_enhancer(weights=str(out))
    assert enhancer.generator.align_corners is False
    x = (fixture["input"] + 1) / 2
    want = np.clip((fixture["output_calib"] + 1) / 2, 0, 1)
    np.testing.assert_allclose(enhancer(x), want, atol=ATOL)
    np.testing.assert_allclose(build_enhancer(weights=source, align_corners=False)(x), want, atol=ATOL)
    exported = tmp_path / "export" / "savedmodel"
    assert cli.main(["export", "--model", "enlightengan", "--weights", str(out), "-o", str(exported)]) == 0
    serve = tf.saved_model.load(str(exported)).signatures["serving_default"]
    np.testing.assert_allclose(serve(image=tf.constant(x))["enhanced"], want, atol=ATOL)
    # Converted from upstream: the licence travels, inside the SavedModel folder (it is copied as a whole).
    assert (exported / LICENSE_NOTICE.name).read_text() == LICENSE_NOTICE.read_text()
    assert not (exported.parent / LICENSE_NOTICE.name).exists()


def test_bench_loads_the_calibrated_statistics_of_a_fixture_npz(fixture):
    """`bench_enlightengan --weights generator_seed0.npz` uses `calib/` over `w/`: the init statistics would
    make the deep path vanish and every PSNR row look perfect."""
    from bench.bench_enlightengan import build_bench_enhancer

    enhancer = build_bench_enhancer(str(reference_path("enlightengan", "generator_seed0.npz")))
    x = (fixture["input"] + 1) / 2
    np.testing.assert_allclose(enhancer(x), np.clip((fixture["output_calib_acT"] + 1) / 2, 0, 1), atol=ATOL)


def test_llie_convert_reports_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{"conv1_1.weight": np.zeros((32, 4, 3, 3), np.float32)})
    assert cli.main(["convert", "enlightengan", str(bad), "--out", str(tmp_path / "o.weights.h5")]) == 1
    assert "missing tensor(s)" in capsys.readouterr().err
    assert not (tmp_path / "o.weights.h5").exists()
    with pytest.raises(SystemExit) as exit_info:  # refused by the parser, before the checkpoint is read
        cli.main(["convert", "enlightengan", str(tmp_path / "absent.pth"), "--out", str(tmp_path / "o.h5")])
    assert exit_info.value.code == 2 and "o.h5: the output must end in .weights.h5" in capsys.readouterr().err


def test_build_enhancer_errors(tmp_path):
    with pytest.raises(NotAvailableError, match="no preset"):
        build_enhancer(preset="official")
    with pytest.raises(WeightsMismatchError, match="no such weights file"):
        build_enhancer(weights=tmp_path / "absent.weights.h5")
    foreign = tmp_path / "d.weights.h5"
    LocalDiscriminator(filters=2).save_weights(foreign)
    with pytest.raises(WeightsMismatchError, match="d.weights.h5: not EnlightenGAN enhancer weights"):
        build_enhancer(weights=foreign)
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(WeightsMismatchError, match=r"junk.weights.h5: not a Keras \.weights\.h5 file"):
        build_enhancer(weights=junk)


def test_registry_entry():
    spec = registry.get("enlightengan")
    assert spec.presets == () and spec.run_convert is not None
    assert [command.name for command in spec.train_commands] == ["enlightengan"]
    assert isinstance(spec.build_enhancer(), EnlightenGANEnhancer)
