"""Settings: unknown keys and bad values are refused and named, by the loader and by
``gateway check-config`` (run as a real subprocess); the production example covers every key."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from gateway.cli.config import unknown_environment_variables
from gateway.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "production.example.toml"
GATEWAY = str(Path(sys.executable).parent / "gateway")


def check_config(
    config: Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    environ.update(env or {})
    return subprocess.run(
        [GATEWAY, "--config", str(config), "check-config"],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text('[store]\nsqlite_path = "var/gateway.db"\n')
    return path


@pytest.fixture(autouse=True)
def _keep_config_env() -> Any:
    # load_settings(path) exports GATEWAY_CONFIG for child processes; undo it after each test
    before = os.environ.get("GATEWAY_CONFIG")
    yield
    if before is None:
        os.environ.pop("GATEWAY_CONFIG", None)
    else:
        os.environ["GATEWAY_CONFIG"] = before


# ---------------------------------------------------------------- the loader


def test_unknown_key_in_the_file_is_an_error_naming_it(config: Path) -> None:
    config.write_text("[server]\nport = 8080\nprot = 1\n")
    with pytest.raises(ValidationError) as caught:
        load_settings(config)
    assert [e["loc"] for e in caught.value.errors()] == [("server", "prot")]


def test_environment_overrides_nested_and_bad_values_are_named(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_SERVER__PORT", "9123")
    assert load_settings(config).server.port == 9123
    monkeypatch.setenv("GATEWAY_SERVER__PORT", "not-a-port")
    with pytest.raises(ValidationError) as caught:
        load_settings(config)
    assert caught.value.errors()[0]["loc"] == ("server", "port")


def test_secret_from_a_file(config: Path, tmp_path: Path) -> None:
    (tmp_path / "digest.key").write_text("k" * 40 + "\n")
    config.write_text(f'[security]\nidentifier_digest_key_file = "{tmp_path / "digest.key"}"\n')
    settings = load_settings(config)
    assert settings.digest_key() == b"k" * 40
    assert "kkkk" not in repr(settings)


def test_production_requires_the_digest_key(config: Path) -> None:
    config.write_text('environment = "production"\n')
    with pytest.raises(ValidationError, match="identifier_digest_key"):
        load_settings(config)


def test_unknown_gateway_variables_are_found() -> None:
    env = {
        "GATEWAY_STORE_BACKEND": "redis",  # one underscore: a typo pydantic would ignore
        "GATEWAY_STORE__BACKEND": "redis",
        "GATEWAY_CONFIG": "x",
        "GATEWAY_TEST_REDIS_URL": "redis://",
        "GATEWAY_TESTING_INSTANT_BACKOFF": "1",
        "PATH": "/bin",
    }
    assert unknown_environment_variables(env) == ["GATEWAY_STORE_BACKEND"]


# ---------------------------------------------------------------- the production example


def _leaf_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys: list[str] = []
    for name, field in model.model_fields.items():
        inner = _model_in(field.annotation)
        if inner is not None:
            keys.extend(_leaf_keys(inner, f"{prefix}{name}."))
        else:
            keys.append(prefix + name)
    return keys


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (list, dict, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def test_production_example_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    missing = []
    for dotted in _leaf_keys(Settings):
        if dotted == "config_path":  # set by the loader, not a file key
            continue
        name = dotted.rsplit(".", 1)[-1]
        as_key = rf"^#? ?{re.escape(name)}(_file)? = "
        as_table = rf"^#? ?\[{re.escape(name)}[.\]]"
        if not re.search(f"{as_key}|{as_table}", text, re.MULTILINE):
            missing.append(dotted)
    assert not missing, f"add these keys to {EXAMPLE.name}, with a comment: {missing}"


def test_production_example_loads(tmp_path: Path) -> None:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    text = EXAMPLE.read_text().replace("/run/secrets/", f"{secrets_dir}/")
    for name in re.findall(rf"{re.escape(str(secrets_dir))}/([\w.-]+)", text):
        (secrets_dir / name).write_text(
            "redis://:pw@127.0.0.1:6379/0\n" if "redis" in name else "s" * 40
        )
    config = tmp_path / "production.toml"
    config.write_text(text)
    settings = load_settings(config)
    assert settings.environment == "production"
    assert settings.store.backend == "redis"
    assert settings.security.identifier_digest_key is not None
    assert settings.jobs.policy("national_portal.sync_dossier").max_attempts == 20


# ---------------------------------------------------------------- gateway check-config


def test_check_config_prints_the_effective_config_with_secrets_redacted(
    tmp_path: Path, config: Path
) -> None:
    (tmp_path / "redis.url").write_text("redis://:hunter2pw@127.0.0.1:6379/3")
    config.write_text(
        f'[store]\nbackend = "redis"\nredis_url_file = "{tmp_path / "redis.url"}"\n'
        '[security]\nidentifier_digest_key = "digest-key-secret-value"\n'
        '[signing]\nkey_password = "signing-key-password-value"\n'
    )
    done = check_config(config, tmp_path, env={"GATEWAY_SERVER__PORT": "9999"})
    assert done.returncode == 0, done.stderr
    effective = json.loads(done.stdout)
    assert effective["server"]["port"] == 9999
    assert effective["store"]["redis_url"] == "redis://:**********@127.0.0.1:6379/3"
    for secret in ("hunter2pw", "digest-key-secret-value", "signing-key-password-value"):
        assert secret not in done.stdout + done.stderr
    assert "configuration OK" in done.stderr


@pytest.mark.parametrize(
    ("content", "env", "expected"),
    [
        ("[server]\nprot = 8080\n", {}, "server.prot: Extra inputs are not permitted"),
        ("bogus_section_key = 1\n", {}, "bogus_section_key: Extra inputs are not permitted"),
        ('[store]\nbackend = "mongo"\n', {}, "store.backend: Input should be 'sqlite' or 'redis'"),
        ("[server]\nport = \n", {}, "not valid TOML"),
        ("", {"GATEWAY_SERVER__PORT": "abc"}, "server.port: Input should be a valid integer"),
        ("", {"GATEWAY_STORE_BACKEND": "redis"}, "GATEWAY_STORE_BACKEND: names no setting"),
        ("[adapters.no_such_system]\n", {}, "adapters.no_such_system: unknown adapter"),
        ('[capabilities]\nidentity = "ghost"\n', {}, "capabilities.identity: adapter 'ghost'"),
        # settings nothing read, removed: one Idempotency-Key TTL, sessions in the store
        (
            "[retention]\nidempotency_hours = 24\n",
            {},
            "retention.idempotency_hours: Extra inputs are not permitted",
        ),
        ('[ops]\nsession_secret = "x"\n', {}, "ops.session_secret: Extra inputs are not permitted"),
        # fault specs are checked with the sandbox's own model: a typo is named, not ignored
        (
            "[sandbox.faults.population_db.TraCuu]\nlatncy_ms = 200\n",
            {},
            "faults.population_db.TraCuu.latncy_ms: Extra inputs are not permitted",
        ),
        (
            '[sandbox.faults.population_db."*"]\nerror_rate = 0.8\ndrop_rate = 0.5\n',
            {},
            "faults.population_db.*: Value error, error_rate + timeout_rate",
        ),
    ],
)
def test_check_config_exits_2_naming_the_key_and_reason(
    tmp_path: Path, config: Path, content: str, env: dict[str, str], expected: str
) -> None:
    config.write_text(content)
    done = check_config(config, tmp_path, env=env)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert expected in done.stderr
    assert done.stdout == ""
    assert "Traceback" not in done.stderr


def test_check_config_refuses_a_broken_clients_file(tmp_path: Path, config: Path) -> None:
    clients = tmp_path / "clients.toml"
    clients.write_text('[[clients]]\nid = "x"\nkey_sha256 = "not-a-hash"\n')
    config.write_text(f'[security]\nclients_file = "{clients}"\n')
    done = check_config(config, tmp_path)
    assert done.returncode == 2
    assert "clients[0].key_sha256" in done.stderr


def test_check_config_on_a_missing_file(tmp_path: Path) -> None:
    done = check_config(tmp_path / "nope.toml", tmp_path)
    assert done.returncode == 2
    assert "not found" in done.stderr
