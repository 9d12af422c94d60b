"""`llie enhance`: enhance image files, folders or globs with any registered model, and the shared model loading.

    llie enhance photos/ extra.jpg 'night/*.png' -o enhanced/ --model sci --preset difficult
    llie enhance --demo -o demo_out/

`add_model_arguments` / `load_model` (the --model, --preset/--weights, --tile and per-model extra flags, and the
loaded `ModelRunner`) are shared with `llie evaluate`. Every failing input is reported as one line and the rest
of the batch still runs; the exit status is 1 if anything failed.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib.resources
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from train import registry
from train.errors import LLIEError, NotAvailableError
from train.folders import list_images
from train.io import is_image_path, read_image, write_image
from train.tiling import check_tiling, enhance_tiled

DEFAULT_MODEL = "sci"


# === Model loading (shared with `llie evaluate`) ===


def _extra_dest(name: str) -> str:
    return f"extra_{name}"


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --preset | --weights, --tile/--tile-overlap, and one float flag per model extra input.

    The extra flags (e.g. KinD's --ratio) of every available model are added, so `--help` lists them all.
    """
    specs = [registry.get(name) for name in registry.available()]
    presets = "; ".join(f"{spec.name}: {', '.join(spec.presets)}" for spec in specs if spec.presets)
    group = parser.add_argument_group("model")
    group.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME",
                       help=f"registered model (known: {', '.join(registry.names())}; default {DEFAULT_MODEL})")
    choice = group.add_mutually_exclusive_group()
    choice.add_argument("--preset", metavar="P", help="named pretrained weights of the model (default: its default "
                                                        f"preset{'; ' + presets if presets else ''})")
    choice.add_argument("--weights", metavar="PATH", help="a weights file for the model instead of a preset")
    aligned = ", ".join(f"{spec.name} {spec.tile_alignment}" for spec in specs if spec.tile_alignment > 1)
    group.add_argument("--tile", type=int, metavar="N",
                       help="enhance in overlapping N×N tiles (bounded memory for large images); tiles start on "
                            f"the model's pooling grid{f' (multiples of: {aligned} px)' if aligned else ''}, so "
                            "N is rounded down to it and the last tile of a row or column may be longer by up "
                            "to the grid size − 1")
    overlaps = "; ".join(f"{spec.name} {spec.tile_overlap}" for spec in specs)
    group.add_argument("--tile-overlap", type=int, metavar="PX",
                       help="pixels of context each tile reads past a seam, per side (default: the model's, "
                            f"from its receptive field: {overlaps}; how close tiled output stays to a whole-image "
                            "pass: README, --tile)")
    extras: dict[str, tuple[registry.ExtraInput, list[str]]] = {}
    for spec in specs:
        for extra in spec.extra_inputs:
            extras.setdefault(extra.name, (extra, []))[1].append(spec.name)
    for extra, models in extras.values():
        group.add_argument(f"--{extra.name.replace('_', '-')}", dest=_extra_dest(extra.name), type=float,
                           metavar="V", help=f"{extra.help} (model {', '.join(models)}; default {extra.default:g})")


def _extras_from_args(spec: registry.ModelSpec, args: argparse.Namespace) -> dict[str, float]:
    """The chosen model's extra inputs: the flag's value, or the declared default."""
    own = {extra.name for extra in spec.extra_inputs}
    for key, value in vars(args).items():
        if key.startswith("extra_") and value is not None and key[len("extra_"):] not in own:
            flag = "--" + key[len("extra_"):].replace("_", "-")
            raise NotAvailableError(f"model '{spec.name}' takes no {flag}")
    values = {}
    for extra in spec.extra_inputs:
        given = getattr(args, _extra_dest(extra.name), None)
        values[extra.name] = extra.default if given is None else given
    return values


