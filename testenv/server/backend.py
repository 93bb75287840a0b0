#!/usr/bin/env python3
"""The seed's backend server: a tiny HTTP server that says who it is.

Python 3.11 standard library only, so it runs unchanged in python:3.11-slim
(testenv/docker) and in the netns test network (testenv, one per lbt-serverN).

Every GET answers 200 with Content-Type application/json, a header
`X-Server: <SERVER_NAME>` and a JSON body with the fields server, hostname,
ip, path, time (ISO 8601) and message ("Hello from <SERVER_NAME>!"). HEAD
answers the same headers without the body.

Environment:
  SERVER_NAME  name reported in the header, body and log lines (default "Server")
  SERVER_PORT  TCP port (default 80; 0 picks a free port, printed at start-up)
  SERVER_BIND  address to bind (default "::" dual-stack, else 0.0.0.0)
  SERVER_IP    value of the `ip` field (default: the connection's local address)

It speaks HTTP/1.1 with Content-Length, so clients can keep connections alive
(wrk, the proxy's connection pool). Each request line is logged to stdout,
prefixed with [SERVER_NAME] and flushed at once. SIGTERM stops it cleanly.
"""

import datetime
import errno
import json
import os
import signal
import socket
import socketserver
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SERVER_NAME = os.environ.get("SERVER_NAME", "Server")
SERVER_PORT = int(os.environ.get("SERVER_PORT", "80"))
SERVER_BIND = os.environ.get("SERVER_BIND", "")
SERVER_IP = os.environ.get("SERVER_IP", "")


def log(line):
    print(f"[{SERVER_NAME}] {line}", flush=True)


def plain_address(address):
    """An IPv4 client of a dual-stack socket shows up as ::ffff:a.b.c.d."""
    if address.startswith("::ffff:") and "." in address:
        return address[len("::ffff:"):]
    return address


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every answer has Content-Length
    # One segment per answer: headers and body buffered, flushed together after each
    # request, and no Nagle wait for the delayed ACK of a previous write (40 ms a request).
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    server_version = "lb-backend/1.0"

    def do_GET(self):
        body = self.body()
        self.send_headers(len(body))
        self.wfile.write(body)

    def do_HEAD(self):
        self.send_headers(len(self.body()))

    def body(self):
        local_ip = plain_address(self.connection.getsockname()[0])
        document = {
            "server": SERVER_NAME,
            "hostname": socket.gethostname(),
            "ip": SERVER_IP or local_ip,
            "path": self.path,
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "message": f"Hello from {SERVER_NAME}!",
        }
        return (json.dumps(document) + "\n").encode()

    def send_headers(self, length):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(length))
        self.send_header("X-Server", SERVER_NAME)
        self.end_headers()

    def log_message(self, format, *args):
        log(f"{plain_address(self.client_address[0])} - {format % args}")


class Server(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections must not block exit

    def server_bind(self):
        # HTTPServer.server_bind resolves the host name with getfqdn(), which can
        # wait on DNS timeouts inside a network namespace. Nothing needs it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = host, port


class DualStackServer(Server):
    address_family = socket.AF_INET6

    def server_bind(self):
        # One socket for both families: IPv4 clients arrive as ::ffff:a.b.c.d.
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class IPv6Server(Server):
    address_family = socket.AF_INET6


def make_server():
    if SERVER_BIND == "::" or not SERVER_BIND:
        try:
            return DualStackServer(("::", SERVER_PORT), Handler)
        except OSError as error:
            # A busy port is busy for IPv4 too; anything else means no IPv6 here.
            if SERVER_BIND or error.errno in (errno.EADDRINUSE, errno.EACCES):
                raise
            return Server(("0.0.0.0", SERVER_PORT), Handler)
    if ":" in SERVER_BIND:
        return IPv6Server((SERVER_BIND, SERVER_PORT), Handler)
    return Server((SERVER_BIND, SERVER_PORT), Handler)


def stop(signum, frame):
    raise SystemExit(0)


def main():
    signal.signal(signal.SIGTERM, stop)
    server = make_server()
    try:
        # Inside the try: a SIGTERM right after this line still ends in
        # `finally`, which closes the socket and says so.
        host, port = server.server_address[:2]
        shown = f"[{host}]" if ":" in host else host
        log(f"listening on {shown}:{port}")
        server.serve_forever()
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        server.server_close()
        log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
