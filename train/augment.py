"""Random crops and the 8 flip/rotate (dihedral) transforms, drawn with stateless ops from an explicit key.

Every random choice is a pure function of a key of shape (2,) int64, so a pipeline that derives one key per
sample from (seed, sample number) gives identical batches on every run, whatever the parallelism. The images of
a pair go through one `crop_and_augment` call and get the same window and the same transform.
"""

from __future__ import annotations

import tensorflow as tf

NUM_DIHEDRAL = 8


def dihedral(image: tf.Tensor, k: tf.Tensor) -> tf.Tensor:
    """Transform `k` ∈ [0, 8) of an (H, W, C) image: rotate by k·90° (k mod 4), then flip up-down if k ≥ 4.

    These are the 8 modes of KinD's `data_augmentation` (in another numbering): identity, 3 rotations, and the
    4 flips (up-down, left-right and the two transposes). Rotations by 90° swap H and W.
    """
    rotated = tf.image.rot90(image, k % 4)
    return tf.cond(k >= 4, lambda: tf.image.flip_up_down(rotated), lambda: rotated)


def crop_and_augment(images: tuple[tf.Tensor, ...], key: tf.Tensor, patch_size: int | None, augment: bool
                     ) -> tuple[tf.Tensor, ...]:
    """One random `patch_size`² window and one random dihedral transform, the same for all `images`.

    images: (H, W, 3) float32 tensors of one size (H, W ≥ patch_size); `patch_size=None` keeps whole images.
    key: (2,) int64 stateless seed. Returns the transformed images, (patch_size, patch_size, 3) each.
    """
    crop_key, transform_key = tf.unstack(tf.random.experimental.stateless_split(key, 2))
    if patch_size is not None:
        shape = tf.shape(images[0])
        top_key, left_key = tf.unstack(tf.random.experimental.stateless_split(crop_key, 2))
        # Offsets uniform in [0, H - patch] inclusive, like KinD's random.randint(0, h - patch_size).
        top = tf.random.stateless_uniform([], top_key, 0, shape[0] - patch_size + 1, dtype=tf.int32)
        left = tf.random.stateless_uniform([], left_key, 0, shape[1] - patch_size + 1, dtype=tf.int32)
        images = tuple(image[top:top + patch_size, left:left + patch_size] for image in images)
    if augment:
        k = tf.random.stateless_uniform([], transform_key, 0, NUM_DIHEDRAL, dtype=tf.int32)
        images = tuple(dihedral(image, k) for image in images)
    if patch_size is not None:
        images = tuple(tf.ensure_shape(image, (patch_size, patch_size, 3)) for image in images)
    return images
