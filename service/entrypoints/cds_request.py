"""`carepath cds-request`: play the EHR once, to try CDS Hooks by hand. Makes (or reuses) an ES384
key pair and its JWKS, builds a `patient-view` request whose prefetch comes from a FHIR Bundle
file, signs the JWT CDS Hooks 2.0 asks for (iss, aud = the service URL, exp, iat, jti, kid), and
prints a curl command that sends it. The JWT is single-use and lives 5 minutes: run it again for
each try."""

from __future__ import annotations

import json
import shlex
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from service.cds.prefetch import TEMPLATES, resource_type
from service.service_layer.replay import read_resources

_KID = "carepath-try"


def key_pair(directory: Path) -> tuple[Any, Path]:
    """The private key in `directory/private-key.pem` (made once, mode 0600) and the JWKS file
    the service is pointed at (CAREPATH_CDS_JWKS_FILE)."""
    directory.mkdir(parents=True, exist_ok=True)
    pem, jwks = directory / "private-key.pem", directory / "jwks.json"
    if pem.exists():
        key = serialization.load_pem_private_key(pem.read_bytes(), password=None)
    else:
        key = ec.generate_private_key(ec.SECP384R1())
        pem.touch(mode=0o600)
        pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwks.write_text(json.dumps({"keys": [{**public, "kid": _KID, "alg": "ES384", "use": "sig"}]},
                               indent=2) + "\n")
    return key, jwks


def hook_request(bundle: Path, patient: str | None) -> dict[str, Any]:
    """A patient-view request with everything the service prefetches, from a Bundle file."""
    resources = list(read_resources(bundle))
    patients = [r for r in resources if r.get("resourceType") == "Patient"]
    patient_id = patient or (patients[0]["id"] if patients else None)
    if not patient_id:
        raise ValueError(f"{bundle} has no Patient; name one with --patient")
    prefetch: dict[str, Any] = {
        "patient": next((p for p in patients if p.get("id") == patient_id), None)}
    for key in TEMPLATES:  # every key the service's discovery document asks for
        if key == "patient":
            continue
        kind = resource_type(key)
        matching = [{"resource": r} for r in resources if r.get("resourceType") == kind]
        prefetch[key] = {"resourceType": "Bundle", "type": "searchset", "total": len(matching),
                         **({"entry": matching} if matching else {})}
    return {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/example", "patientId": patient_id},
            "prefetch": prefetch}


def signed_jwt(key: Any, issuer: str, url: str) -> str:
    now = int(time.time())
    return jwt.encode({"iss": issuer, "aud": url, "iat": now, "exp": now + 300,
                       "jti": str(uuid.uuid4())}, key, algorithm="ES384",
                      headers={"kid": _KID, "typ": "JWT"})


def run(url: str, bundle: Path, keys: Path, issuer: str, patient: str | None) -> tuple[str, str]:
    """(the curl command, the setup hint). Writes the request body beside the keys."""
    key, jwks = key_pair(keys)
    body = keys / "patient-view.request.json"
    body.write_text(json.dumps(hook_request(bundle, patient), indent=2) + "\n")
    command = " ".join(["curl -s -X POST", shlex.quote(url),
                        "-H", shlex.quote(f"Authorization: Bearer {signed_jwt(key, issuer, url)}"),
                        "-H 'Content-Type: application/json'",
                        "--data-binary", shlex.quote(f"@{body}")])
    hint = ("carepath: start the service trusting this key: "
            f"CAREPATH_CDS_ALLOWED_ISSUERS={issuer} CAREPATH_CDS_JWKS_FILE={jwks}")
    return command, hint
