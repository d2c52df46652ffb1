"""The paramiko floor: one thread, one connection and one script per host.

TCP_NODELAY on the socket, host key checked against known_hosts, the whole
node preparation in one `bash --noprofile --norc -s` exec; a second exec
carries the artifact only when its sha256 differs. Nothing else: no phases,
no events, no log. This is what a paramiko tool cannot beat.

usage: floor.py HOSTS_JSON PARALLEL
"""

from __future__ import annotations

import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import paramiko
from common import host_script, load, preamble, script_vars

BASH = "bash --noprofile --norc -s"
PREP = host_script("prep.sh")
UPLOAD = host_script("upload.sh")


def run(transport: paramiko.Transport, stdin: bytes) -> tuple[int, bytes]:
    chan = transport.open_session()
    chan.exec_command(BASH)
    chan.sendall(stdin)
    chan.shutdown_write()
    out = bytearray()
    while True:
        data = chan.recv(65536)
        if not data:
            break
        out += data
    status = chan.recv_exit_status()
    chan.close()
    return status, bytes(out)


def one(host: dict, spec: dict, known: paramiko.HostKeys, pkey: paramiko.PKey, artifact: bytes) -> str:
    sock = socket.create_connection((host["address"], host["port"]), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=10)
        key = transport.get_remote_server_key()
        stored = known.lookup(f"[{host['address']}]:{host['port']}")
        if stored is None or stored.get(key.get_name()) != key:
            raise RuntimeError("host key not in known_hosts")
        transport.auth_publickey("root", pkey)
        variables = script_vars(host["root"])
        status, out = run(transport, (preamble(variables) + PREP).encode())
        if status != 0:
            raise RuntimeError(f"prep exit {status}: {out[-200:]!r}")
        if b"artifact=send" in out:
            status, up = run(transport, (preamble(variables) + UPLOAD).encode() + artifact)
            if status != 0 or up.strip() != b"written":
                raise RuntimeError(f"upload exit {status}: {up[-200:]!r}")
        return "changed" if b"changed" in out or b"artifact=send" in out else "ok"
    finally:
        transport.close()


def main() -> int:
    spec = load(sys.argv[1])
    parallel = int(sys.argv[2])
    known = paramiko.HostKeys(spec["known_hosts"])
    pkey = paramiko.PKey.from_path(spec["key"])
    artifact = Path(spec["artifact"]).read_bytes()
    failed = 0
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=min(parallel, len(spec["hosts"]))) as pool:
        futures = {pool.submit(one, h, spec, known, pkey, artifact): h for h in spec["hosts"]}
        for future in as_completed(futures):
            name = futures[future]["name"]
            try:
                print(f"{name} {future.result()}", flush=True)
            except Exception as exc:  # noqa: BLE001 - a host's failure is reported, the rest go on
                failed += 1
                print(f"{name} FAILED {exc}", flush=True)
    print(f"floor: {len(spec['hosts']) - failed} ok, {failed} failed in {time.monotonic() - started:.2f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
