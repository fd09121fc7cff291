"""The inner drill, run inside the "aws" namespace: moto, the checker service, the nodes (two, or three for the
scenarios that ask for them), the client, the VPC-router mirror; runs scenarios and measures them. Everything it
starts is stopped in close()."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from drill import aws
from drill.analysis import (
    Window,
    detection_seconds,
    dual_active,
    handover_gap,
    largest_probe_gap,
    rto_seconds,
    vip_violations,
)
from drill.config import (
    CLUSTER_ID,
    MOTO_PORT,
    NODE_NAMES,
    PROXY_PORT,
    TABLE_NAME,
    VIP,
    Fleet,
    Timings,
    base_env,
    checker_budget,
    node_address,
)
from drill.lambda_service import LambdaService
from drill.netns import Topology, in_ns
from drill.nodes import MINIO_PASSWORD, MINIO_USER, Node, SharedStorage
from drill.procs import Child
from drill.proxy import KillSwitchProxy
from drill.scenarios import Scenario
from drill.timeline import Timeline
from drill.watcher import Watcher

CLEAN_TIMEOUT_SECONDS = 120.0
WARMUP_OPS = 30
RECOVERED_STREAK = 10
MIN_OBSERVE_SECONDS = 3.0
SERVICE_FAILURE_HOLD_SECONDS = 600.0  # the checker's default (failover_lambda/settings.py)


def log(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def checker_env(fleet: Fleet, timings: Timings, node_names: tuple[str, ...] = NODE_NAMES) -> dict[str, str]:
    """Exactly the function's environment in the stack (failover_manager.py), pointed at moto via the proxy."""
    return {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{PROXY_PORT}",
        "STATE_TABLE_NAME": TABLE_NAME, "CLUSTER_ID": CLUSTER_ID, "NODE_NAMES": ",".join(node_names),
        "ROUTE_TABLE_IDS": ",".join(fleet.route_table_ids), "VIP": VIP, "TOPIC_ARN": fleet.topic_arn,
        "PROBE_INTERVAL_SECONDS": str(timings.probe_interval_seconds),
        "FAILURE_THRESHOLD": str(timings.failure_threshold),
        "HEARTBEAT_INTERVAL_SECONDS": str(timings.heartbeat_interval_seconds),
        "HEARTBEAT_STALE_SECONDS": str(timings.heartbeat_stale_seconds),
        "LEASE_SECONDS": str(timings.lease_seconds), "FENCE_TIMEOUT_SECONDS": str(timings.fence_timeout_seconds),
        "LEASE_DEADLINE_SECONDS": str(timings.lease_deadline_seconds), "WATCHDOG": timings.watchdog,
        "WATCHDOG_TIMEOUT_SECONDS": str(timings.watchdog_timeout_seconds),
        "POWERTOOLS_SERVICE_NAME": "efs-ha-checker", "POWERTOOLS_METRICS_NAMESPACE": "EfsHaCluster",
        "LOOP_SAFETY_MARGIN_SECONDS": f"{checker_budget(timings)[1]:g}",
        # Not in the stack: moto's ENI addresses (10.0.x.x) are no host of ours and must never be contacted.
        "HTTP_PROBE": "false",
    }


