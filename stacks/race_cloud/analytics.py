"""Analytics: one Glue table over the whole race's telemetry, partitioned by stage and day (partition
projection, so Athena needs no crawler: one query spans the race), and an Athena workgroup that
writes encrypted results into the lake."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .component import Component
from .config import StackConfig
from .datalake import ATHENA_RESULTS_PREFIX, TELEMETRY_PREFIX, DataLake
from .ingest import NO_STAGE
from .kms import Kms

# What the trucks' transponder feed carries, plus what the IoT rule stamps (truck, received_at).
TELEMETRY_COLUMNS = [
    ("rider", "string", "rider or transponder id"),
    ("ts", "string", "time of the fix at the transponder (ISO 8601)"),
    ("lat", "double", "latitude, degrees"),
    ("lon", "double", "longitude, degrees"),
    ("speed_kmh", "double", "ground speed, km/h"),
    ("truck", "string", "truck that bridged the message (stamped by the IoT rule)"),
    ("stage", "string", "stage of the day the message arrived on (stamped by the IoT rule; also a partition)"),
    ("received_at", "bigint", "arrival at IoT Core, epoch milliseconds (stamped by the IoT rule)"),
]


@dataclass(frozen=True)
class Analytics:
    database: aws.glue.CatalogDatabase
    table: aws.glue.CatalogTable
    workgroup: aws.athena.Workgroup


PARTITIONS = (("stage", "string"), ("year", "int"), ("month", "int"), ("day", "int"))


def projection_parameters(location: str, stages: tuple[str, ...]) -> dict[str, str]:
    return {
        "classification": "json",
        "has_encrypted_data": "true",
        "projection.enabled": "true",
        "projection.stage.type": "enum", "projection.stage.values": ",".join((*stages, NO_STAGE)),
        "projection.year.type": "integer", "projection.year.range": "2020,2099",
        "projection.month.type": "integer", "projection.month.range": "1,12", "projection.month.digits": "2",
        "projection.day.type": "integer", "projection.day.range": "1,31", "projection.day.digits": "2",
        "storage.location.template": location + "stage=${stage}/year=${year}/month=${month}/day=${day}/",
    }


def build(config: StackConfig, provider: pulumi.ProviderResource, kms: Kms, lake: DataLake) -> Analytics:
    component = Component("Analytics", "analytics", provider)
    opts = component.opts
    database = aws.glue.CatalogDatabase("glue-database", name=config.ident("telemetry"),
                                        description=f"{config.race_name} telemetry, every stage", opts=opts())
    location = lake.bucket.bucket.apply(lambda name: f"s3://{name}/{TELEMETRY_PREFIX}")
    table = aws.glue.CatalogTable(
        "glue-telemetry-table", name="telemetry", database_name=database.name, table_type="EXTERNAL_TABLE",
        parameters=location.apply(lambda where: projection_parameters(where, config.stages)),
        partition_keys=[{"name": part, "type": kind} for part, kind in PARTITIONS],
        storage_descriptor={
            "location": location,
            "input_format": "org.apache.hadoop.mapred.TextInputFormat",
            "output_format": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
            "ser_de_info": {"serialization_library": "org.openx.data.jsonserde.JsonSerDe",
                            "parameters": {"ignore.malformed.json": "true"}},
            "columns": [{"name": n, "type": t, "comment": c} for n, t, c in TELEMETRY_COLUMNS],
        },
        opts=opts())
    workgroup = aws.athena.Workgroup(
        "athena-workgroup", name=config.name("analytics"), force_destroy=True,
        configuration={
            "enforce_workgroup_configuration": True,
            "publish_cloudwatch_metrics_enabled": True,
            "result_configuration": {
                "output_location": lake.bucket.bucket.apply(lambda name: f"s3://{name}/{ATHENA_RESULTS_PREFIX}"),
                "encryption_configuration": {"encryption_option": "SSE_KMS", "kms_key_arn": kms.key.arn},
            },
        },
        opts=opts())
    component.register_outputs({"database": database.name})
    return Analytics(database, table, workgroup)
