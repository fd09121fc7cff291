"""Run-time view of the cluster's instances and VIP routes: two describe calls, reused for a few seconds.

Nothing instance-specific is configured at deploy time: nodes are found by their tags on every refresh.
Describe results refine, never block: a failed call (throttling, timeout) makes that part of the view
"unknown" for EC2_CACHE_SECONDS (no call storm against a throttled API) and the checker goes on with what
the state table says (docs/failover-design.md, "Checker").
"""

from __future__ import annotations

from typing import Any

from failover_lambda.aws import AWS_ERRORS, AwsUnavailable, error_code
from failover_lambda.clock import Clock
from failover_lambda.model import Ec2View, Instance, VipRoute
from failover_lambda.settings import Settings

CLUSTER_TAG = "efs-ha:cluster"
NODE_TAG = "efs-ha:node"
LIVE_STATES = ["pending", "running", "shutting-down", "stopping", "stopped"]
GONE_STATES = frozenset({"stopped", "terminated", "gone"})


class Ec2Reader:
    def __init__(self, client: Any, settings: Settings, clock: Clock) -> None:
        self._client = client
        self._settings = settings
        self._clock = clock
        self._cached: Ec2View | None = None

    def view(self, *, fresh: bool = False) -> Ec2View:
        """Cached up to EC2_CACHE_SECONDS; `fresh` before any decision that moves the VIP. Never raises: a
        part EC2 did not answer is unknown, and stays so (no new call) until the cache time has passed."""
        now = self._clock.monotonic()
        cached = self._cached
        if cached is not None and now - cached.fetched_at < self._settings.ec2_cache_seconds and (
                not fresh or not (cached.instances_known and cached.routes_known)):
            return cached
        instances: dict[str, tuple[Instance, ...]] = {}
        routes: dict[str, VipRoute] = {}
        errors: list[str] = []
        try:
            instances = self._instances()
        except AwsUnavailable as error:
            errors.append(str(error))
        try:
            routes = self._routes()
        except AwsUnavailable as error:
            errors.append(str(error))
        instances_known = not any(e.startswith("DescribeInstances") for e in errors)
        routes_known = not any(e.startswith("DescribeRouteTables") for e in errors)
        cached = Ec2View(instances=instances, routes=routes, fetched_at=now, instances_known=instances_known,
                         routes_known=routes_known, errors=tuple(errors))
        self._cached = cached
        return cached

    def invalidate(self) -> None:
        self._cached = None

    def instance_state(self, instance_id: str) -> str:
        """State of one instance; 'gone' when EC2 no longer knows it (terminated long ago)."""
        try:
            response = self._client.describe_instances(InstanceIds=[instance_id])
        except AWS_ERRORS as error:
            if error_code(error) == "InvalidInstanceID.NotFound":
                return "gone"
            raise AwsUnavailable("DescribeInstances", error) from error
        states = [i["State"]["Name"] for r in response.get("Reservations", [])
                  for i in r.get("Instances", [])]
        return states[0] if states else "gone"

    def _instances(self) -> dict[str, tuple[Instance, ...]]:
        filters = [{"Name": f"tag:{CLUSTER_TAG}", "Values": [self._settings.cluster_id]},
                   {"Name": "instance-state-name", "Values": LIVE_STATES}]
        found: dict[str, list[Instance]] = {}
        for raw in self._paged(self._client.describe_instances, "DescribeInstances", "Reservations",
                               Filters=filters):
            for item in raw.get("Instances", []):
                instance = _instance(item)
                if instance and instance.node in self._settings.node_names:
                    found.setdefault(instance.node, []).append(instance)
        # Prefer running, then the newest launch (a replacement is newer than the instance it replaces).
        return {node: tuple(sorted(items, key=lambda i: (not i.running, -i.launch_time)))
                for node, items in found.items()}

    def _routes(self) -> dict[str, VipRoute]:
        # A filter (not RouteTableIds=) so one deleted table does not fail the whole call.
        filters = [{"Name": "route-table-id", "Values": list(self._settings.route_table_ids)}]
        tables = self._paged(self._client.describe_route_tables, "DescribeRouteTables", "RouteTables",
                             Filters=filters)
        return {table["RouteTableId"]: vip_route(table, self._settings.vip_cidr) for table in tables}

    @staticmethod
    def _paged(method: Any, operation: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        try:
            while True:
                page = method(**kwargs)
                results += page.get(key, [])
                if not page.get("NextToken"):
                    return results
                kwargs["NextToken"] = page["NextToken"]
        except AWS_ERRORS as error:
            raise AwsUnavailable(operation, error) from error


def vip_route(table: dict[str, Any], vip_cidr: str) -> VipRoute:
    # Exact match on the destination: a prefix/substring match picks up 172.16.0.10/32 for 172.16.0.1.
    route = next((r for r in table.get("Routes", []) if r.get("DestinationCidrBlock") == vip_cidr), None)
    return VipRoute(
        route_table_id=table["RouteTableId"],
        present=route is not None,
        target_eni=route.get("NetworkInterfaceId") if route else None,
        target_instance=route.get("InstanceId") if route else None,
    )


def _instance(item: dict[str, Any]) -> Instance | None:
    tags = {tag["Key"]: tag["Value"] for tag in item.get("Tags", [])}
    node = tags.get(NODE_TAG)
    if not node:
        return None
    primary = next((eni for eni in item.get("NetworkInterfaces", [])
                    if eni.get("Attachment", {}).get("DeviceIndex") == 0), None)
    launch = item.get("LaunchTime")
    return Instance(
        node=node,
        instance_id=item["InstanceId"],
        state=item.get("State", {}).get("Name", "unknown"),
        launch_time=launch.timestamp() if launch is not None else 0.0,
        eni=primary.get("NetworkInterfaceId") if primary else None,
        private_ip=primary.get("PrivateIpAddress") if primary else None,
    )
