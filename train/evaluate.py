"""`llie evaluate`: PSNR/SSIM of a model's outputs against LOL ground truth, or NIQE where there is none.

    llie evaluate --model sci --data LOL/ --protocol gt-mean --niqe --csv sci_lol.csv
    llie evaluate --model sci --data dark_photos/            # no high/ folder: NIQE only

Protocols (how the output is compared with the ground truth):
- plain: the enhanced image as it is.
- gt-mean: the output scaled so its mean grey level equals the ground truth's, then clipped to [0,1], the
  "GT-mean" setting of LLFlow / Retinexformer (`restored * mean_gray(target) / mean_gray(restored)`), which
  they trace to KinD's evaluate_LOLdataset.py. Grey = BT.601 luma (0.299 R + 0.587 G + 0.114 B).
- gt-ratio: extra inputs derived from the ground truth by the model (`ModelSpec.extras_from_reference`), fed
  to the model's reference-evaluation form where it defines one (`ModelSpec.reference_enhancer`, sharing the
  loaded networks); only for models that define the former. KinD: evaluate_LOLdataset.py, i.e. the ratio from
  the ground truth's illumination and the LOL-mode output restored·adjusted.

Metrics are computed on the output quantised to 8 bits the way `llie enhance` writes it (rounded), so they are
the scores of the written files. PSNR/SSIM: `losses_tf.metrics` (RGB, data range 1; SSIM as `tf.image.ssim`).
NIQE: `train.niqe` (lower is better).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import sys
from pathlib import Path
from typing import Iterator

import numpy as np

from train import registry
from train.enhance import ModelRunner, add_model_arguments, describe, load_model, progress
from train.errors import DatasetLayoutError, ImageWriteError, NotAvailableError
from train.io import to_uint8

PROTOCOLS = ("plain", "gt-mean", "gt-ratio")
_PROTOCOL_NOTES = {
    "plain": "outputs as they are",
    "gt-mean": "outputs scaled to the ground truth's mean grey level",
    "gt-ratio": "model inputs derived from the ground truth, the model's reference-evaluation mode",
    "no-reference": "no ground truth: NIQE only",
}
_LUMA = np.array([0.299, 0.587, 0.114])


# === Protocols ===


def gray_mean(image: np.ndarray) -> float:
    """Mean BT.601 luma of an RGB image (..., 3) in [0,1]."""
    return float(np.mean(np.asarray(image, np.float64) @ _LUMA))


def scale_to_reference_mean(output: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The gt-mean protocol: `output` × mean_gray(reference) / mean_gray(output), clipped to [0,1], float32."""
    scaled = np.asarray(output, np.float64) * (gray_mean(reference) / max(gray_mean(output), 1e-12))
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


# === Rows and table ===


@dataclasses.dataclass
class Row:
    """Scores of one image; None where not measured."""

    name: str
    psnr: float | None = None
    ssim: float | None = None
    niqe: float | None = None


_COLUMNS = (("psnr", "PSNR (dB)", "{:.4f}"), ("ssim", "SSIM", "{:.4f}"), ("niqe", "NIQE", "{:.4f}"))


def column_means(rows: list[Row], columns: list[str]) -> Row:
    """Mean of each column over the rows where it was measured (NaN if none was)."""
    means = Row("mean")
    for column in columns:
        values = [getattr(row, column) for row in rows if getattr(row, column) is not None]
        setattr(means, column, float(np.mean(values)) if values else math.nan)
    return means


def format_table(header: str, rows: list[Row], columns: list[str]) -> str:
    """Plain-text table: the header line, one line per image, then the mean."""
    width = max([len("image"), len("mean")] + [len(row.name) for row in rows]) + 2
    specs = [spec for spec in _COLUMNS if spec[0] in columns]
    lines = [header, "image".ljust(width) + "".join(f"{title:>12}" for _, title, _ in specs)]
    for row in [*rows, column_means(rows, columns)]:
        cells = []
        for key, _, fmt in specs:
            value = getattr(row, key)
            cells.append(f"{'n/a' if value is None else fmt.format(value):>12}")
        lines.append(row.name.ljust(width) + "".join(cells))
    return "\n".join(lines)


