"""Step 2: the shopping list, the data an executable needs and where it is.

The seeds: "The combination of required=true and a null location indicates that the user needs to
supply this information before they can run the task ... The ESAP portal can use the data-resources
to create a shopping list for the user, showing them what data they need to find". Each item shows
whether it is located; the user types a URL or path, or picks a candidate from the *basket* (data
items passed in from Python, such as the rows of a TAP or ObsCore query). While a required item has
no location, :attr:`ShoppingList.complete` is False and the list says which items are missing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import ipywidgets as widgets
from pydantic import TypeAdapter, ValidationError
from traitlets import Bool, Instance, List, observe

from ..html import data_status, esc
from ..model import DataResource, ExecutionRequest
from ..model.components import DataResourceModel
from ..model.errors import from_validation_error
from ..model.kinds import kind_uri
from .common import compact, field_message, status, status_widget

__all__ = ["BasketItem", "ShoppingList", "basket_item", "local_path"]

_DATA = TypeAdapter(DataResourceModel)
_SIMPLE = kind_uri("data", "simple-data-resource")

#: Keys that say where a basket item is, most specific first (ObsCore's access_url, DataLink ...).
_LOCATION_KEYS = ("url", "location", "access_url", "accessURL", "href", "dataurl", "path")
#: Keys that name a basket item.
_NAME_KEYS = ("name", "title", "obs_publisher_did", "obs_id", "id", "ivoid")
#: Kind-specific fields dropped when a typed location turns an item into a plain URL resource.
_KIND_FIELDS = ("rucio", "ivoa", "skao", "bucket", "object", "endpoint", "template", "location")


@dataclass(frozen=True)
class BasketItem:
    """A candidate data item: a label for the menu and the data resource document it stands for."""

    label: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def location(self) -> str | None:
        resource = _DATA.validate_python(self.data)
        return resource.location_hint


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).strip()
    return text or None


def basket_item(item: Any) -> BasketItem:
    """Read one basket entry: a URL or path, a data resource, or a mapping (dict, query-result row).

    Mappings are read by their keys: ``url``/``location``/``access_url``/``path`` for where, and
    ``name``/``title``/``obs_publisher_did``/``obs_id`` for the label; a mapping with a ``kind`` is
    read as an ExecutionBroker data resource (S3, Rucio, IVOA ...). Raises ``ValueError`` saying what
    is missing.
    """
    if isinstance(item, DataResource):
        data = item.to_wire()
        return BasketItem(item.name or item.location_hint or "data item", data)
    if isinstance(item, (str, os.PathLike)):
        location = _text(os.fspath(item))
        if not location:
            raise ValueError("an empty string is not a location")
        return BasketItem(location, {"kind": _SIMPLE, "location": location})
    if isinstance(item, Mapping) or (hasattr(item, "keys") and hasattr(item, "__getitem__")):
        values = {str(key): item[key] for key in item.keys()}  # noqa: SIM118 - a query row iterates over its values
        label = next((_text(values[key]) for key in _NAME_KEYS if _text(values.get(key))), None)
        if values.get("kind"):
            try:
                resource = _DATA.validate_python(values)
            except ValidationError as error:
                raise ValueError(str(from_validation_error(error, what="basket item"))) from None
            return BasketItem(label or resource.name or resource.location_hint or "data item", resource.to_wire())
        location = next((_text(values[key]) for key in _LOCATION_KEYS if _text(values.get(key))), None)
        if location is None:
            raise ValueError(f"it has no location (give one of: {', '.join(_LOCATION_KEYS)})")
        data: dict[str, Any] = {"kind": _SIMPLE, "location": location}
        if label:
            data["meta"] = {"name": label}
        return BasketItem(label or location, data)
    raise ValueError(f"expected a URL, a path, a dict or a data resource, got {type(item).__name__}")


def local_path(location: str, base: str | os.PathLike[str] | None = None) -> tuple[str, str]:
    """A relative path as the notebook means it: resolved against the kernel's working folder (the
    notebook's folder in JupyterLab), not the server's, before any platform sees it.

    Returns the location to send (URLs and absolute paths unchanged) and a warning for a local path
    that does not exist here (a data problem, said as one)."""
    text = location.strip()
    if not text or urlsplit(text).scheme or text.startswith("//"):
        return text, ""
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = Path(base or os.getcwd()) / path
    path = Path(os.path.normpath(path))
    if not path.exists():
        return str(path), f"no such file here: {path} (relative paths are read from the notebook's folder)"
    return str(path), ""


def _label(item: DataResource, index: int) -> str:
    return item.name or item.uuid or f"data item {index + 1}"


class _Row(widgets.VBox):
    """One data item: name, description and status; a location box; a basket menu."""

    def __init__(self, index: int, owner: ShoppingList) -> None:
        self.index = index
        self.owner = owner
        self.title = widgets.HTML(layout=widgets.Layout(flex="1 1 auto"))
        self.state = widgets.HTML(layout=widgets.Layout(flex="0 0 auto"))
        self.location = widgets.Text(
            placeholder="URL or path of the data",
            layout=widgets.Layout(flex="1 1 auto", min_width="12em"),
            continuous_update=False,
        )
        self.basket = widgets.Dropdown(
            options=[("pick from basket ...", -1)], value=-1, layout=widgets.Layout(width="14em")
        )
        self.message = widgets.HTML()
        self._syncing = False
        self.location.observe(self._typed, "value")
        self.basket.observe(self._picked, "value")
        super().__init__(
            [
                widgets.HBox([self.title, self.state], layout=widgets.Layout(align_items="baseline")),
                widgets.HBox([self.location, self.basket], layout=widgets.Layout(flex_flow="row wrap")),
                self.message,
            ],
            layout=widgets.Layout(border_bottom="1px solid #d0d7de", padding="2px 0 4px 0", flex="0 0 auto"),
        )

    def show(self, item: DataResource, basket: list[BasketItem]) -> None:
        """Bring the row up to date with ``item`` without treating that as the user's input."""
        self._syncing = True
        try:
            self.title.value = compact(
                f"<strong>{esc(_label(item, self.index))}</strong>"
                + (f' <span style="font-size:0.92em">{esc(item.description)}</span>' if item.description else "")
            )
            self.state.value = data_status(item)
            hint = item.location_hint or ""
            if self.location.value != hint:
                self.location.value = hint
            self.basket.options = [("pick from basket ...", -1)] + [
                (entry.label, number) for number, entry in enumerate(basket)
            ]
            self.basket.value = -1
            self.basket.layout.display = "" if basket else "none"
        finally:
            self._syncing = False

    def _typed(self, change: dict[str, Any]) -> None:
        if not self._syncing:
            self.owner.set_location(self.index, change["new"])

    def _picked(self, change: dict[str, Any]) -> None:
        if not self._syncing and change["new"] is not None and change["new"] >= 0:
            self.owner.pick(self.index, change["new"])


