"""Fail points for crash tests: the process kills itself at a named point, the way a power cut
or an OOM kill would. Armed only by the SINEW_FAULTS environment variable ("point:after_n")."""

from __future__ import annotations

import os
import signal

_armed: dict[str, int] = {}
for entry in filter(None, os.environ.get("SINEW_FAULTS", "").split(",")):
    point, _, after = entry.partition(":")
    _armed[point] = int(after or 0)


def fault_point(name: str) -> None:
    if name not in _armed:
        return
    if _armed[name] <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
    _armed[name] -= 1
