"""The public API adapters may use is small, explicit and importable."""

from __future__ import annotations

import subprocess
import sys

import pytest

import gateway

EXPECTED = {
    "Adapter",
    "AdapterConfig",
    "AdapterContext",
    "Client",
    "FieldError",
    "GatewayError",
    "JobHandler",
    "OutboundClient",
    "OutboundPolicy",
    "ProbeResult",
    "ScheduledJob",
    "SimulatorContext",
    "request_id_var",
    "require_unit",
}


def test_public_names_are_exactly_the_documented_ones() -> None:
    # growing the public API is a decision: change EXPECTED with it
    assert set(gateway.__all__) == EXPECTED
    assert gateway.__all__ == sorted(gateway.__all__, key=str)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_public_name_resolves_to_its_module_object(name: str) -> None:
    value = getattr(gateway, name)
    assert value is not None
    assert name in dir(gateway)


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError):
        gateway.no_such_thing  # noqa: B018


def test_importing_a_core_module_does_not_load_the_http_stack() -> None:
    code = "import sys, gateway.settings, gateway.errors; print('litestar' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "False"
