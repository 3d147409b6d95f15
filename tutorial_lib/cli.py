"""The ``tutorial-lib`` command (also ``python -m tutorial_lib``): a thin layer over the library.

``compare`` and ``pretrain`` build their flags from :class:`~tutorial_lib.config.ExperimentConfig`
(one flag per field, its help and default from the field), parse only the flags given, and let
:meth:`ExperimentConfig.create` apply the profile and validate: a bad value is a one-line usage
error before anything trains. torch and Lightning are imported only by ``compare`` and
``pretrain``, when they run: ``--help``, ``book`` and ``notebooks`` never load them (the errors the
command maps live in the torch-free :mod:`tutorial_lib.errors`); before that,
:func:`~tutorial_lib.speed.share_cpu_fairly` sets the CPU threads up for a shared machine.

Exit codes: 0 done, 1 failed (data, files, checkpoints), 2 bad usage, 3 training diverged,
130 interrupted (what finished is saved).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Iterable
from typing import Any, NoReturn

from tutorial_lib import __version__
from tutorial_lib.config import (
    PRETRAIN_PRESET,
    PROFILES,
    ConfigError,
    ExperimentConfig,
)
from tutorial_lib.errors import (  # noqa: F401 (the exit codes, importable from here)
    EXIT_DIVERGED,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    KNOWN_ERRORS,
    RunInterrupted,
)

PRETRAIN_FIELDS = ("epochs", "lr", "batch_size", "val_size", "train_subset", "seed", "out",
                   "data_dir", "mirror", "accelerator")  # fmt: skip


def _parser(prog: str, **kwargs: Any) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, allow_abbrev=False, **kwargs)


def add_config_arguments(
    parser: argparse.ArgumentParser, names: Iterable[str], defaults: dict[str, Any] | None = None
) -> None:
    """One flag per configuration field in ``names``, typed and documented from the field.

    Flags default to "not given" (``argparse.SUPPRESS``): only what the user typed reaches
    :meth:`ExperimentConfig.create`, which applies the defaults and the profile's preset.
    """
    shown = {f.name: f.default for f in dataclasses.fields(ExperimentConfig)} | (defaults or {})
    by_name = {f.name: f for f in dataclasses.fields(ExperimentConfig)}
    for name in names:
        spec = by_name[name]
        meta = dict(spec.metadata)
        text = meta.pop("help")
        default = shown[name]
        if name != "profile":
            preset = "".join(f"; {p}: {v[name]}" for p, v in PROFILES.items() if name in v)
            if isinstance(default, tuple):
                default = " ".join(map(str, default))
            if "(default:" in text:  # the help says what None means
                text += f" ({preset[2:]})" if preset else ""
            else:
                text += f" (default: {default}{preset})"
        flag = "--" + name.replace("_", "-")
        kind = str(spec.type)
        if kind == "bool":
            parser.add_argument(flag, action="store_true", help=text)
            continue
        if "choices" not in meta and "type" not in meta:
            meta["type"] = (
                int if kind.startswith("int") else float if kind.startswith("float") else str
            )
        meta.setdefault("metavar", name.upper() if "choices" not in meta else None)
        parser.add_argument(flag, help=text, **meta)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``tutorial-lib`` and its sub-commands."""
    parser = _parser(
        "tutorial-lib",
        description="Course 'From Deep Ensembles to Packed-Ensembles': library commands.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--version", action="version", version=f"tutorial-lib {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    compare = commands.add_parser(
        "compare", allow_abbrev=False, argument_default=argparse.SUPPRESS,
        help="train the models, test them on in- and out-of-distribution data, compare them",
        description="Train each model (with each seed), test it on the ID test set and the OOD "
        "test set, print the side-by-side comparison (mean ± std over seeds; verdicts against "
        "--baseline: better, worse or not distinguishable) and write results.json, comparison.md, "
        "PNG plots and TensorBoard logs under --out.",
    )  # fmt: skip
    add_config_arguments(compare, [f.name for f in dataclasses.fields(ExperimentConfig)])

    pretrain = commands.add_parser(
        "pretrain", allow_abbrev=False, argument_default=argparse.SUPPRESS,
        help="train the pretrained deep ensemble (LeNets from consecutive seeds) and write its "
        "checkpoints and manifest",
        description="Train --members LeNets (fused, one network) on the training images minus "
        "the validation split, evaluate each and the ensemble on MNIST test and FashionMNIST "
        "test, and swap lenet_<i>.ckpt, manifest.json and TensorBoard logs into --out once all "
        "are written.",
    )  # fmt: skip
    pretrain.add_argument("--members", type=int, default=8, help="ensemble members (default: 8)")
    pretrain.add_argument(
        "--force",
        action="store_true",
        default=False,
        help="replace an --out folder that already holds checkpoints",
    )
    add_config_arguments(pretrain, PRETRAIN_FIELDS, PRETRAIN_PRESET)

    notebooks = commands.add_parser(
        "notebooks", allow_abbrev=False,
        help="execute the course notebooks in place, storing their outputs",
        description="Run the course's notebooks top to bottom (in their folder, a fresh kernel "
        "each) and store the outputs in the notebook files; prints each one's run time.",
    )  # fmt: skip
    notebooks.add_argument("names", nargs="*", help="notebook files to run (default: all)")
    notebooks.add_argument(
        "--root", default=None, help="the course's folder (default: found from the current folder)"
    )
    notebooks.add_argument("--profile", choices=list(PROFILES), default="full",
                           help="TUTORIAL_PROFILE for the run (default: full)")  # fmt: skip
    notebooks.add_argument("--timeout", type=int, default=900,
                           help="seconds allowed per cell (default: 900)")  # fmt: skip

    student = commands.add_parser(
        "student", allow_abbrev=False,
        help="write the student edition of the chapters: solutions replaced by stubs, no outputs",
        description="Copy every chapter into --out with each exercise's solution (between "
        "### BEGIN SOLUTION and ### END SOLUTION) replaced by a stub that raises "
        "NotImplementedError, and the outputs cleared. An unfinished exercise says so and the "
        "chapter goes on with the library's version.",
    )  # fmt: skip
    student.add_argument(
        "--root", default=None, help="the course's folder (default: found from the current folder)"
    )
    student.add_argument("--out", default=None,
                         help="a folder inside the course (default: <course>/student)")  # fmt: skip

    book = commands.add_parser(
        "book", allow_abbrev=False,
        help="build the course website from the executed notebooks (mdBook) into build/book",
        description="Convert the executed notebooks to Markdown chapters (figures as files, "
        "formulas as MathML), write the introduction, glossary and references, and run "
        "`mdbook build` (book.toml).",
    )  # fmt: skip
    book.add_argument(
        "--root", default=None, help="the course's folder (default: found from the current folder)"
    )
    parser.set_defaults(subparsers={"compare": compare, "pretrain": pretrain})
    return parser


