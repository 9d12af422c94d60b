"""Converts the authors' TF1 checkpoints (Saver V2) into the Keras networks, without building any TF1 graph.

The official repository ships `checkpoint/decom_net_train/` and `checkpoint/illumination_adjust_net_train/`;
the Restoration-Net weights are distributed separately (`Restoration_net_train/`). None carries a licence, so
this project never ships them or weights derived from them: users convert their own copy with
`llie convert kind --checkpoint-dir checkpoint/ --out kind.weights.h5`. Any network may instead come from a
Keras `.weights.h5` of it alone (a trained stage) or from a KinD one (`load_network`), and `--allow-partial`
converts a subset into a file marked with what it lacks (`missing_networks`), which the enhancer refuses and
`--decom-weights` accepts.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from kind_tf.networks import DecomNet, IlluminationAdjustNet, RestorationNet, TF1Network
from kind_tf.pipeline import KinD
from train.callbacks import load_weights_file, read_weights_attributes, save_weights_atomically, weights_output_path
from train.errors import WeightsMismatchError

# The reference fixtures' synthetic Restoration-Net (formula weights for parity tests, not trained).
SYNTHETIC_RESTORATION = "Restoration_net_train_synthetic"
# Sub-folder names of the official `checkpoint/` folder, per network (first existing one wins).
CHECKPOINT_FOLDERS = {
    "decom": ("decom_net_train",),
    "restoration": ("Restoration_net_train", SYNTHETIC_RESTORATION),
    "adjust": ("illumination_adjust_net_train",),
}
# HDF5 root attribute of a `.weights.h5` from `llie convert kind --allow-partial`: the networks not converted.
MISSING_ATTRIBUTE = "llie_kind_missing_networks"
# TF1 scope of each network → its name here (the key of CHECKPOINT_FOLDERS; the KinD attribute `<name>_net`).
_NETWORK_KEYS = {DecomNet.TF1_SCOPE: "decom", RestorationNet.TF1_SCOPE: "restoration",
                 IlluminationAdjustNet.TF1_SCOPE: "adjust"}
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


def load_network(network: TF1Network, path: str | os.PathLike) -> None:
    """Loads the built `network` (DecomNet, RestorationNet or IlluminationAdjustNet) from whichever source it
    may come from:

    - a TF1 checkpoint folder or prefix (e.g. the official `decom_net_train/`);
    - the official `checkpoint/` folder holding the network's sub-folder (`CHECKPOINT_FOLDERS`);
    - a Keras `.weights.h5` of this network alone (e.g. `llie train kind-restoration`'s final.weights.h5);
    - a KinD `.weights.h5` (`llie convert kind`, `llie train kind`), unless it records this network as
      missing (`--allow-partial`).

    `WeightsMismatchError` naming the file otherwise.
    """
    key = _NETWORK_KEYS[network.TF1_SCOPE]
    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        folder = checkpoint_folders(path)[key] if path.is_dir() else None
        load_tf1_checkpoint(network, folder or path)
        return
    missing = missing_networks(path)
    if key in missing:
        raise WeightsMismatchError(f"{path}: converted with --allow-partial without the {network.TF1_SCOPE}")
    if not missing:  # a partial file is always a whole KinD's
        try:
            load_weights_file(network, path, network.TF1_SCOPE)
            return
        except WeightsMismatchError:
            pass  # not this network alone: maybe a whole KinD
    kind = KinD()
    kind.build()
    load_weights_file(kind, path, f"{network.TF1_SCOPE} or KinD")
    network.set_weights(getattr(kind, f"{key}_net").get_weights())


def convert_checkpoints(
    decom_dir: str | os.PathLike | None = None,
    restoration_dir: str | os.PathLike | None = None,
    adjust_dir: str | os.PathLike | None = None,
    *,
    mode: str = "evaluate",
) -> KinD:
    """A built `KinD` whose given networks are loaded from any source `load_network` takes (the others keep
    fresh weights)."""
    kind = KinD(mode=mode)
    kind.build()
    for network, path in ((kind.decom_net, decom_dir), (kind.restoration_net, restoration_dir),
                          (kind.adjust_net, adjust_dir)):
        if path is not None:
            load_network(network, path)
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


def checkpoint_sources(
    checkpoint_dir: str | os.PathLike | None = None,
    *,
    decom: str | os.PathLike | None = None,
    restoration: str | os.PathLike | None = None,
    adjust: str | os.PathLike | None = None,
) -> dict[str, Path | None]:
    """Per network, where it loads from: its own argument, else its sub-folder of the official `checkpoint/`
    folder `checkpoint_dir`, else None (missing)."""
    folders = checkpoint_folders(checkpoint_dir) if checkpoint_dir else dict.fromkeys(CHECKPOINT_FOLDERS)
    overrides = {"decom": decom, "restoration": restoration, "adjust": adjust}
    return {net: Path(overrides[net]) if overrides[net] else folder for net, folder in folders.items()}


def missing_sources(sources: dict[str, Path | None]) -> list[str]:
    """The networks `sources` (from `checkpoint_sources`) has no source for."""
    return [net for net, source in sources.items() if source is None]


def missing_sources_message(missing: list[str], checkpoint_dir: str | os.PathLike | None) -> str:
    """'no checkpoint for restoration in DIR; expected sub-folder Restoration_net_train' for `missing` nets."""
    where = f"in {checkpoint_dir}" if checkpoint_dir else "(give a checkpoint folder or per-net folders)"
    return (f"no checkpoint for {', '.join(missing)} {where}; expected sub-folder(s) "
            f"{', '.join(CHECKPOINT_FOLDERS[net][0] for net in missing)}")


def is_synthetic(source: Path | None) -> bool:
    """Whether `source` is the reference fixtures' synthetic Restoration-Net (formula weights, not trained)."""
    return source is not None and source.name == SYNTHETIC_RESTORATION


def convert_all(
    checkpoint_dir: str | os.PathLike | None = None,
    *,
    decom: str | os.PathLike | None = None,
    restoration: str | os.PathLike | None = None,
    adjust: str | os.PathLike | None = None,
    mode: str = "evaluate",
) -> KinD:
    """All three networks from the official `checkpoint/` folder and/or per-net sources (these win).

    Raises `WeightsMismatchError` naming the networks whose checkpoint is missing.
    """
    sources = checkpoint_sources(checkpoint_dir, decom=decom, restoration=restoration, adjust=adjust)
    missing = missing_sources(sources)
    if missing:
        raise WeightsMismatchError(missing_sources_message(missing, checkpoint_dir))
    return convert_checkpoints(sources["decom"], sources["restoration"], sources["adjust"], mode=mode)


def missing_networks(path: str | os.PathLike) -> tuple[str, ...]:
    """The networks a KinD `.weights.h5` lacks (recorded by `llie convert kind --allow-partial`); () if it lacks
    none. `WeightsMismatchError` naming the file if it is missing or not HDF5."""
    value = read_weights_attributes(path).get(MISSING_ATTRIBUTE, "")
    return tuple(value.split(",")) if value else ()


# === CLI (`llie convert kind`) ===


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `llie convert kind`."""
    parser.add_argument("--checkpoint-dir", help="the official checkpoint/ folder holding decom_net_train/, "
                        "Restoration_net_train/ (or Restoration_net_train_synthetic/), illumination_adjust_net_train/")
    source = ("checkpoint folder (or the checkpoint/ folder holding it), a .weights.h5 of this network alone (e.g. "
              "llie train {}'s final.weights.h5) or a KinD .weights.h5; overrides --checkpoint-dir")
    parser.add_argument("--decom", help=f"DecomNet {source.format('kind-decom')}")
    parser.add_argument("--restoration", help=f"Restoration-Net {source.format('kind-restoration')}")
    parser.add_argument("--adjust", help=f"Illumination-adjust-net {source.format('kind-adjust')}")
    parser.add_argument("--allow-partial", action="store_true",
                        help="convert the networks that are present and mark the others missing in the file (the "
                             "official repository ships only decom and adjust): usable as --decom-weights of "
                             "llie train kind-restoration/kind-adjust, refused as an enhancer")
    parser.add_argument("--out", required=True, type=weights_output_path,
                        help="destination .weights.h5 (the KinD enhancer's three networks)")


def run_convert(args: argparse.Namespace) -> int:
    """Converts the networks and saves one KinD `.weights.h5` for `build_enhancer(weights=...)`, saying where
    each network came from (a warning for the synthetic Restoration-Net, a note for missing ones)."""
    sources = checkpoint_sources(args.checkpoint_dir, decom=args.decom, restoration=args.restoration,
                                 adjust=args.adjust)
    missing = missing_sources(sources)
    if missing and not args.allow_partial:
        raise WeightsMismatchError(f"{missing_sources_message(missing, args.checkpoint_dir)} (--allow-partial "
                                   "converts the others)")
    if len(missing) == len(sources):
        raise WeightsMismatchError("no network to convert: give --checkpoint-dir or --decom/--restoration/--adjust")
    kind = convert_checkpoints(sources["decom"], sources["restoration"], sources["adjust"])
    for net, source in sources.items():
        print(f"{net}: {f'loaded {source}' if source else 'MISSING (not converted: random initialisation)'}")
    if is_synthetic(sources["restoration"]):
        print(f"llie convert kind: warning: the restoration net comes from {sources['restoration']}, the SYNTHETIC "
              "parity-test weights (a formula, not trained): enhanced images will look wrong", file=sys.stderr)
    out = save_weights_atomically(kind, args.out, attributes={MISSING_ATTRIBUTE: ",".join(missing)} if missing
                                  else None)
    print(f"wrote {out}")
    if missing:
        print(f"llie convert kind: note: {out} lacks {', '.join(missing)}; it serves as --decom-weights of llie "
              "train kind-restoration / kind-adjust, not as an enhancer (convert again with the missing "
              "checkpoints, or a trained network via --restoration etc.)", file=sys.stderr)
    return 0
