"""Registry entry of EnlightenGAN: enhancer from a weights file (no presets ship), converter, `llie train`."""

from __future__ import annotations

from enlighten_tf.convert import add_convert_arguments, run_convert
from enlighten_tf.enhancer import build_enhancer
from enlighten_tf.train_command import TRAIN_COMMAND
from train.registry import ModelSpec

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
    tile_alignment=16,  # `llie enhance --tile`: the generator pools 4 times (it reflect-pads to a multiple of 16)
)
