"""The benchmark scripts run end to end at a tiny size and print the rows they promise (functional checks of the
scripts: no timing is asserted)."""

from __future__ import annotations

import math
import re

import keras
import pytest

from bench import bench_enlightengan, bench_kind, bench_sci
from bench.runners import PRECISION, REDUCED_PRECISIONS, is_reduced_precision
from bench.timing import measure_interleaved, peak_rss_mb

TINY = ["--size", "32x48", "--repeats", "1", "--warmup", "1", "--matmul-size", "64"]


def parse_table(text: str, title_start: str) -> list[dict[str, str]]:
    """Rows (header → cell) of the printed table whose title starts with `title_start`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title_start))
    header = re.split(r"\s{2,}", lines[start + 1].strip())
    assert set(lines[start + 2].replace(" ", "")) == {"-"}
    rows = []
    for line in lines[start + 3:]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        assert len(cells) == len(header), line
        rows.append(dict(zip(header, cells)))
    return rows


def by_model_and_path(rows: list[dict[str, str]]) -> dict[tuple[str, str], dict[str, str]]:
    return {(row["model"], row["path"]): row for row in rows}


def assert_timed(row: dict[str, str], precision: str) -> None:
    assert row["size"] == "32x48"
    assert row["precision"] == precision
    assert float(row["ms/image"]) > 0.0
    assert float(row["GFLOP"]) > 0.0
    assert float(row["% matmul"]) > 0.0


def test_bench_sci_prints_a_row_per_path(capsys):
    paths = ("eager", "function", "savedmodel", "tflite-fp32", "tflite-fixed")
    bench_sci.main(TINY + ["--paths", ",".join(paths)])
    out = capsys.readouterr().out
    assert re.search(r"matmul 64² fp32: [\d.]+ GFLOP/s", out)
    rows = by_model_and_path(parse_table(out, "SCI ms/image"))
    models = ("SCI", "SCI fused", "SCI packed")
    assert sorted(rows) == sorted((model, p) for model in models for p in paths)
    for row in rows.values():
        assert_timed(row, "fp32")
    # The compiled paths compute the same function: fp32 round-off only; the fused form (BatchNorm folded) and
    # the packed one too, against the unfused eager output; fused with fewer FLOPs (no BatchNorm pass), packed
    # counted as fused (its extra kernel weights are zeros).
    for model in models:
        for path in ("function", "tflite-fp32", "tflite-fixed"):
            assert float(rows[model, path]["PSNR vs fp32 dB"]) > 100.0, (model, path)
    assert float(rows["SCI fused", "function"]["GFLOP"]) < float(rows["SCI", "function"]["GFLOP"])
    assert rows["SCI packed", "function"]["GFLOP"] == rows["SCI fused", "function"]["GFLOP"]
    assert rows["SCI", "tflite-fp32"]["note"].startswith("export ")
    ratios = {row["path"]: row for row in parse_table(out, "SCI variants vs unfused, same run")}
    assert sorted(ratios) == sorted(paths)
    for row in ratios.values():
        for variant in ("fused", "packed"):
            assert float(row[f"{variant} /unfused"]) == pytest.approx(
                float(row[f"{variant} ms"]) / float(row["unfused ms"]), rel=0.05)
    for model in models:
        assert f"best path {model} at 400x600: not measured in this run — target ≤3.5 ms" in out


def test_bench_sci_compiled_and_quantized_rows(capsys):
    bench_sci.main(TINY + ["--paths", "xla,tflite-fp16,tflite-int8", "--variants", "fused",
                           "--calibration-size", "16", "--calibration-samples", "2"])
    out = capsys.readouterr().out
    rows = by_model_and_path(parse_table(out, "SCI ms/image"))
    assert sorted(rows) == [("SCI fused", p) for p in ("tflite-fp16", "tflite-int8", "xla")]
    assert_timed(rows["SCI fused", "xla"], "fp32")
    assert float(rows["SCI fused", "xla"]["PSNR vs fp32 dB"]) > 100.0
    assert_timed(rows["SCI fused", "tflite-fp16"], "fp16 weights")
    assert_timed(rows["SCI fused", "tflite-int8"], "int8")
    # Reduced precision: close to fp32, but not identical (so the quantized file really was used).
    assert 45.0 <= float(rows["SCI fused", "tflite-fp16"]["PSNR vs fp32 dB"]) < 200.0
    assert 20.0 <= float(rows["SCI fused", "tflite-int8"]["PSNR vs fp32 dB"]) < 60.0
    assert "SCI variants vs unfused" not in out  # one variant: no ratios


def test_variants_are_timed_interleaved():
    calls = []
    timings = measure_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                                  warmup=2, repeats=3)
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3  # warm-up per function, then one call of each in turn
    assert {key: t.samples for key, t in timings.items()} == {"a": 3, "b": 3}
    assert all(t.median_ms >= 0 and t.first_ms >= 0 for t in timings.values())


def test_bench_kind_prints_pipeline_and_network_rows(capsys):
    # bf16 only: its rows run the same tf.function engine as "function", plus the bf16 twin and the fp32 FLOPs.
    bench_kind.main(TINY + ["--paths", "bf16"])
    out = capsys.readouterr().out
    assert re.search(r"matmul 64² fp32: [\d.]+ GFLOP/s; bf16: [\d.]+ GFLOP/s", out)
    rows = by_model_and_path(parse_table(out, "KinD ms/image"))
    models = ("KinD", "Decom", "Restoration", "Adjust")
    assert sorted(rows) == sorted((m, "bf16") for m in models)
    for model in models:
        assert_timed(rows[model, "bf16"], "bf16")
        # The bf16 twin holds the fp32 weights (a copy that failed would give a different network entirely).
        assert 25.0 < float(rows[model, "bf16"]["PSNR vs fp32 dB"]) < 200.0
        assert rows[model, "bf16"]["note"] == "% of bf16 matmul"
    # The pipeline's FLOPs are the sum of its networks' plus a little arithmetic (guide, fusion).
    networks = sum(float(rows[m, "bf16"]["GFLOP"]) for m in models[1:])
    assert 0.99 * networks <= float(rows["KinD", "bf16"]["GFLOP"]) < 1.1 * networks  # 3 printed digits
    assert "best reduced-precision path KinD at 400x600: not measured in this run" in out
    assert keras.config.dtype_policy().name == "float32"  # the bf16 build restored the global policy


def test_bench_enlightengan_prints_inference_and_memory_rows(capsys):
    before = peak_rss_mb()
    bench_enlightengan.main(TINY + ["--paths", "function,bf16", "--rss", "process"])
    after = peak_rss_mb()
    out = capsys.readouterr().out
    rows = by_model_and_path(parse_table(out, "EnlightenGAN generator ms/image"))
    assert sorted(rows) == [("EnlightenGAN", "bf16"), ("EnlightenGAN", "function")]
    assert_timed(rows["EnlightenGAN", "function"], "fp32")
    assert_timed(rows["EnlightenGAN", "bf16"], "bf16")
    assert 25.0 < float(rows["EnlightenGAN", "bf16"]["PSNR vs fp32 dB"]) < 200.0
    memory = parse_table(out, "Peak RSS MiB")
    assert [(r["size"], r["precision"]) for r in memory] == [("32x48", "fp32"), ("32x48", "bf16")]
    for row in memory:  # this process's running peak, in MiB (printed to 0.1)
        assert before - 0.1 <= float(row["peak RSS MiB"]) <= after + 0.1, row
    assert "EnlightenGAN.train_step" not in out  # not asked for
    assert "best fp32 path EnlightenGAN at 1080x1920: not measured in this run — target ≤6000 ms" in out
    assert keras.config.dtype_policy().name == "float32"


@pytest.mark.slow  # tracing and optimising the GAN's training graph alone takes ~15 s of CPU
def test_bench_enlightengan_prints_training_row(capsys):
    bench_enlightengan.main(TINY + ["--paths", "train", "--rss", "off", "--train-size", "32x32"])
    out = capsys.readouterr().out
    (train,) = parse_table(out, "EnlightenGAN.train_step")
    assert (train["size"], train["batch"], train["note"]) == ("32x32", "1", "random VGG16 weights")
    assert math.isclose(float(train["steps/s"]) * float(train["ms/step"]), 1000.0, rel_tol=0.01)
    assert float(train["GFLOP"]) > 0


def test_unknown_path_and_imageless_images_folder_are_rejected(capsys, tmp_path):
    with pytest.raises(SystemExit):
        bench_sci.main(TINY + ["--paths", "warp-drive"])
    assert "unknown --paths warp-drive" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(SystemExit):
        bench_sci.main(TINY + ["--images", str(tmp_path)])
    assert f"--images: {tmp_path}: no images in this folder" in capsys.readouterr().err


def test_reduced_precision_targets_follow_the_precision_table():
    assert set(REDUCED_PRECISIONS) == {"bf16", "fp16 weights", "int8"}
    assert [path for path in PRECISION if is_reduced_precision(path)] == ["tflite-fp16", "tflite-int8", "bf16"]
    for path in ("tflite-fp16", "tflite-int8", "bf16"):
        assert bench_kind._target("400x600", "KinD", path) is bench_kind.REDUCED_TARGET
        assert bench_enlightengan._target("400x600", "EnlightenGAN", path) is bench_enlightengan.TARGETS[
            ("400x600", "reduced")]
    assert bench_kind._target("400x600", "KinD", "savedmodel") is bench_kind.FP32_TARGET
