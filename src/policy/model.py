"""Policy builders: the tiny offline Qwen2-architecture model (built locally, cached) and real
Hugging Face models (hub id or local directory). Both return a :class:`Policy` and go through the
same training code path."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import torch
from transformers import (AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase,
                          PreTrainedTokenizerFast)

from src.policy.lora import apply_lora, lora_settings
from src.utils.determinism import library_versions, numerics_signature, pinned_threads
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__, rank_zero_only=True)

#: Qwen-style chat markup, so prompts for the tiny model look like prompts for Qwen2.5-Instruct.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
#: Bumped whenever the build recipe changes, so stale caches are never reused.
BUILD_VERSION = 1


@dataclass
class Policy:
    """A causal LM and its tokenizer (pad token set, chat template present)."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    #: Short identifier of the exact weights this policy started from (for cache keys).
    fingerprint: str


def digest(obj: Any) -> str:
    """A short, stable digest of a JSON-able object (cache keys and fingerprints)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tokenizer_training_text(task: str, task_kwargs: Optional[Dict[str, Any]] = None) -> Iterable[str]:
    """The task's own text (documents, questions, instructions, expert responses)."""
    from envs import env_class  # local import: envs registration is only needed when building

    yield from env_class(task).tokenizer_corpus(**(task_kwargs or {}))


def tokenizer_atoms(task: str, task_kwargs: Optional[Dict[str, Any]] = None) -> List[str]:
    """The names the task's tokenizer may keep whole (:meth:`envs.base.TextEnv.tokenizer_atoms`)."""
    from envs import env_class

    return list(env_class(task).tokenizer_atoms(**(task_kwargs or {})))


