"""Reading a Subscriptions Backport 1.1 notification Bundle (R4 profile
`backport-subscription-notification-r4`): a `history` Bundle whose first entry is a Parameters
SubscriptionStatus. Structure problems come back as located Issues, never as exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.fhir.models import Issue

_MAX_TEXT = {"subscription": 500, "type": 32, "status": 32}  # subscription_streams columns
TYPES = ("handshake", "heartbeat", "event-notification", "query-status", "query-event")
CARRY_EVENTS = ("event-notification", "query-event")


@dataclass(frozen=True)
class NotificationEvent:
    number: int
    focus: str | None


@dataclass
class Notification:
    subscription: str
    type: str
    status: str
    topic: str | None = None
    events_since_start: int | None = None
    events: list[NotificationEvent] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)  # full-resource entries
    references: list[str] = field(default_factory=list)  # id-only entries (fullUrl, no resource)
    deleted: list[str] = field(default_factory=list)  # entries whose request is a DELETE
    errors: list[str] = field(default_factory=list)

    @property
    def numbers(self) -> list[int]:
        return sorted({e.number for e in self.events})


def _value(parameter: dict[str, Any], *kinds: str) -> Any:
    for kind in kinds:
        if f"value{kind}" in parameter:
            return parameter[f"value{kind}"]
    return None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _reference(value: Any, key: str = "reference") -> Any:
    return value.get(key) if isinstance(value, dict) else None


def _count(text: Any, where: str, issues: list[Issue]) -> int | None:
    if text is None:
        return None
    if isinstance(text, str) and text.isdigit() and len(text) <= 9:  # fits the INTEGER column
        return int(text)
    issues.append(Issue(where, f"{text!r} is not an event number (a string of digits)", "value"))
    return None


def parse_notification(body: Any) -> tuple[Notification | None, list[Issue]]:
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        return None, [Issue("resourceType", "a notification must be a Bundle", "structure")]
    if body.get("type") != "history":
        return None, [Issue("Bundle.type", "a notification Bundle must have type history", "value")]
    entries = body.get("entry")
    first = entries[0].get("resource") if isinstance(entries, list) and entries and \
        isinstance(entries[0], dict) else None
    if not isinstance(first, dict) or first.get("resourceType") != "Parameters":
        return None, [Issue("Bundle.entry[0].resource", "the first entry must be a Parameters "
                            "SubscriptionStatus (backport-notification-bundle-r4-1)", "structure")]
    issues: list[Issue] = []
    params: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for i, p in enumerate(_list(first.get("parameter"))):
        if isinstance(p, dict):
            params.setdefault(str(p.get("name")), []).append((i, p))
    where = "Bundle.entry[0].resource.parameter"

    def single(name: str, *kinds: str) -> Any:
        found = params.get(name, [])
        return _value(found[0][1], *kinds) if found else None

    subscription = _reference(single("subscription", "Reference"))
    kind, status = single("type", "Code"), single("status", "Code")
    for name, value in (("subscription", subscription), ("type", kind), ("status", status)):
        if not value:
            issues.append(Issue(f"{where}.where(name='{name}')", f"'{name}' is required",
                                "required"))
        elif not isinstance(value, str) or len(value) > _MAX_TEXT[name] or "\x00" in value:
            issues.append(Issue(f"{where}.where(name='{name}')", f"'{name}' must be text of at "
                                f"most {_MAX_TEXT[name]} characters", "value"))
    if kind and kind not in TYPES:
        issues.append(Issue(f"{where}.where(name='type')",
                            f"type {kind!r} is not one of {', '.join(TYPES)}", "code-invalid"))
    if issues:
        return None, issues
    note = Notification(subscription=subscription, type=kind, status=status,
                        topic=single("topic", "Canonical", "Uri"))
    since = "events-since-subscription-start"
    note.events_since_start = _count(single(since, "String", "UnsignedInt", "Integer"),
                                     f"{where}.where(name='{since}')", issues)
    for i, p in params.get("notification-event", []):
        parts = {str(q.get("name")): q for q in _list(p.get("part")) if isinstance(q, dict)}
        number = _count(_value(parts.get("event-number", {}), "String", "UnsignedInt", "Integer"),
                        f"{where}[{i}].part.where(name='event-number')", issues)
        if number is None:
            issues.append(Issue(f"{where}[{i}]", "a notification-event needs an event-number",
                                "required"))
            continue
        focus = _reference(_value(parts.get("focus", {}), "Reference"))
        note.events.append(NotificationEvent(number, focus))
    note.errors = [str((_value(p, "CodeableConcept") or {}).get("text") or p)
                   for _, p in params.get("error", [])]
    for i, entry in enumerate(entries[1:], start=1):
        if not isinstance(entry, dict):
            issues.append(Issue(f"Bundle.entry[{i}]", "an entry must be an object", "structure"))
        elif isinstance(entry.get("request"), dict) and entry["request"].get("method") == "DELETE":
            target = _reference(entry.get("request"), "url") or entry.get("fullUrl")
            if isinstance(target, str):
                note.deleted.append(target)
            else:
                issues.append(Issue(f"Bundle.entry[{i}].request.url",
                                    "a DELETE entry must name what was deleted", "required"))
        elif isinstance(entry.get("resource"), dict):
            note.resources.append(entry["resource"])
        elif isinstance(entry.get("fullUrl"), str):
            note.references.append(entry["fullUrl"])
        else:
            issues.append(Issue(f"Bundle.entry[{i}]", "an entry needs a resource or a fullUrl",
                                "required"))
    return (None, issues) if issues else (note, [])
