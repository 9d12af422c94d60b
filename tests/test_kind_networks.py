"""KinD networks: parity with the official TF1 graph (decom, adjust, restoration fixtures), layers, serialisation."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kind_tf.convert import load_tf1_checkpoint
from kind_tf.layers import LEAKY_RELU, NearestGaussianBlur, UpsampleConcat, max_pool, min_max_normalize
from kind_tf.networks import DecomNet, IlluminationAdjustNet, RestorationNet, build_networks
from tests.reference import reference, reference_path

TOL = 1e-5


def _tags(arrays: dict, prefix: str) -> list[str]:
    tags = sorted(key[len(prefix):] for key in arrays if key.startswith(prefix))
    assert tags, f"no '{prefix}*' arrays in the fixture"
    return tags


def _ratio_tag(ratio: float) -> str:
    return f"r{float(ratio):.1f}".replace(".", "p")


@pytest.fixture(scope="module")
def networks():
    return build_networks()


def _checkpoint(name: str):
    return reference_path("kind", f"checkpoints/{name}")


def test_parameter_counts_match_the_original(networks):
    decom, restoration, adjust = networks
    assert [net.count_params() for net in networks] == [235_876, 7_760_739, 19_393]
    assert len(decom.tf1_variables()) == 18 and len(restoration.tf1_variables()) == 42
    assert len(adjust.tf1_variables()) == 8


@pytest.mark.parametrize("index, folder", [(0, "decom_net_train"), (1, "Restoration_net_train_synthetic"),
                                           (2, "illumination_adjust_net_train")])
def test_tf1_variable_names_and_shapes_are_the_checkpoints(networks, index, folder):
    stored = dict(tf.train.list_variables(str(_checkpoint(folder))))
    ours = {name: list(variable.shape) for name, variable in networks[index].tf1_variables().items()}
    assert ours == stored


def _load_converted(network, folder: str, fixture: dict) -> None:
    """Loads `folder` through the converter and checks it yields exactly the fixture's `w/` arrays (the hidden
    fixture variant has none: it uses these checkpoints)."""
    load_tf1_checkpoint(network, _checkpoint(folder))
    for name, variable in network.tf1_variables().items():
        if f"w/{name}" in fixture:
            np.testing.assert_array_equal(variable.numpy(), fixture[f"w/{name}"], err_msg=name)


def test_decom_net_matches_official_graph(networks):
    fixture = reference("kind", "decom")
    converted = networks[0]
    _load_converted(converted, "decom_net_train", fixture)
    decoms = [("checkpoint", converted)]
    if any(key.startswith("w/") for key in fixture):
        from_arrays = DecomNet()  # a second network loaded from the w/ arrays directly, by TF1 name
        from_arrays(np.zeros((1, 4, 4, 3), np.float32))
        for name, variable in from_arrays.tf1_variables().items():
            variable.assign(fixture[f"w/{name}"])
        decoms.append(("w/ arrays", from_arrays))
    for source, decom in decoms:
        for tag in _tags(fixture, "x_"):
            reflectance, illumination = decom(fixture[f"x_{tag}"])
            assert reflectance.shape == fixture[f"R_{tag}"].shape and illumination.shape[-1] == 1
            np.testing.assert_allclose(reflectance, fixture[f"R_{tag}"], atol=TOL, rtol=0, err_msg=f"{source} {tag}")
            np.testing.assert_allclose(illumination, fixture[f"I_{tag}"], atol=TOL, rtol=0, err_msg=f"{source} {tag}")


def test_adjust_net_matches_official_graph_for_every_ratio(networks):
    adjust = networks[2]
    fixture = reference("kind", "adjust")
    _load_converted(adjust, "illumination_adjust_net_train", fixture)
    assert len(fixture["ratios"]) >= 2
    for tag in _tags(fixture, "I_in_"):
        illumination = fixture[f"I_in_{tag}"]
        for ratio in fixture["ratios"]:
            out = adjust([illumination, np.full_like(illumination, ratio)])
            expected = fixture[f"out_{tag}_{_ratio_tag(ratio)}"]
            np.testing.assert_allclose(out, expected, atol=TOL, rtol=0, err_msg=f"{tag} ratio {ratio}")


def test_restoration_net_matches_official_graph(networks):
    restoration = networks[1]
    fixture = reference("kind", "restoration")
    load_tf1_checkpoint(restoration, _checkpoint("Restoration_net_train_synthetic"))
    for tag in _tags(fixture, "R_in_"):
        out = restoration([fixture[f"R_in_{tag}"], fixture[f"I_in_{tag}"]])
        np.testing.assert_allclose(out, fixture[f"out_{tag}"], atol=TOL, rtol=0, err_msg=tag)


@pytest.mark.parametrize("height, width", [(37, 53), (1, 1), (5, 2)])
def test_networks_keep_any_size(networks, height, width):
    decom, restoration, adjust = networks
    image = np.random.default_rng(0).random((2, height, width, 3), np.float32)
    reflectance, illumination = decom(image)
    assert reflectance.shape == (2, height, width, 3) and illumination.shape == (2, height, width, 1)
    assert restoration([reflectance, illumination]).shape == (2, height, width, 3)
    assert adjust([illumination, illumination]).shape == (2, height, width, 1)


def test_lrelu_is_max_of_point_two_x_and_x():
    x = np.linspace(-3, 3, 101, dtype=np.float32)
    ours = keras.activations.get(LEAKY_RELU)(tf.constant(x)).numpy()
    np.testing.assert_array_equal(ours, np.maximum(np.float32(0.2) * x, x))


def test_same_max_pool_pads_at_the_end_on_odd_sizes():
    x = np.arange(15, dtype=np.float32).reshape(1, 3, 5, 1) * -1.0  # decreasing: a start pad would change maxima
    pooled = max_pool("pool")(x).numpy()[0, ..., 0]
    np.testing.assert_array_equal(pooled, [[0, -2, -4], [-10, -12, -14]])


def test_upsample_concat_crops_the_transposed_conv_and_puts_up_first():
    layer = UpsampleConcat(2)
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 2, 3, 4)
    skip = np.full((1, 3, 5, 1), -7.0, np.float32)
    layer.build([x.shape, skip.shape])
    kernel = np.linspace(-1, 1, 2 * 2 * 2 * 4, dtype=np.float32).reshape(2, 2, 2, 4)  # (2, 2, out, in)
    layer.kernel.assign(kernel)
    out = layer([x, skip]).numpy()
    assert out.shape == (1, 3, 5, 3)
    np.testing.assert_array_equal(out[..., 2], skip[..., 0])
    # Each output pixel (i, j) is x[i//2, j//2] · kernel[i%2, j%2]: the full 4×6 result cropped to 3×5.
    for i in range(3):
        for j in range(5):
            expected = kernel[i % 2, j % 2] @ x[0, i // 2, j // 2]
            np.testing.assert_allclose(out[0, i, j, :2], expected, atol=1e-5)


def test_min_max_normalize_is_global_per_image_with_floor():
    images = np.stack([np.full((2, 2, 3), 0.3, np.float32), np.zeros((2, 2, 3), np.float32)])
    images[0, 0, 0, 0], images[0, 1, 1, 2] = 0.1, 0.5
    images[1, 0, 0, 1] = 0.0005  # range below 0.001: divided by 0.001, not stretched to 1
    out = min_max_normalize(tf.constant(images)).numpy()
    np.testing.assert_allclose(out[0], (images[0] - 0.1) / 0.4, rtol=1e-6)
    np.testing.assert_allclose(out[1, 0, 0, 1], 0.5, rtol=1e-6)
    assert out[1].max() == pytest.approx(0.5)


@pytest.mark.parametrize("height, width", [(9, 30), (3, 2)])
def test_nearest_gaussian_blur_matches_edge_padded_separable_filter(height, width):
    image = np.random.default_rng(1).random((height, width)).astype(np.float32)
    taps = np.exp(-0.5 * np.arange(-12, 13) ** 2 / 9.0)
    taps /= taps.sum()
    expected = image.astype(np.float64)
    for axis in (0, 1):
        padded = np.pad(expected, [(12, 12) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
        expected = np.apply_along_axis(lambda line: np.correlate(line, taps, mode="valid"), axis, padded)
    ours = NearestGaussianBlur(3.0)(image[None, :, :, None]).numpy()[0, ..., 0]
    np.testing.assert_allclose(ours, expected, atol=1e-6)


def test_networks_serialise_and_reload(networks, tmp_path):
    decom = networks[0]
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(decom))
    assert isinstance(clone, DecomNet) and clone.name == decom.name
    clone(np.zeros((1, 4, 4, 3), np.float32))
    path = tmp_path / "decom.weights.h5"
    decom.save_weights(path)
    clone.load_weights(path)
    image = np.random.default_rng(2).random((1, 6, 7, 3), np.float32)
    np.testing.assert_array_equal(clone(image)[1], decom(image)[1])
    for cls in (RestorationNet, IlluminationAdjustNet):
        assert isinstance(keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(cls())), cls)
    layer = UpsampleConcat.from_config(UpsampleConcat(8, name="up").get_config())
    assert layer.filters == 8 and layer.name == "up"
