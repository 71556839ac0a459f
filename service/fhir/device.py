"""The Carepath Device: the `requester`/`author` every output names, served at Device/carepath."""

from __future__ import annotations

from typing import Any

from service import __version__

DEVICE_ID = "carepath"


def carepath_device() -> dict[str, Any]:
    return {
        "resourceType": "Device", "id": DEVICE_ID,
        "meta": {"versionId": "1"},
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:carepath:device"}],
        "status": "active",
        "deviceName": [{"name": "Carepath", "type": "manufacturer-name"}],
        "type": {"text": "Clinical decision support software (care-pathway service)"},
        "version": [{"value": __version__}],
    }
