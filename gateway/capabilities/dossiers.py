"""The dossiers capability: canonical models, validation and the Protocol.

A dossier (hồ sơ) is one applicant's application for one administrative procedure. The
provincial dossier system sends its dossiers and their processing progress through
``/v1/dossiers``; the adapter serving this capability (the national portal today) delivers
them, in order, to the national side, serves the procedure catalogue and hands over dossiers
submitted nationally.

Names here are English and stable: the provincial system codes against them. The wire names
of a particular portal live only in that adapter's ``models.py``; the mapping of the ten
canonical statuses to the portal's ``TrangThaiHoSo`` codes is adapter configuration.

Validation happens before anything is queued. Every problem is a ``ValidationFailed`` (422)
naming the field with a JSON pointer (RFC 6901) into the request body.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol, TypeVar, runtime_checkable
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.errors import FieldError, ValidationFailed

__all__ = [
    "DOSSIER_CODE_PATTERN",
    "PROCEDURE_CODE_PATTERN",
    "TERMINAL_STATUSES",
    "UNIT_CODE_PATTERN",
    "VN_TZ",
    "AcceptedCommand",
    "Applicant",
    "ApplicantKind",
    "Attachment",
    "AttachmentLink",
    "Channel",
    "Dossier",
    "DossierInput",
    "DossierState",
    "DossierStatus",
    "DossiersCapability",
    "Fee",
    "FeeKind",
    "PendingWork",
    "Procedure",
    "ProcedureChannel",
    "ProcedureField",
    "ProcedureList",
    "ProcedureSummary",
    "ProgressInput",
    "ProgressRecord",
    "ResultDocument",
    "SubmittedDocument",
    "SupplementRequest",
    "check_progress_transitions",
    "check_transition",
    "dossier_unit",
    "parse_dossier_code",
    "parse_model",
    "validate_dossier",
    "validate_dossier_code",
    "validate_procedure_code",
    "validate_progress",
    "validate_unit_code",
]

#: the national portal's clock: wire dates carry no offset and mean this zone
VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")

#: unit (agency) code, Decision 20/2020: ``V1V2V3.Z1Z2.Y1Y2.MX1X2`` e.g. ``000.00.19.H47``
UNIT_CODE_PATTERN = re.compile(r"^\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}$")
#: dossier code, Circular 01/2018: the unit, the receipt date YYMMDD, a 4-digit daily sequence
DOSSIER_CODE_PATTERN = re.compile(
    r"^(?P<unit>\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2})-(?P<date>\d{6})-(?P<seq>\d{4})$"
)
#: national procedure ``1.001612``; a local variant adds the province letter code ``.H38``
PROCEDURE_CODE_PATTERN = re.compile(r"^\d\.\d{6}(\.[A-Z]\d{2})?$")


_ModelT = TypeVar("_ModelT", bound=BaseModel)

# ---------------------------------------------------------------- enumerations


class DossierStatus(enum.StrEnum):
    """The portal's ten dossier states, in English. Wire codes: adapter configuration."""

    REGISTERED = "registered"  # 1 newly registered (submitted, not yet received)
    RECEIVED = "received"  # 2 received by the one-stop shop
    NOT_RECEIVED = "not_received"  # 3 refused at intake
    PROCESSING = "processing"  # 4
    SUPPLEMENT_REQUESTED = "supplement_requested"  # 5 the applicant must complete it
    PAYMENT_REQUESTED = "payment_requested"  # 6 financial obligation requested
    WITHDRAWN = "withdrawn"  # 7 withdrawn by the applicant
    STOPPED = "stopped"  # 8 processing stopped
    PROCESSED = "processed"  # 9 decided, result ready
    RETURNED = "returned"  # 10 result returned to the applicant


#: no status may follow these (re-sending the same status to update other fields is allowed)
TERMINAL_STATUSES: frozenset[DossierStatus] = frozenset(
    {DossierStatus.WITHDRAWN, DossierStatus.NOT_RECEIVED, DossierStatus.RETURNED}
)

