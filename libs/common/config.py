"""Settings of one service process, from the environment (12-factor; compose.yaml and `sinew up`
both set these). Secrets come from the environment or files in the data folder, never the repo."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .retention import Retention


@dataclass(frozen=True)
class Settings:
    service: str
    site: str
    nats_url: str = "nats://127.0.0.1:4222"
    nats_user: str | None = None
    nats_password: str | None = None
    data_dir: Path = Path("data")
    http_host: str = "127.0.0.1"
    http_port: int = 0
    tokens_file: Path | None = None
    # The usage service's key for patient tokens (HMAC of site and MRN); other services ignore it.
    patient_token_key_file: Path | None = None
    # Set once, on purpose, to start usage with a new key (see docs/services/usage.md).
    patient_token_key_rotated: bool = False
    nats_monitor_url: str | None = None
    # Refuse to start against a server that acknowledges writes before they reach disk.
    require_sync_always: bool = True
    log_level: str = "INFO"
    retention: Retention = field(default_factory=Retention)

    @classmethod
    def from_env(cls, service: str, **overrides) -> Settings:
        env = os.environ
        values = dict(
            service=service,
            site=env.get("SINEW_SITE", "north"),
            nats_url=env.get("SINEW_NATS_URL", cls.nats_url),
            nats_user=env.get("SINEW_NATS_USER"),
            nats_password=env.get("SINEW_NATS_PASSWORD"),
            data_dir=Path(env.get("SINEW_DATA_DIR", "data")),
            http_host=env.get("SINEW_HTTP_HOST", cls.http_host),
            http_port=int(env.get("SINEW_HTTP_PORT", "0")),
            tokens_file=Path(env["SINEW_TOKENS_FILE"]) if env.get("SINEW_TOKENS_FILE") else None,
            patient_token_key_file=(
                Path(env["SINEW_PATIENT_TOKEN_KEY_FILE"])
                if env.get("SINEW_PATIENT_TOKEN_KEY_FILE")
                else None
            ),
            patient_token_key_rotated=env.get("SINEW_PATIENT_TOKEN_KEY_ROTATED") == "1",
            nats_monitor_url=env.get("SINEW_NATS_MONITOR_URL"),
            require_sync_always=env.get("SINEW_REQUIRE_SYNC_ALWAYS", "1") != "0",
            log_level=env.get("SINEW_LOG_LEVEL", "INFO"),
            retention=Retention(
                outbox_days=float(env.get("SINEW_OUTBOX_KEEP_DAYS", Retention.outbox_days)),
                inbox_days=float(env.get("SINEW_INBOX_KEEP_DAYS", Retention.inbox_days)),
            ),
        )
        values.update(overrides)
        return cls(**values)

    @property
    def database_path(self) -> Path:
        return self.data_dir / self.site / f"{self.service}.sqlite"
