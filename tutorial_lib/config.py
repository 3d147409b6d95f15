"""One configuration for every experiment of the course: the only place where defaults live.

Precedence, lowest first: the defaults of :class:`ExperimentConfig` < the profile's preset
(:data:`PROFILES`) < explicit values (keyword arguments, or command-line flags). The profile is the
one named explicitly, else ``$TUTORIAL_PROFILE``, else ``"full"``. :meth:`ExperimentConfig.create`
applies that order and validates every value once, before anything trains. The ``tutorial-lib``
command builds its flags from the fields below (their ``metadata`` holds the help), so a flag and
its default cannot drift apart.

Models are named by short specs: ``lenet``, ``mc-dropout``, ``deep-ensemble-M``,
``batch-ensemble-M``, ``packed-A-M`` (alpha A, M members), or ``deep-ensemble``,
``batch-ensemble``, ``packed`` with M (and alpha, gamma) from ``num_estimators`` (``alpha``,
``gamma``). :func:`parse_model` turns one into a :class:`ModelSpec`.

This module imports nothing heavy (no torch), so ``tutorial-lib --help`` starts fast.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

TRAIN_IMAGES = 60_000  # MNIST and FashionMNIST both have 60,000 training images
DATASETS = ("mnist", "fashion")
RECIPES = ("default", "reference")
CALIBRATIONS = ("none", "temperature")
PRETRAINED_SOURCES = ("local", "hub", "auto")
ACCELERATORS = ("auto", "cpu", "gpu", "mps")
# the scores of tutorial_lib.metrics.ood_scores, any of which can rank the OOD set
OOD_SCORES = ("msp", "max_logit", "energy", "entropy", "mutual_information")

# A profile is a named preset, applied over the defaults and under explicit values.
PROFILES: dict[str, dict[str, Any]] = {
    "full": {},
    "quick": {
        "train_subset": 4096, "eval_subset": 2000, "val_size": 1000, "epochs": 1,
        "batch_size": 128,  # enough optimiser steps to learn something in one epoch
    },
}  # fmt: skip
PROFILE_ENV = "TUTORIAL_PROFILE"


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the flag and the allowed values."""


def _opt(help_text: str, **extra: Any) -> dict[str, Any]:
    return {"help": help_text, **extra}


