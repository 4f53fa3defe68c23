"""A faithful fake of the National Population Database behind its integration platform.

It speaks the real wire protocol over HTTP, so the adapter is tested exactly as it runs:

- ``GET  /soap?wsdl`` (or ``/wsdl``) and ``GET /dancuquocgia.xsd``: the shipped WSDL and schema,
  with the service address pointing at this simulator;
- ``POST /token``: OAuth2 client credentials (HTTP Basic ``consumer_key:consumer_secret``,
  ``grant_type=client_credentials``), tokens that expire after ``controls.token_ttl`` seconds;
- ``POST /soap``: ``TraCuuThongTinCongDan``. A bearer token is required (401 otherwise). The
  envelope goes through the project's hardened parser; when the deployment signs requests its
  XML signature must verify against the development CA; the body must satisfy the XSD (a SOAP
  fault otherwise). Then the platform's rules: the integration code must be the configured one
  (002), the unit code well-formed (003), the procedure licensed (004), the officer permitted
  (005). The answer is the citizen found by ``SoDinhDanh`` or ``SoCMND`` in the synthetic
  population of the sandbox seed (an empty collection when there is none), signed with the
  simulator's development certificate.

Tests reach :attr:`PopulationSimulator.controls` to make it misbehave in ways only this
protocol can (an XXE payload, a missing or broken signature, a malformed envelope, a SOAP
fault, revoked tokens); generic faults (latency, hangs, error statuses, garbled or dropped
answers) come from the sandbox's fault injector, which names operations with
:func:`operation_of`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs

import structlog
from lxml import etree
from pydantic import ValidationError

from gateway.adapters import SimulatorContext
from gateway.errors import GatewayError
from signing.keys import ensure_dev_pki
from signing.sign import XmlSigner
from signing.trust import TrustStore
from signing.verify import VerificationPolicy, XmlVerifier
from signing.xml import parse_xml

from .config import SANDBOX_CONSUMER_SECRET, UNIT_CODE_PATTERN, PopulationDbConfig
from .models import (
    NS,
    OPERATION,
    SOAP_ENV_NS,
    WSDL_PATH,
    XSD_PATH,
    CongDan,
    KetQuaTraCuu,
    MaLoi,
    YeuCauTraCuu,
    request_from_xml,
    response_to_xml,
)
from .population import DEFAULT_SIZE, LICENSED_PROCEDURES, PERMITTED_OFFICERS, population
from .soapsig import EnvelopeSigning, EnvelopeVerification

__all__ = [
    "SIMULATOR_NAME",
    "EnvelopeSigner",
    "EnvelopeVerifier",
    "PopulationSimulator",
    "ResponseMode",
    "SimulatorControls",
    "build_simulator",
    "operation_of",
]

log = structlog.get_logger(__name__)

SIMULATOR_NAME = "population_db"

Scope = MutableMapping[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: signs a whole SOAP envelope, returns the serialised document
EnvelopeSigner = Callable[[etree._Element], bytes]
#: checks a received document's signature and returns the SOAP Body it signed (re-parsed from
#: the digested bytes); raises a gateway error when it does not verify
EnvelopeVerifier = Callable[[bytes], etree._Element]

ResponseMode = Literal[
    "normal",  # a signed, valid answer
    "unsigned",  # no signature at all
    "bad_signature",  # signed, then a byte of the signed body changed
    "xxe",  # a DOCTYPE with an external entity in the answer
    "malformed",  # not XML
    "wrong_shape",  # well-formed SOAP whose body is not the operation's response
    "fault",  # a SOAP fault (server error)
    "other_citizen",  # a well-signed answer carrying another citizen than the one asked for
    "other_request",  # a well-signed answer whose MaYeuCau is not the request's
]

_UNIT_CODE = re.compile(UNIT_CODE_PATTERN)
_XXE_BODY = (
    b'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    b'<soap:Envelope xmlns:soap="' + SOAP_ENV_NS.encode() + b'"><soap:Body>'
    b'<TraCuuThongTinCongDanResponse xmlns="' + NS.encode() + b'">'
    b"<MaYeuCau>&xxe;</MaYeuCau><MaLoi>000</MaLoi></TraCuuThongTinCongDanResponse>"
    b"</soap:Body></soap:Envelope>"
)


def operation_of(path: str, body: bytes) -> str:
    """The operation a request is for, as the sandbox's fault table names it."""
    relative = path.rstrip("/")
    if relative.endswith("/token"):
        return "token"
    if relative.endswith("/soap") and body:
        return OPERATION
    if relative.endswith(("/wsdl", "/soap", ".xsd")):
        return "wsdl"
    return relative.rsplit("/", 1)[-1] or "/"


