"""Loads the fixtures produced by the original implementations (see ../shared/reference/<model>/README.md).

`LLIE_REFERENCE_DIR` (default `../shared/reference`, relative to the repository root) locates them. When a file is
missing the test is skipped with the reason, unless `LLIE_REQUIRE_REFERENCE=1` (CI), where it fails instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def reference_dir() -> Path:
    """The fixture root folder."""
    configured = os.environ.get("LLIE_REFERENCE_DIR", "../shared/reference")
    path = Path(configured)
    return path if path.is_absolute() else (REPO_ROOT / path).resolve()


def shared_dir() -> Path:
    """`../shared` (parent of the reference folder): real data in `data/`."""
    return reference_dir().parent


def _missing(what: str) -> None:
    message = f"reference fixture {what} is missing (set LLIE_REFERENCE_DIR)"
    if os.environ.get("LLIE_REQUIRE_REFERENCE") == "1":
        pytest.fail(message + " and LLIE_REQUIRE_REFERENCE=1", pytrace=False)
    pytest.skip(message)


def reference_path(model: str, name: str) -> Path:
    """Path of `<root>/<model>/<name>` (file or folder); skip/fail as configured when it is absent."""
    path = reference_dir() / model / name
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
