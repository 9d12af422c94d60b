"""KinD enhancer: every stage of evaluate.py / evaluate_LOLdataset.py, the e2e images, ratios, tiling hook."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kind_tf.convert import convert_all
from kind_tf.pipeline import KinD, normalize_for_tiling
from kind_tf.spec import SPEC
from tests.reference import reference, reference_path
from train.fit import precision_policy
from train.io import read_image, to_uint8
from train.tiling import enhance_tiled

TOL = 1e-5
EVALUATE_STAGES = ("x_norm", "decom_R", "decom_I", "restoration_r", "r_gray", "r_gray_gauss", "low_i",
                   "result_denoise")
PER_RATIO_STAGES = ("adjust_i", "fusion4", "final")


@pytest.fixture(scope="module")
def kind():
    """KinD with the official decom/adjust weights and the synthetic restoration set, via the converter."""
    return convert_all(reference_path("kind", "checkpoints"))


@pytest.fixture(scope="module")
def kind_lol(kind):
    """The LOL mode as `llie evaluate --protocol gt-ratio` builds it (`SPEC.reference_enhancer`)."""
    return SPEC.reference_enhancer(kind)


def test_reference_enhancer_is_the_lol_mode_on_the_same_networks(kind, kind_lol):
    assert kind_lol.mode == "lol" and kind.mode == "evaluate"
    for name in ("decom_net", "restoration_net", "adjust_net"):
        assert getattr(kind_lol, name) is getattr(kind, name)  # shared, not copied
    assert len(kind_lol.weights) == len(kind.weights)
    assert all(ours is theirs for ours, theirs in zip(kind_lol.weights, kind.weights))


@pytest.fixture(scope="module")
def pipeline():
    return reference("kind", "pipeline")


def _tags(pipeline):
    tags = sorted(key[len("x_uint8_"):] for key in pipeline if key.startswith("x_uint8_"))
    assert tags
    return tags


def _as_fixture_layout(stage, expected):
    stage = np.asarray(stage)
    return stage[0, ..., 0] if expected.ndim == 2 else stage


def _input(pipeline, name, tag):
    # The script's load_images reads the PNG as float32 /255 (the fixture stores the file's pixels).
    return pipeline[f"{name}_{tag}"].astype(np.float32) / 255.0


def test_evaluate_mode_matches_every_stage_for_each_ratio(kind, pipeline):
    assert len(pipeline["ratios"]) >= 2
    for tag in _tags(pipeline):
        image = _input(pipeline, "x_uint8", tag)
        for ratio in pipeline["ratios"]:
            suffix = f"r{float(ratio):.1f}".replace(".", "p")
            stages = kind.intermediates(image, np.array([ratio], np.float32))
            for name in EVALUATE_STAGES + PER_RATIO_STAGES:
                expected = pipeline[f"{name}_{tag}" if name in EVALUATE_STAGES else f"{name}_{tag}_{suffix}"]
                np.testing.assert_allclose(_as_fixture_layout(stages[name], expected), expected, atol=TOL, rtol=0,
                                           err_msg=f"{name} {tag} ratio {ratio}")
            enhanced = kind(image, ratio=np.array([ratio], np.float32)).numpy()
            saved = to_uint8(enhanced, "truncate").astype(int)
            assert np.abs(saved - pipeline[f"final_uint8_{tag}_{suffix}"]).max() <= 1, (tag, ratio)


def test_lol_mode_matches_ratio_and_output(kind_lol, pipeline):
    for tag in _tags(pipeline):
        low, high = _input(pipeline, "x_uint8", tag), _input(pipeline, "xhigh_uint8", tag)
        ratio = kind_lol.lol_ratio(low, high).numpy()
        assert ratio.shape == (1,)
        assert ratio[0] == pytest.approx(float(pipeline[f"lol_ratio_{tag}"]), rel=1e-5)
        stages = kind_lol.intermediates(low, ratio)
        assert "low_i" not in stages and "fusion4" not in stages
        for name in ("adjust_i", "final"):
            np.testing.assert_allclose(stages[name], pipeline[f"lol_{name}_{tag}"], atol=TOL, rtol=0,
                                       err_msg=f"lol {name} {tag}")
        saved = to_uint8(kind_lol(low, ratio=ratio).numpy(), "truncate").astype(int)
        assert np.abs(saved - pipeline[f"lol_final_uint8_{tag}"]).max() <= 1, tag


def test_e2e_images_match_evaluate_py_outputs(kind):
    folder = reference_path("kind", "e2e")
    inputs = sorted((folder / "inputs").glob("*.png"))
    assert len(inputs) == 4
    for path in inputs:
        enhanced = kind(read_image(path)[None], ratio=np.array([5.0], np.float32)).numpy()[0]
        expected = np.asarray(Image.open(folder / "outputs" / f"{path.stem}_kindle.png").convert("RGB"), np.int32)
        diff = np.abs(to_uint8(enhanced, "truncate").astype(np.int32) - expected)
        assert diff.max() <= 1, path.name
        assert (diff > 0).mean() < 1e-3, path.name  # ±1 is rare (rounding at the .0 boundary), not systematic


def test_default_ratio_is_evaluate_py_five_and_ratio_is_per_image(kind):
    images = np.random.default_rng(0).random((2, 12, 20, 3), np.float32) * 0.3
    default = kind(images).numpy()
    np.testing.assert_array_equal(default, kind(images, ratio=np.array([5.0, 5.0], np.float32)).numpy())
    np.testing.assert_array_equal(default, kind(images, ratio=5.0).numpy())
    mixed = kind(images, ratio=np.array([2.0, 5.0], np.float32)).numpy()
    np.testing.assert_allclose(mixed[1], default[1], atol=1e-6)
    np.testing.assert_allclose(mixed[0], kind(images[:1], ratio=np.array([2.0], np.float32)).numpy()[0], atol=1e-6)
    assert np.abs(mixed[0] - default[0]).max() > 1e-3
    assert default.min() >= 0.0 and default.max() <= 1.0


def test_output_is_clipped_but_intermediates_are_not(kind):
    # Without normalisation an out-of-range input pushes the fusion I·x + (1 − I)·… above 1.
    image = 1.0 + np.random.default_rng(1).random((1, 10, 10, 3), np.float32)
    final = kind.intermediates(image, normalize=False)["final"].numpy()
    assert final.max() > 1.0
    np.testing.assert_array_equal(kind(image, normalize=False).numpy(), np.clip(final, 0, 1))


def test_prepare_for_tiling_normalises_the_whole_image_once(kind):
    image = np.random.default_rng(2).random((16, 24, 3), np.float32) * 0.2 + 0.05
    assert SPEC.prepare_for_tiling is normalize_for_tiling
    prepared, kwargs = SPEC.prepare_for_tiling(image, ratio=np.array([3.0], np.float32))
    assert isinstance(prepared, np.ndarray) and prepared.shape == image.shape
    assert prepared.min() == 0.0 and prepared.max() == pytest.approx(1.0)
    assert kwargs["normalize"] is False and float(kwargs["ratio"][0]) == 3.0
    whole = kind(image[None], ratio=np.array([3.0], np.float32)).numpy()
    np.testing.assert_allclose(kind(prepared[None], **kwargs).numpy(), whole, atol=1e-6)


def test_tiling_with_the_whole_image_stretch_follows_whole_image_inference(kind):
    rows, cols = np.mgrid[:40, :144]
    image = (0.1 + 0.08 * np.sin(cols / 7.0) * np.cos(rows / 5.0)).astype(np.float32)[..., None].repeat(3, -1)
    image[:, 72:] *= 0.3  # the last tile (columns 80..143) is all dark: its own stretch would brighten it ×3
    whole = kind(image[None]).numpy()[0]
    options = {"tile": 64, "overlap": 8, "extras": {"ratio": 5.0}}
    prepared = enhance_tiled(kind, image, prepare=SPEC.prepare_for_tiling, **options)
    per_tile = enhance_tiled(kind, image, **options)
    # What remains is the networks' (and the blur's) missing context beyond each tile, not the stretch.
    prepared_error, per_tile_error = np.abs(prepared - whole).mean(), np.abs(per_tile - whole).mean()
    assert prepared_error < 0.03 and per_tile_error > 2 * prepared_error


def test_traced_graph_serves_any_size_and_serialises(kind):
    serve = tf.function(lambda image, ratio: kind(image, ratio=ratio), input_signature=[
        tf.TensorSpec((None, None, None, 3), tf.float32), tf.TensorSpec((None,), tf.float32)])
    for shape in ((1, 9, 13, 3), (2, 16, 8, 3)):
        image = np.random.default_rng(3).random(shape, np.float32)
        ratio = np.full((shape[0],), 4.0, np.float32)
        np.testing.assert_allclose(serve(image, ratio).numpy(), kind(image, ratio=ratio).numpy(), atol=1e-6)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(KinD(mode="lol")))
    assert isinstance(clone, KinD) and clone.mode == "lol" and clone.default_ratio == 5.0
    with pytest.raises(ValueError, match="mode"):
        KinD(mode="lime")


def test_mixed_bfloat16_networks_keep_a_float32_pipeline(kind):
    image = np.random.default_rng(4).random((1, 12, 16, 3), np.float32) * 0.3
    with precision_policy("mixed_bfloat16"):
        mixed = KinD()
        assert mixed.decom_net.dtype_policy.compute_dtype == "bfloat16"
        mixed.build()
        mixed.set_weights(kind.get_weights())
        stages = mixed.intermediates(image)
        out = mixed(image)
    assert out.dtype == tf.float32 and all(stage.dtype == tf.float32 for stage in stages.values())
    np.testing.assert_array_equal(stages["x_norm"], kind.intermediates(image)["x_norm"])  # stretch not rounded
    assert np.abs(out.numpy() - kind(image).numpy()).max() < 0.05
