"""Where the main job's training time goes: the course's loop against a plain PyTorch loop.

For each model of the main job (LeNet, deep ensemble of 2, Packed-Ensemble (2, 4); 3 epochs at
batch 512), in one process:

- ``fit_and_test`` exactly as ``tutorial-lib compare`` runs it, twice: the first pass pays the
  device's start-up (CUDA context, cuDNN, first kernels), the second is warm;
- a plain PyTorch loop over the same training batches with the same model, recipe (AdamW with its
  one-cycle schedule) and epochs: forward, loss, backward, optimiser and scheduler steps, nothing
  else (no validation, logging, divergence check or test). It is the floor of any training loop.

Prints seconds per phase and milliseconds per training step. ``--profile FILE`` also writes a
cProfile of the warm ``fit_and_test`` passes (read it with ``python -m pstats FILE``).

    python benchmarks/loop_breakdown.py [--accelerator gpu] [--profile loop.prof]
"""

from __future__ import annotations

import argparse
import cProfile
import tempfile
import time

from tutorial_lib.speed import share_cpu_fairly

share_cpu_fairly()

import torch  # noqa: E402
from common import machine  # noqa: E402

from tutorial_lib.compare import build_model, fit_and_test, make_data  # noqa: E402
from tutorial_lib.config import ExperimentConfig  # noqa: E402
from tutorial_lib.ensembles import RepeatTarget  # noqa: E402
from tutorial_lib.recipes import resolve_recipe  # noqa: E402
from tutorial_lib.trainer import seed_everything  # noqa: E402


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_fit(spec, data, config: ExperimentConfig, device: torch.device) -> tuple[float, int]:
    """Seconds and steps of the plain loop: the spec's model, recipe and epochs, nothing else."""
    seed_everything(config.seed)
    model = build_model(spec).to(device)
    if device.type == "cpu":  # what the trainer's CPUTuning does
        model = model.to(memory_format=torch.channels_last)
    loader = data.train_dataloader()
    recipe = resolve_recipe(config.recipe, model, config.epochs * len(loader), lr=config.lr)
    optimizer, scheduler = recipe["optimizer"], recipe["lr_scheduler"]["scheduler"]
    repeat = RepeatTarget(spec.train_members) if spec.train_members > 1 else None
    loss_fn = torch.nn.CrossEntropyLoss()
    synchronize(device)
    start, steps = time.perf_counter(), 0
    for _ in range(config.epochs):
        for batch in loader:
            inputs, targets = repeat(batch) if repeat else batch
            loss = loss_fn(model(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            steps += 1
    synchronize(device)
    return time.perf_counter() - start, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--profile", default=None, help="write a cProfile of the warm passes")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    config = ExperimentConfig.create("full", accelerator=args.accelerator)
    start = time.perf_counter()
    data = make_data(config)
    data.prepare_data()
    data.setup()
    print(f"data ready: {time.perf_counter() - start:.2f} s", flush=True)
    profiler = cProfile.Profile() if args.profile else None
    with tempfile.TemporaryDirectory() as logs:
        for label in ("first pass (cold)", "second pass (warm)"):
            total = 0.0
            for spec in config.specs:
                if profiler and label.startswith("second"):
                    profiler.enable()
                result = fit_and_test(spec, data, config, config.seed, logs)
                if profiler:
                    profiler.disable()
                total += result.fit_s + result.test_s
                print(f"{label}, {spec.name}: fit {result.fit_s:.2f} s "
                      f"({1000 * result.fit_s / result.steps:.2f} ms/step over {result.steps} "
                      f"steps, validation included), test {result.test_s:.2f} s",
                      flush=True)  # fmt: skip
            print(f"{label}: fit + test of the three models {total:.2f} s", flush=True)
    device = data.splits["train"][0].device  # moved there by the trainers above
    total = 0.0
    for spec in config.specs:
        seconds, steps = plain_fit(spec, data, config, device)
        total += seconds
        print(f"plain loop, {spec.name}: {seconds:.2f} s ({1000 * seconds / steps:.2f} ms/step "
              f"over {steps} steps)", flush=True)  # fmt: skip
    print(f"plain loop: training of the three models {total:.2f} s")
    if profiler:
        profiler.dump_stats(args.profile)
        print(f"cProfile of the warm passes: {args.profile}")


if __name__ == "__main__":
    main()
