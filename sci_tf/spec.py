"""Registry entry of SCI: enhancer from the shipped presets or a weights file, converter, `llie train sci`."""

from __future__ import annotations

import os
from pathlib import Path

from sci_tf.convert import add_convert_arguments, load_state_dict, read_state_dict, run_convert
from sci_tf.enhancer import SCIEnhancer
from sci_tf.presets import DEFAULT_PRESET, PRESETS
from sci_tf.train_command import TRAIN_COMMAND
from train.errors import NotAvailableError
from train.registry import ModelSpec

_ORIGINAL_SUFFIXES = (".pt", ".pth", ".npz")


def build_enhancer(preset: str | None = None, weights: str | os.PathLike | None = None,
                   fused: bool = True) -> SCIEnhancer:
    """The enhancer from `weights` (an SCIEnhancer `.weights.h5`, or an original `.pt`/`.npz` state dict
    converted on the fly) or else from `preset` (default "medium"). By default its inference form
    (`SCIEnhancer.fuse()`: BatchNorm folded, width-packed where the width allows; the same output, faster),
    which `llie enhance` and `llie export` run; `fused=False` keeps the model as trained."""
    if weights is not None and preset is not None:
        raise NotAvailableError("SCI: give a preset or a weights file, not both")
    if weights is None:
        enhancer = SCIEnhancer.from_preset(preset or DEFAULT_PRESET)
    elif Path(weights).suffix in _ORIGINAL_SUFFIXES:  # the authors' format: their licence travels on
        enhancer = SCIEnhancer(from_authors=True)
        load_state_dict(enhancer, read_state_dict(weights), source=str(weights))
    else:
        enhancer = SCIEnhancer.from_weights(weights)
    return enhancer.fuse() if fused else enhancer


# === Config ===

SPEC = ModelSpec(
    name="sci",
    summary="SCI (Ma et al., CVPR 2022): self-calibrated illumination learning; tiny, fast, unsupervised",
    build_enhancer=build_enhancer,
    presets=tuple(PRESETS),
    default_preset=DEFAULT_PRESET,
    add_convert_arguments=add_convert_arguments,
    run_convert=run_convert,
    train_commands=(TRAIN_COMMAND,),
)