def write_csv(path: Path, rows: list[Row], columns: list[str]) -> None:
    """image,<columns>... per image, then a `mean` row; full precision, empty cell where not measured."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image", *columns])
            for row in [*rows, column_means(rows, columns)]:
                writer.writerow([row.name, *("" if getattr(row, c) is None else repr(getattr(row, c))
                                             for c in columns)])
    except OSError as err:
        raise ImageWriteError(f"{path}: cannot write the CSV file ({err})") from err


# === Evaluation ===


def _paired_folders(data: Path, split: str) -> bool:
    """Whether `data` is a paired LOL layout for `split` (else it is evaluated without reference)."""
    from train.folders import lol_folders

    try:
        lol_folders(data, split)
    except DatasetLayoutError:
        return False
    return True


def _no_reference_folder(data: Path) -> Path:
    """The images of a no-reference evaluation: `data/low` when present, else `data` itself."""
    low = [child for child in data.iterdir() if child.is_dir() and child.name.lower() == "low"] \
        if data.is_dir() else []
    return low[0] if low else data


def _iterate(dataset, quiet: bool) -> Iterator[tuple]:
    """(arrays..., name str) of an eval dataset, with a progress bar; read errors come back as our errors."""
    from train.reading import pipeline_errors

    total = int(dataset.cardinality())
    with pipeline_errors(), progress(max(total, 0), quiet, "img") as bar:
        for *images, name in dataset:
            yield (*[image.numpy() for image in images], name.numpy().decode())
            bar.update(1)


def _quantised(image: np.ndarray) -> np.ndarray:
    return to_uint8(image, "round").astype(np.float32) / 255.0


def _niqe_score(image: np.ndarray, name: str, params, report) -> float | None:
    from train.niqe import niqe

    try:
        return niqe(image, params)
    except ValueError as err:
        report(f"{name}: {err}")
        return None


def evaluate_pairs(runner: ModelRunner, data: Path, split: str, protocol: str, niqe_params, report,
                   quiet: bool = False) -> list[Row]:
    """Enhance every low image of the LOL `split` and score it against its ground truth (see module doc)."""
    from losses_tf.metrics import psnr, ssim
    from train.data import paired_eval_dataset

    if protocol == "gt-ratio" and runner.spec.reference_enhancer is not None:
        runner = runner.with_enhancer(runner.spec.reference_enhancer(runner.enhancer))
    rows = []
    for low, high, name in _iterate(paired_eval_dataset(data, split), quiet):
        extras = None
        if protocol == "gt-ratio":
            extras = runner.spec.extras_from_reference(runner.enhancer, low, high)
        output = runner(low[0], extras)
        if protocol == "gt-mean":
            output = scale_to_reference_mean(output, high[0])
        output = _quantised(output)[None]
        row = Row(name, float(psnr(high, output)[0]), float(ssim(high, output)[0]))
        if niqe_params is not None:
            row.niqe = _niqe_score(output[0], name, niqe_params, report)
        rows.append(row)
    return rows


def evaluate_no_reference(runner: ModelRunner, folder: Path, niqe_params, report, quiet: bool = False
                          ) -> list[Row]:
    """Enhance every image of `folder` and score its output with NIQE."""
    from train.data import low_only_eval_dataset

    rows = []
    for low, name in _iterate(low_only_eval_dataset(folder), quiet):
        rows.append(Row(name, niqe=_niqe_score(_quantised(runner(low[0])), name, niqe_params, report)))
    return rows


# === CLI ===


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `llie evaluate`."""
    parser.add_argument("--data", required=True, type=Path, metavar="DIR",
                        help="LOL-layout folder (eval15/{low,high}, Test/{Low,Normal} or low/high), or a folder "
                             "of images without ground truth (then NIQE only)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="plain",
                        help="plain (default); gt-mean: scale outputs to the ground truth's mean grey level "
                             "(LOL convention); gt-ratio: model inputs derived from the ground truth (KinD)")
    parser.add_argument("--split", choices=("eval", "train"), default="eval",
                        help="LOL split: eval (eval15 / Test, default) or train (our485 / Train)")
    parser.add_argument("--no-reference", action="store_true",
                        help="ignore any ground truth and report NIQE of the outputs (automatic without high/)")
    parser.add_argument("--niqe", action="store_true", help="also report NIQE of the outputs (lower is better)")
    parser.add_argument("--niqe-params", type=Path, metavar="PATH",
                        help="NIQE pristine-model .npz (default: the bundled BasicSR parameters)")
    parser.add_argument("--csv", type=Path, metavar="FILE", help="also write the table as CSV")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """`llie evaluate`; prints the table, returns 1 if a score could not be computed."""
    from train.niqe import load_niqe_params

    failures = []

    def report(message: str) -> None:
        failures.append(message)
        print(f"llie evaluate: error: {message}", file=sys.stderr)

    paired = not args.no_reference and _paired_folders(args.data, args.split)
    if not paired and args.protocol != "plain":
        raise DatasetLayoutError(f"{args.data}: --protocol {args.protocol} needs ground truth (a LOL layout with "
                                 "low/ and high/ folders)")
    spec = registry.get(args.model)
    if args.protocol == "gt-ratio" and spec.extras_from_reference is None:
        raise NotAvailableError(f"model '{spec.name}' derives no inputs from the ground truth, so --protocol "
                                "gt-ratio does not apply to it (use plain or gt-mean)")
    niqe_params = load_niqe_params(args.niqe_params) if (args.niqe or not paired) else None
    runner = load_model(args)
    if paired:
        rows = evaluate_pairs(runner, args.data, args.split, args.protocol, niqe_params, report, args.quiet)
        columns = ["psnr", "ssim"] + (["niqe"] if niqe_params is not None else [])
        protocol, where = args.protocol, f"{args.data} (split {args.split}, {len(rows)} pairs)"
    else:
        folder = _no_reference_folder(args.data)
        rows = evaluate_no_reference(runner, folder, niqe_params, report, args.quiet)
        columns, protocol, where = ["niqe"], "no-reference", f"{folder} ({len(rows)} images)"
    header = f"{describe(args, runner)} on {where}; protocol: {protocol} ({_PROTOCOL_NOTES[protocol]})"
    print(format_table(header, rows, columns))
    if args.csv is not None:
        write_csv(args.csv, rows, columns)
    return 1 if failures else 0