#: statuses a dossier may hold before ``returned``: the result must exist first
_BEFORE_RETURNED: frozenset[DossierStatus] = frozenset(
    {DossierStatus.PROCESSED, DossierStatus.RETURNED}
)


class ApplicantKind(enum.StrEnum):
    CITIZEN = "citizen"
    ENTERPRISE = "enterprise"
    AGENCY = "agency"
    OTHER = "other"


class Channel(enum.StrEnum):
    """How the dossier was submitted."""

    IN_PERSON = "in_person"
    ONLINE = "online"
    POSTAL = "postal"


class FeeKind(enum.StrEnum):
    FEE = "fee"  # phí
    CHARGE = "charge"  # lệ phí


# ---------------------------------------------------------------- dossier parts


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Applicant(_Model):
    """The dossier's owner (chủ hồ sơ). Personal data: never logged in clear."""

    kind: ApplicantKind = ApplicantKind.CITIZEN
    name: str = Field(min_length=1, max_length=255)
    #: 12-digit personal ID or 9-digit legacy ID for a citizen; tax or other code otherwise
    id_number: str | None = Field(None, max_length=50)
    email: str | None = Field(None, max_length=255)
    phone: str | None = Field(None, max_length=20)

    @field_validator("id_number")
    @classmethod
    def _id_digits(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9A-Za-z-]{1,50}", value):
            raise ValueError("must be letters, digits or '-'")
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
            raise ValueError("is not an e-mail address")
        return value

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\+?[0-9]{8,15}", value):
            raise ValueError("must be 8 to 15 digits, optionally after '+'")
        return value


class Fee(_Model):
    """One fee or charge line. Amounts are whole đồng (VND), never fractional."""

    name: str = Field(min_length=1, max_length=500)
    code: str | None = Field(None, max_length=50)
    kind: FeeKind = FeeKind.FEE
    amount: int = Field(ge=0)
    #: how it is collected (free text of the portal, e.g. "Trực tiếp", "Trực tuyến")
    method: str | None = Field(None, max_length=100)


class SubmittedDocument(_Model):
    """A document the applicant submitted (tài liệu nộp)."""

    name: str = Field(min_length=1, max_length=500)
    #: the procedure's dossier component it fulfils (mã thành phần hồ sơ)
    component_code: str | None = Field(None, max_length=100)
    file_id: str | None = Field(None, max_length=200)
    url: str | None = Field(None, max_length=2000)


class ResultDocument(_Model):
    """A result paper issued to the applicant (giấy tờ kết quả)."""

    name: str = Field(min_length=1, max_length=500)
    component_code: str | None = Field(None, max_length=100)
    file_id: str | None = Field(None, max_length=200)
    url: str | None = Field(None, max_length=2000)


class SupplementRequest(_Model):
    """A request that the applicant complete the dossier (hồ sơ bổ sung)."""

    id: str = Field(min_length=1, max_length=100)
    requested_by: str | None = Field(None, max_length=255)
    content: str = Field(min_length=1, max_length=4000)
    requested_at: datetime
    received_at: datetime | None = None
    #: the due date once the supplement is received
    new_due_at: datetime | None = None


class _DossierBody(_Model):
    procedure_code: str
    procedure_name: str | None = Field(None, max_length=1000)
    #: lĩnh vực: the field of administration the procedure belongs to
    field_code: str | None = Field(None, max_length=100)
    field_name: str | None = Field(None, max_length=500)
    receipt_number: str = Field(min_length=1, max_length=100)
    applicant: Applicant
    summary: str = Field(min_length=1, max_length=4000)
    received_at: datetime
    due_at: datetime | None = None
    returned_at: datetime | None = None
    #: processing finished (decision taken), before the result is returned
    finished_at: datetime | None = None
    status: DossierStatus
    channel: Channel = Channel.IN_PERSON
    online_payment: bool = False
    #: the unit processing it and where it was submitted (free text of the province)
    processing_unit: str | None = Field(None, max_length=500)
    submitted_at_place: str | None = Field(None, max_length=500)
    fees: list[Fee] = Field(default_factory=list, max_length=100)
    documents: list[SubmittedDocument] = Field(default_factory=list, max_length=500)
    results: list[ResultDocument] = Field(default_factory=list, max_length=100)
    supplement_requests: list[SupplementRequest] = Field(default_factory=list, max_length=100)


