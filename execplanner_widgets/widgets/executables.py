"""Step 1: the executables of an OSSR record, each with name, kind, description and a Select button.

The seeds' first screen: "Example 1 | A Jupyter notebook demonstrating ... | [run]". Picking one
sets :attr:`ExecutableList.selected` and :attr:`ExecutableList.request` (the entry's requirements as
an ExecutionRequest), which the shopping list takes from there.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
from traitlets import Instance, List, Unicode, observe

from ..html import badge, esc
from ..model import ExecutionRequest, InvalidRequest
from ..ossr import ExecutableEntry, OssrRecord, read_record
from .background import Worker
from .common import compact, describe_error, status, status_widget

__all__ = ["ExecutableList", "matches"]


def matches(entry: ExecutableEntry, text: str) -> bool:
    """Whether every word of ``text`` appears in the entry's name, kind or description."""
    haystack = " ".join(filter(None, (entry.name, entry.short_kind, entry.type, entry.description))).lower()
    return all(word in haystack for word in text.lower().split())


class _Row(widgets.HBox):
    """One executable: its name, kind and description, and a Select button."""

    def __init__(self, index: int, entry: ExecutableEntry, on_select) -> None:
        self.index = index
        self.entry = entry
        text = (
            f"<div><strong>{esc(entry.name)}</strong> {badge(entry.short_kind, 'muted')}</div>"
            f'<div style="font-size:0.92em">{esc(entry.description or "")}</div>'
        )
        self.text = widgets.HTML(compact(text), layout=widgets.Layout(flex="1 1 12em", min_width="0"))
        self.button = widgets.Button(
            description="Select", tooltip=f"Run {entry.name}", icon="play", layout=widgets.Layout(width="8em", flex="0 0 auto")
        )
        self.button.on_click(lambda _: on_select(self.index))
        super().__init__(
            [self.text, self.button],
            layout=widgets.Layout(
                align_items="center", border_bottom="1px solid #d0d7de", padding="2px 0", flex_flow="row wrap", flex="0 0 auto"
            ),
        )

    def mark(self, selected: bool) -> None:
        self.button.description = "Selected" if selected else "Select"
        self.button.button_style = "success" if selected else ""
        self.button.icon = "check" if selected else "play"


