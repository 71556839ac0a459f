"""R7. Failed conservative care -> ROUTINE escalation.

Clinical meaning: after >= 6 weeks of conservative care, with an outcome measure from the last 14
days, pain that persists (NRS >= 4 or ODI > 20 %) and no clinically important improvement from
baseline on either instrument (NRS drop < 2 points and < 30 %; ODI drop < 10 points and < 30 %),
propose MRI (unless a current one exists). With a current MRI and a clinician-confirmed concordant
diagnosis, offer both an ESI referral and a surgical opinion (shared decision). ESI needs radicular
pain >= 4 weeks and NRS >= 7 (or patient preference); it is not offered for stenosis with
neurogenic claudication alone, after 4 sessions in 12 months, and anticoagulation or infection
need clinician review. Without a recent measure, ask for one and decide nothing.
Source: ACR Low Back Pain V3 (2021); NHS pathway (non-tolerable at 6 weeks); NICE NG59 1.3;
Medicare LCD L33906 (ESI); NASS 2012 (time-sensitive surgery). Thresholds are product defaults.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from service.domain.evaluation import Action, Episode, Evidence, Outcome, RuleResult
from service.domain.facts import Measurement
from service.rules.registry import CheckContext, CheckParams, ConceptName, check
from service.rules.series import (
    active_diagnoses,
    current_study,
    evidence_of,
    improved,
    positive_findings,
)

_UNDERWAY = {"completed", "in-progress"}
_OPEN_REQUEST = {"draft", "active", "on-hold", "completed"}


class FailedConservativeCareParams(CheckParams):
    conservative_for: timedelta
    physiotherapy: list[ConceptName]
    analgesia: list[ConceptName]
    outcome_within: timedelta
    pain: ConceptName
    disability: ConceptName
    pain_persistent_at: float
    disability_persistent_above: float
    pain_mcid_points: float
    disability_mcid_points: float
    mcid_fraction: float
    mri: list[ConceptName]
    mri_current_for: timedelta
    concordant: list[ConceptName]
    radicular: list[ConceptName]
    claudication: list[ConceptName]
    injection: ConceptName
    esi_radicular_for: timedelta
    esi_pain_at_least: float
    esi_cap: int
    esi_cap_window: timedelta
    esi_caution: list[ConceptName]
    prefers_injection: list[ConceptName]
    time_sensitive_after: timedelta


@check("failed_conservative_care", FailedConservativeCareParams,
       {"mri", "esi", "surgical-opinion", "esi-review", "collect"})
def failed_conservative_care(ctx: CheckContext, p: FailedConservativeCareParams) -> RuleResult:
    """All four conditions must hold; improvement on either instrument counts as improved."""
    facts, now, episode = ctx.facts, ctx.now, ctx.episode
    if episode is None:
        return RuleResult(ctx.rule.id, Outcome.NOT_MET, "no radicular episode")
    if any(i.status == "completed" and i.time >= episode.onset for i in facts.done(p.injection)):
        return RuleResult(ctx.rule.id, Outcome.NOT_MET,
                          "an epidural injection was given this episode: R8 judges its response")
    started, care, flags = _conservative_care(ctx, p, episode)
    if now - started < p.conservative_for:
        return RuleResult(ctx.rule.id, Outcome.NOT_MET,
                          f"conservative care for {(now - started).days} days "
                          f"(< {p.conservative_for.days})", flags=flags)
    pain = [m for m in facts.measured(p.pain) if m.time >= episode.onset]
    odi = [m for m in facts.measured(p.disability) if m.time >= episode.onset]
    latest_any = max((s[-1].time for s in (pain, odi) if s), default=None)
    if latest_any is None or now - latest_any > p.outcome_within:
        return RuleResult(ctx.rule.id, Outcome.INDETERMINATE,
                          f"no pain NRS or ODI in the last {p.outcome_within.days} days: collect "
                          "them; failure is not decided on missing data",
                          evidence=tuple(evidence_of(s[-1]) for s in (pain, odi) if s),
                          actions=(Action("collect"),), flags=flags)
    series = [s for s in (pain, odi) if len(s) >= 2]
    if not series:
        return RuleResult(ctx.rule.id, Outcome.INDETERMINATE,
                          "only one outcome measure this episode: no baseline to compare against",
                          actions=(Action("collect"),), flags=flags)
    # 2a.9: R7 cites the NRS/ODI series of the episode and the conservative-care evidence.
    evidence = tuple(evidence_of(m) for s in (pain, odi) for m in s) + care
    persistent = (pain and pain[-1].value >= p.pain_persistent_at) or (
        odi and odi[-1].value > p.disability_persistent_above)
    if not persistent:
        return RuleResult(ctx.rule.id, Outcome.NOT_MET,
                          f"symptoms no longer significant (NRS < {p.pain_persistent_at:g} and "
                          f"ODI <= {p.disability_persistent_above:g} %)", evidence=evidence, flags=flags)
    if _improved(pain, p.pain_mcid_points, p.mcid_fraction) or _improved(
            odi, p.disability_mcid_points, p.mcid_fraction):
        return RuleResult(ctx.rule.id, Outcome.NOT_MET,
                          "clinically important improvement from baseline (R9)", evidence=evidence,
                          flags=flags)
    if now - episode.onset >= p.time_sensitive_after:
        flags += ("time-sensitive-surgery",)
    actions, more, notes = _next_steps(ctx, p, episode, pain)
    return RuleResult(ctx.rule.id, Outcome.MET,
                      f"failed conservative care: >= {p.conservative_for.days} days, persistent "
                      f"symptoms, no improvement >= MCID; {notes}",
                      urgency=None, evidence=evidence + more, actions=actions, flags=flags)


def _conservative_care(ctx: CheckContext, p: FailedConservativeCareParams, episode: Episode
                       ) -> tuple[datetime, tuple[Evidence, ...], tuple[str, ...]]:
    """(t0, conservative-care evidence, flags), counting only this episode's care (2a.8).

    t0 is the first physiotherapy procedure or EHR referral of the episode, else the episode onset.
    Evidence is that physiotherapy plus analgesic MedicationRequests/Statements (active or
    completed); with none, R7 proceeds but tags `conservative-care-undocumented`.
    """
    facts, onset = ctx.facts, episode.onset
    physio = [proc for c in p.physiotherapy for proc in facts.done(c)
              if proc.status in _UNDERWAY and proc.time >= onset]
    referrals = [r for r in facts.requests if r.key is None and r.authored and r.authored >= onset
                 and r.status in _OPEN_REQUEST and set(p.physiotherapy) & r.concepts]
    analgesia = [m for c in p.analgesia for m in facts.medicated(c) if m.time >= onset]
    care = tuple(dict.fromkeys(
        [*(evidence_of(x, "physiotherapy") for x in physio),
         *(Evidence(r.ref, "physiotherapy referral", r.status, r.authored) for r in referrals),
         *(evidence_of(m, f"analgesia {m.coding.code}") for m in analgesia)]))
    starts = [x.time for x in physio] + [r.authored for r in referrals if r.authored]
    flags = () if care else ("conservative-care-undocumented",)
    return (min(starts) if starts else onset), care, flags


def _improved(series: Sequence[Measurement], points: float, fraction: float) -> bool:
    return len(series) >= 2 and improved(series[0].value, series[-1].value, points, fraction)


def _next_steps(ctx: CheckContext, p: FailedConservativeCareParams, episode: Episode,
                pain: list[Measurement]) -> tuple[tuple[Action, ...], tuple[Evidence, ...], str]:
    """(a) MRI unless current; (b) with a concordant MRI, surgical opinion and, if eligible, ESI."""
    facts, now = ctx.facts, ctx.now
    mri = current_study(facts, p.mri, now, p.mri_current_for)
    if mri is None:
        return (Action("mri"),), (), "MRI lumbar spine (ACR V3)"
    concordant = [d for d in active_diagnoses(facts, p.concordant)
                  if d.verification_status in (None, "confirmed")]
    cited = (evidence_of(mri, "current MRI").as_supporting(),)
    if not concordant:
        return (), cited, "current MRI without a clinician-confirmed concordant diagnosis: clinician review"
    cited += tuple(evidence_of(d, "concordant diagnosis").as_supporting() for d in concordant)
    actions = [Action("surgical-opinion")]
    claudication_only = active_diagnoses(facts, p.claudication) and not active_diagnoses(facts, p.radicular)
    sessions = [i for i in facts.done(p.injection)
                if i.status == "completed" and now - i.time <= p.esi_cap_window]
    caution = active_diagnoses(facts, p.esi_caution) + [
        f for c in p.esi_caution for f in positive_findings(facts, c)]
    prefers = any(positive_findings(facts, c) for c in p.prefers_injection)
    severe_enough = bool(pain) and pain[-1].value >= p.esi_pain_at_least
    eligible = (now - episode.onset >= p.esi_radicular_for and severe_enough) or prefers
    if claudication_only:
        why = "no ESI for stenosis with neurogenic claudication (NICE)"
    elif len(sessions) >= p.esi_cap:
        why = f"no ESI: {len(sessions)} sessions in the last {p.esi_cap_window.days} days (LCD cap {p.esi_cap})"
        cited += tuple(evidence_of(i, "prior ESI").as_supporting() for i in sessions)
    elif not eligible:
        why = f"no ESI: needs radicular pain >= {p.esi_radicular_for.days} days and NRS >= {p.esi_pain_at_least:g}"
    elif caution:
        why = "ESI needs clinician review first (anticoagulation or infection)"
        actions.append(Action("esi-review"))
    else:
        anchor = concordant[0]
        actions.insert(0, Action("esi", side=anchor.side.value if anchor.side.value != "unspecified"
                                 else episode.side, site=anchor.site))
        why = "offer ESI and surgical opinion (shared decision)"
    return tuple(actions), cited, f"concordant MRI: {why}"
