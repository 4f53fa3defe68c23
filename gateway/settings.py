"""Settings: ``config/gateway.toml`` (or ``--config PATH``) overlaid by ``GATEWAY_*`` variables.

Precedence, strongest first: explicit overrides passed by code (the CLI's flags, the sandbox),
then environment variables (``GATEWAY_STORE__BACKEND=redis``, nested with ``__``), then the
TOML file, then the defaults below. Unknown keys are errors everywhere (``extra="forbid"``), so
a typo never silently falls back to a default.

A secret field ``x: SecretStr | None`` may instead be given as ``x_file = "/run/secrets/..."``;
the file's content (stripped) becomes the value. Secrets print as ``**********``.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "AuditSettings",
    "ClientSettings",
    "JobSettings",
    "LoggingSettings",
    "OpsSettings",
    "RateLimitSettings",
    "RetentionSettings",
    "SandboxSettings",
    "SecuritySettings",
    "ServerSettings",
    "Settings",
    "SigningPeerSettings",
    "SigningSettings",
    "StoreSettings",
    "StrictModel",
    "WebhookEndpointSettings",
    "WebhookSettings",
    "load_settings",
]

DEFAULT_CONFIG_PATH = Path("config/gateway.toml")
#: the environment variable that carries ``--config`` into child processes (workers, --processes)
CONFIG_ENV = "GATEWAY_CONFIG"


class StrictModel(BaseModel):
    """Base of every settings section: unknown keys are errors; ``x_file`` fills secret ``x``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for key, value in data.items():
            if not key.endswith("_file") or value in (None, ""):
                continue
            target = key[: -len("_file")]
            field = cls.model_fields.get(target)
            if field is None or "SecretStr" not in str(field.annotation):
                continue
            path = Path(str(value))
            try:
                out[target] = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"{key}: cannot read secret file {path}: {exc.strerror}") from None
            out.pop(key)
        return out


