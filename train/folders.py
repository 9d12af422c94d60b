"""Dataset folders: find the images and pairs, and check them before any tf.data pipeline is built.

Everything here is eager and cheap (directory listings and image headers, no pixel decoding), so a wrong
folder, unmatched names, a non-image file or a pair of different sizes fails at once, naming the file, instead
of hours into training. Only what needs the pixels (a truncated file body) is found later, when the pipeline
reads the file.

Accepted layouts (folder names matched case-insensitively):

- paired LOL-v1 `<root>/our485|eval15/{low,high}`, LOL-v2 `<root>/Train|Test/{Low,Normal}`, or a folder that
  directly holds `low/high` or `Low/Normal`;
- unpaired EnlightenGAN `<root>/{trainA,trainB}` (A = low-light, B = normal-light), or two explicit folders;
- low-only (SCI): one folder of images.

Files without an image suffix (README.txt, .DS_Store) and hidden files (macOS `._1.png` forks) are ignored;
sub-folders are not searched.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Callable, NamedTuple, Sequence, TypeVar

from train.errors import DatasetLayoutError, ImageReadError
from train.io import IMAGE_SUFFIXES, is_image_path, read_image_size

log = logging.getLogger("train.data")

SPLITS = ("train", "eval")


class LOLLayout(NamedTuple):
    """Folder names of a paired LOL dataset, `<root>/<train|eval>/<low|high>`, as the dataset spells them."""

    train: str
    eval: str
    low: str
    high: str


# The paired layouts: LOL-v1 and LOL-v2 (read ignoring case, written as spelled here by `train.synthetic`).
LOL_LAYOUTS = {"v1": LOLLayout("our485", "eval15", "low", "high"), "v2": LOLLayout("Train", "Test", "Low", "Normal")}
# split → folder names holding it, and the (low, normal-light) folder names, in lower case for `_child_folder`.
_SPLIT_FOLDERS = {split: tuple(getattr(layout, split).lower() for layout in LOL_LAYOUTS.values()) for split in SPLITS}
_PAIR_FOLDERS = tuple((layout.low.lower(), layout.high.lower()) for layout in LOL_LAYOUTS.values())
# LOL-v2 Real_captured names its pairs low00001.png / normal00001.png.
_PAIR_PREFIX = re.compile(r"^(low|high|normal)[_-]?", re.IGNORECASE)

Item = TypeVar("Item")


def _natural_key(path: Path) -> list:
    """Sort key putting 2.png before 10.png."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _require_folder(folder: Path) -> None:
    if not folder.exists():
        raise DatasetLayoutError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise DatasetLayoutError(f"{folder}: not a folder")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in `folder`, in natural name order (2.png before 10.png).

    Raises `DatasetLayoutError` if the folder is missing or holds no image.
    """
    folder = Path(folder)
    _require_folder(folder)
    images = [p for p in folder.iterdir() if is_image_path(p) and not p.name.startswith(".") and p.is_file()]
    if not images:
        raise DatasetLayoutError(f"{folder}: no images in this folder (looked for {', '.join(IMAGE_SUFFIXES)})")
    return sorted(images, key=_natural_key)


def _child_folder(parent: Path, name: str) -> Path | None:
    """The sub-folder of `parent` called `name`, ignoring case."""
    exact = parent / name
    if exact.is_dir():
        return exact
    matches = [p for p in parent.iterdir() if p.is_dir() and p.name.lower() == name]
    return matches[0] if matches else None


def lol_folders(root: str | os.PathLike, split: str = "train") -> tuple[Path, Path]:
    """(low folder, normal-light folder) of a LOL dataset for `split` ("train": our485/Train, "eval": eval15/Test).

    A root that directly holds low/high (or Low/Normal) serves every split.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    _require_folder(root)
    bases = [found for name in _SPLIT_FOLDERS[split] if (found := _child_folder(root, name)) is not None]
    for base in [*bases, root]:
        for low_name, high_name in _PAIR_FOLDERS:
            low, high = _child_folder(base, low_name), _child_folder(base, high_name)
            if low is not None and high is not None:
                return low, high
    v1, v2 = (getattr(LOL_LAYOUTS[version], split) for version in ("v1", "v2"))
    raise DatasetLayoutError(
        f"{root}: not a LOL dataset folder; expected {v1}/{{low,high}} (LOL-v1), {v2}/{{Low,Normal}} "
        "(LOL-v2) or low/high directly inside it"
    )


def _by_key(files: Sequence[Path], key: Callable[[Path], str]) -> dict[str, Path] | None:
    """Files indexed by `key`; None if two files share a key."""
    index: dict[str, Path] = {}
    for path in files:
        if index.setdefault(key(path), path) != path:
            return None
    return index


def duplicate_stems(files: Sequence[Path]) -> list[Path]:
    """The files whose name stem an earlier file of `files` already has (1.jpg after 1.png), in order."""
    seen: dict[str, Path] = {}
    return [path for path in files if seen.setdefault(path.stem, path) != path]


