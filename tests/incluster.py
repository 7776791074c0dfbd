"""A tiny HTTP client program for pods inside the test cluster (run as ``python3 -c CLIENT URL [BODY]``).

A Service becomes reachable a moment after its pods are ready (kube-proxy programs its rules about
a second later), so the client retries a refused connection for a while, as callers of a
just-created Service must; any other error, or an HTTP error status, fails at once.
"""

CLIENT = r"""
import sys, time, urllib.error, urllib.request
url, body = sys.argv[1], (sys.argv[2].encode() if len(sys.argv) > 2 else None)
deadline = time.time() + 30
while True:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        print(urllib.request.urlopen(req, timeout=30).read().decode())
        break
    except urllib.error.URLError as e:
        refused = isinstance(e.reason, ConnectionRefusedError)
        if not refused or time.time() > deadline:
            raise
        time.sleep(0.5)
"""
