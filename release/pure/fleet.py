"""Pure decisions from what each ec2 host reports it holds (no AWS, no clock, no I/O).

Each host writes one JSON report to SSM (`<HostReportPath><instance-id>`, the contract in
docs/release-tool.md): what its proxy really routes to and whether that answers ready, what it has
staged and whether the image is in its Docker, what is warm and until when, and its last gate's
result with the reason. A gate is verified only when every in-service host holds what the stack asks;
"nothing to do" only when every in-service host already agrees. The stack's parameters say what is
desired; these reports say what is.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping, Sequence

# Which host gate a release verb drives, and which association output re-drives it.
HOST_GATE = {"stage": "stage", "activate": "activate", "rollback": "activate"}
ASSOCIATION_OUTPUT = {"stage": "StageAssociationId", "activate": "ActivateAssociationId", "rollback": "ActivateAssociationId"}
REPORT_PATH_OUTPUT = "HostReportPath"

GATE_RUNNING, GATE_SUCCEEDED, GATE_FAILED = "running", "succeeded", "failed"

# Every canary verdict's gate reason starts with this (liftoff-activate's contract): it tells a version the
# canary judged bad from a gate that broke for any other reason.
CANARY_PREFIX = "canary: "
CANARY_FIELDS = ("version", "verdict", "reason", "requests", "errors", "new_ms", "old_ms")


@dataclass(frozen=True)
class HostTruth:
    """One host's report, or why there is none."""

    instance: str
    error: str = ""  # no report, or one that does not parse: what is known is only that nothing is known
    reported_at: str = ""
    active: str = ""
    active_slot: str = ""
    ready: bool = False
    staged: str = ""
    staged_present: bool = False
    warm: str = ""
    warm_until: str = ""
    last_gate: Mapping[str, str] = field(default_factory=dict)
    canary: Mapping[str, str] = field(default_factory=dict)  # the last canary's numbers; absent on older hosts
    stand_in: str = ""  # set when a harness answered instead of the host (local/runtime.py); shown wherever it is shown

    @property
    def reported(self) -> bool:
        return not self.error


def parse_report(instance: str, raw: Mapping | None) -> HostTruth:
    """A report as `Aws.host_reports` returns it (a dict; `{"instance", "error"}` when unparseable; None when absent)."""
    if raw is None:
        return HostTruth(instance, error="no report from this host yet")
    if raw.get("error"):
        return HostTruth(instance, error=str(raw["error"]))
    gate = raw.get("last_gate") or {}
    canary = raw.get("canary") or {}
    return HostTruth(
        instance=instance, reported_at=str(raw.get("reported_at", "")), active=str(raw.get("active") or ""),
        active_slot=str(raw.get("active_slot") or ""), ready=raw.get("ready") is True, staged=str(raw.get("staged") or ""),
        staged_present=raw.get("staged_present") is True, warm=str(raw.get("warm") or ""),
        warm_until=str(raw.get("warm_until") or ""),
        last_gate={k: str(gate.get(k) or "") for k in ("gate", "version", "result", "reason", "at")} if isinstance(gate, Mapping) else {},
        canary={k: "" if canary.get(k) is None else str(canary[k]) for k in CANARY_FIELDS} if isinstance(canary, Mapping) and canary else {},
        stand_in=str(raw.get("stand_in") or ""),
    )


def truths(in_service: Sequence[str], reports: Mapping[str, Mapping]) -> list[HostTruth]:
    """The in-service hosts' truths, in the group's order; a report from a host not in service is not a vote."""
    return [parse_report(instance, reports.get(instance)) for instance in in_service]


def holds(gate: str, tag: str, host: HostTruth) -> bool:
    """Does this host hold what `gate` asks for `tag`: staged and present (stage), or active and ready (activate/rollback)?"""
    if not host.reported:
        return False
    if HOST_GATE[gate] == "stage":
        return host.staged == tag and host.staged_present
    return host.active == tag and host.ready


# A host's clock and liftoff's may differ by this much (both NTP-synced) when a gate's time is compared with a switch's.
CLOCK_SKEW_SECONDS = 5.0


def failed_gate(gate: str, tag: str, host: HostTruth, *, since: float | None = None) -> str:
    """The reason the host's own gate for `tag` failed ('' when it did not): final, waiting will not change it.
    With `since` (epoch seconds: when this switch began), a failure the host recorded before it is an earlier
    attempt's, not this one's: the gate will run again, so it is not final and not returned."""
    last = host.last_gate
    if last.get("gate") == HOST_GATE[gate] and last.get("version") == tag and last.get("result") == GATE_FAILED:
        if since is not None and _before(last.get("at", ""), since - CLOCK_SKEW_SECONDS):
            return ""
        return last.get("reason") or "the host's gate failed (no reason given)"
    return ""


def _before(at: str, epoch: float) -> bool:
    """Is the host's ISO time `at` earlier than `epoch`? An unreadable time is never earlier (it counts)."""
    try:
        return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp() < epoch
    except ValueError:
        return False


def canary_verdict(tag: str, hosts: Sequence[HostTruth], *, since: float | None = None) -> tuple[str, str] | None:
    """The first host (in the group's order) whose activate gate for `tag` failed on its canary's verdict, and
    the judge's reason without the prefix; None when no canary judged `tag` bad. Only the gate's own result
    counts: the report's `canary` block is what the judge measured, shown, never the verdict itself."""
    for host in hosts:
        reason = failed_gate("activate", tag, host, since=since)
        if reason.startswith(CANARY_PREFIX):
            return host.instance, reason[len(CANARY_PREFIX):]
    return None


