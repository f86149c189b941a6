"""The ``execplanner`` command: ask the platforms from a terminal, list them, print the schemas.

::

    execplanner offers request.yaml [--platforms platforms.yaml] [--json]
    execplanner platforms [--platforms platforms.yaml] [--json]
    execplanner parse request.json            # any dialect in, ExecutionBroker v1.0 out
    execplanner schema [request|response|session|update]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

from .model import ExecutionRequest, ExecutionSession, InvalidRequest, OfferSetResponse, parse_request
from .model.session import EnumValueUpdate
from .model.units import human_duration

__all__ = ["main", "format_results", "format_platforms"]

SCHEMAS = {
    "request": ExecutionRequest,
    "response": OfferSetResponse,
    "session": ExecutionSession,
    "update": EnumValueUpdate,
}


def _table(rows: list[tuple[list[str], list[str]]], headers: list[str]) -> str:
    """A plain-text table. Each row may carry note lines (reasons) printed under it, outside the
    columns, so a long reason does not stretch the table."""
    widths = [max(len(str(cells[i])) for cells in [headers, *(r[0] for r in rows)]) for i in range(len(headers))]
    lines = [
        "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    for cells, notes in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
        lines.extend(f"    - {note}" for note in notes)
    return "\n".join(lines)


def _when(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return "-"
    local = value.astimezone()
    today = (now or datetime.now().astimezone()).date()
    day = (
        "today"
        if local.date() == today
        else ("tomorrow" if (local.date() - today).days == 1 else local.strftime("%Y-%m-%d"))
    )
    return f"{day} {local:%H:%M}"


def format_results(results: Sequence[Any]) -> str:
    """The planner's answers as a table: one row per offer, NO and ERROR rows with their reasons."""
    rows: list[tuple[list[str], list[str]]] = []
    for result in results:
        if result.status == "YES":
            for offer in result.offers:
                expires = _when(offer.expires)
                rows.append(
                    (
                        [
                            result.platform,
                            "YES",
                            _when(offer.start),
                            str(offer.cores if offer.cores is not None else "-"),
                            f"{offer.memory} GiB" if offer.memory is not None else "-",
                            human_duration(offer.schedule.available.duration)
                            if offer.schedule and offer.schedule.available
                            else "-",
                            expires,
                            f"{result.elapsed:.2f}s",
                        ],
                        [],
                    )
                )
        else:
            reasons = result.reasons or ["(no reason given)"]
            rows.append(([result.platform, result.status, "-", "-", "-", "-", "-", f"{result.elapsed:.2f}s"], reasons))
    headers = ["platform", "answer", "start", "cores", "memory", "duration", "expires", "took"]
    return _table(rows, headers)


def format_platforms(descriptions: Sequence[Any]) -> str:
    rows = []
    for item in descriptions:
        limits = ", ".join(f"{key} {value}" for key, value in item.limits.items()) or "-"
        accepts = ", ".join(item.accepts) if item.accepts is not None else "any"
        rows.append(([item.name, item.kind, item.title, accepts, limits], []))
    return _table(rows, ["name", "kind", "title", "accepts", "limits"])


def _federation(args: argparse.Namespace):
    from .core.config import build_federation, default_context, load_platforms_file, resolve_platforms_path

    path, is_demo = resolve_platforms_path(args.platforms)
    if is_demo:
        print("No platforms file given: using the built-in demo federation.", file=sys.stderr)
    config = load_platforms_file(path)
    return build_federation(config, default_context(args.data_dir))


async def _offers(args: argparse.Namespace, request: ExecutionRequest, out: TextIO) -> int:
    federation = _federation(args)
    try:
        await federation.start()
        results = await federation.offers(request, user=args.user, platforms=args.only or None)
    finally:
        await federation.aclose()
    if args.json:
        json.dump([result.to_wire() for result in results], out, indent=2)
        out.write("\n")
    else:
        print(f"Request: {request.summary()}", file=out)
        print(format_results(results), file=out)
        answered = sum(1 for r in results if r.status == "YES")
        print(f"\n{answered} of {len(results)} platform(s) said YES.", file=out)
    return 0


async def _platforms(args: argparse.Namespace, out: TextIO) -> int:
    federation = _federation(args)
    try:
        descriptions = federation.describe()
    finally:
        await federation.aclose()
    if args.json:
        json.dump([item.model_dump(mode="json", exclude_none=True) for item in descriptions], out, indent=2)
        out.write("\n")
    else:
        print(format_platforms(descriptions), file=out)
    return 0


def _schema(args: argparse.Namespace, out: TextIO) -> int:
    names = list(SCHEMAS) if args.which == "all" else [args.which]
    document = {name: SCHEMAS[name].model_json_schema(mode="validation") for name in names}
    json.dump(document if len(names) > 1 else document[names[0]], out, indent=2)
    out.write("\n")
    return 0


def _parse(args: argparse.Namespace, out: TextIO) -> int:
    request = parse_request(args.request)
    if args.yaml:
        out.write(request.to_yaml())
    else:
        json.dump(request.to_broker(), out, indent=2)
        out.write("\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="execplanner",
        description='Ask compute platforms "can I do this?" and "when can I do this?" (IVOA ExecutionBroker).',
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def platforms_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--platforms", metavar="FILE", help="platforms file (default: $EXECPLANNER_PLATFORMS, else the demo)"
        )
        p.add_argument(
            "--data-dir", metavar="DIR", help="where hosted platforms keep state (default: the Jupyter data dir)"
        )
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    offers = sub.add_parser("offers", help="ask every platform for offers for a request")
    offers.add_argument(
        "request", metavar="REQUEST_FILE", help="JSON or YAML task description, in any supported dialect"
    )
    offers.add_argument("--only", action="append", metavar="NAME", help="ask only this platform (repeatable)")
    offers.add_argument("--user", help="the user whose allocations apply")
    platforms_options(offers)

    listing = sub.add_parser("platforms", help="list the configured platforms (and check the platforms file)")
    platforms_options(listing)

    schema = sub.add_parser("schema", help="print the JSON Schema of the wire documents")
    schema.add_argument("which", nargs="?", default="all", choices=["all", *SCHEMAS])

    parse = sub.add_parser("parse", help="read a request in any dialect and print it as ExecutionBroker v1.0")
    parse.add_argument("request", metavar="REQUEST_FILE")
    parse.add_argument("--yaml", action="store_true", help="print YAML instead of JSON")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 bad input)."""
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    try:
        if args.command == "offers":
            request = parse_request(args.request)
            return asyncio.run(_offers(args, request, out))
        if args.command == "platforms":
            return asyncio.run(_platforms(args, out))
        if args.command == "schema":
            return _schema(args, out)
        if args.command == "parse":
            return _parse(args, out)
    except InvalidRequest as error:
        print(f"execplanner: {error}", file=sys.stderr)
        return 1
    except KeyError as error:  # UnknownPlatform from --only
        print(f"execplanner: {error}", file=sys.stderr)
        return 1
    return 2  # pragma: no cover - argparse requires a command


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
