"""Issue 15: a run killed with SIGKILL in the middle of an epoch and resumed from its last checkpoint ends
bit-identical (CPU) to the same run left alone: parameters, optimizer, and every logged per-epoch metric."""
import csv
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
import torch

from src.utils.utils import resolve_ckpt_path

ROOT = Path(__file__).resolve().parents[1]

# Deep Search smoke settings with several optimisation steps per epoch, so the kill lands between two
# updates of an epoch (the updates it already made are lost and must be replayed exactly).
RUN = ["debug=smoke", "task=deepsearch", "trainer.max_epochs=3", "task.groups=4", "task.group_size=4",
       "task.mini_batch_size=4", "logger=csv",
       "extras.print_config=false", "seed=7"]
KILL = ["+callbacks.kill_at._target_=kill_at.KillAt", "+callbacks.kill_at.epoch=1",
        "+callbacks.kill_at.batch=1"]
# wall-clock columns are the only ones allowed to differ
TIMING = ("wall_s", "time/")


def _train(run_dir: Path, artifacts: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "src" / "train.py"), *RUN, f"hydra.run.dir={run_dir}",
           f"paths.artifact_dir={artifacts}", *overrides]
    # the helpers folder on the path: the kill callback is imported by its module name
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests" / "helpers")]),
           "HYDRA_FULL_ERROR": "1"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def _rows(path: Path) -> List[Dict[str, str]]:
    return [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in csv.DictReader(open(path))]


def _logged_epochs(run_dir: Path) -> Dict[int, Dict[str, str]]:
    """Every metric Lightning's CSV logger wrote, merged per epoch over the run's logger versions (the
    resumed process writes a new version beside the killed one's)."""
    merged: Dict[int, Dict[str, str]] = {}
    for f in sorted((run_dir / "csv").glob("version_*/metrics.csv")):
        for row in csv.DictReader(open(f)):
            epoch = int(row["epoch"]) if row.get("epoch") else -1
            merged.setdefault(epoch, {}).update({k: v for k, v in row.items()
                                                 if v != "" and not k.startswith(TIMING) and k != "step"})
    return merged


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path):
    artifacts = tmp_path / "artifacts"
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    done = _train(reference, artifacts)
    assert done.returncode == 0, done.stderr[-3000:]

    crashed = _train(killed, artifacts, *KILL)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-3000:]
    last = killed / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["epoch"] == 0 and "rng_states" in state  # the kill came in epoch 1, after epoch 0's save
    # epoch 1 had taken optimisation steps before the kill: they are lost with the process
    assert (killed / "results.csv").exists()

    # ckpt_path=last in the killed run's folder finds its last checkpoint
    assert resolve_ckpt_path("last", str(killed), str(tmp_path / "none")) == str(last)
    resumed = _train(killed, artifacts, "ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    ref_state = torch.load(reference / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    end_state = torch.load(last, map_location="cpu", weights_only=True)
    assert end_state["epoch"] == ref_state["epoch"] == 2
    assert end_state["global_step"] == ref_state["global_step"] > state["global_step"] > 0
    for name, tensor in ref_state["state_dict"].items():
        assert torch.equal(end_state["state_dict"][name], tensor), name
    ref_moments = ref_state["optimizer_states"][0]["state"]
    for key, moments in ref_moments.items():
        for k, v in moments.items():
            assert torch.equal(end_state["optimizer_states"][0]["state"][key][k], v), (key, k)

    # the learning curves and every logged per-epoch metric are the same, the losses included
    assert _rows(killed / "results.csv") == _rows(reference / "results.csv")
    logged, expected = _logged_epochs(killed), _logged_epochs(reference)
    assert logged == expected
    assert any("train/loss" in m for m in expected.values())


def test_ckpt_path_resolution(tmp_path):
    old, new = tmp_path / "runs" / "a", tmp_path / "runs" / "b"
    (old / "checkpoints").mkdir(parents=True)
    (old / "checkpoints" / "epoch_000.ckpt").write_bytes(b"x")
    (old / "checkpoints" / "last.ckpt").write_bytes(b"x")
    new.mkdir()
    # a fresh run folder without checkpoints: `last` is the newest run's last.ckpt
    assert resolve_ckpt_path("last", str(new), str(tmp_path / "runs")) == str(old / "checkpoints" / "last.ckpt")
    assert resolve_ckpt_path(str(old), str(new), "") == str(old / "checkpoints" / "last.ckpt")
    assert resolve_ckpt_path(None, str(new), "") is None
    with pytest.raises(FileNotFoundError, match="ckpt_path=last"):
        resolve_ckpt_path("last", str(new), str(tmp_path / "elsewhere"))
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        resolve_ckpt_path(str(tmp_path / "missing.ckpt"), str(new), "")
