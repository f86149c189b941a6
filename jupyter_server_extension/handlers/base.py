"""What every ExecPlanner route shares: authentication, JSON/YAML bodies, and errors as JSON.

Every handler derives from :class:`ExecPlannerHandler`. Its methods are decorated with
``@web.authenticated`` and ``@authorized`` (resource ``execplanner``), so a route cannot be added
without Jupyter authentication, and XSRF is checked by jupyter_server for cookie-authenticated
browser calls. Errors are answered as ``{"message": ..., "field": ...}`` with a 4xx status; an
unexpected failure is logged and answered ``{"message": "internal error"}`` with no traceback.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import yaml
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.handler import ExtensionHandlerMixin
from tornado import web

from execplanner_widgets.core.federation import UnknownPlatform
from execplanner_widgets.core.platform import PlatformError
from execplanner_widgets.model import InvalidRequest
from execplanner_widgets.model.dialects import MAX_DOCUMENT_BYTES

if TYPE_CHECKING:
    from execplanner_widgets.core.federation import Federation

__all__ = ["ApiError", "ExecPlannerHandler", "EXTENSION_NAME"]

EXTENSION_NAME = "execplanner"
JSON_TYPES = ("application/json", "text/json")
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


_ANONYMOUS_ID = re.compile(r"^[0-9a-f]{32}$")


def _is_anonymous(user: Any) -> bool:
    """A user made up by jupyter_server's ``IdentityProvider.generate_anonymous_user``."""
    return bool(_ANONYMOUS_ID.match(str(getattr(user, "username", "")))) and str(getattr(user, "name", "")).startswith(
        "Anonymous "
    )


class ApiError(web.HTTPError):
    """An error answered as JSON: ``{"message": message, **details}`` with ``status``."""

    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(status, log_message=message.replace("%", "%%"))
        self.message = message
        self.details = details


class ExecPlannerHandler(ExtensionHandlerMixin, APIHandler):
    """Base of every ExecPlanner route: authorization resource ``execplanner``."""

    auth_resource = EXTENSION_NAME

    def initialize(self, name: str = EXTENSION_NAME, **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(name, **kwargs)

    # -------------------------------------------------------------------------------- state

    @property
    def federation(self) -> Federation:
        """The configured platforms (built by the extension app at start-up)."""
        return self.extensionapp.federation  # type: ignore[attr-defined,no-any-return]

    @property
    def username(self) -> str | None:
        """The Jupyter identity of the caller, which platforms use for allocations and ownership.

        ``None`` for the owner of a single-user server: with one shared token or password,
        jupyter_server makes up a new anonymous user for every token request (a random id), which
        identifies nobody, so all such callers are the same person.
        """
        user = self.current_user
        if user is None or _is_anonymous(user):
            return None
        return getattr(user, "username", None) or getattr(user, "name", None) or str(user)

    # ------------------------------------------------------------------------------- bodies

    def read_document(self, *, max_bytes: int = MAX_DOCUMENT_BYTES) -> dict[str, Any]:
        """The request body as a mapping, from JSON or YAML according to Content-Type."""
        body = self.request.body or b""
        if len(body) > max_bytes:
            raise ApiError(413, f"the body is larger than {max_bytes} bytes")
        if not body.strip():
            raise ApiError(400, "the request has no body; send a JSON or YAML document")
        content_type = self.request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "the body is not UTF-8 text") from None
        if content_type in YAML_TYPES:
            try:
                document = yaml.safe_load(text)
            except yaml.YAMLError as error:
                raise ApiError(400, f"the body is not valid YAML: {getattr(error, 'problem', None) or error}") from None
        elif content_type in JSON_TYPES or content_type in ("", "text/plain", "application/octet-stream"):
            try:
                document = json.loads(text)
            except ValueError as error:
                raise ApiError(400, f"the body is not valid JSON: {error}") from None
        else:
            raise ApiError(415, f"unsupported Content-Type {content_type!r}; send application/json or application/yaml")
        if not isinstance(document, dict):
            raise ApiError(400, "the body must be a JSON or YAML object (a mapping)")
        return document

    def wants_yaml(self) -> bool:
        accept = self.request.headers.get("Accept", "")
        return any(kind in accept for kind in YAML_TYPES) and "application/json" not in accept

    def write_document(self, document: Any, status: int = 200) -> None:
        """Answer ``document`` as JSON, or YAML when the client asks for it in Accept."""
        self.set_status(status)
        if self.wants_yaml():
            # APIHandler.finish sets application/json unless told otherwise
            self.finish(yaml.safe_dump(document, sort_keys=False), set_content_type="application/yaml; charset=UTF-8")
        else:
            self.set_header("Content-Type", "application/json; charset=UTF-8")
            self.finish(json.dumps(document))

    # ------------------------------------------------------------------------------- errors

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors as JSON that say what was wrong; never a traceback."""
        reply: dict[str, Any]
        error = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(error, ApiError):
            reply = {"message": error.message, **error.details}
        elif isinstance(error, InvalidRequest):
            status_code = 400
            reply = error.to_dict()
        elif isinstance(error, UnknownPlatform):
            status_code = 404
            reply = {"message": str(error), "field": "platform"}
        elif isinstance(error, PlatformError):
            status_code = error.status
            reply = {"message": str(error)}
        elif isinstance(error, web.HTTPError):
            reply = {"message": error.log_message or self._reason or "error"}
            if error.log_message and error.args:
                try:
                    reply["message"] = error.log_message % error.args
                except TypeError:
                    pass
        else:
            status_code = 500 if status_code < 400 else status_code
            reply = {"message": "internal error; see the server log"}
        self.clear_header("Content-Type")
        self.set_status(status_code)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(reply))
