"""NIQE (train/niqe.py): value check against BasicSR, MATLAB-style imresize, AGGD fits, crops, behaviour."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from tests.reference import REPO_ROOT, shared_data_path
from train.errors import WeightsMismatchError
from train.io import read_image
from train.niqe import _aggd_fit, load_niqe_params, matlab_imresize, niqe, rgb_to_y

# BasicSR 1.4.2 `basicsr.metrics.niqe.niqe` run on the rounded Y plane of these files with its imresize switched to
# float64 (stock BasicSR runs imresize in float32 and gives 2.685462 and 7.469157, within 1e-4 of these). Over
# 65 real images of shared/data the float64 run matched this module to ≤ 2e-13. Not checked against MATLAB.
BASICSR_FLOAT64 = {
    "sci_official_outputs/easy/0016.png": 2.685458693074373,
    "sci_official_outputs/medium/00079.png": 7.469244985345041,
}


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real, well-exposed photo (SCI's output for easy/0016), float RGB (333, 500, 3)."""
    return read_image(shared_data_path("sci_official_outputs/easy") / "0016.png")


@pytest.mark.parametrize("name", sorted(BASICSR_FLOAT64))
def test_matches_basicsr_values(name):
    assert niqe(read_image(shared_data_path(name))) == pytest.approx(BASICSR_FLOAT64[name], abs=1e-9)


def test_deterministic(photo):
    assert niqe(photo) == niqe(photo.copy())


def test_blur_and_noise_score_worse_than_the_clean_photo(photo):
    clean = niqe(photo)
    blurred = gaussian_filter(photo, sigma=(2, 2, 0))
    noisy = np.clip(photo + np.random.default_rng(0).normal(0, 0.08, photo.shape), 0, 1)
    assert niqe(blurred) > clean + 2
    assert niqe(noisy) > clean + 2


def test_only_whole_blocks_count_and_crop_border(photo):
    # 333×500 holds 3×5 blocks of 96: the 45×20 remainder is ignored.
    assert niqe(photo) == niqe(photo[:288, :480])
    assert niqe(photo, crop_border=10) == niqe(photo[10:-10, 10:-10])
    assert niqe(photo[:200]) != niqe(photo)


def test_rgb_and_y_plane_inputs_agree(photo):
    assert niqe(photo) == niqe(rgb_to_y(photo))
    y = rgb_to_y(np.array([[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]]))
    np.testing.assert_allclose(y, [[16.0, 235.0, 16.0 + 65.481]])


@pytest.mark.parametrize("shape", [(95, 400, 3), (96, 191, 3), (200, 200, 3, 1)])
def test_too_small_or_wrong_shape_is_refused(shape):
    with pytest.raises(ValueError):
        niqe(np.zeros(shape))


def test_flat_blocks_are_left_out_not_fatal(photo):
    """A flat block gives NaN features (no negative MSCN values); like the reference, such rows are skipped."""
    dark = photo.copy()
    dark[:96, :96] = 0.0
    score = niqe(dark)
    assert math.isfinite(score) and score != niqe(photo)


# === MATLAB imresize ===


def _cubic(x):
    ax = np.abs(x)
    return np.where(ax <= 1, 1.5 * ax**3 - 2.5 * ax**2 + 1,
                    np.where(ax <= 2, -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2, 0.0))


def _imresize_rows(x, scale):
    """MATLAB's formula written directly: output row i (1-based) at input coordinate u = i/s + (1 − 1/s)/2 is
    Σ_j s·cubic(s·(u − j)) x_j / Σ_j s·cubic(s·(u − j)), over the input padded symmetrically (edge repeated)."""
    n = x.shape[0]
    pad = 12
    padded = np.pad(x, ((pad, pad), (0, 0)), mode="symmetric")
    rows = np.arange(1 - pad, n + pad + 1)
    out = []
    for i in range(1, math.ceil(n * scale) + 1):
        u = i / scale + 0.5 * (1 - 1 / scale)
        weights = scale * _cubic(scale * (u - rows))
        out.append(weights @ padded / weights.sum())
    return np.array(out)


@pytest.mark.parametrize("shape, scale", [((13, 10), 0.5), ((24, 17), 0.5), ((9, 14), 0.75)])
def test_imresize_matches_the_direct_formula(shape, scale):
    x = np.random.default_rng(1).random(shape) * 255
    expected = _imresize_rows(_imresize_rows(x, scale).T, scale).T
    result = matlab_imresize(x, scale)
    assert result.shape == (math.ceil(shape[0] * scale), math.ceil(shape[1] * scale))
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-10)


def test_imresize_interior_matches_pillow_bicubic():
    """Pillow's bicubic (a = −0.5, support widened when reducing) is an independent implementation; it
    renormalises at the border instead of mirroring, so only the interior is compared."""
    x = np.random.default_rng(2).random((40, 52)).astype(np.float32)
    pillow = np.asarray(Image.fromarray(x, "F").resize((26, 20), Image.Resampling.BICUBIC))
    np.testing.assert_allclose(matlab_imresize(x, 0.5)[3:-3, 3:-3], pillow[3:-3, 3:-3], atol=1e-6)


def test_imresize_keeps_constants_and_ramps():
    np.testing.assert_allclose(matlab_imresize(np.full((20, 30), 7.0), 0.5), 7.0, atol=1e-12)
    ramp = np.tile(np.arange(1.0, 41.0)[:, None], (1, 4))
    # Away from the border the cubic kernel reproduces a linear ramp: output row i samples u = 2i − 0.5.
    np.testing.assert_allclose(matlab_imresize(ramp, 0.5)[3:-3, 0], 2 * np.arange(4, 18) - 0.5, atol=1e-12)


# === AGGD fit and parameters ===


def test_aggd_fit_recovers_gaussian_and_laplacian_shapes():
    rng = np.random.default_rng(3)
    gaussian = rng.normal(0, 2.0, 200_000)
    laplacian = rng.laplace(0, 1.0, 200_000)
    alpha, beta_l, beta_r = _aggd_fit(np.stack([gaussian, laplacian]))
    np.testing.assert_allclose(alpha, [2.0, 1.0], atol=0.05)
    # GGD scale β = σ·sqrt(Γ(1/α)/Γ(3/α)): 2·sqrt(2) for N(0, 2²); Laplace(b=1) has β = b = 1.
    np.testing.assert_allclose(beta_l, [2 * math.sqrt(2), 1.0], rtol=0.03)
    np.testing.assert_allclose(beta_r, beta_l, rtol=0.03)


def test_bundled_parameters_and_notice():
    folder = REPO_ROOT / "train" / "niqe"
    digest = hashlib.sha256((folder / "niqe_pris_params.npz").read_bytes()).hexdigest()
    assert digest == "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296"
    assert "Apache License" in (folder / "NOTICE.txt").read_text()
    assert "Apache License" in (folder / "LICENSE-Apache-2.0.txt").read_text()
    params = load_niqe_params()
    assert params.mu.shape == (36,) and params.cov.shape == (36, 36) and params.window.shape == (7, 7)
    assert params.window.sum() == pytest.approx(1.0)


def test_parameter_file_option(tmp_path, photo):
    bundled = load_niqe_params()
    path = tmp_path / "copy.npz"
    np.savez(path, mu_pris_param=bundled.mu[None], cov_pris_param=bundled.cov, gaussian_window=bundled.window)
    assert niqe(photo, load_niqe_params(path)) == niqe(photo)
    np.savez(path, mu_pris_param=bundled.mu[None])
    with pytest.raises(WeightsMismatchError, match="copy.npz: not a NIQE parameter file"):
        load_niqe_params(path)
