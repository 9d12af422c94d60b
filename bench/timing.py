"""Shared benchmark helpers: thread pinning, warm-up + median timing, the machine's matmul rate, FLOPs, inputs,
PSNR, tables.

Benchmarks print tables; they never assert. Every script measures the matmul rate in the same run, so ratios
("fraction of the measured rate reached") compare like with like.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from train.sizes import parse_size

# Above this 1-minute load average (on this 2-core machine) other work competes for the cores: say so.
QUIET_LOAD = 1.5


def pin_threads(threads: int = 2) -> bool:
    """Limit TensorFlow to `threads` intra-op and inter-op threads. Call before any TF op runs.

    Returns False (and changes nothing) when TensorFlow's runtime is already initialised, e.g. when a script runs
    inside pytest; the scripts print which thread setting was actually in force.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # "cannot be modified after initialization"
        return False
    return True


# === Timing ===


@dataclasses.dataclass(frozen=True)
class Timing:
    """Median wall time after warm-up, and the first (warm-up) call: tracing, XLA compilation, allocation."""

    median_ms: float
    first_ms: float
    samples: int


def measure(fn: Callable[[], object], *, warmup: int = 2, repeats: int = 10) -> Timing:
    """Time `fn()`: `max(warmup, 1)` untimed calls (the first one reported separately), then the median of
    `repeats` timed calls, in milliseconds."""
    return measure_interleaved({0: fn}, warmup=warmup, repeats=repeats)[0]


def measure_interleaved(fns: dict, *, warmup: int = 2, repeats: int = 10) -> dict:
    """`measure` of several functions (key → fn), their timed calls interleaved (each round calls every fn
    once), so that a change of the machine's load during the run affects them alike. Returns key → Timing."""
    first_ms = {}
    for key, fn in fns.items():
        for index in range(max(warmup, 1)):
            start = time.perf_counter()
            _materialise(fn())
            if index == 0:
                first_ms[key] = (time.perf_counter() - start) * 1000.0
    samples: dict = {key: [] for key in fns}
    for _ in range(max(repeats, 1)):
        for key, fn in fns.items():
            start = time.perf_counter()
            _materialise(fn())
            samples[key].append((time.perf_counter() - start) * 1000.0)
    return {key: Timing(statistics.median(samples[key]), first_ms[key], len(samples[key])) for key in fns}


def _materialise(result: object) -> None:
    """Force lazy/async results so the timing covers the whole computation."""
    if hasattr(result, "numpy"):
        result.numpy()
    elif isinstance(result, (list, tuple)):
        for item in result:
            _materialise(item)
    elif isinstance(result, dict):
        for item in result.values():
            _materialise(item)


# === Rates and FLOPs ===


def matmul_gflops(n: int = 2048, dtype: str = "float32", repeats: int = 10) -> float:
    """Measured GFLOP/s of an n×n by n×n TensorFlow matmul (2n³ FLOPs) in this process and thread setting."""
    import tensorflow as tf

    a = tf.random.normal((n, n), dtype=tf.float32)
    b = tf.random.normal((n, n), dtype=tf.float32)
    if dtype != "float32":
        a, b = tf.cast(a, dtype), tf.cast(b, dtype)
    step = tf.function(lambda: tf.matmul(a, b))
    ms = measure(step, warmup=2, repeats=repeats).median_ms
    return 2.0 * n**3 / (ms / 1000.0) / 1e9


def graph_flops(fn: Callable[..., object], *input_specs) -> float:
    """FLOPs of one call of `fn` on tensors of the given `tf.TensorSpec`s (fully defined shapes), counted by
    TensorFlow's graph profiler (convolutions, matmuls and element-wise ops as registered by TF).

    A `tf.function` already traced for these shapes is not traced again.
    """
    import tensorflow as tf

    function = fn if hasattr(fn, "get_concrete_function") else tf.function(fn)
    concrete = function.get_concrete_function(*input_specs)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")  # the v1 profiler logs a deprecation notice on every call
    try:
        info = tf.compat.v1.profiler.profile(graph=concrete.graph, options=options)
    finally:
        logger.setLevel(level)
    return float(info.total_float_ops)


