"""Webhooks: integration engines push data in (`/webhooks/...`), subscribers hear escalations."""
