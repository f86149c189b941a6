"""Step 3: the resources, as a typed form: cores, memory, duration, start, storage size and lifetime.

Modelled on dask-gateway's cluster options widget (a label, an input and a status per field), with
minimum and optional maximum and units. The form is prefilled from the executable's requirements;
what the user types is read with the same functions every dialect reader uses
(:func:`~execplanner_widgets.model.parse_size_gib`, :func:`~execplanner_widgets.model.parse_duration`)
and the result is checked by the request model itself, so "8 gigs", a minimum above its maximum or a
negative number are explained next to the field, in the words the rest of the project uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import ipywidgets as widgets
from traitlets import Bool, Dict, Instance, observe

from ..model import ExecutionRequest, InvalidRequest, TimeInterval, parse_request
from ..model.kinds import kind_uri
from ..model.units import UnitError, human_duration, parse_duration, parse_size_gib
from .common import field_message, status, status_widget

__all__ = ["ResourceForm", "SIZE_UNITS"]

#: Units offered for sizes; a number typed with its own unit ("512Mi") overrides the menu.
SIZE_UNITS = ("GiB", "MiB", "TiB", "GB", "MB", "TB")

_LABEL = widgets.Layout(width="8.5em", flex="0 0 auto")
_INPUT = widgets.Layout(width="9em", flex="1 1 6em")
_UNITS = widgets.Layout(width="6em", flex="0 0 auto")


# ------------------------------------------------------------------------------- reading input


def read_whole(text: str, what: str) -> int | None:
    """A whole number such as a core count; blank means "not said"."""
    value = text.strip()
    if not value:
        return None
    if value.startswith("-"):
        raise ValueError(f"the number of {what} cannot be negative (got {value!r})")
    if not value.isdigit():
        raise ValueError(f"expected a whole number of {what}, such as 4 (got {value!r})")
    return int(value)


def read_size(text: str, units: str) -> int | None:
    """A size in GiB (rounded up); bare numbers are in ``units``; blank means "not said"."""
    value = text.strip()
    if not value:
        return None
    if value.startswith("-"):
        raise UnitError(f"a size cannot be negative (got {value!r})")
    return parse_size_gib(value, units=units)


def read_duration(text: str) -> timedelta | None:
    """A duration such as ``2h``, ``90m`` or ``PT2H``; blank means "not said"."""
    value = text.strip()
    if not value:
        return None
    if value.startswith("-"):
        raise UnitError(f"a duration cannot be negative (got {value!r})")
    duration = parse_duration(value)
    if duration <= timedelta(0):
        raise UnitError("a duration must be longer than zero")
    return duration


def _put(mapping: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` to ``value``, or remove it when the form says nothing (None or empty)."""
    if value is None or value == {} or value == []:
        mapping.pop(key, None)
    else:
        mapping[key] = value


def check_order(minimum: int | None, maximum: int | None, unit: str = "") -> None:
    if minimum is not None and maximum is not None and minimum > maximum:
        suffix = f" {unit}" if unit else ""
        raise ValueError(f"the minimum ({minimum}{suffix}) is more than the maximum ({maximum}{suffix})")


# ---------------------------------------------------------------------------------- the form


@dataclass
class RangeField:
    """A min/max pair with units: cores, memory, a storage size."""

    key: str
    label: str
    minimum: widgets.Text
    maximum: widgets.Text
    units: widgets.Dropdown | None
    message: widgets.HTML

    @classmethod
    def create(cls, key: str, label: str, hint: str, sized: bool) -> RangeField:
        units = widgets.Dropdown(options=SIZE_UNITS, value="GiB", layout=_UNITS) if sized else None
        return cls(
            key,
            label,
            widgets.Text(placeholder=f"min, e.g. {hint}", continuous_update=False, layout=_INPUT),
            widgets.Text(placeholder="max (optional)", continuous_update=False, layout=_INPUT),
            units,
            widgets.HTML(),
        )

    def inputs(self) -> list[widgets.Widget]:
        return [self.minimum, self.maximum] + ([self.units] if self.units is not None else [])

    def widget(self) -> widgets.VBox:
        tail = self.units if self.units is not None else widgets.HTML("cores", layout=_UNITS)
        line = widgets.HBox(
            [widgets.HTML(f"<b>{self.label}</b>", layout=_LABEL), self.minimum, self.maximum, tail],
            layout=widgets.Layout(flex_flow="row wrap", align_items="center"),
        )
        return widgets.VBox([line, self.message])

    def fill(self, minimum: int | None, maximum: int | None) -> None:
        self.minimum.value = "" if minimum is None else str(minimum)
        self.maximum.value = "" if maximum is None else str(maximum)
        if self.units is not None:
            self.units.value = "GiB"

    def read(self) -> dict[str, int]:
        """``{"min": ..., "max": ...}`` in cores or GiB; raises with a message for people."""
        if self.units is None:
            low, high = read_whole(self.minimum.value, "cores"), read_whole(self.maximum.value, "cores")
            check_order(low, high)
        else:
            low, high = read_size(self.minimum.value, self.units.value), read_size(self.maximum.value, self.units.value)
            check_order(low, high, "GiB")
        return {key: value for key, value in (("min", low), ("max", high)) if value is not None}