class ServerSettings(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    processes: int = Field(1, ge=1, le=64)
    #: the address callers use (links in events, printed URLs)
    public_url: str | None = None
    #: bodies larger than this are refused with 413
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    #: addresses of TLS-terminating proxies allowed to set X-Forwarded-For and the mTLS header
    trusted_proxies: list[str] = Field(default_factory=list)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for net in value:
            ipaddress.ip_network(net, strict=False)
        return value


class StoreSettings(StrictModel):
    backend: Literal["sqlite", "redis"] = "sqlite"
    sqlite_path: Path = Path("var/gateway.db")
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    #: every key the gateway writes in Redis starts with this prefix
    key_prefix: str = "dvcgw:"


class ClientSettings(StrictModel):
    """A caller of the gateway: the dossier system, an ops user, a national system calling back."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    #: hex SHA-256 of the API key; the key itself is never stored
    key_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    #: identity presented by the TLS-terminating proxy (e.g. the certificate's subject)
    mtls_identity: str | None = None
    scopes: list[str] = Field(default_factory=list)
    #: if set, the client may only call from these networks
    allowed_networks: list[str] = Field(default_factory=list)
    #: if set, the client may only act on dossiers of these unit codes
    allowed_units: list[str] = Field(default_factory=list)
    #: requests per minute; None takes the default
    rate_limit_per_minute: int | None = Field(None, ge=1)
    description: str = ""

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for net in value:
            ipaddress.ip_network(net, strict=False)
        return value


class RateLimitSettings(StrictModel):
    enabled: bool = True
    default_per_minute: int = Field(6000, ge=1)


class SecuritySettings(StrictModel):
    #: clients written by ``gateway clients add`` (only key hashes), merged with [[clients]]
    clients_file: Path = Path("var/clients.toml")
    #: header carrying the client-certificate identity, trusted only from server.trusted_proxies
    mtls_identity_header: str | None = None
    #: HMAC key for digests of personal identifiers in the audit log (required in production)
    identifier_digest_key: SecretStr | None = None
    rate_limit: RateLimitSettings = RateLimitSettings()


class LoggingSettings(StrictModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: auto = console rendering on a terminal, JSON otherwise
    format: Literal["auto", "json", "console"] = "auto"
    #: field names whose values are personal data and are masked in every log line
    masked_fields: list[str] = Field(
        default_factory=lambda: [
            "full_name",
            "name",
            "applicant_name",
            "HoVaTen",
            "ChuHoSo",
            "HoTenNguoiNop",
            "address",
            "birth_date",
        ]
    )


class JobKindPolicy(StrictModel):
    max_attempts: int = Field(8, ge=1)
    #: first backoff, seconds; doubles with full jitter up to backoff_max
    backoff_initial: float = Field(1.0, ge=0)
    backoff_max: float = Field(300.0, ge=0)
    #: give up (dead-letter) once the first attempt is older than this, seconds
    deadline: float = Field(24 * 3600.0, ge=1)
    #: explicit schedule (seconds after each failure); overrides the exponential backoff
    schedule: list[float] | None = None
    #: past this many queued jobs of this kind, commands get 503 with Retry-After
    max_queued: int = Field(100_000, ge=1)


class JobSettings(StrictModel):
    #: async workers inside ``gateway serve``; 0 leaves the work to ``gateway worker`` processes
    workers: int = Field(4, ge=0, le=256)
    visibility_timeout: float = Field(60.0, ge=1)
    poll_interval: float = Field(0.2, gt=0)
    grace_period: float = Field(20.0, ge=0)
    default_policy: JobKindPolicy = JobKindPolicy()
    policies: dict[str, JobKindPolicy] = Field(default_factory=dict)
    #: the scheduler runs in every instance but only the lock holder enqueues
    scheduler_enabled: bool = True
    #: seconds a stored Idempotency-Key answer is kept
    idempotency_ttl: float = Field(24 * 3600.0, ge=60)

    def policy(self, kind: str) -> JobKindPolicy:
        return self.policies.get(kind, self.default_policy)


class WebhookEndpointSettings(StrictModel):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    url: str
    #: Standard Webhooks secret, ``whsec_`` + base64
    secret: SecretStr | None = None
    #: event types delivered to this endpoint; empty = all
    event_types: list[str] = Field(default_factory=list)
    enabled: bool = True


class WebhookSettings(StrictModel):
    endpoints: list[WebhookEndpointSettings] = Field(default_factory=list)
    #: seconds before each attempt: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h
    retry_schedule: list[float] = Field(
        default_factory=lambda: [
            0.0,
            5.0,
            300.0,
            1800.0,
            7200.0,
            18000.0,
            36000.0,
            50400.0,
            72000.0,
            86400.0,
        ]
    )
    timeout: float = Field(10.0, gt=0)
    #: tolerance for the receiver's timestamp check, documented for receivers
    timestamp_tolerance: float = Field(300.0, gt=0)
    #: the pull feed (GET /v1/events) shows events once they are this old, so an event
    #: another instance is still writing cannot fall behind a consumer's cursor
    feed_settle_seconds: float = Field(1.0, ge=0)


class AuditSettings(StrictModel):
    #: where ``gateway audit export`` writes before a purge may drop old records
    export_dir: Path = Path("var/audit-export")


class RetentionSettings(StrictModel):
    finished_jobs_days: float = Field(7, gt=0)
    events_days: float = Field(30, gt=0)
    # idempotency records expire by their own TTL: ``jobs.idempotency_ttl``
    callback_dedupe_days: float = Field(30, gt=0)
    #: audit records older than this are purged, but only once exported
    audit_days: float = Field(365, gt=0)
    purge_interval_seconds: float = Field(3600, gt=0)


class SigningPeerSettings(StrictModel):
    """How one peer's XML signatures are verified (``[signing.peers.<name>]``)."""

    #: certificate files (PEM/DER) the peer signs with; when set, only these are accepted
    pinned_certificates: list[Path] = Field(default_factory=list)
    #: shared secret for HMAC-signed XML from this peer
    hmac_key: SecretStr | None = None
    #: drop spurious xmlns="" from inclusive C14N, for old signers that need it
    legacy_c14n_xmlns: bool = False


class SigningSettings(StrictModel):
    #: the gateway's signing key and certificate (PEM), or a PKCS#12 bundle
    key_path: Path | None = Path("var/pki/gateway.key.pem")
    cert_path: Path | None = Path("var/pki/gateway.cert.pem")
    pkcs12_path: Path | None = None
    key_password: SecretStr | None = None
    #: PEM files or folders of trusted roots (production: the Government CA roots)
    trust_paths: list[Path] = Field(default_factory=lambda: [Path("var/pki/ca.cert.pem")])
    crl_paths: list[Path] = Field(default_factory=list)
    #: peers whose signatures may use SHA-1 (field systems still send RSA-SHA1)
    sha1_allowed_peers: list[str] = Field(default_factory=list)
    #: folder ``gateway keys dev-pki`` writes to; the sandbox uses it
    dev_pki_dir: Path = Path("var/pki")
    expiry_warning_days: int = Field(30, ge=1)
    #: put the signing certificate's intermediates in KeyInfo too (issue 4: the chain is optional;
    #: off when a peer wants the leaf only)
    include_chain: bool = True
    #: per-peer verification settings, by peer name (the ``peer`` of a verification request)
    peers: dict[str, SigningPeerSettings] = Field(default_factory=dict)
    #: threads that sign and verify off the event loop (see docs/adr on the executor choice)
    workers: int = Field(2, ge=1, le=64)


class SandboxSettings(StrictModel):
    #: run the simulators beside the gateway and point the adapters at them
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(8081, ge=0, le=65535)
    #: seed for synthetic data and fault injection, so runs are reproducible
    seed: int = 20260101
    #: faults set at start: {system: {operation: {latency_ms, error_rate, status, timeout, ...}}}
    faults: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)

    @field_validator("faults")
    @classmethod
    def _fault_specs(
        cls, value: dict[str, dict[str, dict[str, Any]]]
    ) -> dict[str, dict[str, dict[str, Any]]]:
        # checked here, so `gateway check-config` names a typo such as latncy_ms; imported
        # late because gateway.sandbox imports this module
        from gateway.sandbox import parse_fault_table

        parse_fault_table(value)  # ValueError: "faults.<system>.<operation>.<key>: reason"
        return value


