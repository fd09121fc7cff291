"""Node agent: EFS write monitor, heartbeat/lease in the state table, and the MinIO role on this node.

Runs as `python -m node_agent` (systemd Type=notify). Needs only the standard library and boto3.
"""
