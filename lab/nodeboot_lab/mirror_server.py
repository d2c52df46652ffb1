"""A static HTTPS file server for the lab's artifact mirror (run inside the
mirror's sandbox by node_services): GET and HEAD of files under one root, TLS
with a lab-CA certificate. No directory listings: a mirror serves files."""

from __future__ import annotations

import argparse
import functools
import ssl
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer


class MirrorHandler(SimpleHTTPRequestHandler):
    def list_directory(self, path):  # noqa: ANN001 - signature of the base class
        self.send_error(404, "no listings")
        return None

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        print(f"{self.address_string()} {format % args}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", required=True)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--port", type=int, default=443)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    handler = functools.partial(MirrorHandler, directory=args.root)
    server = ThreadingHTTPServer((args.listen, args.port), handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"mirror: serving {args.root} on https://{args.listen}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
