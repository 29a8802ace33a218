"""src/report.py rebuilds the comparison's tables and plots from per-run CSVs alone (numbers worked by
hand), and scripts/compare.py runs each arm once, skipping what is done."""
import csv
import sys
from pathlib import Path

import pytest

from src.report import build, paired_interval

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
import compare  # noqa: E402


def _write_run(root: Path, task: str, algo: str, seed: int, success, steps_per_epoch=100):
    path = root / "runs" / task / algo / f"seed{seed}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "global_step", "env_steps", "wall_s", "val/success"])
        for epoch, s in enumerate(success):
            writer.writerow([epoch, 4 * epoch, steps_per_epoch * epoch, 60 * epoch, s])


@pytest.fixture
def results(tmp_path):
    # grpo finals .10 .20 .30, empg finals .20 .20 .45 (initial .05 for all, same warm start per seed)
    for seed, (g, e) in enumerate([(0.10, 0.20), (0.20, 0.20), (0.30, 0.45)], start=1):
        _write_run(tmp_path, "alfworld", "grpo", seed, [0.05, 0.5, g])
        _write_run(tmp_path, "alfworld", "empg", seed, [0.05, 0.1, e])
    prop1 = tmp_path / "prop1" / "alfworld" / "empg" / "seed1.csv"
    prop1.parent.mkdir(parents=True)
    prop1.write_text("step_entropy,score_norm_sq,expected_score_norm_sq,grad_norm_base,grad_norm_empg\n"
                     "0.5,0.3,0.31,1.0,1.2\n2.0,0.8,0.79,1.0,0.6\n")
    return tmp_path


def test_paired_interval_hand_worked():
    # diffs .10, 0, .15: mean .083333, sample std .076376, se .044096, t(0.975, 2) = 4.303 -> +-.189746
    mean, lo, hi = paired_interval([0.10, 0.0, 0.15])
    assert mean == pytest.approx(0.0833333, abs=1e-6)
    assert (lo, hi) == (pytest.approx(0.0833333 - 0.189746, abs=1e-5), pytest.approx(0.0833333 + 0.189746, abs=1e-5))


def test_report_builds_summary_and_plots_reproducibly(results):
    written = build(results)
    names = {p.name for p in written}
    assert names == {"summary.csv", "summary.md", "curves_alfworld.png", "prop1.png"}
    rows = list(csv.DictReader(open(results / "summary.csv")))
    assert [(r["algo"], r["seed"], r["final"], r["best"], r["best_epoch"]) for r in rows] == [
        ("empg", "1", "0.2000", "0.2000", "2"), ("empg", "2", "0.2000", "0.2000", "2"),
        ("empg", "3", "0.4500", "0.4500", "2"),
        ("grpo", "1", "0.1000", "0.5000", "1"), ("grpo", "2", "0.2000", "0.5000", "1"),
        ("grpo", "3", "0.3000", "0.5000", "1")]
    assert all(r["initial"] == "0.0500" and r["env_steps"] == "200" and r["epochs"] == "2" for r in rows)
    md = (results / "summary.md").read_text()
    # empg final 28.3 +- 14.4 (std of .20 .20 .45); the paired difference 8.3 [-10.6, 27.3]
    assert "| empg | 1, 2, 3 | 5.0 ± 0.0 | 28.3 ± 14.4 |" in md
    assert "| empg − grpo | 1, 2, 3 | 8.3 | [-10.6, 27.3] |" in md
    before = {p.name: p.read_bytes() for p in written if p.suffix in (".csv", ".md")}
    build(results)
    assert {n: (results / n).read_bytes() for n in before} == before
    assert (results / "curves_alfworld.png").stat().st_size > 1000


def test_a_single_seed_shows_no_spread(tmp_path):
    _write_run(tmp_path, "webshop", "gigpo", 2, [0.02, 0.04])
    build(tmp_path)
    assert "| gigpo | 2 | 2.0 ± n/a | 4.0 ± n/a | 2.0 ± n/a | 4.0 | 100 |" in (tmp_path / "summary.md").read_text()


