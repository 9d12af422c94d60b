"""KinD stage 2/3 samples (kind_tf/context.py): a patch decomposed in its context window equals the same patch of
the whole-image decomposition, transformed after decomposing, as the restoration and adjust scripts do."""

import numpy as np
import pytest
import tensorflow as tf

from kind_tf.context import (DECOM_ALIGNMENT, ContextCrops, context_crop, context_crops, decompose_patches,
                             window_size)
from kind_tf.convert import load_tf1_checkpoint
from kind_tf.layers import stretch_whole_image
from kind_tf.networks import DecomNet
from tests.image_folders import save as save_png
from tests.reference import reference_path
from train.augment import crop_and_augment, dihedral
from train.data import paired_dataset
from train.io import read_image

PATCH = 16
TOL = 1e-5


@pytest.fixture(scope="module")
def decom():
    """The authors' DecomNet (the receptive field is a property of the trained weights' support: use real ones)."""
    net = DecomNet()
    net(np.zeros((1, 4, 4, 3), np.float32))
    load_tf1_checkpoint(net, reference_path("kind", "checkpoints") / "decom_net_train")
    return net


@pytest.fixture(scope="module")
def pair():
    """A stretched real low/high pair of odd size 61×83 (neither a multiple of 4): the e2e photo and 0.3× it."""
    photo = sorted((reference_path("kind", "e2e") / "inputs").glob("*.png"))[1]
    high = read_image(photo)[200:261, 100:183]
    low = np.clip(0.3 * high + 0.01 * np.random.default_rng(0).standard_normal(high.shape), 0, 1)
    return tuple(stretch_whole_image(tf.constant(image, tf.float32)) for image in (low, high))


def _whole_maps(decom, pair) -> np.ndarray:
    """(H, W, 8): R_low, I_low, R_high, I_high of the whole images (the scripts' decomposition)."""
    reflectance, illumination = decom(tf.stack(pair))
    return np.concatenate([reflectance[0], illumination[0], reflectance[1], illumination[1]], axis=-1)


def _batch(samples: list[ContextCrops]) -> ContextCrops:
    return ContextCrops(*(tf.stack(field) for field in zip(*samples)))


def test_window_decomposition_equals_the_whole_image_decomposition(decom, pair):
    whole = _whole_maps(decom, pair)
    height, width = whole.shape[:2]
    # Every border case: top/left edge, interior, bottom/right edge, and all 8 transforms.
    positions = [(top, left) for top in (0, 5, 22, height - PATCH - 3, height - PATCH)
                 for left in (0, 9, 37, width - PATCH - 1, width - PATCH)]
    samples = [context_crop(pair, top, left, index % 8, PATCH) for index, (top, left) in enumerate(positions)]
    r_low, i_low, r_high, i_high = (np.asarray(m) for m in decompose_patches(decom, _batch(samples)))
    assert r_low.shape == (len(positions), PATCH, PATCH, 3) and i_high.shape == (len(positions), PATCH, PATCH, 1)
    got = np.concatenate([r_low, i_low, r_high, i_high], axis=-1)
    for index, (top, left) in enumerate(positions):
        expected = dihedral(tf.constant(whole[top:top + PATCH, left:left + PATCH]), index % 8).numpy()
        np.testing.assert_allclose(got[index], expected, atol=TOL, rtol=0, err_msg=f"patch at {(top, left)}")


