"""Settings, read from the environment (and validated) only when `create_app` asks for them."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.webhooks.signatures import valid_secret

CommaList = Annotated[list[str], NoDecode]
EVENT_TYPES = ("pathway.escalated", "careplan.revised", "servicerequest.created", "task.overdue")
EventType = Literal["pathway.escalated", "careplan.revised", "servicerequest.created",
                    "task.overdue"]


def _standard_secret(value: str) -> str:
    if not valid_secret(value):
        raise ValueError("must be whsec_ followed by base64 of 24 to 64 bytes "
                         "(`carepath webhook-secret` makes one)")
    return value


StandardWebhookSecret = Annotated[str, AfterValidator(_standard_secret), Field(
    description="whsec_ followed by base64 of 24-64 random bytes")]


class WebhookSource(BaseModel):
    """An integration engine or FHIR server allowed to push to `/webhooks/{name}/...`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    secrets: list[str] = Field(min_length=1, description=(
        "HMAC keys (X-Signature, Standard Webhooks) or bearer tokens (a Subscription's "
        "channel.header); several at once so a key can be rotated without downtime"))
    fhir_server: str | None = Field(None, description=(
        "base URL id-only notifications are fetched from, and $events asked for gaps"))
    fhir_token: str | None = Field(None, description="bearer token for those fetches")

    @field_validator("secrets")
    @classmethod
    def _long_enough(cls, value: list[str]) -> list[str]:
        if any(len(secret) < 16 for secret in value):
            raise ValueError("webhook secrets must be at least 16 characters")
        return value


class WebhookSubscriberConfig(BaseModel):
    """An endpoint that receives escalation events, signed per Standard Webhooks 1.0."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    secret: StandardWebhookSecret
    events: list[EventType] = Field(default_factory=lambda: list(EVENT_TYPES))


def _split(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    # An empty variable counts as unset (`docker run -e DATABASE_URL="$DATABASE_URL"`, unset).
    model_config = SettingsConfigDict(env_prefix="CAREPATH_", extra="ignore", frozen=True,
                                      env_ignore_empty=True)

    database_url: str = Field(
        "sqlite+aiosqlite:///./data/carepath.db",
        validation_alias=AliasChoices("DATABASE_URL", "CAREPATH_DATABASE_URL"))
    pathways_dir: Path = Path(__file__).resolve().parent.parent / "pathways"
    api_tokens: CommaList = Field(default_factory=list)
    max_body_bytes: int = Field(5 * 1024 * 1024, gt=0)
    fixed_now: datetime | None = None
    base_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "INFO"
    log_pseudonym_key: str | None = Field(None, min_length=16, description=(
        "HMAC key of patient pseudonyms in logs; generated and kept in the database when unset"))

    # Write-back to the EHR's FHIR server (issue 3)
    fhir_server_url: str | None = Field(
        None, validation_alias=AliasChoices("FHIR_SERVER_URL", "CAREPATH_FHIR_SERVER_URL"))
    fhir_auth: Literal["none", "bearer", "smart"] = "none"
    fhir_bearer_token: str | None = None
    fhir_write_mode: Literal["auto", "transaction", "conditional"] = Field("auto", description=(
        "auto: one transaction Bundle per decision when the server's CapabilityStatement offers "
        "`transaction`, else conditional writes resource by resource"))
    smart_token_url: str | None = None
    smart_client_id: str | None = None
    smart_private_key: str | None = None
    smart_key_id: str | None = None
    smart_scope: str = ("system/CarePlan.cu system/ServiceRequest.cu system/Task.cu "
                        "system/Provenance.c")
    outbox_poll_seconds: float = Field(1.0, gt=0)
    outbox_retry_hours: float = Field(72.0, gt=0, description=(
        "a write-back keeps being retried this long after it was staged, then is marked failed"))
    outbox_backoff_seconds: float = Field(1.0, gt=0)
    outbox_backoff_max_seconds: float = Field(300.0, gt=0, description="cap of the backoff")
    outbox_lease_seconds: float = Field(60.0, gt=0)
    run_worker: bool = True

    # Time-driven re-evaluation (issue 11, spec 2a.1)
    run_scheduler: bool = True
    scheduler_poll_seconds: float = Field(30.0, gt=0)
    scheduler_lease_seconds: float = Field(300.0, gt=0)
    scheduler_batch: int = Field(50, gt=0)

    # CDS Hooks (issue 4)
    cds_allowed_issuers: CommaList = Field(default_factory=list)
    cds_jwks_file: Path | None = None
    cds_allowed_jku: CommaList = Field(default_factory=list)
    cors_origins: CommaList = Field(default_factory=list)

    # The clinician app, a SMART App Launch 2.x client (issue 16)
    app_client_id: str | None = Field(None, description=(
        "the client_id the EHR registered for the clinician app (launch URL {base}/app/launch)"))
    app_client_secret: str | None = Field(None, description=(
        "only for a confidential client; public clients rely on PKCE alone"))
    app_issuers: CommaList = Field(default_factory=list, description=(
        "FHIR base URLs allowed as `iss`; the first is used for a standalone launch"))
    app_session_secret: str | None = Field(None, min_length=32, description=(
        "signs the session cookie (32+ characters); unset: a random one per process"))
    app_session_seconds: int = Field(3600, gt=0, description="how long a signed-in view lasts")

    # Webhooks (issue 5): JSON lists in the environment
    webhook_sources: list[WebhookSource] = Field(default_factory=list)
    webhook_subscribers: list[WebhookSubscriberConfig] = Field(default_factory=list)
    webhook_timeout_seconds: float = Field(15.0, gt=0)
    webhook_max_attempts: int = Field(10, gt=0)
    webhook_backoff_scale: float = Field(1.0, gt=0, description=(
        "multiplies the Standard Webhooks retry schedule (tests shrink it)"))

    _split_lists = field_validator(
        "api_tokens", "cds_allowed_issuers", "cds_allowed_jku", "cors_origins", "app_issuers",
        mode="before")(classmethod(lambda cls, v: _split(v)))

    def webhook_source(self, name: str) -> WebhookSource | None:
        return next((s for s in self.webhook_sources if s.name == name), None)

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        """Accept the usual URL spellings and pick the async driver for each database."""
        for plain, driver in (("postgres://", "postgresql+asyncpg://"),
                              ("postgresql://", "postgresql+asyncpg://"),
                              ("sqlite:///", "sqlite+aiosqlite:///")):
            if value.startswith(plain):
                return driver + value[len(plain):]
        if not value.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            raise ValueError("DATABASE_URL must be sqlite+aiosqlite:///PATH or postgresql+asyncpg://...")
        return value
