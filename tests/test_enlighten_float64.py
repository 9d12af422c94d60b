"""Float64 evidence for the tolerance of the train_step_seed0 gradient norm.

∂loss_G/∂conv1_1 goes back through VGG16's relu5_1 and instance norm, which divides near-constant 8×8 channels
by sqrt(var + 1e-5): float32 rounding anywhere upstream of it is amplified there. Here the whole iteration
(generator in train mode, both discriminators, VGG16, the five losses) is re-evaluated in float64, functionally,
with the weights of the Keras models, and the float32 gradient norms of this port and of upstream (the fixture)
are both compared to it.
"""

import numpy as np
import pytest
import tensorflow as tf

from enlighten_tf.discriminators import LEAKY_SLOPE as D_SLOPE
from enlighten_tf.generator import BN_NAMES, DECODER_FILTERS, ENCODER_FILTERS, LEAKY_SLOPE, Generator
from enlighten_tf.layers import padding_amounts
from enlighten_tf.model import EnlightenGAN, extract_patches
from losses_tf.enlighten import INSTANCE_NORM_EPSILON
from tests.enlighten_testing import GRAD_RTOL, rel, upstream_gan
from tests.reference import reference

F64 = tf.float64


def _w(variable) -> tf.Tensor:
    return tf.cast(tf.convert_to_tensor(variable), F64)


def _conv(x, layer, kernel=None):
    """A 3×3/1×1 "same" conv of `layer`'s weights (or `kernel` instead of its kernel)."""
    return tf.nn.conv2d(x, _w(layer.kernel) if kernel is None else kernel, 1, "SAME") + _w(layer.bias)


def _interpolation(size_in: int, align_corners: bool) -> np.ndarray:
    """(2·size_in, size_in) float64 matrix of torch's bilinear ×2 along one axis."""
    size_out = 2 * size_in
    dst = np.arange(size_out, dtype=np.float64)
    if align_corners:
        src = dst * (size_in - 1) / (size_out - 1)
    else:
        src = np.maximum((dst + 0.5) / 2.0 - 0.5, 0.0)  # torch clamps negative source coordinates to 0
    low = np.minimum(np.floor(src).astype(int), size_in - 1)
    high = np.minimum(low + 1, size_in - 1)
    matrix = np.zeros((size_out, size_in))
    np.add.at(matrix, (np.arange(size_out), low), 1.0 - (src - low))
    np.add.at(matrix, (np.arange(size_out), high), src - low)
    return matrix


def _upsample(x, align_corners: bool):
    """Bilinear ×2 as two matrix products (TF's ResizeBilinear always computes in float32)."""
    rows = tf.constant(_interpolation(x.shape[1], align_corners), x.dtype)
    cols = tf.constant(_interpolation(x.shape[2], align_corners), x.dtype)
    return tf.einsum("pw,nowc->nopc", cols, tf.einsum("oh,nhwc->nowc", rows, x))


def _block(x, generator, name, kernel=None):
    """conv → LeakyReLU → BatchNorm with the batch statistics (train mode, biased variance)."""
    x = tf.nn.leaky_relu(_conv(x, getattr(generator, f"conv{name}"), kernel), LEAKY_SLOPE)
    if f"bn{name}" not in BN_NAMES:
        return x
    bn = getattr(generator, f"bn{name}")
    mean, variance = tf.nn.moments(x, [0, 1, 2])
    return (x - mean) / tf.sqrt(variance + bn.epsilon) * _w(bn.gamma) + _w(bn.beta)


def generator64(generator: Generator, images, gray, conv1_1_kernel):
    """`Generator` in train mode, float64 → output, for widths ≤ 2200 (no pooling path); `conv1_1_kernel`
    replaces conv1_1's kernel (the gradient's target)."""
    top, bottom, left, right = padding_amounts(images)
    height, width = images.shape[1:3]
    pad = [[0, 0], [top, bottom], [left, right], [0, 0]]
    output = _unet64(generator, tf.pad(images, pad, "REFLECT"), tf.pad(gray, pad, "REFLECT"), conv1_1_kernel)
    return output[:, top:top + height, left:left + width]


def _unet64(generator: Generator, images, gray, conv1_1_kernel):
    grays = [gray]
    for _ in range(4):
        grays.append(tf.nn.max_pool2d(grays[-1], 2, 2, "VALID"))
    x = tf.concat([images, gray], axis=-1)
    skips = []
    for level, _ in ENCODER_FILTERS[:-1]:
        x = _block(x, generator, f"{level}_1", conv1_1_kernel if level == 1 else None)
        x = _block(x, generator, f"{level}_2")
        skips.append(x)
        x = tf.nn.max_pool2d(x, 2, 2, "VALID")
    x = _block(_block(x, generator, "5_1") * grays[4], generator, "5_2")
    for level, _ in DECODER_FILTERS:
        up = _conv(_upsample(x, generator.align_corners), getattr(generator, f"deconv{level - 1}"))
        x = tf.concat([up, skips[9 - level] * grays[9 - level]], axis=-1)
        x = _block(_block(x, generator, f"{level}_1"), generator, f"{level}_2")
    return _conv(x, generator.conv10) * gray + images  # latent + input


