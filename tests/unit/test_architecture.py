"""The architecture rules of synthgen/ (scripts/import_graph.py), checked on every `make test`."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPEC = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
import_graph = importlib.util.module_from_spec(SPEC)
sys.modules["import_graph"] = import_graph  # its dataclasses look their module up
SPEC.loader.exec_module(import_graph)


def test_synthgen_keeps_its_architecture():
    assert import_graph.violations(ROOT) == []


def test_the_check_runs_as_a_script():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "import_graph.py")], capture_output=True, text=True)
    assert result.returncode == 0 and "import graph ok" in result.stdout, result.stdout


def _module(root: Path, name: str, text: str) -> None:
    path = root / "synthgen" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_check_catches_each_violation(tmp_path):
    doc = '"""A module."""\n'
    _module(tmp_path, "__init__.py", doc)
    _module(tmp_path, "a.py", doc + "from synthgen.b import thing\n")
    _module(tmp_path, "b.py", doc + "def f():\n    from synthgen.a import _hidden\n")  # a cycle, lazily
    _module(tmp_path, "flows.py", doc + "import prefect\nimport dvc.api\n")
    _module(tmp_path, "stages/__init__.py", doc + "import mlflow\nfrom synthgen.models import x\n")
    _module(tmp_path, "models/__init__.py", doc + "from synthgen.stages import y\n")  # a package cycle only
    _module(tmp_path, "tracking/__init__.py", doc + "import mlflow\n")  # allowed here
    _module(tmp_path, "data/__init__.py", doc + "from synthgen.tracking import z\n")  # upwards: a layer breach
    _module(tmp_path, "big.py", doc + "x = 1\n" * 501)
    _module(tmp_path, "bare.py", "x = 1\n")
    _module(tmp_path, "typing_only.py", doc + "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                               "    from synthgen.a import _hidden\n")  # never runs: fine
    problems = "\n".join(import_graph.violations(tmp_path))
    assert "import cycle: synthgen.a <-> synthgen.b" in problems
    assert "package cycle: synthgen.models <-> synthgen.stages" in problems
    assert "flows.py: imports prefect" in problems and "flows.py: imports dvc" in problems
    assert "stages/__init__.py: imports mlflow" in problems and "tracking/__init__.py" not in problems
    assert "imports the private name synthgen.a._hidden" in problems and "typing_only.py" not in problems
    assert "data (layer 6) imports tracking (layer 3)" in problems
    assert "big.py: 502 lines" in problems and "bare.py: no opening docstring" in problems
