"""The ways of running a model that the benchmarks compare, and the loop that times them into table rows.

Paths: "eager" (Keras call), "function" (tf.function, oneDNN graph), "xla" (tf.function(jit_compile=True)),
"savedmodel" (train.export.export_savedmodel, reloaded, serving_default signature), "tflite-fp32" /
"tflite-fp16" / "tflite-int8" (train.export.export_tflite, run by train.tflite.TFLiteEnhancer with
`num_threads=--threads`; LiteRT applies its default XNNPACK delegate), "savedmodel-fixed" / "tflite-fixed" (the
same fp32 exports for the row's image size only, `llie export --size`), "bf16" (the model rebuilt under Keras'
"mixed_bfloat16" policy with the fp32 weights copied in, under tf.function).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from bench.timing import Timing, achieved, measure_interleaved, psnr_db

TFLITE_QUANTIZE = {"tflite-fp32": "none", "tflite-fp16": "float16", "tflite-int8": "int8"}
PRECISION = {"eager": "fp32", "function": "fp32", "xla": "fp32", "savedmodel": "fp32", "tflite-fp32": "fp32",
             "tflite-fp16": "fp16 weights", "tflite-int8": "int8", "savedmodel-fixed": "fp32",
             "tflite-fixed": "fp32", "bf16": "bf16"}
# Paths exported for one image size: their engines are built per size.
FIXED_SIZE_PATHS = ("savedmodel-fixed", "tflite-fixed")
# The reduced precisions (every one but fp32), whose rows the reduced-precision targets and summaries cover.
REDUCED_PRECISIONS = tuple(dict.fromkeys(p for p in PRECISION.values() if p != "fp32"))
# The 2048² fp32 matmul GFLOP/s of the machine the fp32 targets were set on (`Target.reference_gflops`).
REFERENCE_MATMUL_GFLOPS = 314.0
HEADER = ("size", "model", "path", "precision", "ms/image", "1st call s", "GFLOP", "GFLOP/s", "% matmul",
          "PSNR vs fp32 dB", "target", "met", "note")
_SIZE, _MODEL, _PATH, _PRECISION, _MS, _PSNR = (HEADER.index(c) for c in ("size", "model", "path", "precision",
                                                                          "ms/image", "PSNR vs fp32 dB"))


@dataclasses.dataclass(frozen=True)
class Engine:
    """A prepared way of running: `run(*inputs)` → output (tensor, array, or a tuple of them)."""

    run: Callable[..., object]
    precision: str
    # Which measured matmul rate the "% matmul" column compares against.
    rate: str = "fp32"
    note: str = ""
    # TFLite takes numpy arrays (a tensor would be copied to numpy inside the timed call); TF paths take tensors.
    numpy_inputs: bool = False


@dataclasses.dataclass(frozen=True)
class Target:
    """What a row should reach: at most `ms` per image and, for reduced precision, at least `min_psnr` dB."""

    ms: float
    min_psnr: float | None = None
    # The fp32 matmul GFLOP/s of the machine the target was set on, to restate it at this run's rate.
    reference_gflops: float | None = None

    def describe(self) -> str:
        return f"≤{self.ms:g} ms" + (f", ≥{self.min_psnr:g} dB" if self.min_psnr else "")

    def met(self, ms: float, psnr: float | None) -> bool:
        return ms <= self.ms and (self.min_psnr is None or (psnr is not None and psnr >= self.min_psnr))


# === Engines ===


def keras_engine(path: str, fn: Callable[..., object], *, precision: str = "fp32", rate: str = "fp32") -> Engine:
    """`fn` run eagerly ("eager"), as a tf.function ("function", also used for "bf16") or XLA-compiled ("xla")."""
    import tensorflow as tf

    if path == "eager":
        return Engine(fn, precision, rate)
    # One trace per input shape (no reduce_retracing): each size runs a fully static graph, as a deployment
    # with a fixed size would; relaxed (dynamic) shapes also stop XLA from compiling MirrorPad.
    return Engine(tf.function(fn, jit_compile=path == "xla"), precision, rate)


def enhancer_fn(enhancer, extra_names: Sequence[str]) -> Callable[..., object]:
    """fn(image, *extras) → enhancer(image, training=False, **extras) (the enhancer contract)."""
    def run(image, *extras):  # a def, not a lambda: autograph cannot read the source of a lambda in a call
        return enhancer(image, training=False, **dict(zip(extra_names, extras)))

    return run


def savedmodel_engine(enhancer, extra_inputs, workdir: Path, size: tuple[int, int] | None = None) -> Engine:
    """Export to a SavedModel (for any size, or for `size` only), reload it and run its "serving_default"
    signature (what TF Serving runs)."""
    import tensorflow as tf

    from train.export import export_savedmodel

    start = time.perf_counter()
    name = "savedmodel" if size is None else f"savedmodel-{size[0]}x{size[1]}"
    path = export_savedmodel(enhancer, workdir / name, extra_inputs=extra_inputs, image_size=size)
    serving = tf.saved_model.load(str(path)).signatures["serving_default"]
    names = [e.name for e in extra_inputs]
    return Engine(lambda image, *extras: serving(image=image, **dict(zip(names, extras)))["enhanced"], "fp32",
                  note=f"export {time.perf_counter() - start:.0f} s")


def tflite_engine(path: str, enhancer, extra_inputs, workdir: Path, args: argparse.Namespace,
                  calibration: Callable[[], list[np.ndarray]], size: tuple[int, int] | None = None) -> Engine:
    """Export to .tflite with the path's quantization (for any size, or for `size` only) and run it with
    `TFLiteEnhancer(num_threads=--threads)`."""
    from train.export import export_tflite
    from train.tflite import TFLiteEnhancer

    quantize = TFLITE_QUANTIZE.get(path, "none")
    start = time.perf_counter()
    name = path if size is None else f"{path}-{size[0]}x{size[1]}"
    out = export_tflite(enhancer, workdir / f"{name}.tflite", quantize=quantize, extra_inputs=extra_inputs,
                        representative_images=calibration() if quantize == "int8" else None,
                        calibration_size=args.calibration_size, calibration_samples=args.calibration_samples,
                        image_size=size)
    runner = TFLiteEnhancer(out, num_threads=args.threads)
    names = [e.name for e in extra_inputs]
    return Engine(lambda image, *extras: runner(image, **dict(zip(names, extras))), PRECISION[path],
                  numpy_inputs=True, note=f"export {time.perf_counter() - start:.0f} s, {_file_size(out)}")


def _file_size(path: Path) -> str:
    size = path.stat().st_size
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.0f} KiB"


def bf16_copy(build: Callable[[], object], fp32_model):
    """`build()` under the "mixed_bfloat16" policy (variables stay float32, compute in bfloat16), with
    `fp32_model`'s weights copied in; the global policy is restored afterwards."""
    from train.fit import precision_policy

    with precision_policy("mixed_bfloat16"):
        model = build()
    model.set_weights(fp32_model.get_weights())
    return model


