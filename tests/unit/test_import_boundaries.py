"""The core never imports an adapter: ``gateway/`` finds adapters through entry points only.

Every ``gateway/**/*.py`` is parsed with ``ast``; absolute imports of ``adapters`` or
``adapters.*`` and ``importlib.import_module("adapters...")`` calls are refused.
"""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "gateway"


def _is_adapter_module(name: str | None) -> bool:
    return name is not None and (name == "adapters" or name.startswith("adapters."))


def adapter_imports(source: str, filename: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if _is_adapter_module(a.name)]
        elif isinstance(node, ast.ImportFrom):
            # level > 0 is relative (``from . import adapters`` is gateway.adapters, the contract)
            if node.level == 0 and _is_adapter_module(node.module):
                found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__") and node.args:
                arg = node.args[0]
                literal = arg.value if isinstance(arg, ast.Constant) else None
                if isinstance(literal, str) and _is_adapter_module(literal):
                    found.append(f"{name}({literal!r})")
    return found


def test_the_checker_sees_each_form() -> None:
    source = (
        "import adapters.population_db\n"
        "from adapters.national_portal import client\n"
        "from adapters import x\n"
        "importlib.import_module('adapters.postal')\n"
        "from gateway.adapters import Adapter\n"
        "from . import adapters\n"
        "import adapters_extra\n"
    )
    assert adapter_imports(source, "<test>") == [
        "import adapters.population_db",
        "from adapters.national_portal import ...",
        "from adapters import ...",
        "import_module('adapters.postal')",
    ]


def test_core_never_imports_adapters() -> None:
    files = sorted(CORE.rglob("*.py"))
    assert len(files) > 10
    offenders = {
        str(path.relative_to(CORE.parent)): found
        for path in files
        if (found := adapter_imports(path.read_text(encoding="utf-8"), str(path)))
    }
    assert not offenders, f"the core imports adapters directly: {offenders}"