def train_tiny_tokenizer(texts: Iterable[str], vocab_size: int, extra_tokens: Sequence[str] = (),
                         lowercase: bool = False, atoms: Sequence[str] = ()):
    """Byte-level BPE trained with the `tokenizers` library, wrapped as a PreTrainedTokenizerFast.

    ``lowercase``: an uncased tokenizer (its normalizer lowercases every text before it is split, as
    BERT-uncased's does), so the model reads ``B0X6DAWNJR`` on a page as the ``b0x6dawnjr`` it must write.
    ``atoms``: strings added as one token each, after the BPE vocabulary (lowercase when ``lowercase``).
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    # Protocol tags become single tokens: short sequences, and a tag is never split mid-way.
    fast.add_tokens(list(extra_tokens))
    # normalized=True: an atom is matched in the normalized (lowercased) text, wherever it stands
    fast.add_tokens([AddedToken(a, normalized=True, single_word=False) for a in atoms])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_policy(
    cache_dir: str,
    task: str = "deepsearch",
    task_kwargs: Optional[Dict[str, Any]] = None,
    vocab_size: int = 4096,
    hidden_size: int = 128,
    intermediate_size: int = 384,
    num_hidden_layers: int = 4,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    max_position_embeddings: int = 2048,
    extra_tokens: Sequence[str] = (),
    seed: int = 0,
    lora: Optional[Dict[str, Any]] = None,
    gradient_checkpointing: bool = False,
    autocast: Optional[str] = None,
    copy_pretrain: Optional[Dict[str, Any]] = None,
    lowercase: bool = False,
    atom_tokens: bool = False,
) -> Policy:
    """Build (or load from ``cache_dir``) a small Qwen2 causal LM and its locally trained tokenizer.

    Same arguments and library versions -> same artifacts, bitwise, whatever the thread count, hash
    seed or CPU (measured in docs/reproducibility.md): the tokenizer is trained on the task's
    deterministic text (the BPE trainer breaks ties in pair counts by pair, not by thread or hash
    order) and the weights are initialised under ``torch.manual_seed(seed)``. The result is cached in
    ``cache_dir/<fingerprint>/`` in ``save_pretrained`` format, so later runs (and the warm start
    cache) reuse it; nothing is downloaded. The fingerprint holds the versions of torch, transformers
    and tokenizers, which another install may not share. ``lora``, ``gradient_checkpointing`` and
    ``autocast``: as for :func:`load_hf_policy`.

    ``copy_pretrain`` (``steps`` > 0 turns it on; ``batch_size``, ``lr``, ``seed``, ``num_threads``): after
    the initialisation, that many steps of copy pre-training on the tokenizer's text
    (:mod:`src.policy.pretrain`), cached with the build; its arithmetic depends on the thread count and the
    CPU like the warm start's, so the fingerprint then holds them too.

    ``lowercase`` and ``atom_tokens`` (the task's :meth:`~envs.base.TextEnv.tokenizer_atoms` as one token
    each): see :func:`train_tiny_tokenizer`; WebShop's task config turns both on (docs/tuning.md, WebShop run 3).
    """
    from transformers import Qwen2Config, Qwen2ForCausalLM

    # The cache key holds the digest of the tokenizer's training text rather than the task's
    # settings, so settings that do not change the text (penalties, turn limits) reuse the build.
    texts = list(tokenizer_training_text(task, task_kwargs))
    spec = dict(
        version=BUILD_VERSION, text_digest=digest(texts), vocab_size=vocab_size,
        hidden_size=hidden_size, intermediate_size=intermediate_size, num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads, num_key_value_heads=num_key_value_heads,
        max_position_embeddings=max_position_embeddings, extra_tokens=list(extra_tokens), seed=seed,
        libraries=library_versions(),
    )
    atoms = tokenizer_atoms(task, task_kwargs) if atom_tokens else []
    if lowercase or atoms:  # only then, so that the builds made before these switches keep their keys
        spec.update(lowercase=bool(lowercase), atoms_digest=digest(atoms))
    pretrain = dict(copy_pretrain or {})
    pretraining = int(pretrain.get("steps", 0)) > 0
    if pretraining:
        with pinned_threads(pretrain.get("num_threads")):
            spec.update(copy_pretrain=pretrain, copy_recipe=3, numerics=numerics_signature())
    fingerprint = "tiny-" + digest(spec)
    path = Path(cache_dir) / fingerprint
    # An uncased build must read text with its own Lowercase normalizer, so it loads its tokenizer as saved. The
    # cased builds load through AutoTokenizer as they always have (Qwen2's pre-tokenizer at use, the BPE's own during
    # copy pre-training, docs/reproducibility.md): loading them as saved too would change every committed Deep
    # Search and ALFWorld number
    switches = dict(lora=lora, gradient_checkpointing=gradient_checkpointing, autocast=autocast,
                    tokenizer_as_saved=bool(lowercase or atoms))
    if (path / "config.json").exists():
        return load_hf_policy(str(path), fingerprint=fingerprint, **switches)

    log.info(f"Building tiny policy {fingerprint} (tokenizer trained on the text of task {task!r})")
    tokenizer = train_tiny_tokenizer(texts, vocab_size, extra_tokens, lowercase=lowercase, atoms=atoms)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    if pretraining:
        _copy_pretrain(Policy(model, tokenizer, fingerprint), texts, **pretrain)
    save_pretrained_atomically(model, tokenizer, path)
    return load_hf_policy(str(path), fingerprint=fingerprint, **switches)


def _copy_pretrain(policy: Policy, texts: Sequence[str], steps: int, batch_size: int = 16, lr: float = 3e-3,
                   seed: int = 0, num_threads: Optional[int] = None) -> None:
    from src.policy.pretrain import copy_rows, train_on_rows

    tokenizer = policy.tokenizer
    tokenized = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts if t.strip()]
    rows = copy_rows(tokenized, tokenizer("\n", add_special_tokens=False)["input_ids"], steps * batch_size, seed)
    with pinned_threads(num_threads), torch.random.fork_rng():
        torch.manual_seed(seed)
        stats = train_on_rows(policy.model, rows, tokenizer.pad_token_id, steps=steps, batch_size=batch_size, lr=lr,
                              seed=seed)
    log.info(f"Copy pre-training: {steps} steps, loss {stats['first_loss']:.3f} -> {stats['last_loss']:.3f}")


def save_pretrained_atomically(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, path: Path) -> None:
    """``save_pretrained`` of both into ``path`` through a temporary folder and a rename, so a crash mid-write
    never leaves a half cache; if another process finished the same folder first, its copy is kept."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if path.exists():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, path)


