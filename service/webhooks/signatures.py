"""Checking who sent a webhook, and signing the ones we send. Every comparison is constant-time.

- Medplum-style: `X-Signature` = hex HMAC-SHA256(secret, raw body).
- Subscription `channel.header`: `Authorization: Bearer <secret>`.
- Standard Webhooks 1.0: `webhook-id`, `webhook-timestamp`, `webhook-signature` (`v1,<base64>`),
  signed over `{id}.{timestamp}.{body}`, timestamps within 5 minutes; verified and signed with the
  `standardwebhooks` reference library.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRET_PREFIX = "whsec_"


def hex_hmac_matches(body: bytes, signature: str | None, keys: Sequence[str]) -> bool:
    """`X-Signature: <hex HMAC-SHA256 of the body>` made with any of the keys."""
    if not signature:
        return False
    given = signature.strip().lower().encode()
    matched = False
    for key in keys:
        expected = hmac.new(key.encode(), body, hashlib.sha256).hexdigest().encode()
        matched |= hmac.compare_digest(expected, given)
    return matched


def bearer_matches(authorization: str | None, tokens: Sequence[str]) -> bool:
    """`Authorization: Bearer <token>` equal to any of the tokens."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    given = hashlib.sha256(token.strip().encode()).digest()
    matched = False
    for candidate in tokens:
        matched |= hmac.compare_digest(given, hashlib.sha256(candidate.encode()).digest())
    return matched


def _webhook(secret: str) -> Webhook:
    """A `whsec_` secret is base64 (the spec's form); anything else is used as raw bytes."""
    return Webhook(secret) if secret.startswith(SECRET_PREFIX) else Webhook(secret.encode())


def standard_signature_problem(body: bytes, headers: Mapping[str, str], keys: Sequence[str]
                               ) -> str | None:
    """None when the Standard Webhooks signature verifies with one of the keys, else why not."""
    problem = "no webhook secret is configured"
    for key in keys:
        try:
            _webhook(key).verify(body, dict(headers), json_parse=False)
            return None
        except WebhookVerificationError as exc:
            problem = str(exc)
        except (ValueError, UnicodeDecodeError):  # malformed signature list or base64
            problem = "malformed webhook-signature header"
    return problem


def standard_headers(secret: str, message_id: str, at: datetime, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one delivery attempt."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": _webhook(secret).sign(message_id, at, body.decode()),
    }


def new_secret() -> str:
    """A fresh `whsec_` secret: 32 random bytes, base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def valid_secret(secret: str) -> bool:
    """Standard Webhooks secrets are `whsec_` + base64 of 24 to 64 bytes."""
    if not secret.startswith(SECRET_PREFIX):
        return False
    try:
        raw = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except ValueError:
        return False
    return 24 <= len(raw) <= 64
