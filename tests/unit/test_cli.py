"""The `carepath` command line: `evaluate BUNDLE.json` decides without a server;
`webhook-secret` makes a subscriber secret."""

from __future__ import annotations

import json
import subprocess
import sys

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
