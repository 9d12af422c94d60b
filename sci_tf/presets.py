"""The authors' pretrained SCI weights, shipped as `SCIEnhancer` presets.

Licence: the original code and weights are under the MIT License, "Copyright (c) 2022 Tengyu Ma"
(github.com/vis-opt-group/SCI, commit 9d28a3f1); the notice travels with the files in
`sci_tf/weights/LICENSE-SCI-MIT.txt`.

How the files were produced: `sci_tf.convert.export_presets(<reference>/sci/weights)` converted the authors'
`weights/{easy,medium,difficult}.pt` (via their byte-identical numpy twins `<name>_state_dict.npz`) into
`sci_tf/weights/<name>.weights.h5`, keeping only the EnhanceNetwork (what test.py deploys; ~2 KB of weights),
and recorded in each file that the weights are the authors' (`SCIEnhancer.license_notice`: the notice then
travels with `llie convert` and `llie export` outputs).
"""

from __future__ import annotations

from pathlib import Path

from train.errors import NotAvailableError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
LICENSE_FILE = "LICENSE-SCI-MIT.txt"
# The notice that travels with anything made from the authors' weights (`SCIEnhancer.license_notice`).
LICENSE_NOTICE = WEIGHTS_DIR / LICENSE_FILE
DEFAULT_PRESET = "medium"
PRESETS = {
    "easy": {"file": "easy.weights.h5", "description": "the authors' weights for mildly dark scenes"},
    "medium": {"file": "medium.weights.h5", "description": "the authors' weights for medium darkness (default)"},
    "difficult": {"file": "difficult.weights.h5", "description": "the authors' weights for very dark scenes"},
}


def preset_weights_path(name: str) -> Path:
    """Path of the `.weights.h5` file of preset `name`; `NotAvailableError` for an unknown or missing preset."""
    if name not in PRESETS:
        raise NotAvailableError(f"unknown SCI preset '{name}' (known: {', '.join(PRESETS)})")
    path = WEIGHTS_DIR / PRESETS[name]["file"]
    if not path.is_file():
        raise NotAvailableError(f"SCI preset '{name}': weights file {path} is not installed")
    return path
