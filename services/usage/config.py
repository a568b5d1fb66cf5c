"""What usage needs from its settings: the site's patient-token key, read once at start (and by
`sinew rebuild usage`, which must derive the very same tokens)."""

from __future__ import annotations

from dataclasses import dataclass

from sinew.common.config import Settings

# 256 bits, HMAC-SHA256's own block of security; `sinew init` writes 64 hex characters.
SHORTEST_KEY = 32


@dataclass(frozen=True)
class UsageConfig:
    patient_token_key: bytes


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
    return UsageConfig(key)
