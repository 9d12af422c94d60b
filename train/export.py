"""Deployment: any registered enhancer → SavedModel or TFLite, and the `llie export` subcommand.

Written once for every model through the enhancer contract (train/registry.py): the exported functions call
`enhancer(image, training=False, **extras)` and nothing model-specific. Both exporters write atomically
(`train.io.atomic_output`: a temporary path beside the target, then a rename), so a crash never leaves a
half-written artefact.

TensorFlow is imported inside the functions, so building the `llie` parser (`llie --help`) stays fast.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from train import registry
from train.errors import NotAvailableError, WeightsMismatchError
from train.io import atomic_output
from train.registry import ExtraInput
from train.sizes import parse_size

QUANTIZE_MODES = ("none", "float16", "dynamic", "int8")
FORMATS = ("savedmodel", "tflite")


# === Signatures ===


def _ensure_built(enhancer: Any, extra_inputs: Sequence[ExtraInput]) -> None:
    """Create the variables of an enhancer that has never been called (export needs them)."""
    if not enhancer.built:
        extras = {e.name: np.full((1,), e.default, np.float32) for e in extra_inputs}
        enhancer(np.zeros((1, 16, 16, 3), np.float32), training=False, **extras)


def _input_signature(extra_inputs: Sequence[ExtraInput], batch: int | None, image_dtype: Any,
                     image_size: tuple[int, int] | None = None) -> list:
    """TensorSpecs [image (batch, H, W, 3), one (batch,) float32 per extra input]; H and W dynamic unless
    `image_size` fixes them."""
    import tensorflow as tf

    height, width = image_size or (None, None)
    specs = [tf.TensorSpec([batch, height, width, 3], image_dtype, name="image")]
    specs += [tf.TensorSpec([batch], tf.float32, name=extra.name) for extra in extra_inputs]
    return specs


def _serving_fn(enhancer: Any, extra_inputs: Sequence[ExtraInput], *, uint8: bool = False) -> Callable:
    """fn(image, *extras) -> {"enhanced": ...}; the extras arrive positionally, in `extra_inputs` order.

    Positional varargs let the signature input names come from the TensorSpec names (image, ratio, ...).
    The uint8 variant maps 0..255 → [0,1] and rounds the result (half to even, like `train.io.to_uint8`).
    """
    import tensorflow as tf

    names = [extra.name for extra in extra_inputs]

    def serve(image, *extras):
        if image.shape[1] is not None:  # a fixed-size signature: a loaded function would take any size
            image = tf.ensure_shape(image, image.shape)
        pixels = tf.cast(image, tf.float32) / 255.0 if uint8 else image
        enhanced = enhancer(pixels, training=False, **dict(zip(names, extras)))
        if uint8:
            enhanced = tf.cast(tf.round(tf.clip_by_value(enhanced, 0.0, 1.0) * 255.0), tf.uint8)
        return {"enhanced": enhanced}

    return serve


def describe_signature(name: str, extra_inputs: Sequence[ExtraInput], *, batch: str = "N",
                       dtype: str = "float32", image_size: tuple[int, int] | None = None) -> str:
    """One line, e.g. `serving_default: image float32 [N,H,W,3], ratio float32 [N] -> enhanced float32 [N,H,W,3]`
    (H,W → the numbers when `image_size` fixes them)."""
    spatial = "H,W" if image_size is None else f"{image_size[0]},{image_size[1]}"
    inputs = [f"image {dtype} [{batch},{spatial},3]"] + [f"{e.name} float32 [{batch}]" for e in extra_inputs]
    return f"{name}: {', '.join(inputs)} -> enhanced {dtype} [{batch},{spatial},3]"


def _write_archive(enhancer: Any, path: str, endpoints: dict[str, tuple[Callable, list]]) -> None:
    """SavedModel at `path` with one named signature per endpoint (keras ExportArchive: variables frozen by
    the TFLite converter, unlike a bare tf.Module, whose resource variables the converter leaves unset)."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(enhancer)
    for name, (fn, signature) in endpoints.items():
        archive.add_endpoint(name, fn, input_signature=signature)
    archive.write_out(path, verbose=False)


