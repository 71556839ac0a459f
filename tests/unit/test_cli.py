"""The `carepath` command line: `evaluate BUNDLE.json` decides without a server;
`webhook-secret` makes a subscriber secret."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from service.config import WebhookSubscriberConfig
from service.webhooks.signatures import valid_secret
from tests.conftest import FIXTURES


def _evaluate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.entrypoints.cli", "evaluate", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_evaluate_prints_the_decision_and_outputs() -> None:
    result = _evaluate(str(FIXTURES / "03-urinary-retention" / "step-1.bundle.json"),
                       "--at", "2026-03-02T09:00:00Z")
    assert result.returncode == 0, result.stderr
    [decision] = json.loads(result.stdout)["decisions"]
    assert decision["urgency"] == "stat"
    assert {r["rule"]: r["outcome"] for r in decision["rules"]}["R1"] == "met"
    kinds = sorted(r["resourceType"] for r in decision["outputs"])
    assert kinds == ["CarePlan", "ServiceRequest", "ServiceRequest"]


def test_evaluate_reports_rejected_inputs_and_exits_nonzero(tmp_path) -> None:  # type: ignore[no-untyped-def]
    odi = json.loads((FIXTURES / "20-odi-raw-score" / "rejected.odi-unflagged.json").read_text())
    bundle = tmp_path / "b.json"
    bundle.write_text(json.dumps({"resourceType": "Bundle", "type": "collection",
                                  "entry": [{"resource": {**odi, "status": "bogus"}}]}))
    result = _evaluate(str(bundle))
    assert result.returncode == 1
    [rejected] = json.loads(result.stdout)["rejected"]
    assert "bogus" in rejected["issues"][0]["message"]


def test_evaluate_uses_valid_r4_and_warns_about_values_it_leaves_out(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """2a.12: an unflagged unitless ODI is valid R4: not rejected, left out with a warning."""
    odi = json.loads((FIXTURES / "20-odi-raw-score" / "rejected.odi-unflagged.json").read_text())
    bundle = tmp_path / "b.json"
    bundle.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": odi}]}))
    result = _evaluate(str(bundle))
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert report["rejected"] == []
    [warned] = report["warnings"]
    assert warned["issues"][0]["severity"] == "warning" and "unit is missing" in warned["issues"][0]["message"]


def test_evaluate_names_an_unreadable_file() -> None:
    result = _evaluate("/nonexistent/bundle.json")
    assert result.returncode == 2 and "cannot read" in result.stderr


def test_webhook_secret_prints_a_fresh_secret_a_subscriber_is_accepted_with() -> None:
    run = [sys.executable, "-m", "service.entrypoints.cli", "webhook-secret"]
    first, second = (subprocess.run(run, capture_output=True, text=True, timeout=60, check=True)
                     .stdout.strip() for _ in range(2))
    assert first.startswith("whsec_") and valid_secret(first)
    assert first != second
    WebhookSubscriberConfig(url="https://example.org/hook", secret=first)


def test_a_configured_subscriber_with_a_malformed_secret_stops_start_up() -> None:
    with pytest.raises(ValidationError, match="whsec_"):
        WebhookSubscriberConfig(url="https://example.org/hook", secret="not-a-standard-secret")


# --- the first hour: what a new user types, and what stops them -------------------------------

def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str,
          **env: str) -> tuple[int, str, str]:
    from service.entrypoints.cli import main

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse: --version, --help, bad arguments
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_version_and_serve_help_list_what_a_user_needs(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from service import __version__

    code, out, _ = _main(monkeypatch, capsys, "--version")
    assert code == 0 and out.strip() == f"carepath {__version__}"
    code, out, _ = _main(monkeypatch, capsys, "serve", "--help")
    assert code == 0
    for variable in ("DATABASE_URL", "CAREPATH_API_TOKENS", "CAREPATH_PORT (default: 8080)",
                     "CAREPATH_APP_CLIENT_ID", "CAREPATH_WEBHOOK_SOURCES", "FHIR_SERVER_URL"):
        assert variable in out


def test_a_bad_setting_is_one_line_naming_the_variable(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, err = _main(monkeypatch, capsys, "serve", CAREPATH_PORT="eighty")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("carepath: CAREPATH_PORT: ")
    assert "unset it" in err and "eighty" not in err


def test_a_database_url_with_a_wrong_scheme_never_echoes_its_password(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    code, _, err = _main(monkeypatch, capsys, "serve",
                         DATABASE_URL="mysql://carepath:s3cret-pw@db.example/carepath")
    assert code == 2 and err.startswith("carepath: DATABASE_URL: ")
    assert "s3cret-pw" not in err and err.count("\n") == 1


def test_an_empty_database_url_means_the_default(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from service.entrypoints.startup import load_settings

    monkeypatch.setenv("DATABASE_URL", "")
    assert load_settings().database_url.startswith("sqlite+aiosqlite:///")


def test_an_unreachable_postgresql_is_one_clear_line_without_traceback() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREPATH_")}
    env["DATABASE_URL"] = "postgresql://carepath:s3cret-pw@127.0.0.1:1/carepath"
    result = subprocess.run([sys.executable, "-m", "service.entrypoints.cli", "serve"], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "carepath: cannot reach the database at postgresql+asyncpg://carepath:***@127.0.0.1:1/"
        "carepath (connection refused); start it, or point DATABASE_URL at a running server"]


def test_a_broken_pathway_file_prints_only_file_line_and_field(monkeypatch, capsys,  # type: ignore[no-untyped-def]
                                                               tmp_path) -> None:
    from tests.conftest import PATHWAY_FILE

    broken = tmp_path / PATHWAY_FILE.name
    broken.write_text(PATHWAY_FILE.read_text().replace("new_within: P14D", "new_within: soon"))
    code, out, err = _main(monkeypatch, capsys, "serve", CAREPATH_PATHWAYS_DIR=str(tmp_path))
    assert code == 2 and out == ""
    [line] = err.splitlines()
    where = re.escape(str(broken))
    assert re.fullmatch(rf"carepath: {where}:\d+: rules\[0\]\.params\.new_within: .+", line)


def test_evaluate_takes_a_single_resource_and_words_for_the_time(monkeypatch, capsys,  # type: ignore[no-untyped-def]
                                                                 tmp_path) -> None:
    bundle = json.loads((FIXTURES / "03-urinary-retention" / "step-1.bundle.json").read_text())
    retention = next(e["resource"] for e in bundle["entry"]
                     if e["resource"]["id"] == "03-retention")
    single = tmp_path / "condition.json"
    single.write_text(json.dumps(retention))
    for at in ("yesterday", "today", "now", "2026-03-02"):
        code, out, err = _main(monkeypatch, capsys, "evaluate", str(single), "--at", at)
        assert code == 0, err
        [decision] = json.loads(out)["decisions"]
        assert decision["patient"] == "lrp-03"
    code, _, err = _main(monkeypatch, capsys, "evaluate", str(single), "--at", "whenever")
    assert code == 2 and "'whenever' is not a time" in err and "Traceback" not in err


def test_cds_request_makes_a_key_pair_and_a_request_the_service_accepts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import jwt

    from service.entrypoints import cds_request

    url = "http://127.0.0.1:8080/cds-services/carepath-patient-view"
    step = FIXTURES / "03-urinary-retention" / "step-1.bundle.json"
    command, hint = cds_request.run(url, step, tmp_path / "keys", "https://ehr.example.org", None)
    jwks = tmp_path / "keys" / "jwks.json"
    assert f"CAREPATH_CDS_JWKS_FILE={jwks}" in hint
    assert oct((tmp_path / "keys" / "private-key.pem").stat().st_mode & 0o777) == "0o600"
    token = re.search(r"Authorization: Bearer ([\w.-]+)", command).group(1)  # type: ignore[union-attr]
    key = jwt.PyJWKSet.from_dict(json.loads(jwks.read_text())).keys[0]
    claims = jwt.decode(token, key, algorithms=["ES384"], audience=url,
                        issuer="https://ehr.example.org")
    assert claims["jti"] and claims["exp"] - claims["iat"] == 300
    body = json.loads((tmp_path / "keys" / "patient-view.request.json").read_text())
    assert body["context"]["patientId"] == "lrp-03"
    assert body["prefetch"]["patient"]["id"] == "lrp-03"
    again, _ = cds_request.run(url, step, tmp_path / "keys", "https://ehr.example.org", None)
    assert again != command and json.loads(jwks.read_text())["keys"][0]["x"] == key._jwk_data["x"]


async def test_the_signed_request_gets_cards_from_the_service(client_for, sqlite_url,  # type: ignore[no-untyped-def]
                                                              tmp_path) -> None:
    from service.entrypoints import cds_request
    from tests.conftest import make_settings

    url = "http://carepath.test/cds-services/carepath-patient-view"
    step = FIXTURES / "03-urinary-retention" / "step-1.bundle.json"
    command, _ = cds_request.run(url, step, tmp_path, "https://ehr.example.org", None)
    client = await client_for(make_settings(sqlite_url, cds_allowed_issuers=["https://ehr.example.org"],
                                            cds_jwks_file=tmp_path / "jwks.json"))
    token = re.search(r"Authorization: Bearer ([\w.-]+)", command).group(1)  # type: ignore[union-attr]
    answer = await client.post(url, content=(tmp_path / "patient-view.request.json").read_bytes(),
                               headers={"Authorization": f"Bearer {token}",
                                        "Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["cards"][0]["indicator"] == "critical"


async def test_docs_work_offline_from_the_installed_swagger_ui(client) -> None:  # type: ignore[no-untyped-def]
    page = await client.get("/docs")
    assert page.status_code == 200
    assert "https://" not in page.text and "/docs/assets/swagger-ui-bundle.js" in page.text
    script = await client.get("/docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and b"SwaggerUIBundle" in script.content


def test_webhook_listen_verifies_and_prints_each_event(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import httpx
    from standardwebhooks.webhooks import Webhook

    from service.webhooks.signatures import new_secret
    from tests.fhirserver.serve import free_port

    secret, port = new_secret(), free_port()
    with subprocess.Popen([sys.executable, "-m", "service.entrypoints.cli", "webhook-listen",
                           "--port", str(port), "--secret", secret],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as listener:
        try:
            assert "listening on" in listener.stderr.readline()  # type: ignore[union-attr]
            body = json.dumps({"type": "pathway.escalated", "timestamp": "2026-03-02T09:00:00Z",
                               "data": {"priority": "stat"}})
            now = datetime.now(UTC)
            signature = Webhook(secret).sign("msg_1", now, body)
            headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())),
                       "webhook-signature": signature, "content-type": "application/json"}
            target = f"http://127.0.0.1:{port}/"
            assert httpx.post(target, content=body, headers=headers).status_code == 204
            forged = {**headers, "webhook-signature": "v1,AAAA"}
            assert httpx.post(target, content=body, headers=forged).status_code == 401
            assert listener.stdout.readline().strip() == "msg_1 pathway.escalated priority=stat"  # type: ignore[union-attr]
        finally:
            listener.terminate()
            listener.wait(10)
