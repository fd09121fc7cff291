"""`python -m drill [--scenario NAME ...] [--repeat N] [--output FILE]`.

The outer process (root namespace) only creates the run's network namespaces, runs the inner drill inside the
"aws" one (`ip netns exec`, which also gives it a private mount namespace: its EFS mounts vanish with it), and
always kills what is left in those namespaces and deletes them, also on failure, SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from drill.config import REPO_ROOT, Timings, base_env, checker_budget, node_names
from drill.netns import Topology, remove_stale
from drill.scenarios import SCENARIOS, Scenario

if TYPE_CHECKING:
    from drill.lab import Lab

INNER_GRACE_SECONDS = 30
PR_SET_PDEATHSIG = 1


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m drill", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS),
                        help="run only this scenario (repeatable); default: all")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of each scenario (medians reported)")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "drill-results.json")
    parser.add_argument("--max-minutes", type=float, default=60, help="hard bound for the whole drill")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def selected(args: argparse.Namespace) -> list[Scenario]:
    return [SCENARIOS[name] for name in (args.scenario or list(SCENARIOS))]


def topology(prefix: str, scenarios: list[Scenario]) -> Topology:
    """Namespaces for the largest cluster any selected scenario runs (node namespaces a smaller one leaves idle)."""
    return Topology(prefix, node_names(max(scenario.nodes for scenario in scenarios)))


def by_cluster_size(scenarios: list[Scenario]) -> dict[int, list[Scenario]]:
    """Scenarios grouped by their node count, in order of first appearance: one lab (moto, checker, nodes) each."""
    groups: dict[int, list[Scenario]] = {}
    for scenario in scenarios:
        groups.setdefault(scenario.nodes, []).append(scenario)
    return groups


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.repeat < 1:
        raise SystemExit("--repeat must be >= 1")
    return inner_main(args) if args.inner else outer_main(args)


# ----- outer: namespaces -----
def outer_main(args: argparse.Namespace) -> int:
    missing = [tool for tool in ("ip", "nsenter", "mount") if not shutil.which(tool)]
    if os.geteuid() != 0 or missing:
        print(f"the drill needs root and {missing or 'ip/nsenter/mount'} (network namespaces)", file=sys.stderr)
        return 2
    for stale in remove_stale():
        print(f"removed namespace {stale} of an earlier drill that died", file=sys.stderr)
    namespaces = topology(f"drill-{os.getpid()}", selected(args))
    atexit.register(namespaces.destroy)
    inner: list[subprocess.Popen[bytes]] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        for process in inner:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        namespaces.create()
        argv = [sys.executable, "-m", "drill", "--inner", "--prefix", namespaces.prefix, "--repeat",
                str(args.repeat), "--output", str(args.output), "--max-minutes", str(args.max_minutes)]
        for name in args.scenario or []:
            argv += ["--scenario", name]
        inner.append(subprocess.Popen(["ip", "netns", "exec", namespaces.aws, *argv], cwd=REPO_ROOT,
                                      preexec_fn=_die_with_parent))
        return _wait_inner(inner[0], args.max_minutes * 60)
    except KeyboardInterrupt:
        print("drill interrupted: cleaning up", file=sys.stderr)
        return 130
    finally:
        for process in inner:
            _stop(process)
        namespaces.destroy()


def _die_with_parent() -> None:
    """The inner drill gets SIGTERM (and cleans up) even if this process is killed with SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_inner(process: subprocess.Popen[bytes], limit: float) -> int:
    try:
        return process.wait(limit + INNER_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        print(f"drill exceeded {limit / 60:g} minutes: stopping it", file=sys.stderr)
        return 124


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(INNER_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


# ----- inner: the drill itself -----
def inner_main(args: argparse.Namespace) -> int:
    from drill.analysis import dual_active
    from drill.lab import Lab, log
    from drill.nodes import s3_server_name
    from drill.report import failures, summarize, table, write

    def on_term(signum: int, _frame: FrameType | None) -> None:
        # Once: the cleanup that follows must not be interrupted by the next signal (Ctrl-C, then the outer's TERM).
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_term)
    clean = base_env()  # the orchestrator's own boto3 clients talk to moto only, with fake credentials
    os.environ.clear()
    os.environ.update(clean)
    timings = Timings.shipped()
    scenarios = selected(args)
    shared = topology(args.prefix, scenarios)
    work = Path(tempfile.mkdtemp(prefix="drill-"))
    _describe(args, timings, s3_server_name(), work, shared)
    labs: list[Lab] = []
    runs: list[dict[str, Any]] = []
    error = None
    deadline = time.monotonic() + args.max_minutes * 60
    skipped: dict[str, str] = {}
    for scenario in scenarios:
        reason = scenario.unavailable() if scenario.unavailable else None
        if reason:
            skipped[scenario.name] = reason
            log(f"[{scenario.name}] cannot be simulated here: {reason}")
    scenarios = [s for s in scenarios if s.name not in skipped]
    try:
        for count, group in by_cluster_size(scenarios).items():
            # The first cluster keeps the work dir's top level (logs/, efs/); a larger one gets its own below it.
            lab = Lab(shared, work if not labs else work / f"{count}-nodes", timings, node_names(count))
            labs.append(lab)
            try:
                lab.open()
                log(f"cluster of {count} nodes ({', '.join(lab.node_names)}) up")
                for rep in range(1, args.repeat + 1):
                    for scenario in group:
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"--max-minutes {args.max_minutes:g} reached")
                        run = lab.run(scenario, rep)
                        run["nodes"] = count
                        log(f"[{scenario.name} #{rep}] {_brief(run)}")
                        runs.append(run)
            finally:
                lab.close()
    except (Exception, KeyboardInterrupt) as caught:
        error = f"{type(caught).__name__}: {caught}"
        log(f"drill aborted: {error}")
    rows = summarize(runs)
    overall_dual = [overlap for lab in labs for overlap in dual_active(lab.timeline)]
    problems = failures(rows, overall_dual) + ([f"aborted: {error}"] if error else [])
    machine = (f"Measured on a machine with {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} when the "
               f"drill ended).")
    write(args.output, {"machine": machine, "timings": timings.__dict__, "s3_server": s3_server_name(),
                        "http_probe": False,
                        "summary": rows, "runs": runs, "skipped": skipped, "problems": problems,
                        "logs": str(work / "logs")})
    print("\n" + table(rows))
    print(_probe_gaps(labs, timings))
    kill = next((row for row in rows if row["scenario"] == "kill-active"), None)
    if kill is not None:
        print(f"\nmedian RTO of kill -9 of the active node: {kill['rto_s']} s over {kill['runs']} run(s) "
              f"(max {kill['rto_s_max']} s); of it: detection {kill['detection_s']} s, promoted at "
              f"{kill['promoted_s']} s, new node's S3 server first answering at {kill['new_serving_s']} s")
    for row in rows:
        if row["watchdog_resets"]:
            print(f"{row['scenario']}: {row['watchdog_resets']} watchdog reset(s), median {row['reset_s']} s after "
                  f"the fault; another node active at {row['promoted_s']} s")
        if row["self_fence_s"] is not None:
            print(f"{row['scenario']}: self-fence (lease_lost) median {row['self_fence_s']} s after the fault, "
                  f"{row['watchdog_resets']} watchdog reset(s)")
    for run in runs:
        for name, outcome in run.get("clients", {}).items():
            print(f"{run['scenario']} #{run['rep']}: {name} client ({outcome['settings']}): data "
                  f"{'complete and intact' if outcome['intact'] else 'NOT complete'} "
                  f"{outcome['data_after_fault_s']} s after the fault, {outcome['errors']} error(s) "
                  f"{outcome['error_types']}, first {outcome['first_error_after_fault_s']} s after the fault")
    for name, reason in skipped.items():
        print(f"SKIPPED {name}: cannot be simulated here: {reason}")
    print(f"\nresults: {args.output}; logs: {work / 'logs'}")
    for problem in problems:
        print(f"FAIL: {problem}")
    return 1 if problems else 0


