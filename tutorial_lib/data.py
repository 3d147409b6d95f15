"""MNIST and FashionMNIST for the course: files, tensors, batches, and the splits of an experiment.

Three layers, each usable alone:

1. **Files.** :func:`prepare` puts the four original ``.gz`` files of a data set under
   ``<root>/<name>/raw/`` (the layout of torchvision's dataset classes), taking them from an
   offline mirror when one is given (``TUTORIAL_DATA_MIRROR``) and from the official mirrors
   otherwise. Every file is checked against the md5 that torchvision checks, and written
   atomically (:mod:`tutorial_lib.files`): an interrupted run never leaves a file a later run would
   trust. A mirror is only read, never written to.
2. **Tensors.** :func:`load_split` decodes the IDX files once into uint8 tensors and caches them
   next to the raw files (``*.uint8.pt``), with the sha256 of their bytes: a damaged cache is
   detected on load and rebuilt from the md5-checked raw files.
3. **Batches.** :class:`TensorBatchLoader` serves shuffled, normalised, augmented batches straight
   from those tensors on any device (no PIL, no worker processes), and :class:`MNISTDataModule`
   holds an experiment's splits: training, a held-out **validation** split of the training images,
   the in-distribution test set and the out-of-distribution test set.

:func:`torchvision_dataset` gives the same files through torchvision's classes, for the reference
pipeline and for cross-checks.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from torch import Tensor

from tutorial_lib.config import valid_classes
from tutorial_lib.errors import (  # noqa: F401 (the data layer's errors, importable from here)
    ChecksumError,
    CorruptDataError,
    DataError,
    DataNotFoundError,
    DataRootError,
)
from tutorial_lib.files import atomic_write, find_root, remove_stale_parts, save_tensors

CROP_PADDING = 4
VAL_SPLIT_SEED = 2023  # fixed: the validation images are the same whatever the run's seed


@dataclass(frozen=True)
class Source:
    """Where a data set's four raw files are published, and their md5 (torchvision's values; a
    test checks them against torchvision's, which the data layer does not need to import)."""

    mirrors: tuple[str, ...]
    resources: tuple[tuple[str, str], ...]