class DossierInput(_DossierBody):
    """The body of ``PUT /v1/dossiers/{code}``: the dossier without its code (in the path),
    plus optional progress records pushed right after the dossier itself."""

    code: str | None = None
    progress: list[ProgressRecord] = Field(default_factory=list, max_length=1000)

    def to_dossier(self, code: str) -> Dossier:
        data = self.model_dump(exclude={"code", "progress"})
        return Dossier.model_validate({**data, "code": code})


class Dossier(_DossierBody):
    """A dossier as the gateway and the provincial system see it."""

    code: str


class ProgressRecord(_Model):
    """One processing step (tiến độ xử lý)."""

    officer_name: str = Field(min_length=1, max_length=255)
    officer_title: str | None = Field(None, max_length=255)
    department: str | None = Field(None, max_length=500)
    content: str = Field(min_length=1, max_length=4000)
    processed_at: datetime
    #: the dossier's status after this step
    status: DossierStatus
    started_at: datetime | None = None
    #: the step's due time under the rules (ngày kết thúc theo quy định)
    due_at: datetime | None = None


class ProgressInput(_Model):
    """The body of ``POST /v1/dossiers/{code}/progress``."""

    records: list[ProgressRecord] = Field(min_length=1, max_length=1000)


DossierInput.model_rebuild()


# ---------------------------------------------------------------- catalogue


class ProcedureField(_Model):
    """A field of administration (lĩnh vực)."""

    code: str
    name: str


class ProcedureChannel(_Model):
    """How the procedure may be carried out, its time limit and its fees."""

    channel: Channel
    time_limit_days: float | None = None
    time_limit_unit: str | None = None  # e.g. "working days"
    description: str | None = None
    fees: list[Fee] = Field(default_factory=list)


class ProcedureSummary(_Model):
    code: str
    name: str
    field_code: str | None = None
    field_name: str | None = None
    level: str | None = None  # the government level that carries it out


class Procedure(ProcedureSummary):
    """One procedure of the national catalogue (CSDL quốc gia về TTHC)."""

    fields: list[ProcedureField] = Field(default_factory=list)
    steps: list[str] = Field(default_factory=list)
    channels: list[ProcedureChannel] = Field(default_factory=list)
    required_documents: list[str] = Field(default_factory=list)
    agencies: list[str] = Field(default_factory=list)
    legal_basis: list[str] = Field(default_factory=list)
    results: list[str] = Field(default_factory=list)
    applicant_kinds: list[str] = Field(default_factory=list)


class ProcedureList(_Model):
    items: list[ProcedureSummary]
    #: True when the national side could not be reached and this is the last cached copy
    stale: bool = False
    fetched_at: datetime | None = None


# ---------------------------------------------------------------- command results


class AcceptedCommand(_Model):
    """What a command answers with 202: the job that will deliver it."""

    job_id: str
    kind: str
    dossier_code: str
    state: str = "queued"


class PendingWork(_Model):
    job_id: str
    kind: str
    state: str
    created_at: datetime
    attempts: int = 0
    last_error: str | None = None


class AttachmentLink(_Model):
    id: str
    name: str
    media_type: str
    size: int
    sha256: str
    url: str


class Attachment(_Model):
    """An attachment's bytes, served to the provincial system on request."""

    id: str
    name: str
    media_type: str
    content: bytes


