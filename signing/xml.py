"""The one hardened XML parser of the project (signing, zeep, callbacks).

Policy, strictest first:

* no document type declaration at all (``<!DOCTYPE``): that refuses every entity trick
  (billion laughs, quadratic blow-up, XXE over http or file) and external DTDs in one rule;
* libxml2 never resolves entities, never loads a DTD, never touches the network, and any
  resolver call it might still make is answered with nothing (``_DenyAllResolver``);
* a size limit before parsing and a depth limit after it;
* one error type, :class:`gateway.errors.XmlRejected`, saying which rule was hit.

``parse_xml`` is the entry point; ``hardened_parser`` gives the bare lxml parser for code that
must hand a parser to a library (signxml, lxml's own helpers), ``zeep_settings`` the equivalent
zeep configuration.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from lxml import etree

from gateway.errors import XmlRejected

if TYPE_CHECKING:
    import zeep

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "hardened_parser",
    "parse_xml",
    "resolver_calls",
    "zeep_settings",
]

#: 10 MiB, the HTTP body limit's default; callers pass their own limit where it differs
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
#: far deeper than any real exchange document, far below what could exhaust a stack
DEFAULT_MAX_DEPTH = 128

_BOM = b"\xef\xbb\xbf"
_SPACE = re.compile(rb"[ \t\r\n]+")


def _prolog_has_doctype(data: bytes) -> bool:
    """Whether the prolog (BOM, XML declaration, comments, PIs, space) holds a DOCTYPE.

    Only the prolog is looked at, so "<!DOCTYPE" inside CDATA or a comment of the body is not
    mistaken for a declaration; the scan stops at the first element, so its cost does not
    grow with the document. ASCII-compatible encodings only: the parsed document information
    is checked as well, which covers UTF-16/32.
    """
    pos = len(_BOM) if data.startswith(_BOM) else 0
    end = len(data)
    while pos < end:
        space = _SPACE.match(data, pos)
        if space is not None:
            pos = space.end()
        elif data.startswith(b"<?", pos):
            close = data.find(b"?>", pos + 2)
            if close < 0:
                return False
            pos = close + 2
        elif data.startswith(b"<!--", pos):
            close = data.find(b"-->", pos + 4)
            if close < 0:
                return False
            pos = close + 3
        else:
            return data.startswith(b"<!DOCTYPE", pos)
    return False


class _DenyAllResolver(etree.Resolver):
    """Answers every external lookup libxml2 might attempt with an empty document.

    With ``load_dtd=False``, ``resolve_entities=False`` and ``no_network=True`` libxml2 should
    never ask; this is the second wall, and the counter lets tests prove it was never asked.
    """

    # lxml-stubs lag behind lxml: resolve() does receive the context argument
    def resolve(self, system_url: str, public_id: str, context: Any) -> Any:  # type: ignore[override]
        _count_resolver_call()
        return self.resolve_string("", context)  # type: ignore[call-arg]


_resolver_lock = threading.Lock()
_resolver_calls = 0


def _count_resolver_call() -> None:
    global _resolver_calls
    with _resolver_lock:
        _resolver_calls += 1


def resolver_calls() -> int:
    """How many times libxml2 asked for an external resource since start (should stay 0)."""
    return _resolver_calls


def hardened_parser(*, remove_comments: bool = False) -> etree.XMLParser:
    """A new lxml parser that never loads DTDs, resolves entities or reaches the network.

    lxml parsers are not meant to be shared between threads; create one per use or per thread
    (``parse_xml`` keeps one per thread). A DOCTYPE still parses with this parser alone (libxml2
    keeps it inert), so code that bypasses ``parse_xml`` must check ``docinfo`` itself, as
    signxml does for the trees it parses.
    """
    parser = etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        dtd_validation=False,
        attribute_defaults=False,
        no_network=True,
        huge_tree=False,
        remove_comments=remove_comments,
        remove_pis=False,
        strip_cdata=False,
        recover=False,
    )
    parser.resolvers.add(_DenyAllResolver())
    return parser


_local = threading.local()


def _thread_parser() -> etree.XMLParser:
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = hardened_parser()
        _local.parser = parser
    return parser


@lru_cache(maxsize=16)
def _too_deep(max_depth: int) -> etree.XPath:
    # "/*/*/.../*" with max_depth + 1 steps selects any element nested deeper than allowed;
    # libxml2 evaluates it in C, far cheaper than walking the tree from Python
    return etree.XPath("boolean(" + "/*" * (max_depth + 1) + ")")


def parse_xml(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> etree._Element:
    """Parse ``data`` under the hardened policy and return the root element.

    Raises :class:`XmlRejected` naming the rule: too large, DOCTYPE present, too deep, or not
    well-formed (libxml2's own message, which names positions and tags, never content).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("parse_xml takes bytes; encode text first")
    data = bytes(data)
    if len(data) > max_bytes:
        raise XmlRejected(f"document is {len(data)} bytes, the limit is {max_bytes}")
    if not data.strip():
        raise XmlRejected("document is empty")
    if _prolog_has_doctype(data):
        raise XmlRejected("document type declarations (DOCTYPE, DTD, entities) are refused")
    try:
        root = etree.fromstring(data, parser=_thread_parser())
    except etree.XMLSyntaxError as exc:
        raise XmlRejected(f"not well-formed XML: {_syntax_message(exc)}") from None
    # the byte scan misses prologs in UTF-16/32; the parsed document information does not
    docinfo: Any = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise XmlRejected("document type declarations (DOCTYPE, DTD, entities) are refused")
    if _too_deep(max_depth)(root):
        raise XmlRejected(f"document nests elements deeper than {max_depth} levels")
    return root


def _syntax_message(exc: etree.XMLSyntaxError) -> str:
    msg = str(exc.msg or exc).strip()
    # drop lxml's trailing "(<string>, line N)" duplicate of the position
    return re.sub(r"\s*\(<string>, line \d+\)$", "", msg)[:300]


def zeep_settings(*, strict: bool = True) -> zeep.Settings:
    """zeep settings with the same policy: no DTD, no entities, no external entity access."""
    import zeep

    return zeep.Settings(
        strict=strict,
        xml_huge_tree=False,
        forbid_dtd=True,
        forbid_entities=True,
        forbid_external=True,
    )
