"""Operator CLI for a deployed EFS HA cluster (efs-ha)."""
