"""Keys and certificates: loading (PEM, PKCS#12) and the development PKI.

Production keys are files the operator provides (``[signing]`` in the configuration); their
passwords come from the environment or a file (``key_password`` / ``key_password_file``, or
``GATEWAY_SIGNING__KEY_PASSWORD``), never from the repository. The development PKI is generated
under ``var/pki`` (git-ignored) by ``gateway keys dev-pki`` and by the sandbox.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.errors import ConfigurationError
from gateway.settings import SigningSettings

__all__ = [
    "DevPki",
    "IssuedFiles",
    "KeyMaterial",
    "PrivateKey",
    "ensure_dev_pki",
    "generate_key",
    "issue_certificate",
    "issue_crl",
    "load_certificates",
    "load_key_material",
    "load_pkcs12",
    "load_private_key",
    "load_signing_material",
    "read_password",
]

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
KeyKind = Literal["rsa", "ec"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
#: leaf certificates are renewed by ensure_dev_pki when fewer days than this remain
_RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    """A private key, its certificate and the intermediates up to (not including) the root."""

    key: PrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def kind(self) -> KeyKind:
        return "ec" if isinstance(self.key, ec.EllipticCurvePrivateKey) else "rsa"

    def certificates(self) -> list[x509.Certificate]:
        """Leaf first, then the chain: the order KeyInfo carries them in."""
        return [self.certificate, *self.chain]


# ---------------------------------------------------------------- loading


def read_password(
    value: str | bytes | None = None, *, env: str | None = None, file: Path | None = None
) -> bytes | None:
    """A key password from a literal, an environment variable or a file (first one given)."""
    if value is not None:
        return value.encode() if isinstance(value, str) else value
    if env is not None:
        found = os.environ.get(env)
        if found is None:
            raise ConfigurationError(f"environment variable {env} (key password) is not set")
        return found.encode()
    if file is not None:
        try:
            return file.read_text(encoding="utf-8").strip().encode()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read key password file {file}: {exc.strerror}"
            ) from None
    return None


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} {path}: {exc.strerror}") from None


def load_private_key(path: Path, password: bytes | None = None) -> PrivateKey:
    """A PEM (or DER) private key; RSA or EC only, since XML-DSig signing uses nothing else."""
    data = _read(path, "private key")
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=password)
        else:
            key = serialization.load_der_private_key(data, password=password)
    except (ValueError, TypeError) as exc:
        # cryptography's message says "bad decrypt" / "password required", never the key
        raise ConfigurationError(f"cannot load private key {path}: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigurationError(f"{path}: only RSA and EC keys can sign XML")
    return key


def load_certificates(path: Path) -> list[x509.Certificate]:
    """All certificates of a PEM bundle, or the one certificate of a DER file."""
    data = _read(path, "certificate file")
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise ConfigurationError(f"cannot load certificates from {path}: {exc}") from None


def load_pkcs12(path: Path, password: bytes | None = None) -> KeyMaterial:
    data = _read(path, "PKCS#12 bundle")
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(data, password)
    except ValueError as exc:
        raise ConfigurationError(f"cannot load PKCS#12 bundle {path}: {exc}") from None
    if key is None or cert is None:
        raise ConfigurationError(f"{path}: the PKCS#12 bundle lacks a key or a certificate")
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigurationError(f"{path}: only RSA and EC keys can sign XML")
    return _checked(KeyMaterial(key, cert, _without_roots(extra or [])), str(path))


def load_key_material(
    key_path: Path, cert_path: Path, password: bytes | None = None
) -> KeyMaterial:
    """A PEM key and a PEM certificate file holding the leaf first, then its intermediates."""
    key = load_private_key(key_path, password)
    certs = load_certificates(cert_path)
    if not certs:
        raise ConfigurationError(f"{cert_path}: no certificate found")
    return _checked(KeyMaterial(key, certs[0], _without_roots(certs[1:])), str(cert_path))


def load_signing_material(cfg: SigningSettings) -> KeyMaterial:
    """The gateway's own signing key from the ``[signing]`` settings (PKCS#12 wins over PEM)."""
    password = None
    if cfg.key_password is not None:
        password = cfg.key_password.get_secret_value().encode()
    if cfg.pkcs12_path is not None:
        return load_pkcs12(cfg.pkcs12_path, password)
    if cfg.key_path is None or cfg.cert_path is None:
        raise ConfigurationError("signing: set key_path and cert_path, or pkcs12_path")
    return load_key_material(cfg.key_path, cfg.cert_path, password)


