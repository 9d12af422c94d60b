"""Synthetic low-light pairs for users without LOL: darken normal-light photos into a LOL-layout dataset.

Darkening model (Lv et al.'s MBLLEN/AgLLNet synthesis, with a sensor noise model): y = β·(α·x)^γ with
α ~ U(0.9, 1), β ~ U(0.5, 1), γ ~ U(1.5, 5) drawn once per image, then Poisson–Gaussian noise: photon shot
noise Poisson(y·photons)/photons (photons = photon count of a full-scale pixel, fewer = noisier) plus Gaussian
read noise N(0, σ²), clipped to [0,1]. Every range is configurable (`LowLightRanges`); everything is
deterministic given a seed, and each image's draw depends only on (seed, its file name), so adding photos to
the folder does not change the others.

    llie synthesize photos/ synthetic_lol/ --seed 0
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from train.errors import DatasetLayoutError, LLIEError
from train.folders import LOL_LAYOUTS, duplicate_stems, list_images
from train.io import read_image, write_image

log = logging.getLogger("train.synthetic")

# LOL-v1 holds 485 training and 15 evaluation pairs.
DEFAULT_EVAL_FRACTION = 15 / 500


@dataclasses.dataclass(frozen=True)
class LowLightRanges:
    """Ranges (low, high) of the per-image uniform draws; (v, v) fixes a value.

    photons: photon count of a full-scale pixel (shot noise; None: no shot noise). read_noise: σ of the
    Gaussian read noise, in [0,1] image units ((0, 0): none).
    """

    alpha: tuple[float, float] = (0.9, 1.0)
    beta: tuple[float, float] = (0.5, 1.0)
    gamma: tuple[float, float] = (1.5, 5.0)
    photons: tuple[float, float] | None = (1000.0, 10000.0)
    read_noise: tuple[float, float] = (0.002, 0.01)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            bounds = getattr(self, field.name)
            if not (bounds is None and field.name == "photons"):
                check_range(field.name, bounds)


def check_range(name: str, bounds: tuple[float, float]) -> None:
    """`ValueError` unless 0 <= LOW <= HIGH (and LOW > 0 for gamma and photons) for the `LowLightRanges` field
    `name`; the message names its flag (--read-noise)."""
    low, high = bounds
    positive = name in ("gamma", "photons")
    if not 0.0 <= low <= high or (positive and low == 0.0):
        raise ValueError(f"--{name.replace('_', '-')} range must satisfy 0 <= LOW <= HIGH"
                         f"{' and LOW > 0' if positive else ''}, got {low:g} {high:g}")


def synthesize_low_light(image: np.ndarray, rng: np.random.Generator, ranges: LowLightRanges = LowLightRanges()
                         ) -> np.ndarray:
    """Darken a normal-light image: β·(α·x)^γ plus Poisson–Gaussian noise (see the module docstring).

    image: float (H, W, 3) in [0,1]. Returns float32 (H, W, 3) in [0,1]. Same `rng` state ⇒ same result.
    """
    alpha = rng.uniform(*ranges.alpha)
    beta = rng.uniform(*ranges.beta)
    gamma = rng.uniform(*ranges.gamma)
    dark = beta * np.power(alpha * np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0), gamma)
    if ranges.photons is not None:
        photons = rng.uniform(*ranges.photons)
        dark = rng.poisson(dark * photons) / photons
    sigma = rng.uniform(*ranges.read_noise)
    if sigma > 0:
        dark = dark + rng.normal(0.0, sigma, size=dark.shape)
    return np.clip(dark, 0.0, 1.0).astype(np.float32)


def _image_rng(seed: int, name: str) -> np.random.Generator:
    """A generator keyed by (seed, file name): independent of the other files and of their order."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


@dataclasses.dataclass
class SyntheticLOL:
    """What `make_synthetic_lol` wrote: output PNG names per split, and the source files it skipped."""

    train: list[str]
    eval: list[str]
    skipped: list[Path]


def check_eval_fraction(value: float) -> float:
    """`value` when it is a valid evaluation fraction, in [0, 1); `ValueError` otherwise."""
    if not 0.0 <= value < 1.0:
        raise ValueError(f"must be in [0, 1), got {value:g}")
    return value


def _split(sources: list[Path], eval_fraction: float, seed: int) -> set[Path]:
    """The sources of the evaluation split: round(n·fraction) of them (at least 1), chosen by the seed."""
    try:
        check_eval_fraction(eval_fraction)
    except ValueError as err:
        raise ValueError(f"eval_fraction {err}") from None
    if eval_fraction == 0.0:
        return set()
    if len(sources) < 2:
        raise DatasetLayoutError(f"{sources[0].parent}: need at least 2 images for a training and an evaluation "
                                 "split (or eval_fraction=0)")
    count = min(max(1, round(len(sources) * eval_fraction)), len(sources) - 1)
    chosen = np.random.default_rng(seed).permutation(len(sources))[:count]
    return {sources[i] for i in chosen}


