"""What makes a CPU training run bitwise reproducible, as code (docs/reproducibility.md has the evidence).

On one machine, with one software stack, the tiny model's build and warm start are bitwise
reproducible once torch's intra-op thread count is fixed: the thread count sets how matmuls and
reductions split their sums, so 1 and 2 threads give different float32 weights after the first
optimisation step, and the difference grows with every step. Across machines the CPU's vector
instruction set (which kernels torch and MKL dispatch to) and the library versions change the
arithmetic too. :func:`numerics_signature` names all of these, so a cache keyed by it is never
reused, or silently re-created under the same name, by a run whose arithmetic differs.
"""
from __future__ import annotations

import platform
import random
import re
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Dict, Iterator, Optional

import numpy as np
import torch

#: Libraries whose version changes the numbers of a build or a fine-tune (kernels, model code, BPE).
NUMERIC_LIBRARIES = ("torch", "transformers", "tokenizers")


def library_versions() -> Dict[str, str]:
    """Installed versions of :data:`NUMERIC_LIBRARIES` (``"missing"`` for one not installed)."""
    found = {}
    for name in NUMERIC_LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "missing"
    return found


def blas_backend() -> str:
    """The BLAS torch was built with (``mkl``, ``open``, ...), read from its build configuration."""
    match = re.search(r"BLAS_INFO=([^,\s]+)", torch.__config__.show())
    return match.group(1) if match else "unknown"


def cpu_model() -> str:
    """The host CPU's model name (``/proc/cpuinfo`` on Linux, else what :mod:`platform` says): two machines
    with the same signature below may still differ here, and MKL dispatches by the model too."""
    try:
        with open("/proc/cpuinfo") as info:
            named = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
    except OSError:
        named = []
    return (named[0] if named else platform.processor()) or "unknown"


def numerics_signature() -> Dict[str, str]:
    """Everything besides the inputs and the seed that decides a CPU run's float32 arithmetic: library
    versions, BLAS, the instruction set torch dispatches to (``ATEN_CPU_CAPABILITY`` overrides it)
    and the intra-op thread count."""
    return {
        **library_versions(),
        "blas": blas_backend(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": str(torch.get_num_threads()),
    }


@contextmanager
def pinned_threads(num_threads: Optional[int]) -> Iterator[None]:
    """Run the block with ``num_threads`` intra-op threads (None: leave the current count), then restore
    the previous count: the caller's speed settings are untouched outside the reproducible section."""
    previous = torch.get_num_threads()
    if num_threads is not None:
        if num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def rng_states() -> Dict[str, object]:
    """The global random number generators' states (Python, NumPy, torch CPU, and CUDA where present) as
    plain containers and tensors, so a checkpoint holding them loads with ``weights_only=True``."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states: Dict[str, object] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype("int64")), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: Dict[str, object]) -> None:
    """Inverse of :func:`rng_states`: the next random draw is the one the saved run made next."""
    python = states["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    np_state = states["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype("uint32"), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
