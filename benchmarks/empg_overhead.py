"""What EMPG's modulation costs next to the rest of a training step, at 1k / 10k / 100k agent steps.

    python benchmarks/empg_overhead.py [--prompt-tokens 512] [--response-tokens 40] [--threads N]

For each batch size N (agent steps = training rows) it times, on random (B, T) step tensors with
T = 8 and ragged trajectory lengths:
  * ``empg_advantages`` (min-max normalisation, g, future bonus, final normalisation), median of 7;
  * the base estimator (GRPO, groups of 8), median of 7;
  * the optimisation over the rollout's rows: forward + backward + AdamW for every mini-batch of 32
    rows of the project's tiny policy (prompt + response tokens as given). It is measured on
    ``--measured-rows`` rows (default 256) and scaled linearly to N rows, since every row costs the
    same; the table says so.
EMPG's share is its time over the training step's. The acceptance target is < 1%.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.algos.advantages import grpo_advantages  # noqa: E402
from src.algos.empg import empg_advantages  # noqa: E402
from src.algos.losses import policy_gradient_loss  # noqa: E402
from src.data.batch import collate_steps, response_logits, token_log_probs  # noqa: E402
from src.policy.model import build_tiny_policy  # noqa: E402

STEPS_PER_TRAJ, GROUP_SIZE, MINI_BATCH = 8, 8, 32


def median_seconds(fn, repeats: int = 7) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_tensors(num_steps: int, seed: int = 0):
    """Ragged trajectories of 1..T steps whose real steps add up to exactly ``num_steps``."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, STEPS_PER_TRAJ + 1, (num_steps,), generator=g)
    b = int((lengths.cumsum(0) < num_steps).sum()) + 1
    lengths = lengths[:b]
    lengths[-1] -= int(lengths.sum()) - num_steps
    mask = torch.arange(STEPS_PER_TRAJ)[None, :] < lengths[:, None]
    returns = (torch.rand(b, generator=g) < 0.4).float()
    groups = torch.arange(b) // GROUP_SIZE
    entropy = torch.rand(b, STEPS_PER_TRAJ, generator=g) * 3.0
    return mask, returns, groups, entropy


def training_seconds_per_row(args) -> float:
    with tempfile.TemporaryDirectory() as cache:
        # configs/model/tiny.yaml's architecture
        policy = build_tiny_policy(cache_dir=cache, task="deepsearch", task_kwargs={}, num_hidden_layers=2)
    model, tok = policy.model, policy.tokenizer
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    g = torch.Generator().manual_seed(0)
    vocab = len(tok)
    rows = [{"prompt_ids": torch.randint(3, vocab, (args.prompt_tokens,), generator=g).tolist(),
             "response_ids": torch.randint(3, vocab, (args.response_tokens,), generator=g).tolist(),
             "old_log_probs": [-1.0] * args.response_tokens, "advantage": 1.0}
            for _ in range(args.measured_rows)]
    batches = [collate_steps(rows[i:i + MINI_BATCH], tok.pad_token_id) for i in range(0, len(rows), MINI_BATCH)]
    model.train()

    def optimise_all() -> None:
        for batch in batches:
            log_probs = token_log_probs(response_logits(model, batch), batch["targets"])
            loss, _ = policy_gradient_loss(log_probs, batch["old_log_probs"], batch["advantages"],
                                           batch["response_mask"])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()

    return median_seconds(optimise_all, repeats=3) / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--response-tokens", type=int, default=40)
    parser.add_argument("--measured-rows", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    per_row = training_seconds_per_row(args)
    print(f"tiny policy, {args.prompt_tokens} prompt + {args.response_tokens} response tokens, mini-batch "
          f"{MINI_BATCH}, {torch.get_num_threads()} threads: {per_row * 1e3:.1f} ms per row "
          f"(measured on {args.measured_rows} rows)\n")
    header = ("| agent steps | EMPG modulation | base estimator (GRPO) | training step (scaled) | EMPG share |\n"
              "|---:|---:|---:|---:|---:|")
    print(header)
    for n in args.sizes:
        mask, returns, groups, entropy = step_tensors(n)
        base = grpo_advantages(returns, mask, groups)
        t_empg = median_seconds(lambda: empg_advantages(base, entropy, mask))
        t_base = median_seconds(lambda: grpo_advantages(returns, mask, groups))
        rows = int(mask.sum())
        t_train = per_row * rows
        print(f"| {rows:,} | {t_empg * 1e3:.2f} ms | {t_base * 1e3:.2f} ms | {t_train:,.1f} s | "
              f"{100 * t_empg / t_train:.4f}% |")


if __name__ == "__main__":
    main()
