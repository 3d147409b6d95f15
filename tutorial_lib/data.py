"""MNIST (in-distribution) and FashionMNIST (out-of-distribution) for the course.

Three layers, each usable alone:

1. **Files.** :func:`prepare` puts the four original ``.gz`` files of a data set under
   ``<root>/<name>/raw/`` (the layout of torchvision's dataset classes), taking them from an
   offline mirror when one is given (``TUTORIAL_DATA_MIRROR``) and from the official mirrors
   otherwise. Every file is checked against the md5 that torchvision checks. Files are written to
   a temporary name and renamed only once verified, so an interrupted run never leaves a file a
   later run would trust. A mirror is only read, never written to.
2. **Tensors.** :func:`load_split` decodes the IDX files once into uint8 tensors and caches them
   next to the raw files (``*.uint8.pt``).
3. **Batches.** :class:`TensorBatchLoader` serves shuffled, normalised, augmented batches straight
   from those tensors on any device (no PIL, no worker processes), and :class:`MNISTDataModule`
   wraps everything for Lightning.

:func:`torchvision_dataset` gives the same files through torchvision's classes, for the reference
pipeline and for cross-checks.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.error
import warnings
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch
import torchvision
from torch import Tensor

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
CROP_PADDING = 4

DATASETS: dict[str, type[torchvision.datasets.MNIST]] = {
    "MNIST": torchvision.datasets.MNIST,
    "FashionMNIST": torchvision.datasets.FashionMNIST,
}
MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = [
    "T-shirt", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip

_IDX_MAGIC = {0x00000801: 1, 0x00000803: 3}  # labels (N,), images (N, H, W); both uint8


class DataError(RuntimeError):
    """Base class of the data layer's errors; the message says what to do."""


class DataNotFoundError(DataError):
    """A raw file is neither in the data root, nor in a mirror, nor downloadable."""


class ChecksumError(DataError):
    """A raw file's md5 differs from the one torchvision publishes."""


class CorruptDataError(DataError):
    """A raw file cannot be decoded (truncated, not gzip, bad IDX header)."""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The download root: ``root`` if given, else ``$TUTORIAL_DATA_DIR``, else ``./data``."""
    return Path(root or os.environ.get("TUTORIAL_DATA_DIR") or "data")


def data_mirror(mirror: str | os.PathLike | None = None) -> Path | None:
    """The offline mirror: ``mirror`` if given, else ``$TUTORIAL_DATA_MIRROR``, else ``None``."""
    value = mirror or os.environ.get("TUTORIAL_DATA_MIRROR")
    return Path(value) if value else None


def md5sum(path: str | os.PathLike) -> str:
    """Hex md5 of a file (the checksum torchvision publishes)."""
    return file_digest(path, "md5")


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest of a file with a hashlib algorithm, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _split_files(name: str, train: bool) -> tuple[str, str]:
    """Names of the (images, labels) ``.gz`` files of one split."""
    prefix = "train" if train else "t10k"
    return f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"


def _resources(name: str) -> list[tuple[str, str]]:
    """``(file name, md5)`` of the four raw files, as torchvision publishes them."""
    if name not in DATASETS:
        raise ValueError(f"Unknown data set {name!r}: choose one of {sorted(DATASETS)}.")
    return list(DATASETS[name].resources)


def _atomic_copy(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` through a temporary file in ``dst``'s folder, then rename."""
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _download(name: str, filename: str, md5: str, dst: Path) -> list[str]:
    """Try every official mirror of ``name`` for ``filename``; return the errors met.

    The file lands in a temporary folder and is moved to ``dst`` only when its md5 matches.
    """
    errors = []
    for base in DATASETS[name].mirrors:
        with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".download-") as tmp:
            try:
                torchvision.datasets.utils.download_url(base + filename, tmp, filename)
            except (urllib.error.URLError, OSError, RuntimeError) as err:
                errors.append(f"{base}{filename}: {err}")
                continue
            got = md5sum(Path(tmp) / filename)
            if got != md5:
                errors.append(f"{base}{filename}: md5 {got}, expected {md5}")
                continue
            os.replace(Path(tmp) / filename, dst)
            return []
    return errors