def test_compare_plan_covers_the_issue_and_skips_done_runs(tmp_path, capsys):
    arms = {(a.task, a.label) for a in compare.plan()}
    assert {(t, x) for t in compare.TASKS for x in ("grpo", "empg")} <= arms
    assert {("alfworld", x) for x in ("dapo", "dapo_empg", "empg_scale_only", "empg_bonus_only")} <= arms
    ablation = {a.label: a.overrides for a in compare.plan() if a.task == "alfworld"}
    assert ablation["empg_scale_only"] == ("algo=empg", "algo.empg.zeta=0")
    assert ablation["empg_bonus_only"] == ("algo=empg", "algo.empg.k=0")
    steps = {(a.task, a.label): a.overrides for a in compare.plan() if a.label.startswith("gigpo")}
    assert steps[("alfworld", "gigpo_empg")] == ("algo=gigpo_empg",)
    assert steps[("webshop", "gigpo")] == ("algo=gigpo", "algo.estimator.norm_by_std=false")
    assert len(steps) == 4
    _write_run(tmp_path, "alfworld", "grpo", 1, [0.1, 0.2])
    assert compare.main(["--tasks", "alfworld", "--labels", "grpo", "empg", "--seeds", "1", "--dry-run",
                         "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "skip alfworld/grpo/seed1" in out
    assert "task=alfworld algo=empg seed=1 model.warmstart.seed=1" in out


def _killed_run(logs: Path, arm: "compare.Arm", seed: int, overrides) -> Path:
    """A run folder as a killed training leaves it: Hydra's overrides and the per-epoch last.ckpt."""
    run_dir = logs / arm.task / arm.label / f"seed{seed}"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    return run_dir


def test_compare_resumes_a_killed_run_of_the_same_command_only(tmp_path, capsys):
    arm = next(a for a in compare.plan() if a.task == "alfworld" and a.label == "gigpo")
    logs = tmp_path / "logs"
    cmd = compare.command(arm, 2, logs / "alfworld" / "gigpo" / "seed2", ["trainer.max_epochs=4"], threads=1)
    same = [o for o in cmd[2:] if not o.startswith("hydra.")]
    run_dir = _killed_run(logs, arm, 2, same)
    assert same[:3] == ["task=alfworld", "algo=gigpo", "seed=2"] and "trainer.max_epochs=4" in same
    assert compare.resumable(run_dir, cmd)
    # once resumed, Hydra records ckpt_path=last too: a second kill still resumes
    (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in same + ["ckpt_path=last"]))
    assert compare.resumable(run_dir, cmd + ["ckpt_path=last"])
    other = compare.command(arm, 2, run_dir, ["trainer.max_epochs=8"], threads=1)
    assert not compare.resumable(run_dir, other)  # another budget: its epochs are not this run's
    (run_dir / "checkpoints" / "last.ckpt").unlink()
    assert not compare.resumable(run_dir, cmd)  # killed before its first epoch ended: nothing to resume

    _killed_run(logs, arm, 3, [o for o in compare.command(arm, 3, run_dir, [], threads=1)[2:]
                               if not o.startswith("hydra.")])
    base = ["--tasks", "alfworld", "--labels", "gigpo", "--seeds", "3", "--threads", "1", "--dry-run",
            "--results-dir", str(tmp_path / "results"), "--logs-dir", str(logs)]
    assert compare.main(base) == 0
    assert capsys.readouterr().out.strip().endswith("ckpt_path=last")
    assert compare.main(base + ["--restart"]) == 0
    assert "ckpt_path" not in capsys.readouterr().out


def test_provenance_names_the_machine_and_the_warm_start_a_run_used(tmp_path):
    run_dir = tmp_path / "run"
    assert compare.warm_starts(run_dir) == []  # no log: nothing claimed
    run_dir.mkdir()
    (run_dir / "train.log").write_text(
        "[..][src.models.warmstart][INFO] - Warm start: 2000 SFT steps ... cached at /a/warmstart/warmstart-7ca1f.pt\n"
        "[..][src.models.warmstart][INFO] - Warm start loaded from cache /a/warmstart/warmstart-7ca1f.pt\n"
        "[..][src.models.warmstart][INFO] - Warm start loaded from cache /b/warmstart-0042.pt\n")
    assert compare.warm_starts(run_dir) == ["warmstart-7ca1f.pt", "warmstart-0042.pt"]  # a resume that changed it
    text = compare.provenance("abc", ["python", "src/train.py", "seed=1"], 1.0, 1, compare.warm_starts(run_dir))
    lines = dict(line.split(": ", 1) for line in text.splitlines())
    assert lines["warm start"] == "warmstart-7ca1f.pt, warmstart-0042.pt"
    assert "torch " in lines["machine"] and "transformers " in lines["machine"]
    assert compare.provenance("abc", ["python", "x"], 1.0).splitlines()[-1] == "warm start: not in the log"


@pytest.mark.slow
def test_compare_runs_an_arm_and_collects_its_table(tmp_path):
    args = ["--tasks", "deepsearch", "--labels", "empg", "--seeds", "1", "--results-dir", str(tmp_path / "results"),
            "--logs-dir", str(tmp_path / "logs"), "debug=smoke", "algo.filter_groups=false",
            f"paths.artifact_dir={tmp_path / 'artifacts'}", "logger=[]"]
    assert compare.main(args) == 0
    table = tmp_path / "results" / "runs" / "deepsearch" / "empg" / "seed1.csv"
    rows = list(csv.DictReader(open(table)))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    made_by = table.with_suffix(".txt").read_text()
    assert made_by.startswith("commit: ") and "command: python " in made_by and "algo=empg seed=1" in made_by
    assert (tmp_path / "results" / "prop1" / "deepsearch" / "empg" / "seed1.csv").exists()
    mtime = table.stat().st_mtime_ns
    assert compare.main(args) == 0  # done: skipped, the file untouched
    assert table.stat().st_mtime_ns == mtime
    # killed after its last epoch, before the copy: the rerun resumes the checkpoint instead of training again
    first = table.read_text()
    table.unlink()
    assert compare.main(args) == 0
    assert table.read_text() == first  # the curve, epoch 0 included, rode in the checkpoint
    assert "ckpt_path=last" in table.with_suffix(".txt").read_text()


RESULTS_DIR = Path(__file__).parents[1] / "docs" / "results"
SUPERSEDED = sorted(p for p in (RESULTS_DIR / "superseded").glob("*") if p.is_dir())


@pytest.mark.parametrize("committed", [RESULTS_DIR, *SUPERSEDED],
                         ids=lambda p: str(p.relative_to(RESULTS_DIR)) if p != RESULTS_DIR else "current")
def test_committed_results_are_what_the_report_builds_from_the_committed_runs(tmp_path, committed):
    """The acceptance check of the comparison: docs/results/summary.{csv,md} (and those of every superseded
    sweep kept under docs/results/superseded/) are exactly what ``python src/report.py`` makes of the committed
    per-run CSVs (nobody edited a number by hand)."""
    import shutil

    if not (committed / "runs").exists():
        pytest.skip("no comparison runs committed yet")
    copy = tmp_path / "results"
    shutil.copytree(committed / "runs", copy / "runs")
    if (committed / "prop1").exists():
        shutil.copytree(committed / "prop1", copy / "prop1")
    build(copy)
    for name in ("summary.csv", "summary.md"):
        assert (copy / name).read_text() == (committed / name).read_text(), name