def discriminator64(discriminator, images):
    x = images
    for index, conv in enumerate(discriminator.convs):
        x = tf.pad(x, [[0, 0], [2, 2], [2, 2], [0, 0]])
        x = tf.nn.conv2d(x, _w(conv.kernel), conv.strides, "VALID") + _w(conv.bias)
        if index < len(discriminator.convs) - 1:
            x = tf.nn.leaky_relu(x, D_SLOPE)
    return x


def vgg_relu5_1_64(extractor, images_m11):
    """φ of the SFP loss: BGR, (x+1)·127.5, no mean; VGG16 convs, pools after blocks 1-3 only."""
    x = (images_m11[..., ::-1] + 1.0) * 127.5
    for layer in extractor.layers:
        if hasattr(layer, "kernel"):
            x = tf.nn.relu(_conv(x, layer))
        elif "pool" in layer.name:
            x = tf.nn.max_pool2d(x, 2, 2, "VALID")
    return x


def _sfp64(extractor, images, targets):
    def normalise(features):
        mean, variance = tf.nn.moments(features, [1, 2], keepdims=True)
        return (features - mean) / tf.sqrt(variance + INSTANCE_NORM_EPSILON)

    return tf.reduce_mean(tf.square(normalise(vgg_relu5_1_64(extractor, images))
                                    - normalise(vgg_relu5_1_64(extractor, targets))))


def generator_loss_and_gradient64(model: EnlightenGAN, f: dict) -> tuple[float, float]:
    """(loss_G, ‖∂loss_G/∂conv1_1‖) of the fixture's iteration, everything in float64."""
    real_A, input_img, real_B = (tf.constant(f[key], F64) for key in ("real_A", "input_img", "real_B"))
    x = input_img + 1.0
    gray = 1.0 - (0.299 * x[..., 0:1] + 0.587 * x[..., 1:2] + 0.114 * x[..., 2:3]) / 2.0
    kernel = _w(model.generator.conv1_1.kernel)
    offsets = f["patch_offsets_hw"]
    with tf.GradientTape() as tape:
        tape.watch(kernel)
        fake_B = generator64(model.generator, input_img, gray, kernel)
        pred_real = discriminator64(model.global_discriminator, real_B)
        pred_fake = discriminator64(model.global_discriminator, fake_B)
        gan_global = 0.5 * (tf.reduce_mean(tf.square(pred_real - tf.reduce_mean(pred_fake)))
                            + tf.reduce_mean(tf.square(pred_fake - tf.reduce_mean(pred_real) - 1.0)))
        fake_patches = extract_patches(fake_B, offsets, model.patch_size)
        input_patches = extract_patches(real_A, offsets, model.patch_size)
        # Mean over patches of MSE(D(patch), 1): every patch has the same size, so one mean over all of them.
        gan_local = tf.reduce_mean(tf.square(discriminator64(model.local_discriminator, fake_patches) - 1.0))
        sfp = (_sfp64(model.sfp_extractor, fake_B, real_A)
               + _sfp64(model.sfp_extractor, fake_patches, input_patches))
        loss = gan_global + gan_local + sfp
    return float(loss), float(tf.norm(tape.gradient(loss, kernel)))


@pytest.mark.parametrize("align_corners, suffix", [(False, ""), (True, "_acT")])
def test_gradient_norm_gap_is_float32_rounding(align_corners, suffix):
    """Why test_enlighten_train compares the gradient norm at GRAD_RTOL (1e-3), not 1e-4: both float32
    evaluations, this port's and upstream's, sit within it of the float64 value; a 1e-4 agreement between two
    float32 implementations is not something float32 delivers for this quantity.

    Measured (fixture seed 0), relative to float64 — align_corners False / True:
    - this port (float32): 7.3e-4 / 4.8e-4; upstream (float32, the fixture): 7.0e-4 / 2.1e-6; so port vs
      upstream 3.4e-5 / 4.8e-4. This file's code run in float32 instead: 1.9e-4 / 4.8e-4.
    - The error comes from the float32 arithmetic of the SFP loss's VGG16 convolutions: only those in float32
      (the rest float64): 1.7e-4 / 5.2e-4; the generator in float32 (the rest float64): 4e-6 / 2.8e-5; every
      VGG activation rounded to float32 with float64 arithmetic: < 1e-6 (not a conditioning of the values).
    """
    model = upstream_gan(align_corners)
    f = reference("enlightengan", "train_step_seed0")
    with tf.GradientTape() as tape:
        losses = model.compute_losses(f["real_A"], f["input_img"], f["real_B"], f["patch_offsets_hw"])
    ours32 = float(tf.norm(tape.gradient(losses["g_loss"], model.generator.conv1_1.kernel)))
    loss64, norm64 = generator_loss_and_gradient64(model, f)
    upstream32 = float(f[f"grad_norm_G_conv1_1_weight{suffix}"])
    print(f"align_corners={align_corners}: gradient norm relative to float64: port {rel(ours32, norm64):.2e}, "
          f"upstream {rel(upstream32, norm64):.2e}; port vs upstream {rel(ours32, upstream32):.2e}")
    # The float64 evaluation computes the same iteration: its loss is both float32 losses to float32 accuracy.
    assert rel(loss64, f[f"loss_G{suffix}"]) <= 1e-5 and rel(loss64, losses["g_loss"]) <= 1e-5
    assert rel(ours32, norm64) <= GRAD_RTOL and rel(upstream32, norm64) <= GRAD_RTOL
