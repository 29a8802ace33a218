"""Recorded episodes: what the agent saw, said and did at every step, with the numbers the update
used beside each step, as JSON lines a person (or ``python src/episodes.py <run dir>``) can read.

Scalars say that a run does not learn; the episodes say why (an agent that names an object's place
before it has seen it, or repeats a failed command to the step cap). The module keeps what is
needed (``AgentLitModule.last_rollout``, ``last_step_advantages``, ``last_val_rollout``); this
callback turns a sample of it into files and TensorBoard text.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from src.rollout.sampler import RolloutResult, StepRecord

#: Per-episode keys of a record, in file order (``steps`` holds the per-step records).
EPISODE_FIELDS = ("epoch", "split", "env", "task_id", "task_type", "group_id", "traj_id", "expert", "won", "return",
                  "length", "num_invalid", "metrics", "steps")
#: Per-step keys of a record. The four advantage keys are null in validation episodes (no update
#: uses them) and ``g`` / ``f`` are null when EMPG is off.
STEP_FIELDS = ("step", "observation", "anchor_obs", "response", "action", "valid", "feedback", "reward",
               "penalty", "entropy", "tokens", "token_entropies", "token_log_probs", "base_advantage", "g", "f",
               "advantage")


def _number(x: Any) -> Optional[float]:
    """A JSON-safe float: NaN and infinities would make the line invalid JSON, so they become null
    (and the schema test, which wants every number finite, sees them)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


class EpisodeRecorder(Callback):
    """Writes ``<dirpath>/epoch_<k>_train.jsonl`` after each training epoch and
    ``<dirpath>/epoch_<k>_val.jsonl`` after each validation, one JSON object per episode.

    Epoch k follows ``ResultsTable``: the validation before training is epoch 0, the training
    rollout of the k-th epoch and the validation after it are epoch k. Validation plays the same
    task indices in the same order every time, so the first ``num_episodes`` validation episodes
    are the same tasks in every epoch and can be compared. The training sample is the first
    ``num_episodes`` episodes of the rollout the loss trained on (after the group filter), whose
    groups are contiguous, so the sample is whole groups or the leading members of one. Standalone
    validations after training (``test: true`` evaluates the best checkpoint) are not recorded:
    their epoch number would be ambiguous. Under DDP, rank 0 records its own share of episodes.

    Args:
        dirpath: folder of the JSONL files (created on the first write).
        num_episodes: episodes per epoch and split; -1: all; 0: recording off (no file, no work).
        tensorboard_episodes: of those, how many per split also go to TensorBoard as text
            (``episodes/train``, ``episodes/val``), when a TensorBoardLogger is attached.
        tensorboard_chars: observations and responses longer than this are cut in TensorBoard's
            text (the JSONL keeps them whole).
    """

    def __init__(self, dirpath: str, num_episodes: int = 4, tensorboard_episodes: int = 2,
                 tensorboard_chars: int = 600) -> None:
        if num_episodes < -1:
            raise ValueError(f"num_episodes must be -1 (all), 0 (off) or a positive count, got {num_episodes}")
        self.dirpath = Path(dirpath)
        self.num_episodes = num_episodes
        self.tensorboard_episodes = tensorboard_episodes
        self.tensorboard_chars = tensorboard_chars
        # the rollouts already written: a pass that played nothing leaves the module's previous one in
        # place, which must not be written again under the new epoch
        self._written: Dict[str, Optional[RolloutResult]] = {"train": None, "val": None}

    # ------------------------------------------------------------------ hooks
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.num_episodes == 0 or trainer.global_rank != 0:
            return
        rollout = getattr(pl_module, "last_rollout", None)
        advantages = getattr(pl_module, "last_step_advantages", [])
        self._record(trainer, pl_module, "train", trainer.current_epoch + 1, rollout, advantages)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.num_episodes == 0 or trainer.sanity_checking or trainer.global_rank != 0:
            return
        if trainer.state.fn == "fit":
            epoch = trainer.current_epoch + 1
        elif trainer.current_epoch == 0:  # trainer.validate before fit: the initial policy
            epoch = 0
        else:
            return
        self._record(trainer, pl_module, "val", epoch, getattr(pl_module, "last_val_rollout", None), [])

    # ------------------------------------------------------------------ records
    def _record(self, trainer: Trainer, pl_module: LightningModule, split: str, epoch: int,
                rollout: Optional[RolloutResult], advantages: Sequence[Any]) -> None:
        if rollout is None or rollout is self._written[split]:
            return
        self._written[split] = rollout
        env = str(getattr(trainer.datamodule, "env_name", "") or "")
        records = episode_records(rollout, pl_module.tokenizer, split, epoch, env, self.num_episodes,
                                  advantages if split == "train" else None)
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"epoch_{epoch}_{split}.jsonl"
        tmp = path.with_suffix(".jsonl.tmp")  # a reader (or a kill) never sees half a file
        with open(tmp, "w") as f:
            for record in records:
                f.write(json.dumps(record, default=str, allow_nan=False) + "\n")
        tmp.replace(path)
        self._log_text(trainer, split, records[:self.tensorboard_episodes])

    def _log_text(self, trainer: Trainer, split: str, records: List[Dict[str, Any]]) -> None:
        if not records:
            return
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                text = "\n\n---\n\n".join(episode_markdown(r, self.tensorboard_chars) for r in records)
                logger.experiment.add_text(f"episodes/{split}", text, trainer.global_step)