@dataclass
class TextField:
    """One text value: duration, start window, storage lifetime."""

    key: str
    label: str
    text: widgets.Text
    message: widgets.HTML

    @classmethod
    def create(cls, key: str, label: str, placeholder: str) -> TextField:
        return cls(
            key,
            label,
            widgets.Text(placeholder=placeholder, continuous_update=False, layout=widgets.Layout(flex="1 1 12em")),
            widgets.HTML(),
        )

    def inputs(self) -> list[widgets.Widget]:
        return [self.text]

    def widget(self) -> widgets.VBox:
        line = widgets.HBox(
            [widgets.HTML(f"<b>{self.label}</b>", layout=_LABEL), self.text],
            layout=widgets.Layout(flex_flow="row wrap", align_items="center"),
        )
        return widgets.VBox([line, self.message])


class ResourceForm(widgets.VBox):
    """Cores, memory, duration, start and storage for a request, checked as they are typed.

    Set :attr:`source` (the shopping list's request) to fill the form; :attr:`request` is the same
    request with the form's resources, or ``None`` while a field is wrong; :attr:`errors` maps each
    wrong field (``compute.memory``, ``storage[0].lifetime`` ...) to what is wrong with it.
    """

    source = Instance(ExecutionRequest, allow_none=True, help="The request the form starts from")
    request = Instance(ExecutionRequest, allow_none=True, help="The request with the form's resources, if valid")
    errors = Dict(help="Field -> message, for every field that is wrong")
    valid = Bool(False, help="True when the form describes a valid request")

    def __init__(self, request: ExecutionRequest | None = None, **kwargs: Any) -> None:
        self.cores = RangeField.create("compute.cores", "Cores", "4", sized=False)
        self.memory = RangeField.create("compute.memory", "Memory", "8", sized=True)
        self.duration = TextField.create(
            "schedule.requested.duration", "Duration", "how long, e.g. 2 hours, 90m or PT2H"
        )
        self.start = TextField.create(
            "schedule.requested.start", "Start", "any time, or e.g. 2026-11-22T14:00Z or 2026-11-22T14:00Z/PT6H"
        )
        self.storage: list[tuple[RangeField, TextField]] = []
        self.fields_box = widgets.VBox()
        self.summary = status_widget()
        self._filling = False
        self._executable: dict[str, Any] | None = None
        for field in (self.cores, self.memory, self.duration, self.start):
            self._watch(field)
        super().__init__([self.fields_box, self.summary], **kwargs)
        self._layout_fields()
        if request is not None:
            self.source = request
        else:
            self._validate()

    # --------------------------------------------------------------------------------- filling

    def load(self, request: ExecutionRequest) -> None:
        """Start again from ``request``: every field is filled from its requirements."""
        self._executable = None
        if self.source == request:
            self._prefill(request)
            self._validate()
        else:
            self.source = request

    @observe("source")
    def _source_changed(self, change: dict[str, Any]) -> None:
        source: ExecutionRequest | None = change["new"]
        executable = source.executable.to_wire() if source is not None else None
        if source is not None and executable != self._executable:
            self._prefill(source)  # a new executable: its own requirements
        self._executable = executable
        self._validate()  # the same executable (e.g. data filled in): keep what the user typed

    def _watch(self, field: RangeField | TextField) -> None:
        for widget in field.inputs():
            widget.observe(lambda _change: self._validate(), "value")

    def _layout_fields(self) -> None:
        rows: list[widgets.Widget] = [
            self.cores.widget(),
            self.memory.widget(),
            self.duration.widget(),
            self.start.widget(),
        ]
        for size, lifetime in self.storage:
            rows += [size.widget(), lifetime.widget()]
        self.fields_box.children = tuple(rows)

    def _storage_row(self, index: int, count: int) -> tuple[RangeField, TextField]:
        suffix = f" {index + 1}" if count > 1 else ""
        size = RangeField.create(f"storage[{index}].size", f"Storage{suffix}", "20", sized=True)
        lifetime = TextField.create(
            f"storage[{index}].lifetime", f"Kept for{suffix}", "how long results stay, e.g. 4h or P7D"
        )
        self._watch(size)
        self._watch(lifetime)
        return size, lifetime

    def _prefill(self, request: ExecutionRequest) -> None:
        self._filling = True
        try:
            compute = request.compute
            cores = compute.cores if compute else None
            memory = compute.memory if compute else None
            self.cores.fill(cores.min if cores else None, cores.max if cores else None)
            self.memory.fill(memory.min if memory else None, memory.max if memory else None)
            self.duration.text.value = human_duration(request.duration) if request.duration is not None else ""
            window = request.start_window
            self.start.text.value = str(window) if window is not None else ""
            count = max(1, len(request.storage))
            self.storage = [self._storage_row(index, count) for index in range(count)]
            for (size, lifetime), item in zip(self.storage, request.storage, strict=False):  # one empty row when none
                size.fill(item.size.min if item.size else None, item.size.max if item.size else None)
                lifetime.text.value = human_duration(item.lifetime) if item.lifetime is not None else ""
            self._layout_fields()
        finally:
            self._filling = False

    # ------------------------------------------------------------------------------ validating

    def _all_fields(self) -> list[RangeField | TextField]:
        fields: list[RangeField | TextField] = [self.cores, self.memory, self.duration, self.start]
        for size, lifetime in self.storage:
            fields += [size, lifetime]
        return fields

    def _validate(self) -> None:
        if self._filling:
            return
        errors: dict[str, str] = {}
        values: dict[str, Any] = {}

        def attempt(key: str, read) -> None:
            try:
                values[key] = read()
            except (ValueError, UnitError) as error:
                errors[key] = str(error)

        attempt(self.cores.key, self.cores.read)
        attempt(self.memory.key, self.memory.read)
        attempt(self.duration.key, lambda: read_duration(self.duration.text.value))
        attempt(
            self.start.key, lambda: TimeInterval.parse(self.start.text.value) if self.start.text.value.strip() else None
        )
        for size, lifetime in self.storage:
            attempt(size.key, size.read)
            attempt(lifetime.key, lambda lifetime=lifetime: read_duration(lifetime.text.value))
        request = None
        if self.source is None:
            errors.setdefault("request", "pick an executable first")
        elif not errors:
            try:
                request = parse_request(self._document(values))
            except InvalidRequest as error:
                for item in error.errors:
                    errors.setdefault(self._field_for(item.field), item.message)
        self._show(errors, request)

    def _document(self, values: dict[str, Any]) -> dict[str, Any]:
        """The source request's document with the form's resources written over it."""
        document = self.source.to_wire()
        compute = dict(document.get("compute") or {})
        _put(compute, "cores", values.get(self.cores.key))
        _put(compute, "memory", values.get(self.memory.key))
        _put(document, "compute", compute if set(compute) - {"kind"} else None)
        written = list(document.get("storage") or [])
        storage: list[dict[str, Any]] = []
        for index, (size, lifetime) in enumerate(self.storage):
            given_size, given_lifetime = values.get(size.key), values.get(lifetime.key)
            if index >= len(written) and not given_size and given_lifetime is None:
                continue  # the spare row, left empty: no storage asked for
            item = (
                dict(written[index])
                if index < len(written)
                else {"kind": kind_uri("storage", "simple-storage-resource")}
            )
            _put(item, "size", given_size)
            schedule = dict(item.get("schedule") or {})
            available = dict(schedule.get("available") or {})
            _put(available, "duration", given_lifetime)
            _put(schedule, "available", available)
            _put(item, "schedule", schedule)
            storage.append(item)
        storage.extend(written[len(self.storage) :])
        _put(document, "storage", storage)
        schedule = dict(document.get("schedule") or {})
        requested = dict(schedule.get("requested") or {})
        _put(requested, "duration", values.get(self.duration.key))
        start = values.get(self.start.key)
        _put(requested, "start", str(start) if start is not None else None)
        _put(schedule, "requested", requested)
        _put(document, "schedule", schedule)
        return document

    def _field_for(self, path: str) -> str:
        """The form field a model error belongs to (``compute.cores.min`` -> ``compute.cores``)."""
        if path.startswith("storage["):
            index = path[len("storage[") : path.find("]")]
            return f"storage[{index}].lifetime" if ".schedule" in path else f"storage[{index}].size"
        for field in self._all_fields():
            if path == field.key or path.startswith(field.key + "."):
                return field.key
        if path.startswith("compute"):
            return self.cores.key if "cores" in path else self.memory.key
        return "request"

    def _show(self, errors: dict[str, str], request: ExecutionRequest | None) -> None:
        for field in self._all_fields():
            field.message.value = field_message(errors.get(field.key))
        general = errors.get("request")
        if general:
            self.summary.value = status(
                general[:1].upper() + general[1:] + ".", "no" if self.source is not None else "muted"
            )
        elif errors:
            self.summary.value = status("Correct the fields marked \u26a0 before asking for offers.", "no")
        elif request is not None:
            self.summary.value = status(f"Asking for: {request.summary()}", "ok")
        self.errors = errors
        self.valid = request is not None and not errors
        self.request = request if self.valid else None

    def _repr_html_(self) -> str:
        from ..html import request_html

        return request_html(self.request) if self.request is not None else status("The resources are not complete yet.")
