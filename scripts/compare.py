"""The EMPG comparison sweep: GRPO vs GRPO+EMPG on every task, DAPO vs DAPO+EMPG and EMPG's ablation on
ALFWorld, GiGPO vs GiGPO+EMPG on ALFWorld and WebShop, seeds 1-3, each run on the CPU defaults with the same
warm start per seed.

    python scripts/compare.py                      # everything not yet done
    python scripts/compare.py --tasks alfworld --labels grpo empg --seeds 1
    python scripts/compare.py --dry-run            # print the commands

Each finished run's learning curve (``results.csv``, one row per validation) is copied to
``docs/results/runs/<task>/<label>/seed<k>.csv``, with ``seed<k>.txt`` beside it (the commit and
command that made it; commit both); a run whose file exists is skipped, and a run killed part-way
(a session's end) resumes from its last checkpoint when it is called again with the same command, so
the sweep can be stopped and continued in a later session. ``python src/report.py`` then builds the
tables and plots from those files alone. One sweep runs its runs one after another; on two cores, two
sweeps with ``--threads 1`` side by side keep both busy (say, two seeds of one label, each building its
own warm start; on this project's 2-core machine a cached-warm-start ALFWorld run took 47-55 min so):

    python scripts/compare.py --threads 1 --tasks alfworld --labels grpo --seeds 2 &
    python scripts/compare.py --threads 1 --tasks alfworld --labels grpo --seeds 3 &
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from src.models.warmstart import WARM_START_FILE  # noqa: E402
from src.utils.determinism import cpu_model, library_versions  # noqa: E402

TASKS = ("deepsearch", "alfworld", "webshop")


@dataclass(frozen=True)
class Arm:
    """One algorithm setting of the comparison: ``label`` names its results folder."""

    task: str
    label: str
    overrides: Tuple[str, ...]


def plan() -> List[Arm]:
    """The arms of issue 13's comparison, in the order they run (the headline pairs first)."""
    arms = [Arm(t, label, (f"algo={label}",)) for t in TASKS for label in ("grpo", "empg")]
    arms += [Arm("alfworld", "dapo", ("algo=dapo",)), Arm("alfworld", "dapo_empg", ("algo=dapo_empg",))]
    # the paper's ablation: self-calibrating scaling only (zeta = 0), future bonus only (k = 0: g = 1)
    arms += [Arm("alfworld", "empg_scale_only", ("algo=empg", "algo.empg.zeta=0")),
             Arm("alfworld", "empg_bonus_only", ("algo=empg", "algo.empg.k=0"))]
    # GiGPO, the step-level estimator that learns on ALFWorld and WebShop where GRPO's episode-level advantage does
    # not (docs/tuning.md), with and without EMPG; WebShop as verl-agent's WebShop script: mean_norm
    arms += [Arm(t, label, (f"algo={label}", *(("algo.estimator.norm_by_std=false",) if t == "webshop" else ())))
             for t in ("alfworld", "webshop") for label in ("gigpo", "gigpo_empg")]
    return arms


def result_path(results_dir: Path, arm: Arm, seed: int) -> Path:
    return results_dir / "runs" / arm.task / arm.label / f"seed{seed}.csv"


def command(arm: Arm, seed: int, run_dir: Path, extra: Sequence[str], threads: Optional[int] = None) -> List[str]:
    """The training command of one run: the task's defaults, the arm's algorithm, the seed for both
    the RL run and the warm start (so every arm of a seed starts from the same cached warm start);
    ``threads`` also pins the warm start's thread count (it is part of the warm start's cache key)."""
    pinned = [f"model.warmstart.num_threads={threads}"] if threads else []
    return [sys.executable, str(ROOT / "src" / "train.py"), f"task={arm.task}", *arm.overrides, f"seed={seed}",
            f"model.warmstart.seed={seed}", *pinned, f"tags=[compare,{arm.task},{arm.label}]",
            f"hydra.run.dir={run_dir}", *extra]


def resumable(run_dir: Path, cmd: Sequence[str]) -> bool:
    """Whether ``run_dir`` holds a killed run of this very command: its true last state
    (``checkpoints/last.ckpt``, written every epoch) and the same Hydra overrides, ``ckpt_path`` aside.
    A run of other overrides (another budget, a changed arm) is not resumed: its epochs would mix two
    settings in one curve."""
    last, recorded = run_dir / "checkpoints" / "last.ckpt", run_dir / ".hydra" / "overrides.yaml"
    if not (last.is_file() and recorded.is_file()):
        return False
    wanted = [o for o in cmd[2:] if not o.startswith(("hydra.", "ckpt_path="))]
    made = [o for o in (yaml.safe_load(recorded.read_text()) or []) if not o.startswith("ckpt_path=")]
    return made == wanted


