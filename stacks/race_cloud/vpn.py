"""The management VPN hub: a small WireGuard gateway in a public subnet with an Elastic IP, for the
whole race (its key, address and instance never change with the stage). The day's tech-zone LANs
are VPC routes through it (`day_routes`), the one part of it a stage move changes.

Hardening: only the WireGuard UDP port is reachable (no SSH: administration goes through SSM
Session Manager), IMDSv2 is required, the root volume is encrypted with the race key, and the
gateway's private key lives in an SSM SecureString that only this instance's role can read.
Truck peers are published under an SSM path (one parameter per truck: "PUBLIC_KEY ALLOWED_IPS")
and synced by a timer, so adding a truck does not replace the instance.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from . import iam
from .component import Component
from .config import StackConfig, wireguard_public_key
from .kms import Kms
from .network import Network

INSTANCE_TYPE = "t3.micro"
# Amazon Linux 2023: WireGuard is in its kernel, the SSM agent and AWS CLI are preinstalled.
AMI_NAME_FILTER = "al2023-ami-2023.*-x86_64"

USER_DATA = """#!/bin/bash
set -euo pipefail
dnf install -y wireguard-tools
install -d -m 0700 /etc/wireguard
umask 077
key=$(aws ssm get-parameter --region {region} --name {key_parameter} --with-decryption \\
  --query Parameter.Value --output text)
cat > /etc/wireguard/wg0.conf <<CONF
[Interface]
Address = {address}
ListenPort = {port}
PrivateKey = $key
CONF
unset key
cat > /usr/local/sbin/wg-sync-peers <<'SYNC'
#!/bin/bash
# Rebuild the peer list from SSM: one parameter per truck, value "PUBLIC_KEY ALLOWED_IPS".
set -euo pipefail
umask 077
{{ wg-quick strip wg0
  aws ssm get-parameters-by-path --region {region} --path {peers_path} \\
    --query 'Parameters[].Value' --output text | tr '\\t' '\\n' | while read -r peer ips; do
      if [ -n "$peer" ] && [ "$peer" != None ]; then
        printf '[Peer]\\nPublicKey = %s\\nAllowedIPs = %s\\n' "$peer" "$ips"
      fi
    done; }} > /run/wg0.peers
wg syncconf wg0 /run/wg0.peers
SYNC
chmod 0700 /usr/local/sbin/wg-sync-peers
cat > /etc/systemd/system/wg-sync-peers.service <<'UNIT'
[Unit]
Description=Sync WireGuard peers from SSM
After=wg-quick@wg0.service
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/wg-sync-peers
UNIT
cat > /etc/systemd/system/wg-sync-peers.timer <<'UNIT'
[Timer]
OnBootSec=30
OnUnitActiveSec=60
[Install]
WantedBy=timers.target
UNIT
echo 'net.ipv4.ip_forward = 1' > /etc/sysctl.d/90-wireguard.conf
sysctl --system
systemctl enable --now wg-quick@wg0 wg-sync-peers.timer
"""


@dataclass(frozen=True)
class Vpn:
    instance: aws.ec2.Instance
    eip: aws.ec2.Eip
    public_key: pulumi.Output[str]


def vpn_path(config: StackConfig) -> str:
    """Every SSM parameter of the race's VPN gateway lives under this path, and only the gateway reads it."""
    return f"/truckctl/{config.race_id}/vpn"


def peers_path(config: StackConfig) -> str:
    return f"{vpn_path(config)}/peers/"


def user_data(config: StackConfig, key_parameter: str) -> str:
    layout = config.layout
    return USER_DATA.format(region=config.region, key_parameter=key_parameter, peers_path=peers_path(config),
                            address=f"{layout.vpn_gateway_address}/{layout.vpn_tunnel.prefixlen}",
                            port=config.vpn_port)


