"""Composes the cluster from its constructs; no resource is defined here directly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, Stack, Tags
from aws_cdk import aws_s3_assets as s3_assets

from cluster_config import ClusterConfig
from constructs import Construct
from constructs.cluster_node import ClusterNode, NodeSettings, node_security_group
from constructs.cluster_state import ClusterState
from constructs.failover_manager import FailoverInputs, FailoverManager
from constructs.lambda_dependencies import drop_redundant_role_dependency
from constructs.minio_credentials import MinioCredentials
from constructs.minio_tls import MinioTls
from constructs.monitoring import ClusterMonitoring, MonitoringInputs
from constructs.network import ClusterNetwork
from constructs.node_image import NodeImage
from constructs.shared_storage import SharedStorage
from userdata.render import TLS_SERVER_NAME, NodeUserDataInputs

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class EfsHaClusterStack(Stack):
    def __init__(self, scope: Construct, id_: str, *, config: ClusterConfig, **kwargs: Any) -> None:
        super().__init__(scope, id_, description="Two-node HA cluster: EFS shared storage, MinIO, "
                                                 "route-table virtual IP", **kwargs)
        Tags.of(self).add("efs-ha:stack", self.stack_name)
        self.config = config
        self.network = ClusterNetwork(self, "Network", config=config)
        self.network.add_gateway_endpoints()
        node_group = node_security_group(self, "NodeSecurityGroup", vpc=self.network.vpc,
                                         client_cidrs=[str(cidr) for cidr in config.client_cidrs])
        self.storage = SharedStorage(self, "SharedStorage", network=self.network, node_security_group=node_group)
        self.state = ClusterState(self, "ClusterState")
        self.credentials = MinioCredentials(self, "MinioCredentials")
        self.tls = MinioTls(self, "MinioTls") if config.tls else None
        minio_binary = self._minio_binary_source()
        agent_code = s3_assets.Asset(self, "NodeAgentCode", path=str(PROJECT_ROOT / "node_agent"),
                                     exclude=["__pycache__", "*.pyc"])
        self.node_image = NodeImage(self, "NodeImage", images=config.node_images)
        self.nodes = [
            ClusterNode(self, name.capitalize(), vpc=self.network.vpc, security_group=node_group,
                        settings=self._node_settings(name, subnet_index, minio_binary, agent_code.s3_object_url))
            for subnet_index, name in enumerate(config.node_names)
        ]
        # One node at a time: a deploy that replaces nodes never takes both down together (each group's rolling
        # update ends only once its new instance has signalled and its old one is terminated).
        for previous, node in zip(self.nodes, self.nodes[1:], strict=False):
            node.node.add_dependency(previous)
        for node in self.nodes:
            # The first boot mounts EFS and downloads packages: it must not race the mount targets or routes.
            node.group.node.add_dependency(self.storage.file_system.mount_targets_available,
                                           *self.network.egress_ready)
        for node in self.nodes:
            self.credentials.grant_read(node.role)
            if self.tls is not None:
                self.tls.grant_node(node.role)
            self.state.grant_node_agent(node.role, node.name)
            node.grant_object_read(agent_code)
            if isinstance(minio_binary, s3_assets.Asset):
                node.grant_object_read(minio_binary)
        # No VIP route resource: no instance ID exists at synth. The checker's first run creates the cluster item
        # (the first node active) and every missing VIP route towards that node's ENI (drift repair).
        self.failover = FailoverManager(self, "FailoverManager", inputs=FailoverInputs(
            config=config, network=self.network, state=self.state, nodes=self.nodes,
            node_security_group=node_group))
        self.network.allow_endpoint_clients(node_group, self.failover.function)
        self._wire_checker_tls()
        drop_redundant_role_dependency(self.failover.function)
        self.monitoring = ClusterMonitoring(self, "Monitoring", inputs=MonitoringInputs(
            checker=self.failover.function, topic=self.failover.topic, file_system=self.storage.file_system,
            node_names=config.node_names,
            probe_interval_seconds=float(config.timings.probe_interval_seconds)))
        self._outputs()

    def _wire_checker_tls(self) -> None:
        """The checker's health probe verifies MinIO's certificate: it reads the CA-only secret, never the key."""
        if self.tls is None:
            return
        function = self.failover.function
        function.add_environment("MINIO_TLS", "true")
        function.add_environment("MINIO_CA_SECRET_ARN", self.tls.ca_secret.secret_arn)
        function.add_environment("MINIO_TLS_SERVER_NAME", TLS_SERVER_NAME)
        self.tls.grant_ca_read(function)

    def _minio_binary_source(self) -> s3_assets.Asset | str:
        """The https URL from config, or the user's own build shipped as an asset (fetched via the S3 endpoint)."""
        minio = self.config.minio
        if minio.local_file is not None:
            return s3_assets.Asset(self, "MinioBinary", path=str(minio.local_file))
        assert minio.url is not None  # guaranteed by config validation
        return minio.url

    def _node_settings(self, name: str, subnet_index: int, minio_binary: s3_assets.Asset | str,
                       agent_source: str) -> NodeSettings:
        config = self.config
        return NodeSettings(
            name=name,
            # Round-robin: node i in zone i mod the zone count, so nodes beyond the zone count share zones.
            subnet=self.network.private_subnets[subnet_index % len(self.network.private_subnets)],
            instance_type=config.instance_type,
            cluster_id=self.stack_name,
            image_id=self.node_image.image_id,
            image_description=self.node_image.description,
            user_data=NodeUserDataInputs(
                node_name=name,
                file_system_id=self.storage.file_system.file_system_id,
                mount_point=config.mount_point,
                vip=str(config.vip),
                minio_source=minio_binary if isinstance(minio_binary, str) else minio_binary.s3_object_url,
                minio_sha256=config.minio.sha256,
                agent_source=agent_source,
                region=self.region,
                secret_arn=self.credentials.secret.secret_arn,
                state_table_name=self.state.table.table_name,
                heartbeat_interval_seconds=config.timings.heartbeat_interval_seconds,
                lease_seconds=config.timings.lease_seconds,
                watchdog=config.timings.watchdog,
                watchdog_timeout_seconds=config.timings.watchdog_timeout_seconds,
                systemd_watchdog_seconds=config.timings.systemd_watchdog_seconds,
                tls=self.tls is not None,
                tls_secret_arn=self.tls.secret.secret_arn if self.tls else "",
                tls_ca_secret_arn=self.tls.ca_secret.secret_arn if self.tls else "",
            ),
        )

    def _outputs(self) -> None:
        # The operator CLI finds every resource through these outputs, never through hard-coded names.
        CfnOutput(self, "VirtualIp", value=str(self.config.vip))
        CfnOutput(self, "RouteTableIds", value=",".join(self.network.route_table_ids))
        CfnOutput(self, "NodeNames", value=",".join(self.config.node_names))
        # Instance IDs change with every replacement: the groups are what stays (the CLI lists their instances).
        CfnOutput(self, "NodeGroupNames", value=",".join(node.group.auto_scaling_group_name for node in self.nodes))
        CfnOutput(self, "StateTableName", value=self.state.table.table_name)
        CfnOutput(self, "FileSystemId", value=self.storage.file_system.file_system_id)
        CfnOutput(self, "MountPoint", value=self.config.mount_point)
        CfnOutput(self, "MinioSecretArn", value=self.credentials.secret.secret_arn)
        scheme = "https" if self.tls else "http"
        CfnOutput(self, "MinioEndpoint", value=f"{scheme}://{self.config.vip}:9000")
        if self.tls is not None:
            # `efs-ha ca-cert` prints the CA from here; its absence means tls: off.
            CfnOutput(self, "MinioCaSecretArn", value=self.tls.ca_secret.secret_arn)
            # Only its ARN: the rotation request is written to it (README, MinIO over TLS).
            CfnOutput(self, "MinioTlsSecretArn", value=self.tls.secret.secret_arn)
        CfnOutput(self, "FailoverFunctionName", value=self.failover.function.function_name)
        CfnOutput(self, "AlarmTopicArn", value=self.failover.topic.topic_arn)
        CfnOutput(self, "DashboardName", value=self.monitoring.dashboard.dashboard_name)