def op_profile(fn: Callable[..., object], inputs: Sequence[np.ndarray], *, threads: int = 2,
               runs: int = 3) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    """Where one call of `fn` spends its time: (ms per op type, ms per (node, op type)), averaged over `runs`.

    The graph of `tf.function(fn)` is frozen (variables → constants) and run in a TF1 session with FULL_TRACE
    step statistics, on `threads` threads. Freezing lets Grappler fold a little more than the live function
    (e.g. constant BatchNorm scales), so totals can differ slightly from the timed paths; op times are wall
    times and include waiting when the machine is busy.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    specs = [tf.TensorSpec(np.shape(x), tf.float32) for x in inputs]
    frozen = convert_variables_to_constants_v2(tf.function(fn).get_concrete_function(*specs))
    by_type: dict[str, float] = {}
    by_node: dict[tuple[str, str], float] = {}
    with tf.Graph().as_default() as graph:
        tf.import_graph_def(frozen.graph.as_graph_def(), name="")
        feeds = {graph.get_tensor_by_name(t.name): x for t, x in zip(frozen.inputs, inputs)}
        fetches = [graph.get_tensor_by_name(t.name) for t in frozen.outputs]
        config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads,
                                          inter_op_parallelism_threads=threads)
        with tf.compat.v1.Session(graph=graph, config=config) as session:
            session.run(fetches, feeds)  # warm-up: oneDNN primitive creation
            options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
            for _ in range(runs):
                metadata = tf.compat.v1.RunMetadata()
                session.run(fetches, feeds, options=options, run_metadata=metadata)
                for device in metadata.step_stats.dev_stats:
                    for node in device.node_stats:
                        label = node.timeline_label
                        op = (label.split("=", 1)[1] if "=" in label else label).strip().split("(")[0]
                        ms = (node.op_end_rel_micros - node.op_start_rel_micros) / 1000.0 / runs
                        by_type[op] = by_type.get(op, 0.0) + ms
                        by_node[(node.node_name, op)] = by_node.get((node.node_name, op), 0.0) + ms
    return by_type, by_node


def print_op_profile(title: str, fn: Callable[..., object], inputs: Sequence[np.ndarray], *, threads: int,
                     top: int = 12) -> None:
    """`op_profile` as two tables: time per op type, and the `top` most expensive nodes."""
    by_type, by_node = op_profile(fn, inputs, threads=threads)
    total = sum(by_type.values()) or 1.0
    types = sorted(by_type.items(), key=lambda kv: -kv[1])[:top]
    print_table(f"{title}: time per op type (frozen graph, {threads} threads; sum {total:.1f} ms/call)",
                ("op", "ms/call", "% of sum"), [[op, ms, 100.0 * ms / total] for op, ms in types if ms > 0])
    nodes = sorted(by_node.items(), key=lambda kv: -kv[1])[:top]
    print_table(f"{title}: {top} most expensive nodes", ("node", "op", "ms/call"),
                [[name[-70:], op, ms] for (name, op), ms in nodes])


def achieved(flops: float | None, ms: float | None, rate_gflops: float | None) -> tuple:
    """(GFLOP/s reached, % of the matmul rate): FLOPs / time, and that over the measured matmul GFLOP/s."""
    if not flops or not ms or not rate_gflops:
        return None, None
    gflops = flops / (ms / 1000.0) / 1e9
    return gflops, 100.0 * gflops / rate_gflops


def psnr_db(reference: np.ndarray, output: np.ndarray) -> float:
    """PSNR of `output` against `reference` (both in [0,1]) over all pixels, dB; inf when identical."""
    error = np.mean((np.asarray(reference, np.float64) - np.asarray(output, np.float64)) ** 2)
    return float("inf") if error == 0 else float(10.0 * np.log10(1.0 / error))


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB: VmHWM on Linux, else ru_maxrss.

    VmHWM belongs to the process image, so a freshly exec'd child starts from zero; Linux carries ru_maxrss
    across fork+exec, so a child started by a large parent would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# === Command line and machine ===


def add_common_arguments(parser: argparse.ArgumentParser, sizes: Sequence[str], paths: Sequence[str]) -> None:
    """Flags shared by every benchmark script."""
    parser.add_argument("--size", dest="sizes", action="append", type=parse_size, metavar="HxW",
                        help=f"image size, height x width; repeat for several (default: {' '.join(sizes)})")
    parser.set_defaults(default_sizes=[parse_size(s) for s in sizes])
    parser.add_argument("--paths", default=",".join(paths), metavar="P,P",
                        help=f"comma-separated ways of running to measure (default: all: {','.join(paths)})")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per measurement; median (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before timing (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="TF intra/inter-op and TFLite threads (default 2)")
    parser.add_argument("--matmul-size", type=int, default=2048, metavar="N",
                        help="N of the N×N matmul whose GFLOP/s is the reference rate (default 2048)")
    parser.add_argument("--images", metavar="DIR", help="folder of low-light images: the first one, resized, is "
                        "the benchmark input, all are int8 calibration data (default: a synthetic dark image)")
    parser.add_argument("--calibration-size", type=int, default=256, metavar="PX",
                        help="int8 TFLite: side of the calibration crops (default 256)")
    parser.add_argument("--calibration-samples", type=int, default=32, metavar="N",
                        help="int8 TFLite: number of calibration crops (default 32)")
    parser.add_argument("--profile", action="store_true",
                        help="also print where the fp32 graph spends its time (per op type, top nodes) at the "
                             "first size")


def parse_arguments(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                    known_paths: Sequence[str]) -> tuple[argparse.Namespace, bool]:
    """Parse, fill the default sizes, turn --paths into a list (rejecting unknown names), then `pin_threads`.

    Returns (args, whether the thread setting was applied)."""
    args = parser.parse_args(argv)
    args.sizes = args.sizes or args.default_sizes
    args.paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = sorted(set(args.paths) - set(known_paths))
    if unknown:
        parser.error(f"unknown --paths {', '.join(unknown)} (known: {', '.join(known_paths)})")
    if args.images is not None:
        from train.errors import DatasetLayoutError
        from train.folders import list_images

        try:
            list_images(args.images)
        except DatasetLayoutError as err:  # a missing or imageless folder: a usage error, before any timing
            parser.error(f"--images: {err}")
    return args, pin_threads(args.threads)


def cpu_description() -> str:
    """CPU model name and its AMX / AVX-512 BF16 features from /proc/cpuinfo (Linux), else the platform."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                platform.machine())
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    bf16 = sorted(f for f in flags if f.startswith("amx") or f == "avx512_bf16")
    return f"{name} ({os.cpu_count()} logical CPUs; bf16 features: {', '.join(bf16) or 'none'})"


