"""ExecutionBroker v1.0 documents as XML, and back.

The v1.0 schema offers ``application/xml`` for every request and answer but defines no XML schema;
its only guide is the OpenAPI ``xml`` objects. This module is the mapping this project uses, written
from those objects and the OpenAPI rules, so that a client can send and ask for XML and get the same
document as in JSON:

- root elements: ``offers-request`` (``ExecutionRequest``), ``offers-response`` (``OfferSetResponse``),
  ``execution`` (a session), ``update`` (an update; the schema names none), ``error`` (an error answer);
- ``kind`` is an attribute (``xml: {attribute: true}`` on components, options and updates), except in a
  message, where it is an element as the schema has it;
- every other property is a child element of the same name; ``null`` is left out; booleans are
  ``true``/``false``;
- arrays are not wrapped (the OpenAPI default): each item is an element named after the property, so
  two data resources are two ``<data>`` elements; the exceptions the schema gives are ``offers``
  (wrapped, items ``<execution>``) and ``messages`` (items ``<message>``);
- maps of names to values (``values`` of a message, a container's ``environment``) are
  ``<entry name="...">value</entry>`` elements, since their keys need not be XML names; so is any
  other property whose name cannot be an element name (its value written as text);
- characters XML cannot carry (control characters) are written as U+FFFD, so the output is always
  well-formed.

No namespace is used: the schema declares none. The reader takes UTF-8 only and refuses any DTD or
entity declaration before parsing (so no XXE and no entity expansion; only the five predefined
entities and character references remain), does not touch the network, and returns plain
dictionaries of strings that the pydantic models then validate and convert, exactly as for JSON and
YAML bodies. It uses the standard library's ElementTree, so the base install needs no XML package.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from xml.etree import ElementTree as etree

from .errors import FieldError, InvalidRequest

__all__ = [
    "ARRAY_NAMES",
    "ROOT_ERROR",
    "ROOT_OFFERSET",
    "ROOT_REQUEST",
    "ROOT_SESSION",
    "ROOT_UPDATE",
    "from_xml",
    "to_xml",
]

ROOT_REQUEST = "offers-request"
ROOT_OFFERSET = "offers-response"
ROOT_SESSION = "execution"
ROOT_UPDATE = "update"
ROOT_ERROR = "error"

#: Properties that are arrays in ExecutionBroker v1.0 (and this project's ``results`` and
#: ``arguments``): the reader makes a list of them even when only one element is there.
ARRAY_NAMES = frozenset(
    {
        "options",
        "storage",
        "data",
        "volumes",
        "connectors",
        "results",
        "command",
        "locations",
        "ports",
        "addresses",
        "replicas",
        "costs",
        "metrics",
        "arguments",
        "values",
    }
)
#: Arrays with their own item names: property -> item element.
_ITEM_NAMES = {"messages": "message"}
_WRAPPED = {"offers": "execution"}
_MAPS = frozenset({"values", "environment"})
_ENTRY = "entry"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]*$")
#: Characters XML 1.0 cannot carry at all; a string holding one is written with U+FFFD in its place.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
#: Deeper than any ExecutionBroker document: more is refused rather than read.
MAX_DEPTH = 64
_FORBIDDEN = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


# ------------------------------------------------------------------------------------ writing


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return _NOT_XML.sub("\ufffd", str(value))


def _entry(element: etree.Element, key: Any, item: Any) -> None:
    entry = etree.SubElement(element, _ENTRY, name=_text(key))
    entry.text = _text(item)


def _fill(element: etree.Element, value: Any, name: str) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if item is None:
                continue
            if name in _MAPS or not (isinstance(key, str) and _NAME.match(key)):
                _entry(element, key, item)  # a map's key, or a name XML cannot have as an element
            else:
                _add(element, key, item, in_message=name == "message")
    else:
        element.text = _text(value)


def _add(parent: etree.Element, key: str, value: Any, *, in_message: bool = False) -> None:
    if value is None:
        return
    if key == "kind" and not in_message and not isinstance(value, (Mapping, list)):
        parent.set("kind", _text(value))
        return
    if isinstance(value, list):
        if key in _WRAPPED:
            wrapper = etree.SubElement(parent, key)
            for item in value:
                _fill(etree.SubElement(wrapper, _WRAPPED[key]), item, _WRAPPED[key])
            return
        item_name = _ITEM_NAMES.get(key, key)
        for item in value:
            if item is not None:
                _fill(etree.SubElement(parent, item_name), item, item_name)
        return
    _fill(etree.SubElement(parent, key), value, key)


def to_xml(document: Mapping[str, Any], root: str) -> bytes:
    """``document`` (a JSON-ready dict) as an XML document with the root element ``root``."""
    element = etree.Element(root)
    _fill(element, document, root)
    etree.indent(element)
    return etree.tostring(element, xml_declaration=True, encoding="UTF-8") + b"\n"


# ------------------------------------------------------------------------------------ reading


def _value(element: etree.Element, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise InvalidRequest([FieldError("", f"the XML is nested deeper than {MAX_DEPTH} levels")])
    children = [child for child in element if isinstance(child.tag, str)]
    attributes = dict(element.attrib)
    if not children:
        text = (element.text or "").strip()
        if attributes:
            return {**attributes, **({"value": text} if text else {})}
        return text
    if all(child.tag == _ENTRY for child in children) and not attributes:
        return {child.get("name", ""): (child.text or "").strip() for child in children}
    out: dict[str, Any] = dict(attributes)
    for child in children:
        tag = child.tag
        if tag == _ENTRY and child.get("name") is not None:
            out[child.get("name")] = (child.text or "").strip()
            continue
        if tag in _WRAPPED:
            out[tag] = [_value(item, depth + 2) for item in child if isinstance(item.tag, str)]
            continue
        # an item element names its array (``<message>`` -> ``messages``), except inside an item of
        # that name, where it is the item's own property (a message's ``message`` text)
        key = tag if tag == element.tag else next((name for name, item in _ITEM_NAMES.items() if item == tag), tag)
        value = _value(child, depth + 1)
        if key in _MAPS and isinstance(value, dict) and all(item.tag == _ENTRY for item in child):
            out[key] = value
        elif key in ARRAY_NAMES or key in _ITEM_NAMES:
            out.setdefault(key, []).append(value)
        elif key in out:
            previous = out[key]
            out[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[key] = value
    return out


def from_xml(data: bytes | str, *, what: str = "request") -> tuple[str, dict[str, Any]]:
    """The root element's name and the document as a dictionary (values are strings, to be
    validated by the models). Raises :class:`InvalidRequest` for anything that is not plain,
    well-formed XML."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise InvalidRequest([FieldError("", "the XML body is not UTF-8 text")], what) from None
    if _FORBIDDEN.search(text):
        raise InvalidRequest([FieldError("", "XML with a DOCTYPE or ENTITY declaration is not accepted")], what)
    try:
        root = etree.fromstring(text)
    except etree.ParseError as error:
        raise InvalidRequest([FieldError("", f"the body is not well-formed XML: {error}")], what) from None
    document = _value(root)
    if not isinstance(document, dict):
        document = {}
    return root.tag.rsplit("}", 1)[-1], document
