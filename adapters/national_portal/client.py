"""The national portal's wire protocol: login, session, one POST per service, error codes.

Every call goes through the adapter's ``OutboundClient`` (timeouts, retries of idempotent
calls, the shared circuit breaker, bulkhead, quota). This module adds what is the portal's
own: the session (cached in the store so every instance and worker shares one, renewed when
the portal rejects it), the envelope ``{session, madonvi, service, ...}`` and the meaning of
``error_code``: 0/"00" success, a session code -> log in again and repeat once, anything else
a business rejection (``UpstreamRejected``, permanent: its job is dead-lettered with the
portal's message). An HTTP error other than 401/403, or an answer that is not the expected
JSON, is a transport fault (``UpstreamUnavailable``: the job retries). Every exchange is
audited (never the payload, only its SHA-256).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from adapters.national_portal.models import PortalReply
from gateway.errors import (
    GatewayError,
    UpstreamAuthFailed,
    UpstreamRejected,
    UpstreamUnavailable,
)

if TYPE_CHECKING:
    from gateway.audit import Auditor
    from gateway.outbound import OutboundClient
    from gateway.store.base import Store

__all__ = ["SESSION_KEY", "PortalClient"]

log = structlog.get_logger(__name__)

SYSTEM = "national_portal"
#: the shared session (a store value: every instance and worker uses the same one)
SESSION_KEY = "national_portal:session"


class PortalClient:
    def __init__(
        self,
        outbound: OutboundClient,
        store: Store,
        auditor: Auditor | None,
        *,
        username: str,
        password: str,
        madonvi: str,
        login_path: str,
        service_path: str,
        service_paths: Mapping[str, str],
        session_ttl: float,
        session_rejected_codes: Collection[str],
    ) -> None:
        self._outbound = outbound
        self._store = store
        self._auditor = auditor
        self._username = username
        self._password = password
        self.madonvi = madonvi
        self._login_path = login_path
        self._service_path = service_path
        self._service_paths = dict(service_paths)
        self._session_ttl = session_ttl
        self._session_codes = {str(c) for c in session_rejected_codes}
        # one login at a time in this process; other instances may still race (harmless)
        self._login_lock = asyncio.Lock()

    # sessions ---------------------------------------------------------------------
    async def session(self) -> str:
        cached = await self._store.get(SESSION_KEY)
        if cached:
            return cached.decode("utf-8")
        return await self._renew(None)

    async def _renew(self, rejected: str | None) -> str:
        async with self._login_lock:
            cached = await self._store.get(SESSION_KEY)
            if cached and cached.decode("utf-8") != rejected:
                return cached.decode("utf-8")  # another worker renewed it meanwhile
            token = await self._login()
            await self._store.set(SESSION_KEY, token.encode("utf-8"), ttl=self._session_ttl)
            return token

    async def _login(self) -> str:
        started = time.perf_counter()
        body = {"username": self._username, "password": self._password}
        try:
            resp = await self._outbound.request(
                "login", "POST", self._login_path, idempotent=True, json=body
            )
            reply = self._parse(resp.status_code, resp.content, "login")
            if not reply.ok or not reply.session:
                raise UpstreamAuthFailed(
                    f"the portal refused the gateway's login (code {reply.error_code})",
                    system=SYSTEM,
                )
        except GatewayError as exc:
            await self._audit("login", "error", started, detail=exc.detail)
            raise
        await self._audit("login", "ok", started)
        log.info("national portal session renewed")
        return reply.session

    # calls ------------------------------------------------------------------------
    async def call(
        self,
        service: str,
        params: Mapping[str, Any],
        *,
        idempotent: bool,
        dossier_code: str | None = None,
        procedure_code: str | None = None,
        detail: str | None = None,
        audit: bool = True,
    ) -> PortalReply:
        """One service call; renews the session once if the portal rejects it. ``audit``
        False is for health probes only (they would flood the exchange log)."""
        started = time.perf_counter()
        session = await self.session()
        payload = b""
        try:
            for attempt in (1, 2):
                envelope = {"session": session, "madonvi": self.madonvi, "service": service}
                envelope.update(params)
                payload = json.dumps(envelope, ensure_ascii=False).encode("utf-8")
                resp = await self._outbound.request(
                    service,
                    "POST",
                    self._service_paths.get(service, self._service_path),
                    idempotent=idempotent,
                    content=payload,
                    headers={"Content-Type": "application/json"},
                )
                reply = self._parse(resp.status_code, resp.content, service)
                if str(reply.error_code) in self._session_codes:
                    if attempt == 1:
                        session = await self._renew(session)
                        continue
                    # a race with its expiry or with another login: retry later, not dead
                    raise UpstreamUnavailable(
                        "the portal rejected a freshly renewed session", system=SYSTEM
                    )
                if not reply.ok:
                    raise UpstreamRejected(
                        f"{service}: {reply.message or 'rejected'} (code {reply.error_code})",
                        system=SYSTEM,
                        extra={"upstream_code": str(reply.error_code)},
                    )
                break
        except GatewayError as exc:
            if not audit:
                raise
            outcome = "rejected" if isinstance(exc, UpstreamRejected) else "error"
            await self._audit(
                service,
                outcome,
                started,
                dossier_code=dossier_code,
                procedure_code=procedure_code,
                payload=payload or None,
                detail=exc.detail,
            )
            raise
        if not audit:
            return reply
        await self._audit(
            service,
            "ok",
            started,
            dossier_code=dossier_code,
            procedure_code=procedure_code,
            payload=payload,
            detail=detail,
        )
        return reply

    @staticmethod
    def _parse(status: int, content: bytes, operation: str) -> PortalReply:
        if status >= 500:
            # 502/503/504 were retried and raised by the outbound layer; a 500 is transient too
            raise UpstreamUnavailable(
                f"{operation}: the portal answered HTTP {status}", system=SYSTEM
            )
        if status in (401, 403):
            raise UpstreamAuthFailed(
                f"{operation}: the portal answered HTTP {status}", system=SYSTEM
            )
        # The portal answers its business refusals as HTTP 200 with an error_code; another 4xx
        # (a proxy, a gateway in front of it) or a garbled body is a transport fault: retried
        if status >= 400:
            raise UpstreamUnavailable(
                f"{operation}: the portal answered HTTP {status} (transport fault, retried)",
                system=SYSTEM,
            )
        try:
            return PortalReply.model_validate(json.loads(content))
        except ValueError:
            raise UpstreamUnavailable(
                f"{operation}: the portal's answer is not the expected JSON "
                "(transport fault, retried)",
                system=SYSTEM,
            ) from None

    async def _audit(
        self,
        operation: str,
        outcome: str,
        started: float,
        *,
        dossier_code: str | None = None,
        procedure_code: str | None = None,
        payload: bytes | None = None,
        detail: str | None = None,
    ) -> None:
        if self._auditor is None:
            return
        await self._auditor.record(
            direction="outbound",
            actor="gateway",
            adapter=SYSTEM,
            operation=operation,
            outcome=outcome,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            dossier_code=dossier_code,
            procedure_code=procedure_code,
            payload=payload,
            detail=detail,
        )