def test_bare_crops_and_augment_then_decompose_differ(decom, pair):
    """Why the windows: a bare patch's maps differ near its border, and flipping before decomposing differs too
    (DecomNet is not flip-equivariant), so the adjust patches' ratios would too."""
    whole = _whole_maps(decom, pair)
    top, left = 22, 37
    reflectance, illumination = decom(tf.stack([image[top:top + PATCH, left:left + PATCH] for image in pair]))
    bare = np.concatenate([reflectance[0], illumination[0], reflectance[1], illumination[1]], axis=-1)
    assert np.abs(bare - whole[top:top + PATCH, left:left + PATCH]).max() > 1e-2
    flipped = [dihedral(image[top:top + PATCH, left:left + PATCH], 5) for image in pair]
    _, illumination = decom(tf.stack(flipped))
    expected = dihedral(tf.constant(whole[top:top + PATCH, left:left + PATCH, 3:4]), 5).numpy()
    _, i_low, _, _ = decompose_patches(decom, _batch([context_crop(pair, top, left, 5, PATCH)]))
    np.testing.assert_allclose(np.asarray(i_low)[0], expected, atol=TOL)
    assert np.abs(np.asarray(illumination)[0] - expected).max() > 1e-3


def test_pipeline_yields_grid_aligned_windows_of_the_stretched_images(tmp_path):
    rng = np.random.default_rng(1)
    for index in range(3):
        high = rng.integers(40, 255, (37, 45, 3), dtype=np.uint8)
        save_png(tmp_path / "our485" / "high" / f"{index}.png", high)
        save_png(tmp_path / "our485" / "low" / f"{index}.png", (high * 0.2).astype(np.uint8))
    dataset = paired_dataset(tmp_path, patch_size=PATCH, batch_size=3, shuffle=False, repeat=False, seed=4,
                             prepare=stretch_whole_image, augmentation=context_crops(PATCH))
    crops = next(iter(dataset))
    size = window_size(PATCH)
    assert isinstance(crops, ContextCrops)
    assert crops.low.shape == (3, size, size, 3) and crops.geometry.dtype == tf.int32
    for index, geometry in enumerate(crops.geometry.numpy()):
        height, width, top, left, k = geometry
        assert 0 <= k < 8 and 0 <= top <= height - PATCH and 0 <= left <= width - PATCH
        stretched = stretch_whole_image(tf.constant(read_image(tmp_path / "our485" / "low" / f"{index}.png")))
        window = crops.low[index].numpy()
        assert not window[height:].any() and not window[:, width:].any()  # filler beyond the extent
        # The window is the stretched image at an origin on the 4-px grid, ending at the border or 12 px past the
        # patch, beginning at the border or ≥ 12 px before it.
        matches = [(y, x) for y in range(0, 37 - height + 1, DECOM_ALIGNMENT)
                   for x in range(0, 45 - width + 1, DECOM_ALIGNMENT)
                   if np.array_equal(stretched.numpy()[y:y + height, x:x + width], window[:height, :width])]
        assert len(matches) == 1, geometry
        (y, x), = matches
        assert y == 0 or top >= 12
        assert x == 0 or left >= 12
        assert y + height == 37 or height - top - PATCH >= 12
        assert x + width == 45 or width - left - PATCH >= 12
    keys = {tuple(g) for g in next(iter(paired_dataset(tmp_path, patch_size=PATCH, batch_size=3, shuffle=False,
                                                       repeat=False, seed=5, prepare=stretch_whole_image,
                                                       augmentation=context_crops(PATCH)))).geometry.numpy()}
    assert keys != {tuple(g) for g in crops.geometry.numpy()}  # the seed draws the windows


def test_a_sample_key_draws_the_patch_and_transform_of_crop_and_augment(pair):
    """For one key, the context window holds exactly the patch, transformed, that stage 1's `crop_and_augment`
    cuts: both draw through `train.augment.random_window_offset` / `random_dihedral_k`."""
    crop = context_crops(PATCH)
    transforms = set()
    for sample in range(12):
        key = tf.constant([3, sample], tf.int64)
        window = crop(pair, key)
        _, _, top, left, k = window.geometry.numpy()
        transforms.add(int(k))
        patches = [dihedral(image[top:top + PATCH, left:left + PATCH], k) for image in (window.low, window.high)]
        for got, want in zip(patches, crop_and_augment(pair, key, PATCH, augment=True)):
            np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert len(transforms) > 1