class Lab:
    def __init__(self, topology: Topology, work: Path, timings: Timings,
                 node_names: tuple[str, ...] = NODE_NAMES) -> None:
        self.topology = topology
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.timings = timings
        self.node_names = node_names  # failover priority order, as the checker's NODE_NAMES
        self.timeline = Timeline()
        self.storage = SharedStorage(work, node_names)
        self.proxy = KillSwitchProxy(PROXY_PORT, MOTO_PORT)
        self.moto: Child | None = None
        self.nodes: dict[str, Node] = {}
        self.checker: LambdaService
        self.watcher: Watcher | None = None
        self.fleet: Fleet
        self.client_table = ""
        self._client: Child | None = None
        self._verify: dict[str, Any] | None = None
        self._verified = threading.Event()
        self._problems: list[str] = []  # found by a scenario while it runs (see problem())
        self._held: list[str] = []  # nodes on the checker's hold when the run recovered (before the heal)
        self.last_replaced: tuple[str, str] = ("", "")  # (node, its new instance id): see replace_instance()
        self._inflight: Child | None = None
        self._inflight_lines: list[dict[str, Any]] = []
        # What a scenario records while it injects its fault (merged into the run's results): "faulted" and
        # "epoch_before" name the node and the epoch the measurements start from when it is not the first fault.
        self.notes: dict[str, Any] = {}

    # ----- setup -----
    def open(self) -> None:
        self.storage.mount()
        self.moto = Child("moto", aws.moto_argv(), {**base_env()}, self.logs)
        aws.wait_ready()
        self.fleet = aws.populate(self.node_names)
        # The client sits in the last private subnet: the table a crashed checker updates last.
        self.client_table = self.fleet.route_table_ids[-1]
        self.proxy.start()
        for name in self.node_names:
            view = self.storage.views[name]
            self.nodes[name] = Node(name, self.topology, self.fleet, self.timings, view, self.logs,
                                    self.timeline.sample, self._node_event)
            self.nodes[name].start_sampler()
            self.nodes[name].start_watchdog()
        self.check_vip_isolation()
        self.checker = LambdaService(checker_env(self.fleet, self.timings, self.node_names), self.logs, log,
                                     checker_budget(self.timings)[0])
        self.watcher = Watcher(self.fleet, self.topology, self.nodes, self.timeline, self.client_table,
                               lambda event: self._ec2_event(event), log)
        self.watcher.start()
        for node in self.nodes.values():
            node.start_agent()
        self.checker.start()

    def _node_event(self, node: str, at: float, text: str) -> None:
        self.timeline.event(at, f"{node}: {text}")

    def problem(self, text: str) -> None:
        """A scenario found something wrong that the measurements would not show."""
        log(f"PROBLEM: {text}")
        self._problems.append(text)

    def epoch(self) -> int:
        cluster = self.timeline.latest_cluster()
        return cluster.epoch if cluster else 0

    def cluster_reason(self) -> str:
        """Why the cluster item last changed, as the checker wrote it (its `reason`)."""
        item = aws.client("dynamodb").get_item(TableName=TABLE_NAME, Key={"pk": {"S": "cluster"}},
                                               ConsistentRead=True).get("Item", {})
        return str(item.get("reason", {}).get("S", ""))

    def queue_switchover(self, target: str) -> None:
        """What `efs-ha switchover` does while a probe loop holds the checker's slot: the request item."""
        from efs_ha_cli.checker_api import RequestQueue

        RequestQueue(aws.client("dynamodb"), TABLE_NAME).queue_switchover(target, time.time())

    def _ec2_event(self, event: dict[str, Any]) -> None:
        if self.checker.invoke(event, "ec2-state-change") is None:
            log("EC2 state-change invocation throttled (slot busy): dropped")

    def check_vip_isolation(self) -> None:
        """Before anything runs: the VIP reaches exactly the node the client route names, and nothing without."""
        for index, name in [*enumerate(self.node_names), (None, None)]:
            self.topology.route_vip(node_address(index) if index is not None else None)
            reached = self._probe_vip_identity()
            if reached != name:
                raise RuntimeError(f"VIP isolation broken: route via {name} reached {reached}; "
                                   f"client routes:\n{self.topology.client_routes()}")
        log("VIP check: the client reaches each node only through its route, nothing without one")

    def _probe_vip_identity(self) -> str | None:
        code = "from drill.client import vip_identity; print(vip_identity())"
        result = subprocess.run(in_ns(self.topology.client, [sys.executable, "-c", code]), env=base_env(),
                                capture_output=True, text=True, timeout=30, check=True)
        answer = result.stdout.strip()
        return None if answer == "None" else answer

    # ----- cluster state -----
    def heal(self) -> None:
        """Undo every fault: links up, state table reachable, EFS writable and fast, clocks right, agents thawed,
        SSM delivered, instances running, agents started, proxy disarmed."""
        self.proxy.disarm()
        ec2 = aws.client("ec2")
        states = {i["InstanceId"]: i["State"]["Name"] for r in ec2.describe_instances(
            InstanceIds=list(self.fleet.instance_ids.values()))["Reservations"] for i in r["Instances"]}
        for name, node in self.nodes.items():
            if not node.links_up:
                node.set_links(True)
            node.set_table_cut(False)
            node.stop_slow_efs()
            node.ssm_reachable = True
            node.thaw()  # a paused VM resumes
            self.storage.set_read_only(name, False)
            if states[self.fleet.instance_ids[name]] != "running":
                ec2.start_instances(InstanceIds=[self.fleet.instance_ids[name]])
            node.power_on()
            if node.clock_offset:
                node.clock_offset = 0.0
                node.restart_agent()
            if node.s3_start_faulted():
                # A MinIO that kept crashing: fixed, and the unit's start limit cleared (`systemctl reset-failed`,
                # here a fresh agent and with it a fresh ProcessController).
                node.set_s3_start()
                node.restart_agent()
            node.set_s3_start()
            node.start_agent()
        self._clear_holds()

    def wait_past_start_grace(self, grace: float) -> None:
        """Sleep until the cluster item's changed_at (checker wall clock = this machine's) is `grace` s old."""
        item = aws.client("dynamodb").get_item(TableName=TABLE_NAME, Key={"pk": {"S": "cluster"}},
                                               ConsistentRead=True).get("Item", {})
        changed_at = float(item.get("changed_at", {}).get("N", "0"))
        left = changed_at + grace - time.time()
        if left > 0:
            log(f"waiting {left:.1f}s for the checker's MinIO start grace to pass")
            time.sleep(left)

    def held_nodes(self) -> list[str]:
        """Nodes on the checker's no-ping-pong hold (service_failed_at within SERVICE_FAILURE_HOLD_SECONDS)."""
        item = aws.client("dynamodb").get_item(TableName=TABLE_NAME, Key={"pk": {"S": "checker"}},
                                               ConsistentRead=True).get("Item", {})
        failed = item.get("service_failed_at", {}).get("M", {})
        now = time.time()
        return sorted(name for name, value in failed.items()
                      if now - float(value.get("N", "0")) < SERVICE_FAILURE_HOLD_SECONDS)

    def _clear_holds(self, timeout: float = 15.0) -> None:
        """The drill's own reset between runs (not an operator action): a node held back after a MinIO failure
        would otherwise be no failover target for the next 10 minutes of scenarios. Re-checked, because a
        checker cycle that read its item before this write can save the old map back."""
        deadline = time.monotonic() + timeout
        ddb = aws.client("dynamodb")
        while self.held_nodes() and time.monotonic() < deadline:
            ddb.update_item(TableName=TABLE_NAME, Key={"pk": {"S": "checker"}},
                            UpdateExpression="REMOVE service_failed_at")
            time.sleep(1.5)
        if self.held_nodes():
            raise RuntimeError(f"the checker's hold on {self.held_nodes()} could not be cleared")

    def clean_state(self) -> str | None:
        """The active node if the cluster is clean: stable, both nodes fresh with EFS ok, the active one (and only
        it) answering, every route table and the client's kernel route on it."""
        now = time.time()
        cluster = self.timeline.latest_cluster()
        if cluster is None or cluster.phase != "stable" or not cluster.active:
            return None
        active = cluster.active
        # A probe loop must be running: right after the checker itself died (checker-killed), the next scheduled
        # invocation is up to a minute away, and a fault then would measure the schedule, not the failover.
        if not self.checker.busy():
            return None
        with self.timeline.lock:
            reports = dict(self.timeline.nodes)
            routes = dict(self.timeline.routes_all)
            applied = self.timeline.applied_route[-1][1] if self.timeline.applied_route else None
        with self.timeline.lock:
            renewed = dict(self.timeline.renewed_at)
        for name in self.node_names:
            report = reports.get(name, {})
            # Freshness on the drill's clock (lease_seq growing), never the node's heartbeat_at (maybe skewed).
            if now - renewed.get(name, 0.0) > 2.5 or report.get("efs_ok") is not True:
                return None
            if self.timings.watchdog == "required" and report.get("watchdog") not in ("ready", "armed"):
                return None
            if self.timeline.answering(name, now - 0.5) is not (name == active):
                return None
        if set(routes.values()) != {active} or len(routes) != len(self.fleet.route_table_ids) or applied != active:
            return None
        return active if reports[active].get("serving") is True else None

    def wait_new_active(self, old: str, epoch_before: int, since: float, timeout: float) -> str | None:
        """The node that took over from `old`: stable at a later epoch, every route table on it, its S3 server
        answering and the client's last RECOVERED_STREAK requests (after `since`) all answered. None on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            cluster = self.timeline.latest_cluster()
            if cluster is not None and cluster.phase == "stable" and cluster.active not in (None, old) \
                    and cluster.epoch > epoch_before:
                with self.timeline.lock:
                    routes = set(self.timeline.routes_all.values())
                ops = self.ops_since(since)
                if routes == {cluster.active} and self.timeline.answering(cluster.active, time.time() - 0.5) \
                        and len(ops) >= RECOVERED_STREAK and all(op["ok"] for op in ops[-RECOVERED_STREAK:]):
                    return cluster.active
            time.sleep(0.1)
        return None

    def wait_clean(self, timeout: float = CLEAN_TIMEOUT_SECONDS) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            active = self.clean_state()
            if active:
                return active
            time.sleep(0.2)
        raise RuntimeError(f"the cluster did not reach a clean state within {timeout:g}s: "
                           f"{self.timeline.latest_cluster()} routes={self.timeline.routes_all}")

    # ----- client -----
    def _on_client_line(self, line: str) -> None:
        record = json.loads(line)
        kind = record.get("k")
        with self.timeline.lock:
            if kind in ("put", "get"):
                self.timeline.ops.append(record)
            elif kind == "id":
                self.timeline.identity.append((record["t"], record["node"]))
        if kind == "verify":
            self._verify = record
            self._verified.set()

    def start_client(self, prefix: str) -> Child:
        self._verify, self._verified = None, threading.Event()
        env = {**base_env(), "DRILL_S3_USER": MINIO_USER, "DRILL_S3_PASSWORD": MINIO_PASSWORD}
        self._client = Child(f"client-{prefix}", in_ns(self.topology.client, [
            sys.executable, "-m", "drill.client", "--prefix", prefix, "--max-seconds", "400"]), env, self.logs,
            on_line=self._on_client_line, stdin=True)
        return self._client

    def start_inflight(self, timeout: float = 90.0) -> None:
        """drill/inflight.py in the client namespace: upload, then both readers start; returns once data flows."""
        self._inflight_lines = []
        ready, reading = threading.Event(), threading.Event()

        def on_line(line: str) -> None:
            if not line.startswith("{"):
                return
            record = json.loads(line)
            with self.timeline.lock:
                self._inflight_lines.append(record)
                readers = sum(1 for r in self._inflight_lines if r.get("k") == "reading")
            if record.get("k") == "ready":
                ready.set()
            if readers >= 2:
                reading.set()

        env = {**base_env(), "DRILL_S3_USER": MINIO_USER, "DRILL_S3_PASSWORD": MINIO_PASSWORD}
        self._inflight = Child("inflight", in_ns(self.topology.client, [sys.executable, "-m", "drill.inflight"]),
                               env, self.logs, on_line=on_line, stdin=True)
        if not ready.wait(timeout):
            raise RuntimeError("drill.inflight did not upload its object (see inflight.log)")
        self._inflight.send("go")
        if not reading.wait(30):
            raise RuntimeError("drill.inflight's readers got no data (see inflight.log)")

    def inflight_results(self, timeout: float) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.timeline.lock:
                results = {r["client"]: r for r in self._inflight_lines if r.get("k") == "result"}
            if len(results) >= 2:
                break
            time.sleep(0.5)
        if self._inflight is not None:
            self._inflight.stop(timeout=5)
            self._inflight = None
        return results

    def ops_since(self, since: float) -> list[dict[str, Any]]:
        with self.timeline.lock:
            return [op for op in self.timeline.ops if op["t0"] >= since]

    def replace_instance(self, name: str, boot_delay: float) -> None:
        """The node's instance is terminated and its Auto Scaling group launches another (new id, ENI, address);
        `boot_delay` later that instance boots the node again."""
        self.nodes[name].kill()
        instance_id, eni, private_ip = aws.launch_replacement(self.fleet.instance_ids[name])
        self.fleet.instance_ids[name] = instance_id
        self.fleet.enis[name] = eni
        self.fleet.private_ips[name] = private_ip
        assert self.watcher is not None, "the lab is open"
        self.watcher.track_replacement(name, instance_id, eni)
        self.last_replaced = (name, instance_id)
        boot = threading.Timer(boot_delay, self.nodes[name].boot_replacement, args=(instance_id, eni, private_ip))
        boot.daemon = True
        boot.start()

    def node_reports_from(self, name: str, instance_id: str) -> bool:
        """The node's latest item comes from this instance and is fresh (the drill's clock) with EFS ok."""
        with self.timeline.lock:
            report = dict(self.timeline.nodes.get(name, {}))
            renewed = self.timeline.renewed_at.get(name, 0.0)
        return (report.get("instance_id") == instance_id and report.get("efs_ok") is True
                and time.time() - renewed < 2.5)

    def start_switchover(self, target: str, timeout: float = 75.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.checker.invoke({"action": "switchover", "target": target}, "operator switchover") is not None:
                return time.time()
            time.sleep(0.05)
        raise RuntimeError("the checker's only slot stayed busy: switchover not invoked")

    # ----- one scenario -----
    def run(self, scenario: Scenario, rep: int) -> dict[str, Any]:
        self._problems = []
        self.notes = {}
        active = self.wait_clean()
        if scenario.prepare is not None:
            standby = next(n for n in self.node_names if n != active)
            log(f"[{scenario.name} #{rep}] preparing")
            try:
                scenario.prepare(self, active, standby)
            except RuntimeError as error:  # recorded; the fault then hits whichever node is active
                self.problem(f"preparation failed: {error}")
            active = self.wait_clean()
        standby = next(n for n in self.node_names if n != active)
        started = time.time()
        client = self.start_client(f"{scenario.name}-{rep}")
        self._wait(lambda: sum(op["ok"] for op in self.ops_since(started)) >= WARMUP_OPS, 60, "client warm-up")
        epoch = self.epoch()
        with self.timeline.lock:
            skew = self.timeline.skew.get(active)
        fault_at = time.time()
        log(f"[{scenario.name} #{rep}] fault on {active}: {scenario.title}")
        fault_at = scenario.inject(self, active, standby) or fault_at
        # A chain of faults is measured from its last one (scenarios.py: kill_active_twice).
        faulted, epoch = self.notes.get("faulted", active), self.notes.get("epoch_before", epoch)
        recovered = self._wait(lambda: self._recovered(scenario, fault_at, epoch), scenario.recovery_timeout,
                               "recovery", fail=False)
        recovered_at = time.time()
        extra = scenario.collect(self, fault_at) if scenario.collect is not None else {}
        self._held = self.held_nodes()
        log(f"[{scenario.name} #{rep}] {'recovered' if recovered else 'NOT recovered'} after "
            f"{recovered_at - fault_at:.1f}s; healing")
        healed_at = time.time()
        self.heal()
        self.wait_clean()
        settled_at = time.time()
        client.send("verify")
        verified = self._verified.wait(120)
        client.stop(timeout=10)
        window = Window(fault_at, recovered_at, epoch, faulted)
        result = self._measure(scenario, rep, window, started, recovered, verified, (healed_at, settled_at))
        result["clock_skew_s"] = _round(skew)  # the faulted node's heartbeat_at minus the drill's clock
        result.update(extra)
        result.update({key: value for key, value in self.notes.items() if key not in ("faulted", "epoch_before")})
        return result

    def _recovered(self, scenario: Scenario, fault_at: float, epoch: int) -> bool:
        if time.time() - fault_at < max(MIN_OBSERVE_SECONDS, scenario.min_observe):
            return False
        ops = self.ops_since(fault_at)
        if len(ops) < RECOVERED_STREAK or not all(op["ok"] for op in ops[-RECOVERED_STREAK:]):
            return False
        cluster = self.timeline.latest_cluster()
        if cluster is None or cluster.phase != "stable" or (scenario.moves and cluster.epoch <= epoch):
            return False
        with self.timeline.lock:
            routes = set(self.timeline.routes_all.values())
        return routes == {cluster.active}

    def _measure(self, scenario: Scenario, rep: int, window: Window, started: float, recovered: bool,
                 verified: bool, healed: tuple[float, float]) -> dict[str, Any]:
        ops = self.ops_since(started)
        detect, switch = detection_seconds(self.timeline, window)
        faults = self._fault_checks(scenario, window, *healed)
        verify = self._verify or {}
        lost = verify.get("lost", []) if verified else ["<verification did not finish>"]
        bad_reads = [op["key"] for op in ops if op.get("bad")]
        overlaps = dual_active(self.timeline, started, time.time())
        violations = vip_violations(self.timeline, started, time.time())
        return {
            "scenario": scenario.name, "rep": rep, "title": scenario.title, "from": window.old_active,
            "detection_s": _round(detect), "switch_s": _round(switch), "rto_s": _round(rto_seconds(ops, window)),
            "acknowledged": sum(1 for op in ops if op["k"] == "put" and op["ok"]),
            "lost": len(lost) + len(bad_reads), "lost_keys": (lost + bad_reads)[:20],
            "dual_active": bool(overlaps), "dual_active_intervals": overlaps[:5],
            "vip_violations": len(violations), "vip_violation_samples": violations[:5],
            "recovered": recovered, "fault_phase_s": _round(self._phase(window.fault_at)),
            "handover_gap_s": _round(handover_gap(self.timeline, window)),
            # From the client's start to the verification: the fault, the takeover and the heal included.
            "probe_gap_max_s": _round(largest_probe_gap(self.proxy.scan_times(started, time.time()))),
            **faults,
        }

    def _fault_checks(self, scenario: Scenario, window: Window, healed_at: float, settled_at: float
                      ) -> dict[str, Any]:
        """What each fault promises beyond the common measurements: watchdog resets, self-fencing, no move."""
        old = window.old_active
        reset_times = [(name, at) for name, node in self.nodes.items() for at in node.resets
                       if window.fault_at <= at <= healed_at]
        resets = [{"node": name, "after_fault_s": _round(at - window.fault_at)} for name, at in reset_times]
        old_reset = min((at for name, at in reset_times if name == old), default=None)
        with self.timeline.lock:
            events = [(t, text) for t, text in self.timeline.events if window.fault_at <= t <= settled_at]
            promoted = next((c.t for c in self.timeline.cluster if c.t >= window.fault_at
                             and c.epoch > window.epoch_before and c.phase == "stable" and c.active
                             and c.active != old), None)
            moved = any(c.t >= window.fault_at and c.epoch > window.epoch_before for c in self.timeline.cluster
                        if c.t <= healed_at)
            reasons = [(round(t - window.fault_at, 2), r) for t, r in self.timeline.stop_reasons.get(old, [])
                       if window.fault_at <= t]
        self_fence = next((t for t, text in events if text.startswith(f"{old}: agent:") and t <= healed_at), None)
        last_answer = self._last_answer(old, window)
        with self.timeline.lock:
            first_new = min((t for name, series in self.timeline.samples.items() if name != old
                             for t, up in series if up and window.fault_at <= t <= window.recovered_at),
                            default=None)
        problems = list(self._problems)
        # With `watchdog: off` nothing can reset a frozen node: fencing then waits for StopInstances.
        expect_reset = scenario.expect_reset and self.timings.watchdog == "required"
        if expect_reset and old_reset is None:
            problems.append(f"the watchdog of {old} did not reset it")
        if expect_reset and old_reset is not None and promoted is not None and old_reset > promoted:
            problems.append(f"{old} was reset only after another node was made active")
        if not expect_reset and resets:
            problems.append(f"a watchdog reset that this fault must not cause: {resets}")
        if scenario.expect_self_fence and self_fence is None:
            problems.append(f"{old} did not report a self-fence (lease_lost) in its agent log")
        if scenario.no_failover and moved:
            problems.append("a takeover happened although the node stayed healthy")
        restarted = self._restarted(old, window)
        if scenario.expect_restart_in_place and restarted is None:
            problems.append(f"the S3 server of {old} did not answer again after the fault (no restart in place)")
        if scenario.expect_hold and old not in self._held:
            problems.append(f"{old} was not put on the checker's no-ping-pong hold")
        return {
            "watchdog_resets": resets,
            "reset_s": _round(old_reset - window.fault_at) if old_reset is not None else None,
            "promoted_s": _round(promoted - window.fault_at) if promoted is not None else None,
            "self_fence_s": _round(self_fence - window.fault_at) if self_fence is not None else None,
            "old_stop_reasons": reasons[:10],
            "old_stopped_s": _round(last_answer - window.fault_at) if last_answer is not None else None,
            "new_serving_s": _round(first_new - window.fault_at) if first_new is not None else None,
            "restarted_s": _round(restarted - window.fault_at) if restarted is not None else None,
            "held_back": list(self._held),
            "throttled_calls": dict(self.proxy.throttled_calls) if scenario.name == "describe-throttled" else {},
            "events": [f"{t - window.fault_at:+.2f}s {text}" for t, text in events][:40],
            "problems": problems,
        }

    def _restarted(self, node: str, window: Window) -> float | None:
        """When the old node's S3 server first answered again after a silence that began after the fault."""
        with self.timeline.lock:
            series = [(t, up) for t, up in self.timeline.samples.get(node, [])
                      if window.fault_at <= t <= window.recovered_at]
        silent = False
        for t, up in series:
            if not up:
                silent = True
            elif silent:
                return t
        return None

    def _last_answer(self, node: str, window: Window) -> float | None:
        """The old node's last S3 answer between the fault and recovery (its server stopped just after)."""
        with self.timeline.lock:
            series = list(self.timeline.samples.get(node, []))
        answers = [t for t, up in series if up and window.fault_at <= t <= window.recovered_at]
        return answers[-1] if answers else None

    def _phase(self, at: float) -> float | None:
        """Seconds since the scheduled invocation that was running (or last ran) when the fault came."""
        starts = [i["t"] for i in self.checker.invocations if i["trigger"] == "schedule" and "id" in i
                  and i["t"] <= at]
        return at - starts[-1] if starts else None

    @staticmethod
    def _wait(condition: Any, timeout: float, what: str, *, fail: bool = True) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.1)
        if fail:
            raise RuntimeError(f"timed out waiting for {what} ({timeout:g}s)")
        return False

    # ----- teardown -----
    def close(self) -> None:
        for step in self._teardown_steps():
            with suppress(Exception):
                step()

    def _teardown_steps(self) -> list[Callable[[], None]]:
        steps: list[Callable[[], None]] = []
        if self._client is not None:
            steps.append(lambda: self._client.stop(timeout=3) if self._client else None)
        if self._inflight is not None:
            steps.append(lambda: self._inflight.stop(timeout=3) if self._inflight else None)
        if self.watcher is not None:
            steps.append(self.watcher.stop)
        if hasattr(self, "checker"):
            steps.append(self.checker.stop)
        steps += [node.stop for node in self.nodes.values()]
        steps.append(self.proxy.stop)
        if self.moto is not None:
            steps.append(lambda: self.moto.stop(timeout=5) if self.moto else None)
        steps.append(self.storage.unmount)
        return steps


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 2) if present else None
