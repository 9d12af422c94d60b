"""Loads the fixtures produced by the original implementations (see ../shared/reference/<model>/README.md).

`LLIE_REFERENCE_DIR` (default `../shared/reference`, relative to the repository root) locates them. When a file is
missing the test is skipped with the reason, unless `LLIE_REQUIRE_REFERENCE=1` (CI), where it fails instead.

A hidden fixture variant (other sizes, ratios and seeds) may stand in for the public one. It carries numbers only
(kind/README.md: "no weight arrays there: use this folder's weights"), so the weight files, checkpoints and e2e
image folders named in `PUBLIC_ASSETS` fall back to the public `../shared/reference` when the configured root lacks
them, and real data (`../shared/data`) is found beside whichever of the two roots has it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PUBLIC_REFERENCE_DIR = (REPO_ROOT / "../shared/reference").resolve()
# First path component of the fixtures that only the public folder holds (weights and real-image runs).
PUBLIC_ASSETS = ("checkpoints", "weights", "e2e")


def reference_dir() -> Path:
    """The fixture root folder."""
    configured = os.environ.get("LLIE_REFERENCE_DIR", "../shared/reference")
    path = Path(configured)
    return path if path.is_absolute() else (REPO_ROOT / path).resolve()


def shared_dir() -> Path:
    """`../shared`: real data in `data/`, beside the configured fixture root, else beside the public one."""
    beside_configured = reference_dir().parent
    return beside_configured if (beside_configured / "data").is_dir() else PUBLIC_REFERENCE_DIR.parent


def _missing(what: str) -> None:
    message = f"reference fixture {what} is missing (set LLIE_REFERENCE_DIR)"
    if os.environ.get("LLIE_REQUIRE_REFERENCE") == "1":
        pytest.fail(message + " and LLIE_REQUIRE_REFERENCE=1", pytrace=False)
    pytest.skip(message)


def reference_path(model: str, name: str) -> Path:
    """Path of `<root>/<model>/<name>` (file or folder); skip/fail as configured when it is absent.

    Names under `PUBLIC_ASSETS` (weights, checkpoints, e2e images) fall back to the public fixture folder.
    """
    path = reference_dir() / model / name
    if not path.exists() and Path(name).parts[0] in PUBLIC_ASSETS:
        path = PUBLIC_REFERENCE_DIR / model / name
    if not path.exists():
        _missing(str(path))
    return path


def reference(model: str, name: str) -> dict[str, np.ndarray]:
    """Arrays of `<root>/<model>/<name>.npz` as a dict (loaded eagerly, no pickle)."""
    path = reference_path(model, name if name.endswith(".npz") else f"{name}.npz")
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def shared_data_path(name: str) -> Path:
    """Path under `../shared/data`; skip/fail as configured when it is absent."""
    path = shared_dir() / "data" / name
    if not path.exists():
        _missing(str(path))
    return path
