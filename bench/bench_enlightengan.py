"""EnlightenGAN benchmark: generator inference by way of running, peak memory per size, training steps/s.

    python -m bench.bench_enlightengan [--weights W] [--size 400x600 --size 1080x1920] [--repeats 10] [--paths ...]

Inference rows: `EnlightenGANEnhancer` (generator + the [0,1]↔[-1,1] mapping, attention map, padding to a
multiple of 16) per size and path: median ms/image, FLOPs (TF profiler; ~122 GFLOP at 400×600), fraction of
this run's fp32 (or bf16) matmul rate reached, PSNR against the fp32 eager output. Targets on 2 cores: fp32
≤ 450 ms at 400×600 (original ~563 ms; floor ~390 ms), ≤ 6 s at 1080×1920; reduced precision ≤ 150 ms at
400×600 with ≥ 40 dB PSNR vs fp32.
Memory: peak RSS (VmHWM) of a fresh process that builds the enhancer and runs one call at each size
(--rss subprocess), or this process's running peak (--rss process).
Training: `EnlightenGAN.train_step` (generator + both discriminators + VGG16 SFP loss, Adam) under tf.function,
batch --train-batch of --train-size, VGG16 with RANDOM weights (timing only). Never asserts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from bench.runners import (HEADER, REDUCED_PRECISIONS, REFERENCE_MATMUL_GFLOPS, EngineCache, Target, bf16_copy,
                           bf16_twin, enhancer_case, enhancer_factories, enhancer_fn, is_reduced_precision, one_line,
                           summary_line, time_case, to_float32, workdir)
from bench.timing import (achieved, add_common_arguments, describe_input, graph_flops, load_note, measure,
                          parse_arguments, parse_size, peak_rss_mb, print_machine, print_op_profile, print_table,
                          sample_image)

if TYPE_CHECKING:
    from enlighten_tf.enhancer import EnlightenGANEnhancer

PATHS = ("eager", "function", "xla", "savedmodel", "tflite-fp32", "tflite-fp16", "tflite-int8", "bf16", "train")
TARGET_SIZE = "400x600"
# fp32 targets were set on a machine whose fp32 matmul runs at REFERENCE_MATMUL_GFLOPS (122 GFLOP floor ~390 ms).
TARGETS = {("400x600", "fp32"): Target(450.0, reference_gflops=REFERENCE_MATMUL_GFLOPS),
           ("1080x1920", "fp32"): Target(6000.0, reference_gflops=REFERENCE_MATMUL_GFLOPS),
           ("400x600", "reduced"): Target(150.0, min_psnr=40.0)}
LABEL = "EnlightenGAN"
RSS_MARK = "peak-rss-mib="
CALIBRATED_GROUP = "calib/"  # generator_seed0.npz: BN running statistics set to a real batch's statistics


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_enlightengan",
                                     description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, ("400x600", "1080x1920"), PATHS)
    parser.add_argument("--weights", metavar="PATH", help="generator weights: an EnlightenGANEnhancer .weights.h5 "
                        "or an upstream .pth/.npz state dict; an .npz with calib/ BN statistics (the fixture "
                        "generator_seed0.npz) uses them (default: random)")
    parser.add_argument("--rss", choices=("subprocess", "process", "off"), default="subprocess",
                        help="peak memory per size: a fresh process per size (default), this process's running "
                             "peak, or not at all")
    parser.add_argument("--train-size", type=parse_size, default=(128, 128), metavar="HxW",
                        help="training crop size (default 128x128; at least 32x32, the local patch size)")
    parser.add_argument("--train-batch", type=int, default=1, help="training batch size (default 1)")
    parser.add_argument("--rss-child", type=parse_size, metavar="HxW", help=argparse.SUPPRESS)
    parser.add_argument("--rss-precision", choices=("fp32", "bf16"), default="fp32", help=argparse.SUPPRESS)
    return parser


def _target(size_text: str, label: str, path: str) -> Target | None:
    precision = "reduced" if is_reduced_precision(path) else "fp32"
    return TARGETS.get((size_text, precision))


def build_bench_enhancer(weights: str | None) -> EnlightenGANEnhancer:
    """The enhancer of `--weights` (random without). An .npz in the fixture layout of `generator_seed0.npz`
    (`w/` tensors + `calib/` BN running statistics) gets the `calib/` statistics over the `w/` ones: at the
    init statistics (mean 0, var 1) the deep path adds < 1e-6 to the output, so every path would score an
    inflated PSNR against fp32."""
    import numpy as np

    from enlighten_tf.convert import generator_layers
    from enlighten_tf.enhancer import EnlightenGANEnhancer, build_enhancer
    from train.torch_weights import assign_state_dict, read_state_dict

    if not weights:
        return EnlightenGANEnhancer()
    if str(weights).endswith(".npz"):
        with np.load(weights) as data:
            calibrated = any(key.startswith(CALIBRATED_GROUP) for key in data.files)
        if calibrated:
            state = {**read_state_dict(weights), **read_state_dict(weights, npz_prefixes=(CALIBRATED_GROUP,))}
            enhancer = EnlightenGANEnhancer()
            assign_state_dict(generator_layers(enhancer.generator), state, source=str(weights))
            return enhancer
    return build_enhancer(weights=weights)


# === Peak memory ===


def _rss_child(args: argparse.Namespace) -> int:
    """Build, run one call at --rss-child size and print this fresh process's peak RSS."""
    import tensorflow as tf

    enhancer = build_bench_enhancer(args.weights)
    if args.rss_precision == "bf16":
        from enlighten_tf.enhancer import EnlightenGANEnhancer

        enhancer = bf16_copy(EnlightenGANEnhancer, enhancer)
    run = tf.function(to_float32(enhancer_fn(enhancer, ())))
    run(tf.constant(sample_image(*args.rss_child, args.images))).numpy()
    print(f"{RSS_MARK}{peak_rss_mb():.0f}")
    return 0


