"""LoRA adapters through ``peft``: only the adapters train, and the KL reference is the same model with its
adapters disabled, so a run holds one copy of the base weights instead of two."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

INSTALL_HINT = 'pip install -e ".[lora]"'

#: The adapters' random init (LoRA's A matrices) runs under this seed in a forked generator: the same
#: config gives the same adapters, and building the policy leaves the run's random stream untouched.
LORA_INIT_SEED = 0


def _import_peft() -> Any:
    try:
        import peft
    except ImportError as err:
        raise ImportError(f"model.policy.lora.enabled=true needs peft ({err}); install it with {INSTALL_HINT}") from err
    return peft


def apply_lora(model: torch.nn.Module, r: int = 16, alpha: int = 32, dropout: float = 0.0,
               target_modules: Optional[Sequence[str]] = None) -> torch.nn.Module:
    """``model`` wrapped as a peft model with LoRA adapters on ``target_modules`` (module names such as
    ``q_proj``, or peft's ``"all-linear"``); every base weight frozen. LoRA's B matrices start at zero, so
    the wrapped model computes exactly what the base did until the first update."""
    peft = _import_peft()
    if int(r) < 1:
        raise ValueError(f"model.policy.lora.r must be >= 1, got {r}")
    targets = target_modules if isinstance(target_modules, str) or target_modules is None else list(target_modules)
    config = peft.LoraConfig(r=int(r), lora_alpha=int(alpha), lora_dropout=float(dropout),
                             target_modules=targets, task_type=peft.TaskType.CAUSAL_LM)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(LORA_INIT_SEED)
        return peft.get_peft_model(model, config)


def has_lora(model: torch.nn.Module) -> bool:
    """Whether ``model`` carries peft adapters (so :func:`reference_model` can switch them off)."""
    return callable(getattr(model, "disable_adapter", None)) and hasattr(model, "peft_config")


@contextmanager
def reference_model(model: torch.nn.Module, ref_model: Optional[torch.nn.Module]) -> Iterator[torch.nn.Module]:
    """The KL reference to score with: the frozen copy ``ref_model`` when there is one, otherwise (LoRA)
    ``model`` itself with its adapters disabled for the duration of the block."""
    if ref_model is not None:
        yield ref_model
    elif has_lora(model):
        with model.disable_adapter():
            yield model
    else:
        raise ValueError("no KL reference: neither a frozen copy nor LoRA adapters to disable")


def lora_settings(lora: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The LoRA block's settings as plain values when enabled (for :func:`apply_lora` and the policy
    fingerprint), else None."""
    if isinstance(lora, DictConfig):
        lora = OmegaConf.to_container(lora, resolve=True)
    if not lora or not lora.get("enabled", False):
        return None
    return {k: v for k, v in lora.items() if k != "enabled"}


@torch.no_grad()
def merged_state_dict(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """The weights ``model`` computes with, under the base model's own parameter names: its state dict, or for
    a LoRA model every adapted weight plus its active adapters' delta (``W + scale * B @ A``), computed out of
    place. What a second engine (the vLLM rollout backend) loads; merging into the model and unmerging after
    would leave float rounding in the base weights at every synchronisation."""
    if not has_lora(model):
        return {name: tensor.detach() for name, tensor in model.state_dict().items()}
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    deltas = {}
    for name, module in base.named_modules():
        if isinstance(module, LoraLayer) and not module.disable_adapters:
            active = [a for a in module.active_adapters if a in module.lora_A or a in module.lora_embedding_A]
            if active:
                deltas[f"{name}.weight"] = sum(module.get_delta_weight(a) for a in active)
    merged = {}
    for key, tensor in base.state_dict().items():
        if ".lora_" in key:
            continue
        key = key.replace(".base_layer.", ".")
        merged[key] = (tensor + deltas[key]).detach() if key in deltas else tensor.detach()
    return merged
