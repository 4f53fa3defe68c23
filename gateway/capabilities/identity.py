"""The identity capability: verify a citizen, look one up to pre-fill a form.

Canonical models (English names) and the :class:`IdentityCapability` Protocol an adapter
implements. Everything here runs *before* anything leaves the gateway: the personal ID's
structure (known province of birth, gender/century digit agreeing with the birth year), names
normalised to Unicode NFC with whitespace collapsed, dates in one of three accepted forms. A bad
input is a pydantic error located at its field, which the HTTP layer turns into a 422
``ValidationFailed`` naming the field with a JSON pointer.

Comparison of what the caller sent with what the national system holds (:func:`compare`) is
here too, so every implementation decides "match" the same way: case-insensitive, diacritics
significant unless a deployment turns them off (some peers send unaccented capitals).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "CITIZEN_FIELDS",
    "Address",
    "BirthDate",
    "CitizenField",
    "CitizenLookup",
    "CitizenRecord",
    "Gender",
    "IdentityCapability",
    "LookupCitizen",
    "MatchOptions",
    "Purpose",
    "Relative",
    "Verification",
    "VerifyCitizen",
    "VerifyReason",
    "compare",
    "gender_century_digit",
    "id_agrees_with_birth",
    "known_province_codes",
    "make_id_number",
    "name_key",
    "normalise_name",
    "parse_birth_date",
]

_PROVINCE_CODES_FILE = Path(__file__).with_name("identity_province_codes.json")
_WHITESPACE = re.compile(r"\s+")
# letters (any script, any accent), spaces and the few marks real names carry
_NAME_CHARS = re.compile(r"^[^\W\d_]+(?:[ '\-.][^\W\d_]+)*$")
_ID_NUMBER = re.compile(r"^[0-9]{12}$")
_LEGACY_ID_NUMBER = re.compile(r"^[0-9]{9}$")
_CODE = r"^[0-9A-Za-z][0-9A-Za-z._\-]*$"


# ---------------------------------------------------------------- province codes


@lru_cache(maxsize=1)
def known_province_codes() -> frozenset[str]:
    """The 3-digit province-of-birth codes a personal ID may start with.

    Data, not code: the shipped list of the pre-2025 provinces (IDs issued then keep their
    code) united with the current provinces of the ``vietnam-provinces`` package, so a
    province created by a future reorganisation is known as soon as the package is updated.
    """
    data = json.loads(_PROVINCE_CODES_FILE.read_text(encoding="utf-8"))
    codes = set(data["codes"])
    try:
        from vietnam_provinces import Province

        codes.update(f"{int(p.code):03d}" for p in Province.iter_all())
    except ImportError:  # pragma: no cover - the package is a declared dependency
        pass
    return frozenset(codes)


# ---------------------------------------------------------------- birth dates


@dataclass(frozen=True, slots=True, order=True)
class BirthDate:
    """A full date or a year only (the registry holds year-only dates for some citizens)."""

    year: int
    month: int | None = None
    day: int | None = None

    @property
    def year_only(self) -> bool:
        return self.month is None

    def __str__(self) -> str:
        if self.month is None or self.day is None:
            return f"{self.year:04d}"
        return f"{self.year:04d}-{self.month:02d}-{self.day:02d}"

    def agrees_with(self, other: BirthDate) -> bool:
        """Equal at the precision both sides have (a year-only date matches any date of it)."""
        if self.year != other.year:
            return False
        if self.year_only or other.year_only:
            return True
        return (self.month, self.day) == (other.month, other.day)


_DATE_FORMS = (
    (re.compile(r"^(\d{4})-(\d{2})-(\d{2})$"), ("y", "m", "d")),
    (re.compile(r"^(\d{2})/(\d{2})/(\d{4})$"), ("d", "m", "y")),
    (re.compile(r"^(\d{4})$"), ("y",)),
)


def parse_birth_date(value: object, *, today: dt.date | None = None) -> BirthDate:
    """``YYYY-MM-DD``, ``DD/MM/YYYY`` or ``YYYY``; a real date, not in the future."""
    if isinstance(value, BirthDate):
        return value
    if isinstance(value, dt.date):
        return BirthDate(value.year, value.month, value.day)
    if not isinstance(value, str):
        raise PydanticCustomError("birth_date_type", "must be a string")
    text = value.strip()
    for pattern, order in _DATE_FORMS:
        m = pattern.match(text)
        if m is None:
            continue
        parts = dict(zip(order, (int(g) for g in m.groups()), strict=True))
        year, month, day = parts["y"], parts.get("m"), parts.get("d")
        today = today or dt.date.today()
        if year < 1850 or year > today.year:
            raise PydanticCustomError("birth_date_range", "year is out of range")
        if month is not None and day is not None:
            try:
                full = dt.date(year, month, day)
            except ValueError:
                raise PydanticCustomError("birth_date_invalid", "is not a real date") from None
            if full > today:
                raise PydanticCustomError("birth_date_future", "is in the future")
        return BirthDate(year, month, day)
    raise PydanticCustomError(
        "birth_date_format", "must be YYYY-MM-DD, DD/MM/YYYY or YYYY (year only)"
    )


BirthDateField = Annotated[
    BirthDate,
    BeforeValidator(parse_birth_date),
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "description": "YYYY-MM-DD, DD/MM/YYYY or YYYY (year only)",
            "examples": ["1990-05-17", "17/05/1990", "1990"],
        }
    ),
]


# ---------------------------------------------------------------- personal ID numbers

#: gender/century digit G of PPP G YY NNNNNN: (century start, gender) per DOMAIN.md
_CENTURY_DIGITS: dict[int, tuple[int, str]] = {
    d: (1900 + 100 * (d // 2), "male" if d % 2 == 0 else "female") for d in range(10)
}

Gender = Literal["male", "female"]


def gender_century_digit(gender: Gender, birth_year: int) -> int:
    century = (birth_year - 1900) // 100
    if not 0 <= century <= 4:
        raise ValueError(f"birth year {birth_year} has no gender/century digit")
    return 2 * century + (0 if gender == "male" else 1)


def make_id_number(province_code: str, gender: Gender, birth_year: int, serial: int) -> str:
    """Compose a structurally valid 12-digit ID (the simulator's population uses this)."""
    if province_code not in known_province_codes():
        raise ValueError("unknown province code")
    if not 0 <= serial <= 999_999:
        raise ValueError("serial must have at most six digits")
    g = gender_century_digit(gender, birth_year)
    return f"{province_code}{g}{birth_year % 100:02d}{serial:06d}"


def id_agrees_with_birth(id_number: str, birth: BirthDate) -> bool:
    """The century/gender digit and the two year digits say the same year as ``birth``."""
    century_start, _ = _CENTURY_DIGITS[int(id_number[3])]
    return century_start + int(id_number[4:6]) == birth.year


def _check_id_number(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PydanticCustomError("id_number_type", "must be a string of 12 digits")
    text = value.strip()
    # messages never echo the value: it is personal data
    if not _ID_NUMBER.match(text):
        raise PydanticCustomError("id_number_format", "must be exactly 12 digits")
    if text[:3] not in known_province_codes():
        raise PydanticCustomError(
            "id_number_province", "the first three digits are not a known province code"
        )
    return text


def _check_legacy_id_number(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise PydanticCustomError("legacy_id_number_type", "must be a string of 9 digits")
    text = value.strip()
    if not _LEGACY_ID_NUMBER.match(text):
        raise PydanticCustomError("legacy_id_number_format", "must be exactly 9 digits")
    return text


IdNumberField = Annotated[
    str | None,
    BeforeValidator(_check_id_number),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^[0-9]{12}$",
            "description": "12-digit personal identification number (PPP G YY NNNNNN)",
        }
    ),
]
LegacyIdNumberField = Annotated[
    str | None,
    BeforeValidator(_check_legacy_id_number),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^[0-9]{9}$",
            "description": "legacy 9-digit identity card number (CMND)",
        }
    ),
]


