"""train.folders: dataset layouts, pairing by name, and the eager checks that name the bad file."""

import logging

import numpy as np
import pytest
from PIL import Image

from tests.image_folders import coded_image, save, write_pairs
from train.errors import DatasetLayoutError, ImageReadError
from train.folders import (check_images, check_pairs, find_lol_pairs, list_images, lol_folders, match_pairs,
                           unpaired_folders)


def test_list_images_natural_order_and_ignored_files(tmp_path):
    for name in ("10.png", "2.jpg", "1.PNG", "b.bmp"):
        save(tmp_path / name, coded_image(0, (2, 2)))
    (tmp_path / "README.txt").write_text("about")
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "._2.png").write_bytes(b"mac resource fork")
    (tmp_path / "sub.png").mkdir()
    save(tmp_path / "sub.png" / "inner.png", coded_image(0, (2, 2)))
    assert [p.name for p in list_images(tmp_path)] == ["1.PNG", "2.jpg", "10.png", "b.bmp"]


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"nope: no such folder"):
        list_images(tmp_path / "nope")
    (tmp_path / "README.txt").write_text("no images here")
    with pytest.raises(DatasetLayoutError, match=rf"{tmp_path}: no images"):
        list_images(tmp_path)
    with pytest.raises(DatasetLayoutError, match=r"README.txt: not a folder"):
        list_images(tmp_path / "README.txt")


@pytest.mark.parametrize("split, train_dirs, eval_dirs", [
    ("train", "our485/low our485/high", "eval15/low eval15/high"),
    ("eval", "our485/low our485/high", "eval15/low eval15/high"),
    ("train", "Train/Low Train/Normal", "Test/Low Test/Normal"),
    ("eval", "Train/Low Train/Normal", "Test/Low Test/Normal"),
])
def test_lol_v1_and_v2_layouts(tmp_path, split, train_dirs, eval_dirs):
    for folder in (train_dirs + " " + eval_dirs).split():
        (tmp_path / folder).mkdir(parents=True)
    low, high = lol_folders(tmp_path, split)
    want = (train_dirs if split == "train" else eval_dirs).split()
    assert (low, high) == (tmp_path / want[0], tmp_path / want[1])


def test_folder_holding_low_high_directly_serves_both_splits(tmp_path):
    (tmp_path / "low").mkdir()
    (tmp_path / "high").mkdir()
    assert lol_folders(tmp_path, "train") == lol_folders(tmp_path, "eval") == (tmp_path / "low", tmp_path / "high")


