"""Turn rule results into one plan: merge, rank, suppress, de-duplicate and reconcile.

Spec §2 (Outputs, Precedence, Idempotency, Amended/corrected/entered-in-error):
- episode urgency = the highest urgency of the met rules; rules are merged in precedence order;
- routine proposals are suppressed while an urgent or emergency pathway is open;
- no second request while an equivalent EHR request is draft/active/on-hold (or completed recently);
- a request this pathway proposed earlier is never downgraded; when its evidence is gone it is kept
  (and a review task raised) if urgent or active, and withdrawn only if it was a routine draft.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from service.domain.evaluation import (
    Activity,
    Episode,
    Evidence,
    Plan,
    ProposedRequest,
    ProposedTask,
    RuleResult,
    Urgency,
)
from service.domain.facts import PatientFacts, RequestOnFile
from service.rules.definition import PathwayDefinition

NO_EPISODE = "no-episode"
_OPEN = {"draft", "active", "on-hold"}
_CLOSED = {"revoked", "entered-in-error", "completed"}
EQUIVALENT_LOOKBACK = timedelta(days=180)
REVIEW_TASK = "evidence-withdrawn-review"


def request_key(patient_id: str, episode_id: str, rule_id: str, target_code: str) -> str:
    """The deterministic identifier `urn:lrp:{patient}:{episode}:{rule}:{targetCode}` (spec §2)."""
    return f"urn:lrp:{patient_id}:{episode_id}:{rule_id}:{target_code}"


def build_plan(definition: PathwayDefinition, facts: PatientFacts, episode: Episode | None,
               results: list[RuleResult], now: datetime) -> Plan:
    episode_id = episode.id if episode else NO_EPISODE
    requests: dict[str, ProposedRequest] = {}
    tasks: dict[str, ProposedTask] = {}
    activities: dict[str, Activity] = {}
    for result in results:
        rule = definition.rule(result.rule_id)
        for action in result.actions:
            branch = rule.outputs[action.branch]
            urgency = action.urgency or result.urgency or _urgency(branch.urgency or rule.urgency)
            for name in branch.requests:
                template = definition.requests[name]
                target_system, target = definition.request_codes(name)[0]
                proposed = ProposedRequest(
                    key=request_key(facts.patient_id, episode_id, rule.id, target), output=name,
                    rule_id=rule.id, urgency=urgency, status=branch.status,
                    reasons=result.evidence, note=action.note or template.note,
                    side=action.side, site=action.site)
                # The same order from two rules (e.g. MRI 30679-5 from R1 and R3) is one request.
                owner = next((n for n, r in requests.items()
                              if _target(definition, r.output) == (target_system, target)), name)
                requests[owner] = _merge(requests.get(owner), proposed)
            for name in branch.tasks:
                key = f"urn:lrp:{facts.patient_id}:{episode_id}:task:{name}"
                # A branch may say what exactly to confirm (e.g. the dates of a negated red flag).
                description = definition.tasks[name].description
                if action.note:
                    description = f"{description}. {action.note[0].upper()}{action.note[1:]}"
                tasks.setdefault(name, ProposedTask(key, name, rule.id, description, result.evidence))
            for name in branch.activities:
                status, reason = ("stopped", "ineffective") if name == "esi-stopped" else ("not-started", None)
                activities.setdefault(name, Activity(name, rule.id, status, reason))
    # An escalation kept open from an earlier evaluation still counts: the pathway stays urgent.
    proposed = {r.key for r in requests.values()}
    still_open = [_urgency(p.priority) for p in facts.requests
                  if p.key and p.key not in proposed and _kept_open(p)]
    met = [r.urgency for r in results if r.met and r.urgency is not None] + still_open
    episode_urgency = max(met) if met else None
    notes: list[str] = []
    if episode_urgency is not None and episode_urgency >= Urgency.URGENT:
        routine = [n for n, r in requests.items() if r.urgency is Urgency.ROUTINE]
        for name in routine:
            del requests[name]
        if routine:
            notes.append(f"routine proposals suppressed while the {episode_urgency.priority} "
                         f"pathway is open: {', '.join(routine)}")
    for name in list(requests):
        on_file = _equivalent_on_file(definition, name, facts, now) or _kept_equivalent(
            definition, requests[name], facts)
        if on_file:
            del requests[name]
            notes.append(f"{name} not proposed: equivalent request on file ({on_file.ref})")
    retained, withdrawn = _reconcile(facts, requests)
    if retained:
        tasks.setdefault(REVIEW_TASK, ProposedTask(
            f"urn:lrp:{facts.patient_id}:{episode_id}:task:{REVIEW_TASK}", REVIEW_TASK, "R0",
            definition.tasks[REVIEW_TASK].description,
            tuple(Evidence(w.ref, "withdrawn evidence", "entered-in-error", w.time)
                  for w in facts.withdrawn) + tuple(Evidence(r.ref, "open request", r.priority)
                                                   for r in retained)))
    flags = tuple(dict.fromkeys(f for r in results for f in r.flags))
    return Plan(urgency=episode_urgency,
                requests=tuple(_keep_prior_floor(r, facts) for r in requests.values()),
                tasks=tuple(tasks.values()), activities=tuple(activities.values()),
                notes=tuple(notes), flags=flags,
                retained=tuple(r.key for r in retained if r.key),
                withdrawn=tuple(r.key for r in withdrawn if r.key))


def _target(definition: PathwayDefinition, output: str) -> tuple[str, str]:
    return definition.request_codes(output)[0]


def _urgency(priority: str | None) -> Urgency:
    return Urgency.from_priority(priority) if priority else Urgency.ROUTINE


def _merge(current: ProposedRequest | None, new: ProposedRequest) -> ProposedRequest:
    """The same output from two rules is one request: the earlier (higher-precedence) rule owns it."""
    if current is None:
        return new
    reasons = tuple(dict.fromkeys(current.reasons + new.reasons))
    status = "active" if "active" in (current.status, new.status) else current.status
    return replace(current, urgency=max(current.urgency, new.urgency), status=status, reasons=reasons)


def _equivalent_on_file(definition: PathwayDefinition, name: str, facts: PatientFacts,
                        now: datetime) -> RequestOnFile | None:
    codes = set(definition.request_codes(name))
    for request in facts.requests:
        if request.key is not None or request.coding.key() not in codes:
            continue
        recent = request.authored is None or now - request.authored <= EQUIVALENT_LOOKBACK
        if request.status in _OPEN or (request.status == "completed" and recent):
            return request
    return None


def _kept_equivalent(definition: PathwayDefinition, request: ProposedRequest,
                     facts: PatientFacts) -> RequestOnFile | None:
    """An escalation this pathway raised earlier under another identifier (e.g. before the episode's
    Condition arrived) that is kept open and at least as urgent: it covers the same order, so
    arrival order never yields two open requests for one order (spec §2 Idempotency, 2a.2)."""
    codes = set(definition.request_codes(request.output))
    return next((prior for prior in facts.requests
                 if prior.key and prior.key != request.key and _kept_open(prior)
                 and prior.coding.key() in codes
                 and _urgency(prior.priority) >= request.urgency), None)


def _reconcile(facts: PatientFacts, requests: dict[str, ProposedRequest]
               ) -> tuple[list[RequestOnFile], list[RequestOnFile]]:
    """Our earlier proposals that this evaluation no longer makes: keep or withdraw each."""
    proposed = {r.key for r in requests.values()}
    retained, withdrawn = [], []
    for prior in facts.requests:
        if prior.key is None or prior.key in proposed or prior.status in _CLOSED:
            continue
        if _kept_open(prior):
            retained.append(prior)
        else:
            withdrawn.append(prior)
    return retained, withdrawn


def _kept_open(prior: RequestOnFile) -> bool:
    """Emergency/urgent or active requests are never withdrawn automatically (spec §2)."""
    return prior.status not in _CLOSED and (
        prior.status == "active" or prior.priority in {"stat", "asap", "urgent"})


def _keep_prior_floor(request: ProposedRequest, facts: PatientFacts) -> ProposedRequest:
    """Never downgrade a request proposed earlier: keep its priority and active status as a floor."""
    prior = next((r for r in facts.requests if r.key == request.key), None)
    if prior is None or prior.status in _CLOSED:
        return request
    urgency = max(request.urgency, _urgency(prior.priority))
    status = "active" if prior.status == "active" else request.status
    return replace(request, urgency=urgency, status=status)
