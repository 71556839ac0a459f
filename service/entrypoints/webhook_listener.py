"""`carepath webhook-listen`: a subscriber on loopback for trying outbound webhooks. Each POST is
checked with the Standard Webhooks library (signature, timestamp) and printed as one line; a bad
signature is answered 401 and printed too. Not for production use."""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def summary(event: dict[str, Any]) -> str:
    data = event.get("data") or {}
    fields = " ".join(f"{k}={data[k]}" for k in ("priority", "serviceRequest", "carePlan", "status")
                      if isinstance(data.get(k), str | int))
    return f"{event.get('type')} {fields}".strip()


def listen(port: int, secret: str) -> int:
    verifier = Webhook(secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                event = verifier.verify(body, {k.lower(): v for k, v in self.headers.items()})
            except WebhookVerificationError as exc:
                print(f"refused ({exc}): {self.headers.get('webhook-id')}", flush=True)
                self.send_response(401)
                self.end_headers()
                return
            print(f"{self.headers.get('webhook-id')} {summary(event)}", flush=True)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"listening on http://127.0.0.1:{port}/ (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0

