"""The LightningModule: holds the policy (and the frozen reference for KL), turns a rollout into
training rows with advantages (base estimator, then EMPG when enabled), and optimises the clipped
policy-gradient loss. Validation plays held-out episodes greedily."""
from __future__ import annotations

import copy
import time
from typing import Any, Dict, List, Optional

import torch
from lightning import LightningModule
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import grad_norm
from omegaconf import DictConfig, OmegaConf

from src.algos.empg import empg_advantages, empg_factors
from src.algos.advantages import informative_groups
from src.algos.estimators import compute_base_advantages
from src.algos.losses import aggregate_loss, entropy_from_logits, kl_penalty, policy_gradient_loss
from src.data.batch import response_logits, token_log_probs
from src.models.policy import Policy
from src.models.warmstart import cached_warm_start
from src.rollout.sampler import RolloutResult
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__, rank_zero_only=True)


def _plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


class AgentLitModule(LightningModule):
    """RL fine-tuning of an LLM agent.

    Args:
        policy: the causal LM and tokenizer (``src.models.policy.build_tiny_policy`` / ``load_hf_policy``).
        algo: the ``algo`` config: ``estimator`` (name + options), ``empg`` (enabled, k, k_future,
            zeta, eps), clip_low / clip_high / dual_clip, loss_agg, kl_coef / kl_type,
            entropy_coef.
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
        self.save_hyperparameters(logger=False, ignore=["policy", "optimizer", "scheduler"])
        self.algo, self.warmstart_cfg = algo, warmstart
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.model = policy.model
        self.tokenizer = policy.tokenizer
        self.fingerprint = policy.fingerprint
        self.ref_model: Optional[torch.nn.Module] = None
        self._prepared = False
        self._rollout_metrics: Dict[str, float] = {}
        self._histograms: Dict[str, torch.Tensor] = {}
        self._epoch_start = 0.0

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
        if ws.get("enabled") and datamodule is not None:
            pairs, expert_success = datamodule.expert_demonstrations(self.policy, ws["episodes"], ws["seed"])
            log.info(f"Expert: {len(pairs)} demonstration steps, success {expert_success:.3f}")
            cached_warm_start(self.policy, pairs, cache_dir=ws["cache_dir"], steps=ws["steps"],
                              batch_size=ws["batch_size"], lr=ws["lr"], seed=ws["seed"])
        if float(self.algo.get("kl_coef", 0.0)) > 0:
            self.ref_model = copy.deepcopy(self.model).requires_grad_(False).eval()

    # ------------------------------------------------------------------ rollout -> rows
    def prepare_rollout(self, rollout: RolloutResult) -> List[Dict[str, Any]]:
        """Per-step advantages for a rollout (base estimator, then EMPG) as training rows; stores
        the rollout's metrics for logging at the start of the epoch. With ``algo.filter_groups``
        the rows of groups without a learning signal are left out (possibly all of them: then the
        epoch makes no update, rather than Adam steps driven by momentum alone)."""
        start = time.perf_counter()
        episodes = sorted(rollout.episodes, key=lambda e: e.traj_id)
        num_traj = len(episodes)
        horizon = max([self.trainer.datamodule.max_steps] + [s.step_idx + 1 for s in rollout.steps])
        mask = torch.zeros((num_traj, horizon), dtype=torch.bool)
        entropy = torch.zeros((num_traj, horizon))
        for s in rollout.steps:
            mask[s.traj_id, s.step_idx] = True
            entropy[s.traj_id, s.step_idx] = s.step_entropy
        returns = torch.tensor([e.episode_return for e in episodes], dtype=torch.float32)
        group_ids = torch.tensor([e.group_id for e in episodes], dtype=torch.long)
        metrics: Dict[str, float] = {}
        if self.algo.get("filter_groups", False):
            keep = informative_groups(returns, group_ids)
            metrics["rollout/informative_group_frac"] = keep.float().mean().item() if num_traj else 0.0
            # dropped trajectories leave EMPG's batch statistics and the training rows alike
            mask = mask & keep[:, None]

        estimator = dict(self.algo["estimator"])
        base = compute_base_advantages(estimator.pop("name"), returns, mask, group_ids, **estimator)
        empg = self.algo.get("empg") or {}
        if empg.get("enabled", False):
            advantages = self._empg_global(base, entropy, mask, empg, metrics)
        else:
            advantages = base
        real = advantages[mask]
        metrics.update({
            "adv/mean": real.mean().item() if real.numel() else 0.0,
            "adv/std": real.std(unbiased=False).item() if real.numel() else 0.0,
            "adv/base_std": base[mask].std(unbiased=False).item() if real.numel() else 0.0,
        })
        for key, value in rollout.summary().items():
            metrics[f"rollout/{key}"] = value
        metrics["time/rollout_s"] = rollout.seconds + time.perf_counter() - start
        metrics["rollout/generated_tokens"] = float(rollout.generated_tokens)
        self._rollout_metrics = metrics
        self._histograms = {"rollout/step_entropy_hist": entropy[mask].clone(),
                            "adv/advantage_hist": real.clone()}

        return [s.training_row(advantages[s.traj_id, s.step_idx]) for s in rollout.steps
                if bool(mask[s.traj_id, s.step_idx])]

    def _empg_global(self, base: torch.Tensor, entropy: torch.Tensor, mask: torch.Tensor,
                     empg: Dict[str, Any], metrics: Dict[str, float]) -> torch.Tensor:
        """EMPG over the *global* batch: under DDP every rank gathers all ranks' (B, T) tensors,
        modulates the whole batch and keeps its own rows, so the result equals the single-process
        result on the same episodes."""
        kw = {k: float(empg[k]) for k in ("k", "k_future", "eps") if k in empg}
        world = self.trainer.world_size if self._trainer is not None else 1
        local_b = base.shape[0]
        if world > 1:
            def gather(t: torch.Tensor) -> torch.Tensor:
                return self.all_gather(t.float().to(self.device)).reshape(-1, t.shape[1]).cpu()
            g_base, g_entropy, g_mask = gather(base), gather(entropy), gather(mask).bool()
        else:
            g_base, g_entropy, g_mask = base, entropy, mask
        modulated = empg_advantages(g_base, g_entropy, g_mask, zeta=float(empg.get("zeta", 0.1)),
                                    normalize=bool(empg.get("normalize", True)), **kw)
        g, f_next = empg_factors(g_entropy, g_mask, **kw)
        has_next = torch.zeros_like(g_mask)
        has_next[:, :-1] = g_mask[:, 1:]
        for name, values in (("g", g[g_mask]), ("f", f_next[has_next])):
            if values.numel():
                metrics.update({f"empg/{name}_mean": values.mean().item(), f"empg/{name}_min": values.min().item(),
                                f"empg/{name}_max": values.max().item()})
        rank = self.trainer.global_rank if world > 1 else 0
        return modulated[rank * local_b:(rank + 1) * local_b]

    # ------------------------------------------------------------------ training
    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()
        for key, value in self._rollout_metrics.items():
            self.log(key, value, on_step=False, on_epoch=True, sync_dist=True)
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                for key, values in self._histograms.items():
                    if values.numel():
                        logger.experiment.add_histogram(key, values, self.global_step)

    def training_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> Optional[torch.Tensor]:
        algo = self.algo
        entropy_coef, kl_coef = float(algo.get("entropy_coef", 0.0)), float(algo.get("kl_coef", 0.0))
        if self.trainer.world_size == 1 and not bool(batch["advantages"].any()) and not entropy_coef and not kl_coef:
            # Nothing to learn from (e.g. the placeholder row of an epoch whose groups were all
            # filtered out): skip, rather than let Adam's momentum alone move the weights. Under
            # DDP every rank must step together, so there the zero-gradient step is taken.
            return None
        temperature = float(self.hparams.temperature)
        mask = batch["response_mask"]
        logits = response_logits(self.model, batch)
        log_probs = token_log_probs(logits, batch["targets"], temperature)
        agg = algo.get("loss_agg", "token-mean")
        loss, stats = policy_gradient_loss(
            log_probs, batch["old_log_probs"], batch["advantages"], mask,
            clip_low=float(algo.get("clip_low", 0.2)), clip_high=float(algo.get("clip_high", 0.2)),
            dual_clip=algo.get("dual_clip"), agg=agg,
        )
        n = batch["targets"].shape[0]
        self.log("train/pg_loss", loss, on_step=False, on_epoch=True, batch_size=n)
        entropy = aggregate_loss(entropy_from_logits(logits.detach() / temperature), mask, agg)
        self.log("train/token_entropy", entropy, on_step=False, on_epoch=True, batch_size=n)
        if entropy_coef:
            loss = loss - entropy_coef * aggregate_loss(entropy_from_logits(logits / temperature), mask, agg)
        if kl_coef and self.ref_model is not None:
            with torch.no_grad():
                ref_log_probs = token_log_probs(response_logits(self.ref_model, batch), batch["targets"], temperature)
            kl = aggregate_loss(kl_penalty(log_probs, ref_log_probs, algo.get("kl_type", "low-var")), mask, agg)
            loss = loss + kl_coef * kl
            self.log("train/kl", kl, on_step=False, on_epoch=True, batch_size=n)
        for key, value in stats.items():
            self.log(f"train/{key}", value, on_step=False, on_epoch=True, batch_size=n)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        norms = grad_norm(self.model, norm_type=2)
        if "grad_2.0_norm_total" in norms:
            self.log("train/grad_norm", norms["grad_2.0_norm_total"], on_step=False, on_epoch=True)

    def on_train_epoch_end(self) -> None:
        self.log("time/train_s", time.perf_counter() - self._epoch_start, on_step=False, on_epoch=True)

    # ------------------------------------------------------------------ validation
    def validation_step(self, batch: List[int], batch_idx: int) -> None:
        result = self.trainer.datamodule.play_validation(self.policy, batch)
        for key, value in result.summary().items():
            self.log(f"val/{key}", value, on_step=False, on_epoch=True, sync_dist=True,
                     batch_size=len(batch), prog_bar=key == "success")

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Dict[str, Any]:
        params = [p for p in self.trainer.model.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params=params)
        if self.scheduler_factory is not None:
            scheduler = self.scheduler_factory(optimizer=optimizer)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        return {"optimizer": optimizer}
