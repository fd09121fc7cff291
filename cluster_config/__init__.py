"""Typed, validated cluster configuration, built once from CDK context before any construct exists."""

from cluster_config.model import (
    AZ_COUNT,
    ClusterConfig,
    ConfigError,
    FailoverTimings,
    MinioBinary,
    load_config,
)

__all__ = ["AZ_COUNT", "ClusterConfig", "ConfigError", "FailoverTimings", "MinioBinary", "load_config"]
