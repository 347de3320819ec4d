"""Ingest: AWS IoT Core (a thing, certificate and scoped policy per truck of the race, topic rules)
into a KMS-encrypted Kinesis data stream, then Firehose from the stream into the data lake.

All of it lives the race. The day shows in one place only: each topic rule stamps the day's stage
on every record (an in-place update of the rule's SQL), and Firehose partitions the lake by that
stamp and the arrival day (dynamic partitioning), so one query spans the race."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from . import iam
from .component import Component
from .config import StackConfig, TruckSpec
from .datalake import ERRORS_PREFIX, TELEMETRY_PREFIX, DataLake
from .kms import Kms

TELEMETRY_METRIC = "TelemetryMessages"
HEARTBEAT_METRIC = "Heartbeats"
NO_STAGE = "no-stage"  # the stamp between stages (a record sent then is kept, under this partition)
# Firehose's dynamic partitioning needs buffers of at least 64 MB (it then still flushes every minute).
DYNAMIC_PARTITIONING_BUFFER_MB = 64
LAKE_PREFIX = (TELEMETRY_PREFIX + "stage=!{partitionKeyFromQuery:stage}/"
               "year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/")


@dataclass(frozen=True)
class TruckIdentity:
    spec: TruckSpec
    thing: aws.iot.Thing
    certificate: aws.iot.Certificate


@dataclass(frozen=True)
class Ingest:
    stream: aws.kinesis.Stream
    delivery: aws.kinesis.FirehoseDeliveryStream
    trucks: list[TruckIdentity]
    endpoint: pulumi.Output[str]


def telemetry_sql(truck: TruckSpec, stage: str | None) -> str:
    # The rule stamps the truck, the day's stage and the arrival time: the lake never trusts the payload
    # for any of them. The stage is the only part that changes from one day to the next.
    return (f"SELECT *, '{truck.name}' AS truck, '{stage or NO_STAGE}' AS stage, timestamp() AS received_at "
            f"FROM '{truck.telemetry_topic}'")


def heartbeat_sql(truck: TruckSpec) -> str:
    return f"SELECT * FROM '{truck.heartbeat_topic}'"


def certificate_name(truck: TruckSpec) -> str:
    generation = truck.certificate_generation
    return f"{truck.name}-cert" + (f"-g{generation}" if generation else "")


def _count_metric(truck: TruckSpec, metric: str,
                  role_arn: pulumi.Input[str]) -> aws.iot.TopicRuleCloudwatchMetricArgsDict:
    return {"metric_namespace": truck.metric_namespace, "metric_name": metric, "metric_value": "1",
            "metric_unit": "Count", "role_arn": role_arn}


def _truck(component: Component, config: StackConfig, truck: TruckSpec, account_id: pulumi.Output[str],
           stream: aws.kinesis.Stream, rule_role: aws.iam.Role, rule_policy: aws.iam.RolePolicy) -> TruckIdentity:
    opts = component.opts
    thing = aws.iot.Thing(f"{truck.name}-thing", name=truck.thing_name,
                          attributes={"race": config.race_id, "truck": truck.name}, opts=opts())
    # AWS generates the key pair; the private key only ever exists as a Pulumi secret output. The
    # certificate lasts the race: only `truckctl rotate-cert` raises its generation (a new logical name,
    # so Pulumi creates the new one before deleting the old).
    certificate = aws.iot.Certificate(certificate_name(truck), active=True, opts=opts())
    policy = aws.iot.Policy(
        f"{truck.name}-iot-policy", name=config.name(f"{truck.name}-bridge"),
        policy=account_id.apply(lambda account: iam.iot_thing_policy(config.region, account, truck.thing_name,
                                                                     truck.topic_prefix)),
        opts=opts())
    aws.iot.PolicyAttachment(f"{truck.name}-policy-attachment", policy=policy.name, target=certificate.arn,
                             opts=opts())
    aws.iot.ThingPrincipalAttachment(f"{truck.name}-thing-principal", thing=thing.name,
                                     principal=certificate.arn, opts=opts())
    aws.iot.TopicRule(
        f"{truck.name}-telemetry-rule", name=config.ident(f"{truck.name}_telemetry"), enabled=True,
        description=f"{truck.name} telemetry into the stream, counted for the telemetry-stopped alarm",
        sql=telemetry_sql(truck, config.stage), sql_version="2016-03-23",
        kineses=[{"stream_name": stream.name, "partition_key": truck.name, "role_arn": rule_role.arn}],
        cloudwatch_metrics=[_count_metric(truck, TELEMETRY_METRIC, rule_role.arn)],
        opts=opts(depends_on=[rule_policy]))  # the role can act before the first message arrives
    aws.iot.TopicRule(
        f"{truck.name}-heartbeat-rule", name=config.ident(f"{truck.name}_heartbeat"), enabled=True,
        description=f"{truck.name} node heartbeats, counted for the heartbeat-missing alarm",
        sql=heartbeat_sql(truck), sql_version="2016-03-23",
        cloudwatch_metrics=[_count_metric(truck, HEARTBEAT_METRIC, rule_role.arn)],
        opts=opts(depends_on=[rule_policy]))
    return TruckIdentity(truck, thing, certificate)


def build(config: StackConfig, provider: pulumi.ProviderResource, kms: Kms, lake: DataLake,
          account_id: pulumi.Output[str]) -> Ingest:
    component = Component("Ingest", "ingest", provider)
    opts = component.opts
    stream = aws.kinesis.Stream(
        "telemetry-stream", name=config.name("telemetry"),
        stream_mode_details={"stream_mode": "PROVISIONED"}, shard_count=1,  # 1 MB/s in: ample for two trucks
        retention_period=24, encryption_type="KMS", kms_key_id=kms.key.arn, opts=opts())

    rule_role, rule_policy = iam.service_role(
        component, "iot-rule-role", config.name("iot-rules"),
        account_id.apply(lambda account: iam.trust_policy("iot.amazonaws.com", account)),
        pulumi.Output.all(stream.arn, kms.key.arn).apply(
            lambda arns: iam.iot_ingest_policy(arns[0], arns[1], f"truckctl/{config.race_id}")),
        "IoT topic rules: put telemetry on the race's stream and count messages")
    trucks = [_truck(component, config, truck, account_id, stream, rule_role, rule_policy) for truck in config.trucks]

    firehose_role, firehose_policy = iam.service_role(
        component, "firehose-role", config.name("firehose"),
        account_id.apply(lambda account: iam.trust_policy("firehose.amazonaws.com", account)),
        pulumi.Output.all(stream.arn, lake.bucket.arn, kms.key.arn).apply(
            lambda arns: iam.firehose_policy(arns[0], arns[1], arns[2], config.region,
                                             [TELEMETRY_PREFIX, ERRORS_PREFIX])),
        "Firehose: read the telemetry stream, write the data lake")
    delivery = aws.kinesis.FirehoseDeliveryStream(
        "lake-delivery", name=config.name("lake-delivery"), destination="extended_s3",
        # A stream source is encrypted by the stream itself; objects are written with the customer key.
        kinesis_source_configuration={"kinesis_stream_arn": stream.arn, "role_arn": firehose_role.arn},
        extended_s3_configuration={
            "role_arn": firehose_role.arn,
            "bucket_arn": lake.bucket.arn,
            "kms_key_arn": kms.key.arn,
            "prefix": LAKE_PREFIX,
            "error_output_prefix": ERRORS_PREFIX + "!{firehose:error-output-type}/year=!{timestamp:yyyy}"
                                   "/month=!{timestamp:MM}/day=!{timestamp:dd}/",
            "buffering_size": DYNAMIC_PARTITIONING_BUFFER_MB,
            "buffering_interval": 60,
            "compression_format": "GZIP",
            "dynamic_partitioning_configuration": {"enabled": True, "retry_duration": 300},
            "processing_configuration": {"enabled": True, "processors": [
                # The stage the topic rule stamped becomes the lake partition.
                {"type": "MetadataExtraction", "parameters": [
                    {"parameter_name": "MetadataExtractionQuery", "parameter_value": "{stage:.stage}"},
                    {"parameter_name": "JsonParsingEngine", "parameter_value": "JQ-1.6"}]},
                # IoT records carry no newline; Athena's JSON SerDe needs one record per line.
                {"type": "AppendDelimiterToRecord"}]},
        },
        tags={"Name": config.name("lake-delivery")},
        opts=opts(depends_on=[firehose_policy]))  # IAM first, or Firehose's first delivery is denied
    endpoint = aws.iot.get_endpoint_output(endpoint_type="iot:Data-ATS", opts=component.invoke_opts())
    component.register_outputs({"stream": stream.name})
    return Ingest(stream, delivery, trucks, endpoint.endpoint_address)
