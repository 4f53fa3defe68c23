"""The wire: ``TraCuuThongTinCongDan`` over SOAP with zeep, signed, on the resilient client.

The zeep ``AsyncClient`` is built once (at the adapter's start) from the WSDL shipped in this
folder, with the project's hardened XML settings. Its transport is :class:`SoapTransport`, a
zeep ``AsyncTransport`` running on the adapter's ``OutboundClient.http`` (timeouts, retries,
circuit breaker, bulkhead, quota) that, per call:

1. adds the OAuth2 bearer token (refreshed once on a 401);
2. signs the SOAP Body with the gateway's key, when the deployment signs requests;
3. refuses any answer the hardened parser refuses (DOCTYPE, entities, depth, size);
4. verifies the answer's signature against the registry's certificate, when the deployment
   verifies answers, and gives zeep only the signed Body.

Errors leave as ``gateway.errors``: a SOAP fault is ``UpstreamFault``, an answer that cannot be
read or verified ``UpstreamProtocolError``; timeouts, unavailability and an open circuit come
from the outbound layer unchanged.
"""

from __future__ import annotations

import dataclasses
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import httpx
import structlog
import zeep
import zeep.exceptions
from lxml import etree
from pydantic import ValidationError
from zeep.helpers import serialize_object
from zeep.proxy import AsyncServiceProxy
from zeep.transports import AsyncTransport

from gateway.errors import (
    ConfigurationError,
    GatewayError,
    SignatureInvalid,
    UpstreamAuthFailed,
    UpstreamFault,
    UpstreamProtocolError,
    XmlRejected,
)
from gateway.outbound import OutboundClient
from signing.keys import ensure_dev_pki, load_certificates
from signing.service import SigningService
from signing.verify import XmlVerifier
from signing.xml import parse_xml, zeep_settings

from .auth import TokenSource
from .config import SANDBOX_CONSUMER_SECRET, PopulationDbConfig
from .models import NS, OPERATION, SOAP_ACTION, SOAP_ENV_NS, WSDL_PATH, KetQuaTraCuu, YeuCauTraCuu
from .soapsig import ServiceSigning, envelope_around

if TYPE_CHECKING:
    from gateway.adapters import AdapterContext
    from gateway.settings import Settings

__all__ = [
    "BINDING",
    "PopulationDbClient",
    "SoapTransport",
    "build_client",
    "response_verifier",
]

log = structlog.get_logger(__name__)

BINDING = f"{{{NS}}}DanCuQuocGiaBinding"
_BODY = f"{{{SOAP_ENV_NS}}}Body"
_RESPONSE = f"{{{NS}}}{OPERATION}Response"


#: where the transport hands the bytes it sent back to ``PopulationDbClient.lookup``'s caller
#: (zeep runs the transport in the caller's task, so the context is the call's own)
_sent: ContextVar[list[bytes] | None] = ContextVar("population_db_sent", default=None)


def _refuse_remote(request: httpx.Request) -> httpx.Response:
    raise zeep.exceptions.TransportError(  # type: ignore[no-untyped-call]
        "the WSDL is loaded from the adapter's folder; remote imports are refused"
    )


