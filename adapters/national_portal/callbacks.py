"""Dossiers submitted on the national portal, pushed to the gateway: our push contract.

No official push contract is published (DOMAIN.md), so this one is ours, documented in
``docs/adapters/national_portal.md``:

``POST /callbacks/national_portal/dossiers`` with a JSON body (``CallbackPush``: the DOMAIN.md
dossier record under ``hoSo``, ``maGiaoDich`` the portal's unique message id, ``thoiGianGui``
``yyyyMMddHHmmss`` Asia/Ho_Chi_Minh, attachments base64 under ``tepDinhKem``), authenticated
twice: the caller is a gateway client with scope ``callbacks:national_portal`` (API key), and
the header ``X-DVCQG-Signature`` carries the hex HMAC-SHA256, with the configured push key,
of the pipe-joined ``maGiaoDich|maHoSo|maTTHC|maDonVi|thoiGianGui|<SHA-256 hex of the body>``.
A message older or newer than the replay window is refused unless it is a copy of one
already accepted (the portal retrying), which gets the stored answer.

Each attachment is decoded, size-checked, digested (SHA-256) and, for the first copy of a
``maGiaoDich`` only (a copy changes nothing stored), kept in the store; the
provincial system receives a ``dossier.received`` event with links to fetch them from the
gateway (scope ``dossiers:read``), never megabytes inline.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from litestar import Request, Response, post
from pydantic import ValidationError

from adapters.national_portal.models import CallbackPush, parse_wire_date
from gateway.callbacks import dedupe_key
from gateway.capabilities.dossiers import (
    AttachmentLink,
    Dossier,
    parse_model,
    validate_dossier_code,
    validate_procedure_code,
    validate_unit_code,
)
from gateway.errors import (
    FieldError,
    GatewayError,
    PayloadTooLarge,
    SignatureInvalid,
    ValidationFailed,
)
from signing.checksums import FieldValue, hmac_sha256_scheme

if TYPE_CHECKING:
    from adapters.national_portal.adapter import NationalPortalAdapter

__all__ = [
    "PUSH_PATH",
    "PUSH_SCHEME",
    "SIGNATURE_HEADER",
    "push_mac",
    "push_routes",
    "sign_push",
    "verify_push",
]

SYSTEM = "national_portal"
#: where the portal pushes, relative to the gateway root
PUSH_PATH = "/callbacks/national_portal/dossiers"
SIGNATURE_HEADER = "X-DVCQG-Signature"


#: HMAC-SHA256 over maGiaoDich|maHoSo|maTTHC|maDonVi|thoiGianGui|<SHA-256 hex of the body>
PUSH_SCHEME = hmac_sha256_scheme(
    "national-portal-push",
    ("message_id", "dossier_code", "procedure_code", "unit_code", "sent_at", "body_sha256"),
)


def _mac_fields(push: CallbackPush, body: bytes) -> dict[str, FieldValue]:
    return {
        "message_id": push.maGiaoDich,
        "dossier_code": push.maHoSo,
        "procedure_code": push.maTTHC,
        "unit_code": push.maDonVi,
        "sent_at": push.thoiGianGui,
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }


def push_mac(key: bytes, fields: Sequence[str]) -> str:
    """HMAC-SHA256 hex over the pipe-joined fields (documentation and tests)."""
    return hmac.new(key, "|".join(fields).encode("utf-8"), hashlib.sha256).hexdigest()


def sign_push(key: bytes, *, body: bytes, push: CallbackPush) -> dict[str, str]:
    """The headers the portal adds to a push (used by the simulator and the docs' example)."""
    return {SIGNATURE_HEADER: PUSH_SCHEME.compute(_mac_fields(push, body), key)}


def verify_push(key: bytes, *, body: bytes, push: CallbackPush, signature: str | None) -> bool:
    if not signature:
        return False
    return PUSH_SCHEME.matches(_mac_fields(push, body), key, signature)


def _adapter(request: Request[Any, Any, Any]) -> NationalPortalAdapter:
    runtime = request.app.state.runtime
    adapter = runtime.registry.instances.get(SYSTEM)
    if adapter is None:
        raise GatewayError("the national portal adapter is not running")
    return adapter  # type: ignore[no-any-return]


def _decode_attachment(content: str, pointer: str, max_bytes: int) -> bytes:
    # base64 length bounds the decoded size: refuse before decoding a huge string
    if len(content) > (max_bytes * 4) // 3 + 4:
        raise PayloadTooLarge(
            f"{pointer}: the attachment exceeds {max_bytes} bytes",
            errors=[FieldError(pointer, f"larger than {max_bytes} bytes")],
        )
    try:
        raw = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed.field(pointer, "is not valid base64") from None
    if len(raw) > max_bytes:
        raise PayloadTooLarge(
            f"{pointer}: the attachment exceeds {max_bytes} bytes",
            errors=[FieldError(pointer, f"larger than {max_bytes} bytes")],
        )
    return raw


def _consistency(push: CallbackPush, known_units: Sequence[str]) -> list[FieldError]:
    errors = validate_dossier_code(push.maHoSo, pointer="/maHoSo")
    errors += validate_procedure_code(push.maTTHC, pointer="/maTTHC")
    errors += validate_unit_code(push.maDonVi, pointer="/maDonVi", known_units=known_units)
    if push.hoSo.MaHoSo != push.maHoSo:
        errors.append(FieldError("/hoSo/MaHoSo", "differs from maHoSo"))
    if push.hoSo.MaTTHC != push.maTTHC:
        errors.append(FieldError("/hoSo/MaTTHC", "differs from maTTHC"))
    if not errors and not push.maHoSo.startswith(push.maDonVi + "-"):
        errors.append(FieldError("/maDonVi", "is not the unit in the dossier code"))
    return errors


async def receive_push(
    adapter: NationalPortalAdapter, request: Request[Any, Any, Any]
) -> Response[bytes]:
    """Authenticate, check, store the attachments and hand the dossier to the intake."""
    ctx = adapter.context
    intake = ctx.callbacks
    actor = getattr(request.user, "id", None) or SYSTEM
    body = await request.body()

    async def refuse(error: GatewayError, reason: str) -> GatewayError:
        await intake.refuse(
            system=SYSTEM,
            reason=reason,
            actor=actor,
            operation="dossier.received",
            status=error.status,
            payload=body,
        )
        return error

    try:
        raw_json = json.loads(body)
    except ValueError:
        raise await refuse(ValidationFailed.field("", "the body is not JSON"), "not JSON") from None
    try:
        push = CallbackPush.model_validate(raw_json)
    except ValidationError:
        try:
            parse_model(CallbackPush, raw_json)
        except ValidationFailed as exc:
            raise await refuse(exc, "malformed push") from None
        raise
    if not verify_push(
        adapter.push_key(), body=body, push=push, signature=request.headers.get(SIGNATURE_HEADER)
    ):
        raise await refuse(
            SignatureInvalid(f"the {SIGNATURE_HEADER} header does not verify"), "bad signature"
        )
    # a copy of a message already accepted skips the window: the portal may retry late
    known = await ctx.store.get(dedupe_key(SYSTEM, push.maGiaoDich)) is not None
    if not known:
        try:
            sent = parse_wire_date(push.thoiGianGui)
        except ValueError:
            sent = None
        window = adapter.config.push_replay_window_seconds
        if sent is None or abs(sent.timestamp() - time.time()) > window:
            raise await refuse(
                SignatureInvalid(
                    f"thoiGianGui is outside the {int(window)} s replay window",
                    errors=[FieldError("/thoiGianGui", "outside the replay window")],
                ),
                "outside the replay window",
            )
    errors = _consistency(push, adapter.config.known_units)
    if errors:
        raise await refuse(
            ValidationFailed("; ".join(f"{e.pointer}: {e.message}" for e in errors), errors=errors),
            "inconsistent push",
        )
    try:
        dossier: Dossier = adapter.mapping.dossier_from_wire(push.hoSo)
    except (ValueError, ValidationError) as exc:
        raise await refuse(
            ValidationFailed.field("/hoSo", _safe(exc)), "bad dossier record"
        ) from None

    files: list[tuple[str, str, bytes]] = []
    for i, att in enumerate(push.tepDinhKem):
        pointer = f"/tepDinhKem/{i}/noiDung"
        try:
            content = _decode_attachment(att.noiDung, pointer, adapter.config.attachment_max_bytes)
        except (ValidationFailed, PayloadTooLarge) as exc:
            raise await refuse(exc, "bad attachment") from None
        files.append((att.tenTep, att.loaiTep, content))

    received_at = datetime.now(UTC)
    # dedupe before anything is stored: a copy (even with another body) changes nothing and
    # gets the first copy's answer from the intake, which forwards nothing either
    if await adapter.claim_inbound(push.maGiaoDich):
        links = [
            await adapter.store_attachment(dossier.code, name, media_type, content)
            for name, media_type, content in files
        ]
        await adapter.remember_inbound(dossier, links, message_id=push.maGiaoDich, at=received_at)
    else:
        # the intake answers this copy with the first one's reply; should the first copy's
        # process have died before publishing, the event carries what the first copy stored
        stored = await adapter.inbound(dossier.code, push.maGiaoDich)
        if stored is not None:
            dossier = Dossier.model_validate(stored["dossier"])
            links = [AttachmentLink.model_validate(a) for a in stored["attachments"]]
            received_at = datetime.fromisoformat(stored["received_at"])
        else:
            links = [adapter.attachment_link(dossier.code, n, m, c) for n, m, c in files]
    reply = json.dumps(
        {
            "error_code": 0,
            "message": "Đã tiếp nhận hồ sơ",
            "maHoSo": dossier.code,
            "maGiaoDich": push.maGiaoDich,
        },
        ensure_ascii=False,
    ).encode("utf-8")
    data: Mapping[str, Any] = {
        "dossier": dossier.model_dump(mode="json"),
        "attachments": [link.model_dump(mode="json") for link in links],
        "received_at": received_at.isoformat(),
    }
    subjects = [dossier.applicant.id_number] if dossier.applicant.id_number else []
    answer = await intake.accept(
        system=SYSTEM,
        event_id=push.maGiaoDich,
        event_type="dossier.received",
        data=data,
        reply=reply,
        media_type="application/json",
        subject=dossier.code,
        actor=actor,
        operation="dossier.received",
        payload=body,
        subjects=subjects,
        dossier_code=dossier.code,
        procedure_code=dossier.procedure_code,
    )
    return answer.to_response()


def _safe(exc: Exception) -> str:
    # pydantic messages may echo the input (personal data): keep the location only
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"invalid {'.'.join(str(p) for p in first['loc'])}"
    return "invalid dossier record"


@post(
    "/dossiers",
    status_code=200,
    tags=["callbacks"],
    summary="The national portal pushes a dossier submitted nationally",
    opt={"scopes": ["callbacks:national_portal"]},
    include_in_schema=True,
)
async def national_dossier_push(request: Request[Any, Any, Any]) -> Response[bytes]:
    return await receive_push(_adapter(request), request)


def push_routes() -> list[Any]:
    """Route handlers, mounted by the core under ``/callbacks/national_portal``."""
    return [national_dossier_push]
