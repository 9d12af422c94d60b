import pytest

from tests import reference as ref


def test_loads_an_existing_fixture():
    arrays = ref.reference("sci", "pretrained_medium")
    assert arrays["input_0"].shape == (1, 64, 96, 3)


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
