"""Registry entry of KinD: enhancer builder (weights the user converts), `--ratio`, converter, tiling hook."""

from __future__ import annotations

import os
from pathlib import Path

from kind_tf.convert import add_convert_arguments, convert_all, missing_networks, run_convert
from kind_tf.pipeline import DEFAULT_RATIO, KinD, normalize_for_tiling
from kind_tf.train_commands import TRAIN_COMMANDS
from train.callbacks import load_weights_file
from train.errors import NotAvailableError, WeightsMismatchError
from train.registry import ExtraInput, ModelSpec

_CONVERT_HINT = ("KinD's original weights carry no licence, so none ship with this project: convert your copy "
                 "with `llie convert kind --checkpoint-dir <KinD>/checkpoint --out kind.weights.h5` and pass "
                 "--weights kind.weights.h5")


def build_enhancer(preset: str | None = None, weights: str | os.PathLike | None = None,
                   mode: str = "evaluate") -> KinD:
    """A built `KinD` loaded from `weights`: a `.weights.h5` from `llie convert kind`, or the official
    `checkpoint/` folder itself (converted on the fly). There are no presets."""
    if preset is not None:
        raise NotAvailableError(f"KinD has no preset '{preset}' (it has none). {_CONVERT_HINT}")
    if weights is None:
        raise NotAvailableError(f"KinD needs weights. {_CONVERT_HINT}")
    path = Path(weights)
    if path.is_dir():
        return convert_all(path, mode=mode)
    if not path.is_file():
        raise WeightsMismatchError(f"{path}: no such weights file. {_CONVERT_HINT}")
    missing = missing_networks(path)
    if missing:
        raise WeightsMismatchError(f"{path}: converted with --allow-partial, it lacks {', '.join(missing)}, so it "
                                   "cannot enhance; convert again with every network (e.g. --restoration "
                                   "<Restoration_net_train/ or a trained final.weights.h5>)")
    kind = KinD(mode=mode)
    kind.build()
    load_weights_file(kind, path, "KinD")
    return kind


# === Config ===

SPEC = ModelSpec(
    name="kind",
    summary="KinD (Zhang et al., ACM MM 2019): Retinex decomposition, reflectance restoration, "
            "illumination adjustment",
    build_enhancer=build_enhancer,
    presets=(),
    default_preset=None,
    extra_inputs=(
        ExtraInput("ratio", DEFAULT_RATIO,
                   "illumination adjustment ratio (brightening strength; the original evaluate.py uses 5.0)"),
    ),
    add_convert_arguments=add_convert_arguments,
    run_convert=run_convert,
    train_commands=TRAIN_COMMANDS,
    prepare_for_tiling=normalize_for_tiling,
    # `llie evaluate --protocol gt-ratio` reproduces evaluate_LOLdataset.py: the ratio from the ground truth's
    # decomposition, and the LOL-mode output restored·adjusted (no grey guide, no fusion with the input).
    extras_from_reference=lambda kind, low, high: {"ratio": kind.lol_ratio(low, high)},
    reference_enhancer=lambda kind: kind.with_mode("lol"),
    # RestorationNet pools 4 times (DecomNet twice): the output depends on a pixel's position modulo 16.
    # Overlap 96 (context per side): the effective receptive radius is ~112 px, but its far taps carry little
    # weight; on the e2e images 8-bit tiled outputs stay within 2 grey levels of whole-image ones (64: up to 8).
    tile_alignment=16,
    tile_overlap=96,
)
