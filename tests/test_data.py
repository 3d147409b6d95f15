"""Data layer: small IDX files written here, then the real mirror (integration)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import types
import urllib.error
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from tutorial_lib import data


def write_idx(path, array: np.ndarray) -> str:
    """Write a gzipped IDX file (uint8, 1 or 3 dims) and return its md5."""
    magic = {1: 0x801, 3: 0x803}[array.ndim]
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())
    return hashlib.md5(open(path, "rb").read()).hexdigest()


@pytest.fixture
def fake_mirror(tmp_path, monkeypatch):
    """A read-only mirror with a tiny MNIST (20 train, 10 test images) registered as 'MNIST'."""
    rng = np.random.default_rng(0)
    raw = tmp_path / "mirror" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    resources = []
    for prefix, n in (("train", 20), ("t10k", 10)):
        resources.append((f"{prefix}-images-idx3-ubyte.gz", write_idx(
            raw / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28))
        )))  # fmt: skip
        resources.append((f"{prefix}-labels-idx1-ubyte.gz", write_idx(
            raw / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10
        )))  # fmt: skip

    class TinyMNIST:
        mirrors = ["http://mirror.invalid/"]

    TinyMNIST.resources = resources
    monkeypatch.setitem(data.DATASETS, "MNIST", TinyMNIST)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(data, "_fetch_url", offline)
    monkeypatch.setattr(data, "_verified", {})
    for f in raw.iterdir():
        f.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    yield tmp_path / "mirror"
    for f in raw.iterdir():
        f.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_read_idx_round_trip(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (5, 28, 28))
    write_idx(tmp_path / "x.gz", images)
    write_idx(tmp_path / "y.gz", np.array([3, 1, 4, 1, 5]))
    assert torch.equal(data.read_idx(tmp_path / "x.gz"), torch.from_numpy(images.astype(np.uint8)))
    assert data.read_idx(tmp_path / "y.gz").tolist() == [3, 1, 4, 1, 5]


def test_read_idx_truncated_gzip(tmp_path):
    write_idx(tmp_path / "x.gz", np.zeros((5, 28, 28)))
    blob = (tmp_path / "x.gz").read_bytes()
    (tmp_path / "x.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(data.CorruptDataError, match="truncated or corrupted"):
        data.read_idx(tmp_path / "x.gz")


def test_read_idx_not_gzip_and_bad_header(tmp_path):
    (tmp_path / "a.gz").write_bytes(b"this is not gzip at all")
    with pytest.raises(data.CorruptDataError, match="a.gz"):
        data.read_idx(tmp_path / "a.gz")
    with gzip.open(tmp_path / "b.gz", "wb") as f:  # header says 5 images, payload holds 2
        f.write((0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (5, 28, 28)))
        f.write(bytes(2 * 28 * 28))
    with pytest.raises(data.CorruptDataError, match="header announces"):
        data.read_idx(tmp_path / "b.gz")


def test_prepare_copies_from_read_only_mirror(fake_mirror, tmp_path):
    before = {p.name: p.read_bytes() for p in (fake_mirror / "MNIST" / "raw").iterdir()}
    raw = data.prepare("MNIST", tmp_path / "root", fake_mirror)
    assert sorted(p.name for p in raw.iterdir()) == sorted(before)
    for name, blob in before.items():
        assert (raw / name).read_bytes() == blob
    assert {p.name: p.read_bytes() for p in (fake_mirror / "MNIST" / "raw").iterdir()} == before
    images, labels = data.load_split("MNIST", True, tmp_path / "root", fake_mirror)
    assert images.shape == (20, 28, 28) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64 and labels.tolist() == [i % 10 for i in range(20)]
    assert (raw / "train.uint8.pt").exists()
    assert not list(raw.glob("*.part")) and not list(raw.glob(".*"))


def test_env_vars_name_root_and_mirror(fake_mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("TUTORIAL_DATA_DIR", str(tmp_path / "env-root"))
    monkeypatch.setenv("TUTORIAL_DATA_MIRROR", str(fake_mirror))
    images, _ = data.load_split("MNIST", False)
    assert images.shape == (10, 28, 28)
    assert (tmp_path / "env-root" / "MNIST" / "raw" / "test.uint8.pt").exists()


def test_mirror_md5_mismatch_names_file_and_both_md5s(fake_mirror, tmp_path):
    bad = fake_mirror / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    expected = dict(data.DATASETS["MNIST"].resources)[bad.name]
    bad.chmod(stat.S_IRUSR | stat.S_IWUSR)
    write_idx(bad, np.arange(10)[::-1] % 10)
    actual = data.md5sum(bad)
    with pytest.raises(data.ChecksumError) as info:
        data.prepare("MNIST", tmp_path / "root", fake_mirror)
    message = str(info.value)
    assert bad.name in message and expected in message and actual in message
    assert not (tmp_path / "root" / "MNIST" / "raw" / bad.name).exists()


def test_missing_everywhere_without_network(fake_mirror, tmp_path):
    (fake_mirror / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(data.DataNotFoundError) as info:
        data.prepare("MNIST", tmp_path / "root", fake_mirror)
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message and "TUTORIAL_DATA_MIRROR" in message
    assert "network is unreachable" in message
    raw = tmp_path / "root" / "MNIST" / "raw"
    assert not (raw / "train-images-idx3-ubyte.gz").exists()
    assert [p.name for p in raw.iterdir() if p.name.startswith(".")] == []


def test_corrupted_local_file_is_moved_aside_and_refetched(fake_mirror, tmp_path):
    raw = data.prepare("MNIST", tmp_path / "root", fake_mirror)
    target = raw / "train-labels-idx1-ubyte.gz"
    target.write_bytes(target.read_bytes()[:-10])
    with pytest.warns(UserWarning, match="moved it aside"):
        data.prepare("MNIST", tmp_path / "root", fake_mirror)
    assert target.read_bytes() == (fake_mirror / "MNIST" / "raw" / target.name).read_bytes()
    assert (raw / (target.name + ".corrupt")).exists()


def test_unreadable_cache_is_rebuilt(fake_mirror, tmp_path):
    data.load_split("MNIST", False, tmp_path / "root", fake_mirror)
    cache = tmp_path / "root" / "MNIST" / "raw" / "test.uint8.pt"
    cache.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="Rebuilding"):
        images, _ = data.load_split("MNIST", False, tmp_path / "root", fake_mirror)
    assert images.shape == (10, 28, 28)
    assert torch.load(cache, weights_only=True)["images"].shape == (10, 28, 28)


def _flip_byte_in_payload(cache):
    """Flip one pixel byte inside the cached image tensor (as a disk error would)."""
    blob = bytearray(cache.read_bytes())
    images = torch.load(cache, weights_only=True)["images"].numpy().tobytes()
    start = bytes(blob).find(images[:64])
    assert start >= 0
    blob[start + 100] ^= 0xFF
    cache.write_bytes(bytes(blob))


def test_a_byte_flipped_in_the_cache_is_detected_and_rebuilt(fake_mirror, tmp_path):
    clean, labels = data.load_split("MNIST", False, tmp_path / "root", fake_mirror)
    cache = tmp_path / "root" / "MNIST" / "raw" / "test.uint8.pt"
    _flip_byte_in_payload(cache)
    with pytest.warns(UserWarning, match="does not match its sha256"):
        images, again = data.load_split("MNIST", False, tmp_path / "root", fake_mirror)
    assert torch.equal(images, clean) and torch.equal(again, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt: the next load trusts it silently
        data.load_split("MNIST", False, tmp_path / "root", fake_mirror)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda c: c | {"images": c["images"][:5]}, "do not match"),
        (lambda c: c | {"labels": c["labels"] + 250}, "outside 0-9"),
        (lambda c: c | {"source_md5": "0" * 64}, "other raw files"),
        (lambda c: c | {"images": c["images"].float()}, "dtype"),
        (lambda c: {k: v for k, v in c.items() if k != "format"}, "format"),
    ],
)
def test_inconsistent_caches_are_rebuilt(fake_mirror, tmp_path, change, reason):
    clean, _ = data.load_split("MNIST", False, tmp_path / "root", fake_mirror)
    cache = tmp_path / "root" / "MNIST" / "raw" / "test.uint8.pt"
    torch.save(change(torch.load(cache, weights_only=True)), cache)
    with pytest.warns(UserWarning, match=reason):
        images, labels = data.load_split("MNIST", False, tmp_path / "root", fake_mirror)
    assert torch.equal(images, clean) and int(labels.max()) <= 9


def test_read_only_root_with_the_files_works_without_a_cache(fake_mirror, tmp_path, monkeypatch):
    raw = data.prepare("MNIST", tmp_path / "root", fake_mirror)
    expected, _ = data.load_split("MNIST", True, tmp_path / "root", fake_mirror)
    (raw / "train.uint8.pt").unlink()

    def read_only(*args, **kwargs):  # what a read-only folder answers (even to root's tests)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(data, "save_tensors", read_only)
    monkeypatch.setattr(data, "_raw_folder", read_only)  # nothing may need creating either
    with pytest.warns(UserWarning, match="Cannot write the decoded cache"):
        images, _ = data.load_split("MNIST", True, tmp_path / "root", fake_mirror)
    assert torch.equal(images, expected)


def test_a_full_disk_while_caching_is_a_warning_naming_the_cache(fake_mirror, tmp_path,
                                                                 monkeypatch):  # fmt: skip
    raw = data.prepare("MNIST", tmp_path / "root", fake_mirror)
    expected, _ = data.load_split("MNIST", False, tmp_path / "root", fake_mirror)
    (raw / "test.uint8.pt").unlink()

    def disk_full(obj, handle):  # what torch.save raises when the write fails
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 0: "
                           "file write failed")  # fmt: skip

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.warns(UserWarning, match=r"Cannot write the decoded cache .*test.uint8.pt .*is "
                                         "the disk full"):  # fmt: skip
        images, _ = data.load_split("MNIST", False, tmp_path / "root", fake_mirror)
    assert torch.equal(images, expected) and not (raw / "test.uint8.pt").exists()


def test_a_root_that_cannot_be_created_says_what_to_do(fake_mirror, tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(data.DataRootError, match="TUTORIAL_DATA_DIR"):
        data.prepare("MNIST", tmp_path / "a-file" / "root", fake_mirror)


def test_stale_parts_are_cleaned_and_files_are_world_readable(fake_mirror, tmp_path):
    raw = tmp_path / "root" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    stale, fresh = raw / ".train-images-idx3-ubyte.gz.x1.part", raw / ".t10k.x2.part"
    stale.write_bytes(b"x" * 1000)
    fresh.write_bytes(b"y")
    os.utime(stale, (1, 1))  # untouched for decades: a killed run's leftover
    data.prepare("MNIST", tmp_path / "root", fake_mirror)
    assert not stale.exists() and fresh.exists()  # a live writer's file is left alone
    mask = os.umask(0)
    os.umask(mask)
    for path in raw.glob("*.gz"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_download_checks_md5_and_writes_atomically(fake_mirror, tmp_path, monkeypatch):
    good = (fake_mirror / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (fake_mirror / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    calls = []

    def fetch(url, handle, timeout=30.0):
        calls.append(url)
        payload = b"not the file" if len(calls) == 1 else good
        handle.write(payload)
        return hashlib.md5(payload).hexdigest()

    monkeypatch.setattr(data, "_fetch_url", fetch)
    monkeypatch.setattr(data.DATASETS["MNIST"], "mirrors", ["http://a.invalid/", "http://b/"])
    raw = data.prepare("MNIST", tmp_path / "root", fake_mirror)
    assert calls == [
        "http://a.invalid/t10k-labels-idx1-ubyte.gz",
        "http://b/t10k-labels-idx1-ubyte.gz",
    ]
    assert (raw / "t10k-labels-idx1-ubyte.gz").read_bytes() == good
    assert not list(raw.glob(".*.part"))


@pytest.mark.parametrize("offset", [(0, 0), (8, 8), (3, 6), (7, 1)])
def test_random_crop_matches_torchvision(offset, monkeypatch):
    image = np.random.default_rng(2).integers(0, 256, (28, 28)).astype(np.uint8)
    monkeypatch.setattr(
        torchvision.transforms.RandomCrop, "get_params", staticmethod(lambda *a: (*offset, 28, 28))
    )
    theirs = torchvision.transforms.RandomCrop(28, padding=4)(Image.fromarray(image))
    ours = data.random_crop(torch.from_numpy(image)[None], torch.tensor([offset]))[0]
    assert torch.equal(ours, torch.from_numpy(np.array(theirs)))
    normalised = torchvision.transforms.Normalize((data.MNIST_MEAN,), (data.MNIST_STD,))(
        torchvision.transforms.functional.to_tensor(theirs)
    )
    torch.testing.assert_close(data.normalize(ours[None])[0], normalised)


def test_loader_epochs_cover_everything_and_reproduce():
    images = torch.arange(10, dtype=torch.uint8)[:, None, None].expand(10, 28, 28).contiguous()
    labels = torch.arange(10)
    loader = data.TensorBatchLoader(images, labels, batch_size=4, shuffle=True, seed=3)
    assert len(loader) == 3
    first = torch.cat([y for _, y in loader])
    second = torch.cat([y for _, y in loader])
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(10))
    assert not torch.equal(first, second)  # a fresh permutation each epoch
    again = data.TensorBatchLoader(images, labels, batch_size=4, shuffle=True, seed=3)
    assert torch.equal(torch.cat([y for _, y in again]), first)
    x, y = next(iter(data.TensorBatchLoader(images, labels, 4, shuffle=False)))
    assert x.shape == (4, 1, 28, 28) and x.dtype == torch.float32
    torch.testing.assert_close(x[:, 0, 0, 0], (y.float() / 255 - data.MNIST_MEAN) / data.MNIST_STD)


def test_loader_shards_for_data_parallel_ranks():
    images, labels = torch.zeros(11, 28, 28, dtype=torch.uint8), torch.arange(11)
    evals = [data.TensorBatchLoader(images, labels, 4, shuffle=False, rank=r, world_size=2)
             for r in (0, 1)]  # fmt: skip
    seen = sorted(torch.cat([y for loader in evals for _, y in loader]).tolist())
    assert seen == list(range(11))  # evaluation: every image exactly once, no padding
    trains = [data.TensorBatchLoader(images, labels, 4, shuffle=True, rank=r, world_size=2)
              for r in (0, 1)]  # fmt: skip
    assert len(trains[0]) == len(trains[1])
    seen = torch.cat([y for loader in trains for _, y in loader]).tolist()
    assert len(seen) == len(set(seen)) == 10


def test_bad_hyper_parameters():
    with pytest.raises(ValueError, match="batch_size"):
        data.MNISTDataModule(batch_size=0)
    with pytest.raises(ValueError, match="Unknown data set"):
        data.prepare("CIFAR10")


# --- integration, on the real files (the mirror in CI) ---------------------------------------


def test_real_sizes_and_histograms(real_root):
    train_x, train_y = data.load_split("MNIST", True, real_root)
    test_x, test_y = data.load_split("MNIST", False, real_root)
    ood_x, ood_y = data.load_split("FashionMNIST", False, real_root)
    assert train_x.shape == (60_000, 28, 28)
    assert test_x.shape == ood_x.shape == (10_000, 28, 28)
    assert torch.bincount(train_y).tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949,
    ]  # fmt: skip
    assert torch.bincount(test_y).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009,
    ]  # fmt: skip
    assert torch.bincount(ood_y).tolist() == [1000] * 10


def test_fast_path_equals_torchvision(real_root):
    for name, train in (("MNIST", False), ("FashionMNIST", False), ("MNIST", True)):
        images, labels = data.load_split(name, train, real_root)
        reference = data.torchvision_dataset(name, train, real_root)
        assert torch.equal(images, reference.data)
        assert torch.equal(labels, reference.targets)


def test_datamodule_plain_loop(real_root):
    dm = data.MNISTDataModule(root=real_root, mirror=os.devnull, batch_size=512,
                              eval_batch_size=4096, train_subset=2000)  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 4 and batches[0][0].shape == (512, 1, 28, 28)
    assert batches[-1][0].shape == (2000 - 3 * 512, 1, 28, 28)
    val = dm.val_dataloader()
    assert sum(y.numel() for _, y in val) == 5_000  # the held-out validation split
    id_loader, ood_loader = dm.test_dataloader()
    assert sum(y.numel() for _, y in ood_loader) == 10_000
    x, _ = next(iter(ood_loader))
    assert x.dtype == torch.float32 and abs(float(x.mean())) < 1.5


def test_plot_samples_shows_seeded_test_images_with_their_class_names(real_root):
    fig = data.plot_samples(real_root, per_set=4, seed=3)
    assert len(fig.axes) == 8  # two rows of 4
    g = torch.Generator().manual_seed(3)
    for row, name in enumerate(("MNIST", "FashionMNIST")):  # ID row above OOD row
        images, labels = data.load_split(name, False, real_root, os.devnull)  # the test sets
        picks = torch.randperm(images.shape[0], generator=g)[:4].tolist()
        axes = fig.axes[4 * row : 4 * row + 4]
        assert [ax.get_title() for ax in axes] == [data.CLASSES[name][labels[i]] for i in picks]
        for ax, i in zip(axes, picks, strict=True):
            assert np.array_equal(ax.images[0].get_array(), images[i].numpy())
    assert [t.get_text() for t in fig.axes[0].texts] == ["ID: MNIST"]  # each row is named
    assert fig.axes[4].texts[0].get_text() == "OOD: Fashion MNIST"
    fashion = data.plot_samples(real_root, per_set=2, dataset="fashion")
    assert [t.get_text() for ax in fashion.axes for t in ax.texts] == [
        "ID: Fashion MNIST", "OOD: MNIST"]  # fmt: skip
    other = data.plot_samples(real_root, per_set=4).axes[0].images[0].get_array()
    assert not np.array_equal(other, fig.axes[0].images[0].get_array())  # the seed picks


def test_default_root_and_mirror(monkeypatch, tmp_path):
    monkeypatch.delenv("TUTORIAL_DATA_DIR", raising=False)
    monkeypatch.delenv("TUTORIAL_DATA_MIRROR", raising=False)
    (tmp_path / "course" / "notebooks").mkdir(parents=True)
    (tmp_path / "course" / "book.toml").write_text("[book]\n")
    monkeypatch.chdir(tmp_path / "course" / "notebooks")  # where a notebook's kernel runs
    assert data.data_root() == tmp_path / "course" / "data"  # the course's, not notebooks/data
    monkeypatch.chdir(tmp_path)  # outside any course
    assert data.data_root() == Path("data") and data.data_root("x") == Path("x")
    assert data.data_mirror() is None and data.data_mirror("") is None
    assert data.data_mirror("m") == Path("m")


def test_fetch_url_streams_in_chunks_and_returns_the_md5(tmp_path, monkeypatch):
    payload = os.urandom((5 << 19) + 7)  # 2.5 MiB and a bit: three reads of 1 MiB
    source = tmp_path / "remote.bin"
    source.write_bytes(payload)
    handle = io.BytesIO()
    assert data._fetch_url(source.as_uri(), handle) == hashlib.md5(payload).hexdigest()
    assert handle.getvalue() == payload
    seen = {}

    class Response(io.BytesIO):
        def read(self, size=-1):
            seen.setdefault("sizes", []).append(size)
            return super().read(size)

    def urlopen(request, timeout):
        seen.update(agent=request.get_header("User-agent"), url=request.full_url, timeout=timeout)
        return Response(b"abc")

    monkeypatch.setattr(data.urllib.request, "urlopen", urlopen)
    handle = io.BytesIO()
    assert data._fetch_url("http://x.invalid/f.gz", handle) == hashlib.md5(b"abc").hexdigest()
    assert seen == {"agent": "tutorial-lib", "url": "http://x.invalid/f.gz", "timeout": 30.0,
                    "sizes": [1 << 20, 1 << 20]}  # fmt: skip


def test_a_verified_file_is_not_hashed_again_until_it_changes(tmp_path, monkeypatch):
    path = tmp_path / "f.gz"
    path.write_bytes(b"content")
    md5 = hashlib.md5(b"content").hexdigest()
    assert data.file_digest(path, "sha256") == hashlib.sha256(b"content").hexdigest()
    assert data.md5sum(path) == md5
    monkeypatch.setattr(data, "_verified", {})
    hashed = []
    monkeypatch.setattr(data, "md5sum", lambda p: hashed.append(p) or data.file_digest(p, "md5"))
    assert data._has_md5(path, md5) and data._has_md5(path, md5)
    assert hashed == [path]
    assert not data._has_md5(path, "0" * 32) and len(hashed) == 2  # another md5: checked
    path.write_bytes(b"changed!")
    assert not data._has_md5(path, md5) and len(hashed) == 3
    assert not data._has_md5(tmp_path / "missing.gz", md5)


def test_download_reports_each_mirror_and_the_md5_it_got(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_fetch_url", lambda url, handle: handle.write(b"x") and "abc")
    errors = data._download(["http://a/f", "http://b/f"], "123", tmp_path / "f")
    assert errors == ["http://a/f: md5 abc, expected 123", "http://b/f: md5 abc, expected 123"]
    assert list(tmp_path.iterdir()) == []  # nothing half-written is left


def test_missing_file_messages_say_where_they_looked(fake_mirror, tmp_path):
    raw = tmp_path / "root" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    name = "t10k-labels-idx1-ubyte.gz"
    md5 = dict(data.DATASETS["MNIST"].resources)[name]
    with pytest.raises(data.DataNotFoundError) as info:
        data._fetch_one("MNIST", name, md5, raw, None, download=False)
    assert str(info.value) == (
        f"MNIST file {name} is not in {raw}, and downloading it failed:\n  downloads disabled\n"
        f"Without network, point TUTORIAL_DATA_MIRROR (or --mirror) at a folder holding "
        f"MNIST/raw/{name}, or copy the original file into {raw} (or set TUTORIAL_DATA_DIR to a "
        "folder that has it)."
    )
    empty = tmp_path / "empty"
    with pytest.raises(data.DataNotFoundError) as info:
        data._fetch_one("MNIST", name, md5, raw, empty, download=True)
    assert f"is not in {raw} nor in the mirror {empty / 'MNIST' / 'raw'}, and" in str(info.value)
    assert "\n  http://mirror.invalid/t10k-labels-idx1-ubyte.gz: " in str(info.value)
    data._fetch_one("MNIST", name, md5, raw, fake_mirror, download=False)  # from the mirror
    assert data.md5sum(raw / name) == md5
    bad = tmp_path / "bad"
    (bad / "MNIST" / "raw").mkdir(parents=True)
    (bad / "MNIST" / "raw" / name).write_bytes(b"not it")
    with pytest.raises(data.ChecksumError) as info:
        data._fetch_one("MNIST", name, md5, raw, bad, download=False)
    assert str(info.value) == (
        f"The mirror's {bad / 'MNIST' / 'raw' / name} has md5 {hashlib.md5(b'not it').hexdigest()}"
        f", expected {md5}: the file is damaged or not the original. Replace it with the original "
        "file, or unset TUTORIAL_DATA_MIRROR to download it."
    )


def test_mirror_is_never_written(real_root):
    mirror = os.environ.get("TUTORIAL_DATA_MIRROR")
    if mirror is None:
        pytest.fail("Set TUTORIAL_DATA_MIRROR to the offline mirror (CI does).")
    assert sorted(os.listdir(os.path.join(mirror, "MNIST", "raw"))) == sorted(
        name for name, _ in torchvision.datasets.MNIST.resources
    )


def _hashes(images):
    return {hashlib.sha256(image.numpy().tobytes()).hexdigest() for image in images}


def test_validation_split_is_fixed_disjoint_and_never_augmented(real_root):
    dm = data.MNISTDataModule(root=real_root, mirror=os.devnull, val_size=5000, seed=7)
    dm.setup()
    other = data.MNISTDataModule(root=real_root, mirror=os.devnull, val_size=5000, seed=3)
    other.setup()
    assert dm.sizes() == {"train": 55_000, "val": 5_000, "test_id": 10_000, "test_ood": 10_000}
    val_images, val_labels = dm.splits["val"]
    assert torch.equal(val_images, other.splits["val"][0])  # the run's seed does not move it
    train_hashes = _hashes(dm.splits["train"][0])
    val_hashes, test_hashes = _hashes(val_images), _hashes(dm.splits["test"][0])
    assert not val_hashes & train_hashes and not val_hashes & test_hashes
    assert len(val_hashes) > 4990  # distinct images, not one repeated
    assert torch.bincount(val_labels, minlength=10).min() > 350  # every class is represented
    images, labels = next(iter(dm.val_dataloader()))
    torch.testing.assert_close(images[:, 0], data.normalize(val_images[: len(labels)])[:, 0])
    train, val = data.validation_indices(100, 10)
    assert len(train) == 90 and len(val) == 10 and not set(train.tolist()) & set(val.tolist())
    with pytest.raises(ValueError, match="val_size"):
        data.validation_indices(100, 100)


def test_train_subset_is_taken_after_the_split_and_val_size_zero(real_root):
    dm = data.MNISTDataModule(root=real_root, mirror=os.devnull, train_subset=1000, val_size=0)
    dm.setup()
    assert dm.sizes()["train"] == 1000 and dm.sizes()["val"] == 0
    assert dm.val_dataloader() == []
    with pytest.raises(ValueError, match="No 'val' split"):
        dm.eval_loader("val")


def test_fashion_is_in_distribution_with_its_own_statistics(real_root):
    dm = data.MNISTDataModule(root=real_root, mirror=os.devnull, dataset="fashion",
                              eval_subset=100, val_size=1000)  # fmt: skip
    dm.setup()
    fashion, _ = data.load_split("FashionMNIST", False, real_root)
    mnist, _ = data.load_split("MNIST", False, real_root)
    assert torch.equal(dm.splits["test"][0], fashion[:100])
    assert torch.equal(dm.splits["ood"][0], mnist[:100])
    assert (dm.mean, dm.std) == data.STATS["FashionMNIST"]
    x, _ = next(iter(dm.train_dataloader()))
    assert abs(float(x.mean())) < 0.2 and abs(float(x.std()) - 1) < 0.2  # standardised
    with pytest.raises(ValueError, match="dataset"):
        data.MNISTDataModule(dataset="cifar")


def test_published_sources_are_torchvisions():
    for name, source in data.DATASETS.items():
        theirs = getattr(torchvision.datasets, name)
        assert list(source.mirrors) == list(theirs.mirrors), name
        assert list(source.resources) == [tuple(r) for r in theirs.resources], name


def test_loader_defaults_epochs_and_crops_follow_their_seed():
    images = torch.arange(600, dtype=torch.int64).remainder(256).to(torch.uint8)
    images = images[:, None, None].expand(600, 28, 28).contiguous()
    labels = torch.arange(600)
    loader = data.TensorBatchLoader(images, labels)
    assert (loader.batch_size, loader.shuffle, loader.augment, loader.seed) == (512, True, False, 0)
    assert len(loader) == 2 and loader.epoch == 0
    data.TensorBatchLoader(images, labels, batch_size=1)  # one image per batch is allowed
    epochs = [torch.cat([y for _, y in loader]) for _ in range(3)]
    assert loader.epoch == 3
    assert not torch.equal(epochs[1], epochs[2])  # every epoch its own permutation
    g = torch.Generator().manual_seed(0 + 2)  # the third epoch: seed + epoch
    assert torch.equal(epochs[2], torch.randperm(600, generator=g))
    crops = data.TensorBatchLoader(images, labels, 600, shuffle=False, augment=True, seed=5)
    x, _ = next(iter(crops))
    g = torch.Generator().manual_seed(10_000 + 5)  # the crops' own stream: 10,000 + seed + epoch
    offsets = torch.randint(0, 9, (600, 2), generator=g)
    expected = data.normalize(data.random_crop(images, offsets))
    torch.testing.assert_close(x, expected)
    assert len(data.TensorBatchLoader(images, labels, 512, drop_last=True)) == 1
    custom = data.TensorBatchLoader(images, labels, 600, shuffle=False, mean=0.5, std=0.25)
    x, _ = next(iter(custom))
    torch.testing.assert_close(x, (images[:, None].float() / 255 - 0.5) / 0.25)
    with pytest.raises(ValueError) as info:
        data.TensorBatchLoader(images, labels[:5])
    assert str(info.value) == "600 images but 5 labels."
    with pytest.raises(ValueError) as info:
        data.TensorBatchLoader(images, labels, batch_size=0)
    assert str(info.value) == "batch_size must be >= 1, got 0."


def test_data_module_defaults_and_messages():
    module = data.MNISTDataModule()
    assert (module.batch_size, module.eval_batch_size, module.augment, module.seed) == (
        512, 1024, True, 0)  # fmt: skip
    data.MNISTDataModule(batch_size=1, eval_batch_size=1)  # the smallest batches are allowed
    for arg in ("batch_size", "eval_batch_size"):
        with pytest.raises(ValueError) as info:
            data.MNISTDataModule(**{arg: 0})
        assert str(info.value).startswith(f"{arg} must be >= 1, got 0")
    with pytest.raises(ValueError) as info:
        data.MNISTDataModule(val_size=-1)
    assert str(info.value) == "val_size must be >= 0, got -1."
    placed = data.MNISTDataModule("r", "m", device="cpu")
    assert (placed.root, placed.mirror, placed.device) == (Path("r"), Path("m"),
                                                           torch.device("cpu"))  # fmt: skip


def test_splits_follow_the_trainer_that_sets_them_up(real_root):
    dm = data.MNISTDataModule(real_root, os.devnull, train_subset=1000, eval_subset=100)
    dm.setup()  # before any trainer: on the CPU
    assert {x.device.type for pair in dm.splits.values() for x in pair} == {"cpu"}
    images = dm.splits["test"][0]
    dm.trainer = types.SimpleNamespace(strategy=types.SimpleNamespace(
        root_device=torch.device("meta")))  # a trainer on another device  # fmt: skip
    dm.setup("fit")
    assert {x.device.type for pair in dm.splits.values() for x in pair} == {"meta"}
    assert dm.splits["test"][0].shape == images.shape and dm.sizes()["train"] == 1000
    pinned = data.MNISTDataModule(real_root, os.devnull, train_subset=1000, eval_subset=100,
                                  device="cpu")  # fmt: skip
    pinned.setup()
    pinned.trainer = dm.trainer
    pinned.setup("fit")  # an explicit device is kept
    assert pinned.splits["train"][0].device.type == "cpu"


def test_corrupt_files_and_caches_say_why(tmp_path):
    short = tmp_path / "short.gz"
    with gzip.open(short, "wb") as f:
        f.write(b"\x00\x00\x08\x01\x00\x00\x00")
    with pytest.raises(data.CorruptDataError) as info:
        data.read_idx(short)
    assert str(info.value) == f"{short} is too short to be an IDX file. Delete it and run again."
    exact = tmp_path / "eight.gz"
    with gzip.open(exact, "wb") as f:
        f.write((0x801).to_bytes(4, "big") + (0).to_bytes(4, "big"))  # 8 bytes: no labels
    assert data.read_idx(exact).shape == (0,)
    magic = tmp_path / "magic.gz"
    with gzip.open(magic, "wb") as f:
        f.write((0x802).to_bytes(4, "big") + (1).to_bytes(4, "big") + b"\x00")
    with pytest.raises(data.CorruptDataError) as info:
        data.read_idx(magic)
    assert str(info.value) == f"{magic} has IDX magic 0x00000802, not MNIST's. Delete it."
    images = torch.zeros(2, 28, 28, dtype=torch.uint8)
    labels = torch.tensor([3, 9], dtype=torch.uint8)
    good = {"format": data._CACHE_FORMAT, "source_md5": "k", "images": images, "labels": labels,
            "sha256": [data._sha256(images), data._sha256(labels)]}  # fmt: skip
    assert data._cache_problem(good, "k") is None  # a label of 9 is fine
    reasons = {
        "an older or unknown format": {**good, "format": 1},
        "it was decoded from other raw files": {**good, "source_md5": "other"},
        "it lacks images or labels": {**good, "labels": None},
        "wrong dtype": {**good, "labels": labels.long()},
        "its content does not match its sha256 (corrupted)": {**good, "sha256": ["x", "y"]},
    }
    for reason, cached in reasons.items():
        assert data._cache_problem(cached, "k") == reason
    assert data._cache_problem({**good, "images": images[0]}, "k").startswith("shapes (28, 28)")
    ten = {**good, "labels": torch.tensor([3, 10], dtype=torch.uint8)}
    assert data._cache_problem(ten, "k") == "a label is 10, outside 0-9"


def test_prepare_then_setup_loads_and_verifies_each_split_once(real_root, monkeypatch):
    loads = []
    real = data.load_split
    monkeypatch.setattr(data, "load_split", lambda *a: loads.append(a[:2]) or real(*a))
    module = data.MNISTDataModule(real_root, os.devnull, val_size=500)
    module.prepare_data()
    module.setup()
    module.prepare_data()  # Lightning calls both again at every fit and test
    module.setup()
    assert sorted(loads) == [("FashionMNIST", False), ("MNIST", False), ("MNIST", True)]
    assert module.sizes() == {"train": 59_500, "val": 500, "test_id": 10_000, "test_ood": 10_000}
    assert module._loaded == {}  # nothing kept twice
    again = data.MNISTDataModule(real_root, os.devnull)
    again.setup()  # set up without prepare_data: loads what it needs itself
    again.prepare_data()  # then only verifies: the splits exist, nothing is kept
    assert again._loaded == {} and len(loads) == 9


def test_classes_keep_and_relabel_some_digits_and_the_others_are_near_ood(real_root):
    every = data.MNISTDataModule(root=real_root, mirror=os.devnull, val_size=5000)
    every.setup()
    dm = data.MNISTDataModule(root=real_root, mirror=os.devnull, val_size=5000, classes=(7, 2))
    dm.setup()
    assert dm.num_classes == 2 and every.num_classes == 10
    for split in ("train", "val", "test"):
        old_images, old_labels = every.splits[split]
        kept = (old_labels == 7) | (old_labels == 2)
        images, labels = dm.splits[split]
        assert torch.equal(images, old_images[kept])  # the same images, in the same order
        assert torch.equal(labels, (old_labels[kept] == 2).long())  # 7 -> 0, 2 -> 1
    near_images, near_labels = dm.splits["near"]
    test_labels = every.splits["test"][1]
    assert torch.equal(near_labels, test_labels[(test_labels != 7) & (test_labels != 2)])
    assert set(near_labels.unique().tolist()) == {0, 1, 3, 4, 5, 6, 8, 9}
    sizes = dm.sizes()
    assert sizes["test_id"] + sizes["test_near"] == 10_000 and sizes["test_ood"] == 10_000
    assert "test_near" not in every.sizes()
    assert len(next(iter(dm.eval_loader("near")))[1]) == dm.eval_batch_size
    for wrong in ((3,), (1, 1), (0, 10), tuple(range(10))):
        with pytest.raises(ValueError, match="classes must be 2 to 9 distinct labels"):
            data.MNISTDataModule(root=real_root, mirror=os.devnull, classes=wrong)


def test_blend_pairs_mixes_two_images_of_different_classes():
    images = torch.stack([torch.full((28, 28), v, dtype=torch.uint8) for v in (0, 100, 200, 255)])
    labels = torch.tensor([0, 0, 1, 2])
    blends, first, second = data.blend_pairs(images, labels, 500, seed=3)
    assert blends.shape == (500, 28, 28) and blends.dtype == torch.uint8
    assert (first != second).all()
    value = {0: 0.0, 1: 200.0, 2: 255.0}  # label 0 is 0 or 100: check the pairs without it
    for b, a, c in zip(blends[:, 0, 0].tolist(), first.tolist(), second.tolist(), strict=True):
        if 0 not in (a, c):
            assert b == round((value[a] + value[c]) / 2)
    again = data.blend_pairs(images, labels, 500, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(again, (blends, first, second), strict=True))
    quarter = data.blend_pairs(images[2:], labels[2:], 4, weight=0.25)[0]  # 200 and 255
    assert set(quarter[:, 0, 0].tolist()) <= {round(0.25 * 200 + 0.75 * 255),
                                              round(0.25 * 255 + 0.75 * 200)}  # fmt: skip
    with pytest.raises(ValueError, match="weight must be in"):
        data.blend_pairs(images, labels, 5, weight=1.0)
    with pytest.raises(ValueError, match="at least two classes"):
        data.blend_pairs(images[:2], labels[:2], 5)
