"""Diagnostic: can the RL update fit a *fixed small set* of training tasks? (docs/tuning.md, Deep Search run 3)

    python scripts/fixed_task_check.py 64 seed=42 trainer.max_epochs=30 task.val_episodes=100

Runs ``src/train.py`` with the given Hydra overrides, except that every training group's task index is
taken modulo N, so the rollouts cycle over the first N training tasks. If training-rollout success does not
rise on a set this small, the update itself is broken; if it rises but held-out success does not, the
problem is transfer, not the gradient.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.data import rollout_datamodule  # noqa: E402


def main() -> None:
    if len(sys.argv) < 2 or not sys.argv[1].isdigit():
        sys.exit(__doc__)
    num_tasks = int(sys.argv.pop(1))
    draw = rollout_datamodule.RolloutDataModule.train_resets

    def fixed_resets(self, epoch, attempt=0):
        resets, group_ids = draw(self, epoch, attempt)
        return [{"options": {"index": r["options"]["index"] % num_tasks}} for r in resets], group_ids

    rollout_datamodule.RolloutDataModule.train_resets = fixed_resets
    from src.train import main as train_main

    sys.argv[1:1] = ["--config-path", str(ROOT / "configs")]
    train_main()


if __name__ == "__main__":
    main()
