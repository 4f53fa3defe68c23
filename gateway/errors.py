"""The one error tree of the gateway.

Every failure the gateway raises is a :class:`GatewayError`. Each class carries its HTTP
status, a stable problem ``type`` slug, a human title and whether a retry may succeed. The
HTTP layer turns any of them into an RFC 9457 ``application/problem+json`` response; the job
runner reads ``retryable`` to choose between retry and dead letter; the outbound layer
translates transport faults into the ``Upstream*`` branch at one boundary.

    GatewayError
    ├── ClientError                      4xx, never retryable
    │   ├── InvalidRequest               400  malformed body or parameters
    │   ├── ValidationFailed             422  with per-field {pointer, message} errors
    │   ├── Unauthenticated              401  missing or unknown credential
    │   ├── Forbidden                    403  authenticated, not allowed
    │   │   ├── MissingScope             403  the client lacks a scope
    │   │   ├── NetworkNotAllowed        403  the caller's address is outside the client's networks
    │   │   ├── UnitNotAllowed           403  dossier of a unit the client may not touch
    │   │   ├── ProcedureNotLicensed     403  upstream code 004 (population database)
    │   │   └── OfficerNotPermitted      403  upstream code 005 (population database)
    │   ├── NotFound                     404
    │   ├── MethodNotAllowed             405
    │   ├── Conflict                     409
    │   │   └── IdempotencyInFlight      409  same Idempotency-Key still being processed
    │   ├── IdempotencyKeyReused         422  same Idempotency-Key, another request
    │   ├── PayloadTooLarge              413
    │   ├── RateLimited                  429  retryable by the caller after Retry-After
    │   └── SignatureInvalid             400..422 a signature or checksum did not verify
    │       ├── SignatureUntrusted       422  signer outside the trust store / pin
    │       ├── CertificateExpired       422
    │       ├── CertificateRevoked       422
    │       ├── KeyUsageInvalid          422
    │       └── UnsupportedXmlFeature    422  forbidden transform, algorithm, reference
    ├── XmlRejected                      400  hardened parser refused a document
    ├── UpstreamError                    502  the national system failed us
    │   ├── UpstreamUnavailable          503  retryable (connect error, 502/503 upstream)
    │   ├── UpstreamTimeout              504  retryable
    │   ├── UpstreamRateLimited          503  retryable, honours the upstream Retry-After
    │   │   └── OutboundQuotaExhausted   503  our own quota for that system is used up
    │   ├── UpstreamProtocolError        502  malformed or unverifiable answer, not retryable
    │   ├── UpstreamFault                502  SOAP fault / unexpected upstream error
    │   ├── UpstreamRejected             422  business rejection, permanent (dead-lettered)
    │   ├── UpstreamAuthFailed           502  our credentials were refused upstream
    │   ├── CircuitOpen                  503  fail fast, retryable after Retry-After
    │   └── BulkheadFull                 503  too many concurrent calls, retryable
    ├── Overloaded                       503  a bounded queue is full, retryable
    ├── ConfigurationError               500  settings are wrong (start-up and CLI)
    └── StoreUnavailable                 503  the store cannot be reached, retryable

Details must never contain secrets, stack traces or personal data: they are shown to callers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "PROBLEM_TYPE_BASE",
    "BulkheadFull",
    "CertificateExpired",
    "CertificateRevoked",
    "CircuitOpen",
    "ClientError",
    "ConfigurationError",
    "Conflict",
    "FieldError",
    "Forbidden",
    "GatewayError",
    "IdempotencyInFlight",
    "IdempotencyKeyReused",
    "InvalidRequest",
    "KeyUsageInvalid",
    "MethodNotAllowed",
    "MissingScope",
    "NetworkNotAllowed",
    "NotFound",
    "OfficerNotPermitted",
    "OutboundQuotaExhausted",
    "Overloaded",
    "PayloadTooLarge",
    "ProcedureNotLicensed",
    "RateLimited",
    "SignatureInvalid",
    "SignatureUntrusted",
    "StoreUnavailable",
    "Unauthenticated",
    "UnitNotAllowed",
    "UnsupportedXmlFeature",
    "UpstreamAuthFailed",
    "UpstreamError",
    "UpstreamFault",
    "UpstreamProtocolError",
    "UpstreamRateLimited",
    "UpstreamRejected",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "ValidationFailed",
    "XmlRejected",
]

#: Problem ``type`` URIs are ``PROBLEM_TYPE_BASE + slug``; they are stable, callers match on them.
PROBLEM_TYPE_BASE = "urn:dvc-gateway:problem:"


@dataclass(frozen=True, slots=True)
class FieldError:
    """One bad field: a JSON pointer (RFC 6901) into the request and what is wrong with it."""

    pointer: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"pointer": self.pointer, "message": self.message}


class GatewayError(Exception):
    """Base of the tree. Subclasses set the class attributes; instances add the detail."""

    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        detail: str | None = None,
        *,
        retry_after: float | None = None,
        errors: list[FieldError] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.detail = detail or self.title
        self.retry_after = retry_after
        self.errors = errors or []
        #: extra members of the problem document (must be safe to show the caller)
        self.extra = extra or {}
        super().__init__(self.detail)

    @property
    def type_uri(self) -> str:
        return PROBLEM_TYPE_BASE + self.slug

    def problem(
        self, *, instance: str | None = None, request_id: str | None = None
    ) -> dict[str, Any]:
        """The RFC 9457 body for this error."""
        body: dict[str, Any] = {
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance is not None:
            body["instance"] = instance
        if request_id is not None:
            body["request_id"] = request_id
        if self.errors:
            body["errors"] = [e.as_dict() for e in self.errors]
        if self.retry_after is not None:
            body["retry_after"] = int(max(1, round(self.retry_after)))
        body.update(self.extra)
        return body


# ---------------------------------------------------------------- caller errors (4xx)


class ClientError(GatewayError):
    status = 400
    slug = "bad-request"
    title = "Bad request"


class InvalidRequest(ClientError):
    status = 400
    slug = "invalid-request"
    title = "The request is malformed"


class ValidationFailed(ClientError):
    status = 422
    slug = "validation-failed"
    title = "The request did not pass validation"

    @classmethod
    def field(cls, pointer: str, message: str) -> ValidationFailed:
        """Shortcut for the common case of one bad field."""
        return cls(f"{pointer}: {message}", errors=[FieldError(pointer, message)])


class Unauthenticated(ClientError):
    status = 401
    slug = "unauthenticated"
    title = "Authentication required"


class Forbidden(ClientError):
    status = 403
    slug = "forbidden"
    title = "Not allowed"


class MissingScope(Forbidden):
    slug = "missing-scope"
    title = "The client lacks the scope this route needs"


class NetworkNotAllowed(Forbidden):
    slug = "network-not-allowed"
    title = "The caller's address is not allowed for this client"


class UnitNotAllowed(Forbidden):
    slug = "unit-not-allowed"
    title = "The client may not act for this unit"


class ProcedureNotLicensed(Forbidden):
    slug = "procedure-not-licensed"
    title = "The procedure is not licensed to query this system"


class OfficerNotPermitted(Forbidden):
    slug = "officer-not-permitted"
    title = "The officer is not permitted to query this system"


class NotFound(ClientError):
    status = 404
    slug = "not-found"
    title = "Not found"


class MethodNotAllowed(ClientError):
    status = 405
    slug = "method-not-allowed"
    title = "The route does not accept this method"


class Conflict(ClientError):
    status = 409
    slug = "conflict"
    title = "Conflict"


class IdempotencyInFlight(Conflict):
    slug = "idempotency-key-in-flight"
    title = "A request with this Idempotency-Key is still being processed"


class IdempotencyKeyReused(ClientError):
    status = 422
    slug = "idempotency-key-reused"
    title = "This Idempotency-Key was used with another request"


class PayloadTooLarge(ClientError):
    status = 413
    slug = "payload-too-large"
    title = "The request body is too large"


class RateLimited(ClientError):
    status = 429
    slug = "rate-limited"
    title = "Too many requests"
    retryable = True


class SignatureInvalid(ClientError):
    status = 422
    slug = "signature-invalid"
    title = "The signature or checksum did not verify"


class SignatureUntrusted(SignatureInvalid):
    slug = "signature-untrusted"
    title = "The signer is not trusted"


class CertificateExpired(SignatureInvalid):
    slug = "certificate-expired"
    title = "The signer's certificate is expired or not yet valid"


class CertificateRevoked(SignatureInvalid):
    slug = "certificate-revoked"
    title = "The signer's certificate is revoked"


class KeyUsageInvalid(SignatureInvalid):
    slug = "key-usage-invalid"
    title = "The signer's certificate is not allowed to sign"


class UnsupportedXmlFeature(SignatureInvalid):
    slug = "unsupported-xml-feature"
    title = "The document uses a feature the gateway refuses"


class XmlRejected(ClientError):
    status = 400
    slug = "xml-rejected"
    title = "The XML document was refused by the hardened parser"


# ---------------------------------------------------------------- upstream errors (5xx)


class UpstreamError(GatewayError):
    status = 502
    slug = "upstream-error"
    title = "The national system failed"

    def __init__(self, detail: str | None = None, *, system: str | None = None, **kw: Any) -> None:
        super().__init__(detail, **kw)
        self.system = system
        if system is not None:
            self.extra.setdefault("system", system)


class UpstreamUnavailable(UpstreamError):
    status = 503
    slug = "upstream-unavailable"
    title = "The national system is unavailable"
    retryable = True


class UpstreamTimeout(UpstreamError):
    status = 504
    slug = "upstream-timeout"
    title = "The national system did not answer in time"
    retryable = True


class UpstreamRateLimited(UpstreamError):
    status = 503
    slug = "upstream-rate-limited"
    title = "The national system asked us to slow down"
    retryable = True


class OutboundQuotaExhausted(UpstreamRateLimited):
    """The quota the national system grants the province (shared by every instance) is used
    up for this window. The outbound retry loop does not wait it out: the quota's own
    ``max_wait`` already decided how long a call may wait; jobs retry after ``retry_after``."""

    slug = "outbound-quota-exhausted"
    title = "The gateway's quota of calls to the national system is used up"


class UpstreamProtocolError(UpstreamError):
    status = 502
    slug = "upstream-protocol-error"
    title = "The national system answered something we cannot accept"


class UpstreamFault(UpstreamError):
    status = 502
    slug = "upstream-fault"
    title = "The national system reported a fault"


class UpstreamRejected(UpstreamError):
    status = 422
    slug = "upstream-rejected"
    title = "The national system rejected the request"


class UpstreamAuthFailed(UpstreamError):
    status = 502
    slug = "upstream-auth-failed"
    title = "The national system refused the gateway's credentials"


class CircuitOpen(UpstreamError):
    status = 503
    slug = "circuit-open"
    title = "The national system is failing; calls are paused"
    retryable = True


class BulkheadFull(UpstreamError):
    status = 503
    slug = "bulkhead-full"
    title = "Too many calls to the national system are in flight"
    retryable = True


# ---------------------------------------------------------------- the gateway itself


class Overloaded(GatewayError):
    status = 503
    slug = "overloaded"
    title = "The gateway's queue for this work is full"
    retryable = True


class ConfigurationError(GatewayError):
    status = 500
    slug = "configuration-error"
    title = "The gateway is misconfigured"


class StoreUnavailable(GatewayError):
    status = 503
    slug = "store-unavailable"
    title = "The gateway's store cannot be reached"
    retryable = True