class OpsSettings(StrictModel):
    #: how long an ops sign-in lasts (sessions live in the store, shared by every instance)
    session_ttl_seconds: int = Field(8 * 3600, ge=60)
    probe_interval_seconds: float = Field(15.0, gt=0)
    default_language: Literal["vi", "en"] = "vi"


def _default_config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV, str(DEFAULT_CONFIG_PATH)))


class Settings(BaseSettings):
    """The whole configuration. Sections mirror the TOML tables."""

    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        nested_model_default_partial_update=True,
    )

    #: sandbox | production: production refuses dev-only conveniences (e.g. missing digest key)
    environment: Literal["sandbox", "production"] = "sandbox"
    server: ServerSettings = ServerSettings()
    store: StoreSettings = StoreSettings()
    security: SecuritySettings = SecuritySettings()
    clients: list[ClientSettings] = Field(default_factory=list)
    logging: LoggingSettings = LoggingSettings()
    jobs: JobSettings = JobSettings()
    webhooks: WebhookSettings = WebhookSettings()
    audit: AuditSettings = AuditSettings()
    retention: RetentionSettings = RetentionSettings()
    signing: SigningSettings = SigningSettings()
    sandbox: SandboxSettings = SandboxSettings()
    ops: OpsSettings = OpsSettings()
    #: which adapter serves which capability, e.g. {identity = "population_db"}
    capabilities: dict[str, str] = Field(default_factory=dict)
    #: per-adapter configuration, validated by each adapter's own model at start-up
    adapters: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: extra adapter plugins as "module:attribute" (tests, out-of-tree adapters in development)
    extra_adapters: list[str] = Field(default_factory=list)

    #: the file this configuration was read from (set by load_settings, not by the file)
    config_path: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _default_config_path()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path.exists():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @model_validator(mode="after")
    def _production_rules(self) -> Settings:
        if self.environment == "production":
            if self.security.identifier_digest_key is None:
                raise ValueError(
                    "security.identifier_digest_key: required in production "
                    "(audit digests of personal identifiers)"
                )
            if self.sandbox.enabled:
                raise ValueError("sandbox.enabled: not allowed in production")
        return self

    def public_url(self) -> str:
        if self.server.public_url:
            return self.server.public_url.rstrip("/")
        host = "127.0.0.1" if self.server.host in ("0.0.0.0", "::") else self.server.host  # noqa: S104
        return f"http://{host}:{self.server.port}"

    def digest_key(self) -> bytes:
        """Key for identifier digests; a fixed development key outside production."""
        if self.security.identifier_digest_key is not None:
            return self.security.identifier_digest_key.get_secret_value().encode()
        return b"dvc-gateway-sandbox-identifier-digest-key"


def load_settings(config_path: Path | str | None = None, **overrides: Any) -> Settings:
    """Read the configuration file (``--config``) and the environment.

    ``overrides`` are nested dicts that win over both (used by CLI flags and the sandbox).
    Raises pydantic's ValidationError naming the bad key; the CLI turns it into a message.
    """
    if config_path is not None:
        os.environ[CONFIG_ENV] = str(config_path)
    path = _default_config_path()
    if config_path is not None and not path.exists():
        raise FileNotFoundError(f"configuration file not found: {path}")
    settings = Settings(**overrides)
    return settings.model_copy(update={"config_path": path if path.exists() else None})
