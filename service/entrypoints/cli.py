"""`carepath` command line: serve, evaluate a Bundle offline, replay, print the OpenAPI document,
make a webhook secret."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="carepath",
                                     description="Lumbar radiculopathy care-pathway service")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the HTTP service (settings from the environment)")
    evaluate = commands.add_parser(
        "evaluate", help="evaluate a FHIR Bundle file and print the decision as JSON")
    evaluate.add_argument("bundle", type=Path)
    evaluate.add_argument("--at", help="evaluation time (ISO 8601); default: now")
    evaluate.add_argument("--pathways", type=Path,
                          help="pathway directory (default: the bundled one)")
    commands.add_parser("openapi", help="print the OpenAPI document as YAML")
    commands.add_parser("webhook-secret",
                        help="print a new Standard Webhooks signing secret (whsec_...)")
    replay = commands.add_parser("replay",
                                 help="evaluate Bundles or NDJSON offline; print a summary")
    replay.add_argument("source", type=Path, help="a Bundle/NDJSON file or a directory of them")
    replay.add_argument("--at", help="evaluation time (ISO 8601); default: now")
    replay.add_argument("--pathways", type=Path, help="pathway directory (default: bundled)")
    replay.add_argument("--output", type=Path, help="also write each patient's decision as NDJSON")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve()
    if args.command == "evaluate":
        return _evaluate(args.bundle, args.at, args.pathways)
    if args.command == "replay":
        return _replay(args.source, args.at, args.pathways, args.output)
    if args.command == "webhook-secret":
        from service.webhooks.signatures import new_secret

        print(new_secret())
        return 0
    return _openapi()


def _serve() -> int:
    import uvicorn

    from service.config import Settings
    from service.entrypoints.app import create_app
    from service.entrypoints.server import config
    from service.observability.logs import configure_logging

    settings = Settings()
    configure_logging(settings.log_level)
    uvicorn.Server(config(create_app(settings), settings.host, settings.port,
                          settings.log_level)).run()
    return 0


def _evaluate(bundle_path: Path, at: str | None, pathways_dir: Path | None) -> int:
    from service.config import Settings
    from service.service_layer.offline import evaluate_bundle

    directory = pathways_dir or Settings().pathways_dir
    now = datetime.fromisoformat(at.replace("Z", "+00:00")) if at else datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    try:
        result = evaluate_bundle(orjson.loads(bundle_path.read_bytes()), directory, now)
    except (OSError, orjson.JSONDecodeError) as exc:
        print(f"carepath: cannot read {bundle_path}: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 1 if result.get("rejected") else 0


def _replay(source: Path, at: str | None, pathways_dir: Path | None, output: Path | None) -> int:
    from service.config import Settings
    from service.service_layer.replay import run

    now = datetime.fromisoformat(at.replace("Z", "+00:00")) if at else datetime.now(UTC)
    return run(source, pathways_dir or Settings().pathways_dir,
               now if now.tzinfo else now.replace(tzinfo=UTC), output)


def _openapi() -> int:
    from service.entrypoints.openapi import openapi_yaml

    sys.stdout.write(openapi_yaml())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