@dataclass
class SimulatorControls:
    """Knobs for tests and the demo; counters for assertions."""

    #: seconds a new token lives
    token_ttl: float = 3600.0
    #: how the next SOAP answers misbehave (see ResponseMode)
    response_mode: ResponseMode = "normal"
    #: apply ``response_mode`` to this many answers, then go back to normal (None: forever)
    response_count: int | None = None
    #: tokens the platform issued
    tokens_issued: int = 0
    soap_requests: int = 0
    #: how many SOAP requests carried a signature that verified
    signed_requests_verified: int = 0
    #: the MaYeuCau of the latest requests read (oldest first)
    request_ids: deque[str] = field(default_factory=lambda: deque(maxlen=1000))
    #: the bytes of the latest SOAP request, as received
    last_request: bytes | None = None
    _tokens: dict[str, float] = field(default_factory=dict, repr=False)

    def reset(self) -> None:
        """Back to normal answers and zero counters; issued tokens stay valid."""
        self.token_ttl = 3600.0
        self.response_mode, self.response_count = "normal", None
        self.tokens_issued = self.soap_requests = self.signed_requests_verified = 0
        self.request_ids.clear()
        self.last_request = None

    def misbehave(self, mode: ResponseMode, count: int | None = 1) -> None:
        self.response_mode = mode
        self.response_count = count

    def revoke_tokens(self) -> None:
        """The platform forgets every token (a restart, a key rotation): next call gets 401."""
        self._tokens.clear()

    def _next_mode(self) -> ResponseMode:
        mode = self.response_mode
        if mode != "normal" and self.response_count is not None:
            self.response_count -= 1
            if self.response_count <= 0:
                self.response_mode, self.response_count = "normal", None
        return mode


