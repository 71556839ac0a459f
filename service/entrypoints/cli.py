"""`carepath` command line: serve, evaluate a file offline, replay historical data, print the
OpenAPI document, make a webhook secret, listen for webhook events, and make a signed CDS Hooks
request. What stops a command (a setting, a pathway file, the database) is one line on stderr,
never a traceback."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from service import __version__

_AT_HELP = ("evaluation time: ISO 8601 (2026-03-02T09:00:00Z, or a date), 'now', 'today' "
            "(midnight UTC) or 'yesterday' (24 hours ago); default: now")


def instant(text: str) -> datetime:
    """An --at value as a timezone-aware instant (argparse reports a ValueError as one line)."""
    now = datetime.now(UTC)
    word = text.strip().lower()
    if word == "now":
        return now
    if word == "today":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if word == "yesterday":
        return now - timedelta(days=1)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time; use e.g. 2026-03-02T09:00:00Z, 2026-03-02, now, today or "
            "yesterday") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _settings_help() -> str:
    from service.config import Settings
    from service.entrypoints.startup import environment_variable

    lines = ["settings (environment variables; the README explains each):"]
    for name, info in Settings.model_fields.items():
        default = info.get_default(call_default_factory=True)
        shown = "" if default in (None, [], "") or "secret" in name or "token" in name \
            else f" (default: {default})"
        about = f": {info.description}" if info.description else ""
        lines.append(f"  {environment_variable(name)}{shown}{about}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carepath",
                                     description="Lumbar radiculopathy care-pathway service")
    parser.add_argument("--version", action="version", version=f"carepath {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the HTTP service (settings from the environment)",
                        description="Run the HTTP service. Every setting comes from the "
                        "environment.", epilog=_settings_help(),
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    evaluate = commands.add_parser(
        "evaluate", help="evaluate a FHIR file (Bundle, one resource, or NDJSON); print JSON")
    evaluate.add_argument("file", type=Path)
    evaluate.add_argument("--at", type=instant, help=_AT_HELP)
    evaluate.add_argument("--pathways", type=Path,
                          help="pathway directory (default: the bundled one)")
    commands.add_parser("openapi", help="print the OpenAPI document as YAML")
    commands.add_parser("webhook-secret",
                        help="print a new Standard Webhooks signing secret (whsec_...)")
    listen = commands.add_parser(
        "webhook-listen", help="receive Carepath's webhook events on loopback and print them")
    listen.add_argument("--port", type=int, default=9000)
    listen.add_argument("--secret", required=True, help="the subscriber's whsec_ secret")
    cds = commands.add_parser(
        "cds-request", help="make a key pair and print a signed CDS Hooks patient-view request")
    cds.add_argument("bundle", type=Path, help="FHIR Bundle (or resource/NDJSON) to prefetch")
    cds.add_argument("--url", default="http://127.0.0.1:8080/cds-services/carepath-patient-view",
                     help="the CDS service URL (the JWT's aud); default: %(default)s")
    cds.add_argument("--keys", type=Path, default=Path("cds-keys"),
                     help="where the key pair, JWKS and request body go; default: %(default)s")
    cds.add_argument("--issuer", default="https://ehr.example.org",
                     help="the JWT's iss; default: %(default)s")
    cds.add_argument("--patient", help="patient id (default: the Bundle's Patient)")
    replay = commands.add_parser("replay",
                                 help="evaluate Bundles or NDJSON offline; print a summary")
    replay.add_argument("source", type=Path, help="a Bundle/NDJSON file or a directory of them")
    replay.add_argument("--at", type=instant, help=_AT_HELP)
    replay.add_argument("--pathways", type=Path, help="pathway directory (default: bundled)")
    replay.add_argument("--output", type=Path, help="also write each patient's decision as NDJSON")
    replay.add_argument("--allow-rejected", action="store_true",
                        help="exit 0 even when inputs were rejected or files skipped")
    return parser


def main(argv: list[str] | None = None) -> int:
    from service.entrypoints.startup import StartupError
    from service.rules.loader import PathwayDefinitionError

    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except StartupError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except PathwayDefinitionError as exc:
        print("\n".join(f"carepath: {line}" for line in str(exc).splitlines()[1:]),
              file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "serve":
        return _serve()
    if args.command == "evaluate":
        return _evaluate(args.file, args.at, args.pathways)
    if args.command == "replay":
        return _replay(args)
    if args.command == "webhook-secret":
        from service.webhooks.signatures import new_secret

        print(new_secret())
        return 0
    if args.command == "webhook-listen":
        from service.entrypoints.webhook_listener import listen

        return listen(args.port, args.secret)
    if args.command == "cds-request":
        return _cds_request(args)
    return _openapi()


def _pathways_dir(given: Path | None) -> Path:
    from service.entrypoints.startup import load_settings

    return given or load_settings().pathways_dir


def _serve() -> int:
    import uvicorn

    from service.entrypoints.app import create_app
    from service.entrypoints.server import config, tune_garbage_collector
    from service.entrypoints.startup import check_database, load_settings
    from service.observability.logs import configure_logging

    settings = load_settings()
    app = create_app(settings)  # validates the pathway files first
    check_database(settings.database_url)
    configure_logging(settings.log_level)
    tune_garbage_collector()
    uvicorn.Server(config(app, settings.host, settings.port, settings.log_level)).run()
    return 0


def _evaluate(path: Path, at: datetime | None, pathways_dir: Path | None) -> int:
    from service.rules.loader import load_pathways
    from service.service_layer.offline import evaluate_resources
    from service.service_layer.replay import read_resources

    pathway = next(iter(load_pathways(_pathways_dir(pathways_dir)).values()))
    try:
        resources = list(read_resources(path))
    except (OSError, ValueError) as exc:
        print(f"carepath: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    result, _ = evaluate_resources(pathway, resources, at or datetime.now(UTC))
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 1 if result.get("rejected") else 0


def _replay(args: argparse.Namespace) -> int:
    from service.service_layer.replay import run

    return run(args.source, _pathways_dir(args.pathways), args.at or datetime.now(UTC),
               args.output, allow_rejected=args.allow_rejected)


def _cds_request(args: argparse.Namespace) -> int:
    from service.entrypoints.cds_request import run

    try:
        command, hint = run(args.url, args.bundle, args.keys, args.issuer, args.patient)
    except (OSError, ValueError) as exc:
        print(f"carepath: cannot build the request: {exc}", file=sys.stderr)
        return 2
    print(hint, file=sys.stderr)
    print(command)
    return 0


def _openapi() -> int:
    from service.entrypoints.openapi import openapi_yaml

    sys.stdout.write(openapi_yaml())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