def _config_from(args: argparse.Namespace, **preset: Any) -> ExperimentConfig:
    values = {k: v for k, v in vars(args).items() if k in {f.name for f in
              dataclasses.fields(ExperimentConfig)}}  # fmt: skip
    if "models" in values:
        values["models"] = tuple(values["models"])
    profile = values.pop("profile", None)
    return ExperimentConfig.create(profile, **(preset | values))


def _compare(args: argparse.Namespace) -> int:
    config = args.config
    print(f"tutorial-lib compare: {', '.join(s.name for s in config.specs)}; "
          f"{config.seeds} seed(s) from {config.seed}; profile {config.profile}; data "
          f"{config.dataset}; out {config.out}", flush=True)  # fmt: skip
    from tutorial_lib import report
    from tutorial_lib.compare import describe_outputs, run_comparison, summarize_shift

    comparison = run_comparison(config, progress=lambda line: print(line, flush=True))
    report.show(comparison.table())
    for line in comparison.verdicts():
        print(f"- {line}")
    if comparison.shift:
        print("\nUnder shift (mean over corruptions; severity 0 = clean test set):")
        keys = ("cls/Acc", "cls/NLL", "cal/ECE") + (("cal/GL",) if config.grouping_loss else ())
        for key in keys:
            for model, by in summarize_shift(comparison.shift, key).items():
                cells = "  ".join(
                    f"{s}: {m:.4f}" + (f"±{sd:.4f}" if sd is not None else "")
                    for s, (m, sd) in by.items()
                )
                print(f"  {key:8s} {model:34s} {cells}")
    print(f"Total: {comparison.info['total_s']:.1f} s")
    print(describe_outputs(config.out))
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from tutorial_lib.pretrain import pretrain_ensemble

    manifest = pretrain_ensemble(args.config, args.members, force=args.force)
    ens = manifest["ensemble"]
    accs = [m["cls/Acc"] for m in manifest["members"]]
    print(f"Members' MNIST accuracy: {100 * min(accs):.2f}-{100 * max(accs):.2f} %; ensemble: "
          f"{100 * ens['cls/Acc']:.2f} %, ECE {100 * ens['cal/ECE']:.3f} %, OOD AUROC "
          f"{100 * ens['ood/AUROC']:.2f} % (fit {manifest['fit_seconds']} s).")  # fmt: skip
    print(f"Wrote {len(manifest['files'])} checkpoints and manifest.json to {args.config.out}")
    return 0