class ModelRunner:
    """A registry model loaded once, applied to one (H, W, 3) float32 [0,1] image at a time.

    The enhancer runs as one `tf.function` with relaxed shapes (`reduce_retracing`), so images of many sizes
    share a few traces. With `tile` (None: whole images), images go through `train.tiling.enhance_tiled` with
    `tile_overlap` px of context per side, on the spec's `tile_alignment` (with its `prepare_for_tiling` and
    `finish_tiling`).
    """

    def __init__(self, spec: registry.ModelSpec, enhancer: Any, extras: Mapping[str, float], tile: int | None,
                 tile_overlap: int):
        import tensorflow as tf

        self.spec = spec
        self.enhancer = enhancer
        self.extras = dict(extras)
        self.tile = tile
        self.tile_overlap = tile_overlap
        self._graph = tf.function(lambda images, kwargs: enhancer(images, training=False, **kwargs),
                                  reduce_retracing=True)

    def with_enhancer(self, enhancer: Any) -> "ModelRunner":
        """The same runner (spec, extras, tiling) around another enhancer, e.g. `spec.reference_enhancer`'s."""
        return ModelRunner(self.spec, enhancer, self.extras, self.tile, self.tile_overlap)

    def run_batch(self, images: np.ndarray, **kwargs: Any) -> np.ndarray:
        """(N, H, W, 3) float32 → enhanced (N, H, W, 3); array kwargs become tensors, others pass as they are."""
        import tensorflow as tf

        tensors = {name: tf.constant(value, tf.float32) if isinstance(value, np.ndarray) else value
                   for name, value in kwargs.items()}
        return self._graph(tf.constant(images, tf.float32), tensors).numpy()

    def __call__(self, image: np.ndarray, extras: Mapping[str, Any] | None = None) -> np.ndarray:
        """Enhance one image (H, W, 3); `extras` overrides the per-image scalars (floats or 1-element arrays)."""
        values = {**self.extras, **(extras or {})}
        if self.tile:
            return enhance_tiled(self.run_batch, image, tile=self.tile, overlap=self.tile_overlap,
                                 alignment=self.spec.tile_alignment, extras=values,
                                 prepare=self.spec.prepare_for_tiling, finish=self.spec.finish_tiling)
        batch = {name: np.asarray(value, np.float32).reshape(1) for name, value in values.items()}
        return self.run_batch(np.asarray(image, np.float32)[None], **batch)[0]


def load_model(args: argparse.Namespace) -> ModelRunner:
    """Build the enhancer named by `args` (see `add_model_arguments`) once. `NotAvailableError` if the model or
    preset is not available, with the choices in the message."""
    spec = registry.get(args.model)
    preset = args.preset
    if preset is None and args.weights is None:
        preset = spec.default_preset
    if preset is not None and spec.presets and preset not in spec.presets:
        raise NotAvailableError(f"model '{spec.name}' has no preset '{preset}' (presets: {', '.join(spec.presets)})")
    overlap = spec.tile_overlap if args.tile_overlap is None else args.tile_overlap
    if args.tile is not None:
        try:
            check_tiling(args.tile, overlap, spec.tile_alignment)
        except ValueError as err:
            default = f" (the default of '{spec.name}')" if args.tile_overlap is None else ""
            raise NotAvailableError(f"--tile {args.tile} --tile-overlap {overlap}{default}: {err}") from err
    extras = _extras_from_args(spec, args)
    enhancer = spec.build_enhancer(preset=preset, weights=args.weights)
    return ModelRunner(spec, enhancer, extras, args.tile, overlap)


def describe(args: argparse.Namespace, runner: ModelRunner) -> str:
    """'sci (preset medium)' / 'kind (weights k.weights.h5, ratio 5)' for headers and summaries."""
    source = f"weights {args.weights}" if args.weights else f"preset {args.preset or runner.spec.default_preset}"
    extras = "".join(f", {name} {value:g}" for name, value in runner.extras.items())
    return f"{runner.spec.name} ({source}{extras})"


def progress(total: int, quiet: bool, unit: str):
    """A tqdm bar on stderr, shown only for an interactive stderr and without --quiet."""
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, file=sys.stderr, disable=quiet or not sys.stderr.isatty(), leave=False)


# === Inputs and outputs ===


def collect_inputs(specs: Sequence[str]) -> tuple[list[Path], list[str]]:
    """Files, folders (their images, natural order) and glob patterns → (image files, problems).

    Globs are expanded here too, for shells that do not. The same file named twice is enhanced once. A spec
    matching nothing is a problem ("<spec>: ..."), reported by the caller; the other inputs still run.
    """
    files: list[Path] = []
    problems: list[str] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            try:
                files += list_images(path)
            except LLIEError as err:
                problems.append(str(err))
        elif path.is_file():
            files.append(path)
        elif glob.has_magic(spec):
            matches = [Path(p) for p in sorted(glob.glob(spec)) if Path(p).is_file() and is_image_path(p)]
            files += matches
            if not matches:
                problems.append(f"{spec}: no image file matches this pattern")
        else:
            problems.append(f"{spec}: no such file or folder")
    unique: dict[Path, Path] = {}
    for path in files:
        unique.setdefault(path.resolve(), path)
    return list(unique.values()), problems


