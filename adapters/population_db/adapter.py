"""The population_db adapter: the identity capability over the National Population Database.

It maps the canonical requests of ``gateway.capabilities.identity`` to ``TraCuuThongTinCongDan``
and the registry's ``CongDan`` back to a :class:`CitizenRecord`, decides verifications with the
capability's own :func:`compare`, turns the registry's result codes into the error tree (004
``ProcedureNotLicensed``, 005 ``OfficerNotPermitted``), and writes one audit record per query
with its purpose (procedure, dossier, officer) and a keyed digest of the ID, never the ID.

Optional: a short-lived cache of verification results, keyed by that digest plus a keyed hash
of everything else the answer depends on (name, birth date, procedure, officer), off unless
``verify_cache_ttl_seconds`` is set.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

import structlog

from gateway.adapters import (
    Adapter,
    AdapterConfig,
    AdapterContext,
    ProbeResult,
    SimulatorContext,
)
from gateway.capabilities.identity import (
    Address,
    BirthDate,
    CitizenLookup,
    CitizenRecord,
    LookupCitizen,
    MatchOptions,
    Purpose,
    Relative,
    Verification,
    VerifyCitizen,
    compare,
)
from gateway.errors import (
    ConfigurationError,
    GatewayError,
    NotFound,
    OfficerNotPermitted,
    ProcedureNotLicensed,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamFault,
    UpstreamProtocolError,
)
from signing.keys import load_certificates

from .client import PopulationDbClient, build_client
from .config import PopulationDbConfig
from .models import OPERATION, CongDan, DiaChiType, KetQuaTraCuu, MaLoi, NguoiThanType, YeuCauTraCuu

__all__ = ["PopulationDbAdapter", "PopulationDbConfig", "to_record"]

log = structlog.get_logger(__name__)


def _wire_birth_date(birth: BirthDate) -> str:
    if birth.month is None or birth.day is None:
        return f"{birth.year:04d}"
    return f"{birth.year:04d}{birth.month:02d}{birth.day:02d}"


def _canonical_birth_date(value: str) -> BirthDate:
    try:
        if len(value) == 4:
            return BirthDate(int(value))
        if len(value) == 8:
            day = dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
            return BirthDate(day.year, day.month, day.day)
    except ValueError:
        pass
    raise UpstreamProtocolError(
        "population_db: a birth date in the answer is not a date", system="population_db"
    )


def _address(value: DiaChiType | None) -> Address | None:
    if value is None:
        return None
    return Address(
        province_code=value.MaTinhThanh,
        district_code=value.MaQuanHuyen,
        ward_code=value.MaPhuongXa,
        detail=value.ChiTiet,
    )


def _relative(value: NguoiThanType | None, relationship: str | None = None) -> Relative | None:
    if value is None:
        return None
    return Relative(
        full_name=value.HoVaTen.day_du(), id_number=value.SoDinhDanh, relationship=relationship
    )


def to_record(citizen: CongDan) -> CitizenRecord:
    """The registry's ``CongDan`` in canonical form."""
    gender = {"1": "male", "2": "female"}.get(citizen.GioiTinh)
    head = citizen.ChuHo
    return CitizenRecord(
        id_number=citizen.SoDinhDanh,
        legacy_id_number=citizen.SoCMND,
        full_name=citizen.HoVaTen.day_du(),
        family_name=citizen.HoVaTen.Ho,
        middle_name=citizen.HoVaTen.ChuDem,
        given_name=citizen.HoVaTen.Ten,
        birth_date=_canonical_birth_date(citizen.NgayThangNamSinh),
        gender=gender,
        nationality=citizen.QuocTich,
        ethnicity=citizen.DanToc,
        religion=citizen.TonGiao,
        blood_type=citizen.NhomMau,
        marital_status=citizen.TinhTrangHonNhan,
        permanent_address=_address(citizen.ThuongTru),
        current_address=_address(citizen.NoiOHienTai),
        father=_relative(citizen.Cha),
        mother=_relative(citizen.Me),
        spouse=_relative(citizen.VoChong),
        household_head=_relative(head, head.QuanHe) if head is not None else None,
        household_book_number=citizen.SoSoHoKhau,
    )


