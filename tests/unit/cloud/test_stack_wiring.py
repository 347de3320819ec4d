"""The stack program under Pulumi's mocks: assert the wiring between resources, not just presence."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from tests.helpers import REPO
from tests.unit.cloud.support import Plan
from truckctl.cloud.iam_policy import allows
from truckctl.cloud.offline import plan_offline
from truckctl.cloud.offline_worker import placeholder_vpn_key
from truckctl.cloud.outputs import CloudOutputs, heartbeat_topic, telemetry_topic
from truckctl.cloud.stack_outputs import cloud_outputs_from_stack, truck_certificates
from truckctl.errors import TruckctlError
from truckctl.project import Project

RACE = "gdf27"
TRUCKS = ("truck-a", "truck-b")
ARN_PREFIX = "arn:aws:"


def test_stage1_covers_every_concern(plan1: Plan) -> None:
    types = {r.type for r in plan1.resources}
    for expected in ("aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/securityGroup:SecurityGroup",
                     "aws:iot/thing:Thing", "aws:iot/certificate:Certificate", "aws:iot/policy:Policy",
                     "aws:iot/topicRule:TopicRule", "aws:kinesis/stream:Stream",
                     "aws:kinesis/firehoseDeliveryStream:FirehoseDeliveryStream", "aws:s3/bucket:Bucket",
                     "aws:s3/bucketVersioning:BucketVersioning",
                     "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
                     "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "aws:kms/key:Key",
                     "aws:glue/catalogTable:CatalogTable", "aws:cloudwatch/metricAlarm:MetricAlarm",
                     "aws:sns/topic:Topic", "aws:sns/topicSubscription:TopicSubscription", "aws:ec2/instance:Instance",
                     "aws:ec2/eip:Eip", "aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy"):
        assert expected in types, expected
    assert [s.inputs["endpoint"] for s in plan1.of_type("aws:sns/topicSubscription:TopicSubscription")] == [
        "race-ops@giro-di-finzione.example", "telemetry-oncall@giro-di-finzione.example"]


def test_vpc_spans_two_zones_with_public_and_private_subnets(plan1: Plan) -> None:
    subnets = {s.name: s.inputs for s in plan1.of_type("aws:ec2/subnet:Subnet")}
    assert sorted(subnets) == ["private-a", "private-b", "public-a", "public-b"]
    assert {s["availability_zone"] for s in subnets.values()} == {"eu-south-1a", "eu-south-1b"}
    assert all(s["map_public_ip_on_launch"] is False for s in subnets.values())
    assert plan1.named("vpc").inputs["cidr_block"] == "10.100.0.0/17"


def test_vpn_security_group_opens_only_the_wireguard_port(plan1: Plan) -> None:
    ingress = plan1.named("vpn-sg").inputs["ingress"]
    assert ingress == [{"cidr_blocks": ["0.0.0.0/0"], "description": "WireGuard from the trucks",
                        "from_port": 51820, "protocol": "udp", "to_port": 51820}]
    assert plan1.named("default-sg").inputs.get("ingress") in (None, [])


def test_alarms_point_at_the_alert_topic(plan1: Plan, stage1: dict[str, Any]) -> None:
    topic_arn = stage1["outputs_preview"]["alert_topic_arn"]
    assert topic_arn.endswith(":gdf27-alerts")  # the race's topic: no stage in its name
    alarms = plan1.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    assert len(alarms) == 2 * len(TRUCKS) + 2
    for alarm in alarms:
        assert alarm.inputs["alarm_actions"] == [topic_arn], alarm.name
        assert alarm.inputs["ok_actions"] == [topic_arn], alarm.name
        assert "alerts-topic" in alarm.depends_on


def test_per_truck_alarms_watch_the_metrics_the_topic_rules_publish(plan1: Plan) -> None:
    for truck in TRUCKS:
        for rule, alarm in ((f"{truck}-telemetry-rule", f"{truck}-telemetry-stopped"),
                            (f"{truck}-heartbeat-rule", f"{truck}-heartbeat-missing")):
            (metric,) = plan1.named(rule).inputs["cloudwatch_metrics"]
            watched = plan1.named(alarm).inputs
            assert (watched["namespace"], watched["metric_name"]) == (metric["metric_namespace"],
                                                                       metric["metric_name"])
            assert watched["namespace"] == f"truckctl/{RACE}/{truck}"
            # Silence is the failure: missing data must breach.
            assert watched["treat_missing_data"] == "breaching"
            assert watched["comparison_operator"] == "LessThanThreshold" and watched["threshold"] == 1
    overall = plan1.named("ingest-stopped").inputs
    assert overall["dimensions"] == {"StreamName": plan1.named("telemetry-stream").inputs["name"]}


def test_topic_rule_targets_the_stream(plan1: Plan) -> None:
    stream = plan1.named("telemetry-stream").inputs["name"]
    role_arn = f"arn:aws:iam::123456789012:role/{plan1.named('iot-rule-role').inputs['name']}"
    for truck in TRUCKS:
        rule = plan1.named(f"{truck}-telemetry-rule")
        assert rule.inputs["kineses"] == [{"partition_key": truck, "role_arn": role_arn, "stream_name": stream}]
        assert rule.inputs["sql"] == (f"SELECT *, '{truck}' AS truck, 'stage-1' AS stage, timestamp() AS received_at "
                                      f"FROM '{telemetry_topic(RACE, truck)}'")  # the day stamped on every record
        assert plan1.named(f"{truck}-heartbeat-rule").inputs["sql"] == \
            f"SELECT * FROM '{heartbeat_topic(RACE, truck)}'"
        assert {"telemetry-stream", "iot-rule-role-policy"} <= set(rule.depends_on)
    # ...and the rule's role may put records on that stream, and only there.
    statements = plan1.policy("iot-rule-role-policy")["Statement"]
    put = next(s for s in statements if s["Action"] == ["kinesis:PutRecord"])
    assert put["Resource"] == [f"arn:aws:kinesis:eu-south-1:123456789012:stream/{stream}"]


def test_each_truck_iot_policy_names_only_its_own_topics(plan1: Plan) -> None:
    for truck in TRUCKS:
        other = next(t for t in TRUCKS if t != truck)
        document = plan1.policy(f"{truck}-iot-policy")
        resources = [r for s in document["Statement"] for r in s["Resource"]]
        topics = [r for r in resources if ":topic/" in r or ":topicfilter/" in r]
        assert topics and all(f"/{RACE}/{truck}/" in r for r in topics), topics
        assert not any(other in r for r in resources)
        assert [r for r in resources if ":client/" in r] == [  # the bridge, and the truck's gateway agent beside it
            f"arn:aws:iot:eu-south-1:123456789012:client/{RACE}-{truck}",
            f"arn:aws:iot:eu-south-1:123456789012:client/{RACE}-{truck}-ops"]
        attachment = plan1.named(f"{truck}-policy-attachment")
        assert set(attachment.depends_on) == {f"{truck}-iot-policy", f"{truck}-cert"}
        assert set(plan1.named(f"{truck}-thing-principal").depends_on) == {f"{truck}-cert", f"{truck}-thing"}


IOT = "arn:aws:iot:eu-south-1:123456789012"


def test_a_truck_certificate_feeds_only_its_own_truck(plan1: Plan) -> None:
    """What the bridge does and no more: connect as itself, publish under its own race/truck prefix (the
    same all race long: the topic rule, not the topic, carries the day)."""
    document = plan1.policy("truck-a-iot-policy")
    own = f"{IOT}:topic/{telemetry_topic(RACE, 'truck-a')}"
    assert allows(document, "iot:Publish", own)
    assert allows(document, "iot:Publish", f"{IOT}:topic/{heartbeat_topic(RACE, 'truck-a')}/truck-a-gw")
    assert allows(document, "iot:Connect", f"{IOT}:client/{RACE}-truck-a")
    assert allows(document, "iot:Connect", f"{IOT}:client/{RACE}-truck-a-ops")  # its gateway agent (truck_ops_agent)
    refused = [
        ("iot:Publish", f"{IOT}:topic/{telemetry_topic(RACE, 'truck-b')}"),  # another truck
        ("iot:Publish", f"{IOT}:topic/other-race/truck-a/telemetry"),  # another race's topics
        ("iot:Publish", f"{IOT}:topic/{RACE}/truck-b/telemetry/truck-a"),  # its name under another's prefix
        ("iot:Connect", f"{IOT}:client/{RACE}-truck-b"),
        ("iot:Connect", f"{IOT}:client/{RACE}-truck-b-ops"),  # another truck's agent
        ("iot:Connect", f"{IOT}:client/{RACE}-truck-a-ops-2"),
        ("iot:Connect", f"{IOT}:client/other-race-truck-a"),
        ("iot:Subscribe", f"{IOT}:topicfilter/{RACE}/truck-a/#"),  # the bridge only sends
        ("iot:Receive", own),
        ("iot:UpdateThingShadow", f"{IOT}:thing/{RACE}-truck-a"),
    ]
    assert [(action, arn) for action, arn in refused if allows(document, action, arn)] == []
    connect = next(s for s in document["Statement"] if s["Action"] == ["iot:Connect"])
    assert connect["Condition"] == {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}
    # ...and each truck's topic rule reads only that truck's topics.
    for truck in TRUCKS:
        assert f"FROM '{RACE}/{truck}/" in plan1.named(f"{truck}-telemetry-rule").inputs["sql"]


def test_vpn_gateway_role_reads_only_its_own_parameters(plan1: Plan) -> None:
    """No AWS-managed policy (AmazonSSMManagedInstanceCore reads every SSM parameter of the account)."""
    role = "gdf27-vpn-gateway"
    attachments = [r for r in plan1.resources if r.type.startswith("aws:iam/") and "Attachment" in r.type]
    assert attachments == []
    policies = [r for r in plan1.of_type("aws:iam/rolePolicy:RolePolicy") if r.inputs["role"] == role]
    assert sorted(r.name for r in policies) == ["vpn-role-policy", "vpn-role-session-manager"]
    documents = [plan1.policy(r.name) for r in policies]
    ssm = "arn:aws:ssm:eu-south-1:123456789012:parameter"
    key = plan1.named("telemetry-stream").inputs["kms_key_id"]
    mine = f"{ssm}/truckctl/{RACE}/vpn/private-key"
    assert any(allows(d, "ssm:GetParameter", mine) for d in documents)
    for action, arn in [("ssm:GetParameter", f"{ssm}/truckctl/other-race/vpn/private-key"),
                        ("ssm:GetParameter", f"{ssm}/other/secret"), ("ssm:GetParameters", f"{ssm}/other/secret"),
                        ("ssm:GetParametersByPath", f"{ssm}/truckctl"), ("kms:Decrypt", "arn:aws:kms:eu-south-1:"
                                                                         "123456789012:key/other"),
                        ("s3:GetObject", "arn:aws:s3:::gdf27-datalake-123456789012/telemetry/x")]:
        assert not any(allows(d, action, arn) for d in documents), (action, arn)
    decrypt = next(s for s in documents[0]["Statement"] if s["Action"] == ["kms:Decrypt"])
    assert decrypt["Resource"] == [key]
    assert decrypt["Condition"]["StringLike"] == {
        "kms:EncryptionContext:PARAMETER_ARN": f"{ssm}/truckctl/{RACE}/vpn/*"}
    session = plan1.policy("vpn-role-session-manager")["Statement"][0]
    (instance,) = session["Resource"]  # Session Manager on this one instance
    assert session["Action"] == ["ssm:UpdateInstanceInformation"]
    assert instance.startswith("arn:aws:ec2:eu-south-1:123456789012:instance/i-")


def test_parliament_reads_every_policy_document_of_every_stage(all_stages_envelope: dict[str, Any]) -> None:
    """The linter ran beside the project's rules, over every policy document of the race's stack at every
    stage, and found nothing (beyond its written allow-list)."""
    from truckctl.cloud.policy import lintable_documents
    from truckctl.cloud.resources import PlannedResource

    result = all_stages_envelope["result"]
    lintable = lintable_documents([PlannedResource(r["type"], r["name"], r["inputs"])
                                   for r in result["race"]["resources"]])
    kinds = {kind for _, kind, _ in lintable}
    assert {"identity", "iot", "resource:aws:kms/key:Key", "resource:aws:s3/bucketPolicy:BucketPolicy",
            "resource:aws:sns/topicPolicy:TopicPolicy"} <= kinds
    assert len(lintable) >= 8
    for stage in result["stages"]:  # every stage's full stack went through every rule, parliament included
        assert "iam-parliament" in stage["cloud"]["policy_rules"] and stage["cloud"]["policy"] == []
    assert result["totals"]["violations"] == 0


def test_stack_role_policies_name_the_resources_of_their_sensitive_actions(plan1: Plan) -> None:
    """The stack's real role policies pass the IAM rules, and would not with Resource `*`: the rules see
    their sensitive actions (SSM parameters, KMS, S3 objects), not only hand-made ones."""
    from dataclasses import replace

    from truckctl.cloud import iam_policy, policy

    role_policies = plan1.of_type("aws:iam/rolePolicy:RolePolicy")
    assert len(role_policies) >= 4
    for check in (policy.iam_no_wildcard_actions, policy.iam_sensitive_resources, policy.iam_no_not_grants):
        assert check(role_policies) == []
    seen = set()
    for role_policy in role_policies:
        document = json.loads(role_policy.inputs["policy"])
        sensitive = {a for s in iam_policy.allow_statements(document) for a in iam_policy.actions(s)
                     if iam_policy.sensitive_action(a)}
        for statement in iam_policy.allow_statements(document):
            statement["Resource"] = "*"
        opened = replace(role_policy, inputs={"policy": json.dumps(document)})
        assert {v.resource for v in policy.iam_sensitive_resources([opened])} == ({role_policy.name} if sensitive
                                                                                  else set())
        seen |= sensitive
    assert {"ssm:GetParameter", "ssm:GetParametersByPath", "ssm:UpdateInstanceInformation", "kms:Decrypt",
            "kms:GenerateDataKey", "s3:PutObject", "s3:GetObject"} <= seen


def test_bucket_carries_kms_encryption_and_versioning(plan1: Plan) -> None:
    bucket = plan1.named("datalake").inputs["bucket"]
    key_arn = plan1.named("telemetry-stream").inputs["kms_key_id"]
    assert key_arn.startswith("arn:aws:kms:eu-south-1:123456789012:key/")
    encryption = plan1.named("datalake-encryption")
    assert encryption.inputs["bucket"] == bucket and "key" in encryption.depends_on
    assert encryption.inputs["rules"][0]["apply_server_side_encryption_by_default"] == {
        "sse_algorithm": "aws:kms", "kms_master_key_id": key_arn}
    versioning = plan1.named("datalake-versioning").inputs
    assert versioning == {"bucket": bucket, "versioning_configuration": {"status": "Enabled"}}
    block = plan1.named("datalake-public-access-block").inputs
    assert all(block[f] is True for f in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                                          "restrict_public_buckets"))
    for resource in plan1.resources:
        if resource.component == "datalake":
            assert resource.protect and resource.retain_on_delete, resource.name
    assert plan1.named("key").protect and plan1.named("key").retain_on_delete  # the lake's data needs its key


def test_firehose_reads_the_stream_and_writes_the_lake_with_the_key(plan1: Plan) -> None:
    delivery = plan1.named("lake-delivery").inputs
    stream = plan1.named("telemetry-stream").inputs["name"]
    bucket = plan1.named("datalake").inputs["bucket"]
    assert delivery["kinesis_source_configuration"]["kinesis_stream_arn"].endswith(f":stream/{stream}")
    s3 = delivery["extended_s3_configuration"]
    assert s3["bucket_arn"] == f"arn:aws:s3:::{bucket}"
    assert s3["kms_key_arn"] == plan1.named("telemetry-stream").inputs["kms_key_id"]
    assert s3["prefix"].startswith("telemetry/")
    statements = plan1.policy("firehose-role-policy")["Statement"]
    writes = next(s for s in statements if "s3:PutObject" in s["Action"])
    assert writes["Resource"] == [f"arn:aws:s3:::{bucket}/telemetry/*", f"arn:aws:s3:::{bucket}/errors/*"]
    assert "firehose-role-policy" in plan1.named("lake-delivery").depends_on


def test_glue_table_reads_the_lake_prefix_firehose_writes(plan1: Plan) -> None:
    table = plan1.named("glue-telemetry-table").inputs
    bucket = plan1.named("datalake").inputs["bucket"]
    assert table["storage_descriptor"]["location"] == f"s3://{bucket}/telemetry/"
    assert table["parameters"]["projection.enabled"] == "true"
    # One table over the whole race: partitioned by stage (every stage of the race) and day.
    assert [k["name"] for k in table["partition_keys"]] == ["stage", "year", "month", "day"]
    assert table["parameters"]["projection.stage.values"].split(",") == [
        *(f"stage-{n}" for n in range(1, 22)), "no-stage"]
    assert table["parameters"]["storage.location.template"] == (
        f"s3://{bucket}/telemetry/stage=${{stage}}/year=${{year}}/month=${{month}}/day=${{day}}/")
    s3 = plan1.named("lake-delivery").inputs["extended_s3_configuration"]
    assert s3["prefix"] == "telemetry/stage=!{partitionKeyFromQuery:stage}/year=!{timestamp:yyyy}/" \
        "month=!{timestamp:MM}/day=!{timestamp:dd}/"
    assert s3["dynamic_partitioning_configuration"]["enabled"] is True
    extraction = s3["processing_configuration"]["processors"][0]
    assert extraction["type"] == "MetadataExtraction" and {
        "parameter_name": "MetadataExtractionQuery", "parameter_value": "{stage:.stage}"} in extraction["parameters"]


def test_vpn_gateway_is_hardened(plan1: Plan) -> None:
    instance = plan1.named("vpn-gateway")
    assert instance.inputs["metadata_options"]["http_tokens"] == "required"
    assert instance.inputs["root_block_device"]["encrypted"] is True
    assert "key_name" not in instance.inputs  # no SSH key: SSM Session Manager instead
    assert "vpn-sg" in instance.depends_on and "public-a" in instance.depends_on
    # The key is fetched at boot from SSM by the instance role, never written into user data.
    assert "PrivateKey = $key" in instance.inputs["user_data"]
    assert plan1.named("vpn-eip").depends_on == ["vpn-gateway"]
    assert plan1.named("vpn-private-key").inputs["value"] == "[secret]"


def test_outputs_fill_every_cloud_outputs_field(stage1: dict[str, Any]) -> None:
    preview = CloudOutputs.model_validate({k: v for k, v in stage1["outputs_preview"].items() if k != "note"})
    assert preview.placeholder is True and preview.target == "aws"
    for field in CloudOutputs.model_fields:
        if field not in ("placeholder", "alert_webhook_url", "standin_client_files"):  # secrets; lab only
            assert getattr(preview, field) not in (None, "", {}, 0), field
    assert set(preview.trucks) == set(TRUCKS)
    for name, access in preview.trucks.items():
        assert access.topic_prefix == f"{RACE}/{name}" and access.thing_name == f"{RACE}-{name}"
        assert access.certificate_ref.startswith("arn:aws:iot:") and access.certificate_pem
    assert preview.vpn_endpoint == "203.0.113.10:51820"
    assert preview.mqtt_port == 8883 and "BEGIN CERTIFICATE" in preview.ca_pem


def test_stack_outputs_map_with_secrets_and_webhook() -> None:
    class OutputValue:  # the Automation API's shape
        def __init__(self, value: Any, secret: bool = False) -> None:
            self.value, self.secret = value, secret

    truck = {"thingName": "t", "clientId": "t", "topicPrefix": "r/t", "certificatePem": "PEM", "certificateRef": "arn"}
    outputs = {"region": "eu-south-1", "mqttHost": "h", "mqttPort": 8883.0, "caPem": "CA",
               "trucks": OutputValue({"t": truck}), "truckPrivateKeys": OutputValue({"t": "KEY"}, secret=True),
               "telemetryStream": "s", "datalakeBucket": "b", "alertTopicArn": "arn:sns", "vpnEndpoint": "1.2.3.4:1",
               "vpnPublicKey": "pub"}
    mapped = cloud_outputs_from_stack(outputs, alert_webhook_url="https://hook/p/T0ken42")
    assert mapped.trucks["t"].private_key_pem.get_secret_value() == "KEY"
    assert "KEY" not in repr(mapped) and mapped.mqtt_port == 8883
    assert mapped.alert_webhook_url == "https://hook/p/T0ken42" and "T0ken42" not in repr(mapped)
    assert mapped.placeholder is False


def test_plan_never_shows_secrets(all_stages_envelope: dict[str, Any], stage1_envelope: dict[str, Any]) -> None:
    for envelope in (all_stages_envelope, stage1_envelope):
        text = json.dumps(envelope)
        assert "PRIVATE KEY" not in text
        assert placeholder_vpn_key(RACE) not in text
    cloud = stage1_envelope["result"]["cloud"]
    assert cloud["outputs_preview"]["trucks"]["truck-a"]["private_key_pem"] == "**********"


def test_the_race_stack_once_and_21_moves(all_stages_envelope: dict[str, Any]) -> None:
    """`plan --all`: the race's stack between stages once, with every resource; then each stage's move
    from the one before: only the day's differences, and none replaces data or identity."""
    result = all_stages_envelope["result"]
    race = result["race"]
    assert race["policy"] == [] and race["warnings"] == []
    assert race["counts"]["total"] == len(race["resources"]) >= 60
    names = [r["name"] for r in race["resources"]]
    assert len(names) == len(set(names)), "logical names must be unique: depends_on uses them"
    assert [s["stage"] for s in result["stages"]] == [f"stage-{i}" for i in range(1, 22)]
    assert [s["move"]["from"] for s in result["stages"]] == ["race", *(f"stage-{i}" for i in range(1, 21))]
    for stage in result["stages"]:
        assert "resources" not in stage["cloud"], "the race's resources are listed once, under `race`"
        assert stage["cloud"]["policy"] == [] and stage["move"]["policy"] == [], stage["stage"]
        assert not [c for c in stage["move"]["changes"] if c["holds"] and c["op"] in ("replace", "delete")]
    # The first morning creates the day's parts: 2 alarms per truck, 2 overall, 2 LAN routes per truck.
    first = result["stages"][0]["move"]
    assert first["counts"]["create"] == 2 * len(TRUCKS) + 2 + 2 * len(TRUCKS) and first["counts"]["delete"] == 0
    # Every later morning: the topic rules stamp the new stage; nothing created or deleted.
    for stage in result["stages"][1:]:
        updated = sorted(c["name"] for c in stage["move"]["changes"] if c["op"] == "update")
        assert updated == [f"{t}-telemetry-rule" for t in TRUCKS], stage["stage"]
        assert stage["move"]["counts"]["create"] == stage["move"]["counts"]["delete"] == 0
    assert result["totals"]["stages"] == 21 and result["totals"]["race_resources"] == race["counts"]["total"]
    # A race resource no move touches appears once in the whole document, however many stages were planned.
    text = json.dumps(all_stages_envelope)
    moved = {c["urn"] for s in result["stages"] for c in s["move"]["changes"]}
    untouched = [r["urn"] for r in race["resources"] if r["urn"] not in moved]
    assert len(untouched) >= 55 and all(text.count(f'"{urn}"') == 1 for urn in untouched)


