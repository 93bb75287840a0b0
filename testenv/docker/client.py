#!/usr/bin/env python3
"""The client container's requests: COUNT GETs of URL, one new connection each,
INTERVAL seconds apart. One line per request on stdout, flushed at once:

    <seconds since start> ok <X-Server header>
    <seconds since start> fail <reason>

Python standard library only (the image has no curl). Always exits 0 after
COUNT requests; judging the lines is the caller's business. The first line,
`start`, marks the moment the clock starts.

    python /app/client.py URL [COUNT [INTERVAL [TIMEOUT]]]
"""

import sys
import time
import urllib.request


def one(url, timeout):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            answer.read()
            return "ok " + answer.headers.get("X-Server", "?")
    except Exception as error:  # every failure is a line, never a crash
        return f"fail {type(error).__name__}: {error}".replace("\n", " ")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    url = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    interval = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 2.0
    print("start", flush=True)
    start = time.monotonic()
    for _ in range(count):
        sent = time.monotonic() - start
        print(f"{sent:.3f} {one(url, timeout)}", flush=True)
        time.sleep(interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
