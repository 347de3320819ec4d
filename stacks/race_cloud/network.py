"""VPC over two AZs: public subnets (the VPN gateway only) and private subnets, tight security groups."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .component import Component
from .config import StackConfig

ANYWHERE = "0.0.0.0/0"


@dataclass(frozen=True)
class Network:
    vpc: aws.ec2.Vpc
    public_subnets: list[aws.ec2.Subnet]
    private_subnets: list[aws.ec2.Subnet]
    public_route_table: aws.ec2.RouteTable
    private_route_table: aws.ec2.RouteTable
    vpn_security_group: aws.ec2.SecurityGroup


def build(config: StackConfig, provider: pulumi.ProviderResource, zones: pulumi.Output[list[str]]) -> Network:
    component = Component("Network", "network", provider)
    opts = component.opts
    layout = config.layout
    vpc = aws.ec2.Vpc("vpc", cidr_block=str(layout.vpc), enable_dns_support=True, enable_dns_hostnames=True,
                      tags={"Name": config.name("vpc")}, opts=opts())
    # The default security group allows all traffic between its members: take it over, empty.
    aws.ec2.DefaultSecurityGroup("default-sg", vpc_id=vpc.id, tags={"Name": config.name("default-locked")},
                                 opts=opts())
    igw = aws.ec2.InternetGateway("igw", vpc_id=vpc.id, tags={"Name": config.name("igw")}, opts=opts())

    public_rt = aws.ec2.RouteTable("public-rt", vpc_id=vpc.id, tags={"Name": config.name("public")}, opts=opts())
    aws.ec2.Route("public-default-route", route_table_id=public_rt.id, destination_cidr_block=ANYWHERE,
                  gateway_id=igw.id, opts=opts())
    # Private subnets have no route out: nothing there needs the internet, S3 is reached via the endpoint.
    private_rt = aws.ec2.RouteTable("private-rt", vpc_id=vpc.id, tags={"Name": config.name("private")},
                                    opts=opts())

    def zone_name(index: int) -> pulumi.Output[str]:
        return zones.apply(lambda names: names[index])

    def subnets(kind: str, cidrs: tuple[object, object], route_table: aws.ec2.RouteTable) -> list[aws.ec2.Subnet]:
        made = []
        for index, cidr in enumerate(cidrs):
            zone = "ab"[index]
            subnet = aws.ec2.Subnet(
                f"{kind}-{zone}", vpc_id=vpc.id, cidr_block=str(cidr),
                availability_zone=zone_name(index),
                map_public_ip_on_launch=False,  # public addresses only where asked for (the VPN's EIP)
                tags={"Name": config.name(f"{kind}-{zone}"), "truckctl-tier": kind}, opts=opts())
            aws.ec2.RouteTableAssociation(f"{kind}-{zone}-rt", subnet_id=subnet.id, route_table_id=route_table.id,
                                          opts=opts())
            made.append(subnet)
        return made

    public = subnets("public", layout.public_subnets, public_rt)
    private = subnets("private", layout.private_subnets, private_rt)
    aws.ec2.VpcEndpoint("s3-endpoint", vpc_id=vpc.id, service_name=f"com.amazonaws.{config.region}.s3",
                        vpc_endpoint_type="Gateway", route_table_ids=[private_rt.id, public_rt.id],
                        tags={"Name": config.name("s3")}, opts=opts())

    vpn_sg = aws.ec2.SecurityGroup(
        "vpn-sg",
        name=config.name("vpn"),
        description="WireGuard management VPN gateway: the tunnel port only, no SSH (SSM instead)",
        vpc_id=vpc.id,
        ingress=[{
            # Trucks roam on cellular uplinks with changing public addresses: the UDP port must be open;
            # WireGuard answers nothing to packets without a valid peer key.
            "description": "WireGuard from the trucks", "protocol": "udp",
            "from_port": config.vpn_port, "to_port": config.vpn_port, "cidr_blocks": [ANYWHERE],
        }],
        egress=[
            {"description": "HTTPS: SSM agent and package mirrors", "protocol": "tcp",
             "from_port": 443, "to_port": 443, "cidr_blocks": [ANYWHERE]},
            {"description": "Forwarded tunnel traffic into the VPC", "protocol": "-1",
             "from_port": 0, "to_port": 0, "cidr_blocks": [str(layout.vpc)]},
        ],
        tags={"Name": config.name("vpn")},
        opts=opts(),
    )
    component.register_outputs({"vpc_id": vpc.id})
    return Network(vpc, public, private, public_rt, private_rt, vpn_sg)
