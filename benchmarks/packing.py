"""When packing pays: backbone width x method, PE against DE-4 (chapter 9's study).

Packed-Ensembles are built to match a deep ensemble at a fraction of its cost on *wide*
backbones; LeNet is thin. This study widens LeNet (``--width K`` multiplies its channels and
hidden units) and trains, at each width, a single network, a deep ensemble of 4 and
Packed-Ensembles alpha=2, M=4 with gamma 1 and gamma 2 (gamma 2 needs an even width: the first
convolution's 6K channels, doubled, split into 8 groups only when K is even).

1. **Epochs, chosen on the validation split.** A pilot trains the single network, seed 0, at
   the narrowest and the widest width for each epoch count of ``--epoch-grid``, and keeps the
   smallest count whose validation accuracy is within ``--tolerance`` points of the grid's best
   at every pilot width (the test sets are not looked at).
2. **The study.** Every model, width and seed with those epochs, the default recipe,
   a temperature fitted on the validation split; then each trained model's inference
   throughput on the CPU (as ``pareto.py`` measures it).

Writes ``data/results/packing.json``: the pilot (validation accuracy and NLL per width and
epochs) and the epochs chosen, the machine, and per data set, width and model: parameters,
FLOPs, training time (CPU seconds; median and per seed), images/s, and accuracy, NLL, ECE, OOD
AUROC, disagreement and mutual information (mean, std, per-seed values; raw and after
temperature scaling, ``ts/...``). Each model is one experiment, and the results file is
rewritten after each with ``"complete": false``: a study stopped half-way (the end of a working
session) resumes when the same command runs again from the same code, from the runs in the run
cache and, on a machine whose cache is empty, from the models already in the results file
(commit it between sessions; ``"passes"`` records each pass's machine, commit and minutes).
``--budget MIN`` starts no experiment whose forecast would end after MIN minutes of the pass: an
experiment that a session's end would stop half-way waits for the next pass, and a smaller one
after it may run instead (the forecast counts the runs in the run cache as free). Run again on a
complete results file, it keeps that file as ``<name>.previous.json`` and starts a new study.
With ``--pilot-only`` it runs the pilot alone and writes ``data/results/packing_pilot.json``
(a longer grid, to check that the study's epochs converged). Prints progress and, after the
pilot, the expected duration. Run it with nothing else on the machine. With the defaults (24
epochs; the committed results, ``data/results/packing.json``) its runs train for about 9 CPU
hours, 5 to 6 hours on 2 CPU cores: several working sessions, each with ``--budget`` and the
results file committed at its end. ``--epoch-grid 6 12`` (12 epochs, ``packing12.json``) trains
for 3.6 CPU hours, and ``--epoch-grid 3 6`` fits in about 1.5 hours (93 minutes on
2026-12-03), but their models are further from converged (the pilots show it).

    python benchmarks/packing.py [--datasets fashion] [--widths 1 2 4] [--seeds 3]
                                 [--epoch-grid 24] [--cache auto] [--budget MIN]
    python benchmarks/packing.py --pilot-only --epoch-grid 3 6 12   # the pilot alone
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from common import (
    begin_study,
    cached_seeds,
    commit,
    machine,
    resume_study,
    study_options,
    study_point,
)

# (models, gamma): gamma is one setting of an experiment, so gamma 2 is a second experiment
GROUPS = ((("lenet", "deep-ensemble-4", "packed-2-4"), 1), (("packed-2-4",), 2))
KEYS = ("cls/Acc", "cls/NLL", "cal/ECE", "ood/AUROC", "ens/Disagreement", "ens/MI")


def validation_scores(result) -> dict[str, float]:
    """Validation accuracy and NLL of one run (its stored validation predictions)."""
    import torch

    probs = result.predictions["val_probs"].mean(dim=1)  # (N, C): the ensemble's average
    targets = result.predictions["val_targets"]
    picked = probs[torch.arange(len(targets)), targets].clamp_min(1e-12)
    return {"val_acc": float((probs.argmax(1) == targets).float().mean()),
            "val_nll": float(-picked.log().mean())}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--datasets", nargs="+", default=["fashion"])
    parser.add_argument("--widths", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epoch-grid", nargs="+", type=int, default=[24],
                        help="epoch counts the pilot tries (default 24, the count of chapter 9's "
                             "study, where the longer pilots and the departure from their rule "
                             "are explained)")  # fmt: skip
    parser.add_argument("--tolerance", type=float, default=0.3,
                        help="points of validation accuracy below the grid's best that still "
                             "count as converged")  # fmt: skip
    parser.add_argument(
        "--pilot-only",
        action="store_true",
        help="run the pilot alone and write it to --pilot-results: is the "
        "study's epoch count converged, before paying for the study?",
    )
    parser.add_argument("--budget", type=float, metavar="MIN",
                        help="minutes this pass may take: an experiment whose forecast would end "
                             "later is left for the next pass (the same command again) instead "
                             "of being stopped half-way when the working session ends")  # fmt: skip
    study_options(parser, "packing")
    parser.add_argument("--pilot-results",
                        default=str(Path(__file__).resolve().parent.parent / "data" / "results"
                                    / "packing_pilot.json"))  # fmt: skip
    args = parser.parse_args()
    say = begin_study()
    import torch

    from tutorial_lib.compare import build_model, run_comparison
    from tutorial_lib.config import ConfigError, ExperimentConfig
    from tutorial_lib.data import STATS, load_split, normalize
    from tutorial_lib.files import write_json
    from tutorial_lib.metrics import throughput
    from tutorial_lib.metrics.complexity import complexity
    from tutorial_lib.runcache import source_digest

    start = time.perf_counter()
    signature = {"datasets": args.datasets, "widths": args.widths, "seeds": args.seeds,
                 "epoch_grid": args.epoch_grid, "tolerance": args.tolerance,
                 "source": source_digest(), "torch": torch.__version__}  # fmt: skip
    study = None if args.pilot_only else resume_study(Path(args.results), signature, say)
    if study is None:
        study = {"complete": False, "command": "python " + " ".join(sys.argv),
                 "machine": machine(), "commit": commit(), "signature": signature,
                 "seeds": args.seeds, "widths": args.widths, "tolerance": args.tolerance,
                 "pilot": {}, "datasets": {}, "passes": []}  # fmt: skip
    this_pass = {"machine": machine(), "commit": commit(), "minutes": 0.0}
    study["passes"].append(this_pass)

    def save() -> None:
        """What finished so far, in case the session ends before the next piece does."""
        this_pass["minutes"] = (time.perf_counter() - start) / 60
        study["total_min"] = sum(p["minutes"] for p in study["passes"])
        if not args.pilot_only:
            write_json(Path(args.results), study)

    def experiment(dataset: str, width: int, models, gamma: int, **values) -> ExperimentConfig:
        return ExperimentConfig.create(
            "full", dataset=dataset, models=models, width=width, gamma=gamma,
            calibrate="temperature", cache=args.cache,
            out=f"{args.out}/{dataset}/w{width}-g{gamma}-{'-'.join(models)}", **values)  # fmt: skip

    # 1. the pilot: epochs chosen on the validation split, first data set, seed 0
    pilot_widths = sorted({min(args.widths), max(args.widths)})
    rate = {}  # CPU seconds per (epoch x FLOP per image) at each pilot width: the forecast
    for width in pilot_widths:
        for epochs in args.epoch_grid:
            record = study["pilot"].get(f"w{width}", {}).get(str(epochs))
            if record is None:  # not done in an earlier pass
                config = experiment(args.datasets[0], width, ("lenet",), 1, epochs=epochs,
                                    seeds=1)  # fmt: skip
                say(f"pilot: LeNet width {width}, {epochs} epochs")
                (runs,) = run_comparison(config, progress=say).runs.values()
                run = runs[0]
                record = validation_scores(run) | {
                    "fit_s": run.fit_s,
                    "flops_per_image": run.metrics["cplx/flops_per_image"],
                }
                study["pilot"].setdefault(f"w{width}", {})[str(epochs)] = record
                save()
            rate[width] = record["fit_s"] / (epochs * record["flops_per_image"])
    best = {w: max(s["val_acc"] for s in study["pilot"][f"w{w}"].values()) for w in pilot_widths}
    epochs = min(e for e in args.epoch_grid if all(
        study["pilot"][f"w{w}"][str(e)]["val_acc"] >= best[w] - args.tolerance / 100
        for w in pilot_widths))  # fmt: skip
    study["epochs"] = epochs
    say(f"pilot: {epochs} epochs (validation accuracy within {args.tolerance} points of the "
        f"best of {args.epoch_grid} at widths {pilot_widths})")  # fmt: skip
    if args.pilot_only:
        pilot = {key: study[key] for key in ("command", "machine", "tolerance", "pilot", "epochs")}
        pilot |= {"dataset": args.datasets[0], "epoch_grid": args.epoch_grid, "complete": True,
                  "total_min": (time.perf_counter() - start) / 60}  # fmt: skip
        write_json(Path(args.pilot_results), pilot)
        say(f"wrote {args.pilot_results} ({pilot['total_min']:.0f} min)")
        return

    # 2. the study: what it will cost, then every width, method and seed
    plan = []  # one experiment per model, so that a stopped study loses at most one model
    for dataset in args.datasets:
        for width in args.widths:
            for models, gamma in GROUPS:
                for model in models:
                    try:
                        config = experiment(dataset, width, (model,), gamma, epochs=epochs,
                                            seeds=args.seeds)  # fmt: skip
                        flops = complexity(build_model(config.specs[0]))["flops_per_image"]
                    except (ConfigError, ValueError) as err:  # gamma 2 on LeNet's 6 channels
                        say(f"skipped: width {width}, gamma {gamma}: {err}")
                        continue
                    points = study["datasets"].get(dataset, {}).get("points", {})
                    if config.specs[0].name in points:  # finished in an earlier pass
                        continue
                    nearest = min(rate, key=lambda w: abs(w - width))
                    to_train = args.seeds - len(cached_seeds(config))  # the others: loaded
                    plan.append((dataset, width, gamma, config,
                                 flops * rate[nearest] * epochs * to_train))  # fmt: skip
    cores = min(os.cpu_count() or 1, args.seeds)  # the seeds of a model train side by side
    cpu_s = sum(cost for *_, cost in plan)
    say(f"the study: {len(plan)} experiment(s) to run; expected about {cpu_s / cores / 60:.0f} "
        f"min on {cores} CPUs (runs already in the run cache count as nothing)")  # fmt: skip
    left = []  # experiments that would not end within --budget
    for dataset, width, gamma, config, cost in plan:
        minutes = cost / cores / 60
        elapsed = (time.perf_counter() - start) / 60
        if args.budget is not None and elapsed + minutes > args.budget:
            left.append(config.specs[0].name)
            say(f"\n-- left for the next pass: {dataset}, width {width}, gamma {gamma}, "
                f"{config.specs[0].name} (about {minutes:.0f} min; "
                f"{max(args.budget - elapsed, 0):.0f} min of --budget left)")  # fmt: skip
            continue
        say(f"\n== {dataset}, width {width}, gamma {gamma}, {config.specs[0].name} "
            f"({(time.perf_counter() - start) / 60:.0f} min so far) ==")  # fmt: skip
        comparison = run_comparison(config, progress=say)
        name = comparison.data["id"]
        batch = normalize(load_split(name, False, config.data_dir, config.mirror)[0], *STATS[name])
        entry = study["datasets"].setdefault(dataset, {"data": comparison.data, "points": {}})
        for model_name, runs in comparison.runs.items():
            speed = [throughput(r.model.cpu(), batch) for r in runs]
            point = study_point(comparison.summary(model_name), speed, KEYS)
            entry["points"][model_name] = point | {
                "width": width,
                "gamma": gamma,
                "method": runs[0].spec.slug.split("-w")[0],
            }
            say(f"   {model_name:44s} params {point['params']:9,.0f}  acc "
                f"{100 * point['cls/Acc']:.2f}±{100 * point['cls/Acc_std']:.2f}  NLL "
                f"{point['cls/NLL']:.4f}  fit {point['fit_s']:.0f} s  "
                f"{point['images_per_s']:,.0f} img/s")  # fmt: skip
        save()
    if left:
        save()
        say(f"\n{len(left)} experiment(s) left for the next pass: run the same command again, "
            f"with {args.results} kept (or committed), to carry the study on")  # fmt: skip
        return
    study["complete"] = True
    save()
    say(f"\nwrote {args.results} ({study['total_min']:.0f} min)")


if __name__ == "__main__":
    main()
