"""Every ``CASELOG_*`` setting, read once from the environment by the composition root."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("./caselog-data")
    database_url: str | None = None
    kafka_bootstrap: str | None = None
    topic: str = "caselog.case-events"
    topic_partitions: int = 6
    topic_replication: int = 1
    deployment: str = "default"
    clock: str = "system"
    clock_start: str | None = None
    scheduler_horizon_seconds: float = 600.0
    projections: str = "in-process"  # or "workers": `caselog worker` processes keep the read models from Kafka
    worker_group: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        return cls(
            data_dir=Path(env.get("CASELOG_DATA_DIR") or "./caselog-data"),
            database_url=env.get("CASELOG_DATABASE_URL") or None,
            kafka_bootstrap=env.get("CASELOG_KAFKA_BOOTSTRAP") or None,
            topic=env.get("CASELOG_TOPIC") or "caselog.case-events",
            topic_partitions=int(env.get("CASELOG_TOPIC_PARTITIONS") or 6),
            topic_replication=int(env.get("CASELOG_TOPIC_REPLICATION") or 1),
            deployment=env.get("CASELOG_DEPLOYMENT") or "default",
            clock=(env.get("CASELOG_CLOCK") or "system").lower(),
            clock_start=env.get("CASELOG_CLOCK_START") or None,
            scheduler_horizon_seconds=float(env.get("CASELOG_SCHEDULER_HORIZON_SECONDS") or 600),
            projections=(env.get("CASELOG_PROJECTIONS") or "in-process").lower(),
            worker_group=env.get("CASELOG_WORKER_GROUP") or None,
        )

    @property
    def group(self) -> str:
        """The Kafka consumer group of this deployment's projection workers."""
        return self.worker_group or f"caselog-projections-{self.deployment}"

    @property
    def uses_postgres(self) -> bool:
        return bool(self.database_url)

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "caselog.db"
