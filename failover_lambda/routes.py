"""Point the VIP /32 of every listed route table at one ENI, then read the tables back to verify.

The tables are written concurrently (one ReplaceRoute/CreateRoute each, boto3 clients are thread-safe): the
switch takes one call's latency instead of one per table, and a checker that dies mid-move leaves as few
tables behind as possible. Whatever is left is drift that the next probe cycle repairs.

DescribeRouteTables only refines: the tables are known from ROUTE_TABLE_IDS, so with the describe throttled
every table gets a ReplaceRoute (CreateRoute where the route turns out missing), and the read-back is best
effort (`verified` False, not a failure: the next cycles' drift check reads the tables again).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from failover_lambda.aws import AWS_ERRORS, AwsUnavailable, error_code
from failover_lambda.ec2_view import vip_route
from failover_lambda.model import Ec2View
from failover_lambda.settings import Settings

_MISSING_ROUTE_CODES = frozenset({"InvalidRoute.NotFound", "InvalidParameterValue"})
# Route tables are few (one per subnet group); more than this many writes at once only invites throttling.
MAX_PARALLEL_WRITES = 8


@dataclass
class RouteResult:
    changed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    verified: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed


def drifted_tables(settings: Settings, view: Ec2View, eni: str) -> list[str]:
    """Listed tables whose VIP route is missing or points anywhere but `eni` (unknown tables included);
    every listed table when the routes could not be read."""
    if not view.routes_known:
        return list(settings.route_table_ids)
    return [table for table in settings.route_table_ids
            if (route := view.routes.get(table)) is None or route.target_eni != eni]


class RouteMover:
    def __init__(self, client: Any, settings: Settings) -> None:
        self._client = client
        self._settings = settings

    def point_at(self, eni: str, view: Ec2View, *, verify: bool = True) -> RouteResult:
        """Fix every drifted table (one call each, all at once), then verify all of them with one describe call
        (best effort; skipped with `verify=False`)."""
        result = RouteResult()
        drifted = drifted_tables(self._settings, view, eni)
        if drifted:
            with ThreadPoolExecutor(max_workers=min(len(drifted), MAX_PARALLEL_WRITES),
                                    thread_name_prefix="route") as pool:
                futures = {table: pool.submit(self._move, table, eni, view) for table in drifted}
            # Every write has finished here (the pool waited); collect in the settings' table order.
            for table, future in futures.items():
                problem = future.result()  # re-raises anything that is not an AWS error, after all tables ran
                if problem is None:
                    result.changed.append(table)
                else:
                    result.failed[table] = problem
        if not verify:
            return result
        try:
            problems = self.verify(eni)
        except AwsUnavailable:
            return result  # unverified: the next probe cycles read the tables again (drift repair)
        result.verified = True
        for table, problem in problems.items():
            result.failed.setdefault(table, problem)
        return result

    def _move(self, table: str, eni: str, view: Ec2View) -> str | None:
        """One table's write: None when done, else the AWS error (one bad table must not stop the others;
        the next probe cycle retries it as drift)."""
        route = view.routes.get(table)
        # Unknown routes (describe throttled): ReplaceRoute first, CreateRoute if the route is missing.
        exists = (route is not None and route.present) if view.routes_known else True
        try:
            self._set_route(table, eni, exists=exists)
        except AWS_ERRORS as error:
            return f"{error_code(error)}: {error}"
        return None

    def verify(self, eni: str) -> dict[str, str]:
        """Table -> problem for each listed table whose VIP route does not target `eni` exactly."""
        try:
            response = self._client.describe_route_tables(
                Filters=[{"Name": "route-table-id", "Values": list(self._settings.route_table_ids)}])
        except AWS_ERRORS as error:
            raise AwsUnavailable("DescribeRouteTables", error) from error
        routes = {t["RouteTableId"]: vip_route(t, self._settings.vip_cidr)
                  for t in response.get("RouteTables", [])}
        problems: dict[str, str] = {}
        for table in self._settings.route_table_ids:
            route = routes.get(table)
            if route is None:
                problems[table] = "route table not found"
            elif route.target_eni != eni:
                target = route.target_eni or route.target_instance or "nothing"
                problems[table] = f"VIP route targets {target}"
        return problems

    def _set_route(self, table: str, eni: str, *, exists: bool) -> None:
        args = {"RouteTableId": table, "DestinationCidrBlock": self._settings.vip_cidr,
                "NetworkInterfaceId": eni}
        try:
            (self._client.replace_route if exists else self._client.create_route)(**args)
        except AWS_ERRORS as error:
            # The view may be a few seconds old: fall back to the other call once.
            code = error_code(error)
            if exists and code in _MISSING_ROUTE_CODES:
                self._client.create_route(**args)
            elif not exists and code == "RouteAlreadyExists":
                self._client.replace_route(**args)
            else:
                raise
