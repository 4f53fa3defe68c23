"""``gateway sign FILE`` and ``gateway verify FILE``: the signature API, offline.

Both use the configuration's ``[signing]`` section (the gateway's key, the trust store, the
peers), exactly as the HTTP routes do. ``verify`` exits 0 when the signature is valid and 1
with the problem type and reason when it is refused.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from gateway.cli.common import EXIT_FAILED, EXIT_USAGE, config_option, fail, settings_from_context
from gateway.errors import ConfigurationError, GatewayError
from gateway.settings import Settings
from signing.keys import load_key_material, load_pkcs12, read_password
from signing.service import SigningService
from signing.sign import XmlSigner

__all__ = ["sign", "verify"]


def _read(path: Path) -> bytes:
    if str(path) == "-":
        return sys.stdin.buffer.read()
    try:
        return path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", EXIT_USAGE)


@click.command("sign")
@config_option
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True))
@click.option("--out", "out", type=click.Path(path_type=Path, dir_okay=False), help="Write here.")
@click.option("--detached", is_flag=True, help="Write only the ds:Signature (detached).")
@click.option("--reference-id", help="Sign only the element with this Id (enveloped).")
@click.option("--key", "key_path", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--cert", "cert_path", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--pkcs12", "pkcs12_path", type=click.Path(path_type=Path, dir_okay=False, exists=True)
)
@click.option("--password-env", help="Environment variable holding the key's password.")
@click.option("--password-file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--no-chain",
    is_flag=True,
    help="Put only the signing certificate in KeyInfo, not its intermediates.",
)
@click.pass_context
def sign(
    ctx: click.Context,
    config: Path | None,
    file: Path,
    out: Path | None,
    detached: bool,
    reference_id: str | None,
    key_path: Path | None,
    cert_path: Path | None,
    pkcs12_path: Path | None,
    password_env: str | None,
    password_file: Path | None,
    no_chain: bool,
) -> None:
    """Sign FILE ("-" for standard input) with the gateway's key, or the one given."""
    settings = settings_from_context(ctx, config)
    if no_chain:
        signing = settings.signing.model_copy(update={"include_chain": False})
        settings = settings.model_copy(update={"signing": signing})
    data = _read(file)
    try:
        if pkcs12_path or key_path:
            password = read_password(env=password_env, file=password_file)
            if pkcs12_path:
                material = load_pkcs12(pkcs12_path, password)
            elif key_path is not None and cert_path is not None:
                material = load_key_material(key_path, cert_path, password)
            else:
                fail("--key needs --cert", EXIT_USAGE)
            signer = XmlSigner(
                material,
                include_chain=settings.signing.include_chain,
                max_bytes=settings.server.max_body_bytes,
            )
        else:
            signer = _service(settings).signer()
        signed = signer.sign(
            data, mode="detached" if detached else "enveloped", reference_id=reference_id
        )
    except ConfigurationError as exc:
        fail(exc.detail, EXIT_USAGE)
    except GatewayError as exc:
        fail(f"refused ({exc.slug}): {exc.detail}", EXIT_FAILED)
    if out is None:
        sys.stdout.buffer.write(signed.xml)
    else:
        out.write_bytes(signed.xml)
        click.echo(
            f"signed by {signed.signer.subject} ({signed.signature_method}) -> {out}", err=True
        )


@click.command("verify")
@config_option
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True))
@click.option("--peer", help="Apply this configured peer's policy (pins, HMAC key, SHA-1).")
@click.option(
    "--detached-content",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="The content a detached signature signs.",
)
@click.option("--content", "show_content", is_flag=True, help="Print the signed content only.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def verify(
    ctx: click.Context,
    config: Path | None,
    file: Path,
    peer: str | None,
    detached_content: Path | None,
    show_content: bool,
    as_json: bool,
) -> None:
    """Verify FILE's XML signature with the configured trust store and peers."""
    settings = settings_from_context(ctx, config)
    data = _read(file)
    content = detached_content.read_bytes() if detached_content else None
    try:
        result = _service(settings).verifier(peer).verify(data, detached_content=content)
    except ConfigurationError as exc:
        fail(exc.detail, EXIT_USAGE)
    except GatewayError as exc:
        if as_json:
            click.echo(json.dumps(exc.problem(), indent=2, ensure_ascii=False))
            raise SystemExit(EXIT_FAILED) from None
        fail(f"refused ({exc.slug}): {exc.detail}", EXIT_FAILED)
    if show_content:
        sys.stdout.buffer.write(result.signed_content)
        return
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
        return
    body = result.as_dict()
    click.echo(f"valid: {result.chain_status}")
    if result.signer is not None:
        click.echo(f"signer: {result.signer.subject}")
        click.echo(f"serial: {result.signer.serial}")
        click.echo(f"issuer: {result.signer.issuer}")
    algorithms = body["algorithms"]
    click.echo(
        f"algorithms: {algorithms['signature']}, digests {', '.join(algorithms['digests'])}, "
        f"{algorithms['canonicalization']}"
    )
    click.echo(f"signed content sha256: {result.content_sha256}")


def _service(settings: Settings) -> SigningService:
    return SigningService(settings.signing, max_bytes=settings.server.max_body_bytes)
