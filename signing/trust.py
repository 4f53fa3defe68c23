"""The trust store: anchors, chain validation at a given time, key usage, CRLs, expiry.

A signer is accepted when its certificate chains to an anchor (in production the Government
CA roots) or is one of the certificates pinned for that peer. Each way of failing has its own
problem type, so an operator can tell them apart:

* outside the store / not the pinned certificate  -> :class:`SignatureUntrusted`
* expired or not yet valid at the validation time -> :class:`CertificateExpired`
* listed on a local CRL                           -> :class:`CertificateRevoked`
* not allowed to sign (KeyUsage, CA certificate)  -> :class:`KeyUsageInvalid`

Certificates the gateway relies on are exported as the gauge
``gateway_certificate_expiry_timestamp_seconds`` and logged as a warning under 30 days.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import verification
from prometheus_client import Gauge

from gateway.errors import (
    CertificateExpired,
    CertificateRevoked,
    ConfigurationError,
    KeyUsageInvalid,
    SignatureUntrusted,
)
from gateway.settings import SigningSettings
from signing.keys import load_certificates

__all__ = [
    "CERTIFICATE_EXPIRY",
    "CertificateInfo",
    "CertificateStatus",
    "ChainResult",
    "TrustStore",
    "certificate_status",
    "describe",
    "fingerprint",
    "load_crls",
    "observe_certificates",
]

log = structlog.get_logger(__name__)

CERTIFICATE_EXPIRY = Gauge(
    "gateway_certificate_expiry_timestamp_seconds",
    "Expiry (notAfter) of a certificate the gateway relies on, as a Unix timestamp",
    ["role", "subject", "serial"],
)

_CERT_SUFFIXES = {".pem", ".crt", ".cer", ".der"}
_CRL_SUFFIXES = {".pem", ".crl", ".der"}
_CHAIN_CACHE_SIZE = 1024

ChainStatus = Literal["trusted", "pinned"]


@lru_cache(maxsize=4096)
def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """What callers may see of a certificate (subjects of organisations and officers)."""

    subject: str
    issuer: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    sha256: str

    def as_dict(self) -> dict[str, str]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": self.serial,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "sha256": self.sha256,
        }


@lru_cache(maxsize=4096)
def describe(cert: x509.Certificate) -> CertificateInfo:
    return CertificateInfo(
        subject=_name(cert.subject),
        issuer=_name(cert.issuer),
        serial=format(cert.serial_number, "X"),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        sha256=fingerprint(cert),
    )


def _name(name: x509.Name) -> str:
    try:
        return name.rfc4514_string()
    except ValueError:
        return "<unreadable name>"


@dataclass(frozen=True, slots=True)
class ChainResult:
    """A validated signer: the leaf first, up to the anchor (or the pinned certificate alone)."""

    chain: tuple[x509.Certificate, ...]
    status: ChainStatus
    validated_at: dt.datetime

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]


@dataclass(frozen=True, slots=True)
class _CachedPath:
    chain: tuple[x509.Certificate, ...]
    # the path is valid for any time inside every certificate's validity window
    valid_from: dt.datetime
    valid_until: dt.datetime


class TrustStore:
    """Anchors and CRLs, validated chains cached by the exact certificates presented.

    Path building is the expensive part of a verification (hundreds of microseconds); a
    result depends only on the certificates and on the time being inside every validity
    window, so it is cached per certificate set and reused while that holds. Revocation is
    looked up on every call (a dictionary lookup), so a new CRL takes effect at once.
    """

    def __init__(
        self,
        anchors: Sequence[x509.Certificate] = (),
        crls: Sequence[x509.CertificateRevocationList] = (),
    ) -> None:
        self.anchors: tuple[x509.Certificate, ...] = tuple(anchors)
        self._store = verification.Store(list(self.anchors)) if self.anchors else None
        self._by_subject: dict[x509.Name, list[x509.Certificate]] = {}
        for anchor in self.anchors:
            self._by_subject.setdefault(anchor.subject, []).append(anchor)
        self._crls: dict[x509.Name, list[x509.CertificateRevocationList]] = {}
        for crl in crls:
            self._crls.setdefault(crl.issuer, []).append(crl)
        self._crl_checked: dict[tuple[int, str], bool] = {}
        self._cache: OrderedDict[tuple[str, ...], _CachedPath] = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------ construction

    @classmethod
    def from_paths(cls, trust_paths: Iterable[Path], crl_paths: Iterable[Path] = ()) -> TrustStore:
        """Anchors from PEM/DER files or folders of them; CRLs likewise."""
        anchors: list[x509.Certificate] = []
        for path in _expand(trust_paths, _CERT_SUFFIXES):
            anchors.extend(load_certificates(path))
        return cls(anchors, load_crls(crl_paths))

    @classmethod
    def from_settings(cls, cfg: SigningSettings, *, missing_ok: bool = True) -> TrustStore:
        """The configured store; absent files are skipped (logged) unless ``missing_ok`` is off."""
        trust = [p for p in cfg.trust_paths if missing_ok is False or p.exists()]
        crls = [p for p in cfg.crl_paths if missing_ok is False or p.exists()]
        for path in [*cfg.trust_paths, *cfg.crl_paths]:
            if not path.exists():
                log.warning("signing.trust_path_missing", path=str(path))
        return cls.from_paths(trust, crls)

    # ------------------------------------------------------------ validation

    def validate(
        self,
        leaf: x509.Certificate,
        intermediates: Sequence[x509.Certificate] = (),
        *,
        at: dt.datetime | None = None,
    ) -> ChainResult:
        """Validate ``leaf`` (with untrusted ``intermediates``) at ``at`` (default: now)."""
        when = _utc(at)
        if self._store is None:
            raise SignatureUntrusted(
                f"no trust anchors are configured, so {_subject(leaf)} cannot be trusted"
            )
        chain = self._path(leaf, tuple(intermediates), when)
        self._require_not_revoked(chain, when)
        return ChainResult(chain=chain, status="trusted", validated_at=when)

    def validate_pinned(
        self,
        cert: x509.Certificate,
        pins: Sequence[x509.Certificate],
        *,
        at: dt.datetime | None = None,
        peer: str | None = None,
    ) -> ChainResult:
        """Accept ``cert`` only if it is one of ``pins``, valid at ``at`` and not revoked."""
        when = _utc(at)
        wanted = fingerprint(cert)
        if not any(fingerprint(p) == wanted for p in pins):
            who = f"peer {peer!r}" if peer else "this peer"
            raise SignatureUntrusted(f"{_subject(cert)} is not a certificate pinned for {who}")
        _require_time(cert, when)
        _require_signing_usage(cert, pinned=True)
        issuer = cert if cert.issuer == cert.subject else self._issuer_of(cert)
        self._require_not_revoked((cert, *(() if issuer is None else (issuer,))), when)
        return ChainResult(chain=(cert,), status="pinned", validated_at=when)

    def _path(
        self,
        leaf: x509.Certificate,
        intermediates: tuple[x509.Certificate, ...],
        when: dt.datetime,
    ) -> tuple[x509.Certificate, ...]:
        key = (fingerprint(leaf), *sorted(fingerprint(c) for c in intermediates))
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
        if hit is not None and hit.valid_from <= when <= hit.valid_until:
            return hit.chain
        try:
            chain = tuple(self._build(when).verify(leaf, list(intermediates)).chain)
        except verification.VerificationError as exc:
            raise self._diagnose(leaf, intermediates, when, exc) from None
        # a fact about the certificate, not the time: checked once, then cached with the path
        _require_signing_usage(leaf, pinned=False)
        cached = _CachedPath(
            chain=chain,
            valid_from=max(c.not_valid_before_utc for c in chain),
            valid_until=min(c.not_valid_after_utc for c in chain),
        )
        with self._lock:
            self._cache[key] = cached
            self._cache.move_to_end(key)
            while len(self._cache) > _CHAIN_CACHE_SIZE:
                self._cache.popitem(last=False)
        return chain

    def _build(self, when: dt.datetime) -> verification.ClientVerifier:
        assert self._store is not None
        # key usage of the leaf is checked by us afterwards, so that "may not sign" gets its
        # own problem type instead of a generic path-building failure
        return (
            verification.PolicyBuilder()
            .store(self._store)
            .time(when)
            .max_chain_depth(8)
            .extension_policies(
                ee_policy=verification.ExtensionPolicy.permit_all(),
                ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
            )
            .build_client_verifier()
        )

    def _diagnose(
        self,
        leaf: x509.Certificate,
        intermediates: tuple[x509.Certificate, ...],
        when: dt.datetime,
        exc: verification.VerificationError,
    ) -> Exception:
        """Tell "expired" from "untrusted".

        The refusal stands either way; only its type changes. When a presented certificate is
        outside its validity and the certificates still link by signature to an anchor, the
        problem is the time, so the caller gets ``CertificateExpired``.
        """
        anchor = self._linked_anchor(leaf, intermediates)
        if anchor is not None:
            path = (leaf, *intermediates, anchor)
            stale = [c for c in path if not _valid_at(c, when)]
            if stale:
                return _time_error(stale[0], when)
        return SignatureUntrusted(
            f"{_subject(leaf)} does not chain to a trusted anchor: {_short(exc)}"
        )

    def _linked_anchor(
        self, leaf: x509.Certificate, intermediates: tuple[x509.Certificate, ...]
    ) -> x509.Certificate | None:
        """The anchor signatures link ``leaf`` to, ignoring time and extensions, if any."""
        pool = [*intermediates, *self.anchors]
        anchors = {fingerprint(a) for a in self.anchors}
        current = leaf
        for _ in range(8):
            if fingerprint(current) in anchors:
                return current
            parent = next(
                (c for c in pool if c.subject == current.issuer and _issued(current, c)), None
            )
            if parent is None or parent is current:
                return None
            current = parent
        return None

    def _issuer_of(self, cert: x509.Certificate) -> x509.Certificate | None:
        return next((c for c in self._by_subject.get(cert.issuer, []) if _issued(cert, c)), None)

    def _require_not_revoked(self, chain: Sequence[x509.Certificate], when: dt.datetime) -> None:
        # each certificate except the anchor is looked up on its issuer's CRLs
        for index, cert in enumerate(chain):
            if cert.issuer == cert.subject and index == len(chain) - 1 and index > 0:
                break
            issuer = chain[index + 1] if index + 1 < len(chain) else cert
            for crl in self._crls.get(cert.issuer, []):
                if not self._crl_trusted(crl, issuer):
                    continue
                entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
                if entry is not None and entry.revocation_date_utc <= when:
                    raise CertificateRevoked(
                        f"{_subject(cert)} (serial {cert.serial_number:X}) was revoked on "
                        f"{entry.revocation_date_utc.date().isoformat()} "
                        f"according to the CRL of {_name(crl.issuer)}"
                    )
                if crl.next_update_utc is not None and crl.next_update_utc < when:
                    log.warning(
                        "signing.crl_stale",
                        issuer=_name(crl.issuer),
                        next_update=crl.next_update_utc.isoformat(),
                    )

    def _crl_trusted(self, crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
        key = (id(crl), fingerprint(issuer))
        known = self._crl_checked.get(key)
        if known is None:
            public = issuer.public_key()
            crl_keys = (
                rsa.RSAPublicKey,
                ec.EllipticCurvePublicKey,
                dsa.DSAPublicKey,
                ed25519.Ed25519PublicKey,
                ed448.Ed448PublicKey,
            )
            known = isinstance(public, crl_keys) and crl.is_signature_valid(public)
            if not known:
                log.warning("signing.crl_signature_invalid", issuer=_name(crl.issuer))
            self._crl_checked[key] = known
        return known


# ---------------------------------------------------------------- checks


def _issued(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _utc(at: dt.datetime | None) -> dt.datetime:
    if at is None:
        return dt.datetime.now(dt.UTC)
    return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)


def _valid_at(cert: x509.Certificate, when: dt.datetime) -> bool:
    return cert.not_valid_before_utc <= when <= cert.not_valid_after_utc


def _time_error(cert: x509.Certificate, when: dt.datetime) -> CertificateExpired:
    if when < cert.not_valid_before_utc:
        return CertificateExpired(
            f"{_subject(cert)} is not valid before {cert.not_valid_before_utc.isoformat()} "
            f"(checked at {when.isoformat()})"
        )
    return CertificateExpired(
        f"{_subject(cert)} expired on {cert.not_valid_after_utc.isoformat()} "
        f"(checked at {when.isoformat()})"
    )


def _require_time(cert: x509.Certificate, when: dt.datetime) -> None:
    if not _valid_at(cert, when):
        raise _time_error(cert, when)


def _require_signing_usage(cert: x509.Certificate, *, pinned: bool) -> None:
    """digitalSignature or nonRepudiation must be asserted; a CA certificate may not sign.

    A pinned certificate without the extension (X.509 v1, as old peers still have) is
    accepted: the pin itself is the operator's explicit trust decision.
    """
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is not None and constraints.ca and not pinned:
        raise KeyUsageInvalid(f"{_subject(cert)} is a CA certificate and may not sign documents")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        if pinned:
            return
        raise KeyUsageInvalid(
            f"{_subject(cert)} has no KeyUsage extension; a signing certificate must assert "
            "digitalSignature or nonRepudiation"
        ) from None
    if not (usage.digital_signature or usage.content_commitment):
        raise KeyUsageInvalid(
            f"{_subject(cert)} KeyUsage allows neither digitalSignature nor nonRepudiation"
        )


def _subject(cert: x509.Certificate) -> str:
    return f"certificate '{_name(cert.subject)}'"


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 300 else text[:297] + "..."


# ---------------------------------------------------------------- CRLs


def load_crls(paths: Iterable[Path]) -> list[x509.CertificateRevocationList]:
    crls: list[x509.CertificateRevocationList] = []
    for path in _expand(paths, _CRL_SUFFIXES):
        data = path.read_bytes()
        try:
            if b"-----BEGIN X509 CRL" in data:
                crls.extend(
                    x509.load_pem_x509_crl(b"-----BEGIN X509 CRL" + part)
                    for part in data.split(b"-----BEGIN X509 CRL")[1:]
                )
            elif b"-----BEGIN" not in data:
                crls.append(x509.load_der_x509_crl(data))
        except ValueError as exc:
            raise ConfigurationError(f"cannot load CRL {path}: {exc}") from None
    return crls


def _expand(paths: Iterable[Path], suffixes: set[str]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes))
        else:
            out.append(path)
    return out


# ---------------------------------------------------------------- expiry


@dataclass(frozen=True, slots=True)
class CertificateStatus:
    """One certificate's place and remaining life, for the metric and ``gateway keys inspect``."""

    role: str
    source: str
    info: CertificateInfo
    days_left: float

    @property
    def state(self) -> str:
        if self.days_left < 0:
            return "expired"
        return "ok"