def test_wrong_layout_and_split(tmp_path):
    (tmp_path / "our485" / "low").mkdir(parents=True)  # no high
    with pytest.raises(DatasetLayoutError, match=rf"{tmp_path}: not a LOL dataset folder.*our485"):
        lol_folders(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        lol_folders(tmp_path, "test")
    with pytest.raises(DatasetLayoutError, match="no such folder"):
        find_lol_pairs(tmp_path / "missing")


def test_pairs_matched_by_stem_across_suffixes(tmp_path):
    save(tmp_path / "low" / "1.png", coded_image(1, (4, 4)))
    save(tmp_path / "low" / "2.png", coded_image(2, (4, 4)))
    save(tmp_path / "high" / "2.jpg", coded_image(2, (4, 4)))
    save(tmp_path / "high" / "1.png", coded_image(1, (4, 4)))
    pairs = find_lol_pairs(tmp_path)
    assert [(a.name, b.name) for a, b in pairs] == [("1.png", "1.png"), ("2.png", "2.jpg")]


def test_lol_v2_real_captured_prefixes(tmp_path):
    for i in (1, 2, 10):
        save(tmp_path / "Train" / "Low" / f"low{i:05d}.png", coded_image(i, (4, 4)))
        save(tmp_path / "Train" / "Normal" / f"normal{i:05d}.png", coded_image(i, (4, 4)))
    pairs = find_lol_pairs(tmp_path, "train")
    assert [(a.name, b.name) for a, b in pairs] == [(f"low{i:05d}.png", f"normal{i:05d}.png") for i in (1, 2, 10)]


def test_lol_v2_prefixes_with_an_orphan_name_only_the_orphan(tmp_path, caplog):
    for i in (1, 2, 3):
        save(tmp_path / "Train" / "Low" / f"low{i:05d}.png", coded_image(i, (4, 4)))
    for i in (1, 2):
        save(tmp_path / "Train" / "Normal" / f"normal{i:05d}.png", coded_image(i, (4, 4)))
    with pytest.raises(DatasetLayoutError, match=r"^1 image\(s\) have no partner .*: [^,]*Low/low00003\.png$"):
        find_lol_pairs(tmp_path, "train")
    with caplog.at_level(logging.WARNING, logger="train.data"):
        pairs = find_lol_pairs(tmp_path, "train", skip_bad=True)
    assert [(a.name, b.name) for a, b in pairs] == [("low00001.png", "normal00001.png"),
                                                    ("low00002.png", "normal00002.png")]
    assert caplog.text.count("skipping") == 1 and "low00003.png" in caplog.text


def test_unmatched_names_are_an_error_or_logged_skips(tmp_path, caplog):
    write_pairs(tmp_path, ["1.png", "2.png"], size=(4, 4))
    save(tmp_path / "low" / "3.png", coded_image(3, (4, 4)))
    save(tmp_path / "high" / "4.png", coded_image(4, (4, 4)))
    with pytest.raises(DatasetLayoutError, match=r"2 image\(s\) have no partner.*low/3\.png.*high/4\.png"):
        find_lol_pairs(tmp_path)
    with caplog.at_level(logging.WARNING, logger="train.data"):
        pairs = find_lol_pairs(tmp_path, skip_bad=True)
    assert [a.name for a, _ in pairs] == ["1.png", "2.png"]
    assert "low/3.png" in caplog.text and "high/4.png" in caplog.text


def test_ambiguous_stems_are_an_error(tmp_path):
    files = [save(tmp_path / "low" / name, coded_image(0, (2, 2))) for name in ("1.png", "1.jpg")]
    with pytest.raises(DatasetLayoutError, match=r"1\.(png|jpg): another image .* same name stem"):
        match_pairs(files, files[:1])


def test_size_mismatch_names_both_files(tmp_path, caplog):
    pairs = write_pairs(tmp_path, ["1.png", "2.png"], size=(6, 8))
    save(pairs[1][1], coded_image(1, (6, 9)))
    with pytest.raises(DatasetLayoutError, match=r"low/2\.png \(8x6\) and .*high/2\.png \(9x6\).*same size"):
        check_pairs(pairs)
    with caplog.at_level(logging.WARNING, logger="train.data"):
        assert check_pairs(pairs, skip_bad=True) == pairs[:1]
    assert "high/2.png" in caplog.text


def test_non_image_with_image_suffix_is_an_error(tmp_path):
    pairs = write_pairs(tmp_path, ["1.png"], size=(4, 4))
    (tmp_path / "high" / "1.png").write_text("plain text")
    with pytest.raises(ImageReadError, match=r"high/1\.png: not an image"):
        check_pairs(pairs)
    with pytest.raises(DatasetLayoutError, match="no usable pairs left"):
        check_pairs(pairs, skip_bad=True)


def test_images_smaller_than_the_patch(tmp_path):
    small = save(tmp_path / "small.png", coded_image(0, (10, 30)))
    large = save(tmp_path / "large.png", coded_image(0, (12, 12)))
    with pytest.raises(DatasetLayoutError, match=r"small\.png: 30x10 is smaller than the 12x12 patch"):
        check_images([large, small], min_size=12)
    assert check_images([large, small], min_size=12, skip_bad=True) == [large]
    assert check_images([large, small], min_size=None) == [large, small]


def test_decompression_bomb_is_found_before_training(tmp_path, monkeypatch):
    bomb = save(tmp_path / "bomb.png", np.zeros((30, 30, 3), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageReadError, match=r"bomb\.png: image too large"):
        check_images([bomb])


def test_unpaired_folders(tmp_path):
    (tmp_path / "trainA").mkdir()
    with pytest.raises(DatasetLayoutError, match="trainB"):
        unpaired_folders(tmp_path)
    (tmp_path / "trainB").mkdir()
    assert unpaired_folders(tmp_path) == (tmp_path / "trainA", tmp_path / "trainB")
