"""One platform's answer to one request (:class:`PlatformResult`), and all platforms' answers.

A wire document of the proxy API (``POST /offers`` answers a list of them): the federation writes
it, the server sends it, the kernel client reads it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .session import ExecutionSession, OfferSetResponse

__all__ = ["PlatformResult", "ResultList"]


class PlatformResult(BaseModel):
    """One platform's answer to one request: YES with offers, NO with reasons, or ERROR with a cause."""

    model_config = ConfigDict(extra="allow")

    platform: str
    title: str
    status: Literal["YES", "NO", "ERROR"]
    response: OfferSetResponse | None = None
    error: str | None = None
    elapsed: float = Field(description="Seconds the platform took to answer (or to fail)")

    @property
    def offers(self) -> list[ExecutionSession]:
        return list(self.response.offers) if self.response else []

    @property
    def reasons(self) -> list[str]:
        """Why not: the NO messages, or the error."""
        if self.status == "ERROR":
            return [self.error or "unknown error"]
        return self.response.reasons if self.response else []

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_wire_json(self) -> bytes:
        """:meth:`to_wire` as UTF-8 JSON, written in one pass: what the proxy relays for each platform."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()

    def _repr_html_(self) -> str:
        from ..html import result_html

        return result_html(self)


class ResultList(list):
    """The answers of all platforms to one request: a list of :class:`PlatformResult` that shows as
    a table in notebooks (and in Zeppelin or nbviewer, through its HTML), with the questions a
    scientist asks next as methods."""

    @property
    def yes(self) -> list[PlatformResult]:
        """The platforms that said YES."""
        return [result for result in self if result.status == "YES"]

    def all_offers(self) -> list[tuple[PlatformResult, ExecutionSession]]:
        """Every offer with the answer it came in, earliest start first (then most cores)."""
        pairs = [(result, offer) for result in self for offer in result.offers]
        far = datetime.max.replace(tzinfo=timezone.utc)
        return sorted(pairs, key=lambda pair: (pair[1].start or far, -(pair[1].cores or 0)))

    def earliest(self) -> ExecutionSession | None:
        """The offer that starts first, or None if every platform said NO."""
        offers = self.all_offers()
        return offers[0][1] if offers else None

    def _repr_html_(self) -> str:
        from ..html import results_html

        return results_html(self)
