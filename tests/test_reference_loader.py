import pytest

from tests import reference as ref


def test_loads_an_existing_fixture():
    arrays = ref.reference("sci", "pretrained_medium")
    assert arrays["input_0"].ndim == 4 and arrays["input_0"].shape[-1] == 3
    assert arrays["enhanced_0"].shape == arrays["input_0"].shape


def test_missing_fixture_skips_without_requirement(monkeypatch):
    monkeypatch.delenv("LLIE_REQUIRE_REFERENCE", raising=False)
    with pytest.raises(pytest.skip.Exception, match="missing"):
        ref.reference("sci", "no_such_fixture")


def test_missing_fixture_fails_when_required(monkeypatch):
    monkeypatch.setenv("LLIE_REQUIRE_REFERENCE", "1")
    with pytest.raises(pytest.fail.Exception, match="LLIE_REQUIRE_REFERENCE=1"):
        ref.reference("sci", "no_such_fixture")


def test_reference_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LLIE_REFERENCE_DIR", str(tmp_path))
    assert ref.reference_dir() == tmp_path


def test_weights_and_real_data_fall_back_to_the_public_folder(monkeypatch, tmp_path):
    # A hidden variant holds fixture numbers only: weights, checkpoints, e2e images and ../shared/data come from the
    # public folder, while its own fixtures (and anything missing from it) are not replaced.
    (tmp_path / "hidden" / "kind").mkdir(parents=True)
    monkeypatch.setenv("LLIE_REFERENCE_DIR", str(tmp_path / "hidden"))
    monkeypatch.setenv("LLIE_REQUIRE_REFERENCE", "1")
    assert ref.reference_path("kind", "checkpoints/decom_net_train") == (
        ref.PUBLIC_REFERENCE_DIR / "kind" / "checkpoints" / "decom_net_train")
    assert ref.shared_data_path("sci_test") == ref.PUBLIC_REFERENCE_DIR.parent / "data" / "sci_test"
    with pytest.raises(pytest.fail.Exception, match="missing"):
        ref.reference("kind", "decom")