class DossierState(_Model):
    """``GET /v1/dossiers/{code}``: what the national side last confirmed and what is pending."""

    code: str
    #: the dossier as the portal last confirmed it (None before the first confirmation)
    confirmed: Dossier | None = None
    confirmed_at: datetime | None = None
    #: progress records the portal confirmed for this dossier
    progress_confirmed: int = 0
    #: the latest status the gateway accepted (it may still be on its way)
    accepted_status: DossierStatus | None = None
    pending: list[PendingWork] = Field(default_factory=list)
    #: set for dossiers submitted on the national side
    received_from_national: Dossier | None = None
    attachments: list[AttachmentLink] = Field(default_factory=list)


# ---------------------------------------------------------------- the Protocol


@runtime_checkable
class DossiersCapability(Protocol):
    """What ``/v1/dossiers`` and ``/v1/procedures`` need from the adapter serving them."""

    async def sync_dossier(
        self,
        dossier: Dossier,
        progress: Sequence[ProgressRecord] = (),
        *,
        client_id: str | None = None,
    ) -> AcceptedCommand:
        """Check the status transition, then queue the dossier (and its progress) for the
        national side, in order per dossier code. Raises ValidationFailed (422)."""
        ...

    async def push_progress(
        self, code: str, records: Sequence[ProgressRecord], *, client_id: str | None = None
    ) -> AcceptedCommand:
        """Queue progress records behind the dossier's earlier commands."""
        ...

    async def dossier_state(self, code: str) -> DossierState | None:
        """None when the gateway never saw the dossier."""
        ...

    async def list_procedures(self) -> ProcedureList: ...

    async def get_procedure(self, code: str) -> tuple[Procedure, bool]:
        """The procedure and whether it is a stale copy. NotFound when unknown."""
        ...

    async def attachment(self, code: str, attachment_id: str) -> Attachment:
        """An attachment of a dossier received from the national side. NotFound if none."""
        ...


# ---------------------------------------------------------------- validation


def parse_model(model: type[_ModelT], data: Any, *, pointer: str = "") -> _ModelT:
    """Validate ``data`` into ``model``; every pydantic error becomes a FieldError pointer."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            FieldError(
                pointer + "".join("/" + _escape(str(p)) for p in err["loc"]),
                _message(err["msg"]),
            )
            for err in exc.errors()
        ]
        raise ValidationFailed(
            "; ".join(f"{e.pointer or '/'}: {e.message}" for e in errors), errors=errors
        ) from None


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _message(msg: str) -> str:
    return msg.removeprefix("Value error, ")


def _fail(errors: list[FieldError]) -> None:
    if errors:
        raise ValidationFailed(
            "; ".join(f"{e.pointer}: {e.message}" for e in errors), errors=errors
        )


def parse_dossier_code(code: str) -> tuple[str, date, int] | None:
    """(unit code, receipt date, sequence) or None when the code is malformed."""
    m = DOSSIER_CODE_PATTERN.match(code)
    if m is None:
        return None
    raw = m["date"]
    try:
        received = date(2000 + int(raw[:2]), int(raw[2:4]), int(raw[4:]))
    except ValueError:
        return None
    seq = int(m["seq"])
    if seq == 0:
        return None
    return m["unit"], received, seq


def dossier_unit(code: str) -> str | None:
    """The receiving unit's code, the part before the date (None if malformed)."""
    parsed = parse_dossier_code(code)
    return parsed[0] if parsed else None


def validate_unit_code(
    unit: str, *, pointer: str, known_units: Collection[str] = ()
) -> list[FieldError]:
    """Format, and membership of ``known_units`` when configured (data, never code)."""
    if not UNIT_CODE_PATTERN.match(unit):
        return [FieldError(pointer, "unit code must look like 000.00.19.H47")]
    if known_units and unit not in known_units:
        return [FieldError(pointer, f"unit {unit} is not one of the configured units")]
    return []