def episode_records(rollout: RolloutResult, tokenizer: Any, split: str, epoch: int, env: str, limit: int,
                    advantages: Optional[Sequence[Any]] = None) -> List[Dict[str, Any]]:
    """The first ``limit`` episodes of ``rollout`` (all when -1) as JSON-ready dicts.

    ``advantages``: per step of ``rollout.steps``, in the same order, the ``StepAdvantage`` the loss
    used (training rollouts); None for validation."""
    episodes = rollout.episodes if limit < 0 else rollout.episodes[:limit]
    chosen = {e.traj_id for e in episodes}
    steps: Dict[int, List[Dict[str, Any]]] = {t: [] for t in chosen}
    per_step: Iterable[Any] = advantages if advantages is not None else [None] * len(rollout.steps)
    for step, adv in zip(rollout.steps, per_step):
        if step.traj_id in chosen:
            steps[step.traj_id].append(step_record(step, tokenizer, adv))
    return [{
        "epoch": epoch, "split": split, "env": env, "task_id": e.task_id, "task_type": e.task_type,
        "group_id": e.group_id, "traj_id": e.traj_id, "expert": bool(e.expert), "won": bool(e.won),
        "return": _number(e.episode_return),
        "length": e.num_steps, "num_invalid": e.num_invalid,
        "metrics": {k: _number(v) for k, v in e.metrics.items()},
        "steps": sorted(steps[e.traj_id], key=lambda s: s["step"]),
    } for e in episodes]


def step_record(step: StepRecord, tokenizer: Any, adv: Any = None) -> Dict[str, Any]:
    """One step: the prompt decoded as the model read it (chat markup and history included), the
    raw observation, the response with its tokens' text, entropy and log-prob, and the advantages."""
    return {
        "step": step.step_idx,
        "observation": tokenizer.decode(step.prompt_ids, skip_special_tokens=False),
        "anchor_obs": step.anchor_obs,
        "response": step.response_text,
        "action": step.action,
        "valid": bool(step.action_valid),
        "feedback": step.feedback,
        "reward": _number(step.reward),
        "penalty": _number(step.penalty),
        "entropy": _number(step.step_entropy),
        "tokens": tokenizer.batch_decode([[t] for t in step.response_ids], skip_special_tokens=False),
        "token_entropies": [_number(x) for x in step.token_entropies],
        "token_log_probs": [_number(x) for x in step.old_log_probs],
        "base_advantage": _number(adv.base) if adv is not None else None,
        "g": _number(adv.g) if adv is not None else None,
        "f": _number(adv.f) if adv is not None else None,
        "advantage": _number(adv.advantage) if adv is not None else None,
    }


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f" … [{len(text) - limit} more characters]"


def _fmt(x: Optional[float]) -> str:
    return "–" if x is None else f"{x:.3f}"


def episode_markdown(record: Dict[str, Any], max_chars: int = 600) -> str:
    """An episode as Markdown for TensorBoard's text tab: a header line, then per step the raw
    observation, the response, the executed action and the step's numbers."""
    kind = f" ({record['task_type']})" if record["task_type"] else ""
    player = " · played by the expert" if record["expert"] else ""
    lines = [f"**epoch {record['epoch']} · {record['split']} · task {record['task_id']}{kind}{player} · "
             f"{'won' if record['won'] else 'lost'} · return {_fmt(record['return'])} · {record['length']} steps**", ""]
    for s in record["steps"]:
        numbers = f"entropy {_fmt(s['entropy'])} · reward {_fmt(s['reward'])}"
        if s["penalty"]:
            numbers += f" · penalty {_fmt(s['penalty'])}"
        if s["advantage"] is not None:
            numbers += f" · advantage {_fmt(s['base_advantage'])} → {_fmt(s['advantage'])}"
            if s["g"] is not None:
                numbers += f" (g {_fmt(s['g'])}, f {_fmt(s['f'])})"
        validity = "valid" if s["valid"] else "invalid"
        lines += [f"*step {s['step'] + 1}* · {numbers}", "", "```", _cut(s["anchor_obs"], max_chars), "```",
                  "```", _cut(s["response"], max_chars), "```", f"→ `{s['action']}` ({validity})", ""]
    return "\n".join(lines)