def _without_roots(certs: Iterable[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    # a self-signed root in KeyInfo adds nothing: the verifier must already hold it as an anchor
    return tuple(c for c in certs if c.subject != c.issuer)


def _checked(material: KeyMaterial, source: str) -> KeyMaterial:
    if _public_der(material.key.public_key()) != _public_der(material.certificate.public_key()):
        raise ConfigurationError(f"{source}: the certificate does not belong to the private key")
    return material


def _public_der(key: object) -> bytes:
    assert isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# ---------------------------------------------------------------- issuing


def generate_key(kind: KeyKind = "rsa") -> PrivateKey:
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _name(common_name: str, organisation: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def issue_certificate(
    issuer: KeyMaterial | None,
    common_name: str,
    *,
    key: PrivateKey | None = None,
    organisation: str = "dvc-gateway (development)",
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    days: int = 730,
    ca: bool = False,
    path_length: int | None = 0,
    key_usage: x509.KeyUsage | Literal["omit"] | None = None,
    extended_key_usage: Sequence[x509.ObjectIdentifier] | None = None,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    serial_number: int | None = None,
) -> KeyMaterial:
    """Issue a certificate (self-signed when ``issuer`` is None).

    Defaults suit an XML signing leaf: digitalSignature + nonRepudiation. Tests use the knobs
    to make expired, not-yet-valid and wrong-key-usage certificates from a real CA
    (``key_usage="omit"`` leaves the extension out, as X.509 v1-era certificates do).
    """
    key = key or generate_key()
    start = not_before or (_now() - dt.timedelta(minutes=5))
    end = not_after or (start + dt.timedelta(days=days))
    subject = _name(common_name, organisation)
    issuer_name = issuer.certificate.subject if issuer else subject
    signing_key = issuer.key if issuer else key
    if key_usage is None:
        key_usage = _CA_USAGE if ca else _SIGNING_USAGE
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(serial_number or x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if key_usage != "omit":
        builder = builder.add_extension(key_usage, critical=True)
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    if extended_key_usage:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(list(extended_key_usage)), critical=False
        )
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    cert = builder.sign(signing_key, hashes.SHA256())
    chain = () if issuer is None else tuple(_without_roots([issuer.certificate, *issuer.chain]))
    return KeyMaterial(key, cert, chain)


def issue_crl(
    issuer: KeyMaterial,
    revoked_serials: Iterable[int] = (),
    *,
    this_update: dt.datetime | None = None,
    days: int = 30,
) -> x509.CertificateRevocationList:
    start = this_update or (_now() - dt.timedelta(minutes=5))
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(start)
        .next_update(start + dt.timedelta(days=days))
    )
    for serial in revoked_serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(start).build()
        )
    return builder.sign(issuer.key, hashes.SHA256())


def _usage(**on: bool) -> x509.KeyUsage:
    flags = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
        ),
        False,
    )
    flags.update(on)
    return x509.KeyUsage(**flags, encipher_only=False, decipher_only=False)


_CA_USAGE = _usage(digital_signature=True, key_cert_sign=True, crl_sign=True)
_SIGNING_USAGE = _usage(digital_signature=True, content_commitment=True)
# simulators also terminate TLS in the sandbox, hence key encipherment and the TLS purposes
_SERVICE_USAGE = _usage(digital_signature=True, content_commitment=True, key_encipherment=True)


# ---------------------------------------------------------------- development PKI


@dataclass(frozen=True, slots=True)
class IssuedFiles:
    """Where one generated key and its certificate live."""

    name: str
    key_path: Path
    cert_path: Path

    def load(self) -> KeyMaterial:
        return load_key_material(self.key_path, self.cert_path)


@dataclass(frozen=True, slots=True)
class DevPki:
    """The development PKI on disk: a CA, the gateway's signing identity, one per simulator."""

    directory: Path
    ca: IssuedFiles
    crl_path: Path
    gateway: IssuedFiles
    simulators: Mapping[str, IssuedFiles] = field(default_factory=dict)
    #: names of the files (re)written by the call that returned this, for the CLI's report
    written: tuple[str, ...] = ()

    def simulator(self, name: str) -> IssuedFiles:
        try:
            return self.simulators[name]
        except KeyError:
            raise ConfigurationError(f"no development certificate for simulator {name!r}") from None


