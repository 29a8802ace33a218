"""Tables and plots of the EMPG comparison, rebuilt from the committed per-run CSVs alone:

    python src/report.py                 # reads docs/results/runs/, writes docs/results/

Inputs: ``runs/<task>/<algo>/seed<k>.csv`` (one row per validation, written by the ResultsTable
callback and collected by ``scripts/compare.py``) and ``prop1/<task>/<algo>/seed<k>.csv`` (the last
epoch's per-step Proposition 1 table of a run). Outputs: ``summary.csv`` (one row per run),
``summary.md`` (per task and algorithm: mean +- std over seeds, and the paired differences EMPG - base
with 95% t intervals), ``curves_<task>.png`` (held-out success against environment steps, mean and
min-max band over seeds) and ``prop1.png``. The same inputs always give byte-identical CSV and Markdown.
"""
from __future__ import annotations

import argparse
import csv
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
METRIC = "val/success"

#: (treatment, base) pairs whose paired difference per seed the summary reports.
PAIRS = (("empg", "grpo"), ("dapo_empg", "dapo"), ("empg_scale_only", "grpo"), ("empg_bonus_only", "grpo"),
         ("gigpo_empg", "gigpo"))
#: Two-sided 95% Student-t quantiles t_{0.975, df}, df = 1..30 (standard tables); larger df use 1.96.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042)
SUMMARY_COLUMNS = ("task", "algo", "seed", "initial", "final", "best", "best_epoch", "epochs", "env_steps",
                   "wall_s")


@dataclass
class Run:
    task: str
    algo: str
    seed: int
    rows: List[Dict[str, str]]

    def series(self, key: str) -> List[float]:
        return [float(r[key]) for r in self.rows]

    @property
    def initial(self) -> float:
        return float(self.rows[0][METRIC])

    @property
    def final(self) -> float:
        return float(self.rows[-1][METRIC])

    @property
    def best(self) -> Tuple[float, int]:
        """Best held-out success after training started (epoch >= 1), and its epoch."""
        trained = [r for r in self.rows if int(r["epoch"]) >= 1] or self.rows
        row = max(trained, key=lambda r: (float(r[METRIC]), -int(r["epoch"])))
        return float(row[METRIC]), int(row["epoch"])


