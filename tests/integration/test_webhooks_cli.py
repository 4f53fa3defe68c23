"""``gateway webhooks status | enable | new-secret`` as real processes over a SQLite file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from standardwebhooks import Webhook

from gateway.jobs import JobQueue
from gateway.settings import JobSettings, WebhookSettings
from gateway.store.sqlite import SqliteStore
from gateway.webhooks import EventPublisher

GATEWAY = str(Path(sys.executable).parent / "gateway")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GATEWAY, "webhooks", *args], capture_output=True, text=True, timeout=60, check=False
    )


async def test_status_enable_and_new_secret(tmp_path: Path) -> None:
    made = run("new-secret")
    assert made.returncode == 0
    secret = made.stdout.strip()
    assert secret.startswith("whsec_")
    Webhook(secret)  # a valid Standard Webhooks secret

    db = tmp_path / "gateway.db"
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[store]\nsqlite_path = "{db}"\n'
        "[[webhooks.endpoints]]\n"
        'id = "province"\nurl = "https://dvc.example.gov.vn/hooks"\n'
        f'secret = "{secret}"\n'
    )
    fresh = run("status", "--config", str(config))
    assert fresh.returncode == 0, fresh.stderr
    assert "province: delivering  https://dvc.example.gov.vn/hooks" in fresh.stdout
    assert secret not in fresh.stdout

    # what a 410 answer leaves behind
    store = SqliteStore(db)
    await store.open()
    endpoint = {"id": "province", "url": "https://dvc.example.gov.vn/hooks", "secret": secret}
    webhook_settings = WebhookSettings.model_validate({"endpoints": [endpoint]})
    publisher = EventPublisher(store, webhook_settings, JobQueue(JobSettings(), store))
    await publisher.disable("province", "the receiver answered 410 Gone")
    await store.close()

    disabled = run("status", "--config", str(config))
    assert "province: disabled" in disabled.stdout
    assert "disabled: the receiver answered 410 Gone" in disabled.stdout
    enabled = run("enable", "province", "--config", str(config))
    assert enabled.returncode == 0
    assert "province enabled" in enabled.stdout
    assert "province: delivering" in run("status", "--config", str(config)).stdout
    unknown = run("enable", "elsewhere", "--config", str(config))
    assert unknown.returncode == 1
    assert "no webhook endpoint 'elsewhere'" in unknown.stderr
