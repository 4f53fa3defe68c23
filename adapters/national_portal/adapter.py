"""The national portal adapter: serves the ``dossiers`` capability.

Commands (``PUT /v1/dossiers/{code}``, ``POST .../progress``) are checked here against the
dossier's accepted history (impossible transitions are 422), then become one durable job each,
with the dossier code as ordering key, so the portal receives a dossier's statuses in the
order the province sent them. A sync job runs ``TraCuuHoSo``, then ``DongBoHoSoMC`` with
``isUpdating`` from the answer, then ``CapNhatTienDoHoSoMC`` in chunks of at most 10 (when
the job is retried, a ``DongBoHoSoMC`` or a chunk the portal already confirmed is not sent
again). The catalogue is cached in the store, refreshed by a scheduled job and served stale,
marked so, while the portal is down.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, SecretStr, field_validator, model_validator

from adapters.national_portal.callbacks import push_routes
from adapters.national_portal.client import PortalClient
from adapters.national_portal.models import (
    DEFAULT_STATUS_CODES,
    CatalogueEntry,
    ProcedureDetail,
    WireMapping,
    chunks,
)
from gateway.adapters import (
    Adapter,
    AdapterConfig,
    AdapterContext,
    JobHandler,
    ProbeResult,
    ScheduledJob,
    SimulatorContext,
)
from gateway.callbacks import IN_FLIGHT_RETRY_AFTER, TAKEOVER_SECONDS
from gateway.capabilities.dossiers import (
    UNIT_CODE_PATTERN,
    AcceptedCommand,
    Attachment,
    AttachmentLink,
    Dossier,
    DossierState,
    DossierStatus,
    PendingWork,
    Procedure,
    ProcedureList,
    ProcedureSummary,
    ProgressRecord,
    check_progress_transitions,
    check_transition,
    validate_dossier,
    validate_dossier_code,
    validate_procedure_code,
    validate_progress,
)
from gateway.errors import (
    ConfigurationError,
    Conflict,
    GatewayError,
    IdempotencyInFlight,
    NotFound,
    UpstreamError,
    UpstreamRejected,
    ValidationFailed,
)
from gateway.store.base import JobState

if TYPE_CHECKING:
    from litestar.types import ASGIApp, ControllerRouterHandler

    from gateway.store.base import Job

__all__ = [
    "PROGRESS_KIND",
    "REFRESH_KIND",
    "SANDBOX_PASSWORD",
    "SANDBOX_PUSH_KEY",
    "SYNC_KIND",
    "NationalPortalAdapter",
    "NationalPortalConfig",
]

SYSTEM = "national_portal"
SYNC_KIND = "national_portal.sync_dossier"
PROGRESS_KIND = "national_portal.push_progress"
REFRESH_KIND = "national_portal.refresh_catalogue"

#: sandbox-only credentials, used when the configuration gives none (refused in production)
SANDBOX_PASSWORD = "sandbox-only-portal-password"  # noqa: S105 - a simulator's dev credential
SANDBOX_PUSH_KEY = "sandbox-only-push-hmac-key"

_K = "national_portal:"
_LIST_KEY = _K + "catalogue:list"
_LOCK_WAIT = 5.0
#: cached catalogue copies outlive their freshness so they can be served stale
_STALE_KEEP = 30 * 86400.0


def _key(kind: str, ident: str) -> str:
    return f"{_K}{kind}:{ident}"


def _read_secret_file(data: dict[str, Any], name: str) -> None:
    path = data.pop(f"{name}_file", None)
    if path not in (None, "") and data.get(name) in (None, ""):
        try:
            data[name] = Path(str(path)).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"{name}_file: cannot read {path}: {exc.strerror}") from None


class NationalPortalConfig(AdapterConfig):
    """``[adapters.national_portal]``. Secrets may come as ``password_file`` /
    ``push_hmac_key_file`` or from ``GATEWAY_ADAPTERS__NATIONAL_PORTAL__PASSWORD``."""

    username: str = "dvc-gateway"
    password: SecretStr | None = None
    #: the province's unit code the portal account belongs to (``madonvi`` of every call)
    madonvi: str = "000.00.00.H47"
    login_path: str = "/login"
    service_path: str = "/service"
    #: per-service endpoints where a deployment splits them ("one endpoint per purpose")
    service_paths: dict[str, str] = Field(default_factory=dict)
    #: how long a session is reused before logging in again (the portal may end it sooner)
    session_ttl_seconds: float = Field(1200.0, gt=0)
    #: ``error_code`` values meaning "session invalid or expired": log in and repeat once
    session_rejected_codes: list[str] = Field(default_factory=lambda: ["-1"])
    #: canonical status -> TrangThaiHoSo, overriding the published numbering
    status_codes: dict[str, str] = Field(default_factory=dict)
    #: canonical channel (in_person, online, postal) -> HinhThuc
    channel_codes: dict[str, str] = Field(default_factory=dict)
    #: unit codes this gateway may send dossiers for (data; empty = any well-formed code)
    known_units: list[str] = Field(default_factory=list)
    #: the portal takes at most 10 progress records per call
    progress_chunk_size: int = Field(10, ge=1, le=10)
    catalogue_ttl_seconds: float = Field(6 * 3600.0, gt=0)
    catalogue_refresh_seconds: float = Field(3600.0, gt=0)
    catalogue_prefetch_details: bool = True
    #: ``error_code`` values of ``LayThuTuc`` meaning "no such procedure" (404); any other
    #: refusal serves the cached copy, marked stale (not published: the simulator's code)
    procedure_not_found_codes: list[str] = Field(default_factory=lambda: ["2"])
    #: HMAC key the portal signs its pushes with (our push contract)
    push_hmac_key: SecretStr | None = None
    push_replay_window_seconds: float = Field(300.0, gt=0)
    attachment_max_bytes: int = Field(10 * 1024 * 1024, ge=1)
    attachment_retention_days: float = Field(30.0, gt=0)
    #: how long a dossier's accepted and confirmed state is kept after its last command (the
    #: transition checks and GET /v1/dossiers rest on it; dossiers close well within a year)
    dossier_state_retention_days: float = Field(400.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            _read_secret_file(data, "password")
            _read_secret_file(data, "push_hmac_key")
        return data

    @field_validator("madonvi")
    @classmethod
    def _unit(cls, value: str) -> str:
        if not UNIT_CODE_PATTERN.match(value):
            raise ValueError("must be a unit code like 000.00.00.H47")
        return value

    @field_validator("known_units")
    @classmethod
    def _units(cls, value: list[str]) -> list[str]:
        for unit in value:
            if not UNIT_CODE_PATTERN.match(unit):
                raise ValueError(f"{unit!r} is not a unit code like 000.00.19.H47")
        return value

    @field_validator("status_codes")
    @classmethod
    def _statuses(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name not in DEFAULT_STATUS_CODES:
                raise ValueError(f"{name!r} is not a canonical status")
        merged = {**DEFAULT_STATUS_CODES, **value}
        if len(set(merged.values())) != len(merged):
            raise ValueError("two statuses map to the same TrangThaiHoSo code")
        return value


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


#: accepted commands remembered one by one (older ones are folded into a base history)
_MAX_ENTRIES = 200


def _history(
    base: Sequence[DossierStatus], entries: Sequence[Sequence[Any]]
) -> list[DossierStatus]:
    """The statuses a dossier went through: the base, then each command's, without repeats."""
    out = list(base)
    for _job_id, statuses in entries:
        for value in statuses:
            status = DossierStatus(value)
            if not out or out[-1] is not status:
                out.append(status)
    return out