# === Licence notices ===


def ship_license_notice(notice: str | os.PathLike | None, output: str | os.PathLike) -> Path | None:
    """Copies the licence file `notice` (an enhancer's `license_notice`) to travel with `output`, written
    atomically: INTO a SavedModel folder (a folder is copied as a whole), beside a file (.tflite, .weights.h5).
    Returns the copy; None, writing nothing, when `notice` is None (weights without a licence obligation)."""
    if notice is None:
        return None
    notice, output = Path(notice), Path(output)
    target = (output if output.is_dir() else output.parent) / notice.name
    with atomic_output(target) as tmp:
        shutil.copyfile(notice, tmp)
    return target


# === SavedModel ===


def export_savedmodel(enhancer: Any, out_dir: str | os.PathLike, *,
                      extra_inputs: Sequence[ExtraInput] = (), image_size: tuple[int, int] | None = None) -> Path:
    """Write `enhancer` as a SavedModel with two signatures, any batch and any H×W (or H×W = `image_size`):

    - "serving_default": image float32 [N,H,W,3] in [0,1] (+ each extra input float32 [N]) →
      {"enhanced": float32 [N,H,W,3] in [0,1]};
    - "serving_uint8": image uint8 [N,H,W,3] (+ extras) → {"enhanced": uint8, rounded}.

    A fixed `image_size` lets the enhancer build its graph for that size (SCI then packs its convolutions,
    see `sci_tf.packing`); another size fails the signature's shape check (InvalidArgumentError).
    """
    out_dir = Path(out_dir)
    _ensure_built(enhancer, extra_inputs)
    import tensorflow as tf

    endpoints = {
        "serving_default": (_serving_fn(enhancer, extra_inputs),
                            _input_signature(extra_inputs, None, tf.float32, image_size)),
        "serving_uint8": (_serving_fn(enhancer, extra_inputs, uint8=True),
                          _input_signature(extra_inputs, None, tf.uint8, image_size)),
    }
    with atomic_output(out_dir) as tmp:
        tmp.mkdir()
        _write_archive(enhancer, str(tmp), endpoints)
    return out_dir


# === TFLite ===


def _conversion_error(err: Exception, quantize: str) -> NotAvailableError:
    """The converter's long MLIR dump → one line naming the ops TFLITE_BUILTINS lacks, or the first error line
    (the quantizer raises RuntimeError, often with its reason only in the log it printed)."""
    text = str(err)
    ops = sorted(set(re.findall(r"'(tf\.\w+)' op is neither a custom op nor a flex op", text)))
    if ops:
        return NotAvailableError(f"TFLite conversion needs ops outside TFLITE_BUILTINS: {', '.join(ops)}")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = next((line for line in lines if "error" in line.lower()), lines[0] if lines else
                 "see the converter's messages above")
    stage = "conversion" if quantize == "none" else f"conversion with {quantize} quantization"
    return NotAvailableError(f"TFLite {stage} failed: {first[:300]}")


