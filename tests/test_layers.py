"""The packages of src/ form layers: each imports only from the ones below it, so the policy (and, later,
its rollout backends) sits under the sampler, the data module and the LightningModule that use it."""
import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

#: package -> the src packages it may import from (itself included)
ALLOWED = {
    "utils": {"utils"},
    "algos": {"utils", "algos"},
    "policy": {"utils", "policy"},
    "rollout": {"utils", "policy", "rollout"},
    "data": {"utils", "algos", "policy", "rollout", "data"},
    "models": {"utils", "algos", "policy", "rollout", "data", "models"},
}


def _imported_packages(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "src" and len(parts) > 1:
                yield parts[1], node.lineno


def test_src_packages_import_only_from_the_layers_below():
    found = []
    for package, allowed in ALLOWED.items():
        for path in sorted((SRC / package).glob("*.py")):
            found += [f"{path.relative_to(SRC.parent)}:{line} imports src.{dep}"
                      for dep, line in _imported_packages(path) if dep not in allowed]
    assert not found, "\n".join(found)
    assert (SRC / "policy" / "model.py").exists()