def source_commit() -> str:
    """The commit a run starts from (``+dirty`` with uncommitted changes), taken before it trains: a
    run takes an hour, and the tree may move on meanwhile."""
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def warm_starts(run_dir: Path) -> List[str]:
    """The warm-start cache files a run's log names, built or loaded, in order: two arms are paired on
    the same warm start only if they name the same file (its key holds the settings and the numerics
    signature, so another machine or library version gives another file from the same seed)."""
    log = run_dir / "train.log"
    found = WARM_START_FILE.findall(log.read_text(errors="replace")) if log.exists() else []
    return list(dict.fromkeys(found))


def provenance(commit: str, cmd: Sequence[str], minutes: float, threads: Optional[int] = None,
               warm_start: Sequence[str] = ()) -> str:
    """What made a run's table: the commit it started from, the command, the time (of this process: a
    resumed run's table counts every process in its ``wall_s``), the machine and the warm start."""
    launch = f"OMP_NUM_THREADS={threads} " if threads else ""
    versions = ", ".join(f"{name} {v}" for name, v in library_versions().items())
    return (f"commit: {commit}\ncommand: {launch}python {' '.join(str(c) for c in cmd[1:])}\n"
            f"finished: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\nminutes: {minutes:.1f}\n"
            f"machine: {cpu_model()}; {versions}\nwarm start: {', '.join(warm_start) or 'not in the log'}\n")


def run_one(arm: Arm, seed: int, results_dir: Path, logs_dir: Path, extra: Sequence[str],
            threads: Optional[int] = None, restart: bool = False) -> bool:
    """Train one arm and seed (resuming a killed run of the same command unless ``restart``); on
    success copy its tables into ``results_dir``. Returns success."""
    run_dir = logs_dir / arm.task / arm.label / f"seed{seed}"
    cmd = command(arm, seed, run_dir, extra, threads)
    if not restart and resumable(run_dir, cmd):
        cmd.append("ckpt_path=last")  # the run folder's own last.ckpt (src.utils.resolve_ckpt_path)
    elif run_dir.exists():
        shutil.rmtree(run_dir)  # another setting's leftovers, or no epoch finished: from scratch
    env = {**os.environ, "HYDRA_FULL_ERROR": "1", **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    print(f"[compare] {arm.task}/{arm.label}/seed{seed}: {' '.join(cmd[1:])}", flush=True)
    commit, start = source_commit(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env)
    minutes = (time.perf_counter() - start) / 60
    table = run_dir / "results.csv"
    if proc.returncode != 0 or not table.exists():
        print(f"[compare] FAILED ({proc.returncode}) after {minutes:.1f} min; see {run_dir}", flush=True)
        return False
    target = result_path(results_dir, arm, seed)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(table, target)
    prop1 = run_dir / "prop1.csv"
    if prop1.exists():
        prop1_target = results_dir / "prop1" / arm.task / arm.label / f"seed{seed}.csv"
        prop1_target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(prop1, prop1_target)
    target.with_suffix(".txt").write_text(provenance(commit, cmd, minutes, threads, warm_starts(run_dir)))
    print(f"[compare] done in {minutes:.1f} min -> {target.relative_to(results_dir.parent)}", flush=True)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", choices=TASKS, help="only these tasks")
    parser.add_argument("--labels", nargs="+", help=f"only these arms ({', '.join(dict.fromkeys(a.label for a in plan()))})")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--results-dir", type=Path, default=ROOT / "docs" / "results")
    parser.add_argument("--logs-dir", type=Path, default=ROOT / "logs" / "compare")
    parser.add_argument("--dry-run", action="store_true", help="print what would run, run nothing")
    parser.add_argument("--threads", type=int, help="torch threads of every run and its warm start (OMP_NUM_THREADS "
                        "and model.warmstart.num_threads): 1 lets two sweeps share two cores without the "
                        "slow-down of two-thread runs contending (docs/benchmarks.md)")
    parser.add_argument("--restart", action="store_true",
                        help="start runs killed part-way from scratch instead of resuming their last checkpoint")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run (e.g. trainer.max_epochs=2)")
    args = parser.parse_args(argv)

    arms = [a for a in plan() if (not args.tasks or a.task in args.tasks) and (not args.labels or a.label in args.labels)]
    if args.labels:
        unknown = set(args.labels) - {a.label for a in plan()}
        if unknown:
            parser.error(f"unknown labels {sorted(unknown)}; allowed: {sorted({a.label for a in plan()})}")
    # seed-major: every arm of seed 1 before seed 2, so a stopped sweep leaves complete pairs
    todo = [(arm, seed) for seed in args.seeds for arm in arms]
    failures = 0
    for arm, seed in todo:
        done = result_path(args.results_dir, arm, seed)
        if done.exists():
            print(f"[compare] skip {arm.task}/{arm.label}/seed{seed}: {done} exists", flush=True)
            continue
        if args.dry_run:
            run_dir = args.logs_dir / arm.task / arm.label / f"seed{seed}"
            cmd = command(arm, seed, run_dir, args.overrides, args.threads)
            resume = " ckpt_path=last" if not args.restart and resumable(run_dir, cmd) else ""
            print(" ".join(cmd[1:]) + resume)
            continue
        failures += not run_one(arm, seed, args.results_dir, args.logs_dir, args.overrides, args.threads,
                                args.restart)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