def _rss_in_subprocess(size: tuple[int, int], precision: str, args: argparse.Namespace) -> float | str:
    command = [sys.executable, "-m", "bench.bench_enlightengan", "--rss-child", f"{size[0]}x{size[1]}",
               "--rss-precision", precision, "--threads", str(args.threads)]
    command += ["--weights", args.weights] if args.weights else []
    command += ["--images", args.images] if args.images else []
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, capture_output=True, text=True, cwd=root, env=env)
    marks = [line for line in done.stdout.splitlines() if line.startswith(RSS_MARK)]
    if done.returncode != 0 or not marks:
        lines = (done.stderr.strip() or "no output").splitlines()
        return f"failed (exit {done.returncode}): {lines[-1][:100]}"
    return float(marks[-1][len(RSS_MARK):])


def _rss_rows(args: argparse.Namespace, process_peaks: dict) -> list[list]:
    """Subprocess mode: fp32 (and bf16 when timed) per size; process mode: the peaks recorded after the
    in-graph rows (`process_peaks[(size, precision)]`)."""
    if args.rss == "process":
        return [[f"{size[0]}x{size[1]}", precision, value] for (size, precision), value in process_peaks.items()]
    precisions = ["fp32"] + (["bf16"] if "bf16" in args.paths else [])
    return [[f"{size[0]}x{size[1]}", precision, _rss_in_subprocess(size, precision, args)]
            for size in args.sizes for precision in precisions]


# === Training ===


