"""The timeline picture outside the app: offers (and bookings) from every platform on one time axis.

``timeline(results)`` draws the offers of a :meth:`Planner.offers` answer; ``calendars`` (from
:meth:`Planner.calendar`) shade how busy each hosted platform is; ``bookings`` (sessions, or
``(platform, session)`` pairs) are drawn hatched as the user's own. The picture is inline SVG with
a text list under it, so it shows the same in JupyterLab, in an exported page and on nbviewer,
without a kernel or the internet.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..html import TimelineBar, timeline_svg

__all__ = ["Timeline", "timeline"]


class Timeline:
    """A timeline picture; displays as HTML (``_repr_html_``)."""

    def __init__(self, html: str) -> None:
        self.html = html

    def _repr_html_(self) -> str:
        return self.html


def timeline(results: Iterable[Any], *, calendars: Iterable[Any] = (), bookings: Iterable[Any] = ()) -> Timeline:
    """The offers of ``results`` (PlatformResult objects) grouped by platform on one time axis."""
    bars: list[TimelineBar] = []
    titles: dict[str, str] = {}
    for result in results:
        titles[result.platform] = result.title
        for number, offer in enumerate(result.offers if result.status == "YES" else []):
            if offer.start is None or offer.end is None:
                continue
            bars.append(
                TimelineBar(
                    key=f"{len(bars)}",
                    platform=result.platform,
                    title=result.title,
                    start=offer.start,
                    end=offer.end,
                    expires=offer.expires,
                    state=str(offer.phase),
                    label=f"offer {number + 1}, {offer.cores} cores"
                    if offer.cores is not None
                    else f"offer {number + 1}",
                )
            )
    for number, item in enumerate(bookings):
        platform, session = item if isinstance(item, tuple) else ((item.meta.name if item.meta else "") or "", item)
        if session.start is None or session.end is None:
            continue
        bars.append(
            TimelineBar(
                key=f"b{number}", platform=platform, title=titles.get(platform, platform), start=session.start,
                end=session.end, state=str(session.phase), mine=True,
            )
        )  # fmt: skip
    return Timeline(timeline_svg(bars, [calendar for calendar in calendars if calendar is not None], static=True))