def load_runs(results_dir: Path) -> List[Run]:
    runs = []
    for path in sorted((results_dir / "runs").glob("*/*/seed*.csv")):
        rows = list(csv.DictReader(open(path, newline="")))
        if not rows or METRIC not in rows[0]:
            raise ValueError(f"{path}: no rows or no {METRIC} column")
        rows.sort(key=lambda r: int(r["epoch"]))
        runs.append(Run(task=path.parent.parent.name, algo=path.parent.name, seed=int(path.stem[4:]), rows=rows))
    return runs


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (n - 1; nan for a single value, which has no spread to show)."""
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else math.nan
    return mean, math.sqrt(var)


def paired_interval(diffs: Sequence[float]) -> Tuple[float, float, float]:
    """Mean paired difference and its two-sided 95% t interval (nan half-width for one pair)."""
    mean, std = mean_std(diffs)
    n = len(diffs)
    if n < 2:
        return mean, math.nan, math.nan
    t = T975[n - 2] if n - 1 <= len(T975) else 1.96
    half = t * std / math.sqrt(n)
    return mean, mean - half, mean + half


def pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.1f}"


def summary_rows(runs: Sequence[Run]) -> List[Dict[str, object]]:
    rows = []
    for r in sorted(runs, key=lambda r: (r.task, r.algo, r.seed)):
        best, best_epoch = r.best
        rows.append({"task": r.task, "algo": r.algo, "seed": r.seed, "initial": f"{r.initial:.4f}",
                     "final": f"{r.final:.4f}", "best": f"{best:.4f}", "best_epoch": best_epoch,
                     "epochs": int(r.rows[-1]["epoch"]), "env_steps": int(float(r.rows[-1]["env_steps"])),
                     "wall_s": f"{float(r.rows[-1]['wall_s']):.0f}"})
    return rows


def summary_markdown(runs: Sequence[Run]) -> str:
    by_arm: Dict[Tuple[str, str], Dict[int, Run]] = defaultdict(dict)
    for r in runs:
        by_arm[(r.task, r.algo)][r.seed] = r
    lines = ["# EMPG comparison: held-out success (%)", "",
             "Built by `python src/report.py` from `docs/results/runs/` alone. *final*: the last epoch's "
             "validation (the true last state, not the best epoch); *best epoch's success*: each run's best "
             "validation after training began, labelled as such; mean ± sample std over seeds; *gain*: "
             "final − initial per seed, mean ± 2 standard errors.", ""]
    for task in sorted({t for t, _ in by_arm}):
        lines += [f"## {task}", "",
                  "| algo | seeds | initial | final | gain (final − initial) | best epoch's success | env steps |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for (t, algo), seeds in sorted(by_arm.items()):
            if t != task:
                continue
            rs = [seeds[k] for k in sorted(seeds)]
            init_m, init_s = mean_std([r.initial for r in rs])
            fin_m, fin_s = mean_std([r.final for r in rs])
            gain_m, gain_s = mean_std([r.final - r.initial for r in rs])
            se2 = 2 * gain_s / math.sqrt(len(rs)) if len(rs) > 1 else math.nan
            best_m, _ = mean_std([r.best[0] for r in rs])
            steps = int(mean_std([float(r.rows[-1]["env_steps"]) for r in rs])[0])
            lines.append(f"| {algo} | {', '.join(str(k) for k in sorted(seeds))} | {pct(init_m)} ± {pct(init_s)} | "
                         f"{pct(fin_m)} ± {pct(fin_s)} | {pct(gain_m)} ± {pct(se2)} | {pct(best_m)} | {steps:,} |")
        pair_lines = []
        for treat, base in PAIRS:
            a, b = by_arm.get((task, treat)), by_arm.get((task, base))
            if not a or not b:
                continue
            common = sorted(set(a) & set(b))
            if not common:
                continue
            mean, lo, hi = paired_interval([a[k].final - b[k].final for k in common])
            pair_lines.append(f"| {treat} − {base} | {', '.join(map(str, common))} | {pct(mean)} | "
                              f"[{pct(lo)}, {pct(hi)}] |")
        if pair_lines:
            lines += ["", "Paired difference of final success (same seed, same warm start), points:", "",
                      "| comparison | seeds | mean | 95% interval |", "|---|---:|---:|---:|", *pair_lines]
        lines.append("")
    return "\n".join(lines)


def plot_curves(runs: Sequence[Run], task: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for algo in sorted({r.algo for r in runs if r.task == task}):
        rs = [r for r in runs if r.task == task and r.algo == algo]
        epochs = min(len(r.rows) for r in rs)  # seeds may have stopped at different epochs
        x = [sum(float(r.rows[i]["env_steps"]) for r in rs) / len(rs) for i in range(epochs)]
        ys = [[float(r.rows[i][METRIC]) * 100 for r in rs] for i in range(epochs)]
        mean = [sum(v) / len(v) for v in ys]
        line, = ax.plot(x, mean, marker="o", markersize=3, label=f"{algo} (n={len(rs)})")
        if len(rs) > 1:
            ax.fill_between(x, [min(v) for v in ys], [max(v) for v in ys], color=line.get_color(), alpha=0.15)
    ax.set_xlabel("environment steps (training rollouts)")
    ax.set_ylabel("held-out success (%)")
    ax.set_title(f"{task}: mean over seeds, band = min-max")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


def plot_prop1(table: Path, path: Path) -> None:
    """Proposition 1 from one run's last epoch: the squared score norm against step entropy (measured
    and its expectation 1 - sum p^2), and the update size with the base vs the EMPG advantage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(open(table, newline="")))
    col = {k: [float(r[k]) for r in rows] for k in rows[0]}
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    panels = (
        (left, "Proposition 1: gradient size follows entropy", "squared score norm (token mean)",
         (("score_norm_sq", "measured ||e_a − p||²"), ("expected_score_norm_sq", "1 − Σp² (expected)"))),
        (right, "update size: base vs EMPG-modulated", "logit-gradient size per step",
         (("grad_norm_base", "base |A|·||e_a − p||"), ("grad_norm_empg", "EMPG |A_mod|·||e_a − p||"))),
    )
    for ax, title, ylabel, series in panels:
        for key, label in series:
            ax.scatter(col["step_entropy"], col[key], s=6, alpha=0.4, label=label)
        ax.set_xlabel("step entropy H_t (nats)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.suptitle(f"{table.parent.parent.name}/{table.parent.name}/{table.stem}, last epoch, {len(rows)} steps")
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata={"Software": None})
    plt.close(fig)


def build(results_dir: Path = RESULTS) -> List[Path]:
    """Write every output from ``results_dir``'s inputs; returns the files written."""
    runs = load_runs(results_dir)
    if not runs:
        raise FileNotFoundError(f"no runs under {results_dir / 'runs'}; run scripts/compare.py first")
    written = []
    with open(results_dir / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(summary_rows(runs))
    (results_dir / "summary.md").write_text(summary_markdown(runs))
    written += [results_dir / "summary.csv", results_dir / "summary.md"]
    for task in sorted({r.task for r in runs}):
        plot_curves(runs, task, results_dir / f"curves_{task}.png")
        written.append(results_dir / f"curves_{task}.png")
    prop1 = _prop1_table(results_dir)
    if prop1 is not None:
        plot_prop1(prop1, results_dir / "prop1.png")
        written.append(results_dir / "prop1.png")
    return written


def _prop1_table(results_dir: Path) -> Optional[Path]:
    """The Proposition 1 table of an EMPG run: ``empg`` on the first task that has one, lowest seed."""
    tables = sorted((results_dir / "prop1").glob("*/empg/seed*.csv"))
    return tables[0] if tables else None


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    for path in build(args.results_dir):
        print(path)


if __name__ == "__main__":
    main()