def _train_rows(args: argparse.Namespace, rates: dict[str, float]) -> list[list]:
    import numpy as np
    import tensorflow as tf

    from enlighten_tf.model import EnlightenGAN
    from losses_tf.enlighten import sfp_vgg16

    height, width = args.train_size
    try:
        # A random VGG16: the step's cost does not depend on the weights (and no download is needed).
        model = EnlightenGAN(vgg_weights=None, sfp_extractor=sfp_vgg16(None), seed=0)
        model.compile()
        rng = np.random.default_rng(0)
        low = tf.constant(rng.uniform(0.0, 0.3, (args.train_batch, height, width, 3)).astype(np.float32))
        normal = tf.constant(rng.uniform(0.3, 1.0, (args.train_batch, height, width, 3)).astype(np.float32))
        step = tf.function(model.train_step)
        timing = measure(lambda: step((low, normal)), warmup=args.warmup, repeats=args.repeats)
    except Exception as err:  # noqa: BLE001 — report and go on
        return [[f"{height}x{width}", args.train_batch, "n/a", None, None, None, None, one_line(err)]]
    try:
        flops = graph_flops(model.train_step, (tf.TensorSpec(low.shape, tf.float32),
                                               tf.TensorSpec(normal.shape, tf.float32)))
    except Exception:  # noqa: BLE001 — the profiler cannot always walk a training graph; FLOPs are optional
        flops = None
    gflops, percent = achieved(flops, timing.median_ms, rates["fp32"])
    return [[f"{height}x{width}", args.train_batch, timing.median_ms, 1000.0 / timing.median_ms,
             None if flops is None else flops / 1e9, gflops, percent, "random VGG16 weights"]]


# === Main ===


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, pinned = parse_arguments(parser, argv, PATHS)
    if args.rss_child:
        return _rss_child(args)
    from enlighten_tf.enhancer import EnlightenGANEnhancer

    rates = print_machine("EnlightenGAN benchmark (generator inference, memory, training)", args, pinned,
                          bf16=True)
    print(f"input: {describe_input(args.images)}; weights: {args.weights or 'random (pass --weights)'}")
    enhancer = build_bench_enhancer(args.weights)
    enhancer_bf16 = bf16_twin(EnlightenGANEnhancer, enhancer)
    run = enhancer_fn(enhancer, ())
    rows, cases, process_peaks = [], [], {}
    with workdir() as tmp:
        cache = EngineCache(enhancer_factories(enhancer, (), Path(tmp), args, bf16_model=enhancer_bf16))
        for size in args.sizes:
            cases.append(enhancer_case(size, LABEL, run, args))
            for path in args.paths:
                rows += time_case(cases[-1], cache, [path], rates, args, target=_target)
                if path in ("eager", "function", "xla", "bf16"):
                    process_peaks[(size, "bf16" if path == "bf16" else "fp32")] = peak_rss_mb()
    print_table(f"EnlightenGAN generator ms/image (median of {args.repeats} after {args.warmup} warm-up calls; "
                "PSNR vs fp32 eager)", HEADER, rows)
    if args.rss != "off":
        how = ("fresh process: import, build, one tf.function call" if args.rss == "subprocess"
               else "this process's running peak after that size's in-graph rows (cumulative)")
        print_table(f"Peak RSS MiB ({how})", ("size", "precision", "peak RSS MiB"), _rss_rows(args, process_peaks))
    if "train" in args.paths:
        print_table("EnlightenGAN.train_step under tf.function (G + global/local D + SFP loss, Adam; fp32)",
                    ("size", "batch", "ms/step", "steps/s", "GFLOP", "GFLOP/s", "% matmul", "note"),
                    _train_rows(args, rates))
    if args.profile:
        print_op_profile(f"EnlightenGAN fp32 graph at {cases[0].size_text}", run, cases[0].arrays,
                         threads=args.threads)
    print()
    print(summary_line(rows, TARGET_SIZE, LABEL, ("fp32",), "fp32 path", TARGETS[("400x600", "fp32")],
                       rates["fp32"], context=" (original ~563 ms)"))
    print(summary_line(rows, "1080x1920", LABEL, ("fp32",), "fp32 path", TARGETS[("1080x1920", "fp32")],
                       rates["fp32"]))
    print(summary_line(rows, TARGET_SIZE, LABEL, REDUCED_PRECISIONS, "reduced-precision path",
                       TARGETS[("400x600", "reduced")]))
    print(load_note("load average at end", own_threads=args.threads))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