class PopulationSimulator:
    """The ASGI app. ``signer`` signs answers; ``request_verifier`` checks signed requests
    (None: requests are not required to be signed)."""

    def __init__(
        self,
        *,
        seed: int,
        base_url: str,
        consumer_key: str,
        consumer_secret: str,
        integration_code: str,
        signer: EnvelopeSigner | None = None,
        request_verifier: EnvelopeVerifier | None = None,
        size: int = DEFAULT_SIZE,
        licensed_procedures: tuple[str, ...] = LICENSED_PROCEDURES,
        permitted_officers: tuple[str, ...] = PERMITTED_OFFICERS,
    ) -> None:
        self.seed = seed
        self.size = size
        self.base_url = base_url.rstrip("/")
        self._credentials = (consumer_key, consumer_secret)
        self.integration_code = integration_code
        self.signer = signer
        self.request_verifier = request_verifier
        self.licensed = frozenset(licensed_procedures)
        self.permitted = frozenset(permitted_officers)
        self.controls = SimulatorControls()
        self._schema: etree.XMLSchema | None = None
        self._wsdl = WSDL_PATH.read_bytes().replace(
            b"http://localhost/population_db/soap", f"{self.base_url}/soap".encode()
        )

    @property
    def population(self) -> Any:
        return population(self.seed, self.size)

    # -- ASGI ---------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        method: str = scope["method"]
        body = await _read_body(receive)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = scope.get("query_string", b"").decode("latin-1")
        if method == "GET" and (
            path == "/wsdl" or (path == "/soap" and query.lower() in ("wsdl", "wsdl="))
        ):
            await _respond(send, 200, self._wsdl, b"text/xml; charset=utf-8")
        elif method == "GET" and path == "/" + XSD_PATH.name:
            await _respond(send, 200, XSD_PATH.read_bytes(), b"text/xml; charset=utf-8")
        elif method == "POST" and path == "/token":
            status, payload, extra = self._token(headers, body)
            await _respond(send, status, payload, b"application/json", extra)
        elif method == "POST" and path == "/soap":
            status, payload, extra = await self._soap(headers, body)
            await _respond(send, status, payload, b"text/xml; charset=utf-8", extra)
        else:
            await _respond(send, 404, b'{"error":"not_found"}', b"application/json")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # generate the population before the first request, off the event loop
                await asyncio.to_thread(population, self.seed, self.size)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- OAuth2 -------------------------------------------------------------------------
    def _token(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes, Headers]:
        auth = headers.get("authorization", "")
        if not auth.lower().startswith("basic "):
            return _oauth_error(401, "invalid_client")
        try:
            user, _, password = base64.b64decode(auth[6:]).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return _oauth_error(401, "invalid_client")
        key, secret = self._credentials
        if not (secrets.compare_digest(user, key) and secrets.compare_digest(password, secret)):
            return _oauth_error(401, "invalid_client")
        form = parse_qs(body.decode("utf-8", "replace"))
        if form.get("grant_type") != ["client_credentials"]:
            return _oauth_error(400, "unsupported_grant_type")
        token = secrets.token_urlsafe(24)
        ttl = self.controls.token_ttl
        self.controls._tokens[token] = time.monotonic() + ttl
        self.controls.tokens_issued += 1
        # forget expired tokens now and then, so the table stays small
        if len(self.controls._tokens) > 1000:
            now = time.monotonic()
            self.controls._tokens = {t: e for t, e in self.controls._tokens.items() if e > now}
        answer = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(ttl) if ttl >= 1 else ttl,
            "scope": "default",
        }
        return 200, json.dumps(answer).encode(), [(b"cache-control", b"no-store")]

    def _authorised(self, headers: dict[str, str]) -> bool:
        auth = headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            return False
        expires = self.controls._tokens.get(auth[7:].strip())
        return expires is not None and expires > time.monotonic()

    # -- SOAP ---------------------------------------------------------------------------
    async def _soap(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes, Headers]:
        if not self._authorised(headers):
            return (
                401,
                b"<fault><message>Invalid Credentials</message></fault>",
                [(b"www-authenticate", b'Bearer error="invalid_token"')],
            )
        self.controls.soap_requests += 1
        self.controls.last_request = body
        try:
            envelope = parse_xml(body)
        except GatewayError as exc:
            return _fault("Client", f"the envelope was refused: {exc.detail}")
        if self.request_verifier is not None:
            try:
                signed = self.request_verifier(body)
            except GatewayError as exc:
                return _fault("Client", f"the request signature did not verify: {exc.detail}")
            self.controls.signed_requests_verified += 1
            # only what the signature covers is read: the envelope's own Body may be a forgery
            # next to a signed Body moved elsewhere (signature wrapping)
            operation = _only_child(signed)
        else:
            operation = _body_child(envelope)
        if operation is None:
            return _fault("Client", "the envelope has no body element")
        problem = self._schema_problem(operation)
        if problem is not None:
            return _fault("Client", f"the request breaks the schema: {problem}")
        try:
            request = request_from_xml(operation)
        except (ValueError, ValidationError):
            return _fault("Client", "the request breaks the schema")
        self.controls.request_ids.append(request.MaYeuCau)
        answer = self._answer(request)
        return self._render(answer)

    def _schema_problem(self, element: etree._Element) -> str | None:
        if self._schema is None:
            self._schema = etree.XMLSchema(parse_xml(XSD_PATH.read_bytes()))
        document = etree.ElementTree(parse_xml(etree.tostring(element)))
        if self._schema.validate(document):
            return None
        error = self._schema.error_log.last_error  # type: ignore[attr-defined]
        # the schema's message names elements and patterns, and may quote a value: keep it out
        return f"line {error.line}: {error.type_name}" if error else "invalid"

    def _answer(self, request: YeuCauTraCuu) -> KetQuaTraCuu:
        def refuse(code: str, text: str) -> KetQuaTraCuu:
            return KetQuaTraCuu(MaYeuCau=request.MaYeuCau, MaLoi=code, MoTaLoi=text)

        if request.MaTichHop != self.integration_code:
            return refuse(MaLoi.MA_TICH_HOP_SAI, "Mã tích hợp không hợp lệ")
        if not _UNIT_CODE.match(request.MaDonVi):
            return refuse(MaLoi.DON_VI_CHUA_DANG_KY, "Đơn vị chưa đăng ký khai thác")
        if request.MaDVC not in self.licensed:
            return refuse(
                MaLoi.THU_TUC_CHUA_DUOC_CAP_PHEP, "Thủ tục chưa được cấp phép khai thác dữ liệu"
            )
        if request.MaCanBo not in self.permitted:
            return refuse(MaLoi.CAN_BO_KHONG_DUOC_PHEP, "Cán bộ không được phép khai thác dữ liệu")
        citizen = self.population.find(
            id_number=request.SoDinhDanh, legacy_id_number=request.SoCMND
        )
        return KetQuaTraCuu(
            MaYeuCau=request.MaYeuCau,
            MaLoi=MaLoi.THANH_CONG,
            MoTaLoi=None if citizen else "Không tìm thấy thông tin công dân",
            CongdanCollection=[citizen] if citizen else [],
        )

    def _someone_else(self, answer: KetQuaTraCuu) -> CongDan:
        """A citizen of the population who is not the one in ``answer`` (if any)."""
        asked = {c.SoDinhDanh for c in answer.CongdanCollection}
        people: list[CongDan] = self.population.people
        return next(p for p in people if p.SoDinhDanh not in asked)

    def _render(self, answer: KetQuaTraCuu) -> tuple[int, bytes, Headers]:
        mode = self.controls._next_mode()
        if mode == "malformed":
            return 200, b"<soap:Envelope><unterminated", []
        if mode == "xxe":
            return 200, _XXE_BODY, []
        if mode == "fault":
            return _fault("Server", "Hệ thống đang bận, vui lòng thử lại sau")
        if mode == "other_citizen":
            answer = answer.model_copy(update={"CongdanCollection": [self._someone_else(answer)]})
        elif mode == "other_request":
            answer = answer.model_copy(update={"MaYeuCau": secrets.token_hex(16)})
        envelope = _envelope(response_to_xml(answer))
        if mode == "wrong_shape":
            body = envelope.find(f"{{{SOAP_ENV_NS}}}Body")
            assert body is not None
            body[0].tag = f"{{{NS}}}KetQuaKhac"
        if self.signer is None or mode == "unsigned":
            return 200, _serialise(envelope), []
        signed = self.signer(envelope)
        if mode == "bad_signature":
            # change the answer after signing: what a tampering proxy would do
            signed = signed.replace(b"<dc:MaLoi>000</dc:MaLoi>", b"<dc:MaLoi>000</dc:MaLoi> ", 1)
            if b"<dc:Ten>" in signed:
                signed = signed.replace(b"<dc:Ten>", b"<dc:Ten>X", 1)
        return 200, signed, []


