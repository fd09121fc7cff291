"""The VPC of the reference architecture, built from L1 resources so every CIDR and route table is exact."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import ArnFormat, Aws, CfnMapping, Fn, RemovalPolicy, Stack, Tags
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs

from cluster_config import ClusterConfig
from cluster_config.endpoints import INTERFACE_ENDPOINT_SERVICES, PARTITIONS, service_prefix
from constructs import Construct


@dataclass(frozen=True)
class ZoneSubnets:
    """One availability zone's share of the network: a public and a private subnet and the private route table."""

    availability_zone: str
    public: ec2.ISubnet
    private: ec2.ISubnet
    private_route_table_id: str


class ClusterNetwork(Construct):
    """VPC, one public + one private subnet per AZ (two or three AZs), IGW, one NAT gateway per AZ, the public
    route table and one private route table per AZ (Route-A, Route-B, Route-C): each carries the VIP route.

    `ec2.Vpc` cannot place subnets at chosen CIDRs nor share one public route table, so the L1 resources are
    used and exposed through `ec2.Vpc.from_vpc_attributes` for the L2 constructs that need an IVpc.
    """

    def __init__(self, scope: Construct, id_: str, *, config: ClusterConfig) -> None:
        super().__init__(scope, id_)
        # What a node needs before its first boot can succeed: outbound routes and the gateway endpoints.
        self.egress_ready: list[Construct] = []
        self._config = config
        self._cfn_vpc = ec2.CfnVPC(self, "Vpc", cidr_block=str(config.vpc_cidr),
                                   enable_dns_support=True, enable_dns_hostnames=True)
        Tags.of(self._cfn_vpc).add("Name", f"{Stack.of(self).stack_name}-vpc")
        internet_gateway = ec2.CfnInternetGateway(self, "InternetGateway")
        attachment = ec2.CfnVPCGatewayAttachment(self, "InternetGatewayAttachment", vpc_id=self._cfn_vpc.ref,
                                                 internet_gateway_id=internet_gateway.ref)
        self.public_route_table = self._route_table("PublicRouteTable", "public")
        default_via_igw = ec2.CfnRoute(self, "PublicDefaultRoute", route_table_id=self.public_route_table.ref,
                                       destination_cidr_block="0.0.0.0/0", gateway_id=internet_gateway.ref)
        default_via_igw.node.add_dependency(attachment)
        self.zones = [self._zone(index, config, attachment) for index in range(len(config.private_subnet_cidrs))]
        self.vpc = ec2.Vpc.from_vpc_attributes(
            self, "VpcView",
            vpc_id=self._cfn_vpc.ref,
            vpc_cidr_block=str(config.vpc_cidr),
            availability_zones=[zone.availability_zone for zone in self.zones],
            public_subnet_ids=[zone.public.subnet_id for zone in self.zones],
            public_subnet_route_table_ids=[self.public_route_table.ref] * len(self.zones),
            private_subnet_ids=[zone.private.subnet_id for zone in self.zones],
            private_subnet_route_table_ids=[zone.private_route_table_id for zone in self.zones],
        )
        self._flow_log()
        self.interface_endpoints = self._interface_endpoints() if config.interface_endpoints else []

    @property
    def route_table_ids(self) -> list[str]:
        """Every route table that must carry the VIP route: public (Main), Route-A, Route-B, ..."""
        return [self.public_route_table.ref, *(zone.private_route_table_id for zone in self.zones)]

    @property
    def route_table_arns(self) -> list[str]:
        """ARNs for IAM: route changes are granted on the cluster's own tables, never on "*"."""
        return [Stack.of(self).format_arn(service="ec2", resource="route-table", resource_name=table_id,
                                          arn_format=ArnFormat.SLASH_RESOURCE_NAME)
                for table_id in self.route_table_ids]

    def add_gateway_endpoints(self) -> None:
        """S3 (assets, MinIO binary) and DynamoDB (state table) stay on the AWS network, off the NAT bill."""
        subnets = [ec2.SubnetSelection(subnets=self.private_subnets)]
        self.egress_ready += [
            ec2.GatewayVpcEndpoint(self, "S3Endpoint", vpc=self.vpc, service=ec2.GatewayVpcEndpointAwsService.S3,
                                   subnets=subnets),
            ec2.GatewayVpcEndpoint(self, "DynamoDbEndpoint", vpc=self.vpc,
                                   service=ec2.GatewayVpcEndpointAwsService.DYNAMODB, subnets=subnets),
        ]

    @property
    def private_subnets(self) -> list[ec2.ISubnet]:
        return [zone.private for zone in self.zones]

    def allow_endpoint_clients(self, *clients: ec2.IConnectable) -> None:
        """HTTPS to the interface endpoints from these (the nodes, the checker) and nobody else in the VPC."""
        if not self.interface_endpoints:
            return
        group = self._endpoint_security_group
        for client in clients:
            group.connections.allow_from(client, ec2.Port.tcp(443), "AWS APIs without a NAT")
        # A node's first boot may already resolve these services to the endpoints (private DNS): the endpoints,
        # which the nodes wait for (egress_ready), are not ready before their ingress rules are.
        rules = [child for child in group.node.find_all() if isinstance(child, ec2.CfnSecurityGroupIngress)]
        for endpoint in self.interface_endpoints:
            endpoint.node.add_dependency(*rules)

    def _interface_endpoints(self) -> list[ec2.InterfaceVpcEndpoint]:
        self._endpoint_security_group = ec2.SecurityGroup(
            self, "EndpointSecurityGroup", vpc=self.vpc, allow_all_outbound=False,
            description="Interface endpoints: HTTPS from the cluster nodes and the failover checker only")
        prefixes = CfnMapping(self, "EndpointServicePrefix", mapping={
            partition: {name: service_prefix(partition, name) for name in INTERFACE_ENDPOINT_SERVICES}
            for partition in PARTITIONS})
        endpoints = [
            ec2.InterfaceVpcEndpoint(
                self, f"{name.capitalize()}Endpoint", vpc=self.vpc,
                service=ec2.InterfaceVpcEndpointService(
                    Fn.join(".", [prefixes.find_in_map(Aws.PARTITION, name), Aws.REGION, name]), 443),
                subnets=ec2.SubnetSelection(subnets=self.private_subnets),
                private_dns_enabled=True,
                security_groups=[self._endpoint_security_group],
                # Not the whole VPC CIDR (CDK's default): only the clients named in allow_endpoint_clients.
                open=False,
            )
            for name in INTERFACE_ENDPOINT_SERVICES
        ]
        self.egress_ready += endpoints
        return endpoints

    def _flow_log(self) -> None:
        # Rejected/accepted flows are what an SRE reads first when the VIP "does not answer".
        log_group = logs.LogGroup(self, "FlowLogs", retention=logs.RetentionDays.ONE_MONTH,
                                  removal_policy=RemovalPolicy.DESTROY)
        ec2.FlowLog(self, "FlowLog", resource_type=ec2.FlowLogResourceType.from_vpc(self.vpc),
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(log_group))

    def _route_table(self, id_: str, name: str) -> ec2.CfnRouteTable:
        table = ec2.CfnRouteTable(self, id_, vpc_id=self._cfn_vpc.ref)
        Tags.of(table).add("Name", f"{Stack.of(self).stack_name}-{name}")
        return table

    def _zone(self, index: int, config: ClusterConfig, attachment: ec2.CfnVPCGatewayAttachment) -> ZoneSubnets:
        letter = chr(ord("A") + index)
        placement = _placement(config, index)
        public = self._subnet(f"PublicSubnet{letter}", config.public_subnet_cidrs[index], placement, public=True)
        private = self._subnet(f"PrivateSubnet{letter}", config.private_subnet_cidrs[index], placement,
                               public=False)
        # With AZ IDs the name is the account's own mapping, known only once the subnet exists.
        availability_zone = placement.name or private.attr_availability_zone
        ec2.CfnSubnetRouteTableAssociation(self, f"PublicSubnet{letter}RouteTable", subnet_id=public.ref,
                                           route_table_id=self.public_route_table.ref)
        nat_ip = ec2.CfnEIP(self, f"NatGateway{index + 1}Ip", domain="vpc")
        nat_ip.node.add_dependency(attachment)
        nat = ec2.CfnNatGateway(self, f"NatGateway{index + 1}", subnet_id=public.ref,
                                allocation_id=nat_ip.attr_allocation_id)
        Tags.of(nat).add("Name", f"{Stack.of(self).stack_name}-nat-{index + 1}")
        route_table = self._route_table(f"RouteTable{letter}", f"route-{letter.lower()}")
        self.egress_ready.append(ec2.CfnRoute(self, f"RouteTable{letter}DefaultRoute", route_table_id=route_table.ref,
                                              destination_cidr_block="0.0.0.0/0", nat_gateway_id=nat.ref))
        ec2.CfnSubnetRouteTableAssociation(self, f"PrivateSubnet{letter}RouteTable", subnet_id=private.ref,
                                           route_table_id=route_table.ref)
        return ZoneSubnets(
            availability_zone=availability_zone,
            public=ec2.Subnet.from_subnet_attributes(self, f"PublicSubnet{letter}View", subnet_id=public.ref,
                                                     availability_zone=availability_zone,
                                                     route_table_id=self.public_route_table.ref),
            private=ec2.Subnet.from_subnet_attributes(self, f"PrivateSubnet{letter}View", subnet_id=private.ref,
                                                      availability_zone=availability_zone,
                                                      route_table_id=route_table.ref),
            private_route_table_id=route_table.ref,
        )

    def _subnet(self, id_: str, cidr: object, placement: _Placement, *, public: bool) -> ec2.CfnSubnet:
        subnet = ec2.CfnSubnet(self, id_, vpc_id=self._cfn_vpc.ref, cidr_block=str(cidr),
                               availability_zone=placement.name, availability_zone_id=placement.zone_id,
                               map_public_ip_on_launch=False)
        Tags.of(subnet).add("Name", f"{Stack.of(self).stack_name}-{'public' if public else 'private'}-"
                                    f"{id_[-1].lower()}")
        return subnet


@dataclass(frozen=True)
class _Placement:
    """A subnet's zone: by name (or an Fn::GetAZs token) or by AZ ID, never both (CloudFormation refuses that)."""

    name: str | None = None
    zone_id: str | None = None


def _placement(config: ClusterConfig, index: int) -> _Placement:
    """The subnet pair `index`'s zone: config.availability_zones[index] (a name or an AZ ID), else the region's
    index-th zone. Fn::GetAZs keeps the stack environment-agnostic (no lookup), but its first zones may lack the
    instance type or Lambda's VPC support; an AZ ID names the same physical zone in every account."""
    if not config.availability_zones:
        return _Placement(name=Fn.select(index, Fn.get_azs()))
    if config.availability_zones_are_ids:
        return _Placement(zone_id=config.availability_zones[index])
    return _Placement(name=config.availability_zones[index])