def why_not(gate: str, tag: str, host: HostTruth, *, since: float | None = None) -> str:
    """Why this host does not (yet) hold it, in one line naming the host."""
    if not host.reported:
        return f"{host.instance}: {host.error}"
    failed = failed_gate(gate, tag, host, since=since)
    if failed:
        return f"{host.instance}: {HOST_GATE[gate]} gate of {tag} failed: {failed}"
    if failed_gate(gate, tag, host):
        return (f"{host.instance}: its {HOST_GATE[gate]} gate of {tag} failed at {host.last_gate.get('at') or '-'}, before "
                "this switch; waiting for it to run again")
    if HOST_GATE[gate] == "stage":
        if host.staged != tag:
            return f"{host.instance}: staged {host.staged or 'nothing'}, not {tag}" + _running(host, gate, tag)
        return f"{host.instance}: {tag} staged but its image is not in the host's Docker" + _running(host, gate, tag)
    if host.active != tag:
        return f"{host.instance}: serves {host.active or 'nothing'}, not {tag}" + _running(host, gate, tag)
    return f"{host.instance}: serves {tag} but it does not answer ready" + _running(host, gate, tag)


def _running(host: HostTruth, gate: str, tag: str) -> str:
    last = host.last_gate
    if last.get("gate") == HOST_GATE[gate] and last.get("version") == tag and last.get("result") == GATE_RUNNING:
        return f" (its {last['gate']} gate is running since {last.get('at') or '-'})"
    return ""


@dataclass(frozen=True)
class FleetVerdict:
    verified: bool
    final: bool  # a host's gate failed for this tag: waiting will not verify it
    message: str
    disagreeing: tuple[str, ...] = ()  # the hosts that do not hold it


def judge(gate: str, tag: str, hosts: Sequence[HostTruth], *, desired_count: int, since: float | None = None) -> FleetVerdict:
    """Is `gate` of `tag` verified on the fleet: every in-service host holds it (and as many as desired)?
    `since`: when this switch began; a host's failure from before it is not this switch's (`failed_gate`)."""
    disagreeing = [host for host in hosts if not holds(gate, tag, host)]
    failed = [host for host in disagreeing if failed_gate(gate, tag, host, since=since)]
    what = "staged (image present)" if HOST_GATE[gate] == "stage" else "active and ready"
    stand_in = next((host.stand_in for host in hosts if host.stand_in), "")
    note = f" [stand-in: {stand_in}]" if stand_in else ""
    if failed:
        return FleetVerdict(False, True, "; ".join(why_not(gate, tag, host, since=since) for host in failed) + note,
                            tuple(h.instance for h in disagreeing))
    if disagreeing:
        return FleetVerdict(False, False, f"{len(hosts) - len(disagreeing)} of {len(hosts)} host(s) report {tag} {what}; "
                            + "; ".join(why_not(gate, tag, host, since=since) for host in disagreeing) + note,
                            tuple(h.instance for h in disagreeing))
    if len(hosts) < desired_count:
        return FleetVerdict(False, False, f"{len(hosts)} of {desired_count} host(s) in service report {tag} {what}{note}")
    return FleetVerdict(True, False, f"every host in service ({len(hosts)}) reports {tag} {what}{note}")


def disagreeing(gate: str, tag: str, hosts: Sequence[HostTruth]) -> list[HostTruth]:
    return [host for host in hosts if not holds(gate, tag, host)]


def redrive_message(gate: str, tag: str, hosts: Sequence[HostTruth]) -> str:
    """What a verb whose target the stack already names says before it runs the host gate again."""
    off = disagreeing(gate, tag, hosts)
    return (f"the stack already names {tag}, but {len(off)} of {len(hosts)} host(s) do not hold it: "
            + "; ".join(why_not(gate, tag, host) for host in off))


def age_seconds(reported_at: str, now: float) -> float | None:
    """How old a report is on the reader's clock (None when it has no parseable time)."""
    try:
        return max(0.0, now - datetime.fromisoformat(reported_at.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def warm_hosts(hosts: Sequence[HostTruth], version: str | None) -> list[HostTruth]:
    """The hosts that report `version` warm now: where a rollback to it is a flip."""
    return [host for host in hosts if version and host.reported and host.warm == version]


def one_wave(gate: str, tag: str, hosts: Sequence[HostTruth] | None) -> bool:
    """May every in-service host switch to `tag` at once? Only where each reports it warm: there the switch
    is a flip to what served a moment ago (no pull, no start, no canary), and one host after the other would
    only make a fleet's rollback as slow as its size. Anything unknown (no hosts, a host without a report)
    keeps one at a time, where the first host's failure stops the rest."""
    return HOST_GATE[gate] == "activate" and bool(hosts) and len(warm_hosts(hosts, tag)) == len(hosts)


# The stack output naming the activate gate's document: present on stacks whose activation can run in waves.
ACTIVATE_DOCUMENT_OUTPUT = "ActivateDocumentName"


def fleet_canary(gate: str, tag: str, hosts: Sequence[HostTruth] | None, *, canary_on: bool) -> str | None:
    """The host whose activate gate runs first and alone, before the stack moves (the fleet's canary), or None.

    Only an activation of a new version on two or more hosts, each reporting for itself, with the host canary on:
    once that host's own canary passed, the rest switch a quarter of the fleet at a time. A bad version then
    costs one host's canary and never reaches the stack. Anything unknown (a host without a report, a harness
    answering for one) keeps one host at a time, where the first failure stops the rest. The host is the first,
    in the group's order, that serves ready and does not already hold `tag`."""
    if gate != "activate" or not canary_on or not hosts or len(hosts) < 2:
        return None
    if any(not host.reported or host.stand_in for host in hosts):
        return None
    candidates = [host for host in hosts if host.ready and not holds(gate, tag, host)]
    return candidates[0].instance if candidates else None
