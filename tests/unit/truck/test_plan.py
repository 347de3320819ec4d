"""The run plan: which playbook, which hosts, which options, which variables, and where the
secrets are not (extra vars, command line, inventory)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from tests.helpers import KEY_BODY, FakeConnection, make_cloud
from truckctl.cloud.outputs import CloudOutputs
from truckctl.config.model import Stage
from truckctl.errors import ExitCode, TruckctlError
from truckctl.truck.plan import RunPlan, build_plan

PLAYBOOKS = Path("/repo/playbooks")


def plan_for(stage: Stage, cloud: CloudOutputs, limit: str | None = None, check: bool = False) -> RunPlan:
    return build_plan(PLAYBOOKS, stage, cloud, FakeConnection(), "lab", limit, check)


def test_plan_runs_site_yml_on_every_node_with_a_fork_each(stage: Stage, cloud: CloudOutputs) -> None:
    plan = plan_for(stage, cloud)
    assert plan.playbook == "site.yml"
    assert plan.project_dir == PLAYBOOKS
    assert plan.limit is None
    assert plan.hosts == ["truck-a-gw", "truck-a-hv1", "truck-a-hv2", "truck-b-gw", "truck-b-hv1", "truck-b-hv2"]
    assert plan.forks == 6


def test_limit_narrows_hosts_and_is_passed_through(stage: Stage, cloud: CloudOutputs) -> None:
    plan = plan_for(stage, cloud, limit="truck-b-hv1")
    assert plan.limit == "truck-b-hv1"
    assert plan.hosts == ["truck-b-hv1"]
    assert plan.forks == 1


def test_unknown_limit_is_a_usage_error_with_a_suggestion(stage: Stage, cloud: CloudOutputs) -> None:
    with pytest.raises(TruckctlError) as caught:
        plan_for(stage, cloud, limit="truck-a-hv3")
    assert caught.value.exit_code == ExitCode.USAGE
    assert caught.value.problems[0].code == "unknown-node"
    assert "did you mean" in caught.value.problems[0].message


def test_check_mode_is_a_command_line_option_not_an_extra_var(stage: Stage, cloud: CloudOutputs) -> None:
    plan = plan_for(stage, cloud, check=True)
    assert shlex.split(plan.cmdline(None)) == ["--check", "--diff"]
    assert "ansible_check_mode" not in plan.extravars
    assert plan_for(stage, cloud).cmdline(None) == ""


def test_secrets_come_from_a_vault_file_asked_for_on_the_command_line(stage: Stage, cloud: CloudOutputs) -> None:
    plan = plan_for(stage, cloud, check=True)
    args = shlex.split(plan.cmdline(Path("/run/x/secrets.vault")))
    assert args == ["--check", "--diff", "--ask-vault-pass", "--extra-vars", "@/run/x/secrets.vault"]


def test_secrets_are_never_in_extravars_cmdline_or_inventory(stage: Stage, cloud: CloudOutputs) -> None:
    plan = plan_for(stage, cloud, check=True)
    public = json.dumps({"extravars": plan.extravars, "inventory": plan.inventory,
                         "cmdline": plan.cmdline(Path("/tmp/secrets.vault")), "repr": repr(plan)})
    for body in KEY_BODY.values():
        assert body not in public
    assert "PRIVATE KEY" not in public
    # ...and they are all in the secret vars, one per truck of the stage.
    keys = plan.secret_vars["cloud_truck_keys"]
    assert sorted(keys) == ["truck-a", "truck-b"]
    assert all(KEY_BODY[truck] in key for truck, key in keys.items())


def test_extravars_carry_the_cloud_outputs_and_the_lab_switches(stage: Stage, cloud: CloudOutputs) -> None:
    extravars = plan_for(stage, cloud).extravars
    assert extravars["cloud_mqtt_host"] == "100.64.10.2"
    assert extravars["cloud_mqtt_port"] == 8883
    assert extravars["cloud_cidr"] == "10.100.0.0/16"
    assert extravars["cloud_vpn_endpoint"] == "100.64.10.2:51820"
    assert extravars["cloud_trucks"]["truck-a"] == {
        "client_id": "gdf27-truck-a", "thing_name": "gdf27-truck-a", "topic_prefix": "gdf27/truck-a",
        "certificate_pem": cloud.trucks["truck-a"].certificate_pem}
    # The lab may not steer clocks nor let networkd take over the nodes' interfaces.
    assert extravars["truck_target"] == "lab"
    assert extravars["time_clock_control"] is False
    assert extravars["network_activate"] is False


def test_inventory_is_the_rendered_one_plus_connection_vars(stage: Stage, cloud: CloudOutputs) -> None:
    inventory = plan_for(stage, cloud).inventory
    variables = inventory["all"]["vars"]
    assert variables["stage_name"] == "stage-1"
    assert variables["ansible_user"] == "root"
    assert variables["ansible_ssh_private_key_file"] == "/lab/ssh/id_ed25519"
    assert """-o 'UserKnownHostsFile="/lab/known_hosts"'""" in variables["ansible_ssh_common_args"]
    assert "StrictHostKeyChecking=yes" in variables["ansible_ssh_common_args"]
    trucks = inventory["all"]["children"]["trucks"]["children"]
    assert trucks["truck_a"]["hosts"]["truck-a-gw"]["ansible_host"] == "10.31.1.11"


def test_placeholder_outputs_are_never_applied(stage: Stage) -> None:
    with pytest.raises(TruckctlError) as caught:
        plan_for(stage, make_cloud(stage, placeholder=True))
    assert caught.value.problems[0].code == "placeholder-outputs"


def test_outputs_of_another_target_are_refused(stage: Stage) -> None:
    with pytest.raises(TruckctlError) as caught:
        plan_for(stage, make_cloud(stage, target="aws"))
    assert caught.value.problems[0].code == "target-mismatch"


def test_a_truck_without_ingest_access_is_refused(stage: Stage, cloud: CloudOutputs) -> None:
    partial = cloud.model_copy(update={"trucks": {"truck-a": cloud.trucks["truck-a"]}})
    with pytest.raises(TruckctlError) as caught:
        plan_for(stage, partial)
    assert "truck-b" in caught.value.problems[0].message
