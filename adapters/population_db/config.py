"""``[adapters.population_db]``: the adapter's configuration, validated at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator

from gateway.adapters import AdapterConfig

__all__ = ["SANDBOX_CONSUMER_SECRET", "UNIT_CODE_PATTERN", "PopulationDbConfig"]

#: a unit code such as ``000.00.00.H47`` (the province's registered unit)
UNIT_CODE_PATTERN = r"^[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}$"
#: the sandbox's client secret when none is configured: not a secret, the simulator's only
SANDBOX_CONSUMER_SECRET = "population-db-sandbox"  # noqa: S105


class PopulationDbConfig(AdapterConfig):
    """``[adapters.population_db]``."""

    #: the SOAP endpoint and the OAuth2 token endpoint, relative to ``base_url``
    soap_path: str = Field("/soap", pattern=r"^/[A-Za-z0-9._~/-]*$")
    token_path: str = Field("/token", pattern=r"^/[A-Za-z0-9._~/-]*$")
    #: OAuth2 client credentials at the integration platform (``consumer_secret_file`` too)
    consumer_key: str = Field("dvc-gateway", min_length=1)
    consumer_secret: SecretStr | None = None
    #: ``MaTichHop``: the integration code the platform gave the province
    integration_code: str = Field("000000", pattern=r"^[0-9]{1,20}$")
    #: ``MaDonVi``: the province's unit code registered for queries
    unit_code: str = Field(
        "000.00.00.H47", pattern=r"^[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}$"
    )
    #: XML-DSig over the SOAP Body of requests, with the gateway's key ([signing])
    sign_requests: bool = True
    #: require and verify the registry's signature on answers
    verify_responses: bool = True
    # which signatures of the registry are accepted is [signing.peers.population_db]
    # (pinned_certificates); without it the sandbox pins its simulator's certificate, and
    # elsewhere any certificate chaining to [signing] trust_paths passes (warned at start-up)
    #: the cached token is renewed this many seconds before it expires
    token_refresh_margin_seconds: float = Field(30.0, ge=0)
    #: compare names without diacritics (for peers that send unaccented capitals)
    ignore_diacritics: bool = False
    #: keep verification results this long (0: no cache)
    verify_cache_ttl_seconds: float = Field(0.0, ge=0, le=3600)

    @model_validator(mode="before")
    @classmethod
    def _secret_from_file(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("consumer_secret_file"):
            data = dict(data)
            path = Path(str(data.pop("consumer_secret_file")))
            try:
                data["consumer_secret"] = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(
                    f"consumer_secret_file: cannot read {path}: {exc.strerror}"
                ) from None
        return data
