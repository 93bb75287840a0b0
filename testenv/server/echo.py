#!/usr/bin/env python3
"""A line echo server that says who it is, for long-lived connections in tests.

Every line received is answered with `<SERVER_NAME> <line>`, so a client that keeps one
connection open and talks every 100 ms sees at each exchange which backend holds it.
Python 3 standard library only.

Environment:
  SERVER_NAME  the name that prefixes every answer (default "Server")
  ECHO_PORT    TCP port (default 9000)
  ECHO_BIND    address to bind (default 0.0.0.0)
"""

import os
import signal
import socketserver
import sys

SERVER_NAME = os.environ.get("SERVER_NAME", "Server")
ECHO_PORT = int(os.environ.get("ECHO_PORT", "9000"))
ECHO_BIND = os.environ.get("ECHO_BIND", "0.0.0.0")


def log(line):
    print(f"[{SERVER_NAME}] {line}", flush=True)


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        peer = f"{self.client_address[0]}:{self.client_address[1]}"
        log(f"{peer} connected")
        lines = 0
        for line in self.rfile:
            self.wfile.write(f"{SERVER_NAME} ".encode() + line)
            self.wfile.flush()
            lines += 1
        log(f"{peer} closed after {lines} lines")


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def stop(signum, frame):
    raise SystemExit(0)


def main():
    signal.signal(signal.SIGTERM, stop)
    server = Server((ECHO_BIND, ECHO_PORT), Handler)
    try:
        log(f"listening on {ECHO_BIND}:{ECHO_PORT}")
        server.serve_forever()
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        server.server_close()
        log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
