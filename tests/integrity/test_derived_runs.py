"""`edgeship outlier` and `edgeship qat` make a new run from an old one through one helper
(core.derived_run): a command that fails half-way leaves nothing a later `export` could mistake for a run, and
OUT is never written through when something (a file, a link) is already there."""

import os

import pytest

from edgeship.core.splits import SplitManifest
from edgeship.export.outlier import outlier_run
from edgeship.runtime.errors import UsageError
from edgeship.runtime.fileio import sha256_file
from edgeship.runtime.spec import Bundle


def _tree(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*") if p.is_file())


def test_a_derived_run_is_complete_with_its_images_where_they_were(trained_run, tmp_path):
    out = tmp_path / "elsewhere" / "deeper" / "outlier"
    out.parent.mkdir(parents=True)
    outlier_run(trained_run, out, factor=10.0)
    old = SplitManifest.read(trained_run / "bundle" / "splits.csv")
    new = SplitManifest.read(out / "bundle" / "splits.csv")  # paths relative to a folder two levels away
    assert [(r.path, r.label, r.split) for r in new.rows] == [(r.path, r.label, r.split) for r in old.rows]
    assert all(r.path.is_file() for r in new.rows)
    bundle = Bundle.load(out / "bundle")
    assert bundle.artifacts == [] and bundle.provenance["model_sha256"] == sha256_file(out / "bundle" / "model.keras")
    assert bundle.provenance["split"]["sha256"] == sha256_file(out / "bundle" / "splits.csv")
    assert (out / "bundle" / "labels.txt").read_bytes() == (trained_run / "bundle" / "labels.txt").read_bytes()
    assert [p.name for p in out.parent.iterdir()] == ["outlier"]  # no staging folder left beside it


def test_a_run_that_fails_while_writing_leaves_nothing_behind(trained_run, tmp_path, monkeypatch):
    from edgeship.core.tfenv import import_keras

    _, keras = import_keras()
    before = _tree(trained_run)

    def disk_full(self, path, *args, **kwargs):
        open(path, "wb").write(b"half a model")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        outlier_run(trained_run, tmp_path / "outlier", factor=10.0)
    assert list(tmp_path.iterdir()) == []  # neither OUT nor its staging folder
    assert _tree(trained_run) == before


@pytest.mark.parametrize("kind", ["dangling link", "link to a folder", "file"])
def test_something_already_at_out_is_refused_and_left_as_it_was(trained_run, tmp_path, kind):
    target = tmp_path / "users_folder"
    out = tmp_path / "outlier"
    if kind == "file":
        out.write_text("notes")
    else:
        if kind == "link to a folder":
            target.mkdir()
        os.symlink(target, out)
    with pytest.raises(UsageError, match="already exists"):
        outlier_run(trained_run, out, factor=10.0)
    assert out.is_symlink() or out.read_text() == "notes"
    assert not target.exists() or list(target.iterdir()) == []


def test_a_link_where_the_staging_folder_goes_is_removed_not_written_through(trained_run, tmp_path):
    users = tmp_path / "users_folder"
    users.mkdir()
    (users / "notes.txt").write_text("mine")
    os.symlink(users, tmp_path / ".outlier.partial")
    outlier_run(trained_run, tmp_path / "outlier", factor=10.0)
    assert sorted(p.name for p in users.iterdir()) == ["notes.txt"] and (users / "notes.txt").read_text() == "mine"
    assert (tmp_path / "outlier" / "bundle" / "model.keras").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outlier", "users_folder"]
