"""Render a stage's Ansible inventory (derived from the model, never hand-edited).

Every key of the rendered inventory is truckctl's own or a validated name (host, truck and role names
are DNS labels); every value from the configuration is data (`inventory_yaml` marks it `!unsafe`).
"""

from __future__ import annotations

from truckctl.config.model import Stage, Truck
from truckctl.jsondoc import JsonObject


def group_name(name: str) -> str:
    """Ansible group names may not contain dashes."""
    return name.replace("-", "_")


def truck_vars(stage: Stage, truck: Truck) -> JsonObject:
    gateway = stage.gateway(truck)
    return {
        "truck_name": truck.name,
        "truck_lan": str(truck.lan),
        "truck_lan_prefix": truck.lan.prefixlen,
        "truck_gateway_name": gateway.name,
        "truck_gateway_address": str(gateway.address),
        "truck_vlans": [{"id": v.id, "name": v.name, "cidr": str(v.cidr)} for v in truck.vlans],
        "truck_nodes": [{"name": n.name, "address": str(n.address), "role": n.role} for n in truck.nodes],
    }


def stage_vars(stage: Stage) -> JsonObject:
    return {
        "race_id": stage.race.id,
        "race_name": stage.race.name,
        "race_timezone": stage.race.timezone,
        "stage_name": stage.name,
        "stage_number": stage.info.number,
        "stage_date": stage.info.date.isoformat(),
        "uplink": stage.defaults.uplink.model_dump(),
        "telemetry": stage.defaults.telemetry.model_dump(),
        "ntp_servers": list(stage.defaults.ntp_servers),
        "ops_users": [u.model_dump() for u in stage.ops_users],
    }


def render_inventory(stage: Stage) -> JsonObject:
    """The inventory as Ansible's YAML inventory structure: truck groups, role groups, all vars."""
    trucks: JsonObject = {}
    roles: JsonObject = {
        group_name(name): {
            "hosts": {},
            "vars": {"role_name": name, "role_is_gateway": spec.gateway,
                     "role_allow_tcp": sorted(set(spec.allow_tcp)), "role_allow_udp": sorted(set(spec.allow_udp))},
        }
        for name, spec in stage.roles.items()
    }
    for truck in stage.trucks:
        hosts = {n.name: {"ansible_host": str(n.address), "node_role": n.role} for n in truck.nodes}
        trucks[group_name(truck.name)] = {"hosts": hosts, "vars": truck_vars(stage, truck)}
        for node in truck.nodes:
            roles[group_name(node.role)]["hosts"][node.name] = {}
    roles = {name: group for name, group in roles.items() if group["hosts"]}
    return {
        "all": {
            "vars": stage_vars(stage),
            "children": {
                "trucks": {"children": trucks},
                **roles,
            },
        }
    }


def inventory_yaml(stage: Stage) -> str:
    """The inventory as Ansible YAML: every string value `!unsafe` (never a template, see ansible_data).
    The header names only validated identifiers: free text stays out of comments."""
    from truckctl.ansible_data import dump

    header = f"# Ansible inventory for {stage.name} of race {stage.race.id}, rendered by truckctl: do not edit.\n"
    return header + dump(render_inventory(stage))
