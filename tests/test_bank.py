"""Storage of the bank: atomic split writes, memory-mapped loads, one-line errors naming the file."""
from __future__ import annotations

import numpy as np
import pytest

from taskonomy import bank
from taskonomy.errors import DataError


def _arrays(value: int = 0) -> dict[str, np.ndarray]:
    return {"rgb": np.full((4, 3, 8, 8), value, np.uint8), "rgb2depth": np.ones((4, 1, 8, 8), np.float16),
            "class_scene": np.arange(4, dtype=np.int64)}


META = {"n_views": 4, "n_scenes": 1, "seed": 1, "resolution": 8, "encodings": {"rgb": "clean image"}}


def test_round_trip_is_memory_mapped_and_read_only(tmp_path):
    bank.write_split(tmp_path, "train", _arrays(7), META)
    bank.write_manifest(tmp_path, ["train"], {"seed": 0})
    split = bank.load_split(tmp_path, "train")
    assert split.n_views == 4 and "rgb" in split
    assert isinstance(split["rgb"], np.memmap) and not split["rgb"].flags.writeable
    assert (split["rgb"] == 7).all()
    assert split.manifest["arrays"]["rgb"] == {"shape": [4, 3, 8, 8], "dtype": "uint8", "encoding": "clean image"}
    assert bank.read_manifest(tmp_path)["splits"] == ["train"]
    with pytest.raises(DataError, match="no array 'nope'"):
        split["nope"]


def test_missing_split_and_manifest(tmp_path):
    with pytest.raises(DataError, match="train: split not found"):
        bank.load_split(tmp_path, "train")
    (tmp_path / "params.yaml").write_text("tasks: {}\n")
    with pytest.raises(DataError, match=r"params.yaml: a file, not a bank folder$"):
        bank.load_split(tmp_path / "params.yaml", "train")
    with pytest.raises(DataError, match="manifest.json: missing"):
        bank.read_manifest(tmp_path)
    bank.write_split(tmp_path, "train", _arrays(), META)
    (tmp_path / "train" / "manifest.json").unlink()
    with pytest.raises(DataError, match=r"train/manifest.json: missing"):
        bank.load_split(tmp_path, "train")


def test_truncated_file_names_the_file(tmp_path):
    bank.write_split(tmp_path, "train", _arrays(), META)
    path = tmp_path / "train" / "rgb.npy"
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(DataError, match=r"rgb\.npy: unreadable or truncated") as err:
        bank.load_split(tmp_path, "train")
    assert "\n" not in str(err.value)


def test_missing_array_and_shape_or_dtype_mismatch(tmp_path):
    bank.write_split(tmp_path, "train", _arrays(), META)
    np.save(tmp_path / "train" / "rgb2depth.npy", np.ones((4, 1, 8, 7), np.float16))
    with pytest.raises(DataError, match=r"rgb2depth\.npy: expected float16 \(4, 1, 8, 8\), found float16"):
        bank.load_split(tmp_path, "train")
    np.save(tmp_path / "train" / "rgb2depth.npy", np.ones((4, 1, 8, 8), np.float32))
    with pytest.raises(DataError, match=r"rgb2depth\.npy: expected float16"):
        bank.load_split(tmp_path, "train")
    (tmp_path / "train" / "rgb2depth.npy").unlink()
    with pytest.raises(DataError, match=r"rgb2depth\.npy: missing"):
        bank.load_split(tmp_path, "train")


def test_crash_mid_write_keeps_the_previous_split(tmp_path, monkeypatch):
    bank.write_split(tmp_path, "train", _arrays(1), META)
    calls = []
    real_save = np.save

    def failing_save(path, value, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        real_save(path, value, **kwargs)

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        bank.write_split(tmp_path, "train", _arrays(2), META)
    monkeypatch.undo()
    assert (bank.load_split(tmp_path, "train")["rgb"] == 1).all()
    assert [p.name for p in tmp_path.iterdir()] == ["train"]          # no partial folder left behind

    # a crash before any previous split: nothing that looks like a split
    monkeypatch.setattr(np, "save", failing_save)
    calls.clear()
    with pytest.raises(OSError):
        bank.write_split(tmp_path, "test", _arrays(2), META)
    assert not (tmp_path / "test").exists()


def test_rewrite_replaces_the_split(tmp_path):
    bank.write_split(tmp_path, "train", _arrays(1), META)
    bank.write_split(tmp_path, "train", _arrays(3), META)
    assert (bank.load_split(tmp_path, "train")["rgb"] == 3).all()
    assert [p.name for p in tmp_path.iterdir()] == ["train"]


def test_contents_that_disagree_are_refused_before_any_work(tmp_path):
    """A manifest whose view count disagrees with the arrays, a missing top-level manifest and splits of
    different renders are one line naming the file, from load_split / load_splits."""
    import json

    from fake_bank import write_fake_bank
    root = write_fake_bank(tmp_path / "bank")
    assert set(bank.load_splits(root)) == {"train", "transfer", "test"}
    manifest = root / "test" / "manifest.json"
    good = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**good, "n_views": good["n_views"] + 1}))
    with pytest.raises(DataError, match=r"test/manifest.json: says \d+ views at 16 px, but rgb.npy holds"):
        bank.load_split(root, "test")
    manifest.write_text(json.dumps(good))
    (root / "manifest.json").unlink()
    with pytest.raises(DataError, match=r"bank/manifest.json: missing"):
        bank.load_splits(root)
    other = write_fake_bank(tmp_path / "other", scenes={"test": 4}, resolution=32)
    write_fake_bank(root)
    (root / "test").rename(root / "test16")
    (other / "test").rename(root / "test")
    with pytest.raises(DataError, match="resolution 32, but .*train/manifest.json has 16: the splits come from"):
        bank.load_splits(root)


def test_a_write_without_room_or_permission_names_the_path_and_the_cause(tmp_path, monkeypatch):
    """A full disk (torch words it 'unexpected pos') or a read-only folder is one DataError naming the
    path, and leaves no temporary file; an output folder that cannot be written is found before work."""
    import errno
    import shutil
    from collections import namedtuple

    import torch

    from taskonomy import storage
    from taskonomy.nets.train import save_checkpoint
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10, 10, 0))
    with pytest.raises(DataError, match=r"a.pt: cannot write it: no space left on the device"):
        with storage.atomic_path(tmp_path / "a.pt") as tmp:                 # torch.save to a full disk
            torch.save({"x": 1}, tmp)
            raise RuntimeError("unexpected pos 44992 vs 44888")
    monkeypatch.setattr(storage.Path, "write_bytes",                            # a checkpoint's bytes
                        lambda self, data: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(DataError, match=r"model.pt: cannot write it: no space left on the device"):
        save_checkpoint(tmp_path / "model.pt", {"x": 1})
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="not about room"):                 # other errors stand
        with storage.atomic_path(tmp_path / "a.txt"):
            raise RuntimeError("not about room")

    def read_only(self, data):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(storage.Path, "write_bytes", read_only)
    with pytest.raises(DataError, match=r"out: cannot write there: the file system is read-only"):
        storage.ensure_writable(tmp_path / "out")
    monkeypatch.undo()
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match=r"file/out: cannot write there"):
        storage.ensure_writable(tmp_path / "file" / "out")
    storage.ensure_writable(tmp_path / "fine")
    assert list((tmp_path / "fine").iterdir()) == []
