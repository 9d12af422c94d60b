"""Width packing: each of SCI's 3×3 convolutions computes `k` adjacent output columns per position, for speed.

SCI's illumination network is three 3×3 convolutions with 3 output channels. CPU kernels (oneDNN, XNNPACK)
compute output channels in vector lanes of 8–16, so with 3 output channels most lanes idle. `packed_conv` runs
the same convolution as a stride-(1, k) convolution with k·C_out output channels: output position j, channel
p·C_out + c is original column k·j + p, channel c. Its kernel, width k+2 (the 3 taps of each of the k columns),
is built from the original one: each weight is one original weight or 0, so every output is the same sum plus
exact zeros. "same" padding with stride k and kernel width k+2 pads one column each side when k divides W, i.e.
the original's `padding=1`. The (N, H, W/k, k·C_out) result is row-major the (N, H, W, C_out) one, so the
reshape back costs nothing. Fewer, fuller positions: less time per image (measured in bench/README.md).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

# Candidate pack factors, first one dividing the width wins. Up to 5 columns × 3 channels fit 16 lanes; 4
# measured as fast as 5 and divides more real widths (600, 640, 1280, 1920, 3024, 4032).
PACK_FACTORS = (4, 3, 2)


def pack_factor(width: int | None) -> int:
    """The number of columns to pack for an image `width` px wide: the first of `PACK_FACTORS` dividing it,
    else 1 (no packing). An unknown width (a graph traced for any size) gives 1."""
    if width is None:
        return 1
    return next((k for k in PACK_FACTORS if width % k == 0), 1)


def _selection(k: int) -> np.ndarray:
    """S[x, p, d] = 1 where tap x of the width-(k+2) kernel is the original tap d (0..2, column offsets −1..1)
    of packed output column p: x = p + d."""
    selection = np.zeros((k + 2, k, 3), np.float32)
    for p in range(k):
        for d in range(3):
            selection[p + d, p, d] = 1.0
    return selection


def packed_kernel(kernel, bias, k: int):
    """(kernel (3, k+2, C_in, k·C_out), bias (k·C_out,)) of the stride-(1, k) convolution equal to the 3×3
    `kernel` (3, 3, C_in, C_out) with `bias` (C_out,), k output columns per position."""
    kernel_in, kernel_out = kernel.shape[2], kernel.shape[3]
    selection = ops.convert_to_tensor(_selection(k), kernel.dtype)
    weights = ops.einsum("xpd,ydio->yxipo", selection, kernel)
    return ops.reshape(weights, (3, k + 2, kernel_in, k * kernel_out)), ops.tile(bias, (k,))


def apply_conv(conv: keras.layers.Conv2D, inputs, k: int):
    """`conv(inputs)` (activation included), computed k columns per position when k > 1 (k divides W)."""
    return conv(inputs) if k == 1 else conv.activation(packed_conv(inputs, conv, k))


def packed_conv(inputs, conv: keras.layers.Conv2D, k: int):
    """`conv`'s pre-activation output on `inputs` (N, H, W, C_in) with k dividing W: (N, H, W, C_out), computed
    k columns per position (see the module docstring)."""
    kernel, bias = packed_kernel(conv.kernel, conv.bias, k)
    kernel, bias = ops.cast(kernel, inputs.dtype), ops.cast(bias, inputs.dtype)
    packed = ops.conv(inputs, kernel, strides=(1, k), padding="same") + bias
    shape = ops.shape(inputs)
    return ops.reshape(packed, (shape[0], shape[1], shape[2], conv.filters))