def validate_dossier_code(
    code: str, *, pointer: str = "/code", known_units: Collection[str] = ()
) -> list[FieldError]:
    if not DOSSIER_CODE_PATTERN.match(code):
        return [
            FieldError(
                pointer,
                "dossier code must be V1V2V3.Z1Z2.Y1Y2.MX1X2-YYMMDD-XXXX "
                "(e.g. 000.00.19.H47-260105-0001)",
            )
        ]
    parsed = parse_dossier_code(code)
    if parsed is None:
        return [FieldError(pointer, "the receipt date YYMMDD or the sequence is not valid")]
    return validate_unit_code(parsed[0], pointer=pointer, known_units=known_units)


def validate_procedure_code(code: str, *, pointer: str = "/procedure_code") -> list[FieldError]:
    if not PROCEDURE_CODE_PATTERN.match(code):
        return [FieldError(pointer, "procedure code must look like 1.001612 or 1.000948.H38")]
    return []


def _aware(value: datetime) -> datetime:
    # a time without an offset is the national portal's clock, Asia/Ho_Chi_Minh
    return value if value.tzinfo is not None else value.replace(tzinfo=VN_TZ)


def _local_date(value: datetime) -> date:
    return _aware(value).astimezone(VN_TZ).date()


def _not_before(
    errors: list[FieldError], later: datetime | None, earlier: datetime, pointer: str, what: str
) -> None:
    if later is not None and _aware(later) < _aware(earlier):
        errors.append(FieldError(pointer, f"must not be before {what}"))


#: tolerance for clocks: a time further in the future than this is refused
_FUTURE_SLACK = timedelta(minutes=10)


def _not_future(
    errors: list[FieldError], value: datetime | None, pointer: str, now: datetime
) -> None:
    if value is not None and _aware(value) > now + _FUTURE_SLACK:
        errors.append(FieldError(pointer, "must not be in the future"))


def validate_dossier(
    dossier: Dossier,
    *,
    code_pointer: str = "/code",
    known_units: Collection[str] = (),
    now: datetime | None = None,
) -> None:
    """Every check that needs no state: formats, identifiers, dates. Raises ValidationFailed."""
    now = now or datetime.now(UTC)
    errors = validate_dossier_code(dossier.code, pointer=code_pointer, known_units=known_units)
    errors += validate_procedure_code(dossier.procedure_code)
    applicant = dossier.applicant
    if (
        applicant.kind is ApplicantKind.CITIZEN
        and applicant.id_number is not None
        and not re.fullmatch(r"\d{12}|\d{9}", applicant.id_number)
    ):
        errors.append(
            FieldError(
                "/applicant/id_number",
                "a citizen's ID is the 12-digit personal ID or the 9-digit legacy ID",
            )
        )
    parsed = parse_dossier_code(dossier.code)
    if parsed is not None and _local_date(dossier.received_at) != parsed[1]:
        errors.append(
            FieldError(
                "/received_at",
                f"the receipt date {parsed[1].isoformat()} in the dossier code does not match",
            )
        )
    _not_future(errors, dossier.received_at, "/received_at", now)
    _not_future(errors, dossier.returned_at, "/returned_at", now)
    _not_future(errors, dossier.finished_at, "/finished_at", now)
    _not_before(errors, dossier.due_at, dossier.received_at, "/due_at", "received_at")
    _not_before(errors, dossier.returned_at, dossier.received_at, "/returned_at", "received_at")
    _not_before(errors, dossier.finished_at, dossier.received_at, "/finished_at", "received_at")
    if dossier.returned_at is not None and dossier.finished_at is not None:
        _not_before(errors, dossier.returned_at, dossier.finished_at, "/returned_at", "finished_at")
    if dossier.status is DossierStatus.RETURNED and dossier.returned_at is None:
        errors.append(FieldError("/returned_at", "required when the status is returned"))
    if dossier.returned_at is not None and dossier.status is not DossierStatus.RETURNED:
        errors.append(FieldError("/returned_at", "only a returned dossier has a return time"))
    for i, req in enumerate(dossier.supplement_requests):
        base = f"/supplement_requests/{i}"
        _not_before(
            errors, req.requested_at, dossier.received_at, f"{base}/requested_at", "received_at"
        )
        _not_before(
            errors, req.received_at, req.requested_at, f"{base}/received_at", "requested_at"
        )
    codes = [f.code for f in dossier.fees if f.code]
    for i, fee in enumerate(dossier.fees):
        if fee.code and codes.count(fee.code) > 1:
            errors.append(FieldError(f"/fees/{i}/code", "appears twice"))
            break
    _fail(errors)