def print_machine(title: str, args: argparse.Namespace, pinned: bool, *, bf16: bool) -> dict[str, float]:
    """Print the title, machine, load and thread setting; measure and print the matmul GFLOP/s of this run.

    Returns {"fp32": GFLOP/s, "bf16": GFLOP/s (when `bf16`)}.
    """
    import tensorflow as tf

    print(title)
    threads = args.threads if pinned else tf.config.threading.get_intra_op_parallelism_threads() or "default"
    print(f"machine: {cpu_description()}")
    print(f"python {sys.version.split()[0]}, TensorFlow {tf.__version__}; TF threads: {threads}"
          + ("" if pinned else " (runtime already initialised: --threads not applied)"))
    print(load_note("load average at start"))
    rates = {"fp32": matmul_gflops(args.matmul_size, "float32", repeats=args.repeats)}
    line = f"matmul {args.matmul_size}² fp32: {rates['fp32']:.1f} GFLOP/s"
    if bf16:
        rates["bf16"] = matmul_gflops(args.matmul_size, "bfloat16", repeats=args.repeats)
        line += f"; bf16: {rates['bf16']:.1f} GFLOP/s"
    print(line + f" (median of {args.repeats}, same process and threads)")
    return rates


def load_note(label: str, own_threads: int = 0) -> str:
    """`label: 1-min load` plus a warning when the machine is busy (timings then overstate the cost).

    At the end of a run the load includes the run's own `own_threads` busy threads, so the threshold rises by
    that much."""
    load = os.getloadavg()[0]
    limit = QUIET_LOAD + own_threads
    warning = f"  ** busy machine (> {limit:g}): timings are polluted **" if load > limit else ""
    own = f" (includes this run's {own_threads} threads)" if own_threads else ""
    return f"{label}{own}: {load:.2f}{warning}"


# === Inputs ===


def synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic dark scene (H, W, 3) float32 in [0,1]: smooth coloured shading (mean ≈ 0.08) plus
    sensor-like noise, so int8 calibration and PSNR see image-like statistics."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0.0, 0.2, size=(6, 9, 3))
    rows = np.linspace(0, coarse.shape[0] - 1, height)
    cols = np.linspace(0, coarse.shape[1] - 1, width)
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    r1, c1 = np.minimum(r0 + 1, coarse.shape[0] - 1), np.minimum(c0 + 1, coarse.shape[1] - 1)
    fr, fc = (rows - r0)[:, None, None], (cols - c0)[None, :, None]
    top = coarse[r0][:, c0] * (1 - fc) + coarse[r0][:, c1] * fc
    bottom = coarse[r1][:, c0] * (1 - fc) + coarse[r1][:, c1] * fc
    image = top * (1 - fr) + bottom * fr + rng.normal(0.0, 0.01, size=(height, width, 3))
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def sample_image(height: int, width: int, images: str | None = None) -> np.ndarray:
    """The benchmark input (1, H, W, 3) float32 in [0,1]: the first image of `images` resized (bilinear) to
    H×W, or `synthetic_image`."""
    if images is None:
        return synthetic_image(height, width)[None]
    import tensorflow as tf
    from train.folders import list_images
    from train.io import read_image

    picture = read_image(list_images(images)[0])
    return np.clip(tf.image.resize(picture[None], (height, width)).numpy(), 0.0, 1.0).astype(np.float32)


def calibration_images(images: str | None = None) -> list[np.ndarray]:
    """int8 calibration data: every image of `images` (H, W, 3), or three synthetic 256×256 scenes."""
    if images is None:
        return [synthetic_image(256, 256, seed) for seed in range(3)]
    from train.folders import list_images
    from train.io import read_image

    return [read_image(p) for p in list_images(images)]


def describe_input(images: str | None) -> str:
    return f"first image of {images}, resized" if images else "synthetic dark scene (pass --images DIR for real data)"


# === Tables ===


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a fixed-width text table; None cells print as '-'."""
    cells = [[str(c) for c in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(cells[0], widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return str(value)
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"
    return str(value)