def bf16_twin(build: Callable[[], object], fp32_model) -> Callable[[], object]:
    """A factory of `bf16_copy(build, fp32_model)` that builds it on its first call and returns that one model
    on every later call (the bf16 rows of a script share it)."""
    return functools.cache(lambda: bf16_copy(build, fp32_model))


def is_reduced_precision(path: str) -> bool:
    """Whether a path runs below fp32 (bf16, TFLite float16 weights, int8); unknown paths count as fp32."""
    return PRECISION.get(path, "fp32") != "fp32"


def to_float32(fn: Callable[..., object]) -> Callable[..., object]:
    """fn with every output cast to float32 (a bf16 model hands its consumer float32, as the enhancer does)."""
    import tensorflow as tf

    def run(*inputs):
        return tf.nest.map_structure(lambda t: tf.cast(t, tf.float32), fn(*inputs))

    return run


def enhancer_factories(enhancer, extra_inputs, tmp: Path, args: argparse.Namespace,
                       bf16_model: Callable[[], object] | None = None) -> dict[str, Callable[..., Engine]]:
    """Engine factories of every path for an enhancer (the contract's `call(image, training=False, **extras)`).

    "bf16" is offered when `bf16_model` is given: it returns the enhancer's bf16 twin (see `bf16_copy`). int8
    calibration uses the images of --images (or synthetic ones).
    """
    from bench.timing import calibration_images

    names = [e.name for e in extra_inputs]
    run = enhancer_fn(enhancer, names)
    factories = {path: (lambda path=path: keras_engine(path, run)) for path in ("eager", "function", "xla")}
    factories["savedmodel"] = lambda: savedmodel_engine(enhancer, extra_inputs, tmp)
    for path in TFLITE_QUANTIZE:
        factories[path] = lambda path=path: tflite_engine(path, enhancer, extra_inputs, tmp, args,
                                                          lambda: calibration_images(args.images))
    factories["savedmodel-fixed"] = lambda size: savedmodel_engine(enhancer, extra_inputs, tmp, size)
    factories["tflite-fixed"] = lambda size: tflite_engine("tflite-fixed", enhancer, extra_inputs, tmp, args,
                                                           lambda: calibration_images(args.images), size)
    if bf16_model is not None:
        factories["bf16"] = lambda: keras_engine("function", to_float32(enhancer_fn(bf16_model(), names)),
                                                 precision="bf16", rate="bf16")
    return factories


