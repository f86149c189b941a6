"""``Planner``: the one entry point in a notebook, through the Jupyter server's proxy or in-process.

::

    from execplanner_widgets import Planner
    planner = Planner()                  # finds the server this kernel belongs to, else runs locally
    planner.describe_mode()              # says which, and why
    results = planner.offers("task.yaml")
    session = planner.accept(results[0].offers[0])
    planner.wait(session)

**Server mode** calls the ExecPlanner proxy (``{base_url}execplanner/api/``) of the Jupyter server with
``requests``: the server holds the platform list and the credentials and can reach platforms the
kernel may not. The server is found in this order:

1. ``Planner(url=..., token=...)``;
2. ``$EXECPLANNER_URL`` (the server's base URL) and ``$EXECPLANNER_TOKEN``;
3. JupyterHub's environment: ``$JUPYTERHUB_SERVICE_URL`` (or the running server whose base URL is
   ``$JUPYTERHUB_SERVICE_PREFIX``) with ``$JUPYTERHUB_API_TOKEN``;
4. the Jupyter runtime files of running servers (``jupyter_server.serverapp.list_running_servers``),
   keeping the one this kernel belongs to: its pid is ``$JPY_PARENT_PID`` or this process's parent,
   or it lists this kernel's id (from ``ipykernel.get_connection_file()``).

Each candidate is probed with ``GET {base}execplanner/api/platforms``; the first that answers is used.

**Local mode** runs the same :class:`~execplanner_widgets.core.federation.Federation` in this process, from
the same platforms file (``platforms_file=``, else ``$EXECPLANNER_PLATFORMS``, else the built-in demo)
on a private event loop in a background thread: a kernel already runs an asyncio loop in its main
thread, so nothing here calls ``asyncio.run`` there. It is used when no server is reachable (plain
Python, CI, Zeppelin, VS Code), when ``mode="local"`` or ``$EXECPLANNER_MODE=local``, or when a
``platforms_file`` is given (the server cannot be told to use another file).

Both modes answer alike: the same models, and the same exceptions (:class:`PlannerError` with the
server's message, :class:`~execplanner_widgets.model.InvalidRequest` for a bad request).
"""

from .discovery import ServerInfo, discover_server
from .errors import PlannerError, PlannerTimeout
from .planner import Planner

__all__ = ["Planner", "PlannerError", "PlannerTimeout", "ServerInfo", "discover_server"]