def output_paths(inputs: Sequence[Path], outdir: Path, suffix: str) -> tuple[list[Path], list[str]]:
    """OUTDIR/<stem><suffix> per input; (outputs, notes).

    Two inputs with the same stem (a/x.png, b/x.jpg) would write the same file: the later one gets
    `<stem>-2`, `<stem>-3`, ... (names compared ignoring case, for case-insensitive file systems) and a note
    says so, so nothing is overwritten silently.
    """
    taken: dict[str, Path] = {}
    outputs, notes = [], []
    for path in inputs:
        name, count = f"{path.stem}{suffix}", 1
        while name.lower() in taken:
            count += 1
            name = f"{path.stem}-{count}{suffix}"
        if count > 1:
            first = taken[f"{path.stem}{suffix}".lower()]
            notes.append(f"{path}: same name as {first}, written as {outdir / name}")
        taken[name.lower()] = path
        outputs.append(outdir / name)
    return outputs, notes


@contextlib.contextmanager
def demo_images() -> Iterator[list[Path]]:
    """The bundled sample images (train/demo/*.png) as file paths, also from a zipped installation."""
    folder = importlib.resources.files("train") / "demo"
    entries = sorted((entry for entry in folder.iterdir() if entry.name.endswith(".png")), key=lambda e: e.name)
    if not entries:
        raise NotAvailableError("the demo images are not installed (train/demo/*.png)")
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(importlib.resources.as_file(entry)) for entry in entries]


# === CLI ===


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `llie enhance`."""
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="image files, folders (their images, sorted) or glob patterns")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="OUTDIR",
                        help="folder for the enhanced images, OUTDIR/<name>.png or .jpg (created if needed)")
    parser.add_argument("--demo", action="store_true",
                        help="enhance the bundled sample images (with the default preset unless given)")
    parser.add_argument("--format", choices=("png", "jpg"), default="png", help="output format (default png)")
    parser.add_argument("--rounding", choices=("round", "truncate"), default="round",
                        help="float→8-bit conversion: round (default) or truncate, as the original scripts save")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_model_arguments(parser)


def _enhance_all(runner: ModelRunner, inputs: list[Path], outputs: list[Path], args: argparse.Namespace,
                 report) -> int:
    """Enhance and write each input; report failures one line each. Returns the number written."""
    import tensorflow as tf

    resolved_inputs = {path.resolve(): path for path in inputs}
    written = 0
    with progress(len(inputs), args.quiet, "img") as bar:
        for source, target in zip(inputs, outputs):
            # An output that IS an input (OUTDIR = input folder) is refused by write_image, never overwritten.
            clash = resolved_inputs.get(target.resolve())
            protect = (source,) if clash is None else (source, clash)
            try:
                enhanced = runner(read_image(source))
                write_image(target, enhanced, rounding=args.rounding, protect=protect)
                written += 1
            except LLIEError as err:
                report(str(err), bar)
            except (ValueError, tf.errors.OpError) as err:  # e.g. an image too small for the model, out of memory
                hint = "; try --tile 512" if isinstance(err, tf.errors.ResourceExhaustedError) else ""
                first_line = (str(err).strip().splitlines() or [""])[0]
                report(f"{source}: {type(err).__name__}: {first_line}{hint}", bar)
            bar.update(1)
    return written


def run(args: argparse.Namespace) -> int:
    """`llie enhance`; returns the exit status (1 if any input failed)."""
    failures = 0

    def report(message: str, bar=None) -> None:
        nonlocal failures
        failures += 1
        line = f"llie enhance: error: {message}"
        if bar is not None and not bar.disable:
            bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    if not args.inputs and not args.demo:
        raise NotAvailableError("no input images: pass files, folders or glob patterns, or --demo")
    runner = load_model(args)
    with contextlib.ExitStack() as stack:
        demo = stack.enter_context(demo_images()) if args.demo else []
        inputs, problems = collect_inputs(args.inputs)
        inputs = demo + inputs
        for problem in problems:
            report(problem)
        outputs, notes = output_paths(inputs, args.output, f".{args.format}")
        for note in notes:
            print(f"llie enhance: note: {note}", file=sys.stderr)
        written = _enhance_all(runner, inputs, outputs, args, report)
    what = "demo image(s)" if args.demo and not args.inputs else "image(s)"
    failed = f"; {failures} failed" if failures else ""
    print(f"llie enhance: wrote {written} {what} enhanced by {describe(args, runner)} to {args.output.resolve()}"
          f"{failed}")
    return 1 if failures else 0
