"""KinD inference benchmark: the full pipeline (evaluate.py mode) and each network, by way of running.

    python -m bench.bench_kind [--kind-checkpoints DIR] [--size 400x600] [--repeats 10] [--paths ...]

Rows: the pipeline ("KinD": normalisation, DecomNet, RestorationNet, IlluminationAdjustNet, guide, fusion) on
every path, and each network (Decom, Restoration, Adjust) on the in-graph paths (eager, function, xla, bf16),
fed the fp32 pipeline's own intermediates. Each row: median ms/image, FLOPs (TF profiler; ~127 GFLOP for the
pipeline at 400×600), the fraction of this run's fp32 (or bf16) matmul rate reached, PSNR against the fp32
eager output. Targets at 400×600 on 2 cores: fp32 pipeline ≤ 450 ms (original TF1 graph ~512 ms; the fp32
floor at ~314 GFLOP/s is ~405 ms), reduced precision ≤ 150 ms at ≥ 40 dB PSNR vs fp32. Never asserts.

Without --kind-checkpoints the weights are random (Glorot): timings are unaffected, but the PSNR of the
reduced-precision paths is only representative with the real (converted) weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from bench.runners import (HEADER, REDUCED_PRECISIONS, REFERENCE_MATMUL_GFLOPS, Case, EngineCache, Target,
                           as_array, bf16_twin, enhancer_case, enhancer_factories, enhancer_fn, is_reduced_precision,
                           keras_engine, summary_line, time_case, to_float32, workdir)
from bench.timing import (add_common_arguments, describe_input, graph_flops, load_note, parse_arguments,
                          print_machine, print_op_profile, print_table)

PATHS = ("eager", "function", "xla", "savedmodel", "tflite-fp32", "tflite-fp16", "tflite-int8", "bf16")
NETWORK_PATHS = ("eager", "function", "xla", "bf16")
TARGET_SIZE = "400x600"
# On the reference machine (REFERENCE_MATMUL_GFLOPS): original TF1 graph ~512 ms; fp32 floor ~405 ms.
FP32_TARGET = Target(450.0, reference_gflops=REFERENCE_MATMUL_GFLOPS)
REDUCED_TARGET = Target(150.0, min_psnr=40.0)
PIPELINE = "KinD"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_kind", description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, ("400x600",), PATHS)
    parser.add_argument("--kind-checkpoints", metavar="DIR",
                        help="the official KinD checkpoint/ folder (converted on the fly) or a .weights.h5 from "
                             "`llie convert kind` (default: random weights)")
    parser.add_argument("--ratio", type=float, default=5.0, help="exposure ratio (default 5.0, as evaluate.py)")
    parser.add_argument("--no-networks", action="store_true", help="time the pipeline only, not each network")
    return parser


def _target(size_text: str, label: str, path: str) -> Target | None:
    if size_text != TARGET_SIZE or label != PIPELINE:
        return None
    return REDUCED_TARGET if is_reduced_precision(path) else FP32_TARGET


# Each network of a KinD as fn(*tensors) (defs, not lambdas: autograph reads their source inside tf.function).
def _decom(kind):
    def run(image):
        return kind.decom_net(image)

    return run


def _restoration(kind):
    def run(reflectance, illumination):
        return kind.restoration_net([reflectance, illumination])

    return run


def _adjust(kind):
    def run(illumination, ratio_map):
        return kind.adjust_net([illumination, ratio_map])

    return run


def _network_cases(kind, kind_bf16, pipeline: Case) -> list[tuple[Case, EngineCache]]:
    """(case, engines) of each network, fed the fp32 pipeline's intermediates of the pipeline case's input."""
    import tensorflow as tf

    image, ratio = pipeline.inputs
    stages = kind.intermediates(image, ratio)
    ratio_map = tf.ones_like(stages["decom_I"]) * tf.reshape(ratio, (-1, 1, 1, 1))
    networks = [
        ("Decom", _decom, (stages["x_norm"],)),
        ("Restoration", _restoration, (stages["decom_R"], stages["decom_I"])),
        ("Adjust", _adjust, (stages["decom_I"], ratio_map)),
    ]
    result = []
    for label, network_fn, inputs in networks:
        run = network_fn(kind)
        factories = {path: (lambda path=path, run=run: keras_engine(path, run)) for path in NETWORK_PATHS[:3]}
        factories["bf16"] = lambda network_fn=network_fn: keras_engine(
            "function", to_float32(network_fn(kind_bf16())), precision="bf16", rate="bf16")
        flops = graph_flops(run, *(tf.TensorSpec(x.shape, tf.float32) for x in inputs))
        case = Case(pipeline.size, label, inputs, as_array(run(*inputs)), flops)
        result.append((case, EngineCache(factories)))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, pinned = parse_arguments(parser, argv, PATHS)
    from kind_tf.pipeline import KinD
    from kind_tf.spec import SPEC, build_enhancer

    rates = print_machine("KinD inference benchmark (evaluate.py pipeline)", args, pinned, bf16=True)
    print(f"input: {describe_input(args.images)}; ratio {args.ratio:g}; weights: "
          + (args.kind_checkpoints or "random (pass --kind-checkpoints for representative PSNR)"))

    def build_kind() -> KinD:
        kind = KinD()
        kind.build()
        return kind

    kind = build_enhancer(weights=args.kind_checkpoints) if args.kind_checkpoints else build_kind()
    kind_bf16 = bf16_twin(build_kind, kind)  # shared by the pipeline and network rows

    run = enhancer_fn(kind, ["ratio"])
    rows, cases = [], []
    with workdir() as tmp:
        cache = EngineCache(enhancer_factories(kind, SPEC.extra_inputs, Path(tmp), args, bf16_model=kind_bf16))
        for size in args.sizes:
            cases.append(enhancer_case(size, PIPELINE, run, args, extras=(args.ratio,)))
            rows += time_case(cases[-1], cache, args.paths, rates, args, target=_target)
            if not args.no_networks:
                for network_case, network_cache in _network_cases(kind, kind_bf16, cases[-1]):
                    rows += time_case(network_case, network_cache, args.paths, rates, args)
    print_table(f"KinD ms/image (median of {args.repeats} after {args.warmup} warm-up calls; PSNR vs fp32 eager)",
                HEADER, rows)
    if args.profile:
        print_op_profile(f"KinD fp32 graph at {cases[0].size_text}", run, cases[0].arrays, threads=args.threads)
    print()
    print(summary_line(rows, TARGET_SIZE, PIPELINE, ("fp32",), "fp32 path", FP32_TARGET, rates["fp32"],
                       context=" (original TF1 graph ~512 ms)"))
    print(summary_line(rows, TARGET_SIZE, PIPELINE, REDUCED_PRECISIONS, "reduced-precision path",
                       REDUCED_TARGET))
    print(load_note("load average at end", own_threads=args.threads))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
