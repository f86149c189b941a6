"""``ExecPlanner``: the Jupyter server extension application and its configuration."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join
from tornado.ioloop import IOLoop
from traitlets import Bool, Dict, Float, Int, TraitError, Unicode, default, validate

from execplanner_widgets.core.config import ConfigError, build_federation, load_platforms_file, resolve_platforms_path
from execplanner_widgets.core.federation import Federation
from execplanner_widgets.core.platform import PlatformContext
from execplanner_widgets.model import InvalidRequest
from execplanner_widgets.model.errors import FieldError

from .handlers.api import API_HANDLERS

__all__ = ["ExecPlanner"]


class ExecPlanner(ExtensionApp):
    """Serves ``{base_url}execplanner/api/`` (the proxy) and ``{base_url}execplanner/platforms/``
    (hosted ExecutionBroker platforms) from one platforms file."""

    name = "execplanner"
    description = "Ask compute platforms 'can I do this?' and 'when can I do this?' (IVOA ExecutionBroker)"
    load_other_extensions = True

    platforms_file = Unicode(
        None,
        allow_none=True,
        config=True,
        help="YAML file listing the platforms; none means $EXECPLANNER_PLATFORMS, else the built-in demo federation.",
    )
    data_dir = Unicode(config=True, help="Folder for state: the hosted platforms' database and working folders.")
    db_url = Unicode(
        None,
        allow_none=True,
        config=True,
        help="SQLAlchemy URL of the hosted platforms' database (default: a SQLite file in data_dir).",
    )
    timeout = Float(30.0, config=True, help="Seconds to wait for any one platform, unless its entry sets its own.")
    platform_timeouts = Dict(
        value_trait=Float(), default_value={}, config=True, help="Per-platform timeouts in seconds, by platform name."
    )

    overall_timeout = Float(
        60.0,
        config=True,
        help="Upper bound in seconds on one fan-out: no platform is waited for longer than this, "
        "whatever its own timeout says, so a question to every platform ends within it.",
    )
    max_body_bytes = Int(
        1024 * 1024,
        config=True,
        help="Largest request body (bytes) the API accepts; larger bodies are answered 413.",
    )
    max_answer_bytes = Int(
        2 * 1024 * 1024,
        config=True,
        help="Largest answer (bytes) read from a remote platform unless its entry sets max_answer_bytes; "
        "a larger answer is an ERROR result for that platform.",
    )

    freeze_startup_objects = Bool(
        True,
        config=True,
        help="Once the server runs, collect garbage and move every object that survived start-up (modules, "
        "classes, configuration: hundreds of thousands) out of the garbage collector's sight (gc.freeze). "
        "A fan-out to hundreds of platforms makes many short-lived objects, and each full collection "
        "would walk all of start-up's objects again (measured: a 1,000-platform question through the "
        "proxy 2.5x -> 2.1x the platforms' latency). Undone when the extension stops.",
    )

    hold_collector_seconds = Float(
        1.0,
        config=True,
        help="While the server relays a question's answers (POST offers, POST offers/stream), Python's "
        "garbage collector waits, for at most this many seconds (0: never): the collections that the "
        "answers' objects would trigger on the way run after the answer has left (measured: about 10 % "
        "of the server's work for a 1,000-platform question). Overlapping questions never keep it off "
        "for more than 2 s in a row.",
    )

    @validate("hold_collector_seconds")
    def _not_negative_seconds(self, proposal: Any) -> float:
        if proposal["value"] < 0:
            raise TraitError("ExecPlanner.hold_collector_seconds must be 0 or more seconds")
        return float(proposal["value"])

    @validate("timeout", "overall_timeout")
    def _positive_seconds(self, proposal: Any) -> float:
        if proposal["value"] <= 0:
            raise TraitError(f"ExecPlanner.{proposal['trait'].name} must be a positive number of seconds")
        return float(proposal["value"])

    @validate("platform_timeouts")
    def _positive_platform_seconds(self, proposal: Any) -> dict[str, float]:
        bad = sorted(name for name, seconds in proposal["value"].items() if seconds <= 0)
        if bad:
            raise TraitError(f"ExecPlanner.platform_timeouts must be positive; check {', '.join(bad)}")
        return dict(proposal["value"])

    @validate("max_body_bytes", "max_answer_bytes")
    def _positive_size(self, proposal: Any) -> int:
        if proposal["value"] <= 0:
            raise TraitError(f"ExecPlanner.{proposal['trait'].name} must be a positive number of bytes")
        return int(proposal["value"])

    @default("data_dir")
    def _default_data_dir(self) -> str:
        return str(Path(jupyter_data_dir()) / "execplanner")

    federation: Federation
    #: Every problem of the configuration, or ``None``; while set, every route answers 503 with it.
    config_error: str | None = None

    def initialize_settings(self) -> None:
        """Build the platforms. A broken configuration does not stop the extension from loading: it is
        logged with all its problems and every call is answered 503 naming them, so a notebook shows
        the error instead of quietly falling back to the demo platforms."""
        self.federation = Federation([])
        path = None
        try:
            path, is_demo = resolve_platforms_path(self.platforms_file)
            self._build(path, is_demo)
        except Exception as error:  # any failure here is the configuration's, reported, never raised
            self.config_error = _describe_problem(error, path)
            for line in self.config_error.splitlines():
                self.log.error("ExecPlanner: %s", line)
        if self.freeze_startup_objects:
            IOLoop.current().add_callback(self._freeze_startup_objects)

    def _build(self, path: Path, is_demo: bool) -> None:
        config = load_platforms_file(path)
        data_dir = Path(self.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        context = PlatformContext(
            data_dir=data_dir,
            db_url=self.db_url,
            base_url=url_path_join(self.serverapp.base_url, "execplanner", "platforms") + "/",
            config_dir=path.parent,
        )
        try:
            self.federation = build_federation(config, context)
        except Exception as first:  # a platform could not be made: name every one that cannot
            raise _every_problem(config, context, first) from None
        if "timeout" not in config.model_fields_set:
            self.federation.timeout = self.timeout
        self._apply_timeouts()
        self._apply_answer_limit()
        source = "the built-in demo federation" if is_demo else str(path)
        self.log.info("ExecPlanner: %d platform(s) from %s", len(self.federation), source)

    def _apply_timeouts(self) -> None:
        """Per-platform timeouts from the traitlet over the file's, every one capped by the overall timeout."""
        federation = self.federation
        known = {platform.name for platform in federation}
        for name in sorted(set(self.platform_timeouts) - known):
            self.log.warning("ExecPlanner.platform_timeouts names %r, which is not a configured platform", name)
        federation.timeouts.update({k: v for k, v in self.platform_timeouts.items() if k in known})
        federation.timeout = min(federation.timeout, self.overall_timeout)
        for platform in federation:
            federation.timeouts[platform.name] = min(federation.timeout_for(platform), self.overall_timeout)

    def _apply_answer_limit(self) -> None:
        """Give remote platforms that do not set their own answer size limit the server's."""
        for platform in self.federation:
            options = getattr(platform, "options", None)
            fields = getattr(type(options), "model_fields", {})
            if "max_answer_bytes" in fields and "max_answer_bytes" not in options.model_fields_set:
                options.max_answer_bytes = self.max_answer_bytes

    def initialize_handlers(self) -> None:
        self.handlers.extend(API_HANDLERS)
        try:  # the hosted engine is the optional extra 'hosted' (SQLAlchemy, lxml)
            from .handlers.broker import BROKER_HANDLERS
            from .handlers.uws import UWS_HANDLERS
        except ImportError as error:
            self.log.info("ExecPlanner: no hosted platform routes (%s); install execplanner-widgets[hosted]", error)
            return
        self.handlers.extend(BROKER_HANDLERS)
        self.handlers.extend(UWS_HANDLERS)

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        if self.config_error is None:
            await self.federation.start()

    _froze = False

    def _freeze_startup_objects(self) -> None:
        """See :attr:`freeze_startup_objects` (run on the server's loop once it has started, so the
        objects of every extension's start-up are included; garbage is collected first)."""
        gc.collect()
        gc.freeze()
        self._froze = True
        self.log.debug("ExecPlanner: %d objects of start-up frozen out of garbage collection", gc.get_freeze_count())

    async def stop_extension(self) -> None:
        """Close the platforms; never raises (a server must always be stoppable)."""
        if self._froze:
            gc.unfreeze()  # back to the oldest generation: collectable again (a server in a test process)
            self._froze = False
        federation = getattr(self, "federation", None)
        if federation is None:
            return
        try:
            await federation.aclose()
        except Exception as error:
            self.log.warning("ExecPlanner: closing the platforms failed: %s: %s", type(error).__name__, error)