def certificate_status(
    cert: x509.Certificate, *, role: str, source: str, now: dt.datetime | None = None
) -> CertificateStatus:
    when = _utc(now)
    days = (cert.not_valid_after_utc - when).total_seconds() / 86400
    return CertificateStatus(role=role, source=source, info=describe(cert), days_left=days)


def observe_certificates(
    certs: Iterable[x509.Certificate],
    *,
    role: str,
    source: str = "",
    warning_days: int = 30,
    now: dt.datetime | None = None,
) -> list[CertificateStatus]:
    """Export each certificate's expiry and warn when fewer than ``warning_days`` remain."""
    statuses = []
    for cert in certs:
        status = certificate_status(cert, role=role, source=source, now=now)
        CERTIFICATE_EXPIRY.labels(
            role=role, subject=status.info.subject, serial=status.info.serial
        ).set(cert.not_valid_after_utc.timestamp())
        if status.days_left < 0:
            log.error(
                "signing.certificate_expired",
                role=role,
                subject=status.info.subject,
                serial=status.info.serial,
                not_after=status.info.not_after.isoformat(),
            )
        elif status.days_left < warning_days:
            log.warning(
                "signing.certificate_expiring",
                role=role,
                subject=status.info.subject,
                serial=status.info.serial,
                days_left=round(status.days_left, 1),
                not_after=status.info.not_after.isoformat(),
            )
        statuses.append(status)
    return statuses