class SoapTransport(AsyncTransport):
    """zeep's async transport on the resilient client, with auth, signing and verification."""

    def __init__(
        self,
        *,
        system: str,
        outbound: OutboundClient,
        tokens: TokenSource,
        crypto: ServiceSigning,
        sign_requests: bool,
        verify_responses: bool,
    ) -> None:
        # AsyncTransport.__init__ replaces the client's default headers, which the outbound
        # client keeps apart and stamps on every call; the WSDL loader gets a client that
        # can reach nothing
        super().__init__(  # type: ignore[no-untyped-call]
            client=outbound.http,
            wsdl_client=httpx.Client(transport=httpx.MockTransport(_refuse_remote)),
        )
        self.system = system
        self.outbound = outbound
        self.tokens = tokens
        self.crypto = crypto
        self.sign_requests = sign_requests
        self.verify_responses = verify_responses

    async def aclose(self) -> None:
        # the outbound client belongs to the runtime, which closes it
        self.wsdl_client.close()

    async def post_xml(self, address: str, envelope: etree._Element, headers: Any) -> Any:
        if self.sign_requests:
            message = await self.crypto.sign(envelope)
        else:
            message = etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
        sent = _sent.get()
        if sent is not None:
            sent.append(message)
        request_headers = dict(headers)
        request_headers["SOAPAction"] = f'"{SOAP_ACTION}"'
        response, token = await self._send(address, message, request_headers)
        if response.status_code == 401:
            # the platform forgot our token (expiry, rotation): fetch a new one, once
            await self.tokens.invalidate(token)
            response, _ = await self._send(address, message, request_headers)
            if response.status_code == 401:
                raise UpstreamAuthFailed(
                    f"{self.system}: the integration platform refused a fresh token",
                    system=self.system,
                )
        checked = await self._checked(response)
        return self.new_response(checked)  # type: ignore[no-untyped-call]

    async def _send(
        self, address: str, message: bytes, headers: dict[str, str]
    ) -> tuple[httpx.Response, str]:
        token = await self.tokens.token()
        headers = {**headers, "Authorization": f"Bearer {token}"}
        with self.outbound.operation(OPERATION, idempotent=True):  # a query: safe to repeat
            response = await self.client.post(address, content=message, headers=headers)
        return response, token

    async def _checked(self, response: httpx.Response) -> httpx.Response:
        """The answer as zeep may read it: parsed hardened, verified when required, and of
        the operation's response element (zeep alone would read any element by position)."""
        try:
            root = parse_xml(response.content)
        except XmlRejected as exc:
            raise UpstreamProtocolError(
                f"{self.system}: the answer was refused by the hardened XML parser ({exc.detail})",
                system=self.system,
            ) from None
        if response.status_code != 200:
            return response  # faults are not signed; zeep turns them into Fault
        if self.verify_responses:
            try:
                body = await self.crypto.verify(response.content)
            except SignatureInvalid as exc:
                raise UpstreamProtocolError(
                    f"{self.system}: the answer's signature was refused ({exc.slug}: {exc.detail})",
                    system=self.system,
                    extra={"signature_problem": exc.slug},
                ) from None
        else:
            found = root.find(_BODY)
            if found is None:
                raise UpstreamProtocolError(
                    f"{self.system}: the answer is not a SOAP envelope", system=self.system
                )
            body = found
        children = [c for c in body if isinstance(c.tag, str)]
        if len(children) != 1 or children[0].tag != _RESPONSE:
            raise UpstreamProtocolError(
                f"{self.system}: the answer's body is not a {OPERATION}Response",
                system=self.system,
            )
        return httpx.Response(
            response.status_code,
            headers={"Content-Type": "text/xml; charset=utf-8"},
            content=envelope_around(body),
            request=response.request,
        )


class PopulationDbClient:
    """One zeep client per adapter, for the adapter's lifetime."""

    def __init__(self, *, system: str, service_url: str, transport: SoapTransport) -> None:
        self.system = system
        self.transport = transport
        self._zeep = zeep.AsyncClient(  # type: ignore[no-untyped-call]
            wsdl=str(WSDL_PATH), transport=transport, settings=zeep_settings()
        )
        # AsyncClient.create_service would give a synchronous proxy: build the async one
        binding = self._zeep.wsdl.bindings[BINDING]
        self._service = AsyncServiceProxy(  # type: ignore[no-untyped-call]
            self._zeep, binding, address=service_url
        )

    async def lookup(
        self, request: YeuCauTraCuu, *, sent: list[bytes] | None = None
    ) -> KetQuaTraCuu:
        """One ``TraCuuThongTinCongDan`` call; the SOAP request's bytes (as sent, signed) are
        appended to ``sent`` when given, for the audit's payload digest."""
        operation = getattr(self._service, OPERATION)
        token = _sent.set(sent)
        try:
            result = await operation(**request.zeep_arguments())
        except GatewayError:
            raise
        except zeep.exceptions.Fault as fault:
            # the fault string is the registry's text: kept out of the problem shown to callers
            code = fault.code if isinstance(fault.code, str) else "unknown"
            raise UpstreamFault(
                f"{self.system}: the registry answered a SOAP fault ({code})", system=self.system
            ) from None
        except zeep.exceptions.TransportError as exc:
            raise UpstreamProtocolError(
                f"{self.system}: unexpected HTTP status {exc.status_code}", system=self.system
            ) from None
        except (zeep.exceptions.Error, etree.LxmlError, ValueError) as exc:
            raise UpstreamProtocolError(
                f"{self.system}: the answer does not match the WSDL ({type(exc).__name__})",
                system=self.system,
            ) from None
        finally:
            _sent.reset(token)
        return _to_model(result, self.system)

    async def aclose(self) -> None:
        await self.transport.aclose()


