"""The on-policy DataModule: every epoch it plays ``groups x group_size`` fresh episodes with the
current policy and serves the resulting step rows (with advantages) as mini-batches."""
from __future__ import annotations

import os
import random
from dataclasses import replace
from functools import partial
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import torch
from lightning import LightningDataModule
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset, Sampler

from envs import make_env
from envs.base import TextEnv
from src.algos.advantages import informative_groups
from src.policy.model import Policy
from src.rollout.env_guard import EnvGuard
from src.rollout.expert import expert_demonstrations
from src.rollout.sampler import EpisodeRecord, MultiTurnSampler, RolloutResult, StepRecord
from src.utils.checks import require_number
from src.utils.pylogger import RankedLogger

from src.data.batch import collate_steps, rescore_steps

log = RankedLogger(__name__, rank_zero_only=True)


class EnvironmentFailure(RuntimeError):
    """Too many episodes of one rollout failed inside the environment (raised or timed out)."""


def kept_rollout(parts: Sequence[Tuple[RolloutResult, Sequence[int]]]) -> RolloutResult:
    """The kept groups of one or more rollouts as one rollout: steps stay in the order they were
    played, trajectories are renumbered 0..n-1 (their rows in the (B, T) step tensors) in order of
    (rollout, trajectory); group ids stay as they were (globally unique)."""
    steps: List[StepRecord] = []
    episodes: List[EpisodeRecord] = []
    for result, group_ids in parts:
        keep = set(group_ids)
        new_id = {}
        for e in result.episodes:
            if e.group_id in keep:
                new_id[e.traj_id] = len(episodes)
                episodes.append(replace(e, traj_id=new_id[e.traj_id]))
        steps.extend(replace(s, traj_id=new_id[s.traj_id]) for s in result.steps if s.group_id in keep)
    return RolloutResult(steps=steps, episodes=episodes)


