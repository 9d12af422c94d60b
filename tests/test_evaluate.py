"""`llie evaluate`: the table, protocols (plain, gt-mean, gt-ratio), NIQE without ground truth, CSV, errors.

The numbers are checked against independent numpy computations of what the protocol says."""

from __future__ import annotations

import csv
import dataclasses
import math

import numpy as np
import pytest
from PIL import Image

from tests.enhancer_testing import SCALE_SPEC, ScaleEnhancer, error_lines, run_llie, test_models  # noqa: F401
from train import registry
from train.evaluate import format_table, Row, scale_to_reference_mean
from train.niqe import niqe

SIZE = (40, 56)  # ≥ 11 for SSIM's window


def _smooth_image(seed: int, size=SIZE, low=0.0, high=1.0) -> np.ndarray:
    """A smooth random float image in [low, high], quantised to 8 bits."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(low, high, (size[0] // 8 + 2, size[1] // 8 + 2, 3))
    grid = np.kron(coarse, np.ones((8, 8, 1)))[: size[0], : size[1]]
    return np.round(grid * 255) / 255


def _save(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(path)


@pytest.fixture
def lol(tmp_path):
    """tmp/eval15/{low,high}/{1,2}.png; the ground truth is brighter than 2×low (the test model's output)."""
    pairs = {}
    for index, name in enumerate(["1.png", "2.png"]):
        low = _smooth_image(index, low=0.02, high=0.15)
        high = np.round(np.clip(low * 2.6 + 0.03 * _smooth_image(10 + index), 0, 1) * 255) / 255
        _save(tmp_path / "eval15" / "low" / name, low)
        _save(tmp_path / "eval15" / "high" / name, high)
        pairs[name] = (low, high)
    return tmp_path, pairs


def _psnr(output: np.ndarray, reference: np.ndarray) -> float:
    quantised = np.round(np.clip(output, 0, 1) * 255) / 255  # metrics are on the written 8-bit output
    return 10 * math.log10(1.0 / np.mean((quantised - reference) ** 2))


def _read_csv(path):
    with open(path, newline="") as handle:
        return {row["image"]: row for row in csv.DictReader(handle)}


def test_plain_protocol_table_and_csv(lol, capsys, test_models):
    root, pairs = lol
    status, stdout, stderr = run_llie(capsys, "evaluate", "--model", "scale-test", "--data", root,
                                      "--csv", root / "scores.csv")
    assert status == 0 and stderr == ""
    lines = stdout.splitlines()
    assert "protocol: plain" in lines[0] and "2 pairs" in lines[0]
    assert lines[1].split() == ["image", "PSNR", "(dB)", "SSIM"]
    assert [line.split()[0] for line in lines[2:]] == ["1.png", "2.png", "mean"]
    table = _read_csv(root / "scores.csv")
    expected = {name: _psnr(2 * low, high) for name, (low, high) in pairs.items()}
    for name, value in expected.items():
        assert float(table[name]["psnr"]) == pytest.approx(value, abs=1e-4)
        printed = next(line for line in lines if line.startswith(name)).split()
        assert float(printed[1]) == pytest.approx(value, abs=1e-4)
        assert -1 < float(table[name]["ssim"]) < 1
    assert float(table["mean"]["psnr"]) == pytest.approx(np.mean(list(expected.values())), abs=1e-4)


def test_gt_mean_protocol_rescales_to_the_ground_truth_mean(lol, capsys, test_models):
    root, pairs = lol
    run_llie(capsys, "evaluate", "--model", "scale-test", "--data", root, "--csv", root / "plain.csv")
    status, stdout, _ = run_llie(capsys, "evaluate", "--model", "scale-test", "--data", root,
                                 "--protocol", "gt-mean", "--csv", root / "gt_mean.csv")
    assert status == 0 and "protocol: gt-mean" in stdout.splitlines()[0]
    plain, gt_mean = _read_csv(root / "plain.csv"), _read_csv(root / "gt_mean.csv")
    luma = np.array([0.299, 0.587, 0.114])
    for name, (low, high) in pairs.items():
        output = np.clip(2 * low, 0, 1)
        rescaled = np.clip(output * (np.mean(high @ luma) / np.mean(output @ luma)), 0, 1)
        assert float(gt_mean[name]["psnr"]) == pytest.approx(_psnr(rescaled, high), abs=1e-4)
        # The ground truth is ~1.3× brighter than the output, so matching the mean helps a lot here.
        assert float(gt_mean[name]["psnr"]) > float(plain[name]["psnr"]) + 3


def test_scale_to_reference_mean():
    output = np.full((4, 4, 3), 0.2, np.float32)
    reference = np.full((4, 4, 3), 0.5, np.float32)
    np.testing.assert_allclose(scale_to_reference_mean(output, reference), 0.5, atol=1e-7)
    bright = np.full((4, 4, 3), 0.9, np.float32)
    assert scale_to_reference_mean(output, bright * 3).max() == 1.0  # clipped


def test_gt_ratio_protocol_uses_the_model_hook(lol, capsys, test_models):
    root, pairs = lol
    status, _, _ = run_llie(capsys, "evaluate", "--model", "scale-test", "--data", root,
                            "--protocol", "gt-ratio", "--csv", root / "ratio.csv")
    assert status == 0
    table = _read_csv(root / "ratio.csv")
    for name, (low, high) in pairs.items():
        boost = np.float32(np.mean(high) / (np.mean(low) * 2))
        assert float(table[name]["psnr"]) == pytest.approx(_psnr(low * 2 * boost, high), abs=1e-4)
    status, stdout, stderr = run_llie(capsys, "evaluate", "--model", "plain-test", "--data", root,
                                      "--protocol", "gt-ratio")
    assert status == 1 and stdout == "" and stderr.count("\n") == 1
    assert "model 'plain-test' derives no inputs from the ground truth" in error_lines(stderr, "evaluate")[0]


def test_gt_ratio_protocol_scores_the_models_reference_enhancer(lol, capsys, monkeypatch):
    """`ModelSpec.reference_enhancer` (KinD: its LOL mode) replaces the loaded enhancer under gt-ratio only; the
    extras hook then sees the reference enhancer (here factor 1.5 instead of the preset's 2, so boost 0.75)."""
    spec = dataclasses.replace(SCALE_SPEC, name="reference-test",
                               reference_enhancer=lambda enhancer: ScaleEnhancer(enhancer.factor * 0.75),
                               extras_from_reference=lambda enhancer, low, high: {
                                   "boost": np.array([enhancer.factor / 2], np.float32)})
    monkeypatch.setitem(registry._REGISTERED, spec.name, spec)
    root, pairs = lol
    for protocol in ("plain", "gt-ratio"):
        status, stdout, _ = run_llie(capsys, "evaluate", "--model", "reference-test", "--data", root,
                                     "--protocol", protocol, "--csv", root / f"{protocol}.csv")
        assert status == 0 and f"protocol: {protocol}" in stdout.splitlines()[0]
    plain, ratio = _read_csv(root / "plain.csv"), _read_csv(root / "gt-ratio.csv")
    for name, (low, high) in pairs.items():
        assert float(plain[name]["psnr"]) == pytest.approx(_psnr(low * 2, high), abs=1e-4)
        assert float(ratio[name]["psnr"]) == pytest.approx(_psnr(low * 1.5 * 0.75, high), abs=1e-4)


def test_no_reference_folder_reports_niqe(tmp_path, capsys, test_models):
    images = {"a.png": _smooth_image(1, size=(100, 200), high=0.4), "b.png": _smooth_image(2, size=(96, 192))}
    for name, image in images.items():
        _save(tmp_path / "dark" / name, image)
    _save(tmp_path / "dark" / "tiny.png", _smooth_image(3, size=(64, 64)))
    status, stdout, stderr = run_llie(capsys, "evaluate", "--model", "scale-test", "--data", tmp_path / "dark",
                                      "--csv", tmp_path / "niqe.csv")
    assert status == 1  # tiny.png is too small for NIQE
    errors = error_lines(stderr, "evaluate")
    assert len(errors) == 1 and errors[0].startswith("llie evaluate: error: tiny.png: NIQE needs at least two")
    assert "protocol: no-reference" in stdout.splitlines()[0]
    assert "tiny.png" in stdout and "n/a" in stdout
    table = _read_csv(tmp_path / "niqe.csv")
    expected = {name: niqe(np.round(np.clip(2 * image, 0, 1) * 255) / 255) for name, image in images.items()}
    for name, value in expected.items():
        assert float(table[name]["niqe"]) == pytest.approx(value, rel=1e-9)
    assert float(table["mean"]["niqe"]) == pytest.approx(np.mean(list(expected.values())), rel=1e-9)
    assert table["tiny.png"]["niqe"] == ""


def test_niqe_column_and_forced_no_reference(lol, capsys, test_models):
    root, _ = lol
    for name in ("1.png", "2.png"):  # NIQE needs ≥ 2 blocks of 96×96
        for side in ("low", "high"):
            _save(root / "eval15" / side / name, _smooth_image(5, size=(96, 192), high=0.3))
    status, stdout, _ = run_llie(capsys, "evaluate", "--model", "scale-test", "--data", root, "--niqe")
    assert status == 0 and stdout.splitlines()[1].split()[-1] == "NIQE"
    status, stdout, _ = run_llie(capsys, "evaluate", "--model", "scale-test", "--data", root / "eval15",
                                 "--no-reference")
    assert status == 0
    assert "protocol: no-reference" in stdout and f"{root / 'eval15' / 'low'} (2 images)" in stdout


def test_layout_and_protocol_errors_are_one_line(tmp_path, lol, capsys, test_models):
    root, _ = lol
    _save(root / "eval15" / "high" / "3.png", _smooth_image(9))  # no low partner
    status, _, stderr = run_llie(capsys, "evaluate", "--model", "scale-test", "--data", root)
    assert status == 1 and stderr.count("\n") == 1 and "3.png" in error_lines(stderr, "evaluate")[0]
    _save(tmp_path / "plain" / "x.png", _smooth_image(9))
    status, _, stderr = run_llie(capsys, "evaluate", "--model", "scale-test", "--data", tmp_path / "plain",
                                 "--protocol", "gt-mean")
    assert status == 1 and "--protocol gt-mean needs ground truth" in error_lines(stderr, "evaluate")[0]
    status, _, stderr = run_llie(capsys, "evaluate", "--model", "scale-test", "--data", tmp_path / "plain",
                                 "--niqe-params", tmp_path / "missing.npz")
    assert status == 1 and "missing.npz: not a NIQE parameter file" in error_lines(stderr, "evaluate")[0]


def test_format_table_marks_missing_scores():
    text = format_table("header", [Row("a.png", niqe=3.0), Row("b.png")], ["niqe"])
    assert text.splitlines() == ["header", "image          NIQE", "a.png        3.0000", "b.png           n/a",
                                 "mean         3.0000"]
