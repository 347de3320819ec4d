"""Alerting: an encrypted SNS topic with the race's subscriptions (both live the race), and CloudWatch
alarms: telemetry stopped and heartbeat missing for each truck in the day's tech zone only (a truck
absent today has no alarm: quiet, not alarming), overall ingest and lake delivery while a stage runs."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .component import Component
from .config import StackConfig
from .ingest import HEARTBEAT_METRIC, TELEMETRY_METRIC, Ingest
from .kms import Kms

# CloudWatch's shortest period for standard-resolution metrics: the truck's own monitoring and
# the lab stand-in alert within seconds; these alarms are the cloud's independent backstop.
PERIOD_S = 60
DELIVERY_STALE_S = 900  # the lake may lag the stream by buffering, never by a quarter of an hour


@dataclass(frozen=True)
class Alerting:
    topic: aws.sns.Topic
    alarms: list[aws.cloudwatch.MetricAlarm]


def topic_policy(topic_arn: str, account_id: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "CloudWatchAlarmsPublish", "Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"},
        "Action": "sns:Publish", "Resource": topic_arn,
        "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
    }]}, sort_keys=True)


def build(config: StackConfig, provider: pulumi.ProviderResource, kms: Kms, ingest: Ingest,
          account_id: pulumi.Output[str]) -> Alerting:
    component = Component("Alerting", "alerting", provider)
    opts = component.opts
    topic = aws.sns.Topic("alerts-topic", name=config.name("alerts"), kms_master_key_id=kms.key.arn,
                          display_name=f"{config.race_id} alerts"[:100], opts=opts())
    aws.sns.TopicPolicy("alerts-topic-policy", arn=topic.arn,
                        policy=pulumi.Output.all(topic.arn, account_id).apply(lambda a: topic_policy(a[0], a[1])),
                        opts=opts())
    for index, email in enumerate(config.alert_emails):
        aws.sns.TopicSubscription(f"alerts-email-{index + 1}", topic=topic.arn, protocol="email", endpoint=email,
                                  opts=opts())

    def alarm(name: str, description: str, namespace: str, metric_name: str, statistic: str,
              comparison_operator: str, threshold: float, treat_missing_data: str,
              dimensions: dict[str, pulumi.Input[str]] | None = None) -> aws.cloudwatch.MetricAlarm:
        return aws.cloudwatch.MetricAlarm(
            name, name=config.name(name), alarm_description=description, namespace=namespace,
            metric_name=metric_name, dimensions=dimensions, statistic=statistic,
            comparison_operator=comparison_operator, threshold=threshold, treat_missing_data=treat_missing_data,
            alarm_actions=[topic.arn], ok_actions=[topic.arn], evaluation_periods=1, datapoints_to_alarm=1,
            period=PERIOD_S, opts=opts())

    alarms: list[aws.cloudwatch.MetricAlarm] = []
    if config.stage is None:  # between stages no truck is expected to send: nothing to watch
        component.register_outputs({"topic_arn": topic.arn})
        return Alerting(topic, alarms)
    today = {t.name for t in config.today}
    for truck in (t for t in config.trucks if t.name in today):
        # No data is the failure being watched for: missing datapoints breach.
        alarms.append(alarm(
            f"{truck.name}-telemetry-stopped", f"No telemetry from {truck.name} reached IoT Core for a minute",
            namespace=truck.metric_namespace, metric_name=TELEMETRY_METRIC, statistic="Sum",
            comparison_operator="LessThanThreshold", threshold=1, treat_missing_data="breaching"))
        alarms.append(alarm(
            f"{truck.name}-heartbeat-missing", f"No node heartbeat from {truck.name} for a minute",
            namespace=truck.metric_namespace, metric_name=HEARTBEAT_METRIC, statistic="Sum",
            comparison_operator="LessThanThreshold", threshold=1, treat_missing_data="breaching"))
    alarms.append(alarm(
        "ingest-stopped", "No record reached the telemetry stream for a minute (all trucks)",
        namespace="AWS/Kinesis", metric_name="IncomingRecords", dimensions={"StreamName": ingest.stream.name},
        statistic="Sum", comparison_operator="LessThanThreshold", threshold=1, treat_missing_data="breaching"))
    alarms.append(alarm(
        "lake-delivery-stale", "Firehose has not delivered to the data lake for a quarter of an hour",
        namespace="AWS/Firehose", metric_name="DeliveryToS3.DataFreshness",
        dimensions={"DeliveryStreamName": ingest.delivery.name}, statistic="Maximum",
        comparison_operator="GreaterThanThreshold", threshold=DELIVERY_STALE_S, treat_missing_data="notBreaching"))
    component.register_outputs({"topic_arn": topic.arn})
    return Alerting(topic, alarms)