class ExecutableList(widgets.VBox):
    """The executables of a record, filterable, one selectable.

    ``record`` is anything :func:`~execplanner_widgets.ossr.read_record` reads (a path, a URL, a
    dict) or an :class:`~execplanner_widgets.ossr.OssrRecord`; a record can also be loaded later
    from the path/URL box.
    """

    record = Instance(OssrRecord, allow_none=True, help="The record whose executables are listed")
    entries = List(Instance(ExecutableEntry), help="Every executable of the record")
    filter = Unicode("", help="Words the listed executables must contain")
    selected = Instance(ExecutableEntry, allow_none=True, help="The executable the user picked")
    request = Instance(ExecutionRequest, allow_none=True, help="The picked executable's request, or None")
    error = Unicode("", help="Why the record or the picked executable cannot be used")

    def __init__(self, record: Any = None, **kwargs: Any) -> None:
        self.source_box = widgets.Text(
            placeholder="codemeta.json or Zenodo record: path or URL",
            layout=widgets.Layout(flex="1 1 auto", min_width="10em"),
            continuous_update=False,
        )
        self.load_button = widgets.Button(description="Load", icon="folder-open", layout=widgets.Layout(width="7em"))
        self.load_button.on_click(lambda _: self.load(self.source_box.value))
        self.filter_box = widgets.Text(
            placeholder="Filter by name, kind or description", layout=widgets.Layout(width="100%"), continuous_update=True
        )
        self.filter_box.observe(lambda change: setattr(self, "filter", change["new"]), "value")
        self.title = widgets.HTML("")
        self.rows_box = widgets.VBox(layout=widgets.Layout(max_height="24em", overflow="auto"))
        self.status = status_widget()
        self.rows: list[_Row] = []
        self._loader = Worker("execplanner-record-loader", on_error=self._show_error)
        super().__init__(
            [
                widgets.HBox([self.source_box, self.load_button], layout=widgets.Layout(flex_flow="row wrap")),
                self.title,
                self.filter_box,
                self.rows_box,
                self.status,
            ],
            **kwargs,
        )
        if record is not None:
            self.record = read_record(record)
        else:
            self._render()

    # ---------------------------------------------------------------------------------- loading

    def load(self, source: Any) -> None:
        """Read a record (path, URL or dict) in the background; errors are shown under the list."""
        if isinstance(source, str) and not source.strip():
            self.status.value = status("Give the path or URL of a codemeta.json or a Zenodo record.", "no")
            return
        self.status.value = status("Reading the record ...", "wait")
        self.load_button.disabled = True

        def work() -> None:
            try:
                self.record = read_record(source)
            finally:
                self.load_button.disabled = False

        self._loader.start(work)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait (at most ``timeout`` seconds) for a record being loaded."""
        return self._loader.wait(timeout)

    def _show_error(self, error: BaseException) -> None:
        self.error = describe_error(error)
        self.status.value = status(self.error, "no")

    @observe("record")
    def _record_changed(self, change: dict[str, Any]) -> None:
        record: OssrRecord | None = change["new"]
        self.error = ""
        self.selected = None
        self.entries = list(record.entries) if record is not None else []
        if record is not None and record.source:
            self.source_box.value = record.source

    @observe("entries")
    def _entries_changed(self, change: dict[str, Any]) -> None:
        self.rows = [_Row(index, entry, self._pick) for index, entry in enumerate(change["new"])]
        self._render()

    @observe("filter")
    def _filter_changed(self, change: dict[str, Any]) -> None:
        if self.filter_box.value != change["new"]:
            self.filter_box.value = change["new"]
        self._render()

    # -------------------------------------------------------------------------------- rendering

    @property
    def visible(self) -> list[ExecutableEntry]:
        """The executables the filter lets through, in record order."""
        return [row.entry for row in self._visible_rows()]

    def _visible_rows(self) -> list[_Row]:
        return [row for row in self.rows if matches(row.entry, self.filter)]

    def _render(self) -> None:
        record = self.record
        if record is None:
            self.title.value = status("No record loaded yet.", "muted")
        else:
            name = record.title or record.source or "record"
            self.title.value = f"<div><strong>{esc(name)}</strong> &mdash; {len(self.entries)} executable(s)</div>"
        visible = self._visible_rows()
        self.rows_box.children = tuple(visible)
        self.filter_box.layout.display = "" if len(self.rows) > 1 else "none"
        if record is not None and not self.rows:
            self.status.value = status("This record lists no executables.", "no")
        elif self.rows and not visible:
            self.status.value = status(f"No executable matches {self.filter!r}.", "muted")
        elif not self.error and self.selected is None:
            self.status.value = ""

    # -------------------------------------------------------------------------------- selecting

    def select(self, key: int | str) -> ExecutionRequest | None:
        """Pick an executable by position or name, as its Select button does; returns its request."""
        if isinstance(key, str):
            for row in self.rows:
                if row.entry.name == key:
                    key = row.index
                    break
            else:
                raise KeyError(f"no executable named {key!r}; listed: {', '.join(r.entry.name for r in self.rows) or 'none'}")
        self._pick(key)
        return self.request

    def _pick(self, index: int) -> None:
        entry = self.rows[index].entry
        for row in self.rows:
            row.mark(row.index == index)
        try:
            request = entry.to_request()
        except InvalidRequest as error:
            self.error = f"{entry.name} cannot be used: {error}"
            self.status.value = status(self.error, "no")
            self.request = None
            self.selected = entry
            return
        self.error = ""
        self.status.value = status(f"Selected: {entry.name} ({request.summary()})", "ok")
        self.request = request
        self.selected = entry

    def _repr_html_(self) -> str:
        from ..html import executables_html

        return executables_html(self.entries, self.record)