def test_stage_networks_follow_the_stage_file(all_stages_envelope: dict[str, Any]) -> None:
    # Stage 7 moves truck-a to 10.33.x for the day: its LAN routes are replaced (a route holds nothing);
    # its thing, certificate and topics stay those of the race.
    stage7 = next(s["move"] for s in all_stages_envelope["result"]["stages"] if s["stage"] == "stage-7")
    replaced = {c["name"]: c for c in stage7["changes"] if c["op"] == "replace"}
    assert sorted(replaced) == ["day-lan-truck-a-private", "day-lan-truck-a-public"]
    assert all(c["replaced_on"] == ["destination_cidr_block"] and c["holds"] == "" for c in replaced.values())
    things = sorted(r["inputs"]["name"] for r in all_stages_envelope["result"]["race"]["resources"]
                    if r["type"] == "aws:iot/thing:Thing")
    assert things == [f"{RACE}-truck-a", f"{RACE}-truck-b"]


def test_program_uses_only_preloaded_aws_services(stage1: dict[str, Any]) -> None:
    sys.path.insert(0, str(REPO / "stacks"))
    try:
        from race_cloud.program import AWS_SERVICES
    finally:
        sys.path.remove(str(REPO / "stacks"))
    used = {r["type"].split(":")[1].split("/")[0] for r in stage1["resources"]}
    assert used <= set(AWS_SERVICES), used - set(AWS_SERVICES)


