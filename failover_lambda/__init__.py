"""Failover checker Lambda: probes the active node, fences it, promotes a standby and moves the VIP routes.

The contract is docs/failover-design.md. Entry point: `failover_lambda.handler.handler`.
"""