#: ``model.policy.dtype`` values
DTYPES = ("float32", "bfloat16", "float16")
#: ``model.policy.autocast`` values (besides null)
AUTOCAST_DTYPES = ("bf16",)


class AutocastForward:
    """Forward hooks that run a model's forward under ``torch.autocast`` (bf16 matmuls over fp32
    weights) and hand back float32 logits, so log-probs, entropies and the loss stay in full precision.
    Hooks rather than a wrapper module: the model keeps its class and attributes, and still pickles
    (``ddp_spawn``) and deep-copies (the KL reference) with the hooks."""

    def __init__(self, dtype: torch.dtype = torch.bfloat16) -> None:
        self.dtype = dtype
        self._active: List[Any] = []  # one context per forward in progress (a stack: calls may nest)

    def enter(self, module: torch.nn.Module, args: Any) -> None:
        context = torch.autocast(next(module.parameters()).device.type, dtype=self.dtype)
        context.__enter__()
        self._active.append(context)

    def exit(self, module: torch.nn.Module, args: Any, output: Any) -> Any:
        self._active.pop().__exit__(None, None, None)
        if getattr(output, "logits", None) is not None:
            output.logits = output.logits.float()
        return output

    def attach(self, model: torch.nn.Module) -> None:
        model.register_forward_pre_hook(self.enter)
        # always_call: a forward that raises still leaves the autocast region
        model.register_forward_hook(self.exit, always_call=True)


def uses_autocast(model: torch.nn.Module) -> bool:
    """Whether ``model``'s forward runs under :class:`AutocastForward` (``model.policy.autocast``)."""
    return any(isinstance(getattr(hook, "__self__", None), AutocastForward)
               for hook in model._forward_pre_hooks.values())


def check_autocast(autocast: Optional[str]) -> None:
    if autocast is not None and autocast not in AUTOCAST_DTYPES:
        raise ValueError(f"model.policy.autocast={autocast!r} is not allowed; allowed values: null, "
                         f"{', '.join(AUTOCAST_DTYPES)}")


def prepare_for_training(policy: Policy, lora: Optional[Dict[str, Any]] = None, gradient_checkpointing: bool = False,
                         autocast: Optional[str] = None) -> Policy:
    """The policy with the training switches of ``model.policy`` applied: LoRA adapters (``lora``: enabled, r,
    alpha, dropout, target_modules; see ``src.policy.lora``), activation checkpointing, bf16 autocast. The
    fingerprint changes with LoRA and autocast, which change what a warm start from it trains."""
    check_autocast(autocast)
    model, fingerprint = policy.model, policy.fingerprint
    if gradient_checkpointing:
        # non-reentrant checkpointing: frozen inputs (LoRA's frozen embeddings) still get adapter gradients
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # the current name (5.24 here); the old one warns
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    settings = lora_settings(lora)
    if settings is not None:
        model = apply_lora(model, **settings)
    if autocast is not None:
        AutocastForward(torch.bfloat16).attach(model)
    if settings is not None or autocast is not None:
        fingerprint = f"{fingerprint}-{digest([settings, autocast])}"
    return Policy(model=model, tokenizer=policy.tokenizer, fingerprint=fingerprint)


