"""Take kube-proxy's rules off a lab VM node as the unit tests' fixture files.

    .venv/bin/python tests/tools/capture_proxy_dumps.py --state /tmp/lab-node13 --out DIR

Writes DIR/iptables-save, ip6tables-save, ipset-save, nft-ruleset, ipvsadm and
kube-ipvs0 (as tests/unit/fixtures/proxy-dumps/README.md describes them) from the
lab's first VM node, in whatever mode its kube-proxy runs now; the mode kube-proxy
reports and its version head the files that take comments. The real-node tier
(tests/node/test_3_proxy_migration.py) does the same after each switch.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for sub in ("bootstrap", "lab", "tests"):
    sys.path.insert(0, str(ROOT / sub))

from labkit import LabHandle  # noqa: E402
from nodeboot_lab.lab import Lab  # noqa: E402
from nodekit import capture_proxy_dumps, node_out  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", required=True, type=Path, help="the lab's state directory")
    parser.add_argument("--out", required=True, type=Path, help="directory for the dump files")
    args = parser.parse_args()
    lab = Lab(args.state, log=lambda m: print(m, file=sys.stderr))
    handle = LabHandle(lab, lab.env(), Path(tempfile.mkdtemp(prefix="proxy-dumps-")))
    if not handle.env["vm_hosts"]:
        print(f"capture_proxy_dumps: the lab in {args.state} has no VM node", file=sys.stderr)
        return 1
    mode = node_out(handle, "curl -s --max-time 5 http://127.0.0.1:10249/proxyMode").strip()
    label = f"taken from kube-proxy {handle.env['version']} in {mode} mode on the lab VM node"
    written = capture_proxy_dumps(handle, args.out, label)
    print(f"{mode}: {', '.join(written) or 'nothing'} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
