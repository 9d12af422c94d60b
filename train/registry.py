"""The model registry: one entry per model name, so the CLI, export, tiling and evaluation are written once.

Each model package exposes `SPEC: ModelSpec` in its `spec` module; built-in entries are imported lazily, so
`llie --help` does not import TensorFlow and a broken model package only breaks its own commands. A fourth
model is one `register(ModelSpec(...))` call (or one line in `_BUILTIN`).

Enhancer contract (see ../shared/DESIGN.md): `build_enhancer(preset=..., weights=...)` returns a `keras.Model`
whose `call(image, **extras)` takes float32 NHWC in [0,1] of any H×W, batch ≥ 1, and returns the enhanced image
in [0,1] with the same shape. Each `ExtraInput` is one float32 scalar per image, passed as a keyword tensor of
shape (N,) (KinD's `ratio`). The enhancer also has a `license_notice` attribute: the path of the licence file
that must travel with anything converted or exported from its weights (SCI's presets and the authors' SCI or
EnlightenGAN weights), or None when the weights carry no such obligation; `llie convert` and `llie export` ship
it through `train.export.ship_license_notice`.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
from typing import Any, Callable

from train.errors import NotAvailableError

_BUILTIN = {
    "sci": "sci_tf.spec",
    "kind": "kind_tf.spec",
    "enlightengan": "enlighten_tf.spec",
}
_REGISTERED: dict[str, "ModelSpec"] = {}


@dataclasses.dataclass(frozen=True)
class ExtraInput:
    """A per-image float32 scalar the enhancer takes besides the image (e.g. KinD's exposure `ratio`)."""

    name: str
    default: float
    help: str


@dataclasses.dataclass(frozen=True)
class TrainCommand:
    """One `llie train <name>` subcommand: flags added to its parser, and the function that runs it."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Any]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything the chassis needs to know about one model."""

    name: str
    summary: str
    build_enhancer: Callable[..., Any]  # (preset: str | None = None, weights: str | None = None) -> keras.Model
    presets: tuple[str, ...] = ()
    default_preset: str | None = None
    extra_inputs: tuple[ExtraInput, ...] = ()
    add_convert_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    run_convert: Callable[[argparse.Namespace], Any] | None = None
    train_commands: tuple[TrainCommand, ...] = ()
    # Optional: enhancer-specific whole-image pre-processing needed before tiling (e.g. KinD's global min-max
    # normalisation), returning (prepared image, keyword arguments for the enhancer on each tile).
    prepare_for_tiling: Callable[..., Any] | None = None
    # Optional: undoes a size change of `prepare_for_tiling` (e.g. EnlightenGAN's padding to its pooling grid):
    # (tiled output of the prepared image, the original (H, W, 3) image) → the (H, W, 3) output.
    finish_tiling: Callable[[Any, Any], Any] | None = None
    # Optional: extras derived from the ground truth for `llie evaluate --protocol gt-ratio` (e.g. KinD's LOL-mode
    # ratio, computed by the loaded enhancer's DecomNet): (enhancer, low (1,H,W,3), high (1,H,W,3)) float32 [0,1]
    # → {extra name: float32 array of shape (1,)}.
    extras_from_reference: Callable[..., Any] | None = None
    # Optional: the model scored under `llie evaluate --protocol gt-ratio`, built from the loaded enhancer and
    # sharing its networks (no weight copies), e.g. KinD's LOL mode (evaluate_LOLdataset.py); default: the loaded
    # enhancer itself. (enhancer) -> enhancer with the same call contract.
    reference_enhancer: Callable[[Any], Any] | None = None
    # Tiling (`llie enhance --tile`, `train.tiling`): tiles start on multiples of `tile_alignment`, the model's
    # pooling grid (2^poolings: the output at a pixel depends on the pixel's position modulo it), and
    # `tile_overlap` is the default --tile-overlap (context per side), chosen from the model's receptive field.
    tile_alignment: int = 1
    tile_overlap: int = 32


def register(spec: ModelSpec) -> None:
    """Add (or replace) a model entry."""
    _REGISTERED[spec.name] = spec


def names() -> list[str]:
    """All model names, built-in and registered."""
    return sorted(set(_BUILTIN) | set(_REGISTERED))


def get(name: str) -> ModelSpec:
    """The spec of model `name`; `NotAvailableError` if unknown or its package is not implemented yet."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in _BUILTIN:
        raise NotAvailableError(f"unknown model '{name}' (known: {', '.join(names())})")
    try:
        module = importlib.import_module(_BUILTIN[name])
    except ModuleNotFoundError as err:
        if err.name == _BUILTIN[name]:
            raise NotAvailableError(f"model '{name}' is not available yet in this version") from err
        raise
    _REGISTERED[name] = module.SPEC
    return module.SPEC


def available() -> list[str]:
    """Names whose package is implemented (importable)."""
    found = []
    for name in names():
        try:
            get(name)
        except NotAvailableError:
            continue
        found.append(name)
    return found
