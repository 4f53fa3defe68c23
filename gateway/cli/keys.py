"""``gateway keys dev-pki | inspect``: the development PKI and the certificates in use.

``dev-pki`` creates, idempotently, a development CA, the gateway's signing certificate and one
certificate per simulator (every installed adapter unless ``--simulator`` names them) under
``var/pki`` or the folder given; the sandbox uses them. ``inspect`` lists the certificates the
gateway relies on (signing, trust anchors, pinned peers, simulators) with the days left, and
exits 1 when one of them has expired.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from cryptography import x509

from gateway.adapters import discover_adapters
from gateway.cli.common import EXIT_FAILED, EXIT_USAGE, config_option, fail, settings_from_context
from gateway.errors import ConfigurationError
from gateway.settings import Settings
from signing.keys import ensure_dev_pki, load_certificates, load_signing_material
from signing.trust import CertificateStatus, TrustStore, certificate_status

__all__ = ["keys"]


@click.group()
def keys() -> None:
    """Keys and certificates: the development PKI, what is in use and when it expires."""


@keys.command("dev-pki")
@config_option
@click.argument("directory", required=False, type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--simulator",
    "simulators",
    multiple=True,
    help="A simulator to issue a certificate for; repeatable (default: every installed adapter).",
)
@click.pass_context
def dev_pki(
    ctx: click.Context, config: Path | None, directory: Path | None, simulators: tuple[str, ...]
) -> None:
    """Create what is missing of the development PKI in DIRECTORY (default: signing.dev_pki_dir).

    Never for production: the CA key sits next to the certificates it signs.
    """
    settings = settings_from_context(ctx, config)
    if settings.environment == "production":
        fail("dev-pki is for sandbox and development only (environment = production)", EXIT_USAGE)
    target = directory or settings.signing.dev_pki_dir
    names = list(simulators) or _installed_adapters(settings)
    try:
        pki = ensure_dev_pki(target, names)
    except ConfigurationError as exc:
        fail(exc.detail, EXIT_USAGE)
    for name in pki.written:
        click.echo(f"wrote {target / name}")
    if not pki.written:
        click.echo(f"{target}: up to date")
    click.echo(f"CA certificate (trust it in test peers): {pki.ca.cert_path}")


def _installed_adapters(settings: Settings) -> list[str]:
    try:
        return sorted(discover_adapters(settings.extra_adapters))
    except ConfigurationError as exc:
        fail(exc.detail, EXIT_USAGE)


@keys.command("inspect")
@config_option
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path, exists=True))
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of a table.")
@click.pass_context
def inspect(
    ctx: click.Context, config: Path | None, paths: tuple[Path, ...], as_json: bool
) -> None:
    """List certificates with their days to expiry.

    Without PATHS: the configured signing certificate, trust anchors, peer pins and the
    development PKI's simulators. With PATHS: the certificates in those files or folders.
    """
    settings = settings_from_context(ctx, config)
    # the same threshold as the start-up and daily checks' warning
    warning_days = settings.signing.expiry_warning_days
    statuses: list[CertificateStatus] = []
    try:
        if paths:
            for path in paths:
                for cert in _certificates_under(path):
                    statuses.append(certificate_status(cert, role="file", source=str(path)))
        else:
            statuses = _configured(settings)
    except ConfigurationError as exc:
        fail(exc.detail, EXIT_FAILED)
    if as_json:
        entries = [_as_dict(s, warning_days) for s in statuses]
        click.echo(json.dumps(entries, indent=2, ensure_ascii=False))
    else:
        _table(statuses, warning_days)
    if any(s.days_left < 0 for s in statuses):
        raise SystemExit(EXIT_FAILED)


def _certificates_under(path: Path) -> list[x509.Certificate]:
    if path.is_dir():
        found: list[x509.Certificate] = []
        for child in sorted(path.rglob("*")):
            if child.suffix.lower() in {".pem", ".crt", ".cer", ".der"} and "key" not in child.name:
                found.extend(load_certificates(child))
        return found
    return list(load_certificates(path))


def _configured(settings: Settings) -> list[CertificateStatus]:
    cfg = settings.signing
    out: list[CertificateStatus] = []
    key_present = cfg.pkcs12_path is not None or (
        cfg.key_path is not None and cfg.key_path.exists()
    )
    if key_present:
        material = load_signing_material(cfg)
        source = str(cfg.pkcs12_path or cfg.cert_path)
        out += [
            certificate_status(c, role="signing", source=source) for c in material.certificates()
        ]
    for anchor in TrustStore.from_settings(cfg).anchors:
        out.append(certificate_status(anchor, role="trust-anchor", source="signing.trust_paths"))
    for peer, peer_cfg in sorted(cfg.peers.items()):
        for path in peer_cfg.pinned_certificates:
            out += [
                certificate_status(c, role=f"peer:{peer}", source=str(path))
                for c in load_certificates(path)
            ]
    simulators = cfg.dev_pki_dir / "simulators"
    if simulators.is_dir():
        for path in sorted(simulators.glob("*.cert.pem")):
            name = path.name.removesuffix(".cert.pem")
            cert = load_certificates(path)[0]
            out.append(certificate_status(cert, role=f"simulator:{name}", source=str(path)))
    return out


def _state(status: CertificateStatus, warning_days: int) -> str:
    if status.days_left < 0:
        return "EXPIRED"
    if status.days_left < warning_days:
        return "expiring"
    return "ok"


def _as_dict(status: CertificateStatus, warning_days: int) -> dict[str, object]:
    return {
        "role": status.role,
        "source": status.source,
        "days_left": round(status.days_left, 1),
        "state": _state(status, warning_days),
        **status.info.as_dict(),
    }


def _table(statuses: list[CertificateStatus], warning_days: int) -> None:
    if not statuses:
        click.echo("no certificates found")
        return
    rows = [
        (
            s.role,
            s.info.subject,
            s.info.serial,
            s.info.not_after.date().isoformat(),
            f"{s.days_left:.0f}",
            _state(s, warning_days),
        )
        for s in statuses
    ]
    header = ("ROLE", "SUBJECT", "SERIAL", "NOT AFTER", "DAYS", "STATE")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