def _probe_gaps(labs: list[Lab], timings: Timings) -> str:
    """The whole drill's probe gaps (hand-overs between scheduled runs included), against the design's bound;
    per cluster (a lab's checker never probes another lab's moto, so no gap spans two)."""
    from drill.analysis import largest_probe_gap
    from failover_lambda.budget import probe_gap_bound_seconds

    per_lab = [lab.proxy.scan_times(0.0, time.time()) for lab in labs if hasattr(lab, "checker")]
    scans = [scan for lab_scans in per_lab for scan in lab_scans]
    loops = sum(1 for lab in labs if hasattr(lab, "checker") for i in lab.checker.invocations
                if "id" in i and i["trigger"] in ("schedule", "ec2-state-change"))
    gaps = [gap for gap in map(largest_probe_gap, per_lab) if gap is not None]
    largest = f"{max(gaps):.2f}" if gaps else "-"
    return (f"\nprobe gaps over the whole drill: largest {largest} s across {len(scans)} probes and {loops} "
            f"probe-loop runs (bound: {probe_gap_bound_seconds(timings.probe_interval_seconds):g} s = 2 "
            "probe intervals + a cold start)")


def _brief(run: dict[str, Any]) -> str:
    keys = ("detection_s", "switch_s", "rto_s", "acknowledged", "lost", "dual_active", "vip_violations",
            "handover_gap_s", "fault_phase_s", "reset_s", "self_fence_s", "old_stopped_s", "promoted_s",
            "new_serving_s", "probe_gap_max_s", "problems")
    return " ".join(f"{k}={run.get(k)}" for k in keys)


def _describe(args: argparse.Namespace, timings: Timings, server: str, work: Path, namespaces: Topology) -> None:
    timeout, margin = checker_budget(timings)
    print(f"""efs-ha local failover drill (no AWS account; nothing is deployed)
  timings (cdk.json): {timings.describe()}
  checker: the real failover_lambda handler, 1-minute schedule, {timeout:g} s timeout (loop margin {margin:g} s), \
no reserved concurrency (one sandbox per concurrent run; the loop lease keeps one probe loop), against moto
  HTTP_PROBE=false: moto's ENI addresses are 10.0.x.x, which are no host of this drill and must never be contacted
  MinIO TLS: off in the drill (its S3 stand-in serves plain HTTP, so the agents probe http); a deployed cluster \
serves https by default (tls: on)
  nodes: the real node agent + {server}, sharing one tmpfs as EFS through per-node bind mounts
  network: namespaces {args.prefix}-{{{','.join(['aws', 'cl', *namespaces.node_names])}}}; the client reaches only \
the VIP, routed like the VPC
  RTO excludes AWS route propagation; work dir {work}
""", flush=True)