# ---------------------------------------------------------------- names


def normalise_name(value: str) -> str:
    """Unicode NFC, whitespace collapsed to single spaces, trimmed."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", value)).strip()


def _strip_diacritics(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text)
    bare = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    # đ is a letter of its own, not d plus a mark
    return bare.replace("đ", "d").replace("Đ", "D")


def name_key(value: str, *, ignore_diacritics: bool = False) -> str:
    """What two names are compared by: normalised, case-folded, optionally unaccented."""
    text = normalise_name(value)
    if ignore_diacritics:
        text = _strip_diacritics(text)
    return unicodedata.normalize("NFC", text.casefold())


def _check_full_name(value: object) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("full_name_type", "must be a string")
    text = normalise_name(value)
    if not text:
        raise PydanticCustomError("full_name_empty", "must not be empty")
    if len(text) > 100:
        raise PydanticCustomError("full_name_length", "must have at most 100 characters")
    if not _NAME_CHARS.match(text):
        raise PydanticCustomError(
            "full_name_chars", "may contain only letters, spaces, hyphens and apostrophes"
        )
    return text


FullNameField = Annotated[
    str,
    BeforeValidator(_check_full_name),
    WithJsonSchema(
        {"type": "string", "maxLength": 100, "description": "full name, as on the ID card"}
    ),
]


# ---------------------------------------------------------------- requests


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Purpose(_Strict):
    """Why the query is made: what the audit trail records (Decree 13/2023)."""

    procedure_code: str = Field(
        min_length=1, max_length=20, pattern=_CODE, examples=["1.001612", "1.000948.H38"]
    )
    dossier_code: str | None = Field(
        None, min_length=1, max_length=40, pattern=_CODE, examples=["000.00.19.H47-260105-0001"]
    )
    officer_id: str = Field(min_length=1, max_length=50, pattern=_CODE, examples=["CB000123"])


def _require_one_id(value: str | None, info: ValidationInfo) -> str | None:
    # runs for id_number after legacy_id_number (field order), also when id_number is absent;
    # a legacy number that failed its own validation is absent from info.data: report only that
    if value is None and "legacy_id_number" in info.data and info.data["legacy_id_number"] is None:
        raise PydanticCustomError("id_required", "id_number or legacy_id_number is required")
    return value


class VerifyCitizen(_Strict):
    """Does this ID belong to a citizen with this name and birth date?

    The field order matters: a field's validator sees only the fields declared before it, and
    the ID is checked against the birth date (and the one-of rule) where the error belongs.
    """

    full_name: FullNameField
    birth_date: BirthDateField
    legacy_id_number: LegacyIdNumberField = None
    id_number: Annotated[IdNumberField, Field(validate_default=True)] = None
    purpose: Purpose

    @field_validator("id_number")
    @classmethod
    def _id_agrees(cls, value: str | None, info: ValidationInfo) -> str | None:
        value = _require_one_id(value, info)
        birth = info.data.get("birth_date")
        if (
            value is not None
            and isinstance(birth, BirthDate)
            and not id_agrees_with_birth(value, birth)
        ):
            raise PydanticCustomError(
                "id_number_birth_year",
                "the gender/century digit and year digits do not agree with birth_date",
            )
        return value

    def subject(self) -> str:
        """The identifier the query is about (for audit digests and cache keys)."""
        return self.id_number or self.legacy_id_number or ""


#: what a lookup may ask for; each is a field of :class:`CitizenRecord`
CitizenField = Literal[
    "id_number",
    "legacy_id_number",
    "full_name",
    "family_name",
    "middle_name",
    "given_name",
    "birth_date",
    "gender",
    "nationality",
    "ethnicity",
    "religion",
    "blood_type",
    "marital_status",
    "permanent_address",
    "current_address",
    "father",
    "mother",
    "spouse",
    "household_head",
    "household_book_number",
]
CITIZEN_FIELDS: tuple[str, ...] = CitizenField.__args__  # type: ignore[attr-defined]


class LookupCitizen(_Strict):
    """The fields of one citizen a form needs, and nothing more (data minimisation)."""

    legacy_id_number: LegacyIdNumberField = None
    id_number: Annotated[IdNumberField, Field(validate_default=True)] = None
    purpose: Purpose
    fields: list[CitizenField] = Field(min_length=1, max_length=len(CITIZEN_FIELDS))

    @field_validator("id_number")
    @classmethod
    def _one_id(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _require_one_id(value, info)

    @field_validator("fields")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise PydanticCustomError("fields_unique", "must not repeat a field")
        return value

    def subject(self) -> str:
        return self.id_number or self.legacy_id_number or ""


# ---------------------------------------------------------------- results and records


class VerifyReason(enum.StrEnum):
    MISMATCH = "mismatch"
    NOT_FOUND = "not_found"


class Verification(_Strict):
    """The answer to :class:`VerifyCitizen`. A verification creates nothing (HTTP 200)."""

    match: bool
    #: the fields compared, in request order
    checked: list[str]
    #: the checked fields whose values differ from the registry's
    mismatches: list[str] = Field(default_factory=list)
    reason: VerifyReason | None = None


class Address(_Strict):
    """Administrative unit codes (legacy or current set) and the free-text detail."""

    province_code: str | None = None
    #: empty in the current two-tier set (districts were abolished in 2025)
    district_code: str | None = None
    ward_code: str | None = None
    detail: str | None = None


class Relative(_Strict):
    full_name: str
    id_number: str | None = None
    #: to the citizen, for the household head (e.g. "Chủ hộ", "Con")
    relationship: str | None = None


class CitizenRecord(_Strict):
    """What the national registry holds about one citizen, in canonical form."""

    id_number: str | None = None
    legacy_id_number: str | None = None
    full_name: str
    family_name: str | None = None
    middle_name: str | None = None
    given_name: str | None = None
    birth_date: BirthDateField
    gender: Gender | None = None
    nationality: str | None = None
    ethnicity: str | None = None
    religion: str | None = None
    blood_type: str | None = None
    marital_status: str | None = None
    permanent_address: Address | None = None
    current_address: Address | None = None
    father: Relative | None = None
    mother: Relative | None = None
    spouse: Relative | None = None
    household_head: Relative | None = None
    household_book_number: str | None = None

    def project(self, fields: Iterable[str]) -> dict[str, Any]:
        """Only the named fields, JSON-ready."""
        wanted = list(fields)
        dumped = self.model_dump(mode="json", include=set(wanted))
        return {name: dumped.get(name) for name in wanted}


class CitizenLookup(_Strict):
    """The answer to :class:`LookupCitizen`: exactly the requested fields."""

    citizen: dict[str, Any]


# ---------------------------------------------------------------- comparison


@dataclass(frozen=True, slots=True)
class MatchOptions:
    #: compare names without diacritics (a per-deployment choice; off by default)
    ignore_diacritics: bool = False


def compare(
    request: VerifyCitizen, record: CitizenRecord | None, options: MatchOptions = MatchOptions()
) -> Verification:
    """Decide a verification from the registry's record (None: no such citizen)."""
    checked: list[str] = []
    mismatches: list[str] = []
    if request.id_number is not None:
        checked.append("id_number")
        if record is not None and record.id_number not in (None, request.id_number):
            mismatches.append("id_number")
    if request.legacy_id_number is not None:
        checked.append("legacy_id_number")
        if record is not None and record.legacy_id_number != request.legacy_id_number:
            mismatches.append("legacy_id_number")
    if record is None:
        # only the identifiers were looked at: there was nothing to compare the rest with
        return Verification(
            match=False, checked=checked, mismatches=[], reason=VerifyReason.NOT_FOUND
        )
    checked += ["full_name", "birth_date"]
    ignore = options.ignore_diacritics
    if name_key(request.full_name, ignore_diacritics=ignore) != name_key(
        record.full_name, ignore_diacritics=ignore
    ):
        mismatches.append("full_name")
    if not request.birth_date.agrees_with(record.birth_date):
        mismatches.append("birth_date")
    return Verification(
        match=not mismatches,
        checked=checked,
        mismatches=mismatches,
        reason=VerifyReason.MISMATCH if mismatches else None,
    )


# ---------------------------------------------------------------- the port


@runtime_checkable
class IdentityCapability(Protocol):
    """Served by an adapter (``[capabilities] identity = "<adapter>"``).

    ``caller`` is the authenticated client's id: the audit record's actor. Implementations
    raise ``gateway.errors`` classes: ``ProcedureNotLicensed`` / ``OfficerNotPermitted`` when
    the registry refuses the purpose, ``NotFound`` from :meth:`lookup` when there is no such
    citizen, the ``Upstream*`` branch when the registry fails.
    """

    async def verify(self, request: VerifyCitizen, *, caller: str) -> Verification: ...

    async def lookup(self, request: LookupCitizen, *, caller: str) -> CitizenLookup: ...
