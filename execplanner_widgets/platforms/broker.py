"""A remote IVOA ExecutionBroker v1.0 service, reached over HTTP.

The seeds' "plugin for a more complex service [that] could call the webservice API": the decision is
delegated to the platform. The same rules keep this client safe wherever it runs (in a kernel or in
the server's proxy):

* it talks only to the URL in its configuration; identifiers from answers are checked before they
  become part of a path, so nothing can steer it to another host or path;
* redirects are followed only within the configured origin (``POST requests`` may answer 303);
* the bearer token goes only to that origin, is never logged and never appears in an error;
* answers are limited in size and must parse as the ExecutionBroker model, else they are an error.

It also talks to services that behave like the 2025 ExecutionBroker prototype: answers in JSON or
YAML, in v1.0 or the prototype's ``type:``/``computer:`` form (read with
:func:`~execplanner_widgets.model.answer_dialects.read_answer`), absolute URLs, 303 after
``POST requests``; with ``dialect: prototype-2025`` requests and updates are sent in that form too.
"""

from __future__ import annotations

import functools
import json
import os
import ssl
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..core.platform import Platform, PlatformContext, PlatformError, SessionConflict, SessionNotFound
from ..core.shared import once
from ..model import ExecutionRequest, ExecutionSession, OfferSetResponse, UpdateModel, canonical_kind, short_kind
from ..model.answer_dialects import read_answer, write_request, write_update
from ..model.identifiers import is_identifier
from ..model.platform import PlatformDescription
from . import http1

__all__ = ["BrokerOptions", "BrokerPlatform", "origin_of"]

MAX_ANSWER_BYTES = 2 * 1024 * 1024
MAX_REDIRECTS = 5
_HEADERS = {"Accept": "application/json, application/yaml;q=0.9", "User-Agent": "execplanner-widgets"}
_HEADERS_WITH_BODY = {**_HEADERS, "Content-Type": "application/json"}


def _encode_request(request: ExecutionRequest, dialect: str) -> bytes:
    return _json_bytes(write_request(request.to_broker(), dialect))


def _json_bytes(document: Any) -> bytes:
    """A request body as JSON (UTF-8, compact, no NaN), as httpx's ``json=`` wrote it."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


@functools.lru_cache(maxsize=4096)
def origin_of(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of ``url``: what "the same platform" means for credentials."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").lower(), port


class BrokerOptions(BaseModel):
    """Options of a ``broker:`` entry in the platforms file."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="Base URL of the ExecutionBroker service")
    token_env: str | None = Field(default=None, description="Environment variable holding the bearer token")
    token_file: str | None = Field(default=None, description="File holding the bearer token")
    verify: bool = Field(default=True, description="Check the service's TLS certificate")
    accepts: list[str] | None = Field(default=None, description="For listings only: kinds the service runs")
    limits: dict[str, Any] = Field(default_factory=dict, description="For listings only: the service's limits")
    max_answer_bytes: int = Field(default=MAX_ANSWER_BYTES, gt=0)
    dialect: Literal["broker", "prototype-2025"] = Field(
        default="broker",
        description="The form requests and updates are sent in: ExecutionBroker v1.0, or the 2025 prototype's "
        "(type: for kind, computer: for compute). Answers in either form are always read.",
    )

    @field_validator("url")
    @classmethod
    def _plain_http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http(s) URL such as 'https://broker.example.org/', got {value!r}")
        if parts.username or parts.password or "@" in parts.netloc:
            raise ValueError("the URL must not carry credentials; use token_env or token_file")
        if parts.query or parts.fragment:
            raise ValueError("the URL must not have a query or fragment")
        path = parts.path if parts.path.endswith("/") else parts.path + "/"
        return f"{parts.scheme.lower()}://{parts.netloc.lower()}{path}"

    @model_validator(mode="after")
    def _one_token_source(self) -> BrokerOptions:
        if self.token_env and self.token_file:
            raise ValueError("give token_env or token_file, not both")
        return self


def _plain_v1_json(content_type: str, raw: bytes) -> bool:
    """Whether an answer is JSON that :func:`read_answer` would pass on unchanged (no 2025 prototype
    ``href`` or ``type`` anywhere in it), so that the model can read it straight from its bytes:
    turning it into Python objects first, for the model to read them again, was a fifth of the
    time each answer took."""
    return "json" in content_type.lower() and b'"href"' not in raw and b'"type"' not in raw


@functools.lru_cache(maxsize=4096)
def _join(base: str, path: str) -> str:
    """``urljoin``, remembered: a federation joins the same few paths to each platform's URL on every question."""
    return urljoin(base, path)


@functools.lru_cache(maxsize=2)
def _tls_context(verify: bool) -> ssl.SSLContext:
    """One TLS context per ``verify`` setting, shared by every broker platform's client: building
    one loads the CA bundle (about 20 ms), which a federation of 1,000 platforms paid 1,000 times
    on its first question. The context is only read by the connections that use it."""
    return httpx.create_ssl_context(verify=verify, trust_env=False)


