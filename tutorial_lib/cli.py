"""The ``tutorial-lib`` command (also ``python -m tutorial_lib``)."""

from __future__ import annotations

import argparse
import sys
import time

from tutorial_lib import __version__


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="data root (default: $TUTORIAL_DATA_DIR or ./data)")
    parser.add_argument(
        "--mirror",
        help="offline mirror holding MNIST/raw/*.gz and FashionMNIST/raw/*.gz "
        "(default: $TUTORIAL_DATA_MIRROR; without one, files are downloaded)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--accelerator", choices=["auto", "cpu", "gpu", "mps"], default="auto",
        help="device; 'gpu' on a machine without one falls back to the CPU (default: auto)",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``tutorial-lib`` and its sub-commands."""
    from tutorial_lib.experiment import MODELS, PROFILES
    from tutorial_lib.recipes import RECIPES

    parser = argparse.ArgumentParser(
        prog="tutorial-lib",
        description="Course 'From Deep Ensembles to Packed-Ensembles': library commands.",
    )
    parser.add_argument("--version", action="version", version=f"tutorial-lib {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    compare = commands.add_parser(
        "compare",
        help="train LeNet, a deep ensemble and a Packed-Ensemble, test them on MNIST vs "
        "FashionMNIST, and print the comparison",
        description="Reproduce the reference experiment end to end: train each model, test it "
        "on MNIST test (ID) and FashionMNIST test (OOD), print the side-by-side comparison and "
        "write results.json, comparison.md, PNG plots and TensorBoard logs under --out.",
    )
    compare.add_argument(
        "--models", nargs="+", choices=MODELS, default=list(MODELS),
        help=f"models to compare (default: all of {', '.join(MODELS)})",
    )  # fmt: skip
    compare.add_argument("--members", type=_positive_int, default=2,
                         help="deep-ensemble members (default: 2, as the reference)")  # fmt: skip
    compare.add_argument("--alpha", type=_positive_float, default=2,
                         help="Packed-Ensemble width factor (default: 2)")  # fmt: skip
    compare.add_argument("--num-estimators", type=_positive_int, default=4,
                         help="Packed-Ensemble members M (default: 4)")  # fmt: skip
    compare.add_argument("--gamma", type=_positive_int, default=1,
                         help="Packed-Ensemble groups per member (default: 1)")  # fmt: skip
    compare.add_argument("--epochs", type=_positive_int, default=3,
                         help="training epochs (default: 3, as the reference)")  # fmt: skip
    compare.add_argument("--batch-size", type=_positive_int, default=512,
                         help="training batch size (default: 512)")  # fmt: skip
    compare.add_argument("--recipe", choices=sorted(RECIPES), default="default",
                         help="optimisation recipe (default: default)")  # fmt: skip
    compare.add_argument(
        "--profile", choices=list(PROFILES), default="full",
        help="full: all data, --epochs epochs; quick: 4,096 training and 2,000 test images, "
        "1 epoch at batch 128, for smoke tests (default: full)",
    )  # fmt: skip
    compare.add_argument("--grouping-loss", action="store_true",
                         help="also estimate each model's grouping loss")  # fmt: skip
    compare.add_argument(
        "--shift", action="store_true",
        help="also evaluate each trained model on corrupted MNIST test sets (7 corruptions x 5 "
        "severities): accuracy, NLL, ECE (and the grouping loss with --grouping-loss)",
    )  # fmt: skip
    compare.add_argument(
        "--pretrained", choices=["local", "hub", "auto"], default=None,
        help="also evaluate the pretrained 8-member deep ensemble (local: the checkpoints shipped "
        "in data/pretrained; hub: the reference's, downloaded; auto: local, else hub)",
    )  # fmt: skip
    compare.add_argument("--out", default="outputs/compare",
                         help="output folder (default: outputs/compare)")  # fmt: skip
    _add_data_options(compare)

    pretrain = commands.add_parser(
        "pretrain",
        help="train the pretrained deep ensemble (LeNets from consecutive seeds) and write its "
        "checkpoints and manifest",
        description="Train --members LeNets (fused, one network), evaluate each and the "
        "ensemble on MNIST test and FashionMNIST test, and write lenet_<i>.ckpt, manifest.json "
        "and TensorBoard logs under --out.",
    )
    pretrain.add_argument("--members", type=_positive_int, default=8,
                          help="ensemble members (default: 8)")  # fmt: skip
    pretrain.add_argument("--epochs", type=_positive_int, default=75,
                          help="training epochs (default: 75, as the reference's)")  # fmt: skip
    pretrain.add_argument("--out", default="data/pretrained",
                          help="output folder (default: data/pretrained)")  # fmt: skip
    pretrain.add_argument("--train-subset", type=_positive_int, default=None,
                          help="train on the first N images only (for tests)")  # fmt: skip
    _add_data_options(pretrain)

    notebooks = commands.add_parser(
        "notebooks",
        help="execute the course notebooks in place, storing their outputs",
        description="Run every notebook of --dir top to bottom (in its own folder, a fresh kernel "
        "each) and store the outputs in the notebook files; prints each one's run time.",
    )
    notebooks.add_argument(
        "--execute", action="store_true", required=True,
        help="execute and store outputs (required: the only action; needs the dev extra)",
    )  # fmt: skip
    notebooks.add_argument(
        "--dir", default=None, help="folder of the notebooks (default: the repository's notebooks/)"
    )
    notebooks.add_argument("--profile", choices=["full", "quick"], default="full",
                           help="TUTORIAL_PROFILE for the run (default: full)")  # fmt: skip
    notebooks.add_argument("--timeout", type=_positive_int, default=600,
                           help="seconds allowed per cell (default: 600)")  # fmt: skip
    notebooks.add_argument("names", nargs="*", help="notebook files to run (default: all)")

    commands.add_parser(
        "book",
        help="build the course website from the executed notebooks (mdBook) into build/book",
        description="Convert the executed notebooks to Markdown chapters (figures as files), write "
        "the introduction, glossary and references, and run `mdbook build` (book.toml).",
    )
    return parser


def _compare(args: argparse.Namespace) -> int:
    from tutorial_lib import report
    from tutorial_lib.experiment import CompareConfig, describe_outputs, run_comparison

    config = CompareConfig(
        models=tuple(args.models), members=args.members, alpha=args.alpha,
        num_estimators=args.num_estimators, gamma=args.gamma, epochs=args.epochs,
        batch_size=args.batch_size, seed=args.seed, recipe=args.recipe, data_dir=args.data_dir,
        mirror=args.mirror, out=args.out, profile=args.profile,
        accelerator=None if args.accelerator == "auto" else args.accelerator,
        grouping_loss=args.grouping_loss, pretrained=args.pretrained, shift=args.shift,
    )  # fmt: skip
    results = run_comparison(config)
    report.show(results["table"])
    for name, r in results["models"].items():
        fit = (
            f"fit {r['fit_s']:.1f} s ({r['train_images_per_s']:,.0f} images/s), "
            if r["fit_s"]
            else ""
        )
        print(f"{name}: {fit}test {r['test_s']:.1f} s")
    print(f"Total: {results['total_s']:.1f} s")
    if "shift" in results:
        from tutorial_lib.shift import summarize_shift

        print("\nUnder shift (mean over corruptions; severity 0 = clean test set):")
        for key in ("cls/Acc", "cls/NLL", "cal/ECE") + (("cal/GL",) if args.grouping_loss else ()):
            for model, by in summarize_shift(results["shift"], key).items():
                cells = "  ".join(f"{s}: {v:.4f}" for s, v in by.items())
                print(f"  {key:8s} {model:34s} {cells}")
    print(describe_outputs(args.out))
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from tutorial_lib.experiment import pretrain_ensemble

    manifest = pretrain_ensemble(
        args.members, args.epochs, args.out, seed=args.seed, data_dir=args.data_dir,
        mirror=args.mirror, accelerator=None if args.accelerator == "auto" else args.accelerator,
        train_subset=args.train_subset,
    )  # fmt: skip
    ens = manifest["ensemble"]
    accs = [m["cls/Acc"] for m in manifest["members"]]
    print(f"Members' MNIST accuracy: {100 * min(accs):.2f}-{100 * max(accs):.2f} %; ensemble: "
          f"{100 * ens['cls/Acc']:.2f} %, ECE {100 * ens['cal/ECE']:.3f} %, OOD AUROC "
          f"{100 * ens['ood/AUROC']:.2f} % (fit {manifest['fit_seconds']} s).")  # fmt: skip
    print(f"Wrote {len(manifest['files'])} checkpoints and manifest.json to {args.out}")
    return 0


def _notebooks(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    import nbformat
    from nbclient import NotebookClient

    folder = Path(args.dir) if args.dir else Path(__file__).resolve().parent.parent / "notebooks"
    paths = [folder / n for n in args.names] if args.names else sorted(folder.glob("[0-9]*.ipynb"))
    missing = [str(p) for p in paths if not p.exists()]
    if missing or not paths:
        raise ValueError(f"No such notebook(s): {missing or folder}")
    os.environ["TUTORIAL_PROFILE"] = args.profile
    os.environ.pop("MPLBACKEND", None)  # let the kernels use the inline backend: figures are stored
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        NotebookClient(notebook, timeout=args.timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()  # fmt: skip
        nbformat.write(notebook, path)
        print(f"{path.name}: {time.perf_counter() - start:.0f} s ({args.profile} profile)")
    return 0


def _book(args: argparse.Namespace) -> int:
    from tutorial_lib.book import build_book

    index = build_book()
    print(f"Built {index}. Open it in a browser, or serve the folder: "
          f"python -m http.server -d {index.parent} 8000")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (0 ok, 1 failed, 2 bad usage)."""
    from tutorial_lib.data import DataError
    from tutorial_lib.hub import PretrainedError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stdout)
        return 0
    handlers = {"compare": _compare, "pretrain": _pretrain, "notebooks": _notebooks, "book": _book}
    start = time.perf_counter()
    try:
        return handlers[args.command](args)
    except FileNotFoundError as err:
        print(f"tutorial-lib {args.command}: {err}", file=sys.stderr)
        return 1
    except DataError as err:
        print(f"tutorial-lib {args.command}: data problem: {err}", file=sys.stderr)
        return 1
    except PretrainedError as err:
        print(f"tutorial-lib {args.command}: pretrained checkpoints: {err}", file=sys.stderr)
        return 1
    except ValueError as err:
        print(f"tutorial-lib {args.command}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tutorial-lib {args.command}: interrupted after {time.perf_counter() - start:.0f} s",
              file=sys.stderr)  # fmt: skip
        return 130