def load_hf_policy(
    name_or_path: str,
    dtype: str = "float32",
    attn_implementation: Optional[str] = "sdpa",
    trust_remote_code: bool = False,
    fingerprint: Optional[str] = None,
    chat_template: Optional[str] = None,
    lora: Optional[Dict[str, Any]] = None,
    gradient_checkpointing: bool = False,
    autocast: Optional[str] = None,
    tokenizer_as_saved: bool = False,
) -> Policy:
    """Load a causal LM (e.g. ``Qwen/Qwen2.5-1.5B-Instruct`` or a local directory) and its tokenizer.

    ``tokenizer_as_saved``: load ``tokenizer.json`` exactly as saved. Otherwise ``AutoTokenizer`` picks the class
    from the model type, and for a Qwen2 model (the tiny builds are Qwen2) transformers 5's ``Qwen2Tokenizer``
    replaces the saved normalizer with NFC and the pre-tokenizer with Qwen2's regex (one token per digit).

    ``chat_template``: for a tokenizer that has none (a base model): ``"chatml"`` (the bundled ChatML
    template, ``<|im_start|>`` turns) or a Jinja template string. A tokenizer without a template and
    without this setting is refused before the weights load: a guessed format would train the policy on
    prompts it was never taught to read.

    ``lora``, ``gradient_checkpointing``, ``autocast``: the training switches of :func:`prepare_for_training`."""
    if dtype not in DTYPES:
        raise ValueError(f"model.policy.dtype={dtype!r} is not allowed; allowed values: {', '.join(DTYPES)}")
    check_autocast(autocast)  # before the weights load
    if tokenizer_as_saved:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(name_or_path)
    else:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if chat_template is not None:
        tokenizer.chat_template = CHAT_TEMPLATE if chat_template == "chatml" else chat_template
    if tokenizer.chat_template is None:
        raise ValueError(f"the tokenizer of {name_or_path} has no chat template (a base model?): set "
                         "model.policy.chat_template=chatml (the bundled ChatML template) or to a Jinja template, "
                         "or use an instruct model")
    model = AutoModelForCausalLM.from_pretrained(
        name_or_path,
        dtype=getattr(torch, dtype),
        attn_implementation=attn_implementation,
        trust_remote_code=trust_remote_code,
    )
    policy = Policy(model=model, tokenizer=tokenizer, fingerprint=fingerprint or digest([name_or_path, dtype]))
    check_vocabulary(policy, name_or_path)
    return prepare_for_training(policy, lora, gradient_checkpointing, autocast)


def check_vocabulary(policy: Policy, name: str = "the model") -> None:
    """Every token id the tokenizer can produce must have a row in the model's embedding matrix."""
    rows = policy.model.get_input_embeddings().num_embeddings
    if len(policy.tokenizer) > rows:
        raise ValueError(f"{name}: the tokenizer has {len(policy.tokenizer)} tokens but the model's embeddings "
                         f"have {rows} rows; token ids >= {rows} would index out of range. Load the tokenizer "
                         "that belongs to these weights (or resize the embeddings and fine-tune)")


def check_context(policy: Policy, max_prompt_tokens: int, max_new_tokens: int) -> None:
    """A prompt of ``max_prompt_tokens`` plus a response of ``max_new_tokens`` must fit the model's positions."""
    positions = getattr(policy.model.config, "max_position_embeddings", None)
    if positions is not None and max_prompt_tokens + max_new_tokens > positions:
        raise ValueError(f"task.sampler.max_prompt_tokens ({max_prompt_tokens}) + task.sampler.max_new_tokens "
                         f"({max_new_tokens}) = {max_prompt_tokens + max_new_tokens} exceeds the model's "
                         f"{positions} positions (max_position_embeddings): lower one of them")


def stop_token_ids(tokenizer: PreTrainedTokenizerBase, generation_config: Any = None) -> List[int]:
    """Token ids that end a response: the tokenizer's EOS, the chat end-of-turn token ``<|im_end|>``
    and every id of the model's ``generation_config.eos_token_id`` (an int or a list: Qwen2.5-Instruct
    lists both ``<|im_end|>`` and ``<|endoftext|>``, and may end on either)."""
    ids = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")}
    configured = getattr(generation_config, "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    return sorted(i for i in ids if isinstance(i, int) and i >= 0 and i != tokenizer.unk_token_id)