def export_tflite(enhancer: Any, out_path: str | os.PathLike, *, quantize: str = "none",
                  representative_images: Sequence[np.ndarray] | None = None,
                  extra_inputs: Sequence[ExtraInput] = (), calibration_size: int = 256,
                  calibration_samples: int = 32, image_size: tuple[int, int] | None = None) -> Path:
    """Write `enhancer` as a .tflite with signature "serving_default": image float32 [1,H,W,3] (dynamic H, W;
    resize with `resize_tensor_input`) + each extra input float32 [1] → {"enhanced": float32 [1,H,W,3]}.
    `image_size` (H, W) fixes the input instead: the graph is built for that size (SCI then packs its
    convolutions, see `sci_tf.packing`), and int8 calibration uses crops of exactly that size.

    Only TFLITE_BUILTINS ops are allowed (no Flex), so conversion fails loudly (`NotAvailableError`) when the
    model needs anything else. `quantize`:
    - "none": float32; "float16": float16 weights, float32 compute; "dynamic": int8 weights, float activations;
    - "int8": full-integer weights and activations (TFLITE_BUILTINS_INT8 only) with float32 inputs/outputs,
      calibrated on `calibration_samples` random crops of one shape (≤ `calibration_size` px a side, see
      `train.tflite.calibration_crops`) of `representative_images` (float32 H×W×3 in [0,1]); extra inputs are
      calibrated at their default value.
    """
    from train.tflite import calibration_crops

    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {quantize!r}")
    if quantize == "int8" and not representative_images:
        raise ValueError("int8 quantization needs representative_images for calibration")
    out_path = Path(out_path)
    _ensure_built(enhancer, extra_inputs)
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="llie-tflite-") as saved_model:
        signature = _input_signature(extra_inputs, 1, tf.float32, image_size)
        _write_archive(enhancer, saved_model, {"serving_default": (_serving_fn(enhancer, extra_inputs), signature)})
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=["serving_default"])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":
            crops = calibration_crops(representative_images, size=calibration_size, count=calibration_samples,
                                      shape=image_size)
            extras = {e.name: np.full((1,), e.default, np.float32) for e in extra_inputs}
            converter.representative_dataset = lambda: ({"image": crop, **extras} for crop in crops)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        try:
            with warnings.catch_warnings():
                # The calibrator itself still uses the deprecated tf.lite.Interpreter; not our call to fix.
                warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
                flatbuffer = converter.convert()
        except Exception as err:
            # The quantizer raises RuntimeError; the converter its ConverterError (private module: matched by name).
            if not isinstance(err, RuntimeError) and type(err).__name__ != "ConverterError":
                raise
            raise _conversion_error(err, quantize) from err
    with atomic_output(out_path) as tmp:
        tmp.write_bytes(flatbuffer)
    return out_path