@dataclass(frozen=True)
class ExperimentConfig:
    """Every setting of an experiment (``tutorial-lib compare``, notebooks, benchmarks).

    Build it with :meth:`create` (profile and precedence applied); the constructor validates too,
    but applies no profile.
    """

    models: tuple[str, ...] = field(
        default=("lenet", "deep-ensemble-2", "packed"),
        metadata=_opt(
            "models to train and compare: lenet, mc-dropout, deep-ensemble-M, batch-ensemble-M, "
            "packed-A-M, or deep-ensemble, batch-ensemble, packed with M from --num-estimators "
            "(and alpha from --alpha)",
            nargs="+",
        ),
    )
    dataset: str = field(
        default="mnist",
        metadata=_opt(
            "in-distribution data: mnist (OOD: FashionMNIST test) or fashion (OOD: MNIST test)",
            choices=DATASETS,
        ),
    )
    classes: tuple[int, ...] | None = field(
        default=None,
        metadata=_opt(
            "train and test on these classes of the in-distribution data only (e.g. 0 1 2 3 4); "
            "the test images of the other classes are then a near-OOD set (default: all 10)",
            nargs="+",
            type=int,
        ),
    )
    ood_score: str = field(
        default="msp",
        metadata=_opt(
            "the score that tells OOD inputs apart in the ood/ metrics (higher = more "
            "in-distribution): msp (maximum softmax probability), max_logit, energy, entropy or "
            "mutual_information (see tutorial_lib.metrics.ood_scores)",
            choices=OOD_SCORES,
        ),
    )
    alpha: float = field(default=2.0, metadata=_opt("Packed-Ensemble width factor alpha"))
    num_estimators: int = field(
        default=4, metadata=_opt("members M of packed, deep-ensemble and batch-ensemble")
    )
    gamma: int = field(default=1, metadata=_opt("Packed-Ensemble groups per member gamma"))
    width: int = field(
        default=1,
        metadata=_opt(
            "backbone width: multiplies every hidden width of LeNet and of every model built on "
            "it (1: LeCun's LeNet)"
        ),
    )
    mc_samples: int = field(
        default=8, metadata=_opt("stochastic forward passes of mc-dropout at test time (T)")
    )
    epochs: int = field(default=3, metadata=_opt("training epochs"))
    batch_size: int = field(default=512, metadata=_opt("training batch size"))
    recipe: str = field(
        default="default",
        metadata=_opt(
            "optimisation recipe: default (AdamW, one-cycle) or reference (the reference "
            "tutorial's SGD, its scheduler applied)",
            choices=RECIPES,
        ),
    )
    lr: float | None = field(
        default=None,
        metadata=_opt("peak learning rate (default: the recipe's own, see tutorial_lib.recipes)"),
    )
    seed: int = field(default=0, metadata=_opt("first random seed"))
    seeds: int = field(
        default=1, metadata=_opt("number of seeds: every model trains with seeds seed..seed+N-1")
    )
    baseline: str | None = field(
        default=None,
        metadata=_opt(
            "the model every other is judged against in the verdicts: one of --models (default: "
            "the first)"
        ),
    )
    val_size: int = field(
        default=5000,
        metadata=_opt(
            "training images held out for validation (chosen by a fixed seed, never trained on): "
            "per-epoch validation, temperatures and thresholds use them, never the test sets"
        ),
    )
    train_subset: int | None = field(
        default=None,
        metadata=_opt("train on the first N of the remaining training images (default: all)"),
    )
    eval_subset: int | None = field(
        default=None, metadata=_opt("test on the first N images of each test set (default: all)")
    )
    calibrate: str = field(
        default="none",
        metadata=_opt(
            "post-hoc calibration fitted on the validation split: none or temperature",
            choices=CALIBRATIONS,
        ),
    )
    grouping_loss: bool = field(
        default=False, metadata=_opt("also estimate each model's grouping loss")
    )
    shift: bool = field(
        default=False,
        metadata=_opt("also evaluate each model on 7 corruptions x 5 severities of the test set"),
    )
    pretrained: str | None = field(
        default=None,
        metadata=_opt(
            "also evaluate the pretrained 8-member deep ensemble (local: shipped in "
            "data/pretrained; hub: the reference's, downloaded; auto: local, else hub) "
            "(default: not evaluated)",
            choices=PRETRAINED_SOURCES,
        ),
    )
    accelerator: str = field(
        default="auto",
        metadata=_opt(
            "device; gpu on a machine without one falls back to the CPU", choices=ACCELERATORS
        ),
    )
    workers: int = field(
        default=0,
        metadata=_opt(
            "processes training runs side by side on the CPU, one thread each, on Linux (0: "
            "automatic, side by side when there are at least 2 runs and 2 CPUs; 1: one run at a "
            "time with every thread; elsewhere always one at a time; see tutorial_lib.workers)"
        ),
    )
    data_dir: str | None = field(
        default=None,
        metadata=_opt(
            "data root (default: $TUTORIAL_DATA_DIR, else the course's data/ folder, else ./data)"
        ),
    )
    mirror: str | None = field(
        default=None,
        metadata=_opt(
            "offline mirror holding MNIST/raw/*.gz and FashionMNIST/raw/*.gz (default: "
            "$TUTORIAL_DATA_MIRROR; without one, files are downloaded)"
        ),
    )
    out: str = field(default="outputs/compare", metadata=_opt("output folder"))
    cache: str | None = field(
        default=None,
        metadata=_opt(
            "run cache folder: a run trained before with the same settings, seed and code is "
            "loaded, not retrained, and a stopped experiment resumes (auto: the course's "
            "outputs/cache; clear it by deleting the folder; see tutorial_lib.runcache) "
            "(default: no cache)"
        ),
    )
    profile: str | None = field(
        default=None,
        metadata=_opt(
            "preset applied under explicit flags: full (all data) or quick (4,096 training, "
            "1,000 validation and 2,000 test images, 1 epoch at batch 128) "
            f"(default: ${PROFILE_ENV}, else full)",
            choices=tuple(PROFILES),
        ),
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(self.models))
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(self.classes))
        _validate(self)

    @classmethod
    def create(cls, profile: str | None = None, **explicit: Any) -> ExperimentConfig:
        """Defaults, then the profile's preset, then ``explicit`` values; validated.

        Args:
            profile: ``"full"`` or ``"quick"``; ``None`` reads ``$TUTORIAL_PROFILE`` (else full).
            explicit: any field; ``None`` values count as not given.

        Raises:
            ConfigError: an unknown field or profile, or an invalid value.
        """
        source = "--profile" if profile else f"${PROFILE_ENV}"
        profile = profile or os.environ.get(PROFILE_ENV) or "full"
        if profile not in PROFILES:
            raise ConfigError(f"{source}: unknown profile {profile!r}; choose one of "
                              f"{', '.join(PROFILES)}.")  # fmt: skip
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(explicit) - names)
        if unknown:
            raise ConfigError(f"Unknown setting(s) {unknown}: choose among {sorted(names)}.")
        given = {k: v for k, v in explicit.items() if v is not None}
        return cls(**(PROFILES[profile] | given | {"profile": profile}))

    def with_values(self, **changes: Any) -> ExperimentConfig:
        """A copy with some values changed (validated again)."""
        return replace(self, **changes)

    @property
    def seed_list(self) -> list[int]:
        """The seeds every model trains with: ``seed, seed+1, ..., seed+seeds-1``."""
        return list(range(self.seed, self.seed + self.seeds))

    @property
    def specs(self) -> list[ModelSpec]:
        """The parsed model specs, in the order given."""
        return [parse_model(text, self) for text in self.models]

    def as_command(self) -> str:
        """The ``tutorial-lib compare`` command that gives this configuration (the flags that
        differ from the defaults; a profile's preset values are implied by ``--profile``)."""
        preset = PROFILES.get(self.profile or "full", {})
        words = ["tutorial-lib", "compare"]
        if self.profile and self.profile != "full":
            words += ["--profile", self.profile]
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.name == "profile" or value == preset.get(spec.name, spec.default):
                continue
            flag = _flag(spec.name)
            if isinstance(value, bool):
                words.append(flag)
            elif isinstance(value, tuple):
                words += [flag, *map(str, value)]
            else:
                words += [flag, str(value)]
        return shlex.join(words)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready values (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class ModelKind:
    """The one entry of a kind of model: everything the course says and does with it.

    Attributes:
        kind: the spec's name (``"packed"``).
        title: display name, formatted with ``m``, ``alpha``, ``gamma_part``
            (``"Deep Ensemble (M={m})"``).
        builder: ``(spec, in_channels, num_classes) -> network``; it imports the models only
            when it runs (this module stays torch-free).
        description: one line for ``--help`` and the docs.
        trains_as_one: trains as one network (one output row per input), whatever its members.
    """

    kind: str
    title: str
    builder: Callable[[ModelSpec, int, int], Any]
    description: str
    trains_as_one: bool = False


def _models() -> Any:
    import tutorial_lib.models

    return tutorial_lib.models


def _deep_ensemble(spec: ModelSpec, in_channels: int, num_classes: int) -> Any:
    """M LeNets, fused into one network computing the same outputs (fast training)."""
    from tutorial_lib.ensembles import deep_ensembles, fuse

    lenet = _models().LeNet(in_channels, num_classes, spec.width)
    return fuse(deep_ensembles(lenet, spec.members))


MODEL_KINDS: dict[str, ModelKind] = {
    entry.kind: entry
    for entry in (
        ModelKind("lenet", "LeNet", lambda s, c, n: _models().LeNet(c, n, s.width),
                  "LeCun's LeNet-5, one network", trains_as_one=True),
        ModelKind("mc-dropout", "MC-Dropout (T={m})",
                  lambda s, c, n: _models().MCDropoutLeNet(c, n, num_samples=s.members,
                                                           width=s.width),
                  "LeNet with dropout kept on at test time, T stochastic passes",
                  trains_as_one=True),
        ModelKind("deep-ensemble", "Deep Ensemble (M={m})", _deep_ensemble,
                  "M LeNets from independent initialisations, trained fused"),
        ModelKind("batch-ensemble", "BatchEnsemble (M={m})",
                  lambda s, c, n: _models().BatchEnsembleLeNet(c, n, num_estimators=s.members,
                                                               width=s.width),
                  "M members sharing LeNet's weights, rank-1 fast weights each"),
        ModelKind("packed", "Packed-Ensemble (alpha={alpha:g}, M={m}{gamma_part})",
                  lambda s, c, n: _models().PackedLeNet(c, n, s.alpha, s.members, s.gamma,
                                                        s.width),
                  "M members packed in one network alpha times LeNet's width, gamma groups"),
    )
}  # fmt: skip


@dataclass(frozen=True)
class ModelSpec:
    """One model of an experiment.

    Attributes:
        spec: the text it was parsed from (``"deep-ensemble-2"``).
        kind: a key of :data:`MODEL_KINDS`.
        members: estimators at test time (M, or T stochastic passes for mc-dropout; 1 for lenet).
        alpha, gamma: packed width factor and groups (packed only).
        width: the LeNet backbone's width multiplier (1: LeCun's).
    """

    spec: str
    kind: str
    members: int = 1
    alpha: float = 1.0
    gamma: int = 1
    width: int = 1

    @property
    def entry(self) -> ModelKind:
        """The kind's entry in :data:`MODEL_KINDS`."""
        return MODEL_KINDS[self.kind]

    @property
    def train_members(self) -> int:
        """Output rows per input during training (MC-Dropout trains as one network)."""
        return 1 if self.entry.trains_as_one else self.members

    @property
    def name(self) -> str:
        """Display name: ``"Deep Ensemble (M=2)"``."""
        gamma_part = f", gamma={self.gamma}" if self.gamma != 1 else ""
        title = self.entry.title.format(m=self.members, alpha=self.alpha, gamma_part=gamma_part)
        if self.width == 1:
            return title
        return f"{title[:-1]}, width={self.width})" if title.endswith(")") else (
            f"{title} (width={self.width})")  # fmt: skip

    @property
    def slug(self) -> str:
        """Folder name of the model's runs: ``"deep-ensemble-2"``, ``"packed-2-4"``."""
        wide = f"-w{self.width}" if self.width != 1 else ""
        if self.kind == "packed":
            tail = f"-g{self.gamma}" if self.gamma != 1 else ""
            return f"packed-{self.alpha:g}-{self.members}{tail}{wide}"
        if self.kind in ("deep-ensemble", "batch-ensemble"):
            return f"{self.kind}-{self.members}{wide}"
        return self.kind + wide

    def build(self, in_channels: int = 1, num_classes: int = 10) -> Any:
        """The network, freshly initialised from the current random state."""
        return self.entry.builder(self, in_channels, num_classes)

    @property
    def hparams(self) -> dict[str, Any]:
        """What TensorBoard's HParams tab shows of the model: its name, kind, M, alpha, gamma,
        width."""
        return {"name": self.name, "model": self.slug, "kind": self.kind, "M": self.members,
                "alpha": self.alpha, "gamma": self.gamma, "width": self.width}  # fmt: skip


_ENSEMBLE = re.compile(r"^(deep-ensemble|batch-ensemble)-(\d+)$")
_PACKED = re.compile(r"^packed-(\d+(?:\.\d+)?)-(\d+)$")
MODEL_HELP = "lenet, mc-dropout, deep-ensemble[-M], batch-ensemble[-M], packed, packed-A-M"


def parse_model(text: str, config: ExperimentConfig | None = None) -> ModelSpec:
    """A :class:`ModelSpec` from its text; ``packed``, ``mc-dropout`` read ``config``'s values,
    every model its ``width``.

    Raises:
        ConfigError: an unknown spec, or fewer than 2 members for an ensemble.
    """
    config = config if config is not None else _DEFAULTS
    return replace(_parse(text, config), width=config.width)


def _parse(text: str, config: ExperimentConfig) -> ModelSpec:
    if text == "lenet":
        return ModelSpec(text, "lenet")
    if text == "mc-dropout":
        return ModelSpec(text, "mc-dropout", config.mc_samples)
    if text == "packed":
        return ModelSpec(text, "packed", config.num_estimators, config.alpha, config.gamma)
    if text in ("deep-ensemble", "batch-ensemble"):
        return parse_model(f"{text}-{config.num_estimators}", config)
    if match := _ENSEMBLE.match(text):
        kind, members = match.group(1), int(match.group(2))
        if members < 2:
            raise ConfigError(f"--models {text}: an ensemble needs at least 2 members.")
        return ModelSpec(text, kind, members)
    if match := _PACKED.match(text):
        alpha, members = float(match.group(1)), int(match.group(2))
        if alpha <= 0 or members < 1:
            raise ConfigError(f"--models {text}: alpha must be > 0 and M >= 1.")
        return ModelSpec(text, "packed", members, alpha, config.gamma)
    raise ConfigError(f"--models: unknown model {text!r}; use {MODEL_HELP}.")


def valid_classes(classes: tuple[int, ...]) -> bool:
    """2 to 9 distinct labels in 0..9: a subset of the 10 classes that leaves some out."""
    return 1 < len(set(classes)) == len(classes) < 10 and all(
        isinstance(c, int) and 0 <= c <= 9 for c in classes
    )


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _validate(config: ExperimentConfig) -> None:
    """Every check of the values, in one place; raises :class:`ConfigError`."""
    for name, choices in (
        ("dataset", DATASETS), ("recipe", RECIPES), ("calibrate", CALIBRATIONS),
        ("accelerator", ACCELERATORS), ("ood_score", OOD_SCORES),
    ):  # fmt: skip
        if getattr(config, name) not in choices:
            raise ConfigError(f"{_flag(name)}: {getattr(config, name)!r} is not one of "
                              f"{', '.join(choices)}.")  # fmt: skip
    if config.pretrained not in (None, *PRETRAINED_SOURCES):
        raise ConfigError(f"--pretrained: {config.pretrained!r} is not one of "
                          f"{', '.join(PRETRAINED_SOURCES)}.")  # fmt: skip
    if config.profile not in (None, *PROFILES):
        raise ConfigError(f"--profile: {config.profile!r} is not one of {', '.join(PROFILES)}.")
    minimum = {"num_estimators": 1, "gamma": 1, "mc_samples": 2, "epochs": 1, "batch_size": 1,
               "seeds": 1, "seed": 0, "val_size": 0, "workers": 0, "width": 1}  # fmt: skip
    for name, low in minimum.items():
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(f"{_flag(name)} must be an integer >= {low}, got {value!r}.")
    for name in ("train_subset", "eval_subset"):
        value = getattr(config, name)
        if value is not None and (not isinstance(value, int) or value < 2):
            raise ConfigError(f"{_flag(name)} must be an integer >= 2, got {value!r}.")
    if config.baseline is not None and config.baseline not in config.models:
        raise ConfigError(f"--baseline: {config.baseline!r} is not one of --models "
                          f"({' '.join(config.models)}).")  # fmt: skip
    if not config.alpha > 0:
        raise ConfigError(f"--alpha must be > 0, got {config.alpha}.")
    if config.lr is not None and not config.lr > 0:
        raise ConfigError(f"--lr must be > 0, got {config.lr}.")
    if config.val_size >= TRAIN_IMAGES:
        raise ConfigError(f"--val-size must be smaller than the {TRAIN_IMAGES:,} training "
                          f"images, got {config.val_size}.")  # fmt: skip
    left = TRAIN_IMAGES - config.val_size
    if config.train_subset is not None and config.train_subset > left:
        raise ConfigError(f"--train-subset {config.train_subset} exceeds the {left:,} training "
                          f"images left after --val-size {config.val_size}.")  # fmt: skip
    if config.calibrate != "none" and config.val_size == 0:
        raise ConfigError("--calibrate needs validation images: set --val-size > 0.")
    if config.classes is not None and not valid_classes(config.classes):
        raise ConfigError(f"--classes: give 2 to 9 distinct labels in 0..9, got "
                          f"{' '.join(map(str, config.classes))}.")  # fmt: skip
    if config.pretrained and config.classes is not None:
        raise ConfigError("--pretrained: the pretrained ensemble knows all 10 classes; drop "
                          "--classes.")  # fmt: skip
    if config.pretrained and config.dataset != "mnist":
        raise ConfigError("--pretrained: the pretrained ensemble is trained on MNIST; "
                          "use --dataset mnist.")  # fmt: skip
    if not config.models:
        raise ConfigError(f"--models: give at least one model ({MODEL_HELP}).")
    if len(set(config.models)) != len(config.models):
        raise ConfigError(f"--models: {list(config.models)} names a model twice.")
    specs = [parse_model(text, config) for text in config.models]
    slugs = [s.slug for s in specs]
    if len(set(slugs)) != len(slugs):
        raise ConfigError(f"--models: {list(config.models)} names the same model twice.")


_DEFAULTS = ExperimentConfig()

# ``tutorial-lib pretrain``: a preset of the same configuration (the shipped ensemble's recipe).
PRETRAIN_PRESET: dict[str, Any] = {"epochs": 75, "out": "data/pretrained", "lr": 0.01}
