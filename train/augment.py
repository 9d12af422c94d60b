"""Random crops, the 8 flip/rotate (dihedral) transforms and EnlightenGAN's flips, drawn with stateless ops.

Every random choice is a pure function of a key of shape (2,) int64, so a pipeline that derives one key per
sample from (seed, sample number) gives identical batches on every run, whatever the parallelism. The images of
a pair go through one `crop_and_augment` call and get the same window and the same transform;
`unpaired_crop_and_flip` is EnlightenGAN's augmentation of an unpaired (low, normal) sample.
`random_window_offset` and `random_dihedral_k` are the window and the transform `crop_and_augment` draws from a
sample key, for pipelines that cut their samples themselves (`kind_tf.context.context_crops`).
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


def _split(key: tf.Tensor, count: int) -> list[tf.Tensor]:
    return tf.unstack(tf.random.experimental.stateless_split(key, count))


def random_window_offset(shape: tf.Tensor, key: tf.Tensor, patch_size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """(top, left) int32 scalars of the random `patch_size`² window that `crop_and_augment` cuts with the sample
    key `key` from an image of `shape` (H, W, ...), H, W ≥ patch_size: uniform in [0, H − patch] × [0, W − patch]
    inclusive, like KinD's random.randint(0, h − patch_size)."""
    window_key, _ = _split(key, 2)
    top_key, left_key = _split(window_key, 2)
    top = tf.random.stateless_uniform([], top_key, 0, shape[0] - patch_size + 1, dtype=tf.int32)
    left = tf.random.stateless_uniform([], left_key, 0, shape[1] - patch_size + 1, dtype=tf.int32)
    return top, left


def random_dihedral_k(key: tf.Tensor) -> tf.Tensor:
    """The transform k ∈ [0, 8) (for `dihedral`, uniform, int32 scalar) that `crop_and_augment` applies with the
    sample key `key`; independent of the window `random_window_offset` draws from the same key."""
    _, transform_key = _split(key, 2)
    return tf.random.stateless_uniform([], transform_key, 0, NUM_DIHEDRAL, dtype=tf.int32)


def _random_window(images: tuple[tf.Tensor, ...], key: tf.Tensor, patch_size: int | None) -> tuple[tf.Tensor, ...]:
    """The `random_window_offset` window, the same for all `images` (one size, H, W ≥ patch_size); None: whole."""
    if patch_size is None:
        return images
    top, left = random_window_offset(tf.shape(images[0]), key, patch_size)
    return tuple(tf.ensure_shape(image[top:top + patch_size, left:left + patch_size], (patch_size, patch_size, 3))
                 for image in images)


def _flip_with_half_probability(images: tuple[tf.Tensor, ...], key: tf.Tensor, flip) -> tuple[tf.Tensor, ...]:
    """`flip` applied to all `images` together with probability 0.5 (one draw from `key`)."""
    flipped = tf.random.stateless_uniform([], key) < 0.5
    return tuple(tf.cond(flipped, lambda image=image: flip(image), lambda image=image: image) for image in images)


def crop_and_augment(images: tuple[tf.Tensor, ...], key: tf.Tensor, patch_size: int | None, augment: bool
                     ) -> tuple[tf.Tensor, ...]:
    """One random `patch_size`² window and one random dihedral transform, the same for all `images`.

    images: (H, W, 3) float32 tensors of one size (H, W ≥ patch_size); `patch_size=None` keeps whole images.
    key: (2,) int64 stateless seed. Returns the transformed images, (patch_size, patch_size, 3) each.
    """
    images = _random_window(images, key, patch_size)
    if augment:
        k = random_dihedral_k(key)
        images = tuple(dihedral(image, k) for image in images)
        if patch_size is not None:  # a rotation by a random k·90° loses the static (square) shape
            images = tuple(tf.ensure_shape(image, (patch_size, patch_size, 3)) for image in images)
    return images


def unpaired_crop_and_flip(images: tuple[tf.Tensor, ...], key: tf.Tensor, patch_size: int | None, augment: bool
                           ) -> tuple[tf.Tensor, ...]:
    """EnlightenGAN's UnalignedDataset augmentation of one unpaired sample (A, B, ...); never a 90° rotation.

    Each image (H, W, 3), of any size ≥ patch_size, gets its own RandomCrop(patch_size) and RandomHorizontalFlip
    (torchvision's transform per image); then, if `augment`, one horizontal flip (p = 0.5) and one vertical flip
    (p = 0.5) are applied to all images together, as upstream's `__getitem__` flips A and B jointly.
    `augment=False` (upstream `no_flip`) keeps the crops only. Returns (patch_size, patch_size, 3) each.
    """
    *image_keys, joint_key = _split(key, len(images) + 1)
    result = []
    for image, image_key in zip(images, image_keys):
        _, flip_key = _split(image_key, 2)  # the first half of the split draws the window
        (image,) = _random_window((image,), image_key, patch_size)
        if augment:
            (image,) = _flip_with_half_probability((image,), flip_key, tf.image.flip_left_right)
        result.append(image)
    if augment:
        horizontal_key, vertical_key = _split(joint_key, 2)
        result = _flip_with_half_probability(tuple(result), horizontal_key, tf.image.flip_left_right)
        result = _flip_with_half_probability(result, vertical_key, tf.image.flip_up_down)
    return tuple(result)
