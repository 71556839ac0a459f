"""CDS Hooks 2.0.1 wire models. Requests accept and ignore unknown fields (e.g. 3.0 `hookVersion`);
responses omit empty optional attributes, as the spec requires."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FhirAuthorizationIn(_In):
    access_token: str = Field(min_length=1)
    token_type: str
    expires_in: int
    scope: str
    subject: str
    patient: str | None = None


class ContextIn(_In):
    model_config = ConfigDict(extra="allow")
    userId: str = Field(min_length=1)  # noqa: N815 (CDS wire name)
    patientId: str = Field(min_length=1, pattern=r"^[A-Za-z0-9\-.]{1,64}$")  # noqa: N815
    encounterId: str | None = None  # noqa: N815
    draftOrders: dict[str, Any] | None = None  # noqa: N815
    selections: list[str] | None = None


class HookRequestIn(_In):
    hook: str = Field(min_length=1)
    hookInstance: str = Field(min_length=1)  # noqa: N815
    fhirServer: str | None = None  # noqa: N815
    fhirAuthorization: FhirAuthorizationIn | None = None  # noqa: N815
    context: ContextIn
    prefetch: dict[str, dict[str, Any] | None] | None = None


_NO_NUL = r"^[^\x00]*$"  # stored in text columns, which cannot hold NUL on PostgreSQL


class OverrideReasonIn(_In):
    reason: dict[str, Any] | None = None
    userComment: str | None = None  # noqa: N815


class AcceptedSuggestionIn(_In):
    id: str


class FeedbackItemIn(_In):
    card: str = Field(min_length=1, max_length=100, pattern=_NO_NUL)
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestionIn] | None = None  # noqa: N815
    overrideReason: OverrideReasonIn | None = None  # noqa: N815
    outcomeTimestamp: str = Field(min_length=1, max_length=40, pattern=_NO_NUL)  # noqa: N815


class FeedbackIn(_In):
    feedback: list[FeedbackItemIn] = Field(min_length=1)


class ServiceOut(_Out):
    hook: str
    id: str
    title: str
    description: str
    prefetch: dict[str, str]


class DiscoveryOut(_Out):
    services: list[ServiceOut]


class SourceOut(_Out):
    label: str
    url: str | None = None
    topic: dict[str, str] | None = None


class ActionOut(_Out):
    type: Literal["create", "update", "delete"]
    description: str
    resource: dict[str, Any] | None = None
    resourceId: str | None = None  # noqa: N815


class SuggestionOut(_Out):
    label: str
    uuid: str
    isRecommended: bool | None = None  # noqa: N815
    actions: list[ActionOut]


class LinkOut(_Out):
    label: str
    url: str
    type: Literal["absolute", "smart"] = "absolute"


class CardOut(_Out):
    uuid: str
    summary: str = Field(max_length=139)
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: SourceOut
    suggestions: list[SuggestionOut] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None  # noqa: N815
    overrideReasons: list[dict[str, str]] | None = None  # noqa: N815
    links: list[LinkOut] | None = None


class CardsOut(_Out):
    cards: list[CardOut]

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)
