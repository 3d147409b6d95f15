"""One configuration: defaults < profile preset < explicit values; validation; model specs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tutorial_lib.config import (
    PROFILES,
    ConfigError,
    ExperimentConfig,
    ModelSpec,
    parse_model,
)


def test_explicit_values_win_over_the_profile_preset():
    config = ExperimentConfig.create("quick", epochs=5, batch_size=256)
    assert config.epochs == 5 and config.batch_size == 256  # the silent bug of the old CLI
    assert config.train_subset == PROFILES["quick"]["train_subset"]  # the preset elsewhere
    assert config.profile == "quick"
    full = ExperimentConfig.create("full")
    assert (full.epochs, full.batch_size, full.train_subset) == (3, 512, None)
    assert ExperimentConfig.create("full", epochs=None).epochs == 3  # None means "not given"


def test_profile_comes_from_the_environment_unless_given(monkeypatch):
    monkeypatch.setenv("TUTORIAL_PROFILE", "quick")
    assert ExperimentConfig.create().profile == "quick"
    assert ExperimentConfig.create().epochs == PROFILES["quick"]["epochs"]
    assert ExperimentConfig.create("full").profile == "full"
    monkeypatch.setenv("TUTORIAL_PROFILE", "fast")
    with pytest.raises(ConfigError, match=r"\$TUTORIAL_PROFILE: unknown profile 'fast'"):
        ExperimentConfig.create()
    monkeypatch.delenv("TUTORIAL_PROFILE")
    assert ExperimentConfig.create().profile == "full"


def test_defaults_live_in_the_dataclass_only():
    config = ExperimentConfig()
    assert config.models == ("lenet", "deep-ensemble-2", "packed")
    settings = (config.val_size, config.seeds, config.calibrate, config.dataset)
    assert settings == (5000, 1, "none", "mnist")
    for f in dataclasses.fields(ExperimentConfig):
        assert f.metadata.get("help"), f"{f.name} has no help text for the CLI"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"seeds": 0}, "--seeds must be an integer >= 1"),
        ({"epochs": 0}, "--epochs must be an integer >= 1"),
        ({"val_size": 60_000}, "--val-size must be smaller than the 60,000"),
        ({"val_size": -1}, "--val-size must be an integer >= 0"),
        ({"workers": -1}, "--workers must be an integer >= 0"),
        ({"workers": 1.5}, "--workers must be an integer >= 0"),
        ({"dataset": "cifar"}, "--dataset: 'cifar' is not one of mnist, fashion"),
        ({"calibrate": "platt"}, "--calibrate: 'platt' is not one of none, temperature"),
        ({"alpha": 0}, "--alpha must be > 0"),
        ({"lr": -1.0}, "--lr must be > 0"),
        ({"models": ("lenet", "resnet")}, "unknown model 'resnet'"),
        ({"models": ("deep-ensemble-1",)}, "at least 2 members"),
        ({"models": ("lenet", "lenet")}, "names a model twice"),
        ({"models": ("packed", "packed-2-4")}, "names the same model twice"),
        ({"models": ()}, "at least one model"),
        ({"calibrate": "temperature", "val_size": 0}, "--calibrate needs validation images"),
        ({"train_subset": 58_000}, "--train-subset 58000 exceeds the 55,000"),
        ({"pretrained": "local", "dataset": "fashion"}, "trained on MNIST"),
        ({"profile": "fast"}, "--profile: unknown profile"),
        ({"classes": (3,)}, "--classes: give 2 to 9 distinct labels in 0..9, got 3"),
        ({"classes": (1, 1, 2)}, "--classes: give 2 to 9 distinct"),
        ({"classes": (0, 10)}, "--classes: give 2 to 9 distinct"),
        ({"classes": (0, 1), "pretrained": "local"}, "knows all 10 classes"),
        ({"ood_score": "odin"}, "--ood-score: 'odin' is not one of msp, max_logit, energy"),
        ({"frobnicate": 1}, "Unknown setting"),
    ],
)
def test_bad_values_are_one_line_errors(values, message):
    values = dict(values)  # the parameters are shared: a second run must see them whole
    profile = values.pop("profile", None)
    with pytest.raises(ConfigError, match=message) as info:
        ExperimentConfig.create(profile or "full", **values)
    assert "\n" not in str(info.value)


def test_model_specs():
    config = ExperimentConfig.create("full", alpha=4, num_estimators=2, gamma=2, mc_samples=5)
    assert parse_model("lenet") == ModelSpec("lenet", "lenet", 1)
    packed = parse_model("packed", config)
    assert (packed.alpha, packed.members, packed.gamma) == (4, 2, 2)
    assert (
        packed.name == "Packed-Ensemble (alpha=4, M=2, gamma=2)" and packed.slug == "packed-4-2-g2"
    )
    explicit = parse_model("packed-1.5-3")
    assert (explicit.alpha, explicit.members, explicit.slug) == (1.5, 3, "packed-1.5-3")
    de = parse_model("deep-ensemble-4")
    assert (de.kind, de.members, de.train_members, de.name) == (
        "deep-ensemble", 4, 4, "Deep Ensemble (M=4)")  # fmt: skip
    mc = parse_model("mc-dropout", config)
    assert (mc.members, mc.train_members, mc.name) == (5, 1, "MC-Dropout (T=5)")
    assert parse_model("batch-ensemble", config).members == 2  # M from --num-estimators
    assert parse_model("deep-ensemble", config).slug == "deep-ensemble-2"
    be = parse_model("batch-ensemble-4")
    assert (be.slug, be.train_members, be.name) == ("batch-ensemble-4", 4, "BatchEnsemble (M=4)")
    assert [s.spec for s in config.with_values(models=("lenet", "mc-dropout")).specs] == [
        "lenet", "mc-dropout"]  # fmt: skip


def test_seed_list_and_json_view():
    config = ExperimentConfig.create("full", seed=3, seeds=3)
    assert config.seed_list == [3, 4, 5]
    as_dict = config.as_dict()
    assert as_dict["models"] == ["lenet", "deep-ensemble-2", "packed"] and as_dict["seeds"] == 3
    with pytest.raises(ConfigError):
        config.with_values(seeds=0)


def test_the_command_that_gives_a_configuration():
    config = ExperimentConfig.create("quick", models=("lenet", "deep-ensemble-4"), seeds=3,
                                     calibrate="temperature", shift=True, epochs=2)  # fmt: skip
    command = config.as_command()
    assert command == ("tutorial-lib compare --profile quick --models lenet deep-ensemble-4 "
                       "--epochs 2 --seeds 3 --calibrate temperature --shift")  # fmt: skip
    assert ExperimentConfig.create("full").as_command() == "tutorial-lib compare"


def test_every_model_kind_has_one_entry_that_builds_it_and_names_its_hparams():
    from tutorial_lib.config import MODEL_KINDS

    config = ExperimentConfig.create("full", alpha=4, num_estimators=2, gamma=2)
    for text in ("lenet", "mc-dropout", "deep-ensemble-3", "batch-ensemble-2", "packed"):
        spec = parse_model(text, config)
        assert spec.entry is MODEL_KINDS[spec.kind] and spec.entry.description
        model = spec.build(1, 10)
        assert model(torch.zeros(2, 1, 28, 28)).shape[-1] == 10
        assert spec.hparams["name"] == spec.name and spec.hparams["model"] == spec.slug
    packed = parse_model("packed", config).hparams  # both packed models used to show "packed"
    assert (packed["alpha"], packed["M"], packed["gamma"]) == (4, 2, 2)
    assert parse_model("packed-2-4", config).hparams["model"] == "packed-2-4-g2"


def test_the_baseline_is_one_of_the_models():
    from tutorial_lib.config import ConfigError, ExperimentConfig

    config = ExperimentConfig(models=("lenet", "packed"), baseline="packed")
    assert config.baseline == "packed" and "--baseline packed" in config.as_command()
    with pytest.raises(ConfigError, match="--baseline: 'mc-dropout' is not one of --models"):
        ExperimentConfig(models=("lenet", "packed"), baseline="mc-dropout")


def test_the_command_is_shell_quoted():
    from tutorial_lib.config import ExperimentConfig

    command = ExperimentConfig(out="my results/run 1").as_command()
    assert command.endswith("--out 'my results/run 1'")


def test_width_reaches_every_model_its_name_and_its_hparams():
    config = ExperimentConfig.create("full", models=("deep-ensemble-4", "packed-2-4", "lenet"),
                                     width=4, gamma=2)  # fmt: skip
    names = [s.name for s in config.specs]
    assert names == [
        "Deep Ensemble (M=4, width=4)",
        "Packed-Ensemble (alpha=2, M=4, gamma=2, width=4)",
        "LeNet (width=4)",
    ]
    assert [s.slug for s in config.specs] == ["deep-ensemble-4-w4", "packed-2-4-g2-w4", "lenet-w4"]
    assert all(s.hparams["width"] == 4 for s in config.specs)
    assert [s.build().width for s in config.specs] == [4, 4, 4]
    assert config.as_dict()["width"] == 4 and "--width 4" in config.as_command()
    with pytest.raises(ConfigError, match="--width must be an integer >= 1"):
        ExperimentConfig(width=0)
