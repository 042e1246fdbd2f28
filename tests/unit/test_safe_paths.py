"""Class names become folder names: only plain names pass, at ingest and when writing.

:func:`synthgen.data.images.check_class_names` is the rule; ``read_images`` (an ``.npz``
``classes`` array, its labels, class folders) applies it before decoding, and
``write_image_folder`` applies it again (and checks labels) before writing anything.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from synthgen.data.images import MAX_CLASS_NAME, check_class_names, read_images, write_image_folder
from synthgen.errors import DataError

BAD = ["../evil", "/abs", "..", ".", ".hidden", "a/b", "a\\b", "C:evil", "", "nul\x00byte", "new\nline",
       "tab\there", "del\x7f", "c1\x85", " padded", "padded ", "x" * (MAX_CLASS_NAME + 1), "数" * 90]  # 90 characters, 270 bytes
GOOD = ["0", "cat", "a-b_c.d", "with space", "Grüße", "数字", "x" * MAX_CLASS_NAME, "-1", "1.5"]


@pytest.mark.parametrize("name", BAD)
def test_a_name_that_is_not_plain_is_refused_naming_it(name):
    with pytest.raises(DataError) as err:
        check_class_names(["fine", name], "data.npz")
    assert str(err.value).startswith("data.npz: class name ") and repr(name) in str(err.value)


def test_plain_names_pass_and_case_twins_do_not():
    check_class_names(GOOD, "here")
    with pytest.raises(DataError, match="'Cat' repeats class 'cat'"):
        check_class_names(["cat", "Cat"], "here")
    with pytest.raises(DataError, match="not a string"):
        check_class_names(["cat", None], "here")  # type: ignore[list-item]


@pytest.mark.parametrize("bad", ["../evil", "/abs"])
def test_npz_classes_and_labels_are_checked_at_read(tmp_path, bad):
    images = np.zeros((4, 8, 8), dtype=np.uint8)
    path = tmp_path / "x.npz"
    np.savez(path, images=images, labels=np.array([0, 0, 1, 1]), classes=np.array(["ok", bad]))
    with pytest.raises(DataError, match=f"x.npz: class name {bad!r}"):
        read_images(path, 8)
    np.savez(path, images=images, labels=np.array(["ok", "ok", bad, bad]))  # labels become names too
    with pytest.raises(DataError, match=f"class name {bad!r}"):
        read_images(path, 8)


def test_class_folder_with_a_control_character_is_refused(tmp_path):
    for name in ("good", "bad\x01name"):
        (tmp_path / "tree" / name).mkdir(parents=True)
        Image.new("L", (8, 8)).save(tmp_path / "tree" / name / "a.png")
    with pytest.raises(DataError, match=r"tree: class name 'bad\\x01name' holds a NUL or control character"):
        read_images(tmp_path / "tree", 8)


@pytest.mark.parametrize("bad", ["../evil", "/abs", "..", "a/../../b"])
def test_write_image_folder_refuses_a_bad_name_and_writes_nothing(tmp_path, bad):
    target = tmp_path / "deep" / "out"
    images = np.zeros((2, 8, 8, 1), dtype=np.uint8)
    with pytest.raises(DataError, match="class name"):
        write_image_folder(target, images, np.array([0, 1]), ["ok", bad])
    assert not any(tmp_path.rglob("*"))  # no folder, no temporary, nothing beside or above


@pytest.mark.parametrize("labels", [[0, -1], [0, 2], [0.0, 1.0]])
def test_write_image_folder_refuses_labels_that_are_not_class_indices(tmp_path, labels):
    images = np.zeros((2, 8, 8, 1), dtype=np.uint8)
    with pytest.raises(DataError, match="labels must be class indices 0..1"):
        write_image_folder(tmp_path / "out", images, np.array(labels), ["a", "b"])
    assert not any(tmp_path.iterdir())


def test_write_image_folder_still_writes_plain_names(tmp_path):
    images = np.full((3, 8, 8, 1), 7, dtype=np.uint8)
    rows = write_image_folder(tmp_path / "out", images, np.array([0, 1, 1]), ["with space", "Grüße"])
    assert [r["file"] for r in rows] == ["with space/00001.png", "Grüße/00001.png", "Grüße/00002.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["Grüße", "labels.csv", "with space"]
