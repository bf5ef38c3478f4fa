"""The alarm stand-in: CloudWatch's evaluation of the release alarms, against the load balancer stand-in.

moto stores alarms but never evaluates one, and nothing here publishes the ALB's metrics. So this
thread reads what the load balancer stand-in (HAProxy) counted — requests and 5xx answers at its
frontend (the targets' and its own, as RequestCount and HTTPCode_Target_5XX + HTTPCode_ELB_5XX),
and the targets the controller reports unhealthy (UnHealthyHostCount) — and evaluates each release
alarm's own definition as synthesized (threshold, comparison, period, evaluation periods, datapoints
to alarm) on complete periods aligned to the clock, as CloudWatch does; then it sets the alarm's
state in the emulator with a reason in CloudWatch's words. What it does not model: CloudWatch's
ingestion and evaluation delay (up to about a minute more on AWS), and any metric but these two.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from local.follower import Follower
from local.lb import Controller, LoadBalancer

Say = Callable[[str], None]
SHARE = "5xx-share"
UNHEALTHY = "unhealthy-hosts"
COMPARISONS = {
    "GreaterThanThreshold": lambda value, threshold: value > threshold,
    "GreaterThanOrEqualToThreshold": lambda value, threshold: value >= threshold,
    "LessThanThreshold": lambda value, threshold: value < threshold,
    "LessThanOrEqualToThreshold": lambda value, threshold: value <= threshold,
}


@dataclass(frozen=True)
class Sample:
    at: float  # wall clock, seconds
    requests: int
    errors: int
    unhealthy: int


@dataclass(frozen=True)
class AlarmRule:
    name: str
    kind: str  # SHARE or UNHEALTHY
    threshold: float
    comparison: str
    period: int
    evaluation_periods: int
    datapoints_to_alarm: int

    @classmethod
    def from_alarm(cls, alarm: dict) -> "AlarmRule | None":
        """The rule of a described alarm, or None for a metric the stand-in cannot see."""
        metrics = alarm.get("Metrics") or []
        ids = {metric.get("Id") for metric in metrics}
        if alarm.get("MetricName") == "UnHealthyHostCount":
            kind, period = UNHEALTHY, int(alarm.get("Period") or 60)
        elif {"requests", "target5xx", "elb5xx"} <= ids:
            kind = SHARE
            period = next(int(m["MetricStat"]["Period"]) for m in metrics if m.get("Id") == "requests")
        else:
            return None
        return cls(name=alarm["AlarmName"], kind=kind, threshold=float(alarm["Threshold"]),
                   comparison=alarm["ComparisonOperator"], period=period,
                   evaluation_periods=int(alarm["EvaluationPeriods"]),
                   datapoints_to_alarm=int(alarm.get("DatapointsToAlarm") or alarm["EvaluationPeriods"]))


def datapoints(rule: AlarmRule, samples: list[Sample], now: float) -> list[float]:
    """The rule's datapoints over its last complete periods (oldest first); periods with no data are left out
    (the release alarms treat missing data as not breaching)."""
    end = int(now // rule.period) * rule.period
    values = []
    for index in range(rule.evaluation_periods, 0, -1):
        start, stop = end - index * rule.period, end - (index - 1) * rule.period
        inside = [s for s in samples if start <= s.at <= stop]
        before = [s for s in samples if s.at <= start]
        if not inside or not before:
            continue  # the stand-in was not watching for the whole period
        if rule.kind == UNHEALTHY:
            values.append(float(max(s.unhealthy for s in inside)))
            continue
        first, last = before[-1], inside[-1]
        requests, errors = last.requests - first.requests, last.errors - first.errors
        values.append(100.0 * errors / requests if requests > 0 else 0.0)
    return values


def evaluate(rule: AlarmRule, samples: list[Sample], now: float) -> tuple[str, str]:
    """ALARM or OK, with CloudWatch's kind of reason."""
    values = datapoints(rule, samples, now)
    breaching = [value for value in values if COMPARISONS[rule.comparison](value, rule.threshold)]
    shown = ", ".join(f"{value:.1f}" for value in values[-rule.evaluation_periods:])
    if len(breaching) >= rule.datapoints_to_alarm:
        return "ALARM", (f"Threshold Crossed: {len(breaching)} out of the last {rule.evaluation_periods} datapoints "
                         f"[{shown}] crossed the threshold ({rule.threshold:g}) ({rule.comparison}, {rule.period} s periods)")
    return "OK", f"{len(breaching)} of the last {len(values)} datapoints [{shown}] crossed the threshold ({rule.threshold:g})"


class AlarmStandIn:
    """Samples the load balancer stand-in every `interval` s and keeps the alarms' states in the emulator."""

    def __init__(self, balancer: LoadBalancer, controller: Controller, cloudwatch, alarm_names: list[str], *,
                 interval: float = 2.0, say: Say = print):
        self.balancer, self.controller, self.cloudwatch = balancer, controller, cloudwatch
        self.interval, self.say = interval, say
        described = cloudwatch.describe_alarms(AlarmNames=list(alarm_names))["MetricAlarms"]
        self.rules = [rule for rule in map(AlarmRule.from_alarm, described) if rule is not None]
        self.samples: list[Sample] = []
        self.states: dict[str, str] = {}
        self.changes: list[tuple[float, str, str, str]] = []  # (when, alarm, state, reason)
        self._follower = Follower("alarm stand-in", self.evaluate_once, interval=interval, say=say)

    def sample(self) -> Sample:
        rows = self.balancer.command("show stat").splitlines()
        header = rows[0].lstrip("# ").split(",")
        frontend = next(row.split(",") for row in rows[1:] if row.split(",")[1:2] == ["FRONTEND"])
        requests, errors = (int(frontend[header.index(key)] or 0) for key in ("req_tot", "hrsp_5xx"))
        unhealthy = sum(1 for state in self.controller.states().values() if state == "unhealthy")
        return Sample(at=time.time(), requests=requests, errors=errors, unhealthy=unhealthy)

    def evaluate_once(self) -> None:
        self.samples.append(self.sample())
        now = self.samples[-1].at
        keep = max((rule.period * (rule.evaluation_periods + 1) for rule in self.rules), default=0)
        self.samples = [s for s in self.samples if s.at >= now - keep]
        for rule in self.rules:
            state, reason = evaluate(rule, self.samples, now)
            if self.states.get(rule.name) != state:
                self.cloudwatch.set_alarm_state(AlarmName=rule.name, StateValue=state, StateReason=reason)
                self.states[rule.name] = state
                self.changes.append((now, rule.name, state, reason))
                self.say(f"  alarm stand-in: {rule.name} -> {state}: {reason}")

    def start(self) -> None:
        self._follower.start()

    def stop(self) -> None:
        self._follower.stop()


def start_release_alarms(balancer: LoadBalancer, controller: Controller, cloudwatch, outputs: dict[str, str], *,
                         say: Say = print) -> "AlarmStandIn | None":
    """The stack's release alarms (its DeploymentAlarmNames output) evaluated on what `balancer` counts, started;
    None when the stack names none."""
    from release.pure import bake

    names = list(bake.alarm_names(outputs))
    if not names:
        return None
    alarms = AlarmStandIn(balancer, controller, cloudwatch, names, say=say)
    alarms.start()
    return alarms
