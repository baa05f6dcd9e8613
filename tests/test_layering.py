"""The package's layering: every import, at module level or inside a function, goes down this table."""

from __future__ import annotations

import ast
from pathlib import Path

import mle_hand_pipeline

# Lowest first. A module may import from its own layer's units and from any layer below, never above.
LAYERS = (
    ("keypoints", "machine", "openmp", "pyfunc_model"),  # pyfunc_model: served without the package
    ("datasets", "synthetic"),
    ("models", "losses"),
    ("methods",),
    ("evaluation",),
    ("parameters",),
    ("export",),
    ("training",),
    ("model_source",),
    ("grid",),
    ("tracking", "tracking_server", "predict", "io"),
    ("hooks", "pipelines", "cli", "settings", "pipeline_registry", "__main__"),
)
LAYER = {unit: level for level, units in enumerate(LAYERS) for unit in units}
PACKAGE = Path(mle_hand_pipeline.__file__).parent


def _unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "mle_hand_pipeline" else None


def _imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mle_hand_pipeline"):
            if node.module == "mle_hand_pipeline":
                yield from (f"mle_hand_pipeline.{alias.name}" for alias in node.names)
            else:
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.startswith("mle_hand_pipeline."))


def test_every_unit_of_the_package_has_a_layer():
    units = {path.stem if path.is_file() else path.name for path in PACKAGE.iterdir()}
    units = {u for u in units if not u.startswith("_") or u == "__main__"} - {"py"}
    assert units - {"__pycache__"} <= set(LAYER), sorted(units - set(LAYER) - {"__pycache__"})


def test_no_import_runs_up_the_layering():
    """Issue 43: ``training/validation.py`` imported ``grid/cells.py``, the one import running up."""
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        unit = relative.parts[0].removesuffix(".py")
        if unit == "__init__":
            continue
        for module in _imports(ast.parse(path.read_text())):
            target = _unit(module)
            if target and target != unit and LAYER[target] > LAYER[unit]:
                upward.append(f"{relative} imports {module}")
    assert not upward
