"""The LightningModule: holds the policy (and the frozen reference for KL), turns a rollout into
training rows with advantages (base estimator, then EMPG when enabled), and optimises the clipped
policy-gradient loss. Validation plays held-out episodes greedily."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Dict, List, Optional, Tuple

import torch
from lightning import LightningModule
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import grad_norm
from omegaconf import DictConfig, OmegaConf

from src.algos.advantages import anchor_ids, overlong_penalty, shared_state_fraction
from src.algos.diagnostics import pearson_corr, step_score_norms, token_score_stats
from src.algos.empg import empg_advantages, empg_factors
from src.algos.estimators import (
    NEEDS_VALUE_HEAD,
    Estimator,
    StepBatch,
    compute_base_advantages,
    parse_estimator,
)
from src.algos.losses import (
    AGG_MODES,
    KL_KINDS,
    aggregate_loss,
    entropy_from_logits,
    kl_penalty,
    policy_gradient_loss,
    value_loss,
)
from src.data.batch import response_logits, response_logits_and_values, rescore_steps, score_rows, token_log_probs
from src.data.rollout_datamodule import ValidationBatch
from src.policy.lora import has_lora, reference_model
from src.policy.model import Policy, check_context, check_vocabulary, uses_autocast
from src.models.warmstart import cached_dagger_round, cached_warm_start
from src.rollout.sampler import RolloutResult, concat_rollouts
from src.utils.determinism import restore_rng_states, rng_states
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__, rank_zero_only=True)

#: Columns of ``AgentLitModule.last_prop1``: per training step, its entropy H_t, the measured squared
#: score norm ||e_a - p||^2 (token mean), its expectation 1 - sum p^2, and the logit-gradient size with
#: the base advantage |A| ||e_a - p|| and with the (EMPG-)modulated one.
PROP1_COLUMNS = ("step_entropy", "score_norm_sq", "expected_score_norm_sq", "grad_norm_base", "grad_norm_empg")


@dataclass(frozen=True)
class StepAdvantage:
    """One training step's advantages as the loss uses them: the base estimator's, EMPG's factors
    (None without EMPG) and the final one."""

    base: float
    advantage: float
    g: Optional[float] = None
    f: Optional[float] = None


def _plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def check_algo_config(algo: Dict[str, Any]) -> None:
    """Fail at construction, naming the key and its allowed values, rather than mid-training."""
    parse_estimator(str((algo.get("estimator") or {}).get("name")))
    choices = {"loss_agg": AGG_MODES, "kl_type": KL_KINDS}
    for key, allowed in choices.items():
        if key in algo and algo[key] not in allowed:
            raise ValueError(f"algo.{key}={algo[key]!r} is not allowed; allowed values: {', '.join(allowed)}")
    for key in ("clip_low", "clip_high", "kl_coef", "entropy_coef"):
        if float(algo.get(key, 0.0)) < 0:
            raise ValueError(f"algo.{key} must be >= 0, got {algo[key]}")
    if algo.get("dual_clip") is not None and float(algo["dual_clip"]) <= 1.0:
        raise ValueError(f"algo.dual_clip must be null or > 1, got {algo['dual_clip']}")
    overlong = algo.get("overlong") or {}
    if overlong.get("enabled", False) and not 0.0 < float(overlong.get("buffer_fraction", 0.0)) <= 1.0:
        raise ValueError(f"algo.overlong.buffer_fraction must be in (0, 1], got {overlong.get('buffer_fraction')}")
    if int(algo.get("ppo_epochs", 1)) < 1:
        raise ValueError(f"algo.ppo_epochs must be >= 1, got {algo['ppo_epochs']}")
    if int(algo.get("max_consecutive_skips", 10)) < 1:
        raise ValueError(f"algo.max_consecutive_skips must be >= 1, got {algo['max_consecutive_skips']}")
    if algo.get("recompute_old_logprobs", "auto") not in ("auto", True, False):
        raise ValueError(f"algo.recompute_old_logprobs={algo['recompute_old_logprobs']!r} is not allowed; "
                         "allowed values: auto, true, false")
    if algo.get("filter_groups") and parse_estimator(str(algo["estimator"]["name"])) is Estimator.GIGPO:
        log.warning("algo.filter_groups=true with GiGPO drops groups whose returns are all equal, although "
                    "their step-level advantages need not be zero (verl-agent's 'GiGPO (dynamic)')")


class AgentLitModule(LightningModule):
    """RL fine-tuning of an LLM agent.

    Args:
        policy: the causal LM and tokenizer (``src.policy.model.build_tiny_policy`` / ``load_hf_policy``).
        algo: the ``algo`` config (``configs/algo/``): ``estimator`` (name + options), ``empg``
            (enabled, k, k_future, zeta, eps, normalize), ``overlong``, clip_low / clip_high /
            dual_clip, loss_agg, kl_coef / kl_type / kl_in_reward, entropy_coef, ``value`` (coef,
            clip, lr; PPO + GAE only).
        optimizer: a partial optimizer (``_partial_: true``) that receives the parameters.
        temperature: the rollout sampling temperature; the loss scores tokens at the same one.
        warmstart: supervised warm start on expert demonstrations (enabled, episodes, steps,
            batch_size, lr, seed, cache_dir); off for real instruct models.
        scheduler: optional partial LR scheduler.
        name_or_path: where a pretrained policy came from (hub id or directory); recorded in the
            hyperparameters only, the ``policy`` builder does the loading.
    """

    def __init__(
        self,
        policy: Policy,
        algo: Dict[str, Any],
        optimizer: Any,
        temperature: float = 1.0,
        warmstart: Optional[Dict[str, Any]] = None,
        scheduler: Any = None,
        name_or_path: Optional[str] = None,
    ) -> None:
        super().__init__()
        # Plain containers only: checkpoints then load with torch.load(weights_only=True). The
        # optimizer/scheduler partials are kept as attributes; the run's Hydra config rebuilds them.
        algo, warmstart = _plain(algo), _plain(warmstart) or {"enabled": False}
        check_algo_config(algo)
        self.save_hyperparameters(logger=False, ignore=["policy", "optimizer", "scheduler"])
        self.algo, self.warmstart_cfg = algo, warmstart
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.model = policy.model
        self.tokenizer = policy.tokenizer
        self.fingerprint = policy.fingerprint
        self.ref_model: Optional[torch.nn.Module] = None
        # PPO's critic: a linear value head on the policy's last hidden state (shared trunk),
        # zero-initialised so the first baseline is 0
        self.value_head: Optional[torch.nn.Linear] = None
        if parse_estimator(algo["estimator"]["name"]) in NEEDS_VALUE_HEAD:
            self.value_head = torch.nn.Linear(policy.model.config.hidden_size, 1)
            torch.nn.init.zeros_(self.value_head.weight)
            torch.nn.init.zeros_(self.value_head.bias)
        self._kl_coef = float(algo.get("kl_coef", 0.0))
        self._prepared = False
        self._rollout_metrics: Dict[str, float] = {}
        self._histograms: Dict[str, torch.Tensor] = {}
        self._prop1: List[torch.Tensor] = []
        #: the last epoch's per-step Proposition 1 table (rows: steps; columns: ``PROP1_COLUMNS``)
        self.last_prop1: Optional[torch.Tensor] = None
        #: the current epoch's training rollout and, per step in the same order, the advantages its
        #: loss uses (base, EMPG's g and f when enabled, final); the last validation pass's episodes
        self.last_rollout: Optional[RolloutResult] = None
        self.last_step_advantages: List[StepAdvantage] = []
        self.last_val_rollout: Optional[RolloutResult] = None
        self._epoch_start = 0.0
        # the epoch time split: this epoch's seconds in optimisation steps
        self._update_seconds, self._batch_start = 0.0, 0.0
        self._skipped_updates = 0  # this epoch's updates skipped for a non-finite advantage, loss or gradient
        self._skip_streak = 0  # skips since the last update that was taken

    @property
    def rollout_metrics(self) -> Dict[str, float]:
        """The metrics of the current epoch's rollout (``rollout/*``, ``adv/*``, ``empg/*``, ...), as
        prepared before its updates; Lightning's ``callback_metrics`` hold them only after the epoch."""
        return dict(self._rollout_metrics)

    @property
    def policy(self) -> Policy:
        return Policy(model=self.model, tokenizer=self.tokenizer, fingerprint=self.fingerprint)

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str) -> None:
        """Warm start (cached) and the frozen reference; once, whichever stage comes first."""
        if self._prepared:
            return
        self._prepared = True
        ws = self.warmstart_cfg
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        check_vocabulary(self.policy)
        if datamodule is not None:  # before any rollout or warm start: a prompt that can never fit
            check_context(self.policy, datamodule.sampler.max_prompt_tokens, datamodule.sampler.max_new_tokens)
        if ws.get("enabled") and datamodule is not None:
            pairs, expert_success = datamodule.expert_demonstrations(self.policy, ws["episodes"], ws["seed"],
                                                                     noise=float(ws.get("noise", 0.0)))
            log.info(f"Expert: {len(pairs)} demonstration steps, success {expert_success:.3f}")
            done = cached_warm_start(self.policy, pairs, cache_dir=ws["cache_dir"], steps=ws["steps"],
                                     batch_size=ws["batch_size"], lr=ws["lr"], seed=ws["seed"],
                                     num_threads=ws.get("num_threads"))
            self._dagger(ws, datamodule, pairs, done.key)
        if self._kl_coef > 0 and not has_lora(self.model):
            # with LoRA the reference is the base with the adapters disabled (reference_model), not a second copy
            self.ref_model = copy.deepcopy(self.model).requires_grad_(False).eval()

    def _dagger(self, ws: Dict[str, Any], datamodule: Any, pairs: List[Tuple[str, str]], key: str) -> None:
        """``model.warmstart.dagger_rounds`` rounds of DAgger after the warm start: the policy plays
        ``dagger_episodes`` training tasks, the expert labels every state it reached, and the policy is
        fine-tuned ``dagger_steps`` steps on the demonstrations plus every label so far."""
        sampler = datamodule.sampler
        labelled: List[Dict[str, List[int]]] = []
        for round_index in range(int(ws.get("dagger_rounds", 0))):
            round_seed = int(ws["seed"]) + round_index
            collect = partial(datamodule.dagger_rows, self.policy, int(ws["dagger_episodes"]), round_seed)
            settings = {"round": round_index, "episodes": int(ws["dagger_episodes"]), "task": datamodule.hparams.env_name,
                        "max_new_tokens": sampler.max_new_tokens, "max_prompt_tokens": sampler.max_prompt_tokens,
                        "temperature": sampler.temperature, "backend": sampler.backend.name}
            done, labelled = cached_dagger_round(self.policy, key, pairs, labelled, collect, settings=settings,
                                                 cache_dir=ws["cache_dir"], steps=int(ws["dagger_steps"]),
                                                 batch_size=ws["batch_size"], lr=ws["lr"], seed=round_seed,
                                                 num_threads=ws.get("num_threads"))
            key = done.key

    # ------------------------------------------------------------------ rollout -> rows
    def recomputes_old_log_probs(self) -> bool:
        """``algo.recompute_old_logprobs``: true, false, or auto = whenever the policy is not fp32 or its
        forward runs under bf16 autocast (``model.policy.autocast``).

        In low precision the sampler's KV-cached, one-token-at-a-time log-probs differ from a full
        forward pass (issue 12 reports max |d log p| 0.145 and first-update ratios 0.87-1.16 on a tiny
        bf16 model; the test sees > 1e-3), so the importance ratio would start away from 1 and clip for
        no reason. verl
        recomputes them, and EMPG's step entropies, with the trainer's own forward pass."""
        mode = self.algo.get("recompute_old_logprobs", "auto")
        if mode == "auto":
            return next(self.model.parameters()).dtype != torch.float32 or uses_autocast(self.model)
        return bool(mode)

    @torch.no_grad()
    def rescore_rollout(self, rollout: RolloutResult, batches: List[List[int]]) -> None:
        """Replace each step's sampled old log-probs and token entropies with the trainer's forward
        pass, scored in ``batches`` (lists of step indices: the first pass of the mini-batches the loss
        will see, so the first update's ratio is exactly 1)."""
        rescore_steps(self.model, rollout.steps, self.tokenizer.pad_token_id, float(self.hparams.temperature),
                      batches=batches)

    def prepare_rollout(self, rollout: RolloutResult, played_metrics: Optional[Dict[str, float]] = None
                        ) -> List[Dict[str, Any]]:
        """Per-step advantages for a rollout as training rows: row penalties are collected (the
        environment's invalid-action penalty, the overlong penalty), step rewards shaped (KL in the
        reward), the base estimator runs on the *global* batch, then EMPG.

        Args:
            rollout: the episodes to train on (the DataModule's group filter already applied).
            played_metrics: ``rollout/*`` metrics of every episode played this epoch (the filter
                drops some); defaults to the summary of ``rollout``.

        The metrics are stored and logged at the start of the epoch."""
        start = time.perf_counter()
        datamodule = self.trainer.datamodule
        local, shaping_metrics = self._step_batch(rollout, datamodule.local_trajectories, datamodule.max_steps,
                                                  datamodule.sampler.max_new_tokens)
        world = self.trainer.world_size if self._trainer is not None else 1
        batch = local.map(self._gather) if world > 1 else local
        metrics: Dict[str, float] = dict(played_metrics or {f"rollout/{k}": v for k, v in rollout.summary().items()})
        # how much of the batch a step-level comparison can reach (GiGPO's step groups; logged for every estimator)
        metrics["rollout/shared_state_frac"] = shared_state_fraction(batch.group_ids, batch.anchors, batch.mask)

        estimator = dict(self.algo["estimator"])
        base = compute_base_advantages(estimator.pop("name"), batch, **estimator)
        advantages = base.advantages
        empg = self.algo.get("empg") or {}
        g = f_next = None
        if empg.get("enabled", False):
            advantages, g, f_next = self._empg(base.advantages, batch, empg, metrics)

        # this rank's trajectories: the gathered batch is the ranks' batches in rank order
        rank = self.trainer.global_rank if world > 1 else 0
        b = local.mask.shape[0]
        mine = slice(rank * b, (rank + 1) * b)
        advantages, base_adv = advantages[mine], base.advantages[mine]
        targets = base.value_targets[mine] if base.value_targets is not None else None
        mask = local.mask
        real = advantages[mask]
        metrics.update({
            "adv/mean": real.mean().item() if real.numel() else 0.0,
            "adv/std": real.std(unbiased=False).item() if real.numel() else 0.0,
            "adv/base_std": base_adv[mask].std(unbiased=False).item() if real.numel() else 0.0,
            "reward/step_reward_mean": local.step_rewards[mask].mean().item() if real.numel() else 0.0,
        })
        metrics["time/rollout_s"] = rollout.seconds + time.perf_counter() - start
        # the epoch's time split: sampling, environments (every rollout played for this epoch, the group
        # filter's extra ones too), advantages (this method); time/update_s comes at the epoch's end
        metrics["time/generation_s"] = rollout.generation_seconds
        metrics["time/env_s"] = rollout.env_seconds
        metrics["time/advantages_s"] = time.perf_counter() - start
        metrics["rollout/generated_tokens"] = float(rollout.generated_tokens)
        metrics.update(shaping_metrics)
        self._rollout_metrics = metrics
        self._histograms = {"rollout/step_entropy_hist": local.entropy[mask].clone(),
                            "adv/advantage_hist": real.clone()}

        def at(x: Optional[torch.Tensor], s) -> float:
            return float(x[s.traj_id, s.step_idx]) if x is not None else 0.0

        rows = [s.training_row(at(advantages, s), at(base_adv, s), at(local.values, s), at(targets, s))
                for s in rollout.steps]
        # what the episode recorder shows beside each step: exactly the advantages the loss uses
        g_mine, f_mine = (g[mine], f_next[mine]) if g is not None else (None, None)
        self.last_rollout = rollout
        self.last_step_advantages = [
            StepAdvantage(base=row["base_advantage"], advantage=row["advantage"],
                          g=at(g_mine, s) if g_mine is not None else None,
                          f=at(f_mine, s) if f_mine is not None else None)
            for s, row in zip(rollout.steps, rows)]
        return rows

    def _gather(self, t: torch.Tensor) -> torch.Tensor:
        """All ranks' (B, ...) tensors concatenated in rank order, on the CPU, dtype kept."""
        gathered = self.all_gather(t.to(self.device))
        return gathered.reshape(-1, *t.shape[1:]).to(t.dtype).cpu()

    def _step_batch(self, rollout: RolloutResult, num_traj: int, horizon: int,
                    max_new_tokens: int) -> Tuple[StepBatch, Dict[str, float]]:
        """The rollout as (B, T) tensors with B = ``num_traj`` (the rank's full share, so all ranks
        gather equal shapes; trajectories the group filter dropped stay all-padding) and shaped
        step rewards; plus the shaping's ``reward/*`` metrics."""
        if len(rollout.episodes) > num_traj or any(s.step_idx >= horizon for s in rollout.steps):
            raise ValueError(f"rollout does not fit ({num_traj} trajectories x {horizon} steps): "
                             f"{len(rollout.episodes)} episodes, longest {max(s.step_idx for s in rollout.steps) + 1}")
        shape = (num_traj, horizon)
        mask, rewards, penalties = torch.zeros(shape, dtype=torch.bool), torch.zeros(shape), torch.zeros(shape)
        entropy, lengths = torch.zeros(shape), torch.zeros(shape)
        anchors = torch.zeros(shape, dtype=torch.long)
        group_ids = torch.full((num_traj,), -1, dtype=torch.long)
        anchor_of = anchor_ids([s.anchor_obs for s in rollout.steps]).tolist()
        for s, anchor in zip(rollout.steps, anchor_of):
            i, t = s.traj_id, s.step_idx
            mask[i, t], rewards[i, t], penalties[i, t], entropy[i, t] = True, s.reward, s.penalty, s.step_entropy
            lengths[i, t], anchors[i, t], group_ids[i] = len(s.response_ids), anchor, s.group_id
        # padding trajectories get ids of their own (negative, distinct per rank) so they join no group
        pad = group_ids < 0
        group_ids[pad] = -1 - (torch.arange(num_traj)[pad] + num_traj * self.global_rank)

        # row penalties stay on their own row (verl-agent's apply_invalid_action_penalty), never in the return
        shaping_metrics: Dict[str, float] = {"reward/invalid_penalty": penalties[mask].mean().item() if mask.any()
                                             else 0.0}
        overlong = self.algo.get("overlong") or {}
        if overlong.get("enabled", False):
            buffer = max(1, round(float(overlong["buffer_fraction"]) * max_new_tokens))
            penalty = overlong_penalty(lengths, max_len=max_new_tokens, buffer_len=buffer,
                                       factor=float(overlong.get("factor", 1.0)))
            penalties = penalties - torch.where(mask, penalty, torch.zeros_like(penalty))  # penalty is <= 0
            shaping_metrics["reward/overlong_penalty"] = penalty[mask].mean().item() if mask.any() else 0.0
        values = None
        if self.value_head is not None or (self._kl_coef and self.algo.get("kl_in_reward", False)):
            rows = [s.training_row(0.0) for s in rollout.steps]
            pad_id = self.tokenizer.pad_token_id
            temperature = float(self.hparams.temperature)
            if self.value_head is not None:
                step_values = score_rows(self.model, rows, pad_id, temperature, value_head=self.value_head).values
                values = torch.zeros(shape)
                for s, v in zip(rollout.steps, step_values):
                    values[s.traj_id, s.step_idx] = v
            if self._kl_coef and self.algo.get("kl_in_reward", False):
                with reference_model(self.model, self.ref_model) as ref:
                    ref_lp = score_rows(ref, rows, pad_id, temperature).log_probs
                step_kl = torch.zeros(shape)
                kind = self.algo.get("kl_type", "low-var")
                for s, ref in zip(rollout.steps, ref_lp):
                    if ref:
                        old = torch.tensor(s.old_log_probs)
                        step_kl[s.traj_id, s.step_idx] = kl_penalty(old, torch.tensor(ref), kind).sum()
                rewards = rewards - self._kl_coef * step_kl
                shaping_metrics["reward/kl"] = step_kl[mask].mean().item() if mask.any() else 0.0
        batch = StepBatch(mask=mask, step_rewards=rewards, entropy=entropy, group_ids=group_ids, anchors=anchors,
                          values=values, penalties=penalties)
        return batch, shaping_metrics

    def _empg(self, base: torch.Tensor, batch: StepBatch, empg: Dict[str, Any],
              metrics: Dict[str, float]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """EMPG over the whole (global) batch: the modulated advantages and the (B, T) factors g and
        f_next (f_next[b, t] is the bonus step t gets from step t+1's clarity), whose ranges are logged."""
        kw = {k: float(empg[k]) for k in ("k", "k_future", "eps") if k in empg}
        modulated = empg_advantages(base, batch.entropy, batch.mask, zeta=float(empg.get("zeta", 0.1)),
                                    normalize=bool(empg.get("normalize", True)), **kw)
        g, f_next = empg_factors(batch.entropy, batch.mask, **kw)
        has_next = torch.zeros_like(batch.mask)
        has_next[:, :-1] = batch.mask[:, :-1] & batch.mask[:, 1:]
        for name, values in (("g", g[batch.mask]), ("f", f_next[has_next])):
            if values.numel():
                metrics.update({f"empg/{name}_mean": values.mean().item(), f"empg/{name}_min": values.min().item(),
                                f"empg/{name}_max": values.max().item()})
        return modulated, g, f_next

    # ------------------------------------------------------------------ training
    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()
        self._update_seconds = 0.0
        self._prop1 = []
        self._skipped_updates = 0
        for key, value in self._rollout_metrics.items():
            self.log(key, value, on_step=False, on_epoch=True, sync_dist=True)
        self._log_histograms(self._histograms)

    def _log_histograms(self, histograms: Dict[str, torch.Tensor]) -> None:
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                for key, values in histograms.items():
                    if values.numel():
                        logger.experiment.add_histogram(key, values, self.global_step)

    def training_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> Optional[torch.Tensor]:
        algo = self.algo
        entropy_coef = float(algo.get("entropy_coef", 0.0))
        kl_in_loss = self._kl_coef and not algo.get("kl_in_reward", False)
        if (self.trainer.world_size == 1 and not bool(batch["advantages"].any()) and not entropy_coef
                and not kl_in_loss):
            # Nothing to learn from (e.g. the placeholder row of an epoch whose groups were all
            # filtered out): skip, rather than let Adam's momentum alone move the weights. Under
            # DDP every rank must step together, so there the zero-gradient step is taken.
            return None
        if not bool(torch.isfinite(batch["advantages"]).all()):
            return self._skip_update("advantage", batch["advantages"])
        temperature = float(self.hparams.temperature)
        mask = batch["response_mask"]
        logits, values = response_logits_and_values(self.model, batch, self.value_head)
        log_probs = token_log_probs(logits, batch["targets"], temperature)
        agg = algo.get("loss_agg", "token-mean")
        loss, stats = policy_gradient_loss(
            log_probs, batch["old_log_probs"], batch["advantages"], mask,
            clip_low=float(algo.get("clip_low", 0.2)), clip_high=float(algo.get("clip_high", 0.2)),
            dual_clip=algo.get("dual_clip"), agg=agg,
        )
        n = batch["targets"].shape[0]
        if not bool(torch.isfinite(loss)):
            return self._skip_update("policy-gradient loss", loss)
        self.log("train/pg_loss", loss, on_step=False, on_epoch=True, batch_size=n)
        entropy = aggregate_loss(entropy_from_logits(logits.detach() / temperature), mask, agg)
        self.log("train/token_entropy", entropy, on_step=False, on_epoch=True, batch_size=n)
        if entropy_coef:
            loss = loss - entropy_coef * aggregate_loss(entropy_from_logits(logits / temperature), mask, agg)
        if kl_in_loss and (self.ref_model is not None or has_lora(self.model)):
            with torch.no_grad(), reference_model(self.model, self.ref_model) as ref:
                ref_log_probs = token_log_probs(response_logits(ref, batch), batch["targets"], temperature)
            kl = aggregate_loss(kl_penalty(log_probs, ref_log_probs, algo.get("kl_type", "low-var")), mask, agg)
            loss = loss + self._kl_coef * kl
            self.log("train/kl", kl, on_step=False, on_epoch=True, batch_size=n)
        if values is not None:
            value_cfg = algo.get("value") or {}
            v_loss, v_stats = value_loss(values, batch["old_values"], batch["value_targets"],
                                         clip=value_cfg.get("clip", 0.2))
            loss = loss + float(value_cfg.get("coef", 0.5)) * v_loss
            stats = {**stats, "value_loss": v_loss.detach(), **v_stats}
        if not bool(torch.isfinite(loss)):
            return self._skip_update("loss", loss)
        for key, value in stats.items():
            self.log(f"train/{key}", value, on_step=False, on_epoch=True, batch_size=n)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        self._record_prop1(logits.detach(), batch, temperature)
        return loss

    def _record_prop1(self, logits: torch.Tensor, batch: Dict[str, torch.Tensor], temperature: float) -> None:
        """Per step: measured squared score norm, its expectation 1 - sum p^2, and the size of the
        step's logit gradient |A| * ||e_a - p|| with the base and with the modulated advantage."""
        norms = step_score_norms(token_score_stats(logits, batch["targets"], temperature), batch["response_mask"])
        self._prop1.append(torch.stack([
            batch["step_entropy"].float(), norms["sampled_sq"], norms["expected_sq"],
            batch["base_advantages"].abs() * norms["sampled_norm"], batch["advantages"].abs() * norms["sampled_norm"],
        ], dim=1).cpu())

    def _log_prop1(self) -> None:
        """Proposition 1's diagnostic over the epoch's training steps. Under DDP each rank measures
        its own rows and the logger records rank 0's: a diagnostic, so no collective (an undefined
        correlation is skipped on one rank and not another, which a synced log would deadlock on)."""
        if not self._prop1:
            return
        self.last_prop1 = torch.cat(self._prop1)
        entropy, sampled_sq, expected_sq, grad_base, grad_mod = self.last_prop1.unbind(dim=1)
        self._prop1 = []
        scalars = {
            "prop1/score_norm_sq": sampled_sq.mean(), "prop1/expected_score_norm_sq": expected_sq.mean(),
            "prop1/corr_score_norm_sq_expected": pearson_corr(sampled_sq, expected_sq),
            "prop1/corr_grad_entropy_base": pearson_corr(grad_base, entropy),
            "prop1/corr_grad_entropy_empg": pearson_corr(grad_mod, entropy),
        }
        for key, value in scalars.items():
            if torch.isfinite(value):  # undefined correlations (constant inputs) are not logged
                self.log(key, value, on_step=False, on_epoch=True, rank_zero_only=True)
        self._log_histograms({"prop1/grad_norm_base_hist": grad_base, "prop1/grad_norm_empg_hist": grad_mod,
                              "prop1/score_norm_sq_hist": sampled_sq})

    def _skip_update(self, what: str, value: torch.Tensor) -> Optional[torch.Tensor]:
        """Skip this update: on one device nothing is back-propagated (None); under DDP every rank must
        join the gradient all-reduce, so the non-finite loss is returned and the all-reduced gradients,
        non-finite on every rank alike, are dropped in :meth:`on_before_optimizer_step`."""
        if self.trainer.world_size > 1:
            return value if value.requires_grad else self._nonfinite_loss()
        self._count_skip(what)
        return None

    def _nonfinite_loss(self) -> torch.Tensor:
        """A NaN loss connected to every trainable parameter (their gradients all become NaN)."""
        params = [p for p in self.parameters() if p.requires_grad]
        return sum((p.sum() * float("nan") for p in params), torch.zeros((), device=self.device))

    def _count_skip(self, what: str) -> None:
        self._skipped_updates += 1
        self._skip_streak += 1
        limit = int(self.algo.get("max_consecutive_skips", 10))
        log.warning(f"skipped an update: non-finite {what} (epoch {self.current_epoch}, step {self.global_step}; "
                    f"{self._skip_streak} in a row, the run stops at {limit})")
        if self._skip_streak >= limit:
            raise FloatingPointError(
                f"{self._skip_streak} consecutive updates had a non-finite {what} and were skipped: the run stops "
                f"rather than train on nothing (algo.max_consecutive_skips={limit}). The weights and checkpoints "
                "hold no NaN; look at the learning rate, the rewards and the advantages of the last rollout.")

    def on_before_optimizer_step(self, optimizer) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads and not all(bool(torch.isfinite(g).all()) for g in grads):
            # dropping the gradients makes the optimizer leave every parameter, and its moments, as they were
            for group in optimizer.param_groups:
                for p in group["params"]:
                    p.grad = None
            self._count_skip("gradient")
            return
        if grads:
            self._skip_streak = 0
        norms = grad_norm(self, norm_type=2)
        if "grad_2.0_norm_total" in norms:
            self.log("train/grad_norm", norms["grad_2.0_norm_total"], on_step=False, on_epoch=True)

    def on_train_epoch_end(self) -> None:
        self.log("train/skipped_updates", float(self._skipped_updates), on_step=False, on_epoch=True, reduce_fx="sum")
        self._log_prop1()
        self.log("time/train_s", time.perf_counter() - self._epoch_start, on_step=False, on_epoch=True)
        self.log("time/update_s", self._update_seconds, on_step=False, on_epoch=True)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # forward, loss, backward and optimizer step of one mini-batch (validation is not in it)
        self._update_seconds += time.perf_counter() - self._batch_start

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        self._val_results: List[RolloutResult] = []

    def validation_step(self, batch: ValidationBatch, batch_idx: int) -> None:
        self._val_results.append(self.trainer.datamodule.play_validation(self.policy, batch.task_indices, batch.sample))

    def on_validation_epoch_end(self) -> None:
        # one summary over the whole pass, not a mean of batch means: a per-family metric is then the
        # mean over that family's episodes however the batches split them
        results = self._val_results
        if not results:
            return
        played = concat_rollouts(results)
        self.last_val_rollout = played
        summary = played.summary()
        summary.update(type(self.trainer.datamodule.val_envs[0]).summary_metrics(summary))
        for key, value in summary.items():
            self.log(f"val/{key}", value, on_step=False, on_epoch=True, sync_dist=True, prog_bar=key == "success")

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        # Rollouts sample from their own per-epoch generators (RolloutDataModule.sampling_generator); the
        # global ones are saved too, so whatever else draws from them (a model with dropout, a user's
        # callback) continues after a resume as it would have. Under DDP rank 0's states are saved.
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        if "rng_states" in checkpoint:
            restore_rng_states(checkpoint["rng_states"])
        else:
            log.warning("The checkpoint holds no random-generator states (written before they were saved): "
                        "the resumed run will not replay the interrupted one exactly")

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Dict[str, Any]:
        value_lr = (self.algo.get("value") or {}).get("lr")
        head = set(id(p) for p in self.value_head.parameters()) if self.value_head is not None else set()
        params = [p for p in self.trainer.model.parameters() if p.requires_grad and id(p) not in head]
        groups: List[Dict[str, Any]] = [{"params": params}]
        if head:
            # a fresh value head may need a larger step than a pretrained policy (algo.value.lr)
            groups.append({"params": list(self.value_head.parameters()),
                           **({"lr": float(value_lr)} if value_lr is not None else {})})
        optimizer = self.optimizer_factory(params=groups)
        if self.scheduler_factory is not None:
            scheduler = self.scheduler_factory(optimizer=optimizer)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        return {"optimizer": optimizer}
