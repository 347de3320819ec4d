"""Wire the components together for the race and export the outputs `CloudOutputs` is built from.

One stack for the whole race, named after the race id (`pulumi preview -s gdf27`). Its config
`stage` is the day the race is moved to (`truckctl up stage-2` sets it; by hand:
`pulumi preview -s gdf27 -c stage=stage-2`); without it the race's cloud stands between stages
(no tech zone: no per-truck alarm, no day's LAN route). `certificateGenerations` (JSON, truck ->
number) is raised by `truckctl rotate-cert TRUCK` only.
"""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_aws as aws

from truckctl.config.loader import load_race, load_stage, stage_names
from truckctl.errors import TruckctlError
from truckctl.project import Project

from . import alerting, analytics, datalake, ingest, kms, network, vpn
from .amazon_root_ca import AMAZON_ROOT_CA_1
from .config import MQTT_PORT, StackConfig, from_race, parse_generations

# The pulumi_aws submodules this program uses. They import lazily (0.1-0.8 s each): the offline
# plan's worker imports them once, then forks one child per stage with warm imports.
AWS_SERVICES = ("athena", "cloudwatch", "ec2", "glue", "iam", "iot", "kinesis", "kms", "s3", "sns", "ssm")


def load_config(project_dir: Path, stack_name: str) -> StackConfig:
    settings = pulumi.Config()
    project = Project(project_dir)
    day = settings.get("stage") or None
    try:
        loaded = load_race(project)
        stage = load_stage(project, day, loaded) if day else None
        names = stage_names(project)
    except TruckctlError as exc:
        # One line per problem, no traceback: the same errors `truckctl validate` prints.
        raise pulumi.RunError(f"invalid configuration for stack {stack_name}:\n{exc}") from None
    if stack_name != loaded.race.race.id:
        raise pulumi.RunError(f"stack {stack_name}: the race's one stack is named after the race id "
                              f"({loaded.race.race.id}); a stage is its config: "
                              f"pulumi preview -s {loaded.race.race.id} -c stage=stage-1")
    private_key = settings.get_secret("vpnPrivateKey")
    if private_key is None:
        raise pulumi.RunError("missing config vpnPrivateKey: truckctl sets it on the first run; by hand: "
                              "pulumi config set --secret vpnPrivateKey \"$(wg genkey)\"")
    return from_race(loaded.race, names, stage=stage, delete_data=settings.get_bool("deleteData") or False,
                     vpn_private_key=private_key, generations=parse_generations(settings.get("certificateGenerations")))


def build_stack(project_dir: Path, stack_name: str) -> None:
    config = load_config(project_dir, stack_name)
    # An explicit provider: the region comes from the race file, not from a stack config twin.
    provider = aws.Provider("aws", region=config.region, default_tags={"tags": config.tags})
    invoke = pulumi.InvokeOutputOptions(provider=provider)
    account_id = aws.get_caller_identity_output(opts=invoke).account_id
    zones = aws.get_availability_zones_output(state="available", opts=invoke).names

    keys = kms.build(config, provider, account_id)
    net = network.build(config, provider, zones)
    lake = datalake.build(config, provider, keys, account_id)
    feed = ingest.build(config, provider, keys, lake, account_id)
    analytics.build(config, provider, keys, lake)
    alerts = alerting.build(config, provider, keys, feed, account_id)
    gateway = vpn.build(config, provider, keys, net, account_id)

    pulumi.export("region", config.region)
    pulumi.export("mqttHost", feed.endpoint)
    pulumi.export("mqttPort", MQTT_PORT)
    pulumi.export("caPem", AMAZON_ROOT_CA_1)
    pulumi.export("trucks", {
        t.spec.name: {
            "thingName": t.thing.name,
            "clientId": t.spec.thing_name,
            "topicPrefix": t.spec.topic_prefix,
            # A certificate is public; the provider marks it secret only because it ships with the key.
            "certificatePem": pulumi.Output.unsecret(t.certificate.certificate_pem),
            "certificateRef": t.certificate.arn,
            # What `down` deactivates first (UpdateCertificate takes the id, not the ARN).
            "certificateId": t.certificate.id,
        }
        for t in feed.trucks
    })
    pulumi.export("truckPrivateKeys", pulumi.Output.secret({t.spec.name: t.certificate.private_key
                                                            for t in feed.trucks}))
    pulumi.export("telemetryStream", feed.stream.name)
    pulumi.export("datalakeBucket", lake.bucket.bucket)
    pulumi.export("alertTopicArn", alerts.topic.arn)
    pulumi.export("vpnEndpoint", pulumi.Output.concat(gateway.eip.public_ip, ":", str(config.vpn_port)))
    pulumi.export("vpnPublicKey", gateway.public_key)
    pulumi.export("stage", config.stage or "")  # the day the race is at ("": between stages)
    pulumi.export("trucksToday", [t.name for t in config.today])