class ShoppingList(widgets.VBox):
    """The data a request needs; :attr:`request` is kept up to date as the user fills it in."""

    request = Instance(ExecutionRequest, allow_none=True, help="The request, with the locations given so far")
    basket = List(help="Candidate data items: URLs, paths, dicts with name/url, data resources, query rows")
    complete = Bool(False, help="True when every required data item has a location")
    missing = List(help="Names of the required data items that still have no location")

    def __init__(self, request: ExecutionRequest | None = None, basket: list[Any] | None = None, **kwargs: Any) -> None:
        self.summary = status_widget()
        self.basket_status = widgets.HTML()
        self.rows_box = widgets.VBox()
        self.rows: list[_Row] = []
        self._basket_items: list[BasketItem] = []
        self._internal = False
        super().__init__([self.summary, self.rows_box, self.basket_status], **kwargs)
        if basket:
            self.basket = list(basket)
        else:
            self._basket_changed({"new": []})
        if request is not None:
            self.request = request
        else:
            self._rebuild()

    # --------------------------------------------------------------------------------- actions

    def set_location(self, key: int | str, location: str) -> None:
        """Give the data item (by position or name) a URL or path; an empty text clears it."""
        index = self._index(key)
        text = (location or "").strip()
        row = self.rows[index]
        if any(ord(char) < 32 for char in text):
            row.message.value = field_message("a location is one line of text: a URL or a path")
            return
        row.message.value = ""
        old = self.request.data[index]
        document = old.to_wire()
        if text and document.get("kind") not in (_SIMPLE,) and not hasattr(old, "location"):
            for name in _KIND_FIELDS:
                document.pop(name, None)
            document["kind"] = _SIMPLE
        note = ""
        if text:
            text, note = local_path(text)
            document["location"] = text
        else:
            document.pop("location", None)
        self._replace(index, document)
        if note:
            row.message.value = field_message(note)

    def pick(self, key: int | str, choice: int) -> None:
        """Use basket entry number ``choice`` for the data item ``key`` (position or name)."""
        index = self._index(key)
        if not 0 <= choice < len(self._basket_items):
            raise IndexError(f"the basket has {len(self._basket_items)} item(s); there is no item {choice}")
        old = self.request.data[index]
        document = dict(self._basket_items[choice].data)
        note = ""
        if isinstance(document.get("location"), str):
            document["location"], note = local_path(document["location"])
        meta = dict(document.get("meta") or {})
        # The item keeps its identity (volumes refer to its uuid) and its name on the list.
        for key_name, value in (("uuid", old.uuid), ("name", old.name), ("description", old.description)):
            if value:
                meta[key_name] = value
        document["meta"] = meta
        if old.required is not None:
            document["required"] = old.required
        self._replace(index, document)
        if note:
            self.rows[index].message.value = field_message(note)

    @property
    def basket_items(self) -> list[BasketItem]:
        """The basket as read: one entry per usable item."""
        return list(self._basket_items)

    # -------------------------------------------------------------------------------- internals

    def _index(self, key: int | str) -> int:
        if self.request is None:
            raise ValueError("there is no request yet: pick an executable first")
        if isinstance(key, int):
            if not 0 <= key < len(self.request.data):
                raise IndexError(f"the request has {len(self.request.data)} data item(s); there is no item {key}")
            return key
        for index, item in enumerate(self.request.data):
            if key in (item.name, item.uuid):
                return index
        names = ", ".join(_label(item, i) for i, item in enumerate(self.request.data)) or "none"
        raise KeyError(f"no data item named {key!r}; the list has: {names}")

    def _replace(self, index: int, document: dict[str, Any]) -> None:
        try:
            item = _DATA.validate_python(document)
        except ValidationError as error:
            self.rows[index].message.value = field_message(from_validation_error(error, what="data item"))
            return
        request = self.request.model_copy(deep=True)
        request.data[index] = item
        self._internal = True
        try:
            self.request = request
        finally:
            self._internal = False
        self._refresh()

    @observe("request")
    def _request_changed(self, change: dict[str, Any]) -> None:
        if not self._internal:
            self._rebuild()

    @observe("basket")
    def _basket_changed(self, change: dict[str, Any]) -> None:
        items: list[BasketItem] = []
        skipped: list[str] = []
        for number, raw in enumerate(change["new"] or []):
            try:
                items.append(basket_item(raw))
            except ValueError as error:
                skipped.append(f"item {number + 1}: {error}")
        self._basket_items = items
        self.basket_status.value = status("Basket items skipped: " + "; ".join(skipped), "wait") if skipped else ""
        self._refresh()

    def _rebuild(self) -> None:
        request = self.request
        self.rows = [_Row(index, self) for index in range(len(request.data))] if request is not None else []
        self.rows_box.children = tuple(self.rows)
        self._refresh()

    def _refresh(self) -> None:
        request = self.request
        if request is None:
            self.summary.value = status("Pick an executable first.", "muted")
            self.missing = []
            self.complete = False
            return
        for row, item in zip(self.rows, request.data, strict=True):
            row.show(item, self._basket_items)
        missing = [_label(item, i) for i, item in enumerate(request.data) if item.is_required and not item.is_located]
        if not request.data:
            self.summary.value = status("This executable needs no data.", "ok")
        elif missing:
            self.summary.value = status("Still to find: " + ", ".join(missing), "no")
        else:
            self.summary.value = status("Every required data item has a location.", "ok")
        self.missing = missing
        self.complete = not missing

    def _repr_html_(self) -> str:
        from ..html import request_html

        return request_html(self.request) if self.request is not None else status("No request yet.")