def match_pairs(low_files: Sequence[Path], high_files: Sequence[Path], *, skip_bad: bool = False
                ) -> list[tuple[Path, Path]]:
    """Pair two file lists by name stem (1.png ↔ 1.png, or 1.png ↔ 1.jpg; LOL-v2's low1 ↔ normal1).

    Raises `DatasetLayoutError` naming the files without a partner, unless `skip_bad`, which logs and drops
    them. Two files of one folder with the same stem (1.png and 1.jpg) are always an error: which is meant?
    """
    for files in (low_files, high_files):
        if duplicates := duplicate_stems(files):
            raise DatasetLayoutError(f"{duplicates[0]}: another image in {duplicates[0].parent} has the same name "
                                     "stem, so its partner is ambiguous")
    # The naming scheme that pairs the most files: plain stems, or stems without LOL-v2's low/normal prefix (not a
    # candidate if two files of one folder then collide). Only the files it leaves without a partner are orphans.
    candidates = []
    for key in (lambda p: p.stem, lambda p: _PAIR_PREFIX.sub("", p.stem)):
        lows, highs = _by_key(low_files, key), _by_key(high_files, key)
        if lows is not None and highs is not None:
            candidates.append((lows, highs))
    lows, highs = max(candidates, key=lambda scheme: len(scheme[0].keys() & scheme[1].keys()))
    unmatched = ([path for name, path in lows.items() if name not in highs]
                 + [path for name, path in highs.items() if name not in lows])
    if unmatched and not skip_bad:
        listed = ", ".join(str(p) for p in unmatched[:5]) + (" ..." if len(unmatched) > 5 else "")
        raise DatasetLayoutError(f"{len(unmatched)} image(s) have no partner of the same name in the other "
                                 f"folder: {listed}")
    for path in unmatched:
        log.warning("skipping %s: no image of the same name in the other folder", path)
    return [(lows[name], highs[name]) for name in lows if name in highs]


def find_lol_pairs(root: str | os.PathLike, split: str = "train", *, skip_bad: bool = False
                   ) -> list[tuple[Path, Path]]:
    """(low, normal-light) file pairs of a LOL dataset split, matched by name, in natural name order."""
    low_dir, high_dir = lol_folders(root, split)
    pairs = match_pairs(list_images(low_dir), list_images(high_dir), skip_bad=skip_bad)
    if not pairs:
        raise DatasetLayoutError(f"{low_dir} and {high_dir}: no pair of images with the same name")
    return pairs


def unpaired_folders(root: str | os.PathLike) -> tuple[Path, Path]:
    """(trainA, trainB) of an EnlightenGAN dataset folder: A holds the low-light, B the normal-light images."""
    root = Path(root)
    _require_folder(root)
    low, normal = _child_folder(root, "traina"), _child_folder(root, "trainb")
    if low is None or normal is None:
        raise DatasetLayoutError(f"{root}: expected trainA/ (low-light) and trainB/ (normal-light) inside it, "
                                 "or pass the normal-light folder too")
    return low, normal


# === Header checks ===


def _size_error(path: Path, size: tuple[int, int], min_size: int | None) -> None:
    if min_size is not None and min(size) < min_size:
        raise DatasetLayoutError(f"{path}: {size[1]}x{size[0]} is smaller than the {min_size}x{min_size} patch")


def _keep_valid(items: Sequence[Item], check: Callable[[Item], None], skip_bad: bool, what: str) -> list[Item]:
    """The items `check` accepts; the first rejection is raised unless `skip_bad`, which logs each one."""
    kept = []
    for item in items:
        try:
            check(item)
        except (ImageReadError, DatasetLayoutError) as err:
            if not skip_bad:
                raise
            log.warning("skipping %s", err)
            continue
        kept.append(item)
    if not kept:
        raise DatasetLayoutError(f"no usable {what} left after skipping bad files")
    return kept


def check_images(paths: Sequence[Path], *, min_size: int | None = None, skip_bad: bool = False) -> list[Path]:
    """The readable images of `paths` (headers only), each at least `min_size` on its shorter side.

    Raises `ImageReadError` / `DatasetLayoutError` naming the file, unless `skip_bad` (logs and drops it).
    """
    return _keep_valid(paths, lambda path: _size_error(path, read_image_size(path), min_size), skip_bad, "images")


def check_same_size(low: Path, low_size: Sequence[int], high: Path, high_size: Sequence[int]) -> None:
    """Raise `DatasetLayoutError` naming both files if the (height, width, ...) sizes of a pair differ."""
    if tuple(low_size[:2]) != tuple(high_size[:2]):
        raise DatasetLayoutError(f"{low} ({low_size[1]}x{low_size[0]}) and {high} ({high_size[1]}x{high_size[0]})"
                                 ": the images of a pair must have the same size")


def _check_pair(pair: tuple[Path, Path], min_size: int | None) -> None:
    low, high = pair
    low_size = read_image_size(low)
    check_same_size(low, low_size, high, read_image_size(high))
    _size_error(low, low_size, min_size)


def check_pairs(pairs: Sequence[tuple[Path, Path]], *, min_size: int | None = None, skip_bad: bool = False
                ) -> list[tuple[Path, Path]]:
    """The pairs whose two images are readable (headers only), of one size, at least `min_size` on a side.

    A size mismatch raises `DatasetLayoutError` naming both files; `skip_bad` logs and drops bad pairs instead.
    """
    return _keep_valid(pairs, lambda pair: _check_pair(pair, min_size), skip_bad, "pairs")
