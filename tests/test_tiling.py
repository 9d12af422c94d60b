"""Tiled inference (train/tiling.py): geometry, exactness for local models, bounded drift for global ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from tests.reference import REPO_ROOT
from train.tiling import axis_weights, check_tiling, enhance_tiled, tile_spans


@keras.saving.register_keras_serializable(package="tests_tiling")
class ConvStack(keras.Model):
    """`depth` zero-padded 3×3 convs: an output pixel depends on inputs within `depth` pixels (radius r)."""

    def __init__(self, depth: int = 2, width: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.depth, self.width = depth, width
        self.convs = [keras.layers.Conv2D(3 if i == depth - 1 else width, 3, padding="same",
                                          activation=None if i == depth - 1 else "tanh") for i in range(depth)]

    def call(self, image):
        x = image
        for conv in self.convs:
            x = conv(x)
        return keras.ops.sigmoid(x + image)

    def get_config(self):
        return {**super().get_config(), "depth": self.depth, "width": self.width}


@keras.saving.register_keras_serializable(package="tests_tiling")
class PooledConvStack(keras.Model):
    """3×3 conv → 2×2 SAME max-pool → 3×3 conv → ×2 nearest upsampling (cropped) + the input: a local model
    (receptive radius 4 px) whose output depends on a pixel's position modulo 2, its pooling grid."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.first = keras.layers.Conv2D(8, 3, padding="same", activation="tanh")
        self.pool = keras.layers.MaxPooling2D(2, strides=2, padding="same")
        self.second = keras.layers.Conv2D(3, 3, padding="same")

    def call(self, image):
        coarse = self.second(self.pool(self.first(image)))
        up = keras.ops.repeat(keras.ops.repeat(coarse, 2, axis=1), 2, axis=2)
        return keras.ops.sigmoid(up[:, :keras.ops.shape(image)[1], :keras.ops.shape(image)[2]] + image)


@keras.saving.register_keras_serializable(package="tests_tiling")
class GlobalGain(keras.Model):
    """out = clip(image · gain), gain = 0.3 / mean(image) per image unless given: depends on global statistics."""

    def call(self, image, gain=None):
        if gain is None:
            gain = 0.3 / keras.ops.mean(image, axis=(1, 2, 3))
        return keras.ops.clip(image * gain[:, None, None, None], 0.0, 1.0)


def _image(height, width, seed=0):
    return np.random.default_rng(seed).uniform(0.0, 0.5, (height, width, 3)).astype(np.float32)


def _whole(model, image, **kwargs):
    return model(image[None], **kwargs).numpy()[0]


@pytest.fixture(scope="module")
def conv2():
    keras.utils.set_random_seed(3)
    model = ConvStack(2)
    model(np.zeros((1, 8, 8, 3), np.float32))
    return model