def ensure_dev_pki(directory: Path | str, simulators: Sequence[str] = ()) -> DevPki:
    """Create what is missing of the development PKI under ``directory``; keep what is good.

    Idempotent and safe to call from several processes at once (a file lock serialises them).
    The CA is reused while its key matches and it has more than 30 days left; a leaf is reused
    while it matches its key, was issued by the current CA and has more than 30 days left.
    Everything else is (re)generated; replacing the CA re-issues every leaf.
    """
    root = Path(directory)
    names = sorted(set(simulators))
    for name in names:
        if not _NAME.match(name):
            raise ConfigurationError(f"simulator name {name!r} must match {_NAME.pattern}")
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    (root / "simulators").mkdir(exist_ok=True, mode=0o700)
    written: list[str] = []
    with _locked(root / ".lock"):
        ca_files = IssuedFiles("ca", root / "ca.key.pem", root / "ca.cert.pem")
        ca = _reuse(ca_files, issuer=None)
        if ca is None:
            ca = issue_certificate(
                None, "dvc-gateway development CA", ca=True, days=3650, key=generate_key()
            )
            _write_material(ca_files, ca)
            written.append(ca_files.cert_path.name)
        crl_path = root / "ca.crl.pem"
        if ca_files.cert_path.name in written or not _crl_current(crl_path, ca):
            _write_atomic(crl_path, issue_crl(ca).public_bytes(serialization.Encoding.PEM), 0o644)
            written.append(crl_path.name)

        gateway_files = IssuedFiles("gateway", root / "gateway.key.pem", root / "gateway.cert.pem")
        if _reuse(gateway_files, issuer=ca) is None:
            _write_material(
                gateway_files,
                issue_certificate(
                    ca,
                    "dvc-gateway signing (development)",
                    key_usage=_SERVICE_USAGE,
                    extended_key_usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
                ),
            )
            written.append(gateway_files.cert_path.name)

        issued: dict[str, IssuedFiles] = {}
        for existing in sorted((root / "simulators").glob("*.cert.pem")):
            sim = existing.name.removesuffix(".cert.pem")
            issued[sim] = _simulator_files(root, sim)
        for name in names:
            files = _simulator_files(root, name)
            issued[name] = files
            if _reuse(files, issuer=ca) is None:
                _write_material(
                    files,
                    issue_certificate(
                        ca,
                        f"{name} simulator (development)",
                        key_usage=_SERVICE_USAGE,
                        extended_key_usage=[
                            ExtendedKeyUsageOID.SERVER_AUTH,
                            ExtendedKeyUsageOID.CLIENT_AUTH,
                        ],
                        dns_names=["localhost", f"{name}.sandbox.localhost"],
                        ip_addresses=["127.0.0.1"],
                    ),
                )
                written.append(f"simulators/{files.cert_path.name}")
    return DevPki(
        directory=root,
        ca=ca_files,
        crl_path=crl_path,
        gateway=gateway_files,
        simulators=issued,
        written=tuple(written),
    )


def _simulator_files(root: Path, name: str) -> IssuedFiles:
    folder = root / "simulators"
    return IssuedFiles(name, folder / f"{name}.key.pem", folder / f"{name}.cert.pem")


def _reuse(files: IssuedFiles, *, issuer: KeyMaterial | None) -> KeyMaterial | None:
    """The existing material if it is still good, else None (it will be regenerated)."""
    if not (files.key_path.exists() and files.cert_path.exists()):
        return None
    try:
        material = files.load()
    except ConfigurationError:
        return None
    cert = material.certificate
    if cert.not_valid_after_utc - _now() < _RENEW_BEFORE:
        return None
    if issuer is not None:
        if cert.issuer != issuer.certificate.subject:
            return None
        try:
            cert.verify_directly_issued_by(issuer.certificate)
        except (ValueError, TypeError, InvalidSignature):
            return None
    return material


def _crl_current(path: Path, ca: KeyMaterial) -> bool:
    if not path.exists():
        return False
    try:
        crl = x509.load_pem_x509_crl(path.read_bytes())
    except ValueError:
        return False
    public = ca.key.public_key()
    if crl.issuer != ca.certificate.subject or not crl.is_signature_valid(public):
        return False
    return crl.next_update_utc is not None and crl.next_update_utc - _now() > dt.timedelta(days=7)


def _write_material(files: IssuedFiles, material: KeyMaterial) -> None:
    key_pem = material.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    chain_pem = b"".join(
        c.public_bytes(serialization.Encoding.PEM) for c in material.certificates()
    )
    _write_atomic(files.key_path, key_pem, 0o600)
    _write_atomic(files.cert_path, chain_pem, 0o644)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
