"""Building blocks of the EnlightenGAN generator: bilinear ×2 upsampling, reflect padding to a multiple of 16,
the self-regularised attention map.

Images are NHWC. The generator works in the original's [-1,1] range; the attention map `gray` is in [0,1].
Every function accepts static or dynamic (unknown at trace time) spatial sizes.
"""

from __future__ import annotations

import keras
import tensorflow as tf

# Upstream `pad_tensor` pads to a multiple of 16 (four 2×2 max-pools in the U-Net).
PAD_MULTIPLE = 16
# Upstream `Unet_resize_conv.forward`: inputs wider than this are average-pooled ×2 first (memory guard).
MAX_FULL_RES_WIDTH = 2200
# ITU-R BT.601 luma weights, as upstream `unaligned_dataset.py` computes the attention map.
_LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def attention_map(images_m11: tf.Tensor) -> tf.Tensor:
    """Self-regularised attention map of upstream `unaligned_dataset.py`: `1 − luma`, computed from [-1,1] RGB.

    `gray = 1 − (0.299·(r+1) + 0.587·(g+1) + 0.114·(b+1)) / 2`. (N, H, W, 3) in [-1,1] → (N, H, W, 1) in [0,1].
    """
    x = tf.cast(images_m11, tf.float32) + 1.0
    luma = (_LUMA_WEIGHTS[0] * x[..., 0:1] + _LUMA_WEIGHTS[1] * x[..., 1:2] + _LUMA_WEIGHTS[2] * x[..., 2:3]) / 2.0
    return 1.0 - luma


def _spatial_size(x: tf.Tensor, axis: int):
    """The static size of `axis` when known (a Python int keeps shapes static), else the dynamic one."""
    static = x.shape[axis]
    return static if static is not None else tf.shape(x)[axis]


def _keep_channels(images: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """`images` with the static channel count of `like`. With unknown H×W, dynamic padding and `tf.cond` lose it
    in the TFLite converter's shape inference, and TFLite convolutions need it; a reshape (RESHAPE) restates it."""
    channels = like.shape[-1]
    if channels is None or tf.executing_eagerly() or images.shape[1:3].is_fully_defined():
        return images
    shape = tf.shape(images)
    return tf.reshape(images, tf.stack([shape[0], shape[1], shape[2], channels]))


def padding_amounts(images: tf.Tensor, multiple: int = PAD_MULTIPLE) -> tuple:
    """(top, bottom, left, right) of upstream `pad_tensor`: `d = multiple − size % multiple` (0 when divisible),
    `before = d // 2`, `after = d − before`, for height and width."""
    amounts = []
    for axis in (1, 2):
        size = _spatial_size(images, axis)
        deficit = (multiple - size % multiple) % multiple
        amounts += [deficit // 2, deficit - deficit // 2]
    return tuple(amounts)


def reflect_pad(images: tf.Tensor, amounts: tuple) -> tf.Tensor:
    """`nn.ReflectionPad2d` (edge pixel not repeated) by (top, bottom, left, right).

    Statically zero amounts (sides already multiples of 16, e.g. training crops) add no op (no copy)."""
    if all(isinstance(amount, int) and amount == 0 for amount in amounts):
        return images
    top, bottom, left, right = amounts
    padded = tf.pad(images, [[0, 0], [top, bottom], [left, right], [0, 0]], mode="REFLECT")
    return _keep_channels(padded, images)


def crop_padding(images: tf.Tensor, amounts: tuple) -> tf.Tensor:
    """Inverse of `reflect_pad`: upstream `pad_tensor_back`."""
    top, bottom, left, right = amounts
    height = tf.shape(images)[1] - bottom
    width = tf.shape(images)[2] - right
    return images[:, top:height, left:width, :]


def upsample_bilinear_2x(images: tf.Tensor, align_corners: bool) -> tf.Tensor:
    """Bilinear ×2 upsampling, `F.upsample(x, scale_factor=2, mode='bilinear')`.

    `align_corners=True` is what that call meant on torch 0.3.1 (the version the released checkpoint was
    trained with): corners map to corners, source = dst·(in−1)/(out−1). `align_corners=False` is the torch ≥ 0.4
    meaning (half-pixel centres, like `tf.image.resize`). Both are one `ResizeBilinear` op (TFLite
    RESIZE_BILINEAR), which returns float32 for any input; the result is cast back to the input dtype.
    """
    size = tf.shape(images)[1:3] * 2
    resized = tf.raw_ops.ResizeBilinear(images=images, size=size, align_corners=align_corners,
                                        half_pixel_centers=not align_corners)
    return tf.cast(resized, images.dtype)


def max_pool_2x(images: tf.Tensor) -> tf.Tensor:
    """`nn.MaxPool2d(2)`: 2×2 window, stride 2, odd remainders dropped."""
    return tf.nn.max_pool2d(images, 2, 2, "VALID")


def avg_pool_2x(images: tf.Tensor) -> tf.Tensor:
    """`nn.AvgPool2d(2)`: 2×2 window, stride 2, odd remainders dropped."""
    return tf.nn.avg_pool2d(images, 2, 2, "VALID")


def is_too_wide(images: tf.Tensor):
    """Whether upstream would average-pool this input first (width > 2200; the height is not checked).

    A Python bool when the width is static, else a boolean scalar tensor (use with `tf.cond`)."""
    width = _spatial_size(images, 2)
    return width > MAX_FULL_RES_WIDTH


def apply_if(condition, fn, *images):
    """`fn(*images)` where `condition` holds, else `images` unchanged (NHWC tensors; `fn` may change H and W).

    A Python `condition` needs no graph branch; a tensor one becomes `tf.cond`, after which the static batch and
    channel sizes are restored (TFLite convolutions need a static channel count).
    """
    if isinstance(condition, bool):
        return fn(*images) if condition else images
    results = tf.cond(condition, lambda: fn(*images), lambda: images)
    return tuple(_keep_channels(result, image) for result, image in zip(results, images))


# === Layers ===


def conv3x3(filters: int, name: str) -> keras.layers.Conv2D:
    """`nn.Conv2d(in, filters, 3, padding=1)` with bias (pad 1 on a 3×3 stride-1 conv is Keras "same")."""
    return keras.layers.Conv2D(filters, 3, padding="same", name=name)
