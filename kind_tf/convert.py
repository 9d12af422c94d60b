"""Converts the authors' TF1 checkpoints (Saver V2) into the Keras networks, without building any TF1 graph.

The official repository ships `checkpoint/decom_net_train/` and `checkpoint/illumination_adjust_net_train/`;
the Restoration-Net weights are distributed separately (`Restoration_net_train/`). None carries a licence, so
this project never ships them or weights derived from them: users convert their own copy with
`llie convert kind --checkpoint-dir checkpoint/ --out kind.weights.h5`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from kind_tf.networks import TF1Network
from kind_tf.pipeline import KinD
from train.callbacks import save_weights_atomically
from train.errors import WeightsMismatchError

# Sub-folder names of the official `checkpoint/` folder, per network (first existing one wins).
CHECKPOINT_FOLDERS = {
    "decom": ("decom_net_train",),
    "restoration": ("Restoration_net_train", "Restoration_net_train_synthetic"),
    "adjust": ("illumination_adjust_net_train",),
}
# Optimizer slots a training Saver may have written next to the variables; they are not weights.
_SLOT_SUFFIXES = ("/Adam", "/Adam_1", "/Momentum", "/RMSProp", "/RMSProp_1")


def _checkpoint_prefix(path: str | os.PathLike) -> str:
    """A checkpoint folder (with its `checkpoint` file, or a single `*.index`) or a prefix → the prefix."""
    path = Path(path)
    if path.is_dir():
        prefix = tf.train.latest_checkpoint(str(path))
        if prefix is None:
            indexes = sorted(path.glob("*.index"))
            if len(indexes) != 1:
                raise WeightsMismatchError(f"{path}: expected one TF1 checkpoint (*.index), found {len(indexes)}")
            prefix = str(indexes[0])[: -len(".index")]
        return prefix
    if Path(f"{path}.index").is_file():
        return str(path)
    raise WeightsMismatchError(f"{path}: no TF1 checkpoint (neither a folder with one nor a prefix with .index)")


def load_tf1_checkpoint(network: TF1Network, path: str | os.PathLike) -> None:
    """Loads every variable of `network` (built) from the TF1 checkpoint at `path` (folder or prefix).

    Raises `WeightsMismatchError` naming the variable when one is missing, wrongly shaped, or when the
    checkpoint holds an unexpected variable under the network's scope (a different architecture).
    """
    prefix = _checkpoint_prefix(path)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as err:
        raise WeightsMismatchError(f"{prefix}: cannot read the TF1 checkpoint ({err})") from err
    stored = reader.get_variable_to_shape_map()
    expected = network.tf1_variables()
    scope = f"{network.TF1_SCOPE}/"
    if not any(name.startswith(scope) for name in stored):
        raise WeightsMismatchError(f"{prefix}: holds no '{network.TF1_SCOPE}' variables (wrong folder?)")
    unexpected = sorted(name for name in stored if name.startswith(scope) and name not in expected
                        and not name.endswith(_SLOT_SUFFIXES))
    if unexpected:
        raise WeightsMismatchError(f"{prefix}: unexpected variable {unexpected[0]} (of {len(unexpected)})")
    values = {}
    for name, variable in expected.items():
        if name not in stored:
            raise WeightsMismatchError(f"{prefix}: missing variable {name}")
        if tuple(stored[name]) != tuple(variable.shape):
            raise WeightsMismatchError(
                f"{prefix}: variable {name} has shape {tuple(stored[name])}, expected {tuple(variable.shape)}")
        values[name] = reader.get_tensor(name)
    for name, variable in expected.items():  # assign only once everything validated: no half-loaded network
        variable.assign(values[name].astype(np.float32))


def convert_checkpoints(
    decom_dir: str | os.PathLike | None = None,
    restoration_dir: str | os.PathLike | None = None,
    adjust_dir: str | os.PathLike | None = None,
    *,
    mode: str = "evaluate",
) -> KinD:
    """A built `KinD` whose given networks are loaded from their TF1 checkpoints (the others keep fresh weights)."""
    kind = KinD(mode=mode)
    kind.build()
    for network, path in ((kind.decom_net, decom_dir), (kind.restoration_net, restoration_dir),
                          (kind.adjust_net, adjust_dir)):
        if path is not None:
            load_tf1_checkpoint(network, path)
    return kind


def checkpoint_folders(checkpoint_dir: str | os.PathLike) -> dict[str, Path | None]:
    """The official `checkpoint/` layout → {"decom", "restoration", "adjust"} sub-folder (None when absent)."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        raise WeightsMismatchError(f"{root}: no such checkpoint folder")
    found = {}
    for net, names in CHECKPOINT_FOLDERS.items():
        found[net] = next((root / name for name in names if (root / name).is_dir()), None)
    return found


def convert_all(
    checkpoint_dir: str | os.PathLike | None = None,
    *,
    decom: str | os.PathLike | None = None,
    restoration: str | os.PathLike | None = None,
    adjust: str | os.PathLike | None = None,
    mode: str = "evaluate",
) -> KinD:
    """All three networks from the official `checkpoint/` folder and/or per-net folders (these win).

    Raises `WeightsMismatchError` naming the networks whose checkpoint is missing.
    """
    folders = checkpoint_folders(checkpoint_dir) if checkpoint_dir else dict.fromkeys(CHECKPOINT_FOLDERS)
    for net, override in (("decom", decom), ("restoration", restoration), ("adjust", adjust)):
        folders[net] = override or folders[net]
    missing = [net for net, folder in folders.items() if folder is None]
    if missing:
        where = f"in {checkpoint_dir}" if checkpoint_dir else "(give a checkpoint folder or per-net folders)"
        raise WeightsMismatchError(f"no checkpoint for {', '.join(missing)} {where}; "
                                   f"expected sub-folders {', '.join(CHECKPOINT_FOLDERS[n][0] for n in missing)}")
    return convert_checkpoints(folders["decom"], folders["restoration"], folders["adjust"], mode=mode)


# === CLI (`llie convert kind`) ===


def _weights_h5_path(text: str) -> str:
    if not text.endswith(".weights.h5"):
        raise argparse.ArgumentTypeError(f"{text}: the output name must end in .weights.h5 (Keras' weights format)")
    return text


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `llie convert kind`."""
    parser.add_argument("--checkpoint-dir", help="the official checkpoint/ folder holding decom_net_train/, "
                        "Restoration_net_train/ (or Restoration_net_train_synthetic/), illumination_adjust_net_train/")
    parser.add_argument("--decom", help="DecomNet checkpoint folder (overrides --checkpoint-dir)")
    parser.add_argument("--restoration", help="Restoration-Net checkpoint folder (overrides --checkpoint-dir)")
    parser.add_argument("--adjust", help="Illumination-adjust-net checkpoint folder (overrides --checkpoint-dir)")
    parser.add_argument("--out", required=True, type=_weights_h5_path,
                        help="destination .weights.h5 (all three networks)")


def run_convert(args: argparse.Namespace) -> int:
    """Converts all three networks and saves one `.weights.h5` for `build_enhancer(weights=...)`."""
    kind = convert_all(args.checkpoint_dir, decom=args.decom, restoration=args.restoration, adjust=args.adjust)
    out = save_weights_atomically(kind, args.out)
    print(f"wrote {out}")
    return 0