class EngineCache:
    """Builds each engine once, on first use (exports are slow), and remembers a failure as its reason. The
    factory of a `FIXED_SIZE_PATHS` path takes the image size, and its engines are kept per size."""

    def __init__(self, factories: dict[str, Callable[..., Engine]]):
        self.factories = factories
        self.engines: dict[tuple, Engine | str] = {}

    def __contains__(self, path: str) -> bool:
        return path in self.factories

    def get(self, path: str, size: tuple[int, int]) -> Engine | str:
        key = (path, size) if path in FIXED_SIZE_PATHS else (path,)
        if key not in self.engines:
            try:
                self.engines[key] = self.factories[path](*key[1:])
            except Exception as err:  # noqa: BLE001 — any failure becomes a table row, the others still run
                self.engines[key] = one_line(err)
        return self.engines[key]


def one_line(err: Exception, limit: int = 110) -> str:
    """`Type: first line of the message`, shortened for a table cell."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    line = f"{type(err).__name__}: {text}"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def workdir() -> tempfile.TemporaryDirectory:
    """A temporary folder for exported models (removed when the script ends)."""
    return tempfile.TemporaryDirectory(prefix="llie-bench-")


# === Timing loop ===


def as_array(output: object) -> np.ndarray:
    """Any output (tensor, array, tuple of them) → one flat float64 array (for PSNR against fp32)."""
    if isinstance(output, (list, tuple)):
        return np.concatenate([as_array(item) for item in output])
    value = output.numpy() if hasattr(output, "numpy") else np.asarray(output)
    return np.asarray(value, np.float64).ravel()


@dataclasses.dataclass
class Case:
    """One model (or sub-network) at one size: its inputs (tensors), the fp32 eager output, its FLOPs."""

    size: tuple[int, int]
    label: str
    inputs: tuple
    reference: np.ndarray
    flops: float | None

    @property
    def size_text(self) -> str:
        return f"{self.size[0]}x{self.size[1]}"

    @property
    def arrays(self) -> tuple:
        return tuple(np.asarray(x.numpy() if hasattr(x, "numpy") else x, np.float32) for x in self.inputs)


def enhancer_case(size: tuple[int, int], label: str, run: Callable[..., object], args: argparse.Namespace,
                  extras: Sequence[float] = ()) -> Case:
    """The case of a whole enhancer at `size`: the --images input (or synthetic), one (1,) tensor per extra
    input, its FLOPs and fp32 eager output."""
    import tensorflow as tf

    from bench.timing import graph_flops, sample_image

    inputs = (tf.constant(sample_image(*size, args.images)),) + tuple(tf.constant([e], tf.float32) for e in extras)
    flops = graph_flops(run, *(tf.TensorSpec(x.shape, tf.float32) for x in inputs))
    return Case(size, label, inputs, as_array(run(*inputs)), flops)


def time_case(case: Case, cache: EngineCache, paths: Sequence[str], rates: dict[str, float],
              args: argparse.Namespace,
              target: Callable[[str, str, str], Target | None] = lambda *_: None) -> list[list]:
    """One table row per path in `paths` that `cache` offers: timing, FLOPs rate and PSNR against fp32.

    `target(size_text, label, path)` gives the row's target, or None.
    """
    return time_cases([(case, cache)], paths, rates, args, target)


def time_cases(pairs: Sequence[tuple[Case, EngineCache]], paths: Sequence[str], rates: dict[str, float],
               args: argparse.Namespace,
               target: Callable[[str, str, str], Target | None] = lambda *_: None) -> list[list]:
    """`time_case` for several (case, cache) pairs, e.g. variants of one model at one size: for each path, the
    pairs' engines are timed interleaved (one call of each in turn, see `bench.timing.measure_interleaved`), so
    their ratio holds even while the machine's load drifts (a failure, e.g. out of memory, marks that path of
    every pair). Rows come grouped by pair, in `paths` order."""
    rows: dict[tuple[int, str], list] = {}
    for path in paths:
        runs = {}
        for index, (case, cache) in enumerate(pairs):
            if path not in cache:
                continue
            engine = cache.get(path, case.size)
            if isinstance(engine, str):
                rows[index, path] = _failed_row(case, path, PRECISION.get(path, "?"), engine, target)
                continue
            inputs = case.arrays if engine.numpy_inputs else case.inputs
            runs[index] = (engine, inputs)
        try:
            timings = measure_interleaved({index: (lambda e=engine, x=inputs: e.run(*x))
                                           for index, (engine, inputs) in runs.items()},
                                          warmup=args.warmup, repeats=args.repeats)
            outputs = {index: as_array(engine.run(*inputs)) for index, (engine, inputs) in runs.items()}
        except Exception as err:  # noqa: BLE001 — e.g. out of memory at a large size: report, go on
            for index, (engine, _) in runs.items():
                rows[index, path] = _failed_row(pairs[index][0], path, engine.precision, one_line(err), target)
            continue
        for index, (engine, _) in runs.items():
            rows[index, path] = _timed_row(pairs[index][0], path, engine, timings[index], outputs[index], rates,
                                           target)
    return [rows[key] for key in sorted(rows, key=lambda key: (key[0], list(paths).index(key[1])))]


def _failed_row(case: Case, path: str, precision: str, reason: str,
                target: Callable[[str, str, str], Target | None]) -> list:
    return [case.size_text, case.label, path, precision, "n/a", None, None, None, None, None,
            _target_text(target(case.size_text, case.label, path)), None, reason]


def _timed_row(case: Case, path: str, engine: Engine, timing: Timing, output: np.ndarray,
               rates: dict[str, float], target: Callable[[str, str, str], Target | None]) -> list:
    psnr = psnr_db(case.reference, output) if path != "eager" else None
    gflops, percent = achieved(case.flops, timing.median_ms, rates.get(engine.rate))
    row_target = target(case.size_text, case.label, path)
    notes = [engine.note] if engine.note else []
    if engine.rate != "fp32":
        notes.append(f"% of {engine.rate} matmul")
    return [case.size_text, case.label, path, engine.precision, timing.median_ms, timing.first_ms / 1000.0,
            None if case.flops is None else case.flops / 1e9, gflops, percent, psnr, _target_text(row_target),
            None if row_target is None else ("yes" if row_target.met(timing.median_ms, psnr) else "NO"),
            "; ".join(notes) or None]


def _target_text(target: Target | None) -> str | None:
    return None if target is None else target.describe()


def best_row(rows: Sequence[list], size_text: str, label: str, precisions: Sequence[str],
             target: Target) -> list | None:
    """The fastest row of `label` at `size_text` among `precisions` that meets `target`, else the fastest."""
    timed = [r for r in rows if r[_SIZE] == size_text and r[_MODEL] == label and r[_PRECISION] in precisions
             and isinstance(r[_MS], float)]
    meeting = [r for r in timed if target.met(r[_MS], r[_PSNR])]
    return min(meeting or timed, key=lambda r: r[_MS]) if timed else None


def summary_line(rows: Sequence[list], size_text: str, label: str, precisions: Sequence[str], what: str,
                 target: Target, fp32_gflops: float | None = None, context: str = "") -> str:
    """`best <what> <label> at <size>: <path> <ms> ms[, PSNR …] — target …: met / NOT met`, plus the target
    restated at this run's fp32 matmul rate when the target names the rate of its reference machine.
    `context` (e.g. the original's time) follows the verdict."""
    row = best_row(rows, size_text, label, precisions, target)
    if row is None:
        return f"best {what} {label} at {size_text}: not measured in this run — target {target.describe()}{context}"
    psnr = "" if row[_PSNR] is None or target.min_psnr is None else f", PSNR vs fp32 {row[_PSNR]:.1f} dB"
    verdict = "met" if target.met(row[_MS], row[_PSNR]) else "NOT met"
    line = (f"best {what} {label} at {size_text}: {row[_PATH]} {row[_MS]:.1f} ms{psnr} — target "
            f"{target.describe()}: {verdict}{context}")
    if target.reference_gflops and fp32_gflops:
        line += (f"\n  (the target assumes a {target.reference_gflops:g} GFLOP/s fp32 matmul; at this run's "
                 f"{fp32_gflops:.0f} GFLOP/s it corresponds to {target.ms * target.reference_gflops / fp32_gflops:.0f}"
                 " ms)")
    return line