def prepare(
    name: str,
    root: str | os.PathLike | None = None,
    mirror: str | os.PathLike | None = None,
    download: bool = True,
) -> Path:
    """Make sure the four raw ``.gz`` files of ``name`` are in ``<root>/<name>/raw/``, md5-checked.

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
    """
    resources = _resources(name)
    raw = data_root(root) / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    mirror_dir = data_mirror(mirror)
    for filename, md5 in resources:
        dst = raw / filename
        if dst.exists():
            got = md5sum(dst)
            if got == md5:
                continue
            aside = dst.with_name(dst.name + ".corrupt")
            os.replace(dst, aside)
            warnings.warn(
                f"{dst} has md5 {got}, expected {md5}: moved it aside to {aside.name} "
                "and fetching a fresh copy.",
                stacklevel=2,
            )
        if mirror_dir is not None and (mirror_dir / name / "raw" / filename).exists():
            src = mirror_dir / name / "raw" / filename
            got = md5sum(src)
            if got != md5:
                raise ChecksumError(
                    f"The mirror's {src} has md5 {got}, expected {md5}: the file is damaged or "
                    "not the original. Replace it with the original file, or unset "
                    "TUTORIAL_DATA_MIRROR to download it."
                )
            _atomic_copy(src, dst)
            continue
        errors = _download(name, filename, md5, dst) if download else ["downloads disabled"]
        if errors:
            looked = f" nor in the mirror {mirror_dir / name / 'raw'}" if mirror_dir else ""
            raise DataNotFoundError(
                f"{name} file {filename} is not in {raw}{looked}, and downloading it failed:\n  "
                + "\n  ".join(errors)
                + "\nWithout network, point TUTORIAL_DATA_MIRROR (or mirror=...) at a folder "
                f"holding {name}/raw/{filename}, or copy the original file into {raw} "
                "(or set TUTORIAL_DATA_DIR to a folder that has it)."
            )
    return raw


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
    data = torch.frombuffer(bytearray(payload[header:]), dtype=torch.uint8)
    return data.reshape(shape)


def load_split(
    name: str,
    train: bool,
    root: str | os.PathLike | None = None,
    mirror: str | os.PathLike | None = None,
) -> tuple[Tensor, Tensor]:
    """Images and labels of one split, decoded once and cached next to the raw files.

    Returns:
        ``images`` (N, 28, 28) uint8 and ``labels`` (N,) int64, on the CPU.
    """
    raw = prepare(name, root, mirror)
    images_gz, labels_gz = _split_files(name, train)
    md5 = dict(_resources(name))
    cache = raw / f"{'train' if train else 'test'}.uint8.pt"
    key = md5[images_gz] + md5[labels_gz]
    if cache.exists():
        try:
            cached = torch.load(cache, weights_only=True)
            if cached.get("source_md5") == key:
                return cached["images"], cached["labels"]
        except Exception as err:  # an unreadable cache is rebuilt, never trusted
            warnings.warn(f"Rebuilding the unreadable cache {cache} ({err}).", stacklevel=2)
    images, labels = read_idx(raw / images_gz), read_idx(raw / labels_gz).long()
    if images.shape[0] != labels.shape[0]:
        raise CorruptDataError(
            f"{raw}: {images.shape[0]} images but {labels.shape[0]} labels. Delete both files."
        )
    fd, tmp = tempfile.mkstemp(dir=raw, prefix=f".{cache.name}.", suffix=".part")
    os.close(fd)
    try:
        torch.save({"images": images, "labels": labels, "source_md5": key}, tmp)
        os.replace(tmp, cache)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return images, labels


def torchvision_dataset(
    name: str,
    train: bool,
    root: str | os.PathLike | None = None,
    mirror: str | os.PathLike | None = None,
    transform=None,
) -> torchvision.datasets.MNIST:
    """The same split through torchvision's class (PIL images; used by the reference pipeline).

    The raw files are prepared first, so torchvision only checks their md5 and extracts them: it
    never touches the network.
    """
    prepare(name, root, mirror)
    return DATASETS[name](str(data_root(root)), train=train, download=True, transform=transform)


def normalize(images: Tensor) -> Tensor:
    """uint8 images (B, 28, 28) -> float32 (B, 1, 28, 28): ``(x / 255 - mean) / std``."""
    out = images.unsqueeze(1).to(torch.float32)  # a new tensor: the in-place ops below are safe
    return out.mul_(1 / (255.0 * MNIST_STD)).sub_(MNIST_MEAN / MNIST_STD)


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
    width = w + 2 * padding
    rows = offsets[:, 0, None] + torch.arange(h, device=images.device)  # (B, H)
    cols = offsets[:, 1, None] + torch.arange(w, device=images.device)  # (B, W)
    flat = (rows[:, :, None] * width + cols[:, None, :]).reshape(b, h * w)
    return padded.reshape(b, -1).gather(1, flat).reshape(b, h, w)


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
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels.")
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.drop_last, self.seed = drop_last, seed
        self.rank, self.world_size = rank, world_size
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
            images = self.images[batch]
            if self.augment:
                offsets = torch.randint(
                    0, 2 * CROP_PADDING + 1, (batch.shape[0], 2), generator=g, device=device
                )
                images = random_crop(images, offsets)
            yield normalize(images), self.labels[batch]


