"""Converter from the authors' PyTorch state dicts (`weights/*.pt`, or numpy `*_state_dict.npz` twins) to Keras.

Layout of the original state dict (PyTorch `nn.Sequential` indices; conv weights OIHW → Keras HWIO):
    enhance.in_conv.0 (Conv)  enhance.conv.0 (Conv)  enhance.conv.1 (BN)  enhance.out_conv.0 (Conv)
    calibrate.in_conv.0 (Conv) .1 (BN)  calibrate.convs.0 (Conv) .1 (BN) .3 (Conv) .4 (BN)  calibrate.out_conv.0
Aliased keys (the same module appended to `blocks` several times, original quirk 2): `enhance.blocks.{k}.*`
repeats `enhance.conv.*` and `calibrate.blocks.{k}.*` repeats `calibrate.convs.*`; they must be identical.
BN `num_batches_tracked` is accepted and ignored (Keras does not count batches; momentum is fixed). Reading
(`.pt` through torch when installed, else torch-free; or `.npz`) and the name and shape checks are
`train.torch_weights`'.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Mapping

import keras
import numpy as np

from sci_tf.enhancer import FROM_AUTHORS_ATTRIBUTE, SCIEnhancer
from sci_tf.model import SCI
from sci_tf.networks import CalibrateNetwork, EnhanceNetwork
from sci_tf.presets import LICENSE_FILE, LICENSE_NOTICE, PRESETS, WEIGHTS_DIR
from train.callbacks import save_weights_atomically, weights_output_path
from train.errors import WeightsMismatchError
from train.export import ship_license_notice
from train.torch_weights import assign_state_dict, read_state_dict


def _enhance_modules(net: EnhanceNetwork) -> dict[str, keras.layers.Layer]:
    return {"enhance.in_conv.0": net.in_conv, "enhance.conv.0": net.block.conv, "enhance.conv.1": net.block.norm,
            "enhance.out_conv.0": net.out_conv}


def _calibrate_modules(net: CalibrateNetwork) -> dict[str, keras.layers.Layer]:
    return {"calibrate.in_conv.0": net.in_conv.conv, "calibrate.in_conv.1": net.in_conv.norm,
            "calibrate.convs.0": net.block_first.conv, "calibrate.convs.1": net.block_first.norm,
            "calibrate.convs.3": net.block_second.conv, "calibrate.convs.4": net.block_second.norm,
            "calibrate.out_conv.0": net.out_conv}


def torch_modules(model: SCI | SCIEnhancer) -> dict[str, keras.layers.Layer]:
    """PyTorch module name → Keras Conv2D / BatchNormalization layer of an `SCI` or `SCIEnhancer`."""
    modules = _enhance_modules(model.enhance)
    if isinstance(model, SCI):
        modules.update(_calibrate_modules(model.calibrate))
    return modules


def torch_aliases(model: SCI | SCIEnhancer) -> dict[str, str]:
    """Aliased module prefix → canonical one: `enhance.blocks.{k}` → `enhance.conv`, `calibrate.blocks.{k}` →
    `calibrate.convs` (the same module object appended to `blocks`)."""
    aliases = {f"enhance.blocks.{k}": "enhance.conv" for k in range(model.enhance.num_layers)}
    if isinstance(model, SCI):
        aliases.update({f"calibrate.blocks.{k}": "calibrate.convs" for k in range(model.calibrate.num_layers)})
    return aliases


def _drop_aliases(state: Mapping[str, np.ndarray], aliases: dict[str, str], source: str) -> dict[str, np.ndarray]:
    """`state` without the aliased copies, after checking that each equals the tensor it repeats."""
    kept = {}
    for name, value in state.items():
        module, _, rest = name.rpartition(".")  # e.g. "enhance.blocks.0.1" + "running_var"
        block, _, index = module.rpartition(".")
        if block in aliases:
            canonical = f"{aliases[block]}.{index}.{rest}"
            if canonical in state and not np.array_equal(np.asarray(value), np.asarray(state[canonical])):
                raise WeightsMismatchError(f"{source}: tensor {name} should repeat {canonical} but differs")
            continue
        kept[name] = value
    return kept


def load_state_dict(model: SCI | SCIEnhancer, state: Mapping[str, np.ndarray], *, source: str = "state dict") -> None:
    """Assigns an original state dict to `model` (built here if needed), after validating every name and shape.

    An `SCIEnhancer` takes the `enhance.*` tensors and ignores `calibrate.*` (as the original `Finetunemodel`
    does); an `SCI` needs both. Raises `WeightsMismatchError` naming the missing, unexpected, wrongly shaped
    or inconsistent (aliased copies that differ) tensor; nothing is assigned then.
    """
    if not model.built:
        model.build()
    state = _drop_aliases(state, torch_aliases(model), source)
    if isinstance(model, SCIEnhancer):
        state = {name: value for name, value in state.items() if not name.startswith("calibrate.")}
    assign_state_dict(torch_modules(model), state, source=source)


def convert_file(src: str | os.PathLike, dst: str | os.PathLike, target: str = "enhancer") -> Path:
    """Converts an original checkpoint into `dst` (.weights.h5) for an `SCIEnhancer` ("enhancer", the
    deployable part) or the full training model `SCI` ("full"), recording that the weights are the authors'
    (`SCIEnhancer.from_weights` reads it back: their licence travels on). Returns `dst`."""
    if target not in ("enhancer", "full"):
        raise ValueError(f"target must be 'enhancer' or 'full', got {target!r}")
    model = SCIEnhancer() if target == "enhancer" else SCI()
    load_state_dict(model, read_state_dict(src), source=str(src))
    # Atomic: a failed conversion never leaves a half-written dst.
    return save_weights_atomically(model, dst, attributes={FROM_AUTHORS_ATTRIBUTE: True})


def export_presets(reference_weights_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> None:
    """Regenerates the shipped presets: `<name>_state_dict.npz` → `sci_tf/weights/<name>.weights.h5` (enhancer
    weights only), plus the MIT licence file that must travel with them."""
    source = Path(reference_weights_dir)
    target = Path(out_dir) if out_dir is not None else WEIGHTS_DIR
    for name, preset in PRESETS.items():
        converted = convert_file(source / f"{name}_state_dict.npz", target / preset["file"], target="enhancer")
    ship_license_notice(source / LICENSE_FILE, converted)


# === CLI (`llie convert sci`) ===


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `llie convert sci SRC --out DST.weights.h5 [--full]`."""
    parser.add_argument("src", help="original checkpoint: weights/<name>.pt or <name>_state_dict.npz")
    parser.add_argument("--out", required=True, type=weights_output_path,
                        help=f"output file, must end in .weights.h5; the authors' {LICENSE_FILE} is written "
                             "beside it")
    parser.add_argument("--full", action="store_true",
                        help="convert the whole training network (SCI: enhance + calibrate) instead of the "
                             "SCIEnhancer only")


def run_convert(args: argparse.Namespace) -> int:
    """`llie convert sci SRC --out DST.weights.h5 [--full]`: the weights and the authors' MIT licence beside."""
    out = convert_file(args.src, args.out, target="full" if args.full else "enhancer")
    notice = ship_license_notice(LICENSE_NOTICE, out)
    print(f"wrote {out} and its licence {notice}")
    return 0