class RowDataset(Dataset):
    def __init__(self, rows: Sequence[Dict[str, Any]]):
        self.rows = list(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Dict[str, Any]:
        return self.rows[i]


class LengthGroupedBatches(Sampler[List[int]]):
    """Mini-batches of row indices for ``passes`` passes over one rollout (PPO's several epochs per
    rollout, while Lightning still sees one epoch per rollout).

    Each pass is shuffled, cut into mega-batches of ``group * batch_size`` rows, and each mega-batch
    is sorted by sequence length before it is split into mini-batches, whose order is shuffled
    again. Rows of one mini-batch then have similar lengths, so left padding wastes little compute
    (first-step prompts are a third of the length of later ones), while every mini-batch is still a
    random draw from the rollout.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, passes: int = 1, seed: int = 0, group: int = 4):
        if batch_size < 1 or passes < 1:
            raise ValueError(f"batch_size ({batch_size}) and passes ({passes}) must be >= 1")
        self.lengths, self.batch_size, self.passes, self.seed, self.group = list(lengths), batch_size, passes, seed, group

    def __iter__(self) -> Iterator[List[int]]:
        g = torch.Generator().manual_seed(self.seed)
        for _ in range(self.passes):
            order = torch.randperm(len(self.lengths), generator=g).tolist()
            mega = self.batch_size * self.group
            batches: List[List[int]] = []
            for start in range(0, len(order), mega):
                chunk = sorted(order[start:start + mega], key=lambda i: self.lengths[i])
                batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
            for b in torch.randperm(len(batches), generator=g).tolist():
                yield batches[b]

    def __len__(self) -> int:
        per_pass = 0
        mega = self.batch_size * self.group
        for start in range(0, len(self.lengths), mega):
            per_pass += -(-min(mega, len(self.lengths) - start) // self.batch_size)
        return per_pass * self.passes


def _seeded_generator(policy: Optional[Policy], name: str) -> torch.Generator:
    """A random stream that is a function of ``name`` alone, on the device the sampler draws on (a CUDA
    generator for a model on a GPU)."""
    device = next(policy.model.parameters()).device if policy is not None else torch.device("cpu")
    return torch.Generator(device=device).manual_seed(random.Random(name).getrandbits(63))


class ValidationBatch(NamedTuple):
    """One validation batch: held-out task indices and which of ``val_samples`` draws plays them."""

    task_indices: List[int]
    sample: int


def _unchanged(batch: ValidationBatch) -> ValidationBatch:
    return batch  # the loader's default collation would turn the tuple into a list


class RolloutDataModule(LightningDataModule):
    """Plays a registered text environment with the LightningModule's current policy.

    Args:
        env_name: registry name of the task (``envs.list_envs()``).
        env: constructor arguments of the environment (the task config's ``env:`` block).
        sampler: the batched multi-turn sampler (prompt window, response length, temperature).
        groups: distinct tasks per rollout (global, divided over ranks).
        group_size: episodes per task (G in GRPO); group members get identical resets.
        mini_batch_size: rows per optimisation step (per rank); the passes over each rollout's rows
            are ``algo.ppo_epochs``.
        val_episodes: held-out tasks played at each validation (global).
        val_batch_size: episodes played together in one validation batch.
        val_split: split the validation tasks come from.
        val_temperature: null (default) plays validation greedily; a number samples at that temperature
            instead (verl-agent validates ALFWorld and WebShop at 0.4: greedy decoding locks a weak agent into
            repeating one failed command to the step cap). The draws are a function of (seed, task index
            of the batch's first episode) alone, so every validation of a run replays the same random stream.
        val_samples: episodes played on each held-out task at every validation, each with its own draws
            (sampled validation only). Success is then the mean over ``val_episodes × val_samples`` episodes,
            whose binomial noise shrinks as 1/√val_samples at val_samples times the validation's cost; the
            first sample's draws are the single-sample validation's.
        seed: base seed of task draws (mixed with the epoch and the rank).
        expert_guidance: members of every training group played by the environment's expert instead
            of the policy (off-policy guidance, as LUFFY mixes demonstrations into GRPO groups): a group
            then has a successful episode to compare with even while the policy never succeeds. Their
            steps are trained on like the policy's, with the policy's own log-probs of the expert's
            tokens as old log-probs; ``rollout/success`` and the other rollout metrics count the policy's
            episodes only. 0 (default) = on-policy only.
        env_step_timeout_s: an environment's ``reset`` or ``step`` that has not returned after this many
            seconds ends its episode like one that raised (``rollout/env_errors``); null = no limit.
        max_env_error_fraction: a rollout in which more than this fraction of the episodes failed in
            the environment stops the run (after a checkpoint) with the first error.
    """

    def __init__(
        self,
        env_name: str,
        sampler: MultiTurnSampler,
        env: Optional[Dict[str, Any]] = None,
        groups: int = 8,
        group_size: int = 8,
        mini_batch_size: int = 64,
        val_episodes: int = 100,
        val_batch_size: int = 50,
        val_split: str = "val",
        val_temperature: Optional[float] = None,
        val_samples: int = 1,
        seed: int = 0,
        expert_guidance: int = 0,
        env_step_timeout_s: Optional[float] = 60.0,
        max_env_error_fraction: float = 0.1,
    ) -> None:
        super().__init__()
        for key, value in (("groups", groups), ("group_size", group_size), ("mini_batch_size", mini_batch_size),
                           ("val_episodes", val_episodes), ("val_batch_size", val_batch_size),
                           ("val_samples", val_samples)):
            require_number(f"task.{key}", value, integer=True, low=1)
        require_number("task.seed", seed, integer=True)
        if val_temperature is not None:
            require_number("task.val_temperature", val_temperature, low=0.0, low_open=True)
        elif int(val_samples) > 1:
            raise ValueError(f"task.val_samples={val_samples} needs sampled validation (task.val_temperature=<number>, "
                             "e.g. 0.4): greedy decoding plays the same episode every time")
        require_number("task.expert_guidance", expert_guidance, integer=True, low=0)
        require_number("task.max_env_error_fraction", max_env_error_fraction, low=0.0, high=1.0)
        if env_step_timeout_s is not None:
            require_number("task.env_step_timeout_s", env_step_timeout_s, low=0.0, low_open=True)
        if not 0 <= int(expert_guidance) < int(group_size):
            raise ValueError(f"task.expert_guidance={expert_guidance} must be in [0, task.group_size={group_size}): "
                             "at least one member of each group is the policy's")
        # a plain dict, so checkpoints load with torch.load(weights_only=True)
        env = OmegaConf.to_container(env, resolve=True) if isinstance(env, DictConfig) else dict(env or {})
        self.save_hyperparameters(logger=False, ignore=["sampler"])
        self.env_name = env_name
        self.env_kwargs = env
        self.sampler = sampler
        self.train_envs: List[TextEnv] = []
        self.val_envs: List[TextEnv] = []
        self.guard = EnvGuard(env_step_timeout_s)
        self._rank, self._world_size = 0, 1

    # ------------------------------------------------------------------ setup
    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_envs:
            return
        if self.trainer is not None:
            self._rank, self._world_size = self.trainer.global_rank, self.trainer.world_size
        if self.hparams.groups % self._world_size:
            raise ValueError(f"task.groups={self.hparams.groups} must be divisible by the number of devices "
                             f"({self._world_size}): each rank plays whole groups")
        # one progress bar, not one per rank
        self.sampler.show_progress = self.sampler.show_progress and self._rank == 0
        local = (self.hparams.groups // self._world_size) * self.hparams.group_size
        base = self.hparams.seed * 100_003 + self._rank * 10_007
        self._env_seeds = {"train": [base + i for i in range(local)],
                           "val": [base + i for i in range(self.hparams.val_batch_size)]}
        self.train_envs = [self.make_env("train", seed) for seed in self._env_seeds["train"]]
        self.val_envs = [self.make_env(self.hparams.val_split, seed) for seed in self._env_seeds["val"]]

    def make_env(self, split: str, seed: int) -> TextEnv:
        return make_env(self.env_name, split=split, seed=seed, **self.env_kwargs)

    @property
    def max_steps(self) -> int:
        """Longest possible episode: the T of the (B, T) step tensors."""
        return (self.train_envs or [self.make_env("train", 0)])[0].max_steps

    @property
    def local_groups(self) -> int:
        return self.hparams.groups // self._world_size

    # ------------------------------------------------------------------ training data
    @property
    def local_trajectories(self) -> int:
        """Trajectories this rank trains on per epoch (the B of the (B, T) step tensors)."""
        return self.local_groups * self.hparams.group_size

    def train_resets(self, epoch: int, attempt: int = 0) -> Tuple[List[Dict[str, Any]], List[int]]:
        """One task index per group, drawn from (seed, epoch, attempt, global group id); every
        member of a group gets the same reset so their returns are comparable. Group ids are
        global (unique across ranks and attempts)."""
        num_tasks = self.train_envs[0].num_tasks()
        resets, group_ids = [], []
        for g in range(self.local_groups):
            global_group = (attempt * self._world_size + self._rank) * self.local_groups + g
            key = f"{self.hparams.seed}/{epoch}/{global_group}"
            task = random.Random(key).randrange(num_tasks)
            for _ in range(self.hparams.group_size):
                resets.append({"options": {"index": task}})
                group_ids.append(global_group)
        return resets, group_ids

    def collect_rollout(self, policy: Policy, epoch: int, filter_groups: bool = False,
                        max_gen_batches: int = 1) -> Tuple[RolloutResult, Dict[str, float]]:
        """Play this rank's groups; with ``filter_groups`` keep only groups whose returns differ
        (DAPO's dynamic sampling) and, while fewer than ``local_groups`` are kept, play fresh
        groups again, at most ``max_gen_batches`` rollouts in all (then train on what was kept).

        Returns the rollout to train on (trajectories renumbered 0..n-1, at most ``local_groups``
        groups) and the ``rollout/*`` metrics of every episode played, with the filter's counts.
        """
        played: List[RolloutResult] = []
        kept: List[Tuple[RolloutResult, List[int]]] = []
        num_kept = dropped = 0
        for attempt in range(max(1, max_gen_batches) if filter_groups else 1):
            resets, group_ids = self.train_resets(epoch, attempt)
            result = self.sampler.play(policy, self.train_envs, resets, group_ids, greedy=False,
                                       generator=self.sampling_generator(policy, epoch, attempt),
                                       expert=self.expert_members(len(resets)), guard=self.guard)
            self._handle_env_errors(result, "train")
            played.append(result)
            candidates = list(dict.fromkeys(group_ids))
            if filter_groups:
                returns = torch.tensor([e.episode_return for e in result.episodes], dtype=torch.float64)
                traj_groups = torch.tensor([e.group_id for e in result.episodes], dtype=torch.long)
                informative = set(traj_groups[informative_groups(returns, traj_groups)].tolist())
                dropped += sum(g not in informative for g in candidates)
                candidates = [g for g in candidates if g in informative]
            take = candidates[:self.local_groups - num_kept]
            kept.append((result, take))
            num_kept += len(take)
            if num_kept >= self.local_groups:
                break
        rollout = kept_rollout(kept)
        rollout.seconds = sum(r.seconds for r in played)
        rollout.generation_seconds = sum(r.generation_seconds for r in played)
        rollout.env_seconds = sum(r.env_seconds for r in played)
        rollout.generated_tokens = sum(r.generated_tokens for r in played)
        everything = RolloutResult(steps=[s for r in played for s in r.steps],
                                   episodes=[e for r in played for e in r.episodes])
        metrics = {f"rollout/{k}": v for k, v in everything.summary().items()}
        played_groups = len(played) * self.local_groups
        metrics.update({"rollout/env_steps": float(len(everything.steps)),  # every step played, kept or not
                        # prompts longer than task.sampler.max_prompt_tokens, cut to their last tokens
                        "rollout/truncated_prompts": float(sum(r.truncated_prompts for r in played)),
                        "rollout/gen_batches": float(len(played)), "rollout/dropped_groups": float(dropped),
                        "rollout/informative_group_frac": (played_groups - dropped) / played_groups,
                        "rollout/kept_groups": float(num_kept)})
        return rollout, metrics

    def _handle_env_errors(self, result: RolloutResult, which: str) -> None:
        """Replace the environments that failed (their state is unknown; a hung one may still be busy) with
        fresh ones; stop the run, after saving a checkpoint, when too many episodes failed."""
        if not result.env_errors:
            return
        envs = self.train_envs if which == "train" else self.val_envs
        split = "train" if which == "train" else self.hparams.val_split
        for i, _ in result.env_errors:
            envs[i] = self.make_env(split, self._env_seeds[which][i])
        failed, played = len(result.env_errors), max(len(result.episodes), 1)
        first = result.env_errors[0][1]
        log.warning(f"{failed} of {played} {which} episodes ended by an environment failure "
                    f"(task {self.env_name}); first: {first}")
        if failed / played > float(self.hparams.max_env_error_fraction):
            path = self._save_failure_checkpoint()
            raise EnvironmentFailure(
                f"{failed} of {played} {which} episodes failed in environment {self.env_name!r}, more than "
                f"task.max_env_error_fraction={self.hparams.max_env_error_fraction}. First error: {first}. "
                + (f"Checkpoint saved: {path}" if path else "No trainer attached: no checkpoint saved"))

    def _save_failure_checkpoint(self) -> Optional[str]:
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":
            return None
        callback = trainer.checkpoint_callback
        folder = callback.dirpath if callback is not None and callback.dirpath else trainer.default_root_dir
        path = os.path.join(folder, "env_failure.ckpt")
        trainer.save_checkpoint(path)
        return path

    def sampling_generator(self, policy: Optional[Policy], epoch: int, attempt: int = 0) -> torch.Generator:
        """The random stream of one training rollout, a function of (seed, epoch, rank, attempt) alone: what
        an epoch samples does not depend on what ran before it in the process, so a run resumed from a
        checkpoint samples exactly what the interrupted run did."""
        return _seeded_generator(policy, f"sample/{self.hparams.seed}/{epoch}/{self._rank}/{attempt}")

    def expert_members(self, num_envs: int) -> List[bool]:
        """Which of the ``num_envs`` training envs (groups of ``group_size`` consecutive members) the
        expert plays: the last ``expert_guidance`` members of each group."""
        size, k = self.hparams.group_size, int(self.hparams.expert_guidance)
        return [i % size >= size - k for i in range(num_envs)]

    def train_dataloader(self) -> DataLoader:
        module = self.trainer.lightning_module
        epoch = self.trainer.current_epoch
        if self._epoch_already_trained():
            return self._loader([self._placeholder_row(module.policy)], 1, epoch, module)
        algo = module.algo
        rollout, metrics = self.collect_rollout(module.policy, epoch, bool(algo.get("filter_groups", False)),
                                                int(algo.get("max_gen_batches", 1)))
        passes = int(algo.get("ppo_epochs", 1))
        if rollout.steps and (module.recomputes_old_log_probs() or not self.sampler.backend.scores_tokens):
            # old log-probs and step entropies from the trainer's forward pass (low precision, or a backend
            # such as vLLM that returns no entropies), scored in the first pass's mini-batches (the same seed
            # draws the same first pass whatever the number of passes); rows map 1:1 to steps on one
            # device, padding rows come after them
            first_pass = LengthGroupedBatches([len(s.prompt_ids) + len(s.response_ids) for s in rollout.steps],
                                              self.hparams.mini_batch_size, 1, seed=self._batch_seed(epoch))
            module.rescore_rollout(rollout, list(first_pass))
        else:
            # the expert's responses were not sampled: the policy's scores of them are their old log-probs
            # and EMPG's step entropies (the recomputation above already scored every step, theirs too)
            rescore_steps(module.model, [s for s in rollout.steps if s.expert], module.tokenizer.pad_token_id,
                          self.sampler.temperature, batch_size=self.hparams.mini_batch_size)
        if not self.sampler.backend.scores_tokens:
            # the backend gave no entropies: the rollout's step entropy is the trainer's, over the kept groups
            metrics["rollout/step_entropy"] = rollout.summary()["step_entropy"]
        rows = self._equalise_across_ranks(module.prepare_rollout(rollout, metrics), epoch)
        if not rows:
            # No row carries a signal (every group filtered out). One zero-advantage row of the
            # policy's own making keeps the epoch alive, so validation, logging and checkpointing
            # still happen; the module skips the update of a batch without signal.
            rows = [self._placeholder_row(module.policy)]
        return self._loader(rows, passes, epoch, module)

    def _epoch_already_trained(self) -> bool:
        """Whether Lightning asks for the data of an epoch whose updates the restored checkpoint already
        holds: resuming from a checkpoint written at an epoch's end, in ``on_train_epoch_end`` (the epoch
        counter not yet advanced) or at its end-of-epoch validation (the epoch started, its last batch
        done). A rollout there would be played for nothing (minutes on ALFWorld) and, being a new one,
        could hold more mini-batches than the epoch had: Lightning trains those, an update the
        uninterrupted run never made."""
        fit_loop = self.trainer.fit_loop
        epochs = fit_loop.epoch_progress.current
        if epochs.processed > self.trainer.current_epoch:
            return True
        return epochs.started > epochs.processed and fit_loop.epoch_loop.batch_progress.is_last_batch

    def _loader(self, rows: List[Dict[str, Any]], passes: int, epoch: int, module: Any) -> DataLoader:
        lengths = [len(r["prompt_ids"]) + len(r["response_ids"]) for r in rows]
        return DataLoader(
            RowDataset(rows),
            batch_sampler=LengthGroupedBatches(lengths, self.hparams.mini_batch_size, passes,
                                               seed=self._batch_seed(epoch)),
            collate_fn=partial(collate_steps, pad_id=module.policy.tokenizer.pad_token_id),
            num_workers=0,  # rows are already in memory; workers would only copy them
        )

    def _batch_seed(self, epoch: int) -> int:
        return self.hparams.seed * 7919 + epoch

    def _equalise_across_ranks(self, rows: List[Dict[str, Any]], epoch: int) -> List[Dict[str, Any]]:
        """Under DDP every rank must run the same number of optimisation steps, or the gradient
        all-reduce hangs. Ranks with fewer rows duplicate random rows of their own (verl-agent pads
        the same way); a rank left with none (its groups all filtered out) pads with placeholder
        rows at zero advantage, which carry no policy gradient."""
        if self._world_size == 1:
            return rows
        target = int(self.trainer.strategy.reduce(torch.tensor(len(rows)), reduce_op="max"))
        pool = rows or [self._placeholder_row(self.trainer.lightning_module.policy)]
        rng = random.Random(f"pad/{self.hparams.seed}/{epoch}/{self._rank}")
        return rows + [pool[rng.randrange(len(pool))] for _ in range(target - len(rows))]

    @staticmethod
    def _placeholder_row(policy: Policy) -> Dict[str, Any]:
        """A one-token step at zero advantage: no policy gradient, no value error."""
        token = policy.tokenizer.eos_token_id
        step = StepRecord(group_id=-1, traj_id=0, step_idx=0, prompt_ids=[token], response_ids=[token],
                          old_log_probs=[0.0], token_entropies=[0.0], reward=0.0, done=True, action_valid=True,
                          anchor_obs="", response_text="")
        return step.training_row(0.0)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> Dict[str, Any]:
        """What the task draws depend on besides the epoch: a checkpoint resumed on another task is a
        mistake, one resumed with another seed plays other tasks than the interrupted run would have."""
        return {"env_name": self.env_name, "seed": int(self.hparams.seed)}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        if state_dict.get("env_name", self.env_name) != self.env_name:
            raise ValueError(f"the checkpoint was trained on task {state_dict['env_name']!r}, this run is "
                             f"task={self.env_name}: resume with the checkpoint's task")
        if int(state_dict.get("seed", self.hparams.seed)) != int(self.hparams.seed):
            log.warning(f"resuming with seed={self.hparams.seed}, the checkpoint's run had seed={state_dict['seed']}: "
                        "later epochs draw other tasks than the interrupted run would have")

    # ------------------------------------------------------------------ validation data
    def val_dataloader(self) -> DataLoader:
        """Batches of held-out task indices (this rank's share), once per sample (``val_samples``), as
        ``ValidationBatch``es; the LightningModule plays them."""
        total = min(self.hparams.val_episodes, self.val_envs[0].num_tasks())
        indices = list(range(self._rank, total, self._world_size))
        size = self.hparams.val_batch_size
        batches = [ValidationBatch(indices[i: i + size], sample)
                   for sample in range(self.hparams.val_samples) for i in range(0, len(indices), size)]
        return DataLoader(batches, batch_size=None, shuffle=False, collate_fn=_unchanged, num_workers=0)

    def play_validation(self, policy: Policy, task_indices: Sequence[int], sample: int = 0) -> RolloutResult:
        """One episode on each of the given held-out tasks: greedy, or sampled at ``val_temperature``
        with the draws of validation sample ``sample`` (see ``val_samples``)."""
        envs = self.val_envs[: len(task_indices)]
        resets = [{"options": {"index": int(i)}} for i in task_indices]
        temperature = self.hparams.val_temperature
        generator = None
        if temperature is not None:
            # sample 0 keeps the single-sample key, so val_samples=1 replays every earlier run's validations
            key = f"validate/{self.hparams.seed}/{int(task_indices[0])}" + (f"/{sample}" if sample else "")
            generator = _seeded_generator(policy, key)
        result = self.sampler.play(policy, envs, resets, list(range(len(envs))), greedy=temperature is None,
                                   temperature=temperature, generator=generator, guard=self.guard)
        self._handle_env_errors(result, "val")
        if not self.sampler.backend.scores_tokens:
            # the step entropies in the validation metrics and the recorded episodes: the trainer's forward pass
            rescore_steps(policy.model, result.steps, policy.tokenizer.pad_token_id, temperature or self.sampler.temperature,
                          batch_size=self.hparams.val_batch_size)
        return result

    # ------------------------------------------------------------------ expert
    def dagger_rows(self, policy: Policy, num_episodes: int, seed: int = 0) -> Tuple[List[Dict[str, List[int]]], float]:
        """DAgger's data: ``policy`` plays ``num_episodes`` random training tasks (sampling at the rollout
        temperature, its own actions executed) and every state it reaches is labelled with the expert's
        response there. Returns token rows (the prompt exactly as the policy read it, the expert's response
        and the end-of-turn token) and the policy's success rate on those episodes."""
        env = self.make_env("train", seed)
        rng = random.Random(f"dagger/{seed}")
        generator = self.sampling_generator(policy, epoch=-1 - seed)
        rows: List[Dict[str, List[int]]] = []
        wins = played = 0
        width = len(self.train_envs)
        eos = policy.tokenizer.eos_token_id
        while played < num_episodes:
            count = min(width, num_episodes - played)
            resets = [{"options": {"index": rng.randrange(env.num_tasks())}} for _ in range(count)]
            result = self.sampler.play(policy, self.train_envs[:count], resets, list(range(count)), generator=generator,
                                       guard=self.guard, label=True)
            self._handle_env_errors(result, "train")
            wins += sum(e.won for e in result.episodes if not e.error)
            rows += [{"prompt_ids": list(s.prompt_ids),
                      "response_ids": policy.tokenizer(s.expert_label, add_special_tokens=False)["input_ids"] + [eos]}
                     for s in result.steps]
            played += count
        return rows, wins / max(played, 1)

    def expert_demonstrations(self, policy: Policy, num_episodes: int, seed: int = 0, noise: float = 0.0):
        """(prompt, response) pairs of the expert on ``num_episodes`` training tasks, rendered as
        the sampler renders prompts for ``policy``; plus the expert's success rate. ``noise``: the
        probability of executing a mistake instead of the expert's action (``expert_demonstrations``)."""
        env = self.make_env("train", seed)
        rng = random.Random(f"expert/{seed}")
        resets = [{"options": {"index": rng.randrange(env.num_tasks())}} for _ in range(num_episodes)]
        return expert_demonstrations([env] * num_episodes, resets, self.sampler.prompt_builder, policy.tokenizer,
                                     noise=noise, seed=seed)
