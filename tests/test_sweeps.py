"""The real CLI: a Hydra multirun over algo x seed, and a wrong choice fails naming the allowed values."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def run_cli(args, tmp_path, artifact_dir):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, str(ROOT / "src" / "train.py"), *args, f"paths.artifact_dir={artifact_dir}",
           "extras.print_config=false", "extras.enforce_tags=false"]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_multirun_over_algos_and_seeds(tmp_path, artifact_dir):
    sweep_dir = tmp_path / "sweep"
    result = run_cli(["-m", "algo=empg,grpo", "seed=1,2", "debug=smoke", f"hydra.sweep.dir={sweep_dir}"],
                     tmp_path, artifact_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit())
    assert jobs == ["0", "1", "2", "3"]
    overrides = sorted((sweep_dir / j / ".hydra" / "overrides.yaml").read_text() for j in jobs)
    assert sum("algo=empg" in o for o in overrides) == 2 and sum("seed=2" in o for o in overrides) == 2


def test_cli_rejects_unknown_algo_with_allowed_values(tmp_path, artifact_dir):
    result = run_cli(["algo=nope"], tmp_path, artifact_dir)
    assert result.returncode != 0
    assert "Could not find 'algo/nope'" in result.stderr
    assert "empg" in result.stderr and "grpo" in result.stderr


@pytest.mark.slow
def test_ddp_spawn_on_cpu_runs_the_whole_loop(tmp_path, artifact_dir):
    """trainer=ddp_sim: two gloo processes each play their share of the groups, EMPG's statistics
    are gathered across them, and gradients are all-reduced; the run must finish and validate."""
    result = run_cli(["trainer=ddp_sim", "debug=smoke", "algo=empg", f"hydra.run.dir={tmp_path / 'run'}"],
                     tmp_path, artifact_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Validation success" in result.stdout + result.stderr
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
