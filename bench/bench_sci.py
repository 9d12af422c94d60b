"""SCI inference benchmark: ms/image of `SCIEnhancer` (preset "medium") by way of running, at each size.

    python -m bench.bench_sci [--size 400x600 --size 1080x1920] [--repeats 10] [--paths eager,function,...]
                              [--variants unfused,fused,packed]

Three variants of the same network, each run by every path: "SCI" is the model as trained (BatchNorm in the
graph), "SCI fused" its BatchNorm folded into the preceding conv (`SCIEnhancer.fuse(pack_width=False)`), "SCI
packed" that form with width-packed convolutions (`SCIEnhancer.fuse()`, `sci_tf.packing`), which `llie enhance`
and `llie export` use: it packs wherever the graph is built for a known width (eager, function, xla and the
*-fixed exports, `llie export --size`) and runs as "SCI fused" in an any-size export (savedmodel, tflite-*).
Prints one row per (size, variant, path): median ms/image over --repeats calls after --warmup, on --threads
threads, the network's FLOPs (TF profiler) and the fraction of this run's fp32 matmul rate reached, PSNR against
the fp32 eager output of the unfused model (so each row also shows that it computes the same image; packed rows
count the fused network's FLOPs, as the packed kernels' extra weights are zeros), then each variant's time over
the unfused one's per path (the variants are timed interleaved, call by call), and the target at 400×600: under
3.5 ms for the best path (the original PyTorch model takes about 5 ms on the 2-core reference machine; `python -m
bench.torch_reference` times it on this one). Never asserts.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Sequence

from bench.runners import (HEADER, EngineCache, Target, enhancer_case, enhancer_factories, enhancer_fn,
                           summary_line, time_cases, workdir)
from bench.timing import (add_common_arguments, describe_input, graph_flops, load_note, parse_arguments,
                          print_machine, print_op_profile, print_table)

PATHS = ("eager", "function", "xla", "savedmodel", "tflite-fp32", "tflite-fp16", "tflite-int8", "savedmodel-fixed",
         "tflite-fixed")
TARGET_SIZE = "400x600"
# The best path at 400×600 on 2 cores; the original PyTorch `Finetunemodel` takes about 5 ms there.
TARGET = Target(3.5)
# Variant name → the table's model label.
VARIANTS = {"unfused": "SCI", "fused": "SCI fused", "packed": "SCI packed"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_sci", description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, ("400x600", "1080x1920"), PATHS)
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--preset", default="medium", help="SCI preset (default: medium)")
    weights.add_argument("--weights", metavar="PATH", help="an SCIEnhancer .weights.h5 instead of the preset")
    parser.add_argument("--variants", default="unfused,fused,packed", metavar="V,V",
                        help="any of unfused (as trained), fused (BatchNorm folded), packed (folded and "
                             "width-packed: what llie runs); default: all three")
    return parser


def ratio_rows(rows: Sequence[list], variants: Sequence[str]) -> list[list]:
    """[size, path, unfused ms, then per other variant: ms, ms/unfused] for each (size, path) timed unfused."""
    columns = [HEADER.index(column) for column in ("size", "model", "path", "ms/image")]
    timed = {tuple(row[c] for c in columns[:3]): row[columns[3]] for row in rows
             if isinstance(row[columns[3]], float)}
    result = []
    for (size, model, path), unfused in timed.items():
        if model != VARIANTS["unfused"]:
            continue
        row = [size, path, unfused]
        for variant in variants:
            ms = timed.get((size, VARIANTS[variant], path))
            row += [ms, None if ms is None else ms / unfused]
        result.append(row)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, pinned = parse_arguments(parser, argv, PATHS)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or set(variants) - set(VARIANTS):
        parser.error(f"--variants: choose from {', '.join(VARIANTS)}")
    import tensorflow as tf

    from sci_tf.spec import build_enhancer

    rates = print_machine("SCI inference benchmark", args, pinned, bf16=False)
    print(f"input: {describe_input(args.images)}; weights: {args.weights or 'preset ' + args.preset}")
    trained = build_enhancer(preset=None if args.weights else args.preset, weights=args.weights, fused=False)
    enhancers = {"unfused": trained, "fused": trained.fuse(pack_width=False), "packed": trained.fuse()}
    runs = {variant: enhancer_fn(enhancers[variant], ()) for variant in variants}
    rows, cases = [], []
    with workdir() as tmp:
        caches = {variant: EngineCache(enhancer_factories(enhancers[variant], (), Path(tmp) / variant, args))
                  for variant in variants}
        for size in args.sizes:
            # Every row's PSNR is against the unfused fp32 eager output (the model as trained).
            unfused = enhancer_case(size, VARIANTS["unfused"], enhancer_fn(trained, ()), args)
            # Fused and packed rows share the folded network's FLOPs (the packed kernels' extra weights are zeros).
            specs = [tf.TensorSpec(x.shape, x.dtype) for x in unfused.inputs]
            folded_flops = graph_flops(enhancer_fn(enhancers["fused"], ()), *specs)
            pairs = [(unfused if variant == "unfused" else
                      dataclasses.replace(unfused, label=VARIANTS[variant], flops=folded_flops), caches[variant])
                     for variant in variants]
            cases += [case for case, _ in pairs]
            # The variants of each path are timed interleaved, so the printed ratios compare like with like.
            rows += time_cases(pairs, args.paths, rates, args,
                               target=lambda size_text, *_: TARGET if size_text == TARGET_SIZE else None)
    print_table(f"SCI ms/image (median of {args.repeats} after {args.warmup} warm-up calls; PSNR vs fp32 eager "
                "of the unfused model)", HEADER, rows)
    others = [variant for variant in variants if variant != "unfused"]
    ratios = ratio_rows(rows, others) if "unfused" in variants and others else []
    if ratios:
        print_table("SCI variants vs unfused, same run (ratio < 1: faster than the model as trained)",
                    ("size", "path", "unfused ms", *(f"{v} {c}" for v in others for c in ("ms", "/unfused"))),
                    ratios)
    if args.profile:
        print_op_profile(f"{cases[0].label} fp32 graph at {cases[0].size_text}", runs[variants[0]],
                         cases[0].arrays, threads=args.threads)
    print()
    for variant in variants:
        print(summary_line(rows, TARGET_SIZE, VARIANTS[variant], ("fp32", "fp16 weights", "int8"), "path", TARGET,
                           context=" (original PyTorch: ~5 ms)"))
    print(load_note("load average at end", own_threads=args.threads))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