def test_delete_data_lifts_protection_and_the_policy_says_so() -> None:
    (plan,) = plan_offline(Project(REPO), ["stage-1"], settings={"deleteData": "true"})
    bucket = next(r for r in plan["resources"] if r["name"] == "datalake")
    assert bucket["protect"] is False and bucket["retain_on_delete"] is False
    assert bucket["inputs"]["force_destroy"] is True
    assert {v["rule"] for v in plan["policy"]} == {"datalake-retained"}


def test_the_stack_exports_each_truck_certificate_id_for_revocation() -> None:
    """`down --target aws` revokes from the outputs alone: the program exports every certificate's id."""
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "truckctl.cloud.offline_worker", "--project", str(REPO), "stage-1"],
                          capture_output=True, text=True, check=True, cwd=REPO)
    (document,) = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    region, certificates = truck_certificates(document["outputs"])
    assert region == "eu-south-1" and sorted(certificates) == list(TRUCKS)
    for name, ident in certificates.items():
        assert document["outputs"]["trucks"][name]["certificateRef"].endswith(f":cert/{ident}")


def test_certificate_ids_from_older_outputs_and_from_no_stack() -> None:
    ref = "arn:aws:iot:eu-south-1:123456789012:cert/" + "c" * 64
    assert truck_certificates({"region": "eu-south-1", "trucks": {"t": {"certificateRef": ref}}}) == (
        "eu-south-1", {"t": "c" * 64})  # deployed before the certificateId output existed
    assert truck_certificates({}) == ("", {})  # never deployed, or destroyed: nothing to revoke
    for bad in ({"region": "eu-south-1", "trucks": {"t": {"certificateRef": "arn"}}},
                {"region": "eu-south-1", "trucks": ["t"]}, {"trucks": {"t": {"certificateId": "x"}}}):
        with pytest.raises(TruckctlError) as caught:
            truck_certificates(bad)
        assert caught.value.problems[0].code == "cloud-outputs-invalid"


def test_the_stack_and_truckctl_agree_on_outputs_and_component_type() -> None:
    """stacks/ is a plain Pulumi project (it cannot import truckctl): its exports and its component type
    are the ones truckctl reads (stack_outputs.REQUIRED, resources.COMPONENT_TYPE_PREFIX)."""
    import subprocess

    from truckctl.cloud.resources import COMPONENT_TYPE_PREFIX
    from truckctl.cloud.stack_outputs import REQUIRED

    proc = subprocess.run([sys.executable, "-m", "truckctl.cloud.offline_worker", "--project", str(REPO), "stage-1"],
                          capture_output=True, text=True, check=True, cwd=REPO)
    (document,) = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert set(REQUIRED) <= set(document["outputs"]), set(REQUIRED) - set(document["outputs"])
    sys.path.insert(0, str(REPO / "stacks"))
    try:
        from race_cloud.component import TYPE_PREFIX
    finally:
        sys.path.remove(str(REPO / "stacks"))
    assert TYPE_PREFIX == COMPONENT_TYPE_PREFIX
