"""What usage needs from its settings: the site's patient-token key, read once at start (and by
`sinew rebuild usage`, which must derive the very same tokens)."""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sinew.common.config import Settings

# 256 bits, HMAC-SHA256's own block of security; `sinew init` writes 64 hex characters.
SHORTEST_KEY = 32


@dataclass(frozen=True)
class UsageConfig:
    patient_token_key: bytes

    @property
    def key_fingerprint(self) -> str:
        """Names the key without revealing it (an HMAC of a constant under the key)."""
        return hmac.new(
            self.patient_token_key, b"sinew patient-token key", hashlib.sha256
        ).hexdigest()[:16]


def keys_used(database: Path) -> list[tuple[str, str]]:
    """(fingerprint, first used at) of every key the database's tokens were made with."""
    if not database.exists():
        return []
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT fingerprint, first_used_at FROM patient_token_keys ORDER BY first_used_at"
        ).fetchall()
    except sqlite3.OperationalError:  # a database from before the table existed
        return []
    finally:
        conn.close()


def configure(settings: Settings) -> UsageConfig:
    """Refuse to start without a usable key: a usage recorded under no key, or a stand-in, would
    carry a token that a rebuild or the next start cannot reproduce."""
    path = settings.patient_token_key_file
    if path is None:
        raise SystemExit(
            "usage needs its site's patient-token key: set SINEW_PATIENT_TOKEN_KEY_FILE to the "
            "file that holds it (`sinew init` and `sinew up` write "
            f"DATA/secrets/patient-token-{settings.site}.key); refusing to start"
        )
    try:
        key = path.read_bytes().strip()
    except OSError as error:
        raise SystemExit(
            f"cannot read the patient-token key {path} ({error.strerror}); refusing to start"
        ) from None
    if len(key) < SHORTEST_KEY:
        raise SystemExit(
            f"the patient-token key in {path} has {len(key)} bytes, fewer than {SHORTEST_KEY}; "
            "refusing to start"
        )
    config = UsageConfig(key)
    used = keys_used(settings.database_path)
    if used and config.key_fingerprint not in {f for f, _ in used}:
        if not settings.patient_token_key_rotated:
            fingerprint, since = used[-1]
            raise SystemExit(
                f"the patient-token key in {path} (fingerprint {config.key_fingerprint}) is not "
                f"the one this site's tokens were made with (fingerprint {fingerprint}, in use "
                f"since {since}): with it, every returning patient would get a second token. "
                "Restore that key file; or, to rotate the key on purpose, start once with "
                "SINEW_PATIENT_TOKEN_KEY_ROTATED=1; refusing to start"
            )
    return config