def _every_problem(config: Any, context: PlatformContext, first: Exception) -> ConfigError:
    """Building stops at the first broken platform; build each one alone to name every problem.

    Platforms built here are only constructed, not started, so dropping them leaves nothing behind.
    """
    problems: list[FieldError] = []
    for entry in config.platforms:
        try:
            build_federation(config.model_copy(update={"platforms": [entry]}), context)
        except ConfigError as error:
            problems.extend(error.errors)
        except Exception as error:  # reported with the others
            problems.append(FieldError(f"platforms[{entry.name}]", f"{type(error).__name__}: {error}"))
    if not problems:
        problems = first.errors if isinstance(first, InvalidRequest) else [FieldError("", str(first))]
    return ConfigError(problems)


def _describe_problem(error: BaseException, path: Path | None) -> str:
    """One message naming every problem ``error`` carries, and the file it is about."""
    where = f" in {path}" if path is not None else ""
    if isinstance(error, InvalidRequest):
        lines = [f"{item.field}: {item.message}" if item.field else item.message for item in error.errors]
    else:
        lines = [f"{type(error).__name__}: {error}" if not str(error) else str(error)]
    plural = "problem" if len(lines) == 1 else "problems"
    return f"the platforms configuration{where} has {len(lines)} {plural}; no platform is served:\n" + "\n".join(
        f"  {line}" for line in lines
    )
