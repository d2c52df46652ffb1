"""Which Windows Server builds nodeboot joins, per Kubernetes minor.

nodeboot's policy (the upstream guide names 2022 and 2025; SIG Windows still tests 2019):
- Windows Server 2022 (LTSC, build 20348): every Kubernetes version nodeboot joins.
- Windows Server 2025 (LTSC, build 26100): from Kubernetes 1.32, the first release whose
  Windows images and CI cover it.
- Windows Server 2019 (LTSC, build 17763): up to Kubernetes 1.35. From 1.36 the kubelet wants
  containerd 2.2 or later, and 2019 left mainstream support in January 2024: nodeboot stops
  there rather than promise a pairing nobody tests with it.
Anything else (semi-annual or annual-channel builds, client Windows) is refused: Kubernetes
supports Windows nodes on LTSC Windows Server releases only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WindowsServer:
    build: int
    name: str
    first_minor: int  # the first Kubernetes 1.x minor nodeboot joins it to
    last_minor: int | None  # the last one, or None while it is supported


SERVERS = (
    WindowsServer(17763, "Windows Server 2019", 0, 35),
    WindowsServer(20348, "Windows Server 2022", 0, None),
    WindowsServer(26100, "Windows Server 2025", 32, None),
)


def supported(minor: tuple[int, int]) -> list[WindowsServer]:
    return [s for s in SERVERS
            if minor[0] == 1 and s.first_minor <= minor[1] and (s.last_minor is None or minor[1] <= s.last_minor)]


def build_problem(build: int, caption: str, minor: tuple[int, int]) -> str | None:
    """Why this Windows build cannot join a cluster of this Kubernetes version, or None."""
    version = f"{minor[0]}.{minor[1]}"
    if any(s.build == build for s in supported(minor)):
        return None
    names = ", ".join(f"{s.name} (build {s.build})" for s in supported(minor))
    known = next((s for s in SERVERS if s.build == build), None)
    what = f"{known.name} (build {build})" if known else f"Windows build {build}" + (f" ({caption})" if caption else "")
    return f"{what} is not supported for Kubernetes {version}: supported are {names}"
