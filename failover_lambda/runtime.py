"""What one cold start builds once: settings, AWS clients and the clock."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from failover_lambda.aws import AwsClients
from failover_lambda.clock import Clock, SystemClock
from failover_lambda.settings import Settings


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    aws: AwsClients
    clock: Clock

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, clock: Clock | None = None) -> Runtime:
        settings = Settings.from_env(os.environ if env is None else env)
        return cls(settings=settings, aws=AwsClients.create(), clock=clock or SystemClock())