class MNISTDataModule(L.LightningDataModule):
    """MNIST train/test and FashionMNIST test (the OOD set) on the fast tensor path.

    ``train_dataloader`` serves augmented MNIST train batches; ``val_dataloader`` MNIST test;
    ``test_dataloader`` the list ``[MNIST test, FashionMNIST test]``. Batches are
    ``(images (B, 1, 28, 28) float32, labels (B,) int64)`` on ``device``.

    The OOD set is FashionMNIST's **test** split (10,000 images the models never saw in any form).
    The reference tutorial used the first 10,000 images of FashionMNIST's *train* split instead.

    Args:
        root: download root (``$TUTORIAL_DATA_DIR`` or ``./data`` when ``None``).
        mirror: offline mirror (``$TUTORIAL_DATA_MIRROR`` when ``None``).
        batch_size: training batch size.
        eval_batch_size: batch size of validation and test.
        device: where batches live; ``None`` takes the attached trainer's device, else the CPU.
        augment: apply ``RandomCrop(28, padding=4)`` to training batches.
        train_subset: keep only the first ``train_subset`` training images (quick profiles).
        eval_subset: keep only the first ``eval_subset`` images of each test set.
        holdout: withhold the last ``holdout`` training images from training and serve them
            through :meth:`holdout_dataloader` (held-out data to tune decisions on, never the
            test set).
        seed: seed of shuffling and augmentation.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        mirror: str | os.PathLike | None = None,
        batch_size: int = 512,
        eval_batch_size: int = 2048,
        device: str | torch.device | None = None,
        augment: bool = True,
        train_subset: int | None = None,
        eval_subset: int | None = None,
        holdout: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if holdout < 0:
            raise ValueError(f"holdout must be >= 0, got {holdout}.")
        for arg, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value < 1:
                raise ValueError(f"{arg} must be >= 1, got {value}.")
        self.root, self.mirror = data_root(root), data_mirror(mirror)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.device = torch.device(device) if device is not None else None
        self.augment, self.seed = augment, seed
        self.train_subset, self.eval_subset, self.holdout = train_subset, eval_subset, holdout
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}

    def prepare_data(self) -> None:
        """Fetch (copy or download) and verify the raw files; decode them into the cache."""
        for name, train in (("MNIST", True), ("MNIST", False), ("FashionMNIST", False)):
            load_split(name, train, self.root, self.mirror)

    def _device(self) -> torch.device:
        if self.device is not None:
            return self.device
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def setup(self, stage: str | None = None) -> None:
        """Load the three splits onto the device (once)."""
        if self.splits:
            return
        device = self._device()
        for key, name, train, subset in (
            ("train", "MNIST", True, self.train_subset),
            ("test", "MNIST", False, self.eval_subset),
            ("ood", "FashionMNIST", False, self.eval_subset),
        ):
            images, labels = load_split(name, train, self.root, self.mirror)
            if key == "train" and self.holdout:
                if self.holdout >= images.shape[0]:
                    raise ValueError(f"holdout={self.holdout} leaves no training image.")
                cut = images.shape[0] - self.holdout
                self.splits["holdout"] = (images[cut:].to(device), labels[cut:].to(device))
                images, labels = images[:cut], labels[:cut]
            self.splits[key] = (images[:subset].to(device), labels[:subset].to(device))

    def _shard(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _eval_loader(self, key: str) -> TensorBatchLoader:
        rank, world = self._shard()
        return TensorBatchLoader(
            *self.splits[key], self.eval_batch_size, shuffle=False, rank=rank, world_size=world
        )

    def train_dataloader(self) -> TensorBatchLoader:
        # Lightning asks once per fit; the loader draws a fresh permutation each epoch, and a new
        # fit starts again from epoch 0 (so two fits with the same seed see the same batches)
        rank, world = self._shard()
        return TensorBatchLoader(
            *self.splits["train"], self.batch_size, shuffle=True, augment=self.augment,
            seed=self.seed, rank=rank, world_size=world,
        )  # fmt: skip

    def val_dataloader(self) -> TensorBatchLoader:
        return self._eval_loader("test")

    def test_dataloader(self) -> list[TensorBatchLoader]:
        return [self._eval_loader("test"), self._eval_loader("ood")]

    def holdout_dataloader(self) -> TensorBatchLoader:
        """The withheld training images (see ``holdout``), unaugmented, in order."""
        if "holdout" not in self.splits:
            raise ValueError("No held-out images: build the data module with holdout=N.")
        return self._eval_loader("holdout")


def plot_samples(
    root: str | os.PathLike | None = None,
    mirror: str | os.PathLike | None = None,
    per_set: int = 8,
    seed: int = 0,
):
    """A labelled grid: ``per_set`` MNIST test images (ID) above as many FashionMNIST test (OOD).

    Returns:
        A matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    g = torch.Generator().manual_seed(seed)
    fig, axes = plt.subplots(2, per_set, figsize=(1.3 * per_set, 3.2), squeeze=False)
    for row, (name, classes, title) in enumerate(
        (("MNIST", MNIST_CLASSES, "ID: MNIST"), ("FashionMNIST", FASHION_CLASSES, "OOD: Fashion"))
    ):
        images, labels = load_split(name, False, root, mirror)
        picks = torch.randperm(images.shape[0], generator=g)[:per_set]
        for ax, i in zip(axes[row], picks.tolist(), strict=True):
            ax.imshow(images[i].numpy(), cmap="gray")
            ax.set_title(classes[int(labels[i])], fontsize=9)
            ax.axis("off")
        axes[row][0].text(-6, 14, title, rotation=90, va="center", ha="right", fontsize=10)
    fig.tight_layout()
    return fig