def validate_progress(
    records: Sequence[ProgressRecord],
    *,
    pointer: str = "/records",
    received_at: datetime | None = None,
    now: datetime | None = None,
) -> None:
    """Dates of progress records: in order, not in the future, not before the receipt."""
    now = now or datetime.now(UTC)
    errors: list[FieldError] = []
    previous: datetime | None = None
    for i, rec in enumerate(records):
        base = f"{pointer}/{i}"
        _not_future(errors, rec.processed_at, f"{base}/processed_at", now)
        if received_at is not None:
            _not_before(
                errors, rec.processed_at, received_at, f"{base}/processed_at", "received_at"
            )
        if rec.started_at is not None:
            _not_before(
                errors, rec.processed_at, rec.started_at, f"{base}/processed_at", "started_at"
            )
        if rec.due_at is not None and rec.started_at is not None:
            _not_before(errors, rec.due_at, rec.started_at, f"{base}/due_at", "started_at")
        if previous is not None and _aware(rec.processed_at) < _aware(previous):
            errors.append(
                FieldError(f"{base}/processed_at", "must not be before the previous record's")
            )
        previous = rec.processed_at
    _fail(errors)


def check_transition(
    history: Iterable[DossierStatus],
    new: DossierStatus,
    *,
    pointer: str = "/status",
) -> None:
    """Refuse a status that cannot follow the dossier's history (oldest first).

    Rules, mirroring the national portal: nothing follows ``withdrawn``, ``not_received`` or
    ``returned`` (the same status may be re-sent to update other fields); ``returned`` needs
    ``processed`` first; a dossier cannot go back to ``registered`` once received, nor to
    ``received`` once processed.
    """
    seen = list(history)
    if not seen:
        if new is DossierStatus.RETURNED:
            raise ValidationFailed.field(
                pointer, "a dossier cannot be returned before it was processed"
            )
        return
    current = seen[-1]
    if current in TERMINAL_STATUSES and new is not current:
        raise ValidationFailed.field(
            pointer, f"no status can follow {current.value} (the dossier is closed)"
        )
    if new is DossierStatus.RETURNED and current not in _BEFORE_RETURNED:
        raise ValidationFailed.field(
            pointer, f"a dossier cannot be returned before it was processed (it is {current.value})"
        )
    if new is DossierStatus.REGISTERED and current is not DossierStatus.REGISTERED:
        raise ValidationFailed.field(
            pointer, f"a dossier cannot go back to registered from {current.value}"
        )
    if new is DossierStatus.RECEIVED and DossierStatus.PROCESSED in seen:
        raise ValidationFailed.field(
            pointer, f"a processed dossier cannot go back to received (it is {current.value})"
        )
    if new is DossierStatus.NOT_RECEIVED and current not in (
        DossierStatus.REGISTERED,
        DossierStatus.RECEIVED,
        DossierStatus.NOT_RECEIVED,
    ):
        raise ValidationFailed.field(
            pointer, f"a dossier already {current.value} cannot be refused at intake"
        )


def check_progress_transitions(
    history: Iterable[DossierStatus],
    records: Sequence[ProgressRecord],
    *,
    pointer: str = "/records",
) -> list[DossierStatus]:
    """Apply each record's status in turn; returns the new history."""
    seen = list(history)
    for i, rec in enumerate(records):
        check_transition(seen, rec.status, pointer=f"{pointer}/{i}/status")
        if not seen or seen[-1] is not rec.status:
            seen.append(rec.status)
    return seen
