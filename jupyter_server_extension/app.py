"""``ExecPlanner``: the Jupyter server extension application and its configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join
from traitlets import Dict, Float, Unicode, default

from execplanner_widgets.config import build_federation, load_platforms_file, resolve_platforms_path
from execplanner_widgets.planner import Federation
from execplanner_widgets.platforms.base import PlatformContext

from .handlers.api import API_HANDLERS
from .hosted.handlers import HOSTED_HANDLERS

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

    @default("data_dir")
    def _default_data_dir(self) -> str:
        return str(Path(jupyter_data_dir()) / "execplanner")

    federation: Federation

    def initialize_settings(self) -> None:
        path, is_demo = resolve_platforms_path(self.platforms_file)
        config = load_platforms_file(path)
        data_dir = Path(self.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        context = PlatformContext(
            data_dir=data_dir,
            db_url=self.db_url,
            base_url=url_path_join(self.serverapp.base_url, "execplanner", "platforms") + "/",
            config_dir=path.parent,
        )
        self.federation = build_federation(config, context)
        if "timeout" not in config.model_fields_set:
            self.federation.timeout = self.timeout
        self.federation.timeouts.update(self.platform_timeouts)
        source = "the built-in demo federation" if is_demo else str(path)
        self.log.info("ExecPlanner: %d platform(s) from %s", len(self.federation), source)

    def initialize_handlers(self) -> None:
        self.handlers.extend(API_HANDLERS)
        self.handlers.extend(HOSTED_HANDLERS)

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        await self.federation.start()

    async def stop_extension(self) -> None:
        await self.federation.aclose()
