"""The package's surface: explicit ``__all__`` everywhere, and its one dependency rule."""

from __future__ import annotations

import ast
import importlib
import logging
import subprocess
import sys
from pathlib import Path

import pytest

import signing
from signing.keys import DevPki
from signing.sign import XmlSigner
from signing.verify import VerificationPolicy, XmlVerifier

PACKAGE = Path(signing.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
ALLOWED_CORE = {"gateway.errors", "gateway.settings"}


def test_every_exported_name_exists() -> None:
    assert signing.__all__ == sorted(signing.__all__, key=lambda n: (not n.isupper(), n))
    for name in signing.__all__:
        assert getattr(signing, name) is not None


@pytest.mark.parametrize("module", [m for m in MODULES if not m.startswith("_")])
def test_public_modules_declare_all(module: str) -> None:
    mod = importlib.import_module(f"signing.{module}")
    exported = getattr(mod, "__all__", None)
    assert exported, f"signing.{module} has no __all__"
    for name in exported:
        assert hasattr(mod, name), f"signing.{module}.__all__ names missing {name}"


@pytest.mark.parametrize("module", [*MODULES, "__init__"])
def test_signing_imports_only_errors_and_settings_of_the_core(module: str) -> None:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            if name == "gateway" or name.startswith(("gateway.", "adapters")):
                assert name in ALLOWED_CORE, f"signing/{module}.py imports {name}"


def test_signxml_never_logs_canonical_content_at_debug(
    caplog: pytest.LogCaptureFixture, pki: DevPki
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger at DEBUG, as a debugging operator might
    signed = XmlSigner(pki.gateway.load()).sign(b"<Citizen><Id>049201001234</Id></Citizen>")
    XmlVerifier(VerificationPolicy(pinned=(pki.gateway.load().certificate,))).verify(signed.xml)
    assert not [r for r in caplog.records if r.name.startswith("signxml")]
    assert "049201001234" not in caplog.text


@pytest.mark.parametrize("module", ["signing", "signing.checksums", "signing.xml"])
def test_importing_any_part_of_signing_caps_the_signxml_logger(module: str) -> None:
    # a fresh interpreter: in this one, other tests' imports would already have set the cap
    probe = (
        "import logging, importlib; logging.getLogger('signxml').setLevel(logging.DEBUG); "
        f"importlib.import_module({module!r}); "
        "print(logging.getLogger('signxml').level)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert int(out) == logging.INFO
