"""kube-proxy rule dumps (tests/unit/fixtures/proxy-dumps) as node states the tests load.

A node state is a stack of layers (mode directories, oldest first, then "foreign"):
each layer's dumps are loaded over the ones before it the way the new kube-proxy
writes them (it rewrites the chains it declares; it adds a built-in chain's jump
only if it is not there already). The same shell loads the state into the unit
tests' private network namespace (IPVS and kube-ipvs0 through stand-ins) and into
the e2e VM (the real ipvsadm and a real dummy link).

Two sets of mode directories: the hand-written ones at the top of DUMPS, and the
ones taken from the real kube-proxy on the real-node tier's VM (REAL, a directory
of the same shape; tests/tools/capture_proxy_dumps.py takes them again).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DUMPS = Path(__file__).resolve().parent / "unit" / "fixtures" / "proxy-dumps"
MODES = ("iptables", "ipvs", "nftables")
# Taken from kube-proxy on the lab's VM node (tests/node/test_3_proxy_migration.py).
REAL = "kube-proxy-v1.37.2"
# "" is the hand-written set; the real one once it holds every mode.
SOURCES = ("", REAL) if all((DUMPS / REAL / m).is_dir() for m in MODES) else ("",)
TRANSITIONS = [(old, new) for old in MODES for new in MODES if old != new]
BUILTIN = {"INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"}


def read(layer: str, name: str) -> str:
    """A dump file of a layer: a mode directory under DUMPS, or a directory a test made."""
    path = (Path(layer) if os.path.isabs(layer) else DUMPS / layer) / name
    return path.read_text() if path.exists() else ""


def rules_only(dump: str) -> str:
    return "\n".join(line for line in dump.splitlines() if not line.startswith("#")) + "\n"


def as_new_mode_writes_it(old: str, new: str) -> str:
    """NEW's iptables dump as restored over OLD's."""
    present = {line for line in old.splitlines() if line.startswith("-A ")}
    out = []
    for line in rules_only(new).splitlines():
        if line.startswith(":") and line[1:].split()[0] in BUILTIN:
            continue
        if line.startswith("-A ") and line.split()[1] in BUILTIN and line in present:
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def heredoc(command: str, text: str) -> str:
    return f"{command} <<'NB_DUMP_EOF'\n{text.rstrip()}\nNB_DUMP_EOF\n"


@dataclass
class NodeState:
    layers: list[str]

    def load_shell(self, real_ipvs: bool) -> str:
        """Bash that loads the layers. real_ipvs: the real ipvsadm and a dummy kube-ipvs0
        (the VM); else the stand-ins' files under $NB_TEST_STATE (the unit tests)."""
        lines = ["set -e"]
        previous = {"iptables": "", "ip6tables": ""}
        for layer in self.layers:
            if read(layer, "ipset-save"):  # first: iptables rules match on the sets
                lines.append(heredoc("ipset restore -exist", read(layer, "ipset-save")))
            for family in ("iptables", "ip6tables"):
                dump = read(layer, f"{family}-save")
                if not dump:
                    continue
                if previous[family]:
                    dump = as_new_mode_writes_it(previous[family], dump)
                previous[family] += dump
                lines.append(heredoc(f"{family}-restore --noflush", rules_only(dump)))
            if read(layer, "nft-ruleset"):
                lines.append(heredoc("nft -f -", read(layer, "nft-ruleset")))
            lines += ipvs_lines(read(layer, "ipvsadm"), real_ipvs)
            vips = read(layer, "kube-ipvs0").split()
            if vips and real_ipvs:
                lines.append("ip link show dev kube-ipvs0 >/dev/null 2>&1 || ip link add kube-ipvs0 type dummy")
                lines += [f"ip addr add {vip}/32 dev kube-ipvs0" for vip in vips]
            elif vips:
                lines.append(heredoc('cat >> "$NB_TEST_STATE/kube-ipvs0"', "\n".join(vips)))
        return "\n".join(lines) + "\n"