def _to_model(result: Any, system: str) -> KetQuaTraCuu:
    data = serialize_object(result, dict)  # type: ignore[no-untyped-call]
    if not isinstance(data, dict):
        raise UpstreamProtocolError(f"{system}: the answer is empty", system=system)
    collection = data.pop("CongdanCollection", None) or {}
    citizens = collection.get("CongDan") or [] if isinstance(collection, dict) else []
    try:
        return KetQuaTraCuu.model_validate({**data, "CongdanCollection": citizens})
    except ValidationError as exc:
        where = ".".join(str(p) for p in exc.errors()[0]["loc"])
        raise UpstreamProtocolError(
            f"{system}: the answer is incomplete or malformed at {where}", system=system
        ) from None


# ---------------------------------------------------------------- building (at start-up)


def build_client(
    name: str, config: PopulationDbConfig, context: AdapterContext
) -> PopulationDbClient:
    """The adapter's client from its configuration, signing and verifying through the
    process's signing service (``context.signing``: the gateway's key, the trust store and the
    peers' policies, ``[signing]``)."""
    settings = context.settings
    signing = context.signing
    outbound = context.outbound(None)
    if config.consumer_secret is not None:
        secret = config.consumer_secret.get_secret_value()
    elif settings.environment == "sandbox":
        secret = SANDBOX_CONSUMER_SECRET
    else:
        raise ConfigurationError(
            f"adapters.{name}.consumer_secret: required (or consumer_secret_file)"
        )
    tokens = TokenSource(
        system=name,
        outbound=outbound,
        store=context.store,
        consumer_key=config.consumer_key,
        consumer_secret=secret,
        token_path=config.token_path,
        margin=config.token_refresh_margin_seconds,
    )
    if (config.sign_requests or config.verify_responses) and settings.environment == "sandbox":
        # the sandbox makes its development PKI on demand; production keys are the operator's
        ensure_dev_pki(settings.signing.dev_pki_dir, [name])
    # the registry's policy is [signing.peers.<name>] when configured (pinned certificates)
    peer = name if name in signing.peers() else None
    if config.sign_requests:
        signing.signer()  # load the key now: a missing key fails the start, not a query
    verifier = response_verifier(name, config, settings, signing) if peer is None else None
    if config.verify_responses and verifier is None:
        signing.verifier(peer)
    transport = SoapTransport(
        system=name,
        outbound=outbound,
        tokens=tokens,
        crypto=ServiceSigning(signing, peer=peer, verifier=verifier),
        sign_requests=config.sign_requests,
        verify_responses=config.verify_responses,
    )
    client = PopulationDbClient(
        system=name, service_url=outbound.base_url + config.soap_path, transport=transport
    )
    return client


def response_verifier(
    name: str, config: PopulationDbConfig, settings: Settings, signing: SigningService
) -> XmlVerifier | None:
    """The verifier of the registry's answers when ``[signing.peers.<name>]`` pins nothing.

    Without a pin, any certificate chaining to the trust store would pass as the registry's:
    in the sandbox that includes the gateway's own key and every other simulator's. So the
    sandbox pins the population_db simulator's development certificate (the one the sandbox
    signs its answers with, ``<dev_pki_dir>/simulators/<name>.cert.pem``); elsewhere the
    operator must pin the registry's certificate, and start-up says so loudly."""
    if not config.verify_responses:
        return None
    if settings.environment == "sandbox":
        pki = ensure_dev_pki(settings.signing.dev_pki_dir, [name])
        pinned = tuple(load_certificates(pki.simulator(name).cert_path))
        policy = dataclasses.replace(
            signing.policy(None, signing.trust()), pinned=pinned, peer=name
        )
        return XmlVerifier(policy)
    log.warning(
        "population_db.responses_not_pinned",
        adapter=name,
        detail=(
            f"verify_responses is on but [signing.peers.{name}] pins no certificate: any "
            "certificate chaining to [signing] trust_paths is accepted as the registry's "
            f"signature; set [signing.peers.{name}] pinned_certificates to the registry's "
            "certificate"
        ),
    )
    return None
