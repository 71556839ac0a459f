"""A webhook receiver on loopback that checks Standard Webhooks signatures with the reference
library and can be told to fail: `POST /_control {"statuses": [503, 503], "retryAfter": 0}`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def create_receiver(secrets: dict[str, str]) -> FastAPI:
    """`secrets` maps a path (e.g. "/hooks/a") to the whsec_ secret signing its deliveries."""
    app = FastAPI()
    app.state.deliveries = []
    app.state.statuses = []
    app.state.retry_after = None

    @app.post("/_control")
    async def control(request: Request) -> dict[str, Any]:
        body = await request.json()
        app.state.statuses = list(body.get("statuses", []))
        app.state.retry_after = body.get("retryAfter")
        return {"ok": True}

    @app.get("/_control/deliveries")
    async def deliveries() -> list[dict[str, Any]]:
        return app.state.deliveries  # type: ignore[no-any-return]

    @app.post("/hooks/{name}")
    async def hook(name: str, request: Request) -> Any:
        raw = await request.body()
        try:
            Webhook(secrets[f"/hooks/{name}"]).verify(raw, dict(request.headers), json_parse=False)
            verified = True
        except (WebhookVerificationError, KeyError):
            verified = False
        status = app.state.statuses.pop(0) if app.state.statuses else 204
        app.state.deliveries.append({
            "path": f"/hooks/{name}", "id": request.headers.get("webhook-id"),
            "timestamp": request.headers.get("webhook-timestamp"), "verified": verified,
            "status": status, "body": raw.decode()})
        headers = {"Retry-After": str(app.state.retry_after)} if app.state.retry_after is not None \
            else {}
        if status == 204:
            return Response(status_code=204, headers=headers)
        return JSONResponse({"status": status}, status_code=status, headers=headers)

    return app