def _notebooks(args: argparse.Namespace) -> int:
    from tutorial_lib.book import execute_notebooks
    from tutorial_lib.files import find_root

    root = find_root(args.root)
    for path, seconds in execute_notebooks(root / "notebooks", args.names, args.profile,
                                           args.timeout):  # fmt: skip
        print(f"{path.name}: {seconds:.0f} s ({args.profile} profile)", flush=True)
    return 0


def _student(args: argparse.Namespace) -> int:
    from tutorial_lib.book import student_edition
    from tutorial_lib.files import find_root

    root = find_root(args.root)
    written = student_edition(root, args.out or root / "student")
    print(f"Wrote the student edition of {len(written)} chapter(s) to {written[0].parent}"
          if written else "No chapter found.")  # fmt: skip
    return 0


def _book(args: argparse.Namespace) -> int:
    from tutorial_lib.book import build_book
    from tutorial_lib.files import find_root

    index = build_book(root=find_root(args.root))
    print(f"Built {index}. Open it in a browser, or serve the folder: "
          f"python -m http.server -d {index.parent} 8000")  # fmt: skip
    return 0


HANDLERS = {"compare": _compare, "pretrain": _pretrain, "notebooks": _notebooks,
            "student": _student, "book": _book}  # fmt: skip


def entry() -> NoReturn:
    """The console script (and ``python -m tutorial_lib``): exit with :func:`main`'s code."""
    raise SystemExit(main())


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (see the module docstring)."""
    from tutorial_lib.speed import share_cpu_fairly

    share_cpu_fairly()  # before torch is imported: passive OpenMP waits, threads = usable CPUs
    parser = build_parser()
    args = parser.parse_args(argv)
    command = getattr(args, "command", None)
    if command is None:
        parser.print_help(sys.stdout)
        return 0
    if command in ("compare", "pretrain"):
        sub = args.subparsers[command]  # for its usage line
        try:
            args.config = _config_from(args, **(PRETRAIN_PRESET if command == "pretrain" else {}))
        except ConfigError as err:
            sub.error(str(err))  # exits 2 with the usage line
    return run_command(command, args)


def run_command(command: str, args: argparse.Namespace) -> int:
    """Run a parsed command; every error a user can hit becomes one line and an exit code
    (:data:`tutorial_lib.errors.KNOWN_ERRORS`)."""
    start = time.perf_counter()
    prefix = f"tutorial-lib {command}"
    try:
        return HANDLERS[command](args)
    except tuple(kind for kind, _, _ in KNOWN_ERRORS) as err:
        label, code = next((lb, c) for kind, lb, c in KNOWN_ERRORS if isinstance(err, kind))
        print(f"{prefix}: {label}{err}", file=sys.stderr)
        return code
    except (KeyboardInterrupt, RunInterrupted) as stop:
        out = getattr(getattr(args, "config", None), "out", None)
        finished = getattr(stop, "finished", 0)
        saved = ""
        if command == "compare" and finished:
            saved = (f"; {finished} finished run(s) are in {out}/results.json "
                     "(complete: false)")  # fmt: skip
        elif command == "pretrain":
            saved = f"; nothing was written to {out}"
        print(f"{prefix}: interrupted after {time.perf_counter() - start:.0f} s{saved}",
              file=sys.stderr)  # fmt: skip
        return EXIT_INTERRUPTED
