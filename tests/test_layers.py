"""The package's layering: each module imports only from its own layer or the layers above
it (stats at the top, cli at the bottom), so that e.g. the certificate math never depends on
the results store."""

from __future__ import annotations

import ast
from pathlib import Path

import smoothcert

PACKAGE = Path(smoothcert.__file__).parent

#: Top-level module or subpackage -> layer (0 = top); helpers sit with their users.
LAYERS = {
    "checks": 0,  # leaves: torch-free scalar checks and atomic file writes
    "atomic": 0,
    "hardware": 0,  # which arithmetic is fast on a device (precision auto)
    "stats": 0,
    "smoothing": 1,
    "denoised": 1,  # f∘D, the base classifier SmoothedClassifier builds for a denoiser
    "adaptive": 1,
    "sound": 1,
    "throughput": 1,
    "attacks": 2,
    "distributional": 3,
    "distributional_bound": 3,
    "data": 4,
    "models": 4,
    "checkpoint": 4,
    "launch": 4,
    "training": 5,
    "store": 6,
    "distributed": 6,
    "runs": 6,
    "analysis": 7,
    "dcert_report": 7,
    "cli": 8,
    "experiments": 8,  # beside the CLI: stages are CLI commands, reports read runs/analysis
}


def _unit(path: Path) -> str | None:
    rel = path.relative_to(PACKAGE)
    name = rel.parts[0].removesuffix(".py")
    return None if name in ("__init__", "__main__") else name


def _imported_units(path: Path) -> set[str]:
    """smoothcert units imported anywhere in the file, function-local imports included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "smoothcert":
                names = [f"smoothcert.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "smoothcert" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_every_module_has_a_layer() -> None:
    units = {_unit(p) for p in PACKAGE.rglob("*.py")} - {None}
    assert units <= set(LAYERS), sorted(units - set(LAYERS))


def test_no_module_imports_from_a_lower_layer() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        unit = _unit(path)
        if unit is None:
            continue
        for dep in _imported_units(path):
            if dep in LAYERS and LAYERS[dep] > LAYERS[unit]:
                upward.append(f"{path.relative_to(PACKAGE)} imports smoothcert.{dep}")
    assert not upward, upward


def test_the_import_scan_sees_function_local_imports(tmp_path: Path) -> None:
    """The check is not vacuous: a function-local import of the store (what distributional.py
    used to do) is found, and so are ``from smoothcert import x`` and ``import smoothcert.x``."""
    f = tmp_path / "m.py"
    f.write_text(
        "import smoothcert.stats\nfrom smoothcert import analysis\n"
        "def g():\n    from smoothcert.store import RunStore\n"
    )
    assert _imported_units(f) == {"stats", "analysis", "store"}