# ---------------------------------------------------------------- helpers

Headers = list[tuple[bytes, bytes]]


def _envelope(body_child: etree._Element) -> etree._Element:
    envelope = etree.Element(f"{{{SOAP_ENV_NS}}}Envelope", nsmap={"soap": SOAP_ENV_NS})
    etree.SubElement(envelope, f"{{{SOAP_ENV_NS}}}Header")
    body = etree.SubElement(envelope, f"{{{SOAP_ENV_NS}}}Body")
    body.append(body_child)
    return envelope


def _serialise(envelope: etree._Element) -> bytes:
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")


def _body_child(envelope: etree._Element) -> etree._Element | None:
    if etree.QName(envelope).text != f"{{{SOAP_ENV_NS}}}Envelope":
        return None
    body = envelope.find(f"{{{SOAP_ENV_NS}}}Body")
    if body is None:
        return None
    return _only_child(body)


def _only_child(body: etree._Element) -> etree._Element | None:
    children = [c for c in body if isinstance(c.tag, str)]
    return children[0] if len(children) == 1 else None


def _fault(code: str, text: str) -> tuple[int, bytes, Headers]:
    envelope = etree.Element(f"{{{SOAP_ENV_NS}}}Envelope", nsmap={"soap": SOAP_ENV_NS})
    body = etree.SubElement(envelope, f"{{{SOAP_ENV_NS}}}Body")
    fault = etree.SubElement(body, f"{{{SOAP_ENV_NS}}}Fault")
    etree.SubElement(fault, "faultcode").text = f"soap:{code}"
    etree.SubElement(fault, "faultstring").text = text
    return 500, _serialise(envelope), []


def _oauth_error(status: int, error: str) -> tuple[int, bytes, Headers]:
    headers: Headers = [(b"cache-control", b"no-store")]
    if status == 401:
        headers.append((b"www-authenticate", b'Basic realm="token"'))
    return status, json.dumps({"error": error}).encode(), headers


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _respond(
    send: Send, status: int, body: bytes, media_type: bytes, headers: Headers | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", media_type),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def build_simulator(ctx: SimulatorContext, *, size: int = DEFAULT_SIZE) -> PopulationSimulator:
    """The simulator the sandbox mounts: the adapter's credentials, the sandbox seed, answers
    signed with the simulator's development certificate, and the gateway's signed requests
    checked against the development CA when the deployment signs them."""
    config = ctx.config if isinstance(ctx.config, PopulationDbConfig) else PopulationDbConfig()
    secret = (
        config.consumer_secret.get_secret_value()
        if config.consumer_secret is not None
        else SANDBOX_CONSUMER_SECRET
    )
    pki = ensure_dev_pki(ctx.pki_dir, [SIMULATOR_NAME])
    signing = EnvelopeSigning(XmlSigner(pki.simulator(SIMULATOR_NAME).load()))
    verify: EnvelopeVerifier | None = None
    if config.sign_requests:
        checker = EnvelopeVerification(
            XmlVerifier(
                VerificationPolicy(trust=TrustStore.from_paths([pki.ca.cert_path]), peer="gateway")
            )
        )

        def verify(data: bytes) -> etree._Element:
            return checker.verify(data)

    return PopulationSimulator(
        seed=ctx.seed,
        base_url=ctx.base_url,
        consumer_key=config.consumer_key,
        consumer_secret=secret,
        integration_code=config.integration_code,
        signer=signing.sign,
        request_verifier=verify,
        size=size,
    )
