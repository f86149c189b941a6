"""Step 1: the executables of an OSSR record, each with name, kind, description and a Select button.

The seeds' first screen: "Example 1 | A Jupyter notebook demonstrating ... | [run]". Picking one
sets :attr:`ExecutableList.selected` and :attr:`ExecutableList.request` (the entry's requirements as
an ExecutionRequest), which the shopping list takes from there.

The list is one HTML view (a record of 1,000 executables is one message, not 4,000 widgets);
filtering happens in the kernel and at most :data:`SHOWN` rows are drawn. Select buttons send their
clicks through an :class:`~.events.EventChannel`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import ipywidgets as widgets
from traitlets import Instance, List, Unicode, observe

from ..html import esc, executables_view
from ..model import ExecutionRequest, InvalidRequest
from ..ossr import ExecutableEntry, OssrRecord, read_record
from .background import Worker
from .common import describe_error, status, status_widget
from .events import EventChannel

__all__ = ["ExecutableList", "matches"]

#: Rows drawn at most; the filter narrows the rest.
SHOWN = 200


def read_any(source: Any) -> OssrRecord:
    """A record from what a scientist has at hand: a codemeta.json or Zenodo record (path, URL,
    dict), a folder holding one, or else a folder of notebooks and scripts, or a single ``.ipynb``
    or ``.py`` file (each becomes an executable with no stated requirements)."""
    if isinstance(source, (str, os.PathLike)) and not str(source).strip().lower().startswith(("http://", "https://")):
        path = Path(str(source).strip()).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
        if path.is_dir() and not (path / "codemeta.json").is_file():
            files = sorted(
                p for p in path.iterdir() if p.suffix in _RUNNABLE and p.is_file() and not p.name.startswith(".")
            )
            if not files:
                raise ValueError(f"{path} has no codemeta.json and no notebooks (.ipynb) or scripts (.py) to run")
            return _plain_record(path.name, files, path)
        if path.is_file() and path.suffix in _RUNNABLE:
            return _plain_record(path.stem, [path], path.parent)
    return read_record(source)


#: File kinds that can be run without a record saying how.
_RUNNABLE = {".ipynb": "jupyter-notebook", ".py": "python-script"}


def _plain_record(name: str, files: list[Path], folder: Path) -> OssrRecord:
    executables = [
        {
            "name": file.stem,
            "description": f"{file.name} in {folder}",
            "type": _RUNNABLE[file.suffix],
            "content": {"location": str(file)},
        }
        for file in files
    ]
    record = read_record({"@type": "SoftwareSourceCode", "name": name, "executables": executables}, base=str(folder))
    record.source = str(files[0] if len(files) == 1 else folder)
    return record


def matches(entry: ExecutableEntry, text: str) -> bool:
    """Whether every word of ``text`` appears in the entry's name, kind or description."""
    haystack = " ".join(filter(None, (entry.name, entry.short_kind, entry.type, entry.description))).lower()
    return all(word in haystack for word in text.lower().split())


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
            placeholder="codemeta.json, Zenodo record, folder or notebook: path or URL",
            layout=widgets.Layout(flex="1 1 auto", min_width="10em"),
            continuous_update=False,
        )
        self.load_button = widgets.Button(description="Load", icon="folder-open", layout=widgets.Layout(width="7em"))
        self.load_button.on_click(lambda _: self.load(self.source_box.value))
        self.filter_box = widgets.Text(
            placeholder="Filter by name, kind or description",
            layout=widgets.Layout(width="100%"),
            continuous_update=True,
        )
        self.filter_box.observe(lambda change: setattr(self, "filter", change["new"]), "value")
        self.title = widgets.HTML("")
        self.table = widgets.HTML(layout=widgets.Layout(max_height="24em", overflow="auto", width="100%"))
        self.status = status_widget()
        self._haystacks: list[str] = []
        self._loader = Worker("execplanner-record-loader", on_error=self._show_error)
        super().__init__(**kwargs)
        self.channel = EventChannel(self, {"pick": self._picked})
        self.children = [
            widgets.HBox([self.source_box, self.load_button], layout=widgets.Layout(flex_flow="row wrap")),
            self.title,
            self.filter_box,
            self.status,
            self.table,
            self.channel.box,
        ]
        if record is not None:
            self.record = read_any(record)
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
                self.record = read_any(source)
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
        self._haystacks = [
            " ".join(filter(None, (entry.name, entry.short_kind, entry.type, entry.description))).lower()
            for entry in change["new"]
        ]
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
        return [self.entries[index] for index in self._visible_indices()]

    def _visible_indices(self) -> list[int]:
        words = self.filter.lower().split()
        return [index for index, haystack in enumerate(self._haystacks) if all(word in haystack for word in words)]

    def _selected_index(self) -> int | None:
        selected = self.selected
        if selected is None:
            return None
        return next((index for index, entry in enumerate(self.entries) if entry is selected), None)

    def _render(self) -> None:
        record = self.record
        if record is None:
            self.title.value = status("No record loaded yet.", "muted")
        else:
            name = record.title or record.source or "record"
            self.title.value = f"<div><strong>{esc(name)}</strong> &mdash; {len(self.entries)} executable(s)</div>"
        visible = self._visible_indices()
        entries = self.entries
        self.table.value = (
            executables_view([(index, entries[index]) for index in visible], self._selected_index(), limit=SHOWN)
            if visible
            else ""
        )
        self.table.layout.display = "" if visible else "none"
        self.filter_box.layout.display = "" if len(entries) > 1 else "none"
        if record is not None and not entries:
            self.status.value = status("This record lists no executables.", "no")
        elif entries and not visible:
            self.status.value = status(f"No executable matches {self.filter!r}.", "muted")
        elif not self.error and self.selected is None:
            self.status.value = ""

    # -------------------------------------------------------------------------------- selecting

    def select(self, key: int | str) -> ExecutionRequest | None:
        """Pick an executable by position or name, as its Select button does; returns its request."""
        if isinstance(key, str):
            for index, entry in enumerate(self.entries):
                if entry.name == key:
                    key = index
                    break
            else:
                raise KeyError(
                    f"no executable named {key!r}; listed: {', '.join(e.name for e in self.entries) or 'none'}"
                )
        self._pick(key)
        return self.request

    def _picked(self, key: str) -> None:
        if key.isdigit() and int(key) < len(self.entries):
            self._pick(int(key))

    def _pick(self, index: int) -> None:
        entry = self.entries[index]
        try:
            request = entry.to_request()
        except InvalidRequest as error:
            self.error = f"{entry.name} cannot be used: {error}"
            self.status.value = status(self.error, "no")
            self.request = None
            self.selected = entry
            self._render()
            return
        self.error = ""
        self.status.value = status(f"Selected: {entry.name} ({request.summary()})", "ok")
        self.request = request
        self.selected = entry
        self._render()

    def _repr_html_(self) -> str:
        from ..html import executables_html

        return executables_html(self.entries, self.record)