class BrokerPlatform(Platform):
    """An ExecutionBroker v1.0 web service: ``POST requests``, ``GET offersets``, ``GET/POST sessions``."""

    kind = "broker"

    def __init__(
        self,
        name: str,
        title: str | None = None,
        *,
        options: BrokerOptions,
        token: str | None = None,
        description: str | None = None,
    ) -> None:
        super().__init__(name, title, description=description)
        self.options = options
        self.base_url = options.url
        self.origin = origin_of(options.url)
        self.__token = token
        self._header_sets: dict[bool, bytes] = {}

    def __repr__(self) -> str:  # never show the token
        return f"<BrokerPlatform {self.name!r} at {self.base_url}>"

    @classmethod
    def from_config(
        cls, name: str, title: str | None, options: dict[str, Any], context: PlatformContext
    ) -> BrokerPlatform:
        opts = BrokerOptions.model_validate({k: v for k, v in options.items() if k != "description"})
        token = None
        if opts.token_env:
            token = os.environ.get(opts.token_env) or None
        elif opts.token_file:
            path = Path(opts.token_file).expanduser()
            if not path.is_absolute() and context.config_dir is not None:
                path = context.config_dir / path
            try:
                token = path.read_text(encoding="utf-8").strip() or None
            except OSError as error:
                raise ValueError(f"cannot read token_file {path}: {error.strerror or error}") from None
        return cls(name, title, options=opts, token=token, description=options.get("description"))

    @property
    def has_token(self) -> bool:
        return bool(self.__token)

    def describe(self) -> PlatformDescription:
        accepts = self.options.accepts
        return PlatformDescription(
            name=self.name,
            title=self.title,
            kind=self.kind,
            description=self.description,
            accepts=[short_kind(canonical_kind(k, "executable")) for k in accepts] if accepts is not None else None,
            limits=dict(self.options.limits),
            url=self.base_url,
        )

    # ------------------------------------------------------------------------------------ HTTP

    def _url(self, *segments: str) -> str:
        for segment in segments[1:]:
            if not is_identifier(segment):
                raise PlatformError(f"refusing an unsafe identifier {segment[:40]!r}", status=400)
        return _join(self.base_url, "/".join(segments))

    def _headers_for(self, url: str, *, body: bool = False) -> dict[str, str]:
        """The headers of a request to ``url``: the token only when ``url`` is this platform's origin."""
        headers = dict(_HEADERS_WITH_BODY if body else _HEADERS)
        if self.__token and origin_of(url) == self.origin:
            headers["Authorization"] = f"Bearer {self.__token}"
        return headers

    async def _call(self, method: str, url: str, body: bytes | None = None) -> tuple[int, Any]:
        """One ExecutionBroker call: its status and its decoded document (see :meth:`_exchange`)."""
        status, content_type, raw = await self._exchange(method, url, body)
        return status, self._decode(status, content_type, raw)

    async def _exchange(self, method: str, url: str, body: bytes | None = None) -> tuple[int, str, bytes]:
        """One ExecutionBroker call over the shared keep-alive pool (:mod:`.http1`), following
        redirects only within this platform's origin, reading at most ``max_answer_bytes``: the
        final answer's status, content type and body."""
        connections = http1.pool()
        tls = _tls_context(self.options.verify) if self.origin[0] == "https" else None
        limit = self.options.max_answer_bytes
        headers = self._headers(body is not None)
        for _ in range(MAX_REDIRECTS + 1):
            if origin_of(url) != self.origin:
                raise PlatformError(
                    f"{self.name} redirected to another origin ({urlsplit(url).hostname}); not followed"
                )
            try:
                answer = await connections.request(method, url, headers=headers, body=body, max_body=limit, tls=tls)
            except http1.BodyTooLarge as error:
                if error.declared is not None:
                    raise PlatformError(
                        f"{self.name} answered {error.declared} bytes, more than the {limit} allowed"
                    ) from None
                raise PlatformError(f"{self.name} answered more than the {limit} bytes allowed") from None
            except http1.Timeout:
                raise PlatformError(f"{self.name} did not answer in time") from None
            except http1.ConnectFailed:
                raise PlatformError(
                    f"cannot connect to {self.name} at {self.origin[1]}:{self.origin[2]} (connection refused or unreachable)"
                ) from None
            except http1.HTTPError as error:
                raise PlatformError(f"HTTP error talking to {self.name}: {type(error).__name__}") from None
            except ValueError:  # a URL or header this client refuses to send (never shows the token)
                raise PlatformError(f"HTTP error talking to {self.name}: InvalidRequest") from None
            if answer.status in (301, 302, 303, 307, 308):
                location = answer.headers.get("location")
                if not location:
                    raise PlatformError(f"{self.name} answered {answer.status} without a Location")
                url = urljoin(url, location)
                if answer.status in (301, 302, 303):
                    method, body = "GET", None
                    headers = self._headers(False)
                continue
            return answer.status, answer.headers.get("content-type", ""), answer.body
        raise PlatformError(f"{self.name} redirected more than {MAX_REDIRECTS} times")

    def _headers(self, body: bool) -> bytes:
        """This platform's request headers, encoded once (every URL it calls is checked to be its own
        origin before anything is sent, so the token, if any, always belongs with them)."""
        cached = self._header_sets.get(body)
        if cached is None:
            try:
                cached = http1.encode_headers(self._headers_for(self.base_url, body=body))
            except ValueError:  # a token with a line break in it: say so without showing it
                raise PlatformError(f"the token configured for {self.name} is not a valid header value") from None
            self._header_sets[body] = cached
        return cached

    def _decode(self, status: int, content_type: str, raw: bytes) -> Any:
        if not raw or raw.isspace():
            return None
        content_type = content_type.split(";")[0].strip().lower()
        try:
            text = raw.decode("utf-8")
            if "yaml" in content_type:
                return yaml.safe_load(text)
            try:
                return json.loads(text)
            except ValueError:
                if "json" in content_type or "html" in content_type:
                    raise
                document = yaml.safe_load(text)  # a service that answers YAML without saying so
                if not isinstance(document, (dict, list)):  # plain text or a page parses as one YAML string
                    raise ValueError("not a YAML document") from None
                return document
        except (UnicodeDecodeError, ValueError, yaml.YAMLError):
            if status >= 400:
                return None
            raise PlatformError(
                f"{self.name} answered something that is not JSON or YAML ({content_type or 'no content type'})"
            ) from None

    @staticmethod
    def _server_message(status: int, document: Any) -> str:
        if isinstance(document, dict):
            for key in ("message", "detail", "error", "reason"):
                if isinstance(document.get(key), str):
                    return document[key][:500]
        return f"HTTP {status}"

    def _check(self, status: int, document: Any, what: str) -> Any:
        if status == 404:
            raise SessionNotFound(f"{what} not found on {self.name}")
        if status in (400, 403, 409, 422):
            raise SessionConflict(
                f"{self.name} refused: {self._server_message(status, document)}", status=409 if status != 400 else 400
            )
        if status >= 400:
            raise PlatformError(f"{self.name} failed with {self._server_message(status, document)}")
        if not isinstance(document, dict):
            raise PlatformError(f"{self.name} answered {what} with no document")
        return document

    # ---------------------------------------------------------------------- ExecutionBroker API

    async def offers(self, request: ExecutionRequest, *, user: str | None = None) -> OfferSetResponse:
        dialect = self.options.dialect
        body = once(request, ("broker-request", dialect), _encode_request, request, dialect)
        status, content_type, raw = await self._exchange("POST", self._url("requests"), body)
        if 200 <= status < 300 and _plain_v1_json(content_type, raw):
            try:  # read straight from the bytes; anything unusual takes the general way below, to its message
                return OfferSetResponse.model_validate_json(raw)
            except ValidationError:
                pass
        document = self._check(status, self._decode(status, content_type, raw), "the offer set")
        try:
            return OfferSetResponse.model_validate(read_answer(document))
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first.get("loc", ()))
            raise PlatformError(f"{self.name} answered an invalid offer set ({where}: {first['msg']})") from None

    async def offerset(self, uuid: str) -> OfferSetResponse:
        status, document = await self._call("GET", self._url("offersets", uuid))
        document = self._check(status, document, f"offer set {uuid}")
        try:
            return OfferSetResponse.model_validate(read_answer(document))
        except ValidationError:
            raise PlatformError(f"{self.name} answered an invalid offer set") from None

    def _session(self, document: dict[str, Any]) -> ExecutionSession:
        try:
            return ExecutionSession.model_validate(read_answer(document))
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first.get("loc", ()))
            raise PlatformError(f"{self.name} answered an invalid session ({where}: {first['msg']})") from None

    async def session(self, uuid: str, *, user: str | None = None) -> ExecutionSession:
        status, document = await self._call("GET", self._url("sessions", uuid))
        return self._session(self._check(status, document, f"session {uuid}"))

    async def update_session(self, uuid: str, update: UpdateModel, *, user: str | None = None) -> ExecutionSession:
        body = _json_bytes(write_update(update.to_wire(), self.options.dialect))
        status, document = await self._call("POST", self._url("sessions", uuid), body)
        return self._session(self._check(status, document, f"session {uuid}"))

    async def aclose(self) -> None:
        """Close the idle connections to this platform's origin (in the running loop's pool)."""
        http1.pool().close_idle(http1.Origin(*self.origin))