class PopulationDbAdapter(Adapter):
    name: ClassVar[str] = "population_db"
    title: ClassVar[str] = "National Population Database"
    title_vi: ClassVar[str] = "Cơ sở dữ liệu quốc gia về dân cư"
    config_model: ClassVar[type[AdapterConfig]] = PopulationDbConfig
    capabilities: ClassVar[frozenset[str]] = frozenset({"identity"})

    config: PopulationDbConfig

    def __init__(self, config: AdapterConfig, context: AdapterContext) -> None:
        super().__init__(config, context)
        assert isinstance(config, PopulationDbConfig)
        self._client: PopulationDbClient | None = None
        self._options = MatchOptions(ignore_diacritics=config.ignore_diacritics)

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        self._client = build_client(self.name, self.config, self.context)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> PopulationDbClient:
        if self._client is None:
            raise ConfigurationError(f"{self.name}: the adapter is not started")
        return self._client

    # -- the identity capability --------------------------------------------------------
    async def verify(self, request: VerifyCitizen, *, caller: str) -> Verification:
        cache_key = self._cache_key(request)
        started = time.perf_counter()
        if cache_key is not None:
            raw = await self.context.store.get(cache_key)
            if raw is not None:
                result = Verification.model_validate_json(raw)
                await self._audit(
                    "identity.verify", request.purpose, request, caller, started, None,
                    outcome="ok", detail=_verdict(result), extra={"cache": "hit"},
                )  # fmt: skip
                return result
        wire = self._wire_request(
            request.purpose,
            id_number=request.id_number,
            legacy_id_number=None if request.id_number else request.legacy_id_number,
            full_name=request.full_name,
            birth_date=_wire_birth_date(request.birth_date),
        )
        call = _Call(wire)
        record = await self._query("identity.verify", call, request.purpose, request, caller)
        result = compare(request, record, self._options)
        await self._audit(
            "identity.verify", request.purpose, request, caller, started, call,
            outcome="ok", detail=_verdict(result),
            extra={"match": result.match, "mismatches": list(result.mismatches)},
        )  # fmt: skip
        if cache_key is not None:
            await self.context.store.set(
                cache_key,
                result.model_dump_json().encode(),
                ttl=self.config.verify_cache_ttl_seconds,
            )
        return result

    async def lookup(self, request: LookupCitizen, *, caller: str) -> CitizenLookup:
        started = time.perf_counter()
        # data minimisation starts on the wire: the ID alone, no name or birth date
        wire = self._wire_request(
            request.purpose,
            id_number=request.id_number,
            legacy_id_number=None if request.id_number else request.legacy_id_number,
        )
        call = _Call(wire)
        record = await self._query("identity.lookup", call, request.purpose, request, caller)
        if record is None:
            await self._audit(
                "identity.lookup", request.purpose, request, caller, started, call,
                outcome="not_found", status=404, detail="not_found",
            )  # fmt: skip
            raise NotFound("No citizen with this identifier in the National Population Database")
        await self._audit(
            "identity.lookup", request.purpose, request, caller, started, call,
            outcome="ok", detail="found", extra={"fields": list(request.fields)},
        )  # fmt: skip
        return CitizenLookup(citizen=record.project(request.fields))

    # -- the query ----------------------------------------------------------------------
    def _wire_request(
        self,
        purpose: Purpose,
        *,
        id_number: str | None,
        legacy_id_number: str | None,
        full_name: str | None = None,
        birth_date: str | None = None,
    ) -> YeuCauTraCuu:
        return YeuCauTraCuu(
            # fresh and unique per SOAP call (32 hex, within DOMAIN's 40): the caller's
            # X-Request-ID is the caller's to choose, may repeat across retries or callers and
            # would tie the registry's logs to ours; the audit record keeps both
            MaYeuCau=uuid.uuid4().hex,
            MaDVC=purpose.procedure_code,
            MaTichHop=self.config.integration_code,
            MaDonVi=self.config.unit_code,
            MaCanBo=purpose.officer_id,
            SoDinhDanh=id_number,
            SoCMND=legacy_id_number,
            HoVaTen=full_name,
            NgayThangNamSinh=birth_date,
        )

    async def _query(
        self,
        operation: str,
        call: _Call,
        purpose: Purpose,
        request: VerifyCitizen | LookupCitizen,
        caller: str,
    ) -> CitizenRecord | None:
        """The registry's citizen (None: not found); audits and raises every refusal, and an
        answer that cannot be read as a citizen."""
        started = time.perf_counter()
        wire = call.wire
        try:
            answer: KetQuaTraCuu = await self.client.lookup(wire, sent=call.sent)
            _check_answers_the_request(answer, wire)
            _raise_for_code(answer)
            if len(answer.CongdanCollection) > 1:
                raise UpstreamProtocolError(
                    f"{self.name}: the registry answered several citizens for one ID",
                    system=self.name,
                )
            found = answer.CongdanCollection[0] if answer.CongdanCollection else None
            if found is not None:
                _check_is_the_citizen_asked_for(found, wire)
            record = to_record(found) if found is not None else None
        except GatewayError as error:
            outcome = "rejected" if error.status < 500 else "error"
            await self._audit(
                operation, purpose, request, caller, started, call,
                outcome=outcome, status=error.status, detail=error.slug,
            )  # fmt: skip
            log.info(
                "population_db query failed", operation=operation, error=error.slug,
                procedure_code=purpose.procedure_code, upstream_request_id=wire.MaYeuCau,
            )  # fmt: skip
            raise
        return record

    async def _audit(
        self,
        operation: str,
        purpose: Purpose,
        request: VerifyCitizen | LookupCitizen,
        caller: str,
        started: float,
        call: _Call | None,
        *,
        outcome: str,
        status: int | None = None,
        detail: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """One record; ``call`` is the SOAP exchange (None: answered from the cache)."""
        upstream: dict[str, Any] = {"upstream_operation": OPERATION}
        payload = None
        if call is not None:
            upstream["upstream_request_id"] = call.wire.MaYeuCau
            payload = self._payload_digest(call)
        await self.context.audit.record(
            direction="outbound",
            actor=caller,
            operation=operation,
            outcome=outcome,
            adapter=self.name,
            status=status,
            latency_ms=(time.perf_counter() - started) * 1000,
            procedure_code=purpose.procedure_code,
            dossier_code=purpose.dossier_code,
            officer_id=purpose.officer_id,
            subjects=[s for s in (request.id_number, request.legacy_id_number) if s],
            payload=payload,
            detail=detail,
            extra={**upstream, **(extra or {})},
        )

    def _payload_digest(self, call: _Call) -> bytes | None:
        """HMAC-SHA256 of the SOAP request as sent, keyed like the subjects' digests
        (``security.identifier_digest_key``); the audit stores its SHA-256 as
        ``payload_sha256``. Keyed because an unsigned request is a function of the ID and a
        few known codes: a plain hash could be matched by hashing guessed IDs."""
        if not call.sent:
            return None  # nothing left the gateway (e.g. the circuit was open)
        return hmac.new(self.context.settings.digest_key(), call.sent[-1], hashlib.sha256).digest()

    def _cache_key(self, request: VerifyCitizen) -> str | None:
        if self.config.verify_cache_ttl_seconds <= 0:
            return None
        subject = self.context.audit.digest(request.subject())
        # everything else the answer depends on, hashed with the same key: no personal data
        # in the store's key space, and a cached answer never crosses procedures or officers
        material = json.dumps(
            [
                request.id_number,
                request.legacy_id_number,
                request.full_name,
                str(request.birth_date),
                request.purpose.procedure_code,
                request.purpose.officer_id,
                self._options.ignore_diacritics,
            ],
            ensure_ascii=False,
        ).encode()
        keyed = hmac.new(self.context.settings.digest_key(), material, hashlib.sha256)
        return f"{self.name}:verify:{subject}:{keyed.hexdigest()[:32]}"

    # -- health ---------------------------------------------------------------------------
    async def probe(self) -> ProbeResult:
        """A token from the platform and the service description: both ends answer."""
        started = time.perf_counter()
        transport = self.client.transport
        try:
            await transport.tokens.token()
            response = await transport.outbound.request(
                "probe", "GET", self.config.soap_path, idempotent=True, params={"wsdl": ""}
            )
        except GatewayError as error:
            return ProbeResult(
                ok=False, latency_ms=(time.perf_counter() - started) * 1000, detail=error.detail
            )
        ok = response.status_code == 200
        return ProbeResult(
            ok=ok,
            latency_ms=(time.perf_counter() - started) * 1000,
            detail=None if ok else f"the service description answered {response.status_code}",
        )

    def certificate_days_left(self) -> float | None:
        """Days left on the registry's pinned certificates ([signing.peers.population_db])."""
        peer = self.context.settings.signing.peers.get(self.name)
        if peer is None or not peer.pinned_certificates:
            return None
        certs = [c for path in peer.pinned_certificates for c in load_certificates(path)]
        soonest = min(c.not_valid_after_utc for c in certs)
        return (soonest - dt.datetime.now(dt.UTC)).total_seconds() / 86400

    # -- the simulator ------------------------------------------------------------------
    @classmethod
    def simulator(cls, ctx: SimulatorContext) -> Any:
        from .simulator import build_simulator

        return build_simulator(ctx)

    @classmethod
    def simulator_config(cls, config: AdapterConfig, sandbox_base_url: str) -> AdapterConfig:
        return config.model_copy(update={"base_url": sandbox_base_url})

    @classmethod
    def simulator_operation(cls, path: str, body: bytes) -> str:
        from .simulator import operation_of

        return operation_of(path, body)


@dataclass(slots=True)
class _Call:
    """One SOAP exchange: the request, and the bytes the transport sent for it."""

    wire: YeuCauTraCuu
    sent: list[bytes] = field(default_factory=list)


def _verdict(result: Verification) -> str:
    if result.match:
        return "match"
    return str(result.reason.value) if result.reason else "mismatch"


def _check_answers_the_request(answer: KetQuaTraCuu, wire: YeuCauTraCuu) -> None:
    """An answer to another request (a mixed-up connection, a replay, a confused platform)
    may carry another citizen's data: refused, whatever it says."""
    if answer.MaYeuCau != wire.MaYeuCau:
        raise UpstreamProtocolError(
            "population_db: the answer is for another request (MaYeuCau differs)",
            system="population_db",
        )


def _check_is_the_citizen_asked_for(found: CongDan, wire: YeuCauTraCuu) -> None:
    """The citizen answered must carry the number asked for (the 12-digit ID, or the legacy
    number when that was the query), else it is someone else's record. The detail names no
    number: the problem goes back to the caller and into the logs."""
    if wire.SoDinhDanh is not None:
        same = found.SoDinhDanh == wire.SoDinhDanh
    else:
        same = wire.SoCMND is not None and found.SoCMND == wire.SoCMND
    if not same:
        raise UpstreamProtocolError(
            "population_db: the answer is about another citizen than the one asked for",
            system="population_db",
        )


def _raise_for_code(answer: KetQuaTraCuu) -> None:
    code = answer.MaLoi
    if code == MaLoi.THANH_CONG:
        return
    system = "population_db"
    if code == MaLoi.THU_TUC_CHUA_DUOC_CAP_PHEP:
        raise ProcedureNotLicensed(
            "The National Population Database does not license this procedure to query "
            "citizens (code 004)",
            extra={"system": system, "upstream_code": code},
        )
    if code == MaLoi.CAN_BO_KHONG_DUOC_PHEP:
        raise OfficerNotPermitted(
            "The National Population Database does not permit this officer to query "
            "citizens (code 005)",
            extra={"system": system, "upstream_code": code},
        )
    if code in (MaLoi.MA_TICH_HOP_SAI, MaLoi.DON_VI_CHUA_DANG_KY):
        raise UpstreamAuthFailed(
            f"{system}: the registry refused the gateway's integration code or unit "
            f"(code {code}); check [adapters.population_db]",
            system=system,
            extra={"upstream_code": code},
        )
    if code == MaLoi.YEU_CAU_KHONG_HOP_LE:
        raise UpstreamProtocolError(
            f"{system}: the registry found the request malformed (code {code})", system=system
        )
    error: UpstreamError = UpstreamFault(
        f"{system}: the registry answered code {code}", system=system, extra={"upstream_code": code}
    )
    raise error
