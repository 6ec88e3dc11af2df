"""The rules of the package tree, checked the way they matter: in a fresh interpreter, and in the source.

- `reseg.review` (sessions, review state, edits, exports) and the zoo's catalogue and cards import no torch:
  the plugin's review and model lists run inside napari's process, where torch would cost seconds.
- Nothing outside `reseg.train` imports MONAI's training stack (transforms, losses, data, engines,
  optimisers); evaluation may use its metrics. Importing any engine module outside `reseg.train` loads no MONAI.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import reseg

PACKAGE = Path(reseg.__file__).parent
TRAINING_STACK = (
    "monai.transforms",
    "monai.losses",
    "monai.data",
    "monai.engines",
    "monai.optimizers",
    "monai.handlers",
    "monai.inferers",
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(where: Path = PACKAGE) -> list[str]:
    return sorted(_module_name(path) for path in where.rglob("*.py"))


def _loaded_after_import(modules: list[str]) -> set[str]:
    """The top-level packages and reseg subpackages in sys.modules after importing `modules` in a new process."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_review_and_the_catalogue_import_no_torch():
    review = _modules(PACKAGE / "review")
    loaded = _loaded_after_import([*review, "reseg.zoo.catalogue", "reseg.zoo.cards", "reseg.topology"])
    assert {"reseg.review.export", "reseg.review.session"} <= loaded  # the check imported what it names
    assert "torch" not in loaded and "monai" not in loaded


def test_no_module_outside_train_loads_monai_or_the_training_code_when_imported():
    outside = [name for name in _modules() if not name.startswith("reseg.train")]
    loaded = _loaded_after_import(outside)
    assert "reseg.inference.segmentation" in loaded and "torch" in loaded
    assert "monai" not in loaded
    assert not {name for name in loaded if name.startswith("reseg.train")}


def _monai_imports(path: Path) -> set[str]:
    """Every MONAI module `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "monai":
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "monai"}
    return found


def test_only_train_imports_monais_training_stack():
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        if _module_name(path).startswith("reseg.train"):
            continue
        stack = {
            name
            for name in _monai_imports(path)
            if name in ("monai", *TRAINING_STACK) or name.startswith(tuple(f"{part}." for part in TRAINING_STACK))
        }
        if stack:
            offenders[_module_name(path)] = sorted(stack)
    assert offenders == {}
    assert _monai_imports(PACKAGE / "train" / "data.py") & {"monai.transforms"}  # the check sees real imports