# === CLI ===


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `llie export`."""
    parser.description = (
        "Export a model's enhancer to a SavedModel folder (signatures serving_default: float32 [N,H,W,3] in [0,1]"
        " -> 'enhanced'; serving_uint8: uint8 -> uint8) or to a .tflite file (float32 [1,H,W,3], resize the"
        " input to any H×W before allocate_tensors), for any H×W or, with --size, for one. Extra inputs (e.g."
        " KinD's ratio) become named inputs. Weights whose licence must travel with them get their notice inside"
        " the folder or beside the file.")
    parser.add_argument("--model", default="sci", metavar="NAME",
                        help=f"model to export (default: sci; known: {', '.join(registry.names())})")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--preset", metavar="P", help="named pretrained weights of the model (default: the "
                         "model's default preset)")
    weights.add_argument("--weights", metavar="PATH", help="a weights file or folder the model accepts (see llie "
                         "convert; e.g. a .weights.h5 from `llie train` or `llie convert`) instead of a preset")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="savedmodel (a folder) or tflite (a file); default: tflite when -o ends in .tflite, "
                             "else savedmodel")
    parser.add_argument("--quantize", choices=QUANTIZE_MODES, default="none",
                        help="TFLite only: none (float32), float16 (half-size weights), dynamic (int8 weights of "
                             "≥1024 elements), int8 (full-integer, float32 I/O; calibrated on --calibration)")
    parser.add_argument("--calibration", metavar="DIR",
                        help="folder of representative low-light images to calibrate --quantize int8 (default: "
                             "the bundled demo images)")
    parser.add_argument("--calibration-size", type=int, default=256, metavar="PX",
                        help="side of the random calibration crops (default: 256)")
    parser.add_argument("--calibration-samples", type=int, default=32, metavar="N",
                        help="number of calibration crops, cycling over the images (default: 32)")
    parser.add_argument("--size", type=parse_size, metavar="HxW",
                        help="fix the input at height x width (default: any size): the file then takes that size "
                             "only, and SCI builds its width-packed convolutions, faster on CPU (see bench/README.md)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="where to write: a folder (SavedModel) or a .tflite file; replaced atomically")


def _build_enhancer(spec: registry.ModelSpec, preset: str | None, weights: str | None) -> Any:
    """`spec.build_enhancer` after checking the preset name / weights file, so mistakes give one-line errors."""
    if weights is not None:
        if not Path(weights).exists():  # a file, or a folder for models that convert a checkpoint on the fly
            raise WeightsMismatchError(f"{weights}: no such weights file")
        try:
            return spec.build_enhancer(weights=weights)
        except (OSError, ValueError) as err:
            raise WeightsMismatchError(f"{weights}: cannot load into model '{spec.name}' ({err})") from err
    preset = preset or spec.default_preset
    if preset is None:
        raise NotAvailableError(f"model '{spec.name}' has no default preset: pass --weights")
    if preset not in spec.presets:
        known = ", ".join(spec.presets) or "none"
        raise NotAvailableError(f"model '{spec.name}' has no preset '{preset}' (presets: {known})")
    return spec.build_enhancer(preset=preset)


def _calibration_images(folder: str | None) -> list[np.ndarray]:
    """The images of `folder`, or without one the bundled demo images (train/demo), with a note saying so."""
    from train.folders import list_images
    from train.io import read_image

    if folder is not None:
        return [read_image(path) for path in list_images(folder)]
    from train.enhance import demo_images

    with demo_images() as paths:
        images = [read_image(path) for path in paths]
    print(f"llie export: note: no --calibration DIR given: calibrating int8 on the {len(images)} bundled demo "
          "images; pass images like yours for the best accuracy", file=sys.stderr)
    return images


# The element type a quantized .tflite stores its reduced-precision tensors in.
_QUANTIZED_DTYPES = {"float16": "float16", "dynamic": "int8", "int8": "int8"}


def _quantization_note(path: Path, quantize: str) -> str:
    """" (<mode> quantized)" for the signature line, or, when the converter quantized nothing (dynamic range
    quantization skips weight tensors under 1024 elements, e.g. all of SCI's), a warning and a note saying so."""
    from train.tflite import tensor_dtypes

    if quantize == "none":
        return ""
    if tensor_dtypes(path)[_QUANTIZED_DTYPES[quantize]]:
        return f" ({quantize} quantized)"
    print(f"llie export: warning: --quantize {quantize} quantized nothing: the converter leaves weight tensors "
          "under 1024 elements in float32 and this model has no larger one; the file is a float32 model",
          file=sys.stderr)
    return " (float32: nothing quantized)"


def run(args: argparse.Namespace) -> int:
    """`llie export`: build the enhancer, export it, print where the result is and its signature."""
    output = Path(args.output)
    fmt = args.format or ("tflite" if output.suffix.lower() == ".tflite" else "savedmodel")
    if fmt == "savedmodel" and args.quantize != "none":
        raise NotAvailableError("--quantize applies to --format tflite only")
    spec = registry.get(args.model)
    images = _calibration_images(args.calibration) if args.quantize == "int8" else None
    enhancer = _build_enhancer(spec, args.preset, args.weights)
    size = args.size
    if fmt == "savedmodel":
        export_savedmodel(enhancer, output, extra_inputs=spec.extra_inputs, image_size=size)
        lines = [describe_signature("serving_default", spec.extra_inputs, image_size=size),
                 describe_signature("serving_uint8", spec.extra_inputs, dtype="uint8", image_size=size)]
    else:
        export_tflite(enhancer, output, quantize=args.quantize, representative_images=images,
                      extra_inputs=spec.extra_inputs, calibration_size=args.calibration_size,
                      calibration_samples=args.calibration_samples, image_size=size)
        lines = [describe_signature("serving_default", spec.extra_inputs, batch="1", image_size=size)
                 + _quantization_note(output, args.quantize)]
    print(f"llie export: wrote {args.model} {fmt} to {output}")
    for line in lines:
        print(f"  signature {line}")
    notice = ship_license_notice(enhancer.license_notice, output)  # the enhancer contract's licence
    if notice is not None:
        print(f"  licence of the weights: {notice}")
    return 0