def make_synthetic_lol(
    src_dir: str | os.PathLike,
    dst_dir: str | os.PathLike,
    *,
    seed: int = 0,
    eval_fraction: float = DEFAULT_EVAL_FRACTION,
    layout: str = "v1",
    ranges: LowLightRanges = LowLightRanges(),
    skip_bad: bool = False,
    progress: bool = False,
) -> SyntheticLOL:
    """Turn a folder of normal-light photos into a paired LOL dataset of PNGs under `dst_dir`.

    layout "v1": our485/{low,high} and eval15/{low,high}; "v2": Train/{Low,Normal} and Test/{Low,Normal}.
    `high` is the photo itself, `low` its darkened copy (`synthesize_low_light`), both named <stem>.png and
    written atomically. `eval_fraction` of the photos (chosen by `seed`) go to the evaluation split. Refuses a
    destination that already holds images (a stale file could end up in the wrong split). A photo that cannot
    be read raises `ImageReadError`, unless `skip_bad`, which logs and skips it.
    """
    if layout not in LOL_LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(LOL_LAYOUTS)}, got {layout!r}")
    sources = list_images(src_dir)
    if duplicates := duplicate_stems(sources):
        path = duplicates[0]
        first = next(source for source in sources if source.stem == path.stem)
        raise DatasetLayoutError(f"{path}: {first.name} has the same name stem, and both would be written as "
                                 f"{path.stem}.png")
    train_name, eval_name, low_name, high_name = LOL_LAYOUTS[layout]
    dst_dir = Path(dst_dir)
    targets = [dst_dir / split / side for split in (train_name, eval_name) for side in (low_name, high_name)]
    for folder in targets:
        if folder.is_dir() and any(folder.iterdir()):
            raise DatasetLayoutError(f"{folder}: already holds files; choose an empty destination")
    eval_sources = _split(sources, eval_fraction, seed)
    result = SyntheticLOL(train=[], eval=[], skipped=[])
    for path in tqdm(sources, desc="synthesizing", unit="image", disable=not progress):
        try:
            high = read_image(path)
        except LLIEError as err:
            if not skip_bad:
                raise
            log.warning("skipping %s", err)
            result.skipped.append(path)
            continue
        low = synthesize_low_light(high, _image_rng(seed, path.name), ranges)
        split = eval_name if path in eval_sources else train_name
        name = f"{path.stem}.png"
        write_image(dst_dir / split / low_name / name, low, protect=(path,))
        write_image(dst_dir / split / high_name / name, high, protect=(path,))
        (result.eval if path in eval_sources else result.train).append(name)
    return result


# === Command line ===


def _fraction(text: str) -> float:
    value = float(text)
    try:
        return check_eval_fraction(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


class _Range(argparse.Action):
    """--NAME LOW HIGH: stored as a (low, high) tuple once `check_range` accepts it (argparse's usage error if not)."""

    def __call__(self, parser, namespace, values, option_string=None):
        bounds = tuple(values)
        try:
            check_range(self.dest, bounds)
        except ValueError as err:
            raise argparse.ArgumentError(None, str(err)) from err
        setattr(namespace, self.dest, bounds)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `llie synthesize`."""
    defaults = LowLightRanges()
    parser.epilog = ("low = beta*(alpha*x)^gamma + Poisson-Gaussian noise, high = the photo, both saved as PNG. "
                     "Example: llie synthesize photos/ synthetic_lol/ --seed 0, then train on synthetic_lol/ as "
                     "on LOL-v1.")
    parser.add_argument("src", type=Path, metavar="SRC",
                        help="folder of normal-light images (not searched recursively)")
    parser.add_argument("dst", type=Path, metavar="DST",
                        help="output folder (created; must not already hold images)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: same seed, same dataset (default 0)")
    parser.add_argument("--eval-fraction", type=_fraction, default=DEFAULT_EVAL_FRACTION,
                        help="fraction of the photos put in the evaluation split (default 15/500, as LOL-v1)")
    parser.add_argument("--layout", choices=sorted(LOL_LAYOUTS), default="v1",
                        help="v1: our485|eval15/{low,high} (default); v2: Train|Test/{Low,Normal}")
    for name, help_text in (("alpha", "scale before the gamma curve"), ("beta", "scale after the gamma curve"),
                            ("gamma", "gamma exponent (larger = darker)"),
                            ("photons", "photon count of a full-scale pixel (smaller = more shot noise)"),
                            ("read_noise", "sigma of the Gaussian read noise, in [0,1] units")):
        default = getattr(defaults, name)
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=float, nargs=2, action=_Range,
                            default=default, metavar=("LOW", "HIGH"),
                            help=f"{help_text}; uniform range (default {default[0]:g} {default[1]:g})")
    parser.add_argument("--no-shot-noise", action="store_true", help="leave out the Poisson shot noise")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip unreadable images (each is reported) instead of stopping at the first")


def run(args: argparse.Namespace) -> int:
    """`llie synthesize`; returns the exit status (1 if an image was skipped). A bad source or destination
    raises its `LLIEError`, which the CLI prints as one line."""
    ranges = LowLightRanges(alpha=args.alpha, beta=args.beta, gamma=args.gamma,
                            photons=None if args.no_shot_noise else args.photons, read_noise=args.read_noise)
    result = make_synthetic_lol(args.src, args.dst, seed=args.seed, eval_fraction=args.eval_fraction,
                                layout=args.layout, ranges=ranges, skip_bad=args.skip_bad,
                                progress=sys.stderr.isatty())
    skipped = f"; skipped {len(result.skipped)} unreadable image(s)" if result.skipped else ""
    print(f"llie synthesize: wrote {len(result.train)} training and {len(result.eval)} evaluation pairs to "
          f"{args.dst.resolve()}{skipped}")
    return 1 if result.skipped else 0
