"""``gateway demo`` as a real process: it starts the gateway, the sandbox and a receiver by
itself, narrates the core steps and exits 0 when every one of them saw what it shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gateway.demo import DemoContext, demo_step, steps

GATEWAY = str(Path(sys.executable).parent / "gateway")


def test_the_demo_runs_every_core_step(tmp_path: Path) -> None:
    # no adapters configured: the core steps alone (adapters' steps are their own tests')
    config = tmp_path / "gateway.toml"
    config.write_text('environment = "sandbox"\n')
    done = subprocess.run(
        [GATEWAY, "demo", "--exit", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for title in (
        "A command becomes a durable job",
        "A national system calls back",
        "Webhooks and the pull feed",
        "The audit chain",
    ):
        assert title in out
    assert "succeeded after 1 attempt(s)" in out
    assert out.count("✔ the receiver verified the signature") == 2
    assert "not forwarded twice" in out
    assert "a tampered copy of one is refused" in out
    assert "✔ chain verified" in out
    assert "✔ all 4 steps passed" in out
    assert "/ops  (sign in with the demo key: dvcgw_" in out
    assert "079012345678" not in out  # the demo's citizen ID appears only as a digest
    assert done.stderr == ""


def test_steps_register_in_order() -> None:
    @demo_step("A step of an adapter", order=15, adapter="nowhere", name="test.adapter-step")
    async def adapter_step(ctx: DemoContext) -> None:
        ctx.say("hello")

    ordered = [s.name for s in steps()]
    assert ordered.index("core.command") < ordered.index("test.adapter-step")
    assert ordered.index("test.adapter-step") < ordered.index("core.callback")
    assert ordered[-1] == "core.audit"
    step = next(s for s in steps() if s.name == "test.adapter-step")
    assert step.adapter == "nowhere" and step.run is adapter_step
