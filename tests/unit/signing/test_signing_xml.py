"""The hardened parser against the defusedxml attack files and our own limits."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

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