def ipvs_lines(listing: str, real: bool) -> list[str]:
    """`ipvsadm -Ln` text as commands (real) or appended to the stand-in's state."""
    # Services and their real servers; not the "  -> RemoteAddress:Port ..." column header.
    kept = [x for x in listing.splitlines() if x.startswith(("TCP", "UDP", "  ->")) and "RemoteAddress" not in x]
    if not kept:
        return []
    if not real:
        return [heredoc('cat >> "$NB_TEST_STATE/ipvs"', "\n".join(kept))]
    out, service = [], ""
    for line in kept:
        words = line.split()
        if line.startswith(("TCP", "UDP")):
            flag = "-t" if words[0] == "TCP" else "-u"
            service = f"{flag} {words[1]}"
            out.append(f"ipvsadm -A {service} -s {words[2]}")
        else:
            forward = {"Masq": "-m", "Route": "-g", "Tunnel": "-i"}.get(words[2], "-m")
            out.append(f"ipvsadm -a {service} -r {words[1]} {forward} -w {words[3]}")
    return out


# What the tests compare: the state read back, normalised.
DUMP_STATE = r"""
echo '@@iptables'; iptables-save | grep -v '^#'
echo '@@ip6tables'; ip6tables-save | grep -v '^#'
echo '@@ipsets'; ipset list -n | sort
echo '@@nft'; nft list tables | grep -v -E '^table (ip|ip6) (filter|nat|mangle|raw|security)$' | sort
echo '@@ipvs'; ipvsadm -Ln | grep -E '^(TCP|UDP)' | sort
echo '@@kube-ipvs0'; ip -o addr show dev kube-ipvs0 2>/dev/null | awk '{ split($4, a, "/"); print a[1] }'
true
"""


def parse_sections(stdout: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = ""
    for line in stdout.splitlines():
        if line.startswith("@@"):
            current = line[2:]
            sections[current] = []
        elif line.strip() and current:
            sections[current].append(line)
    return sections


def state_of(sections: dict[str, list[str]], prefix: str = "") -> dict[str, list[str]]:
    out = {}
    for key in ("iptables", "ip6tables", "ipsets", "nft", "ipvs", "kube-ipvs0"):
        lines = sections.get(f"{prefix}{key}", [])
        if key in ("iptables", "ip6tables"):
            # Chains and rules per table; order across chains does not matter.
            lines = sorted(table_lines(lines))
        elif key == "ipvs":
            lines = sorted(" ".join(x.split()) for x in lines)
        out[key] = lines
    return out


def table_lines(lines: list[str]) -> Iterator[str]:
    table = ""
    for line in lines:
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith((":", "-A")):
            yield f"{table} {line.split(' [')[0] if line.startswith(':') else line}"


def in_source(source: str, layer: str) -> str:
    return f"{source}/{layer}" if source else layer


def start_state(old: str, new: str, kube_proxy_cleaned: bool, source: str = "") -> NodeState:
    """After kube-proxy switched from OLD to NEW: a dump taken on a real node if there is
    one (<source>/<old>-to-<new>), else composed from the two modes' dumps of SOURCE."""
    if (DUMPS / in_source(source, f"{old}-to-{new}")).is_dir():
        return NodeState([in_source(source, f"{old}-to-{new}"), "foreign"])
    modes = [new] if kube_proxy_cleaned else [old, new]
    return NodeState([*(in_source(source, m) for m in modes), "foreign"])


def end_state(new: str, source: str = "") -> NodeState:
    """What the node must hold after the cleanup: NEW's own dump of SOURCE and the foreign rules."""
    return NodeState([in_source(source, new), "foreign"])


def cleanup_vars(old: str, new: str, dry_run: bool = False) -> dict[str, str]:
    return {"NB_CLEAN_MODES": old, "NB_PROXY_MODE_NOW": new, "NB_DRY_RUN": "1" if dry_run else "0"}