@pytest.mark.parametrize("alignment", [1, 2, 4, 16])
def test_geometry_covers_every_pixel_on_the_grid_with_weights_summing_to_one(alignment):
    for length in range(1, 60):
        for tile in range(3, 36):
            for overlap in range(0, (tile // alignment * alignment - alignment) // 2 + 1):
                spans = tile_spans(length, tile, overlap, alignment)
                weighted = axis_weights(length, tile, overlap, alignment)
                assert [span for span, _ in weighted] == spans
                weights = [weight for _, weight in weighted]
                size = tile // alignment * alignment
                assert spans[0][0] == 0 and spans[-1][1] == length
                total = np.zeros(length)
                for (start, end), weight in zip(spans, weights):
                    assert start % alignment == 0 and weight.shape == (end - start,)
                    # every tile but the last has the rounded size; the last one is at most alignment − 1 longer
                    assert end - start == size if end < length else 0 < end - start <= size + alignment - 1
                    total[start:end] += weight
                    # no weight within overlap/2 of an edge shared with a neighbouring tile
                    margin = overlap // 2  # = the largest receptive radius r with 2r <= overlap
                    if start > 0 and margin:
                        assert weight[:margin].max() == 0.0
                    if end < length and margin:
                        assert weight[-margin:].max() == 0.0
                for (_, end), (start, _) in zip(spans, spans[1:]):
                    assert end - start >= 2 * overlap  # each side reads `overlap` px past the seam
                np.testing.assert_allclose(total, 1.0, atol=1e-12)


def test_geometry_examples_and_errors():
    assert tile_spans(100, 32, 4) == [(0, 32), (24, 56), (48, 80), (68, 100)]
    assert tile_spans(100, 32, 4, alignment=16) == [(0, 32), (16, 48), (32, 64), (48, 80), (64, 100)]
    # tile 300 → 288; the last tile starts at 784 (1080 − 288 = 792 is off the grid) and is 296 px long
    assert tile_spans(1080, 300, 96, alignment=16) == [(start, start + 288) for start in range(0, 784, 96)] + \
        [(784, 1080)]
    with pytest.raises(ValueError, match=r"^tile \(16\) must be ≥ 2·overlap \+ 1 = 2·8 \+ 1 = 17$"):
        enhance_tiled(lambda x: x, _image(40, 40), tile=16, overlap=8)
    # 47 → 32 on the 16-px grid: 32 − 2·9 = 14 leaves no step of 16 (although 47 > 2·9 + 16)
    rounded = r"^tile rounded down to a multiple of 16 \(32\) must be ≥ 2·overlap \+ 16 = 2·9 \+ 16 = 34$"
    with pytest.raises(ValueError, match=rounded):
        tile_spans(100, 47, 9, alignment=16)
    with pytest.raises(ValueError, match=r"^overlap must be ≥ 0, got -1$"):
        check_tiling(64, -1, 16)
    check_tiling(34, 9, 1)  # the boundaries of the rule are accepted
    check_tiling(48, 16, 16)
    assert tile_spans(100, 48, 16, alignment=16)[:2] == [(0, 48), (16, 64)]


def test_pointwise_enhancer_tiled_equals_whole():
    image = _image(70, 97)
    gamma = lambda x, ratio: np.clip(x ** 0.5 * ratio[:, None, None, None], 0, 1)  # noqa: E731
    tiled = enhance_tiled(gamma, image, tile=32, overlap=8, extras={"ratio": 1.5})
    np.testing.assert_array_equal(tiled, gamma(image[None], np.array([1.5], np.float32))[0])


@pytest.mark.parametrize("height, width, tile, overlap", [(50, 77, 24, 4), (37, 53, 16, 5), (64, 64, 20, 6)])
def test_local_conv_enhancer_tiled_equals_whole_when_overlap_covers_receptive_field(conv2, height, width, tile,
                                                                                   overlap):
    image = _image(height, width, seed=height)
    whole = _whole(conv2, image)
    tiled = enhance_tiled(conv2, image, tile=tile, overlap=overlap)
    assert tiled.shape == image.shape and tiled.dtype == np.float32
    np.testing.assert_allclose(tiled, whole, atol=1e-5, rtol=0)


def test_pooling_model_needs_tiles_on_its_grid():
    """Tiles off the pooling grid pair other pixels in the pooling windows; on the grid, tiling is exact."""
    keras.utils.set_random_seed(5)
    model = PooledConvStack()
    image = _image(45, 61, seed=5)  # odd sizes: the last tile of alignment 1 starts off the grid (45 − 24 = 21)
    whole = _whole(model, image)
    aligned = enhance_tiled(model, image, tile=24, overlap=8, alignment=2)
    np.testing.assert_allclose(aligned, whole, atol=1e-5, rtol=0)
    assert np.abs(enhance_tiled(model, image, tile=24, overlap=8) - whole).max() > 1e-2


def test_tiles_of_two_sizes_per_axis_run_one_at_a_time(conv2):
    shapes = []

    def recording(tiles):
        shapes.append(tiles.shape)
        return conv2(tiles).numpy()

    image = _image(50, 77, seed=6)
    tiled = enhance_tiled(recording, image, tile=24, overlap=4, alignment=4)
    np.testing.assert_allclose(tiled, _whole(conv2, image), atol=1e-5)
    # rows: 24-px tiles and a last one of 26 (from 24 to 50); columns: 24 and a last one of 25 (52 to 77)
    assert {shape[1:3] for shape in shapes} == {(24, 24), (24, 25), (26, 24), (26, 25)}
    assert {shape[0] for shape in shapes} == {1}
    assert len(shapes) == len(tile_spans(50, 24, 4, 4)) * len(tile_spans(77, 24, 4, 4))


def test_too_little_overlap_shows_seams(conv2):
    image = _image(50, 77, seed=1)
    whole = _whole(conv2, image)
    assert np.abs(enhance_tiled(conv2, image, tile=24, overlap=1) - whole).max() > 1e-3  # 2r = 4 > 1
    np.testing.assert_allclose(enhance_tiled(conv2, image, tile=24, overlap=4), whole, atol=1e-5)


@pytest.mark.parametrize("tile", [64, 200])
def test_tile_not_smaller_than_image_is_whole_image_inference(conv2, tile):
    image = _image(37, 64, seed=2)
    np.testing.assert_array_equal(enhance_tiled(conv2, image, tile=tile, overlap=16), _whole(conv2, image))


def test_global_statistics_model_bounded_drift_and_prepare_hook():
    model = GlobalGain()
    image = _image(96, 128, seed=4)
    whole = _whole(model, image)
    tiled = enhance_tiled(model, image, tile=48, overlap=8)
    # Each tile uses its own mean: relative drift ≤ the worst tile mean's deviation from the global mean.
    means = [image[top:bottom, left:right].mean() for top, bottom in tile_spans(96, 48, 8)
             for left, right in tile_spans(128, 48, 8)]
    bound = max(abs(image.mean() / m - 1.0) for m in means)
    assert 0.0 < bound < 0.03
    assert np.abs(tiled - whole).max() <= bound * whole.max() + 1e-6
    assert np.abs(tiled - whole).max() > 1e-5  # the drift is real without the hook
    # A prepare hook computes the global statistic once: tiling becomes exact again.
    prepare = lambda img: (img, {"gain": 0.3 / img.mean(dtype=np.float64)})  # noqa: E731
    tiled_prepared = enhance_tiled(model, image, tile=48, overlap=8, prepare=prepare)
    np.testing.assert_allclose(tiled_prepared, whole, atol=1e-6, rtol=0)


def _centred_padding(length: int, multiple: int = 4) -> tuple[int, int]:
    deficit = (multiple - length % multiple) % multiple
    return deficit // 2, deficit - deficit // 2


def _centred_block_mean(images: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) → 4×4 block means on the grid of a centred reflect padding to a multiple of 4, cropped back:
    a model that pads to its own pooling grid as EnlightenGAN does (its grid starts at −top, −left)."""
    count, height, width, channels = images.shape
    (top, bottom), (left, right) = _centred_padding(height), _centred_padding(width)
    padded = np.pad(images, ((0, 0), (top, bottom), (left, right), (0, 0)), mode="reflect")
    blocks = padded.reshape(count, padded.shape[1] // 4, 4, padded.shape[2] // 4, 4, channels).mean(axis=(2, 4))
    return np.repeat(np.repeat(blocks, 4, axis=1), 4, axis=2)[:, top:top + height, left:left + width]


def test_finish_hook_undoes_a_whole_image_padding_that_puts_tiles_on_the_models_grid():
    image = _image(46, 61, seed=7)  # 46 → pad 1 + 1, 61 → pad 1 + 2: the model's grid starts at (−1, −1)
    (top, bottom), (left, right) = _centred_padding(46), _centred_padding(61)
    prepare = lambda img: (np.pad(img, ((top, bottom), (left, right), (0, 0)), mode="reflect"), {})  # noqa: E731
    finish = lambda out, img: out[top:top + img.shape[0], left:left + img.shape[1]]  # noqa: E731
    whole = _centred_block_mean(image[None])[0]
    for tile in (16, 24, 64):  # 64: one tile, whole-image inference on the padded image
        tiled = enhance_tiled(_centred_block_mean, image, tile=tile, overlap=4, alignment=4, prepare=prepare,
                              finish=finish)
        assert tiled.shape == image.shape
        np.testing.assert_allclose(tiled, whole, atol=1e-6, rtol=0)
    # Tiles on multiples of 4 of the unpadded image are 1 px off the model's grid.
    assert np.abs(enhance_tiled(_centred_block_mean, image, tile=16, overlap=4, alignment=4) - whole).max() > 1e-2


_PEAK_RSS_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    import numpy as np, keras
    sys.path.insert(0, sys.argv[1])
    from tests.test_tiling import ConvStack
    from train.tiling import enhance_tiled
    keras.utils.set_random_seed(0)
    # Wider than SCI (3 channels): one 32-channel 4K activation alone is 1 GB, so whole-image inference
    # would peak far above 2 GB; tiles of 512 keep each activation at 32 MB.
    model = ConvStack(3, width=32)
    image = np.random.default_rng(0).uniform(0, 0.3, (2160, 3840, 3)).astype(np.float32)
    out = enhance_tiled(model, image, tile=512, overlap=32)
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "shape": list(out.shape)}))
""")


@pytest.mark.slow
def test_4k_image_peak_memory_below_2gb():
    done = subprocess.run([sys.executable, "-c", _PEAK_RSS_SCRIPT, str(REPO_ROOT)], capture_output=True,
                          text=True, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"4K tiled peak RSS: {result['peak_rss_mb']:.0f} MB")
    assert result["shape"] == [2160, 3840, 3]
    assert result["peak_rss_mb"] < 2048
