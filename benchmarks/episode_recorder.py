"""What recording episodes costs a training run: epoch wall time with ``record_episodes`` 0 (off),
the default 4, and -1 (every episode), and the seconds spent inside the recorder itself.

    python benchmarks/episode_recorder.py [--task deepsearch] [--epochs 3] [--counts 0,4,-1] [override ...]

Each count runs ``python src/train.py``'s ``train(cfg)`` with the task's defaults (cached tiny model and
warm start; trailing arguments are Hydra overrides, e.g. ``task.val_episodes=50``), one after another,
in a temporary run folder. Per run it prints the mean epoch wall time (``results.csv``: the difference
of ``wall_s`` between consecutive validations, i.e. rollout + updates + validation, epoch 1 onwards),
the recorder's own seconds per epoch (``EpisodeRecorder._record``: building the records, decoding
prompts and tokens, writing the JSONL, TensorBoard text) and the bytes it wrote per epoch. Epoch wall
times vary from run to run by more than the recorder costs (rollouts sample different episodes once
the policies differ, and other processes share the CPU): the recorder's own seconds are the measure
of its overhead, the epoch times give the scale.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import rootutils

ROOT = rootutils.setup_root(__file__, indicator=".project-root", pythonpath=True)

from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from src.callbacks.episode_recorder import EpisodeRecorder  # noqa: E402
from src.train import train  # noqa: E402


def run(task: str, epochs: int, count: int, overrides: List[str], out: Path) -> Dict[str, float]:
    """One training run; the recorder's time is summed around its one entry point."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(Path(ROOT) / "configs"), version_base="1.3"):
        cfg = compose(config_name="train.yaml", return_hydra_config=True, overrides=[
            f"task={task}", f"trainer.max_epochs={epochs}", f"record_episodes={count}", "extras.print_config=false",
            "extras.enforce_tags=false", *overrides])
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    spent: List[float] = []
    original = EpisodeRecorder._record

    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        original(self, *args, **kwargs)
        spent.append(time.perf_counter() - start)

    EpisodeRecorder._record = timed
    try:
        train(cfg)
    finally:
        EpisodeRecorder._record = original
    rows = list(csv.DictReader(open(out / "results.csv")))
    walls = [float(r["wall_s"]) for r in rows]
    epoch_s = [b - a for a, b in zip(walls, walls[1:])]
    written = sum(p.stat().st_size for p in (out / "episodes").glob("*.jsonl")) if (out / "episodes").exists() else 0
    return {"count": count, "epoch_s": statistics.mean(epoch_s), "epoch_s_min": min(epoch_s),
            "epoch_s_max": max(epoch_s), "recorder_s": sum(spent) / (epochs + 1),
            "kib": written / 1024 / (epochs + 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="deepsearch")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--counts", default="0,4,-1", help="record_episodes values, comma-separated")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run")
    args = parser.parse_args()
    results = []
    for count in (int(c) for c in args.counts.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            results.append(run(args.task, args.epochs, count, args.overrides, Path(tmp)))
    base = next((r["epoch_s"] for r in results if r["count"] == 0), None)
    print(f"\n{args.task}, {args.epochs} epochs per run; per epoch = one rollout + updates + validation "
          "(the initial validation is counted as an epoch for the recorder's share)")
    print("| record_episodes | epoch wall s, mean (min-max) | vs off | recorder s / epoch | share of epoch | "
          "written KiB / epoch |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in results:
        delta = f"{100 * (r['epoch_s'] / base - 1):+.1f}%" if base else "–"
        print(f"| {r['count']} | {r['epoch_s']:.2f} ({r['epoch_s_min']:.2f}-{r['epoch_s_max']:.2f}) | {delta} | "
              f"{r['recorder_s']:.4f} | {100 * r['recorder_s'] / r['epoch_s']:.2f}% | {r['kib']:.0f} |")


if __name__ == "__main__":
    sys.exit(main())
