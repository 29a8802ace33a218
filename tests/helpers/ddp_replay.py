"""Pieces of the distributed-equivalence test that spawned processes must import by name."""
from pathlib import Path
from typing import Any, Dict, List, Tuple

import torch
from lightning import Callback

from src.data.rollout_datamodule import RolloutDataModule, kept_rollout
from src.rollout.sampler import RolloutResult
from src.rollout.synthetic import synthetic_rollout


class ReplayDataModule(RolloutDataModule):
    """Serves one fixed synthetic rollout instead of playing: rank r trains on the groups
    [r * local_groups, (r + 1) * local_groups), so the ranks together hold the whole batch. It
    records the training rows it serves (prompt -> advantage) in ``out_dir``."""

    def __init__(self, rollout_kwargs: Dict[str, Any], out_dir: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rollout_kwargs, self.out_dir = rollout_kwargs, out_dir

    def collect_rollout(self, policy, epoch, filter_groups=False, max_gen_batches=1
                        ) -> Tuple[RolloutResult, Dict[str, float]]:
        first = self._rank * self.local_groups
        return kept_rollout([(synthetic_rollout(**self.rollout_kwargs), range(first, first + self.local_groups))]), {}

    def train_dataloader(self):
        loader = super().train_dataloader()
        rows = {tuple(r["prompt_ids"]): r["advantage"] for r in loader.dataset.rows}
        torch.save(rows, Path(self.out_dir) / f"rows_rank{self._rank}.pt")
        return loader


class SaveGradients(Callback):
    """Saves every parameter's gradient just before the first optimiser step (after DDP's
    all-reduce, before clipping) to ``out_dir/grads_rank{r}.pt``."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def on_before_optimizer_step(self, trainer, module, optimizer) -> None:
        if trainer.global_step == 0:
            grads: Dict[str, torch.Tensor] = {n: p.grad.detach().clone() for n, p in module.named_parameters()
                                              if p.grad is not None}
            torch.save(grads, Path(self.out_dir) / f"grads_rank{trainer.global_rank}.pt")


def rows_of(out_dir: Path, ranks: List[int]) -> Dict[tuple, float]:
    merged: Dict[tuple, float] = {}
    for r in ranks:
        merged.update(torch.load(out_dir / f"rows_rank{r}.pt"))
    return merged