class NationalPortalAdapter(Adapter):
    name: ClassVar[str] = SYSTEM
    title: ClassVar[str] = "National Public Service Portal"
    title_vi: ClassVar[str] = "Cổng Dịch vụ công quốc gia"
    config_model: ClassVar[type[AdapterConfig]] = NationalPortalConfig
    capabilities: ClassVar[frozenset[str]] = frozenset({"dossiers"})

    config: NationalPortalConfig

    def __init__(self, config: AdapterConfig, context: AdapterContext) -> None:
        assert isinstance(config, NationalPortalConfig)
        super().__init__(config, context)
        self.config = config
        self.mapping = WireMapping(config.status_codes, config.channel_codes)
        self._state_ttl = config.dossier_state_retention_days * 86400.0
        self._client: PortalClient | None = None

    # lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        if self.context.settings.environment == "production":
            if self.config.password is None:
                raise ConfigurationError("adapters.national_portal.password: required")
            if self.config.push_hmac_key is None:
                raise ConfigurationError("adapters.national_portal.push_hmac_key: required")
        password = self.config.password.get_secret_value() if self.config.password else None
        self._client = PortalClient(
            self.context.outbound(None),
            self.context.store,
            self.context.audit,
            username=self.config.username,
            password=password or SANDBOX_PASSWORD,
            madonvi=self.config.madonvi,
            login_path=self.config.login_path,
            service_path=self.config.service_path,
            service_paths=self.config.service_paths,
            session_ttl=self.config.session_ttl_seconds,
            session_rejected_codes=self.config.session_rejected_codes,
        )

    @property
    def client(self) -> PortalClient:
        if self._client is None:
            raise GatewayError("the national portal adapter is not started")
        return self._client

    def push_key(self) -> bytes:
        key = self.config.push_hmac_key
        return (key.get_secret_value() if key else SANDBOX_PUSH_KEY).encode("utf-8")

    def callback_routes(self) -> Sequence[ControllerRouterHandler]:
        return push_routes()

    def job_handlers(self) -> Mapping[str, JobHandler]:
        return {
            SYNC_KIND: self._run_sync,
            PROGRESS_KIND: self._run_progress,
            REFRESH_KIND: self._run_refresh,
        }

    def scheduled_jobs(self) -> Sequence[ScheduledJob]:
        return (
            ScheduledJob(
                name="catalogue-refresh",
                kind=REFRESH_KIND,
                interval_seconds=self.config.catalogue_refresh_seconds,
            ),
        )

    async def probe(self) -> ProbeResult:
        """TraCuuHoSo of a code that cannot exist: proves login, session and service."""
        started = time.perf_counter()
        try:
            await self.client.call(
                "TraCuuHoSo",
                {"mahoso": f"{self.config.madonvi}-000101-0001"},
                idempotent=True,
                audit=False,
            )
        except GatewayError as exc:
            return ProbeResult(ok=False, detail=exc.detail)
        return ProbeResult(ok=True, latency_ms=(time.perf_counter() - started) * 1000.0)

    # the simulator ----------------------------------------------------------------
    @classmethod
    def simulator(cls, ctx: SimulatorContext) -> ASGIApp | None:
        from adapters.national_portal.simulator import PortalSimulator, create_simulator_app

        config = ctx.config
        assert isinstance(config, NationalPortalConfig)
        sim = PortalSimulator(
            username=config.username,
            password=config.password.get_secret_value() if config.password else SANDBOX_PASSWORD,
            madonvi=config.madonvi,
            channel_codes=frozenset(WireMapping(None, config.channel_codes).channel_codes.values()),
        )
        key = config.push_hmac_key.get_secret_value() if config.push_hmac_key else SANDBOX_PUSH_KEY
        return create_simulator_app(
            sim,
            gateway_url=ctx.gateway_url,
            hmac_key=key.encode("utf-8"),
            login_path=config.login_path,
            service_path=config.service_path,
        )

    @classmethod
    def simulator_operation(cls, path: str, body: bytes) -> str:
        """``login`` or the ``service`` named in the JSON body (the portal is RPC-style)."""
        if path.rstrip("/").endswith("login"):
            return "login"
        try:
            service = json.loads(body).get("service")
        except (ValueError, AttributeError):
            service = None
        return str(service) if service else super().simulator_operation(path, body)

    # dossiers capability: commands ------------------------------------------------
    @asynccontextmanager
    async def _dossier_lock(self, code: str) -> AsyncIterator[None]:
        """Check-then-enqueue must not interleave for one dossier (order and transitions)."""
        store = self.context.store
        name, owner = _key("lock", code), uuid.uuid4().hex
        deadline = time.monotonic() + _LOCK_WAIT
        delay = 0.002
        while await store.acquire_lock(name, owner, ttl=30.0) is None:
            if time.monotonic() > deadline:
                raise Conflict(
                    "another command for this dossier is being accepted; retry", retry_after=1
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        try:
            yield
        finally:
            await store.release_lock(name, owner)

    async def _accepted(self, code: str) -> dict[str, Any]:
        raw = await self.context.store.get(_key("accepted", code))
        return json.loads(raw) if raw else {"base": [], "entries": []}

    async def _accept(
        self,
        code: str,
        state: dict[str, Any],
        check: Callable[[list[DossierStatus]], None],
    ) -> list[list[Any]]:
        """Check the command against the statuses accepted so far; returns the entries (one
        per accepted command: job id, its statuses) the new command is appended to.

        A command whose job an operator discarded never reached the portal: when a check
        fails, the dossier's jobs are looked at and discarded commands are forgotten."""
        base = [DossierStatus(x) for x in state.get("base", state.get("history", []))]
        entries: list[list[Any]] = list(state.get("entries", []))
        try:
            check(_history(base, entries))
        except ValidationFailed:
            jobs = await self.context.store.jobs.by_ordering_key(code, limit=1000)
            discarded = {j.id for j in jobs if j.state is JobState.DISCARDED}
            kept = [e for e in entries if e[0] not in discarded]
            if len(kept) == len(entries):
                raise
            entries = kept
            check(_history(base, entries))
        return entries

    async def _save_accepted(
        self,
        code: str,
        state: dict[str, Any],
        entries: list[list[Any]],
        job: Job,
        statuses: Sequence[DossierStatus],
        **extra: Any,
    ) -> None:
        base = [DossierStatus(x) for x in state.get("base", state.get("history", []))]
        entries = [*entries, [job.id, [x.value for x in statuses]]]
        if len(entries) > _MAX_ENTRIES:  # old commands cannot be discarded any more: fold
            fold = entries[: _MAX_ENTRIES // 2]
            base = _history(base, fold)
            entries = entries[_MAX_ENTRIES // 2 :]
        doc = {
            **{k: v for k, v in state.items() if k not in ("history", "base", "entries")},
            **extra,
            "base": [x.value for x in base],
            "entries": entries,
            "updated_at": _now_iso(),
        }
        await self.context.store.set(
            _key("accepted", code), json.dumps(doc).encode("utf-8"), ttl=self._state_ttl
        )

    async def sync_dossier(
        self,
        dossier: Dossier,
        progress: Sequence[ProgressRecord] = (),
        *,
        client_id: str | None = None,
    ) -> AcceptedCommand:
        validate_dossier(dossier, known_units=self.config.known_units)
        validate_progress(progress, pointer="/progress", received_at=dossier.received_at)
        statuses = [dossier.status, *(p.status for p in progress)]

        def check(history: list[DossierStatus]) -> None:
            check_transition(history, dossier.status)
            if not history or history[-1] is not dossier.status:
                history = [*history, dossier.status]
            check_progress_transitions(history, progress, pointer="/progress")

        async with self._dossier_lock(dossier.code):
            state = await self._accepted(dossier.code)
            entries = await self._accept(dossier.code, state, check)
            job = await self.context.jobs.enqueue(
                SYNC_KIND,
                {
                    "dossier": dossier.model_dump(mode="json"),
                    "progress": [p.model_dump(mode="json") for p in progress],
                },
                ordering_key=dossier.code,
                client_id=client_id,
            )
            await self._save_accepted(
                dossier.code,
                state,
                entries,
                job,
                statuses,
                received_at=dossier.received_at.isoformat(),
                procedure_code=dossier.procedure_code,
            )
        await self._audit_accepted(dossier.code, dossier.procedure_code, job, client_id, dossier)
        return AcceptedCommand(job_id=job.id, kind=SYNC_KIND, dossier_code=dossier.code)

    async def push_progress(
        self, code: str, records: Sequence[ProgressRecord], *, client_id: str | None = None
    ) -> AcceptedCommand:
        errors = validate_dossier_code(code, known_units=self.config.known_units)
        if errors:
            raise ValidationFailed(errors[0].message, errors=errors)
        statuses = [r.status for r in records]

        def check(history: list[DossierStatus]) -> None:
            check_progress_transitions(history, records)

        async with self._dossier_lock(code):
            state = await self._accepted(code)
            received = state.get("received_at")
            validate_progress(
                records, received_at=datetime.fromisoformat(received) if received else None
            )
            entries = await self._accept(code, state, check)
            job = await self.context.jobs.enqueue(
                PROGRESS_KIND,
                {"code": code, "records": [r.model_dump(mode="json") for r in records]},
                ordering_key=code,
                client_id=client_id,
            )
            await self._save_accepted(code, state, entries, job, statuses)
        await self._audit_accepted(code, state.get("procedure_code"), job, client_id, None)
        return AcceptedCommand(job_id=job.id, kind=PROGRESS_KIND, dossier_code=code)

    async def _audit_accepted(
        self,
        code: str,
        procedure_code: str | None,
        job: Job,
        client_id: str | None,
        dossier: Dossier | None,
    ) -> None:
        subjects = [dossier.applicant.id_number] if dossier and dossier.applicant.id_number else []
        what = f"status {dossier.status.value}" if dossier else "progress"
        await self.context.audit.record(
            direction="inbound",
            actor=client_id or "unknown",
            adapter=SYSTEM,
            operation="dossier.accepted",
            outcome="ok",
            status=202,
            dossier_code=code,
            procedure_code=procedure_code,
            subjects=subjects,
            detail=f"{what} queued as {job.kind} {job.id}",
            extra={"job_id": job.id},
        )

    # dossiers capability: the jobs ------------------------------------------------
    async def _run_sync(self, job: Job) -> dict[str, Any]:
        dossier = Dossier.model_validate(job.payload["dossier"])
        progress = [ProgressRecord.model_validate(r) for r in job.payload.get("progress", [])]
        code = dossier.code
        store = self.context.store
        synced_key = _key("job-synced", job.id)
        synced = await store.get(synced_key)
        if synced is not None:
            # a retry after the portal confirmed DongBoHoSoMC: sending the record again would
            # take the portal back to this command's status after the progress already sent
            exists = synced == b"updated"
        else:
            found = await self.client.call(
                "TraCuuHoSo", {"mahoso": code}, idempotent=True, dossier_code=code
            )
            exists = bool(found.result)
            wire = self.mapping.dossier_to_wire(dossier).model_dump(exclude_none=True)
            # not retried inside the call: after a lost answer the job looks the dossier up again
            await self.client.call(
                "DongBoHoSoMC",
                {"isUpdating": "True" if exists else "False", "data": [wire]},
                idempotent=False,
                dossier_code=code,
                procedure_code=dossier.procedure_code,
                detail=f"{'updated' if exists else 'created'} on the portal, "
                f"status {dossier.status.value}",
            )
            mark = b"updated" if exists else b"created"
            await store.set(synced_key, mark, ttl=self._state_ttl)
        last_status = await self._push_chunks(job, code, progress, dossier.procedure_code)
        if last_status is not None:
            dossier = dossier.model_copy(update={"status": last_status})
        await self._confirm(code, dossier=dossier, progress_added=len(progress))
        await store.delete(synced_key)
        return {"dossier_code": code, "created": not exists, "progress_records": len(progress)}

    async def _run_progress(self, job: Job) -> dict[str, Any]:
        code = str(job.payload["code"])
        records = [ProgressRecord.model_validate(r) for r in job.payload["records"]]
        state = await self._accepted(code)
        last_status = await self._push_chunks(job, code, records, state.get("procedure_code"))
        await self._confirm(code, status=last_status, progress_added=len(records))
        return {"dossier_code": code, "progress_records": len(records)}

    async def _push_chunks(
        self,
        job: Job,
        code: str,
        records: Sequence[ProgressRecord],
        procedure_code: str | None,
    ) -> DossierStatus | None:
        """CapNhatTienDoHoSoMC in chunks; a retried job skips the chunks already confirmed."""
        if not records:
            return None
        store = self.context.store
        done_key = _key("job-chunks", job.id)
        raw = await store.get(done_key)
        done = int(raw) if raw else 0
        parts = chunks(list(records), self.config.progress_chunk_size)
        for index, part in enumerate(parts):
            if index < done:
                continue
            data = [
                self.mapping.progress_to_wire(code, r).model_dump(exclude_none=True) for r in part
            ]
            await self.client.call(
                "CapNhatTienDoHoSoMC",
                {"data": data},
                idempotent=False,
                dossier_code=code,
                procedure_code=procedure_code,
                detail=f"progress chunk {index + 1}/{len(parts)}: {len(part)} records",
            )
            # kept as long as a dead-lettered job may still be replayed
            await store.set(done_key, str(index + 1).encode(), ttl=self._state_ttl)
        await store.delete(done_key)
        return records[-1].status

    async def _confirm(
        self,
        code: str,
        *,
        dossier: Dossier | None = None,
        status: DossierStatus | None = None,
        progress_added: int = 0,
    ) -> None:
        key = _key("confirmed", code)
        raw = await self.context.store.get(key)
        state: dict[str, Any] = json.loads(raw) if raw else {"progress_confirmed": 0}
        if dossier is not None:
            state["dossier"] = dossier.model_dump(mode="json")
        elif status is not None and state.get("dossier"):
            state["dossier"]["status"] = status.value
        state["progress_confirmed"] = int(state.get("progress_confirmed", 0)) + progress_added
        state["confirmed_at"] = _now_iso()
        await self.context.store.set(key, json.dumps(state).encode("utf-8"), ttl=self._state_ttl)

    # dossiers capability: queries -------------------------------------------------
    async def dossier_state(self, code: str) -> DossierState | None:
        store = self.context.store
        confirmed_raw = await store.get(_key("confirmed", code))
        accepted_raw = await store.get(_key("accepted", code))
        inbound_raw = await store.get(_key("inbound", code))
        jobs = await store.jobs.by_ordering_key(code, limit=200)
        pending = [
            PendingWork(
                job_id=j.id,
                kind=j.kind,
                state=j.state.value,
                created_at=datetime.fromtimestamp(j.created_at, UTC),
                attempts=j.attempt_count,
                last_error=j.last_error,
            )
            for j in jobs
            if j.state.value in ("queued", "leased", "dead")
        ]
        if not (confirmed_raw or accepted_raw or inbound_raw or jobs):
            return None
        confirmed = json.loads(confirmed_raw) if confirmed_raw else {}
        accepted = json.loads(accepted_raw) if accepted_raw else {}
        inbound = json.loads(inbound_raw) if inbound_raw else {}
        history = _history(
            [DossierStatus(x) for x in accepted.get("base", accepted.get("history", []))],
            accepted.get("entries", []),
        )
        return DossierState(
            code=code,
            confirmed=Dossier.model_validate(confirmed["dossier"])
            if confirmed.get("dossier")
            else None,
            confirmed_at=confirmed.get("confirmed_at"),
            progress_confirmed=int(confirmed.get("progress_confirmed", 0)),
            accepted_status=history[-1] if history else None,
            pending=pending,
            received_from_national=(
                Dossier.model_validate(inbound["dossier"]) if inbound.get("dossier") else None
            ),
            attachments=[AttachmentLink.model_validate(a) for a in inbound.get("attachments", [])],
        )

    # catalogue --------------------------------------------------------------------
    async def _cached(self, key: str) -> tuple[Any, float] | None:
        raw = await self.context.store.get(key)
        if raw is None:
            return None
        doc = json.loads(raw)
        return doc["data"], float(doc["fetched_at"])

    async def _cache(self, key: str, data: Any) -> float:
        now = time.time()
        doc = {"fetched_at": now, "data": data}
        await self.context.store.set(key, json.dumps(doc).encode("utf-8"), ttl=_STALE_KEEP)
        return now

    def _fresh(self, fetched_at: float) -> bool:
        return time.time() - fetched_at < self.config.catalogue_ttl_seconds

    async def _fetch_list(self) -> tuple[list[dict[str, Any]], float]:
        reply = await self.client.call("LayDanhSachTTHC", {}, idempotent=True)
        if not isinstance(reply.result, list):
            raise UpstreamRejected("LayDanhSachTTHC: no list in the answer", system=SYSTEM)
        items = [
            self.mapping.summary_from_wire(CatalogueEntry.model_validate(e)).model_dump(mode="json")
            for e in reply.result
        ]
        return items, await self._cache(_LIST_KEY, items)

    async def _fetch_procedure(self, code: str) -> tuple[dict[str, Any], float]:
        reply = await self.client.call(
            "LayThuTuc", {"maTTHC": code}, idempotent=True, procedure_code=code
        )
        if not isinstance(reply.result, dict):
            raise NotFound(f"procedure {code} is not in the national catalogue")
        proc = self.mapping.procedure_from_wire(ProcedureDetail.model_validate(reply.result))
        data = proc.model_dump(mode="json")
        return data, await self._cache(_key("catalogue:procedure", code), data)

    async def list_procedures(self) -> ProcedureList:
        cached = await self._cached(_LIST_KEY)
        if cached is not None and self._fresh(cached[1]):
            items, fetched_at, stale = cached[0], cached[1], False
        else:
            try:
                items, fetched_at = await self._fetch_list()
                stale = False
            except UpstreamError:
                if cached is None:
                    raise
                items, fetched_at, stale = cached[0], cached[1], True
        return ProcedureList(
            items=[ProcedureSummary.model_validate(i) for i in items],
            stale=stale,
            fetched_at=datetime.fromtimestamp(fetched_at, UTC),
        )

    async def get_procedure(self, code: str) -> tuple[Procedure, bool]:
        errors = validate_procedure_code(code, pointer="/code")
        if errors:
            raise ValidationFailed(errors[0].message, errors=errors)
        key = _key("catalogue:procedure", code)
        cached = await self._cached(key)
        if cached is not None and self._fresh(cached[1]):
            return Procedure.model_validate(cached[0]), False
        try:
            data, _ = await self._fetch_procedure(code)
            return Procedure.model_validate(data), False
        except UpstreamRejected as exc:
            if str(exc.extra.get("upstream_code")) in self.config.procedure_not_found_codes:
                # withdrawn from the catalogue: a cached copy must not be served any more
                await self.context.store.delete(key)
                raise NotFound(f"procedure {code} is not in the national catalogue") from None
            if cached is None:
                raise
            return Procedure.model_validate(cached[0]), True  # another refusal: serve stale
        except UpstreamError:
            if cached is None:
                raise
            return Procedure.model_validate(cached[0]), True

    async def _run_refresh(self, job: Job) -> dict[str, Any]:
        items, _ = await self._fetch_list()
        if not self.config.catalogue_prefetch_details:
            return {"procedures": len(items)}
        gate = asyncio.Semaphore(4)
        failed = 0

        async def one(code: str) -> None:
            nonlocal failed
            async with gate:
                try:
                    await self._fetch_procedure(code)
                except (UpstreamError, NotFound):
                    failed += 1

        await asyncio.gather(*(one(str(i["code"])) for i in items))
        return {"procedures": len(items), "details": len(items) - failed, "failed": failed}

    # attachments of dossiers received from the national side ----------------------
    def attachment_link(
        self, code: str, name: str, media_type: str, content: bytes
    ) -> AttachmentLink:
        digest = hashlib.sha256(content).hexdigest()
        url = f"{self.context.settings.public_url()}/v1/dossiers/{code}/attachments/{digest}"
        return AttachmentLink(
            id=digest, name=name, media_type=media_type, size=len(content), sha256=digest, url=url
        )

    async def store_attachment(
        self, code: str, name: str, media_type: str, content: bytes
    ) -> AttachmentLink:
        link = self.attachment_link(code, name, media_type, content)
        ttl = self.config.attachment_retention_days * 86400.0
        await self.context.store.set(_key("attachment", link.sha256), content, ttl=ttl)
        return link

    async def inbound(self, code: str, message_id: str) -> dict[str, Any] | None:
        """What was stored for this push message of this dossier (None: not, or superseded)."""
        raw = await self.context.store.get(_key("inbound", code))
        doc: dict[str, Any] | None = json.loads(raw) if raw else None
        return doc if doc and doc.get("message_id") == message_id else None

    async def claim_inbound(self, message_id: str) -> bool:
        """Whether this copy of a push is the first: only the first stores its dossier and
        attachments (a later copy, even with another body, changes nothing stored).

        A claim whose copy was not stored after ``TAKEOVER_SECONDS`` belonged to a process that
        died: the next copy takes it over. One still being stored answers 409, retry shortly."""
        store = self.context.store
        key = _key("inbound-message", message_id)
        ttl = self.context.settings.retention.callback_dedupe_days * 86400.0
        for _ in range(2):
            claim = json.dumps({"stored": False, "at": time.time()}).encode("utf-8")
            if await store.set_if_absent(key, claim, ttl=ttl):
                return True
            raw = await store.get(key)
            if raw is None:
                continue  # expired between the two calls: claim again
            doc = json.loads(raw)
            if doc.get("stored"):
                return False
            if time.time() - float(doc.get("at", 0.0)) > TAKEOVER_SECONDS:
                await store.set(key, claim, ttl=ttl)
                return True
            break
        raise IdempotencyInFlight(
            "this push is being accepted; retry shortly", retry_after=IN_FLIGHT_RETRY_AFTER
        )

    async def remember_inbound(
        self, dossier: Dossier, links: Sequence[AttachmentLink], *, message_id: str, at: datetime
    ) -> None:
        doc = {
            "dossier": dossier.model_dump(mode="json"),
            "attachments": [a.model_dump(mode="json") for a in links],
            "message_id": message_id,
            "received_at": at.isoformat(),
        }
        ttl = self.config.attachment_retention_days * 86400.0
        await self.context.store.set(
            _key("inbound", dossier.code), json.dumps(doc).encode("utf-8"), ttl=ttl
        )
        stored = json.dumps({"stored": True, "at": time.time()}).encode("utf-8")
        await self.context.store.set(
            _key("inbound-message", message_id),
            stored,
            ttl=self.context.settings.retention.callback_dedupe_days * 86400.0,
        )

    async def attachment(self, code: str, attachment_id: str) -> Attachment:
        raw = await self.context.store.get(_key("inbound", code))
        links = json.loads(raw).get("attachments", []) if raw else []
        link = next((a for a in links if a.get("id") == attachment_id), None)
        content = await self.context.store.get(_key("attachment", attachment_id)) if link else None
        if link is None or content is None:
            raise NotFound("no such attachment for this dossier")
        return Attachment(
            id=attachment_id, name=link["name"], media_type=link["media_type"], content=content
        )
