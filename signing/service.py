"""The process's signing service: configured keys, trust and peer policies, off the event loop.

Signing and verification are CPU work (RSA, canonicalisation, hashing) that holds the GIL for
most of its time; run on the event loop it would stall every other request for the whole
operation (60 ms at 2 KB under load, over 500 ms at 200 KB in our measurements). They run on a
small thread pool instead. docs/adr/0002-signing-executor.md records why a thread pool rather
than a process pool: for the document sizes the gateway exchanges it has the higher
throughput and the same event-loop latency, keeps the certificate and chain caches shared, and
the gateway already scales across cores with ``--processes``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar

import structlog
from cryptography import x509

from gateway.errors import ConfigurationError, ValidationFailed
from gateway.settings import SigningSettings
from signing.keys import KeyMaterial, load_certificates, load_signing_material
from signing.sign import SignedXml, SignMode, XmlSigner
from signing.trust import CertificateStatus, TrustStore, observe_certificates
from signing.verify import VerificationPolicy, VerifiedDocument, XmlVerifier
from signing.xml import DEFAULT_MAX_DEPTH

__all__ = ["SigningService"]

_T = TypeVar("_T")

log = structlog.get_logger(__name__)


class SigningService:
    """Loads key material and trust lazily, so a gateway without a PKI still starts."""

    def __init__(
        self,
        cfg: SigningSettings,
        *,
        max_bytes: int,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self.cfg = cfg
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._signer: XmlSigner | None = None
        self._trust: TrustStore | None = None
        self._verifiers: dict[str | None, XmlVerifier] = {}

    # ------------------------------------------------------------ lifecycle

    def start(self) -> list[CertificateStatus]:
        """Export certificate expiry (and warn under the threshold) for what is configured."""
        try:
            return self.check_certificates()
        except ConfigurationError as exc:
            # a gateway that never signs needs no key; say so once, refuse when asked to sign
            log.warning("signing.not_configured", detail=exc.detail)
            return []

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=False)

    async def watch_certificates(self, interval_seconds: float) -> None:
        """Re-run :meth:`check_certificates` every ``interval_seconds`` until cancelled.

        A gateway runs for months: a warning logged only at start-up says nothing when a
        certificate crosses ``expiry_warning_days`` later. Every process runs its own watch
        (not a scheduled job, which one instance only would run) because the expiry gauge
        lives in each process's own /metrics. A failing check is logged and retried at the
        next interval; it never stops the watch.
        """
        while True:
            await asyncio.sleep(interval_seconds)
            try:
                await self._run(self.check_certificates)
            except ConfigurationError as exc:
                log.warning("signing.certificate_check_failed", detail=exc.detail)
            except Exception as exc:  # the watch outlives one bad check (cancel is not one)
                log.error("signing.certificate_check_failed", error=type(exc).__name__)

    def check_certificates(self) -> list[CertificateStatus]:
        days = self.cfg.expiry_warning_days
        statuses: list[CertificateStatus] = []
        # the certificate in use once signing started (a renewed file on disk is not yet
        # what the gateway signs with), else what is configured
        with self._lock:
            signer = self._signer
        material = signer.material if signer is not None else self._material_if_configured()
        if material is not None:
            source = str(self.cfg.pkcs12_path or self.cfg.cert_path)
            statuses += observe_certificates(
                material.certificates(), role="signing", source=source, warning_days=days
            )
        statuses += observe_certificates(
            self.trust().anchors, role="trust-anchor", warning_days=days
        )
        for peer, certs in self._pins().items():
            statuses += observe_certificates(
                certs, role=f"peer:{peer}", source="signing.peers", warning_days=days
            )
        return statuses

    # ------------------------------------------------------------ the work

    async def sign(
        self, data: bytes, *, mode: SignMode = "enveloped", reference_id: str | None = None
    ) -> SignedXml:
        signer = self.signer()
        return await self._run(partial(signer.sign, data, mode=mode, reference_id=reference_id))

    async def verify(
        self, data: bytes, *, peer: str | None = None, detached_content: bytes | None = None
    ) -> VerifiedDocument:
        verifier = self.verifier(peer)
        return await self._run(partial(verifier.verify, data, detached_content=detached_content))

    async def verify_with(self, verifier: XmlVerifier, data: bytes) -> VerifiedDocument:
        """Verify with a verifier the caller built (an adapter's own pin, e.g. the sandbox's
        simulator certificate), on this service's thread pool."""
        return await self._run(partial(verifier.verify, data))

    async def _run(self, job: Callable[[], _T]) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(), job)

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.cfg.workers, thread_name_prefix="signing"
                )
            return self._pool

    # ------------------------------------------------------------ configuration

    def signer(self) -> XmlSigner:
        with self._lock:
            if self._signer is None:
                self._signer = XmlSigner(
                    self._material(),
                    include_chain=self.cfg.include_chain,
                    max_bytes=self.max_bytes,
                    max_depth=self.max_depth,
                )
            return self._signer

    def trust(self) -> TrustStore:
        with self._lock:
            if self._trust is None:
                self._trust = TrustStore.from_settings(self.cfg)
            return self._trust

    def peers(self) -> set[str]:
        return set(self.cfg.peers) | set(self.cfg.sha1_allowed_peers)

    def verifier(self, peer: str | None = None) -> XmlVerifier:
        if peer is not None and peer not in self.peers():
            known = ", ".join(sorted(self.peers())) or "none configured"
            raise ValidationFailed.field("/peer", f"unknown peer {peer!r} (known: {known})")
        trust = self.trust()
        with self._lock:
            cached = self._verifiers.get(peer)
        if cached is not None:
            return cached
        verifier = XmlVerifier(self.policy(peer, trust))
        with self._lock:
            return self._verifiers.setdefault(peer, verifier)

    def policy(self, peer: str | None, trust: TrustStore) -> VerificationPolicy:
        peer_cfg = self.cfg.peers.get(peer) if peer is not None else None
        pinned: tuple[x509.Certificate, ...] = ()
        hmac_key = None
        legacy = False
        if peer_cfg is not None:
            pinned = tuple(self._pins().get(peer or "", []))
            if peer_cfg.hmac_key is not None:
                hmac_key = peer_cfg.hmac_key.get_secret_value().encode()
            legacy = peer_cfg.legacy_c14n_xmlns
        return VerificationPolicy(
            trust=trust,
            pinned=pinned,
            hmac_key=hmac_key,
            allow_sha1=peer is not None and peer in self.cfg.sha1_allowed_peers,
            legacy_c14n_xmlns=legacy,
            max_bytes=self.max_bytes,
            max_depth=self.max_depth,
            peer=peer,
        )

    def _pins(self) -> dict[str, list[x509.Certificate]]:
        return {
            name: [c for path in peer.pinned_certificates for c in load_certificates(path)]
            for name, peer in self.cfg.peers.items()
            if peer.pinned_certificates
        }

    def _material(self) -> KeyMaterial:
        try:
            return load_signing_material(self.cfg)
        except ConfigurationError as exc:
            hint = ""
            if self.cfg.pkcs12_path is None and not _exists(self.cfg.key_path):
                hint = f" (for development: gateway keys dev-pki {self.cfg.dev_pki_dir})"
            raise ConfigurationError(f"signing key unavailable: {exc.detail}{hint}") from None

    def _material_if_configured(self) -> KeyMaterial | None:
        configured = self.cfg.pkcs12_path or (
            _exists(self.cfg.key_path) and _exists(self.cfg.cert_path)
        )
        return self._material() if configured else None


def _exists(path: Path | None) -> bool:
    return path is not None and path.exists()
