"""Scanning class folders (bad images skipped and counted) and the split manifest contract."""

import numpy as np
import pytest
from edgeship.core.dataset import scan_folder
from edgeship.core.errors import DatasetError
from edgeship.core.splits import SPLITS, SplitConfig, SplitManifest, make_splits
from PIL import Image


def _folder(root, counts: dict, size=12):
    rng = np.random.default_rng(0)
    for label, count in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / label / f"{i}.png")
    return root


def test_scan_skips_and_counts_bad_images(tmp_path):
    root = _folder(tmp_path / "data", {"cat": 5, "dog": 6})
    (root / "cat" / "empty.jpg").write_bytes(b"")
    (root / "dog" / "notes.jpg").write_text("not an image")
    (root / "dog" / "README.txt").write_text("ignored: not an image suffix")
    dataset = scan_folder(root, show_progress=False)
    assert dataset.classes == ("cat", "dog")
    assert dataset.counts() == {"cat": 5, "dog": 6}
    summary = dataset.summary()
    assert summary["n_skipped"] == 2
    assert sorted(s["path"].rsplit("/", 1)[-1] for s in summary["skipped"]) == ["empty.jpg", "notes.jpg"]


def test_explicit_class_order_and_subset(tmp_path):
    root = _folder(tmp_path / "data", {"a": 4, "b": 4, "c": 4})
    assert scan_folder(root, classes=["c", "a"], show_progress=False).classes == ("c", "a")
    with pytest.raises(DatasetError, match="no class folder for zebra"):
        scan_folder(root, classes=["a", "zebra"], show_progress=False)


@pytest.mark.parametrize("layout, message", [
    ({}, "no images"),
    ({"only": 5}, "at least two"),
])
def test_unusable_folders_fail_with_one_clear_error(tmp_path, layout, message):
    root = _folder(tmp_path / "data", layout)
    root.mkdir(exist_ok=True)
    with pytest.raises(DatasetError, match=message):
        scan_folder(root, show_progress=False)


def test_missing_dir_and_loose_images(tmp_path):
    with pytest.raises(DatasetError, match="no such data directory"):
        scan_folder(tmp_path / "nope")
    Image.new("RGB", (4, 4)).save(tmp_path / "loose.png")
    with pytest.raises(DatasetError, match="one sub-folder per class"):
        scan_folder(tmp_path, show_progress=False)


def test_splits_are_disjoint_stratified_and_reproducible(tmp_path):
    root = _folder(tmp_path / "data", {"a": 30, "b": 20, "c": 12})
    dataset = scan_folder(root, show_progress=False)
    first = make_splits(dataset, SplitConfig(seed=3))
    again = make_splits(dataset, SplitConfig(seed=3))
    other = make_splits(dataset, SplitConfig(seed=4))
    assert [(r.path, r.split) for r in first.rows] == [(r.path, r.split) for r in again.rows]
    assert [(r.path, r.split) for r in first.rows] != [(r.path, r.split) for r in other.rows]
    paths = [r.path for r in first.rows]
    assert len(paths) == len(set(paths)) == 62  # every image exactly once: disjoint and complete
    for label in ("a", "b", "c"):
        assert {r.split for r in first.rows if r.label == label} == set(SPLITS)
    per_class_test = {label: sum(r.split == "test" and r.label == label for r in first.rows) for label in "abc"}
    assert per_class_test == {"a": 6, "b": 4, "c": 2}  # round(n * 0.2) of each class


def test_calibration_comes_from_the_training_pool_and_is_capped(tmp_path):
    root = _folder(tmp_path / "data", {"a": 40, "b": 40})
    dataset = scan_folder(root, show_progress=False)
    base = make_splits(dataset, SplitConfig(seed=0, calib=0.0))
    with_calib = make_splits(dataset, SplitConfig(seed=0, calib=0.5, calib_max=10))
    test_before = {r.path for r in base.select("test")}
    assert {r.path for r in with_calib.select("test")} == test_before
    calib = {r.path for r in with_calib.select("calib")}
    assert len(calib) == 10 and not calib & test_before
    assert calib <= {r.path for r in base.select("train")}


def test_manifest_csv_round_trip_with_relative_paths(tmp_path):
    root = _folder(tmp_path / "data", {"a": 6, "b": 6})
    manifest = make_splits(scan_folder(root, show_progress=False))
    csv_path = tmp_path / "run" / "bundle" / "splits.csv"
    sha = manifest.write(csv_path)
    text = csv_path.read_text()
    assert text.splitlines()[0] == "path,label,split"
    assert text.splitlines()[1].startswith("../../data/")
    back = SplitManifest.read(csv_path)
    assert [(r.path, r.label, r.split) for r in back.rows] == [(r.path.resolve(), r.label, r.split) for r in manifest.rows]
    import hashlib
    assert sha == hashlib.sha256(csv_path.read_bytes()).hexdigest()


def test_manifest_errors(tmp_path):
    bad = tmp_path / "splits.csv"
    bad.write_text("file,class\nx.png,a\n")
    with pytest.raises(DatasetError, match="header"):
        SplitManifest.read(bad)
    bad.write_text("path,label,split\nx.png,a,holdout\n")
    with pytest.raises(DatasetError, match=":2:"):
        SplitManifest.read(bad)
    root = _folder(tmp_path / "data", {"a": 6, "b": 3})
    with pytest.raises(DatasetError, match="'b' has 3"):
        make_splits(scan_folder(root, show_progress=False))


def test_class_order_from_classes_txt_or_natural_sort(tmp_path):
    root = _folder(tmp_path / "data", {"class10": 4, "class2": 4, "class1": 4})
    assert scan_folder(root, show_progress=False).classes == ("class1", "class2", "class10")
    (root / "classes.txt").write_text("class10\nclass1\n")
    assert scan_folder(root, show_progress=False).classes == ("class10", "class1")
    assert scan_folder(root, classes=["class2", "class1"], show_progress=False).classes == ("class2", "class1")
