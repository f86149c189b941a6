"""Server mode: the ExecPlanner proxy of a Jupyter server, called with ``httpx``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from ..core.collector import collector_paused
from ..model import (
    ExecutionSession,
    ResultItem,
    SessionPhase,
)
from ..model.platform import Calendar, PlatformDescription
from ..model.results import PlatformResult
from ..model.status import JobStatus
from .result_list import read_results

if TYPE_CHECKING:
    import httpx


from .bookings import BookingEntry, join_output
from .discovery import PROBE_TIMEOUT, Mode, ServerInfo, auth_header
from .errors import PlannerError, raise_for_status


class ServerBackend:
    """Calls the proxy with ``httpx``."""

    mode: Mode = "server"

    def __init__(self, server: ServerInfo, http: httpx.Client, timeout: float) -> None:
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
    ) -> httpx.Response:
        import httpx

        headers = {**auth_header(self.server.token), "Accept": accept}
        try:
            request = self.http.build_request(
                method,
                self.server.api_url + path,
                json=body,
                params=params,
                headers=headers,
                timeout=self._timeout(),
            )
            answer = self.http.send(request, stream=stream)
        except httpx.TimeoutException:
            raise PlannerError(
                f"the Jupyter server at {self.server.url} did not answer within {self.timeout:g} s", status=504
            ) from None
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            raise PlannerError(
                f"cannot reach the Jupyter server at {self.server.url}: {type(error).__name__}"
            ) from None
        raise_for_status(answer, f"HTTP {answer.status_code} from {self.server.url}")
        return answer

    def _timeout(self) -> httpx.Timeout:
        """Connecting must be quick (the server is nearby); an answer may take as long as platforms do."""
        import httpx

        return httpx.Timeout(self.timeout, connect=PROBE_TIMEOUT * 2)

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
        import httpx

        params = {"platform": platforms} if platforms else None
        # read as it arrives (the server writes the list as platforms answer): each result is read
        # while later platforms are still answering, not all of them after the last one
        answer = self._send("POST", "offers", body=request, params=params, stream=True)
        not_json = PlannerError(
            f"the Jupyter server at {self.server.url} answered something that is not JSON", status=502
        )
        try:
            with collector_paused():
                return list(read_results(answer.iter_bytes(), not_json))
        except (httpx.HTTPError, httpx.StreamError) as error:
            raise PlannerError(f"the offers from {self.server.url} broke off: {type(error).__name__}") from None
        finally:
            answer.close()

    def stream_offers(self, request: dict[str, Any], platforms: list[str] | None) -> Iterator[PlatformResult]:
        params = {"platform": platforms} if platforms else None
        # sent now, so that a bad request fails at the call, as in local mode; read as it arrives
        answer = self._send(
            "POST", "offers/stream", body=request, params=params, stream=True, accept="application/x-ndjson"
        )
        return self._results(answer)

    def _results(self, answer: httpx.Response) -> Iterator[PlatformResult]:
        import httpx

        try:
            for line in answer.iter_lines():
                if line.strip():
                    yield PlatformResult.model_validate(json.loads(line))
        except (httpx.HTTPError, httpx.StreamError) as error:
            raise PlannerError(f"the offers stream from {self.server.url} broke off: {type(error).__name__}") from None
        finally:
            answer.close()  # also when the caller stops reading early

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

    def log(self, platform: str, uuid: str, tail: int) -> str:
        document = self._json(
            "GET", f"platforms/{_segment(platform)}/sessions/{_segment(uuid)}/log", params={"tail": tail}
        )
        return join_output(str(document.get("stdout") or ""), str(document.get("stderr") or ""))

    def bookings(self) -> list[BookingEntry]:
        """The caller's bookings, kept by the server (all kernels, across restarts)."""
        entries = [BookingEntry.from_wire(item) for item in self._json("GET", "bookings")]
        for entry in entries:
            if entry.session is not None:
                self._absolute(entry.session.results)
        return entries

    def job(self, platform: str, job_id: str) -> JobStatus:
        status = JobStatus.model_validate(self._json("GET", f"platforms/{_segment(platform)}/jobs/{_segment(job_id)}"))
        self._absolute(status.results)
        if status.session is not None:
            self._absolute(status.session.results)
        return status

    def describe(self) -> str:
        count = f", {self.server.platforms} platform(s)" if self.server.platforms is not None else ""
        described = (
            f"server mode: the ExecPlanner proxy of the Jupyter server at {self.server.url} "
            f"(found via {self.server.source}{count})"
        )
        if self.server.config_error:  # every call will fail with it: say so before the first one
            described += f"; its platforms configuration is broken: {self.server.config_error}"
        return described

    def fetch(self, url: str, target: Path) -> Path:
        """Stream a result from the server to ``target``; the token goes only to the server's origin."""
        import httpx

        absolute = urljoin(self.server.url, url)
        same_origin = _origin(absolute) == _origin(self.server.url)
        if not same_origin:
            raise PlannerError(
                f"refusing to download {absolute}: results come from the Jupyter server at {self.server.url}"
            )
        try:
            with self.http.stream(
                "GET", absolute, headers=auth_header(self.server.token), timeout=self._timeout()
            ) as answer:
                raise_for_status(answer, f"HTTP {answer.status_code} downloading {absolute}")
                with open(target, "wb") as handle:
                    for chunk in answer.iter_bytes(chunk_size=1024 * 1024):
                        handle.write(chunk)
        except (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL) as error:
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
