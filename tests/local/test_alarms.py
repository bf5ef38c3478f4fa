"""The alarm stand-in's evaluation: the synthesized alarm's own rule on complete, clock-aligned periods."""
from __future__ import annotations

from local.alarms import SHARE, UNHEALTHY, AlarmRule, Sample, datapoints, evaluate

SHARE_ALARM = {
    "AlarmName": "production-service-AlarmsRelease5xx", "Threshold": 1.0, "ComparisonOperator": "GreaterThanThreshold",
    "EvaluationPeriods": 2, "DatapointsToAlarm": 1,
    "Metrics": [{"Id": "expr", "Expression": "..."}, *({"Id": i, "MetricStat": {"Period": 60}} for i in ("requests", "target5xx", "elb5xx"))],
}


def steady(start: float, stop: float, *, rate: int, errors_from: float | None = None, error_share: float = 0.5) -> list[Sample]:
    samples, requests, errors = [], 0, 0
    for second in range(int(start), int(stop) + 1, 2):
        requests += 2 * rate
        if errors_from is not None and second >= errors_from:
            errors += int(2 * rate * error_share)
        samples.append(Sample(at=float(second), requests=requests, errors=errors, unhealthy=0))
    return samples


def test_the_rule_is_read_from_the_alarm_as_synthesized():
    rule = AlarmRule.from_alarm(SHARE_ALARM)
    assert (rule.kind, rule.threshold, rule.period, rule.evaluation_periods, rule.datapoints_to_alarm) == (SHARE, 1.0, 60, 2, 1)
    unhealthy = AlarmRule.from_alarm({"AlarmName": "u", "MetricName": "UnHealthyHostCount", "Period": 60, "Threshold": 1,
                                      "ComparisonOperator": "GreaterThanOrEqualToThreshold", "EvaluationPeriods": 1})
    assert unhealthy.kind == UNHEALTHY and unhealthy.datapoints_to_alarm == 1
    assert AlarmRule.from_alarm({"AlarmName": "cpu", "MetricName": "CPUUtilization", "Threshold": 80,
                                 "ComparisonOperator": "GreaterThanThreshold", "EvaluationPeriods": 3}) is None


def test_errors_count_only_once_their_period_is_complete():
    rule = AlarmRule.from_alarm(SHARE_ALARM)
    samples = steady(0, 150, rate=50, errors_from=130)
    # At 150 s the period 120-180 is still open: the errors since 130 s are not judged yet.
    assert evaluate(rule, samples, now=150)[0] == "OK"
    samples = steady(0, 181, rate=50, errors_from=130)
    state, reason = evaluate(rule, samples, now=181)
    assert state == "ALARM" and "Threshold Crossed: 1 out of the last 2 datapoints" in reason


def test_a_share_below_the_threshold_and_no_traffic_do_not_breach():
    rule = AlarmRule.from_alarm(SHARE_ALARM)
    assert evaluate(rule, steady(0, 250, rate=50, errors_from=0, error_share=0.005), now=250)[0] == "OK"
    idle = [Sample(at=float(t), requests=0, errors=0, unhealthy=0) for t in range(0, 250, 2)]
    assert datapoints(rule, idle, now=250) == [0.0, 0.0]


def test_periods_the_stand_in_did_not_watch_whole_are_left_out():
    rule = AlarmRule.from_alarm(SHARE_ALARM)
    assert datapoints(rule, steady(100, 181, rate=50), now=181) == [0.0]  # 60-120 began before the first sample
