"""Server mode: the ExecPlanner proxy of a Jupyter server, called with ``requests``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from ..model import (
    ExecutionSession,
    ResultItem,
    SessionPhase,
)
from ..model.platform import Calendar, PlatformDescription
from ..model.results import PlatformResult
from ..model.status import JobStatus

if TYPE_CHECKING:
    import requests


from .discovery import PROBE_TIMEOUT, Mode, ServerInfo, auth_header
from .errors import PlannerError, raise_for_status


class ServerBackend:
    """Calls the proxy with ``requests``."""

    mode: Mode = "server"

    def __init__(self, server: ServerInfo, http: requests.Session, timeout: float) -> None:
        self.server = server
        self.http = http
        self.timeout = timeout

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Any = None,
        stream: bool = False,
        accept: str = "application/json",
    ) -> requests.Response:
        import requests

        headers = {**auth_header(self.server.token), "Accept": accept}
        try:
            answer = self.http.request(
                method,
                self.server.api_url + path,
                json=body,
                params=params,
                headers=headers,
                timeout=(PROBE_TIMEOUT * 2, self.timeout),
                stream=stream,
            )
        except requests.Timeout:
            raise PlannerError(
                f"the Jupyter server at {self.server.url} did not answer within {self.timeout:g} s", status=504
            ) from None
        except requests.RequestException as error:
            raise PlannerError(
                f"cannot reach the Jupyter server at {self.server.url}: {type(error).__name__}"
            ) from None
        raise_for_status(answer, f"HTTP {answer.status_code} from {self.server.url}")
        return answer

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self._send(method, path, **kwargs)
        try:
            return answer.json()
        except ValueError:
            raise PlannerError(
                f"the Jupyter server at {self.server.url} answered something that is not JSON", status=502
            ) from None

    def platforms(self) -> list[PlatformDescription]:
        return [PlatformDescription.model_validate(item) for item in self._json("GET", "platforms")]

    def offers(self, request: dict[str, Any], platforms: list[str] | None) -> list[PlatformResult]:
        params = {"platform": platforms} if platforms else None
        return [
            PlatformResult.model_validate(item) for item in self._json("POST", "offers", body=request, params=params)
        ]

    def stream_offers(self, request: dict[str, Any], platforms: list[str] | None) -> Iterator[PlatformResult]:
        params = {"platform": platforms} if platforms else None
        # sent now, so that a bad request fails at the call, as in local mode; read as it arrives
        answer = self._send(
            "POST", "offers/stream", body=request, params=params, stream=True, accept="application/x-ndjson"
        )
        return self._results(answer)

    def _results(self, answer: requests.Response) -> Iterator[PlatformResult]:
        import requests

        with answer:
            try:
                for line in answer.iter_lines(chunk_size=None):
                    if line.strip():
                        yield PlatformResult.model_validate(json.loads(line))
            except requests.RequestException as error:
                raise PlannerError(
                    f"the offers stream from {self.server.url} broke off: {type(error).__name__}"
                ) from None

    def calendar(self, platform: str, hours: float) -> Calendar:
        return Calendar.model_validate(
            self._json("GET", f"platforms/{_segment(platform)}/calendar", params={"hours": hours})
        )

    def _absolute(self, results: list[ResultItem]) -> None:
        """Result links from the server are server-relative; make them usable from the kernel."""
        for item in results:
            if item.url and not urlsplit(item.url).scheme:
                item.url = urljoin(self.server.url, item.url)

    def _session(self, document: Any) -> ExecutionSession:
        session = ExecutionSession.model_validate(document)
        self._absolute(session.results)
        return session

    def session(self, platform: str, uuid: str) -> ExecutionSession:
        return self._session(self._json("GET", f"platforms/{_segment(platform)}/sessions/{_segment(uuid)}"))

    def update(self, platform: str, uuid: str, phase: SessionPhase) -> ExecutionSession:
        body = {"kind": "uri:enum-value-update", "path": "phase", "value": str(phase)}
        return self._session(self._json("POST", f"platforms/{_segment(platform)}/sessions/{_segment(uuid)}", body=body))

    def job(self, platform: str, job_id: str) -> JobStatus:
        status = JobStatus.model_validate(self._json("GET", f"platforms/{_segment(platform)}/jobs/{_segment(job_id)}"))
        self._absolute(status.results)
        if status.session is not None:
            self._absolute(status.session.results)
        return status

    def describe(self) -> str:
        count = f", {self.server.platforms} platform(s)" if self.server.platforms is not None else ""
        return f"server mode: the ExecPlanner proxy of the Jupyter server at {self.server.url} (found via {self.server.source}{count})"

    def fetch(self, url: str, target: Path) -> Path:
        """Stream a result from the server to ``target``; the token goes only to the server's origin."""
        import requests

        absolute = urljoin(self.server.url, url)
        same_origin = _origin(absolute) == _origin(self.server.url)
        if not same_origin:
            raise PlannerError(
                f"refusing to download {absolute}: results come from the Jupyter server at {self.server.url}"
            )
        try:
            with self.http.get(
                absolute, headers=auth_header(self.server.token), stream=True, timeout=(PROBE_TIMEOUT * 2, self.timeout)
            ) as answer:
                raise_for_status(answer, f"HTTP {answer.status_code} downloading {absolute}")
                with open(target, "wb") as handle:
                    for chunk in answer.iter_content(chunk_size=1024 * 1024):
                        handle.write(chunk)
        except requests.RequestException as error:
            raise PlannerError(f"cannot download {absolute}: {type(error).__name__}") from None
        return target

    def close(self) -> None:
        self.http.close()


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


def _segment(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")
