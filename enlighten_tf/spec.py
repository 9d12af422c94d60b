"""Registry entry of EnlightenGAN: enhancer from a weights file (no presets ship), converter, `llie train`."""

from __future__ import annotations

import numpy as np

from enlighten_tf.convert import add_convert_arguments, run_convert
from enlighten_tf.enhancer import build_enhancer
from enlighten_tf.layers import PAD_MULTIPLE, padding_amounts
from enlighten_tf.train_command import TRAIN_COMMAND
from train.registry import ModelSpec


def pad_for_tiling(image: np.ndarray, **extras) -> tuple[np.ndarray, dict]:
    """`ModelSpec.prepare_for_tiling`: reflect-pad the whole (H, W, 3) image to a multiple of 16, centred, as the
    generator pads it (upstream `pad_tensor`). Tiles of the padded image then start on the whole image's pooling
    grid, and each is a multiple of 16 so the generator pads none of them."""
    top, bottom, left, right = padding_amounts(image[None], PAD_MULTIPLE)
    return np.pad(image, ((top, bottom), (left, right), (0, 0)), mode="reflect"), extras


def crop_after_tiling(output: np.ndarray, image: np.ndarray) -> np.ndarray:
    """`ModelSpec.finish_tiling`: the (H, W, 3) of `image` cut out of the output of `pad_for_tiling`'s image."""
    top, _, left, _ = padding_amounts(image[None], PAD_MULTIPLE)
    return output[top:top + image.shape[0], left:left + image.shape[1]]


# === Config ===

SPEC = ModelSpec(
    name="enlightengan",
    summary="EnlightenGAN (Jiang et al., TIP 2021): unpaired attention U-Net GAN; bring the authors' weights "
            "(`llie convert enlightengan`) or train your own",
    build_enhancer=build_enhancer,
    presets=(),
    add_convert_arguments=add_convert_arguments,
    run_convert=run_convert,
    train_commands=(TRAIN_COMMAND,),
    # `llie enhance --tile`: the generator pools 4 times, on the grid of its centred reflect padding to a multiple
    # of 16; the whole-image padding above puts the tiles on that grid (without it, on sides that are not
    # multiples of 16, 17-49 % of the 8-bit pixels are off by > 1 at any overlap).
    # Overlap 96, measured on the e2e images cropped to sides that are not multiples of 16 (316-508 px), tile 256,
    # the calibrated fixture weights: with align_corners=True (the authors' checkpoint) 2.7-6.6 % of the 8-bit
    # pixels are off by > 1 (max 5; overlap 32: 17-34 %, max 11). No overlap removes that rest: align_corners=True
    # maps output to input positions through the tensor's size, so the upsampling is not shift-invariant and
    # every tile's positions differ from the whole image's (tile 512 on 2× upscaled inputs: 8-9 % at overlap 96,
    # 4-5 % at 192, which runs up to 16× the pixels of one pass against 2.6× at 96). align_corners=False weights
    # tile within 1 grey level at 96. Tiles always run the full-resolution U-Net, also on images wider than
    # 2200 px, which one whole-image pass runs at half size (upstream's memory guard).
    tile_alignment=16,
    tile_overlap=96,
    prepare_for_tiling=pad_for_tiling,
    finish_tiling=crop_after_tiling,
)
