"""What every ExecPlanner route shares: authentication, JSON/YAML bodies, and errors as JSON.

Every handler derives from :class:`ExecPlannerHandler`. Its methods are decorated with
``@web.authenticated`` and ``@authorized`` (resource ``execplanner``), so a route cannot be added
without Jupyter authentication, and XSRF is checked by jupyter_server for cookie-authenticated
browser calls. Errors are answered as ``{"message": ..., "field": ...}`` with a 4xx status; an
unexpected failure is logged and answered ``{"message": "internal error"}`` with no traceback.
"""

from __future__ import annotations

import json
import logging
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
from execplanner_widgets.model.safe_load import load_json, load_yaml

if TYPE_CHECKING:
    from execplanner_widgets.core.federation import Federation

__all__ = ["ApiError", "ExecPlannerHandler", "EXTENSION_NAME"]


def _expected_status(error: BaseException | None) -> int | None:
    """The status an expected error is answered with, or ``None`` for an unexpected one."""
    if isinstance(error, web.HTTPError):
        return error.status_code
    if isinstance(error, InvalidRequest):
        return 400
    if isinstance(error, UnknownPlatform):
        return 404
    if isinstance(error, PlatformError):
        return int(getattr(error, "status", 502))
    return None


EXTENSION_NAME = "execplanner"
JSON_TYPES = ("application/json", "text/json")
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


_ANONYMOUS_ID = re.compile(r"^[0-9a-f]{32}$")


def _is_anonymous(user: Any) -> bool:
    """A user made up by jupyter_server's ``IdentityProvider.generate_anonymous_user``."""
    return bool(_ANONYMOUS_ID.match(str(getattr(user, "username", "")))) and str(getattr(user, "name", "")).startswith(
        "Anonymous "
    )


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ApiError(400, f"the body is not UTF-8 text (byte {error.start}: {error.reason})", field="body") from None


class ApiError(web.HTTPError):
    """An error answered as JSON: ``{"message": message, **details}`` with ``status``."""

    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(status, log_message=message.replace("%", "%%"))
        self.message = message
        self.details = details


@web.stream_request_body
class ExecPlannerHandler(ExtensionHandlerMixin, APIHandler):
    """Base of every ExecPlanner route: authorization resource ``execplanner``.

    Bodies are streamed (``stream_request_body``) so that their size is checked before anything is
    buffered and before authentication: a declared ``Content-Length`` above the limit is answered 413
    at once and the connection refuses to read more; a chunked body is cut off at the limit.
    """

    auth_resource = EXTENSION_NAME

    def initialize(self, name: str = EXTENSION_NAME, **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(name, **kwargs)
        self._body_parts: list[bytes] = []
        self._body_size = 0
        self._body_too_large = False

    # -------------------------------------------------------------------------- the body

    def body_limit(self) -> int:
        """Largest body this server accepts (``ExecPlanner.max_body_bytes``)."""
        try:
            return int(getattr(self.extensionapp, "max_body_bytes", MAX_DOCUMENT_BYTES))
        except KeyError:  # the extension app is not registered (it failed before its settings)
            return MAX_DOCUMENT_BYTES

    async def prepare(self) -> None:  # type: ignore[override]
        limit = self.body_limit()
        set_limit = getattr(self.request.connection, "set_max_body_size", None)
        if set_limit is not None:
            set_limit(limit)  # the connection stops reading beyond it, whatever the handler does
        declared = self.request.headers.get("Content-Length", "").strip()
        if declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"the body is larger than {limit} bytes", field="body")
        await super().prepare()

    def data_received(self, chunk: bytes) -> None:
        """Collect the body up to the limit; it is complete when Content-Length bytes have come."""
        if self._body_too_large:
            return
        self._body_size += len(chunk)
        if self._body_size > self.body_limit():
            self._body_too_large, self._body_parts = True, []
            return
        self._body_parts.append(chunk)
        declared = self.request.headers.get("Content-Length", "").strip()
        if not declared.isdigit() or self._body_size >= int(declared):
            self._complete_body()

    def _complete_body(self) -> None:
        """What tornado does for a buffered body: ``request.body`` and the form arguments."""
        request = self.request
        request.body = b"".join(self._body_parts)
        request.body_arguments, request.files = {}, {}
        request.arguments = {key: list(values) for key, values in request.query_arguments.items()}
        request._parse_body()  # tornado's own parser for form bodies

    def check_body_size(self) -> None:
        """413 if a (chunked) body went past the limit."""
        if self._body_too_large:
            raise ApiError(413, f"the body is larger than {self.body_limit()} bytes", field="body")

    # -------------------------------------------------------------------------------- state

    @property
    def federation(self) -> Federation:
        """The configured platforms (built by the extension app at start-up); while the configuration
        is broken, every use is a 503 naming its problems (raised here, after authentication and after
        the body was read, so the connection stays usable)."""
        problem = getattr(self.extensionapp, "config_error", None)
        if problem:
            raise ApiError(503, problem)
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
        """The request body as a mapping, from JSON or YAML according to Content-Type.

        Read with :mod:`execplanner_widgets.model.safe_load`: YAML aliases refused, nesting, size,
        numbers, dates and strings bounded, each problem a 400 naming the field.
        """
        self.check_body_size()
        body = self.request.body or b""
        if len(body) > max_bytes:
            raise ApiError(413, f"the body is larger than {max_bytes} bytes", field="body")
        if not body.strip():
            raise ApiError(400, "the request has no body; send a JSON or YAML document")
        content_type = self.request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
        if content_type in YAML_TYPES:
            document = load_yaml(_text(body), what="request", origin="the body")
        elif content_type in JSON_TYPES or content_type in ("", "text/plain", "application/octet-stream"):
            document = load_json(_text(body), what="request", origin="the body")
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

    def log_exception(self, typ: Any, value: BaseException | None, tb: Any) -> None:
        """Expected answers (bad input, unknown names, a platform's own error) are one line at info
        (4xx) or warning (a platform's 5xx), never a traceback; anything else is a bug and logged as such."""
        status = _expected_status(value)
        if status is not None:
            first = (str(getattr(value, "message", "") or value).splitlines() or [""])[0][:300]
            level = logging.INFO if status < 500 else logging.WARNING
            self.log.log(level, "%s %s -> %d: %s", self.request.method, self.request.path, status, first)
            return
        super().log_exception(typ, value, tb)

    def _log(self) -> None:
        """The access log: 4xx answers are the client's business, logged at info (not warning)."""
        status = self.get_status()
        if 400 <= status < 500:
            self.log.info("%d %s %.2fms", status, self._request_summary(), 1000.0 * self.request.request_time())
            return
        super()._log()

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
