"""SCI inference benchmark: ms/image of `SCIEnhancer` (preset "medium") by way of running, at each size.

    python -m bench.bench_sci [--size 400x600 --size 1080x1920] [--repeats 10] [--paths eager,function,...]

Prints one row per (size, path): median ms/image over --repeats calls after --warmup, on --threads threads,
the network's FLOPs (TF profiler) and the fraction of this run's fp32 matmul rate reached, PSNR against the
fp32 eager output, and the target at 400×600: under 3.5 ms for the best path (the original PyTorch model takes
about 5 ms on the 2-core reference machine). Never asserts.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from bench.runners import (HEADER, EngineCache, Target, enhancer_case, enhancer_factories, enhancer_fn,
                           summary_line, time_case, workdir)
from bench.timing import (add_common_arguments, describe_input, load_note, parse_arguments, print_machine,
                          print_op_profile, print_table)

PATHS = ("eager", "function", "xla", "savedmodel", "tflite-fp32", "tflite-fp16", "tflite-int8")
TARGET_SIZE = "400x600"
# The best path at 400×600 on 2 cores; the original PyTorch `Finetunemodel` takes about 5 ms there.
TARGET = Target(3.5)
LABEL = "SCI"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_sci", description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, ("400x600", "1080x1920"), PATHS)
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--preset", default="medium", help="SCI preset (default: medium)")
    weights.add_argument("--weights", metavar="PATH", help="an SCIEnhancer .weights.h5 instead of the preset")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, pinned = parse_arguments(parser, argv, PATHS)
    from sci_tf.spec import build_enhancer

    rates = print_machine("SCI inference benchmark", args, pinned, bf16=False)
    print(f"input: {describe_input(args.images)}; weights: {args.weights or 'preset ' + args.preset}")
    enhancer = build_enhancer(preset=None if args.weights else args.preset, weights=args.weights)
    run = enhancer_fn(enhancer, ())
    rows, cases = [], []
    with workdir() as tmp:
        cache = EngineCache(enhancer_factories(enhancer, (), Path(tmp), args))
        for size in args.sizes:
            cases.append(enhancer_case(size, LABEL, run, args))
            rows += time_case(cases[-1], cache, args.paths, rates, args,
                              target=lambda size_text, *_: TARGET if size_text == TARGET_SIZE else None)
    print_table(f"SCI ms/image (median of {args.repeats} after {args.warmup} warm-up calls; PSNR vs fp32 eager)",
                HEADER, rows)
    if args.profile:
        print_op_profile(f"SCI fp32 graph at {cases[0].size_text}", run, cases[0].arrays, threads=args.threads)
    print()
    print(summary_line(rows, TARGET_SIZE, LABEL, ("fp32", "fp16 weights", "int8"), "path", TARGET,
                       context=" (original PyTorch: ~5 ms)"))
    print(load_note("load average at end", own_threads=args.threads))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
