"""Training samples of KinD's stages 2 and 3: crops that DecomNet decomposes exactly as the whole image.

The restoration and adjust scripts decompose each WHOLE (stretched) image once, then crop the R/I maps and
augment the crops. Decomposing a bare crop instead sees zero padding where the whole image has neighbours, which
changes every pixel within DecomNet's receptive radius of the crop border: most of a 48-px adjust patch, and so
its ratio. Decomposing every whole image per sample costs ~100× a patch; holding all 485 LOL decompositions
(400×600, 7 float32 channels for stage 2) takes 3.3 GB. Instead, each sample here is a WINDOW around the patch:

- its origin is on DecomNet's pooling grid (a multiple of `DECOM_ALIGNMENT` = 4, two 2×2 poolings), so its
  pooling windows pair the same pixels as the whole image's;
- it extends `DECOM_CONTEXT` = 12 px (DecomNet's receptive radius) past the patch on every side, clamped at
  the image border, where the whole-image decomposition sees the same zero padding (and, at the bottom/right,
  the same SAME-pooling end padding, as the window then ends where the image ends).

`context_crops` draws (in the tf.data pipeline, before any flip) the patch and the dihedral transform and cuts the
window (`context_crop`); `decompose_patches` (in the trainer, on the frozen DecomNet) decomposes each window, cuts
the patch out and only then applies the transform: decompose, crop, augment, the scripts' order. The maps equal
the same window of the whole-image decomposition, transformed (up to float rounding, tests/test_kind_context.py).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import tensorflow as tf

from train.augment import dihedral, random_dihedral_k, random_window_offset

# DecomNet (kind_tf.networks): 3×3 convs at full, 1/2 and 1/4 resolution around two 2×2 SAME max-poolings and
# two stride-2 transposed convs: an output pixel depends on inputs at most 11 px before and 11 px after it
# (depending on its position modulo 4), so 12 px of context make a window's patch exact.
DECOM_ALIGNMENT = 4
DECOM_CONTEXT = 12


class ContextCrops(NamedTuple):
    """A batch of windows (or one sample without the batch axis).

    low, high: (N, S, S, 3) float32, S = `window_size(patch)`: the window of each image, zero-filled beyond its
    extent (the filler is never decomposed). geometry: (N, 5) int32 = window height, window width, patch top and
    left inside the window, dihedral transform k (see `train.augment.dihedral`).
    """

    low: tf.Tensor
    high: tf.Tensor
    geometry: tf.Tensor


def window_size(patch_size: int) -> int:
    """Side of the window buffer of a `patch_size` patch: the patch, context on both sides, origin rounding."""
    return patch_size + 2 * DECOM_CONTEXT + DECOM_ALIGNMENT - 1


def patch_size_of(window: int) -> int:
    """Inverse of `window_size`."""
    return window - 2 * DECOM_CONTEXT - DECOM_ALIGNMENT + 1


def window_span(length, start, patch_size: int):
    """(origin, end) along one axis of the window around the patch [start, start + patch_size) of an image of
    `length` px: origin = the grid point at or before start − context (≥ 0), end = origin + the window size
    (≤ length). Works on Python ints and int32 tensors."""
    origin = tf.maximum(0, (start - DECOM_CONTEXT) // DECOM_ALIGNMENT * DECOM_ALIGNMENT)
    return origin, tf.minimum(length, origin + window_size(patch_size))


def context_crop(images: tuple[tf.Tensor, ...], top, left, k, patch_size: int) -> ContextCrops:
    """One `ContextCrops` sample (no batch axis) of whole (low, high) (H, W, 3) images for the patch at (top,
    left) (int32 scalars, 0 ≤ top ≤ H − P, 0 ≤ left ≤ W − P) and the dihedral transform k."""
    size = window_size(patch_size)
    height, width = tf.unstack(tf.shape(images[0])[:2])
    (y0, y1), (x0, x1) = window_span(height, top, patch_size), window_span(width, left, patch_size)
    low, high = (tf.ensure_shape(tf.pad(image[y0:y1, x0:x1], [[0, size - (y1 - y0)], [0, size - (x1 - x0)], [0, 0]]),
                                 (size, size, 3))
                 for image in images)
    return ContextCrops(low, high, tf.cast(tf.stack([y1 - y0, x1 - x0, top - y0, left - x0, k]), tf.int32))


def context_crops(patch_size: int) -> Callable[[tuple[tf.Tensor, ...], tf.Tensor], ContextCrops]:
    """A `train.data.paired_dataset` augmentation: (low, high) whole (H, W, 3) images (H, W ≥ patch_size) and a
    stateless key → one `context_crop` sample, for the patch and the transform that `train.augment.crop_and_augment`
    draws from the same key (`random_window_offset`: uniform in [0, H − P] × [0, W − P], the scripts'
    random.randint; `random_dihedral_k`: one of the 8 transforms)."""

    def crop(images: tuple[tf.Tensor, ...], key: tf.Tensor) -> ContextCrops:
        top, left = random_window_offset(tf.shape(images[0]), key, patch_size)
        return context_crop(images, top, left, random_dihedral_k(key), patch_size)

    return crop


def decompose_patches(decom_net, crops: ContextCrops) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """The frozen `decom_net`'s (R_low, I_low, R_high, I_high) of each sample's patch, transformed by its k.

    crops: a `ContextCrops` batch with a static window size S → four float32 tensors (N, P, P, 3 or 1),
    P = `patch_size_of(S)`, as constants (no gradient). Each window is decomposed at its own extent (one
    DecomNet call per sample, low and high together), so border windows end where their image ends.
    """
    patch = patch_size_of(crops.low.shape[1])

    def one(sample):
        low, high, geometry = sample
        height, width, top, left, k = tf.unstack(geometry)
        reflectance, illumination = decom_net(tf.stack([low[:height, :width], high[:height, :width]]),
                                              training=False)
        maps = tf.concat([tf.cast(reflectance, tf.float32), tf.cast(illumination, tf.float32)], axis=-1)
        maps = maps[:, top:top + patch, left:left + patch]  # (2, P, P, 4): low, high
        return dihedral(tf.concat([maps[0], maps[1]], axis=-1), k)  # one transform for all eight channels

    maps = tf.stop_gradient(tf.map_fn(one, tuple(crops), fn_output_signature=tf.TensorSpec((patch, patch, 8),
                                                                                           tf.float32)))
    return maps[..., 0:3], maps[..., 3:4], maps[..., 4:7], maps[..., 7:8]
