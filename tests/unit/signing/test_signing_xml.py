"""The hardened parser against the defusedxml attack files and our own limits."""

from __future__ import annotations

import select
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from lxml import etree

import signing.xml as signing_xml
from gateway.errors import XmlRejected
from signing.xml import hardened_parser, parse_xml, resolver_calls, zeep_settings

ATTACKS = ["cyclic", "dtd", "external", "external_file", "quadratic", "xmlbomb", "xmlbomb2"]
BENIGN = ["simple", "simple-ns"]


@pytest.fixture
def attacks_dir(shared_testdata: Path) -> Path:
    return shared_testdata / "xml-attacks"


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_files_are_refused_without_expansion_or_lookups(
    attacks_dir: Path, name: str
) -> None:
    data = (attacks_dir / f"{name}.xml").read_bytes()
    before = resolver_calls()
    with pytest.raises(XmlRejected) as info:
        parse_xml(data)
    assert "DOCTYPE" in info.value.detail
    assert info.value.status == 400
    # refused by the byte scan before libxml2 runs, so this alone proves little: what libxml2
    # does with real targets is test_bare_parser_reads_no_real_file_and_dials_no_real_socket
    assert resolver_calls() == before


@pytest.mark.parametrize("name", ATTACKS)
def test_bare_hardened_parser_never_expands_entities_or_resolves(
    attacks_dir: Path, name: str
) -> None:
    # code handing hardened_parser() to a library gets an inert tree or a syntax error,
    # never an expanded entity and never an external lookup
    data = (attacks_dir / f"{name}.xml").read_bytes()
    before = resolver_calls()
    try:
        root = etree.fromstring(data, parser=hardened_parser())
    except etree.XMLSyntaxError:
        pass
    else:
        text = "".join(root.itertext())
        assert "1234567890" not in text
        assert "BBBB" not in text
        assert "note" not in text.lower() or name == "dtd"
    assert resolver_calls() == before


@pytest.mark.parametrize("name", BENIGN)
def test_benign_files_parse(attacks_dir: Path, name: str) -> None:
    root = parse_xml((attacks_dir / f"{name}.xml").read_bytes())
    assert etree.QName(root).localname == "root"
    elements = root.findall("{*}element")
    assert [e.text for e in elements] == ["text", "text"]
    assert elements[1].tail is not None and elements[1].tail.startswith("tail")


def test_doctype_in_utf16_prolog_is_refused() -> None:
    doc = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>'
    with pytest.raises(XmlRejected, match="DOCTYPE"):
        parse_xml(doc.encode("utf-16"))


def test_doctype_text_inside_cdata_is_content_not_a_declaration() -> None:
    root = parse_xml(b"<page><![CDATA[<!DOCTYPE html><p>x</p>]]></page>")
    assert root.text == "<!DOCTYPE html><p>x</p>"


def test_size_limit_is_checked_before_parsing() -> None:
    with pytest.raises(XmlRejected, match="limit is 100"):
        parse_xml(b"<a>" + b"x" * 200 + b"</a>", max_bytes=100)


def test_depth_limit() -> None:
    def nested(depth: int) -> bytes:
        return b"<e>" * depth + b"</e>" * depth

    assert parse_xml(nested(10), max_depth=10).tag == "e"
    with pytest.raises(XmlRejected, match="deeper than 10"):
        parse_xml(nested(11), max_depth=10)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"<a>", "not well-formed"),
        (b"<a>&undefined;</a>", "not well-formed"),
        (b"<a></b>", "not well-formed"),
    ],
)
def test_malformed_documents_are_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(XmlRejected, match=message):
        parse_xml(data)


def test_text_is_not_accepted_in_place_of_bytes() -> None:
    with pytest.raises(TypeError):
        parse_xml("<a/>")  # type: ignore[arg-type]