DATASETS: dict[str, Source] = {
    "MNIST": Source(
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        (("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
         ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
         ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
         ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c")),
    ),
    "FashionMNIST": Source(
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        (("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
         ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
         ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
         ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310")),
    ),
}  # fmt: skip
# Per-pixel mean and standard deviation of each training set (images scaled to [0, 1]).
STATS = {"MNIST": (0.1307, 0.3081), "FashionMNIST": (0.2860, 0.3530)}
MNIST_MEAN, MNIST_STD = STATS["MNIST"]
MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = [
    "T-shirt", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
CLASSES = {"MNIST": MNIST_CLASSES, "FashionMNIST": FASHION_CLASSES}
# An experiment's in-distribution data set and its out-of-distribution test set.
PAIRS = {"mnist": ("MNIST", "FashionMNIST"), "fashion": ("FashionMNIST", "MNIST")}

_IDX_MAGIC = {0x00000801: 1, 0x00000803: 3}  # labels (N,), images (N, H, W); both uint8
_CACHE_FORMAT = 2


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The download root: ``root`` if given, else ``$TUTORIAL_DATA_DIR``, else the course's
    ``data/`` folder when the current folder is inside the course (found as the course root is:
    a notebook running in ``notebooks/`` shares the command line's data, never a second copy),
    else ``./data``."""
    chosen = root or os.environ.get("TUTORIAL_DATA_DIR")
    if chosen:
        return Path(chosen)
    try:
        return find_root() / "data"
    except FileNotFoundError:
        return Path("data")


def data_mirror(mirror: str | os.PathLike | None = None) -> Path | None:
    """The offline mirror: ``mirror`` if given, else ``$TUTORIAL_DATA_MIRROR``, else ``None``."""
    value = mirror or os.environ.get("TUTORIAL_DATA_MIRROR")
    return Path(value) if value else None


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest of a file with a hashlib algorithm, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def md5sum(path: str | os.PathLike) -> str:
    """Hex md5 of a file (the checksum torchvision publishes)."""
    return file_digest(path, "md5")


# files already verified by this process: path -> (size, mtime_ns, md5) when that md5 matched
_verified: dict[Path, tuple[int, int, str]] = {}


def _has_md5(path: Path, md5: str) -> bool:
    """Whether ``path`` exists with this md5 (remembered per process while size and mtime hold)."""
    try:
        stat = path.stat()
    except OSError:  # missing, or a path through a file
        return False
    key = (stat.st_size, stat.st_mtime_ns, md5)
    if _verified.get(path) == key:
        return True
    if md5sum(path) != md5:
        return False
    _verified[path] = key
    return True


def _split_files(train: bool) -> tuple[str, str]:
    """Names of the (images, labels) ``.gz`` files of one split."""
    prefix = "train" if train else "t10k"
    return f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"


def _resources(name: str) -> list[tuple[str, str]]:
    """``(file name, md5)`` of the four raw files, as torchvision publishes them."""
    if name not in DATASETS:
        raise ValueError(f"Unknown data set {name!r}: choose one of {sorted(DATASETS)}.")
    return list(DATASETS[name].resources)


def _fetch_url(url: str, handle, timeout: float = 30.0) -> str:
    """Stream ``url`` into the open binary file ``handle``; return the md5 of what was written."""
    digest = hashlib.md5()
    request = urllib.request.Request(url, headers={"User-Agent": "tutorial-lib"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        for chunk in iter(lambda: response.read(1 << 20), b""):
            handle.write(chunk)
            digest.update(chunk)
    return digest.hexdigest()


def _download(urls: list[str], md5: str, dst: Path) -> list[str]:
    """Try each URL until one gives a file with this md5, written atomically to ``dst``.

    Returns:
        The errors met (empty on success).
    """
    errors = []
    for url in urls:
        try:
            with atomic_write(dst) as handle:
                got = _fetch_url(url, handle)
                if got != md5:  # raised inside: the temporary file is discarded
                    raise ValueError(f"md5 {got}, expected {md5}")
            return []
        except (urllib.error.URLError, OSError, ValueError) as err:
            errors.append(f"{url}: {err}")
    return errors


def _copy(src: Path, dst: Path) -> None:
    with atomic_write(dst) as out, open(src, "rb") as inp:
        for chunk in iter(lambda: inp.read(1 << 20), b""):
            out.write(chunk)


def _raw_folder(name: str, root: str | os.PathLike | None) -> Path:
    """``<root>/<name>/raw``, created; a :class:`DataRootError` that says what to do if not."""
    raw = data_root(root) / name / "raw"
    try:
        raw.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataRootError(
            f"Cannot create the data folder {raw} ({err.strerror or err}). Point "
            "TUTORIAL_DATA_DIR (or --data-dir) at a folder you can write to."
        ) from err
    return raw


def prepare(
    name: str,
    root: str | os.PathLike | None = None,
    mirror: str | os.PathLike | None = None,
    download: bool = True,
) -> Path:
    """Make sure the four raw ``.gz`` files of ``name`` are in ``<root>/<name>/raw/``, md5-checked.

    A file with a wrong md5 is moved aside (``*.corrupt``) and fetched again; temporary files that
    a killed run left behind are removed. Several processes may prepare the same root at once.

    Args:
        name: ``"MNIST"`` or ``"FashionMNIST"``.
        root: download root (see :func:`data_root`).
        mirror: offline mirror holding ``<name>/raw/*.gz`` (see :func:`data_mirror`); read only.
        download: whether to try the official mirrors when a file is found nowhere else.

    Returns:
        The raw folder.

    Raises:
        ChecksumError: a mirror's file has the wrong md5.
        DataNotFoundError: a file is missing and could be neither copied nor downloaded.
        DataRootError: the root cannot be created, or a missing file cannot be written there.
    """
    resources = _resources(name)
    raw = data_root(root) / name / "raw"
    if all(_has_md5(raw / filename, md5) for filename, md5 in resources):
        return raw  # everything in place: nothing to write (a read-only root is fine)
    raw = _raw_folder(name, root)
    remove_stale_parts(raw)
    mirror_dir = data_mirror(mirror)
    for filename, md5 in resources:
        dst = raw / filename
        if _has_md5(dst, md5):
            continue
        if dst.exists():
            aside = dst.with_name(dst.name + ".corrupt")
            with contextlib.suppress(FileNotFoundError):  # another process moved it first
                os.replace(dst, aside)
            warnings.warn(f"{dst} has the wrong md5 (expected {md5}): moved it aside to "
                          f"{aside.name}; fetching a fresh copy.", stacklevel=2)  # fmt: skip
        try:
            _fetch_one(name, filename, md5, raw, mirror_dir, download)
        except PermissionError as err:
            raise DataRootError(
                f"Cannot write {dst} ({err.strerror}). Point TUTORIAL_DATA_DIR (or --data-dir) "
                "at a folder you can write to."
            ) from err
    return raw


def _fetch_one(
    name: str, filename: str, md5: str, raw: Path, mirror_dir: Path | None, download: bool
) -> None:
    dst = raw / filename
    src = mirror_dir / name / "raw" / filename if mirror_dir is not None else None
    if src is not None and src.exists():
        if not _has_md5(src, md5):
            raise ChecksumError(
                f"The mirror's {src} has md5 {md5sum(src)}, expected {md5}: the file is damaged "
                "or not the original. Replace it with the original file, or unset "
                "TUTORIAL_DATA_MIRROR to download it."
            )
        _copy(src, dst)
        return
    urls = [base + filename for base in DATASETS[name].mirrors]
    errors = _download(urls, md5, dst) if download else ["downloads disabled"]
    if errors:
        looked = f" nor in the mirror {mirror_dir / name / 'raw'}" if mirror_dir else ""
        raise DataNotFoundError(
            f"{name} file {filename} is not in {raw}{looked}, and downloading it failed:\n  "
            + "\n  ".join(errors)
            + "\nWithout network, point TUTORIAL_DATA_MIRROR (or --mirror) at a folder "
            f"holding {name}/raw/{filename}, or copy the original file into {raw} "
            "(or set TUTORIAL_DATA_DIR to a folder that has it)."
        )


def read_idx(path: str | os.PathLike) -> Tensor:
    """Decode a gzipped IDX file (the MNIST format) into a uint8 tensor.

    Returns:
        ``(N,)`` uint8 labels or ``(N, H, W)`` uint8 images.

    Raises:
        CorruptDataError: not gzip, truncated, or a header that does not match the payload.
    """
    try:
        with gzip.open(path, "rb") as f:
            payload = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise CorruptDataError(
            f"{path} is truncated or corrupted ({err}). Delete it and run again to fetch "
            "a fresh copy."
        ) from err
    if len(payload) < 8:
        raise CorruptDataError(f"{path} is too short to be an IDX file. Delete it and run again.")
    magic = int.from_bytes(payload[:4], "big")
    if magic not in _IDX_MAGIC:
        raise CorruptDataError(f"{path} has IDX magic {magic:#010x}, not MNIST's. Delete it.")
    ndim = _IDX_MAGIC[magic]
    header = 4 + 4 * ndim
    shape = [int.from_bytes(payload[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(torch.tensor(shape).prod())
    if len(payload) != expected:
        raise CorruptDataError(
            f"{path} holds {len(payload)} bytes once unzipped, its header announces {expected} "
            f"(shape {shape}): the file is truncated or corrupted. Delete it and run again."
        )
    body = payload[header:]
    if not body:  # a header announcing no items (torch.frombuffer refuses an empty buffer)
        return torch.empty(shape, dtype=torch.uint8)
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(shape)


def _sha256(tensor: Tensor) -> str:
    return hashlib.sha256(tensor.contiguous().numpy().tobytes()).hexdigest()


def _cache_problem(cached: object, key: str) -> str | None:
    """Why a decoded cache cannot be trusted (None when it can)."""
    if not isinstance(cached, dict) or cached.get("format") != _CACHE_FORMAT:
        return "an older or unknown format"
    if cached.get("source_md5") != key:
        return "it was decoded from other raw files"
    images, labels = cached.get("images"), cached.get("labels")
    if not (isinstance(images, Tensor) and isinstance(labels, Tensor)):
        return "it lacks images or labels"
    if images.dtype != torch.uint8 or labels.dtype != torch.uint8:
        return "wrong dtype"
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        return f"shapes {tuple(images.shape)} and {tuple(labels.shape)} do not match"
    if labels.numel() and int(labels.max()) > 9:
        return f"a label is {int(labels.max())}, outside 0-9"
    if cached.get("sha256") != [_sha256(images), _sha256(labels)]:
        return "its content does not match its sha256 (corrupted)"
    return None


def load_split(
    name: str,
    train: bool,
    root: str | os.PathLike | None = None,
    mirror: str | os.PathLike | None = None,
) -> tuple[Tensor, Tensor]:
    """Images and labels of one split, decoded once and cached next to the raw files.

    The cache holds the sha256 of its image and label bytes, their shapes, dtype and label range,
    all checked on every load; any mismatch rebuilds it from the md5-checked raw files, with a
    one-line warning. A cache that cannot be written (read-only root) only costs the decoding.

    Returns:
        ``images`` (N, 28, 28) uint8 and ``labels`` (N,) int64, on the CPU.
    """
    raw = prepare(name, root, mirror)
    images_gz, labels_gz = _split_files(train)
    md5 = dict(_resources(name))
    cache = raw / f"{'train' if train else 'test'}.uint8.pt"
    key = md5[images_gz] + md5[labels_gz]
    if cache.exists():
        try:
            cached = torch.load(cache, weights_only=True)
            problem = _cache_problem(cached, key)
        except Exception as err:  # unreadable: rebuilt, never trusted
            problem = f"unreadable ({type(err).__name__})"
        if problem is None:
            return cached["images"], cached["labels"].long()
        warnings.warn(f"Rebuilding the decoded cache {cache}: {problem}.", stacklevel=2)
    images, labels = read_idx(raw / images_gz), read_idx(raw / labels_gz)
    if images.shape[0] != labels.shape[0]:
        raise CorruptDataError(
            f"{raw}: {images.shape[0]} images but {labels.shape[0]} labels. Delete both files."
        )
    entry = {"format": _CACHE_FORMAT, "images": images, "labels": labels, "source_md5": key,
             "sha256": [_sha256(images), _sha256(labels)]}  # fmt: skip
    try:
        save_tensors(entry, cache)
    except OSError as err:
        warnings.warn(f"Cannot write the decoded cache {cache} ({err.strerror or err}): "
                      "decoding the raw files each time instead.", stacklevel=2)  # fmt: skip
    return images, labels.long()


def torchvision_dataset(
    name: str,
    train: bool,
    root: str | os.PathLike | None = None,
    mirror: str | os.PathLike | None = None,
    transform=None,
):
    """The same split through torchvision's class (PIL images; used by the reference pipeline).

    The raw files are prepared first, so torchvision only checks their md5 and extracts them: it
    never touches the network.

    Returns:
        A ``torchvision.datasets.MNIST`` (or ``FashionMNIST``).
    """
    import torchvision

    prepare(name, root, mirror)
    dataset = getattr(torchvision.datasets, name)
    return dataset(str(data_root(root)), train=train, download=True, transform=transform)


def normalize(images: Tensor, mean: float = MNIST_MEAN, std: float = MNIST_STD) -> Tensor:
    """uint8 images (B, 28, 28) -> float32 (B, 1, 28, 28): ``(x / 255 - mean) / std``."""
    out = images.unsqueeze(1).to(torch.float32)  # a new tensor: the in-place ops below are safe
    return out.mul_(1 / (255.0 * std)).sub_(mean / std)


def random_crop(images: Tensor, offsets: Tensor, padding: int = CROP_PADDING) -> Tensor:
    """Batched ``RandomCrop(28, padding=4)``: zero-pad each image, cut a window at its offset.

    Args:
        images: (B, H, W) uint8, unnormalised (so the padding is black, as torchvision pads).
        offsets: (B, 2) int64 top/left offsets in ``[0, 2 * padding]``.

    Returns:
        (B, H, W) uint8, the same pixels as torchvision's crop at those offsets.
    """
    b, h, w = images.shape
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    windows = padded.unfold(1, h, 1).unfold(2, w, 1)  # (B, 2p+1, 2p+1, H, W): a view, no copy
    return windows[torch.arange(b, device=images.device), offsets[:, 0], offsets[:, 1]]


class TensorBatchLoader:
    """Shuffled mini-batches served from tensors that live on the training device.

    Yields ``(images (B, 1, 28, 28) float32 normalised, labels (B,) int64)`` on ``images.device``.
    Each epoch draws a new permutation (and new crop offsets when ``augment``) from a generator
    seeded with ``seed + epoch``, so a run is reproducible and iterating twice gives two epochs.

    Args:
        images: (N, 28, 28) uint8.
        labels: (N,) int64.
        batch_size: images per batch.
        shuffle: draw a permutation each epoch.
        augment: apply the batched ``RandomCrop(28, padding=4)``.
        drop_last: drop the last incomplete batch.
        seed: base seed of the generator.
        rank, world_size: for data-parallel training, each rank iterates its own 1/world_size
            of every epoch's permutation (no padding: the last shard may be one batch shorter).
        mean, std: normalisation (the training set's statistics: MNIST's by default).
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int = 512,
        shuffle: bool = True,
        augment: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        mean: float = MNIST_MEAN,
        std: float = MNIST_STD,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels.")
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.drop_last, self.seed = drop_last, seed
        self.rank, self.world_size = rank, world_size
        self.mean, self.std = mean, std
        self.epoch = 0

    def _indices(self) -> Tensor:
        n = self.images.shape[0]
        if not self.shuffle:
            idx = torch.arange(n, device=self.images.device)
        else:
            g = torch.Generator(device=self.images.device).manual_seed(self.seed + self.epoch)
            idx = torch.randperm(n, generator=g, device=self.images.device)
        return idx[: self._usable()][self.rank :: self.world_size]

    def _usable(self) -> int:
        # shuffled (training) shards must be equally long, or data-parallel ranks would wait on
        # each other at the last step: drop the < world_size images left over
        n = self.images.shape[0]
        return n - n % self.world_size if self.shuffle else n

    def __len__(self) -> int:
        n = len(range(self.rank, self._usable(), self.world_size))
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        idx = self._indices()
        device = self.images.device
        g = torch.Generator(device=device).manual_seed(10_000 + self.seed + self.epoch)
        self.epoch += 1
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            batch = idx[start : start + self.batch_size]
            images = self.images.index_select(0, batch)  # faster than images[batch] (RESULTS.md)
            if self.augment:
                offsets = torch.randint(
                    0, 2 * CROP_PADDING + 1, (batch.shape[0], 2), generator=g, device=device
                )
                images = random_crop(images, offsets)
            yield normalize(images, self.mean, self.std), self.labels.index_select(0, batch)


def validation_indices(num_train: int, val_size: int) -> tuple[Tensor, Tensor]:
    """Split ``range(num_train)`` into training and validation indices with a fixed seed.

    Returns:
        ``(train, val)``: sorted int64 indices, disjoint, ``val_size`` of them in ``val``.
    """
    if not 0 <= val_size < num_train:
        raise ValueError(f"val_size must be in [0, {num_train}), got {val_size}.")
    order = torch.randperm(num_train, generator=torch.Generator().manual_seed(VAL_SPLIT_SEED))
    return order[val_size:].sort().values, order[:val_size].sort().values


class MNISTDataModule(L.LightningDataModule):
    """An experiment's splits on the fast tensor path: train, validation, ID test and OOD test.

    ``dataset="mnist"``: MNIST is in distribution, FashionMNIST's **test** split is the OOD set
    (10,000 images no model ever sees; the reference tutorial used the first 10,000 of its *train*
    split instead). ``dataset="fashion"``: the other way round.

    The validation split is ``val_size`` training images chosen by a fixed seed
    (:func:`validation_indices`), never trained on and never augmented: per-epoch validation,
    temperatures and rejection thresholds use it, so that the test sets serve the final report
    only. ``train_dataloader`` serves augmented training batches, ``val_dataloader`` the
    validation split and ``test_dataloader`` the list ``[ID test, OOD test]``. Batches are
    ``(images (B, 1, 28, 28) float32, labels (B,) int64)`` on ``device``, normalised with the
    ID training set's statistics (the OOD set too: that is what the model sees).

    Args:
        root: download root (``$TUTORIAL_DATA_DIR`` or ``./data`` when ``None``).
        mirror: offline mirror (``$TUTORIAL_DATA_MIRROR`` when ``None``).
        batch_size: training batch size.
        eval_batch_size: batch size of validation and test (at 2048 an ensemble's first
            activations overflow a CPU's caches: ``benchmarks/RESULTS.md``); the predictions are
            the same bit for bit at any size.
        device: where batches live; ``None`` takes the attached trainer's device, else the CPU.
        augment: apply ``RandomCrop(28, padding=4)`` to training batches.
        train_subset: keep only the first ``train_subset`` training images (after the split).
        eval_subset: keep only the first ``eval_subset`` images of each test set.
        val_size: training images held out for validation (0: no validation).
        seed: seed of shuffling and augmentation.
        dataset: ``"mnist"`` or ``"fashion"``.
        classes: train, validate and test on these classes of the ID data only, relabelled
            ``0..K-1`` in the order given (``None``: all 10). The ID test images of the other
            classes become the ``"near"`` split, the near-OOD set (labels kept as they were).
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        mirror: str | os.PathLike | None = None,
        batch_size: int = 512,
        eval_batch_size: int = 1024,
        device: str | torch.device | None = None,
        augment: bool = True,
        train_subset: int | None = None,
        eval_subset: int | None = None,
        val_size: int = 5000,
        seed: int = 0,
        dataset: str = "mnist",
        classes: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        if dataset not in PAIRS:
            raise ValueError(f"dataset must be one of {sorted(PAIRS)}, got {dataset!r}.")
        if classes is not None and not valid_classes(tuple(classes)):
            raise ValueError(f"classes must be 2 to 9 distinct labels in 0..9, got {classes}.")
        for arg, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value < 1:
                raise ValueError(f"{arg} must be >= 1, got {value}.")
        if val_size < 0:
            raise ValueError(f"val_size must be >= 0, got {val_size}.")
        self.root, self.mirror = data_root(root), data_mirror(mirror)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.device = torch.device(device) if device is not None else None
        self.augment, self.seed, self.dataset = augment, seed, dataset
        self.classes = tuple(classes) if classes is not None else None
        self.num_classes = len(self.classes) if self.classes else 10
        self.train_subset, self.eval_subset, self.val_size = train_subset, eval_subset, val_size
        self.id_name, self.ood_name = PAIRS[dataset]
        self.mean, self.std = STATS[self.id_name]
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}
        self._prepared = False
        self._loaded: dict[tuple[str, bool], tuple[Tensor, Tensor]] = {}

    def prepare_data(self) -> None:
        """Fetch (copy or download) and verify the raw files; decode them into the cache.

        Once per data module: Lightning calls it again at every ``fit`` and ``test``.
        """
        if self._prepared:
            return
        for name, train in ((self.id_name, True), (self.id_name, False), (self.ood_name, False)):
            split = load_split(name, train, self.root, self.mirror)
            if not self.splits:  # for setup, which would load and verify it again
                self._loaded[(name, train)] = split
        self._prepared = True

    def _load(self, name: str, train: bool) -> tuple[Tensor, Tensor]:
        """A split loaded (and verified) by :meth:`prepare_data` in this process, handed over
        once, or loaded now (each load verifies the cache's checksums)."""
        kept = self._loaded.pop((name, train), None)
        return kept if kept is not None else load_split(name, train, self.root, self.mirror)

    def _device(self) -> torch.device:
        if self.device is not None:
            return self.device
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def setup(self, stage: str | None = None) -> None:
        """Split the training images and load every split onto the device (once).

        Without a ``device``, the splits follow the attached trainer: set up first on the CPU
        (``setup()`` called before ``trainer.fit``), they move to a GPU trainer's device when it
        calls ``setup`` (else every step would crop a batch on the CPU and copy it over).
        """
        device = self._device()
        if self.splits:
            if self.device is None and self.splits["train"][0].device != device:
                self.splits = {k: (x.to(device), y.to(device)) for k, (x, y) in self.splits.items()}
            return
        images, labels = self._load(self.id_name, True)
        train, val = validation_indices(images.shape[0], self.val_size)
        train, val = self._kept(labels, train), self._kept(labels, val)
        train = train[: self.train_subset]
        relabel = self._relabel(labels.device)
        self.splits["train"] = (images[train].to(device), relabel[labels[train]].to(device))
        if self.val_size:
            self.splits["val"] = (images[val].to(device), relabel[labels[val]].to(device))
        n = self.eval_subset
        images, labels = self._load(self.id_name, False)
        test = self._kept(labels, torch.arange(len(labels)))[:n]
        self.splits["test"] = (images[test].to(device), relabel[labels[test]].to(device))
        if self.classes:
            near = (~torch.isin(labels, torch.tensor(self.classes))).nonzero().flatten()[:n]
            self.splits["near"] = (images[near].to(device), labels[near].to(device))
        images, labels = self._load(self.ood_name, False)
        self.splits["ood"] = (images[:n].to(device), labels[:n].to(device))

    def _kept(self, labels: Tensor, indices: Tensor) -> Tensor:
        """The ``indices`` (in order) whose label is one of ``classes`` (all without them)."""
        if not self.classes:
            return indices
        return indices[torch.isin(labels[indices], torch.tensor(self.classes))]

    def _relabel(self, device: torch.device) -> Tensor:
        """(10,) int64: old label -> new label (``classes[k]`` -> k; -1 for the others)."""
        if not self.classes:
            return torch.arange(10, device=device)
        table = torch.full((10,), -1, dtype=torch.int64, device=device)
        table[list(self.classes)] = torch.arange(len(self.classes), device=device)
        return table

    def sizes(self) -> dict[str, int]:
        """Images per split: ``{"train", "val", "test_id", "test_ood"}``, and ``"test_near"``
        with ``classes`` (after :meth:`setup`)."""
        names = {"train": "train", "val": "val", "test_id": "test", "test_ood": "ood"}
        if "near" in self.splits:
            names["test_near"] = "near"
        return {k: len(self.splits[v][1]) if v in self.splits else 0 for k, v in names.items()}

    def _shard(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def eval_loader(self, key: str) -> TensorBatchLoader:
        """Unshuffled, unaugmented batches of split ``key`` (``"val"``, ``"test"``, ``"ood"``,
        ``"near"``)."""
        if key not in self.splits:
            raise ValueError(f"No {key!r} split: call setup() first (and use val_size > 0).")
        rank, world = self._shard()
        return TensorBatchLoader(
            *self.splits[key],
            self.eval_batch_size,
            shuffle=False,
            rank=rank,
            world_size=world,
            mean=self.mean,
            std=self.std,
        )

    def train_dataloader(self) -> TensorBatchLoader:
        # Lightning asks once per fit; the loader draws a fresh permutation each epoch, and a new
        # fit starts again from epoch 0 (so two fits with the same seed see the same batches)
        rank, world = self._shard()
        return TensorBatchLoader(
            *self.splits["train"], self.batch_size, shuffle=True, augment=self.augment,
            seed=self.seed, rank=rank, world_size=world, mean=self.mean, std=self.std,
        )  # fmt: skip

    def val_dataloader(self) -> TensorBatchLoader | list:
        return self.eval_loader("val") if "val" in self.splits else []

    def test_dataloader(self) -> list[TensorBatchLoader]:
        return [self.eval_loader("test"), self.eval_loader("ood")]

    def transfer_batch_to_device(
        self, batch: tuple[Tensor, Tensor], device: torch.device, dataloader_idx: int
    ) -> tuple[Tensor, Tensor]:
        """Batches are made on the training device already: hand them over as they are
        (Lightning's default walks every batch to move each tensor)."""
        images, labels = batch
        return images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


def blend(first: Tensor, second: Tensor, weight: float = 0.5) -> Tensor:
    """``weight * first + (1 - weight) * second``, pixel by pixel, rounded: (N, 28, 28) uint8
    twice -> (N, 28, 28) uint8."""
    if not 0 < weight < 1:
        raise ValueError(f"weight must be in (0, 1), got {weight}.")
    return (weight * first.float() + (1 - weight) * second.float()).round().to(torch.uint8)


def blend_pairs(
    images: Tensor, labels: Tensor, count: int, weight: float = 0.5, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """Ambiguous inputs in the spirit of Dirty-MNIST's Ambiguous-MNIST (Mukhoti et al., 2021):
    :func:`blend` of two images of different classes, drawn at random. At ``weight = 0.5`` the
    right answer is a coin toss between two labels.

    Args:
        images: (N, 28, 28) uint8.
        labels: (N,) int64.
        count: blends to make.
        weight: the share of the first image, in (0, 1).
        seed: seed of the pairs drawn.

    Returns:
        ``(blends (count, 28, 28) uint8, first (count,), second (count,))``: the blends and the
        labels of their two images.
    """
    if labels.unique().numel() < 2:
        raise ValueError("blend_pairs needs images of at least two classes.")
    generator = torch.Generator().manual_seed(seed)
    first = torch.randint(len(labels), (count,), generator=generator)
    second = torch.randint(len(labels), (count,), generator=generator)
    clash = labels[first] == labels[second]
    while clash.any():  # draw again where the two images share a class
        second[clash] = torch.randint(len(labels), (int(clash.sum()),), generator=generator)
        clash = labels[first] == labels[second]
    return blend(images[first], images[second], weight), labels[first], labels[second]


def plot_samples(
    root: str | os.PathLike | None = None,
    mirror: str | os.PathLike | None = None,
    per_set: int = 8,
    seed: int = 0,
    dataset: str = "mnist",
):
    """A labelled grid: ``per_set`` ID test images above as many OOD test images.

    Returns:
        A matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    g = torch.Generator().manual_seed(seed)
    fig, axes = plt.subplots(2, per_set, figsize=(1.3 * per_set, 3.2), squeeze=False)
    for row, (role, name) in enumerate(zip(("ID", "OOD"), PAIRS[dataset], strict=True)):
        images, labels = load_split(name, False, root, mirror)
        picks = torch.randperm(images.shape[0], generator=g)[:per_set]
        for ax, i in zip(axes[row], picks.tolist(), strict=True):
            ax.imshow(images[i].numpy(), cmap="gray")
            ax.set_title(CLASSES[name][int(labels[i])], fontsize=9)
            ax.axis("off")
        label = f"{role}: {name.replace('MNIST', ' MNIST').strip()}"
        axes[row][0].text(-6, 14, label, rotation=90, va="center", ha="right", fontsize=10)
    fig.tight_layout()
    return fig
