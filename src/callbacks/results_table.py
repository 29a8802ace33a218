"""One CSV row per validation pass: the learning curve of a run as a small table that outlives the
run (``scripts/compare.py`` collects these files; ``src/report.py`` reads only them)."""
from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from lightning import Callback, LightningModule, Trainer

#: Leading columns, in this order; every other ``val/*`` and ``rollout/*`` metric follows, sorted.
COLUMNS = ("epoch", "global_step", "env_steps", "wall_s", "val/success")


def _scalar(value: Any) -> Optional[float]:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return None
        value = value.item()
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


class ResultsTable(Callback):
    """Writes ``<path>`` (default ``<run dir>/results.csv``) after every validation pass.

    Row ``epoch`` k is the validation after k training epochs (0: the initial validation of the
    warm-started policy, when ``validate_before_training`` runs it). ``env_steps`` counts the
    environment steps of every training rollout played so far (``rollout/env_steps`` of the module's
    ``rollout_metrics``, which also give the row's ``rollout/*`` columns), the x axis
    of the learning curves. The file is rewritten whole (atomically) each time, so a killed run
    leaves a valid table of the epochs it finished; the callback's state rides in checkpoints so a
    resumed run continues the same table.

    At the end of training it also writes ``prop1_path``: the last epoch's per-step Proposition 1
    table of the module (``last_prop1``: step entropy, score norms, base vs modulated update size),
    the data of ``docs/results/prop1.png``.

    Args:
        path: the CSV file to write; None disables the callback.
        prop1_path: where the Proposition 1 table goes; None: not written.
    """

    def __init__(self, path: Optional[str] = None, prop1_path: Optional[str] = None) -> None:
        self.path = path
        self.prop1_path = prop1_path
        self.rows: List[Dict[str, float]] = []
        self.env_steps = 0.0
        self._counted_epoch = -1
        self._start = time.perf_counter()
        self._elapsed_before = 0.0  # wall seconds of earlier (resumed-from) processes

    # ------------------------------------------------------------------ hooks
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._count_rollout(trainer, pl_module)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.path is None or trainer.sanity_checking or trainer.global_rank != 0:
            return
        metrics = {k: _scalar(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if trainer.state.fn == "fit":
            self._count_rollout(trainer, pl_module)  # validation runs before on_train_epoch_end
            epoch = trainer.current_epoch + 1
            rollout = getattr(pl_module, "rollout_metrics", {})
            metrics.update({k: _scalar(v) for k, v in rollout.items() if k.startswith("rollout/")})
        elif any(r["epoch"] > 0 for r in self.rows):
            return  # a validation after training (`test: true` on the best checkpoint) is no point of the curve
        else:  # trainer.validate before fit: the initial policy
            epoch = 0
        row: Dict[str, float] = {"epoch": epoch, "global_step": trainer.global_step, "env_steps": self.env_steps,
                                 "wall_s": round(self._elapsed_before + time.perf_counter() - self._start, 1)}
        row.update({k: v for k, v in metrics.items() if v is not None})
        self.rows = [r for r in self.rows if r["epoch"] != epoch] + [row]
        self._write()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        table = getattr(pl_module, "last_prop1", None)
        if self.prop1_path is None or table is None or trainer.global_rank != 0:
            return
        from src.models.agent_module import PROP1_COLUMNS

        rows = [dict(zip(PROP1_COLUMNS, (round(float(x), 6) for x in r))) for r in table.tolist()]
        _write_csv(Path(self.prop1_path), list(PROP1_COLUMNS), rows)

    def _count_rollout(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._counted_epoch == trainer.current_epoch or trainer.state.fn != "fit":
            return
        steps = _scalar(getattr(pl_module, "rollout_metrics", {}).get("rollout/env_steps"))
        if steps is not None:
            self.env_steps += steps
            self._counted_epoch = trainer.current_epoch

    # ------------------------------------------------------------------ file
    def _write(self) -> None:
        extra = sorted({k for r in self.rows for k in r} - set(COLUMNS))
        _write_csv(Path(self.path), list(COLUMNS) + extra, sorted(self.rows, key=lambda r: r["epoch"]))

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> Dict[str, Any]:
        return {"rows": self.rows, "env_steps": self.env_steps, "counted_epoch": self._counted_epoch,
                "elapsed": self._elapsed_before + time.perf_counter() - self._start}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.rows = list(state_dict["rows"])
        self.env_steps = float(state_dict["env_steps"])
        self._counted_epoch = int(state_dict["counted_epoch"])
        self._elapsed_before = float(state_dict["elapsed"])
        self._start = time.perf_counter()


def _write_csv(path: Path, columns: List[str], rows: List[Dict[str, float]]) -> None:
    """Write atomically: a reader (or a kill) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