def day_routes(config: StackConfig, component: Component, network: Network,
               instance: aws.ec2.Instance) -> list[aws.ec2.Route]:
    """The day's tech-zone LANs, routed from the VPC through the hub: the only VPN part a stage changes.

    One route per truck in today's tech zone and route table; a truck that moves to another LAN gets
    its route replaced (a route holds nothing), an absent truck has none.
    """
    routes = []
    for truck in config.today:
        for kind, table in (("private", network.private_route_table), ("public", network.public_route_table)):
            routes.append(aws.ec2.Route(
                f"day-lan-{truck.name}-{kind}", route_table_id=table.id, destination_cidr_block=str(truck.lan),
                network_interface_id=instance.primary_network_interface_id,
                opts=component.opts()))
    return routes


def build(config: StackConfig, provider: pulumi.ProviderResource, kms: Kms, network: Network,
          account_id: pulumi.Output[str]) -> Vpn:
    component = Component("Vpn", "vpn", provider)
    opts = component.opts
    key_parameter = f"{vpn_path(config)}/private-key"
    parameter = aws.ssm.Parameter("vpn-private-key", name=key_parameter, type="SecureString",
                                  value=config.vpn_private_key, key_id=kms.key.arn,
                                  description="WireGuard private key of the management VPN gateway", opts=opts())
    ssm_arn = account_id.apply(lambda account: f"arn:aws:ssm:{config.region}:{account}:parameter")
    role, role_policy = iam.service_role(
        component, "vpn-role", config.name("vpn-gateway"), iam.ec2_trust_policy(),
        pulumi.Output.all(parameter.arn, ssm_arn, kms.key.arn).apply(
            lambda a: iam.vpn_gateway_policy(a[0], a[1] + peers_path(config).rstrip("/"), a[2], config.region,
                                             a[1] + vpn_path(config))),
        "Management VPN gateway: its own key and peer list, SSM Session Manager on itself")
    profile = aws.iam.InstanceProfile("vpn-instance-profile", name=config.name("vpn-gateway"), role=role.name,
                                      opts=opts())
    ami = aws.ec2.get_ami_output(most_recent=True, owners=["amazon"],
                                 filters=[{"name": "name", "values": [AMI_NAME_FILTER]},
                                          {"name": "architecture", "values": ["x86_64"]}],
                                 opts=component.invoke_opts())
    instance = aws.ec2.Instance(
        "vpn-gateway", ami=ami.id, instance_type=INSTANCE_TYPE, subnet_id=network.public_subnets[0].id,
        vpc_security_group_ids=[network.vpn_security_group.id], iam_instance_profile=profile.name,
        source_dest_check=False,  # it routes between tunnel peers and the VPC
        metadata_options={"http_tokens": "required", "http_endpoint": "enabled", "http_put_response_hop_limit": 1},
        root_block_device={"encrypted": True, "kms_key_id": kms.key.arn, "volume_type": "gp3", "volume_size": 8},
        user_data=user_data(config, key_parameter), user_data_replace_on_change=True,
        tags={"Name": config.name("vpn-gateway")},
        opts=opts(depends_on=[role_policy]))  # the first boot reads the key with this role
    # Session Manager needs the instance's ARN: a policy of its own, added once the instance exists.
    aws.iam.RolePolicy("vpn-role-session-manager", role=role.id, policy=instance.arn.apply(iam.session_manager_policy),
                       opts=opts())
    eip = aws.ec2.Eip("vpn-eip", domain="vpc", instance=instance.id, tags={"Name": config.name("vpn")}, opts=opts())
    # Hosts in the VPC reach trucks through the tunnel; the tunnel network is outside the VPC CIDR.
    for kind, table in (("private", network.private_route_table), ("public", network.public_route_table)):
        aws.ec2.Route(f"vpn-tunnel-route-{kind}", route_table_id=table.id,
                      destination_cidr_block=str(config.layout.vpn_tunnel),
                      network_interface_id=instance.primary_network_interface_id, opts=opts())
    day_routes(config, component, network, instance)
    public_key = pulumi.Output.unsecret(config.vpn_private_key.apply(wireguard_public_key))
    component.register_outputs({"endpoint": eip.public_ip})
    return Vpn(instance, eip, public_key)