def test_zeep_settings_forbid_dtd_and_entities(attacks_dir: Path) -> None:
    from zeep.exceptions import DTDForbidden
    from zeep.loader import parse_xml as zeep_parse_xml

    settings = zeep_settings()
    assert settings.forbid_dtd and settings.forbid_entities and settings.forbid_external
    assert not settings.xml_huge_tree
    with pytest.raises(DTDForbidden):
        zeep_parse_xml((attacks_dir / "xmlbomb.xml").read_bytes(), None, settings=settings)


# ----------------------------------------------------------------- real targets, bare parser
#
# parse_xml refuses any DOCTYPE in a byte scan before libxml2 runs, and the attack files point
# at paths and hosts that do not exist, so neither proves what libxml2 itself does. These
# tests give the bare parser (the one parse_xml uses) entities and DTDs that point at a REAL
# file holding a marker and at a REAL listening socket, and prove nothing was read or dialled.

MARKER = "MARKER-7f3a9c-secret-file-content"


@pytest.fixture
def secret_files(tmp_path: Path) -> tuple[Path, Path]:
    secret = tmp_path / "secret.txt"
    secret.write_text(MARKER, encoding="utf-8")
    dtd = tmp_path / "external.dtd"
    dtd.write_text(f'<!ENTITY fromdtd "{MARKER}">', encoding="utf-8")
    return secret, dtd


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    try:
        yield server
    finally:
        server.close()


def _connected(server: socket.socket, wait: float = 0.2) -> bool:
    """Whether anything connected (the kernel completes a connect before accept())."""
    readable, _, _ = select.select([server], [], [], wait)
    if readable:
        server.accept()[0].close()
    return bool(readable)


def _entity_documents(secret: Path, dtd: Path, port: int) -> dict[str, str]:
    url = f"http://127.0.0.1:{port}"
    return {
        "file entity": f'<!DOCTYPE r [<!ENTITY f SYSTEM "{secret.as_uri()}">]><r>&f;</r>',
        "network entity": f'<!DOCTYPE r [<!ENTITY n SYSTEM "{url}/n">]><r>&n;</r>',
        "parameter entity": f'<!DOCTYPE r [<!ENTITY % p SYSTEM "{url}/p.dtd"> %p;]><r/>',
        "external DTD over http": f'<!DOCTYPE r SYSTEM "{url}/d.dtd"><r>&fromdtd;</r>',
        "external DTD file": f'<!DOCTYPE r SYSTEM "{dtd.as_uri()}"><r>&fromdtd;</r>',
        "entity in attribute": (
            f'<!DOCTYPE r [<!ENTITY f SYSTEM "{secret.as_uri()}">]><r a="&f;"/>'
        ),
    }


def _parse_text(data: bytes, parser: etree.XMLParser) -> str:
    """Everything the parsed tree exposes: serialisation, text and attribute values."""
    try:
        root = etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as exc:  # refusing is fine; the message must not leak either
        return str(exc)
    attributes = " ".join(v for e in root.iter() for v in e.attrib.values())
    return etree.tostring(root, encoding="unicode") + "".join(root.itertext()) + attributes


PARSERS: dict[str, Callable[[], etree.XMLParser]] = {
    "hardened_parser()": hardened_parser,
    "parse_xml's thread parser": signing_xml._thread_parser,
}


@pytest.mark.parametrize("parser_name", PARSERS)
def test_bare_parser_reads_no_real_file_and_dials_no_real_socket(
    secret_files: tuple[Path, Path], listener: socket.socket, parser_name: str
) -> None:
    secret, dtd = secret_files
    port = listener.getsockname()[1]
    for case, doc in _entity_documents(secret, dtd, port).items():
        before = resolver_calls()
        text = _parse_text(doc.encode(), PARSERS[parser_name]())
        assert MARKER not in text, case
        assert not _connected(listener, wait=0.05), case
        assert resolver_calls() == before, case
    # the probes can see what they look for: an open parser does read the file, and a
    # connection to the listener is noticed
    permissive = etree.XMLParser(resolve_entities=True, load_dtd=True, no_network=False)
    leaked = _parse_text(_entity_documents(secret, dtd, port)["file entity"].encode(), permissive)
    assert MARKER in leaked
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        assert _connected(listener)
