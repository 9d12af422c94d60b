"""Building blocks of the KinD networks and of its inference pipeline (NHWC, any H×W including odd sizes).

Every conv of the original is `slim.conv2d`: SAME padding, stride 1, with a bias. Its activation `lrelu` is
`max(0.2·x, x)`, which equals Keras' `leaky_relu` (default negative slope 0.2) bit for bit.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

# The original's `lrelu(x) = tf.maximum(x * 0.2, x)`: identical to Keras' leaky_relu with its default slope 0.2.
LEAKY_RELU = "leaky_relu"
# skimage.color.rgb2gray weights (ITU-R BT.709), used by the original's grey guide (not tf.image's BT.601).
SKIMAGE_GREY_WEIGHTS = (0.2125, 0.7154, 0.0721)


def conv(filters: int, kernel_size: int, name: str, activation: str | None = LEAKY_RELU) -> keras.layers.Conv2D:
    """A `slim.conv2d` equivalent: SAME, stride 1, bias, lrelu unless `activation=None` (linear)."""
    return keras.layers.Conv2D(filters, kernel_size, padding="same", activation=activation, name=name)


def max_pool(name: str) -> keras.layers.MaxPooling2D:
    """`slim.max_pool2d(x, [2, 2], stride=2, padding='SAME')`.

    Quirk kept: on an odd size, SAME pooling pads at the END (bottom/right), so the last row/column is pooled
    alone (⌈H/2⌉ rows out). Keras' `padding="same"` is the same TF op, hence identical.
    """
    return keras.layers.MaxPooling2D(2, strides=2, padding="same", name=name)


def min_max_normalize(images):
    """The original `load_images` stretch: per image, over ALL pixels and channels, (x − min)/max(max − min, 0.001).

    Quirk kept: the stretch is global (not per channel), so a dark image is brightened to span [0,1] before the
    networks see it, and a flat image (max − min < 0.001) is divided by 0.001 instead of its range.
    (N,H,W,C) float → same shape, in [0,1].
    """
    low = ops.min(images, axis=(1, 2, 3), keepdims=True)
    high = ops.max(images, axis=(1, 2, 3), keepdims=True)
    return (images - low) / ops.maximum(high - low, 0.001)


def stretch_whole_image(image):
    """`min_max_normalize` of one whole (H, W, C) image (what `load_images` does to each image it loads)."""
    return min_max_normalize(image[None])[0]


def skimage_grey(rgb):
    """`skimage.color.rgb2gray`: (N,H,W,3) → (N,H,W,1) with weights 0.2125/0.7154/0.0721 (as a matmul)."""
    weights = ops.convert_to_tensor(np.asarray(SKIMAGE_GREY_WEIGHTS, np.float32)[:, None], dtype=rgb.dtype)
    return ops.matmul(rgb, weights)


def gaussian_taps(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """scipy.ndimage's 1-D Gaussian: radius int(truncate·σ + 0.5), normalised in float64, as float32."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-0.5 / (sigma * sigma) * x * x)
    return (taps / taps.sum()).astype(np.float32)


# === Layers ===


@keras.saving.register_keras_serializable(package="kind_tf")
class UpsampleConcat(keras.layers.Layer):
    """The original `upsample_and_concat(x1, x2, out, in)`: 2×2 stride-2 transposed conv (no bias), then [up, skip].

    The original asks `conv2d_transpose` for exactly the skip tensor's shape; that equals the full 2× transposed
    conv cropped to the skip's H×W (an odd skip size drops the last row/column). Up comes FIRST in the concat.
    Kernel layout [2, 2, filters, in_channels] is the TF1 variable's `weights` layout (and Keras').
    Inputs: [x (N,h,w,in), skip (N,H,W,c)] with h = ⌈H/2⌉; output (N,H,W,filters + c).
    """

    def __init__(self, filters: int, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters

    def build(self, input_shape):
        x_shape, _ = input_shape
        self.kernel = self.add_weight(name="kernel", shape=(2, 2, self.filters, x_shape[-1]),
                                      initializer="glorot_uniform")

    def call(self, inputs):
        x, skip = inputs
        up = ops.conv_transpose(x, self.kernel, strides=2, padding="same")
        skip_shape = ops.shape(skip)
        up = up[:, : skip_shape[1], : skip_shape[2], :]
        return ops.concatenate([up, skip], axis=-1)

    def compute_output_shape(self, input_shape):
        x_shape, skip_shape = input_shape
        return (*skip_shape[:3], self.filters + skip_shape[3])

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


@keras.saving.register_keras_serializable(package="kind_tf")
class NearestGaussianBlur(keras.layers.Layer):
    """`skimage.filters.gaussian(x, sigma)` = `scipy.ndimage.gaussian_filter(x, sigma, mode='nearest', truncate=4)`.

    In-graph (exports to SavedModel/TFLite): edge-replicate padding by an index gather (any size, even smaller
    than the radius), then the separable taps along H and then W as VALID convolutions, in scipy's axis order.
    Input/output (N,H,W,1) float.
    """

    def __init__(self, sigma: float = 3.0, truncate: float = 4.0, **kwargs):
        super().__init__(**kwargs)
        self.sigma = sigma
        self.truncate = truncate
        self.radius = int(truncate * sigma + 0.5)

    def _replicate_pad(self, x, axis: int):
        size = ops.shape(x)[axis]
        index = ops.clip(ops.arange(-self.radius, size + self.radius), 0, size - 1)
        return ops.take(x, index, axis=axis)

    def call(self, x):
        taps = ops.convert_to_tensor(gaussian_taps(self.sigma, self.truncate), dtype=x.dtype)
        x = ops.conv(self._replicate_pad(x, 1), ops.reshape(taps, (-1, 1, 1, 1)), padding="valid")
        return ops.conv(self._replicate_pad(x, 2), ops.reshape(taps, (1, -1, 1, 1)), padding="valid")

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "sigma": self.sigma, "truncate": self.truncate}


@keras.saving.register_keras_serializable(package="kind_tf")
class GreyGuide(keras.layers.Layer):
    """evaluate.py's guide for dark regions: min(sqrt(2·gaussian(rgb2gray(R), σ=3)), 1).

    Quirk kept: the guide is computed from the DecomNet reflectance R (not the restored one); it damps the
    restored reflectance where R is dark, because restoration paints very dark regions grey.
    `call` returns the guide (N,H,W,1) in [0,1]; `stages` also returns the grey map and its blur.
    """

    def __init__(self, sigma: float = 3.0, **kwargs):
        super().__init__(**kwargs)
        self.sigma = sigma
        self.blur = NearestGaussianBlur(sigma, name="blur", dtype=self.dtype_policy)

    def stages(self, reflectance) -> dict:
        """R (N,H,W,3) → {"r_gray", "r_gray_gauss", "low_i"}, each (N,H,W,1)."""
        grey = skimage_grey(reflectance)
        blurred = self.blur(grey)
        return {"r_gray": grey, "r_gray_gauss": blurred, "low_i": ops.minimum(ops.sqrt(blurred * 2.0), 1.0)}

    def call(self, reflectance):
        return self.stages(reflectance)["low_i"]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:3], 1)

    def get_config(self):
        return {**super().get_config(), "sigma": self.sigma}
