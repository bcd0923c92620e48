#!/usr/bin/env python3
"""Replays h1spec's requests and checks what h1spec does not: the whole answer.

h1spec reads once (1 KiB) and looks at the first status line. This sends each of its
requests on a fresh connection, reads until the server closes or WAIT seconds pass, and
records every status line and whether the connection was closed. Verdict per case:
  - a case h1spec expects to time out (a fragment): no byte back, connection open;
  - a case whose first status is >= 400: exactly one response, then the close (RFC 9112
    section 2.2: a server that receives octets not matching the message grammar "SHOULD
    respond with a 400 (Bad Request) response and close the connection"; this harness
    asks the same of a 505);
  - a request with both Content-Length and Transfer-Encoding: the close after the
    response, whatever its status (RFC 9112 section 6.1: "the server MUST close the
    connection after responding to such a request");
  - otherwise (2xx, or 100 then 2xx): the connection stays open (persistent, RFC 9112
    section 9.3), and the first status is in h1spec's expected ranges.
Output: one TSV row per case, "target<TAB>h1close<TAB>case<TAB>pass|fail<TAB>detail".

usage: h1close.py TARGET PORT http_test.ts
"""

import concurrent.futures
import json
import re
import socket
import sys
import time

WAIT = 0.7  # seconds of silence that end a read (h1spec waits 0.5)
CASE = re.compile(
    r'request:\s*"((?:[^"\\]|\\.)*)",\s*description:\s*"([^"]*)",\s*'
    r"expectedStatus:\s*(\[\[.*?\]\])\s*,?\s*(expectedTimeout:\s*true)?",
    re.S,
)


def js_string(s):
    # The suite's literals use \r \n \t \xNN; JSON has all but \xNN.
    s = re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: "\\u00" + m.group(1), s)
    return json.loads('"' + s + '"').encode("latin-1")


def exchange(port, req):
    out, closed = b"", False
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(req)
        deadline = time.monotonic() + 5
        s.settimeout(WAIT)
        while time.monotonic() < deadline:
            try:
                d = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not d:
                closed = True
                break
            out += d
    return out, closed


def both_lengths(req):
    head = req.split(b"\r\n\r\n", 1)[0].lower()
    return b"\ncontent-length:" in head and b"\ntransfer-encoding:" in head


def verdict(port, req, ranges, fragment):
    out, closed = exchange(port, req)
    codes = [int(c) for c in re.findall(rb"(?m)^HTTP/1\.\d (\d{3}) ", out)]
    got = "%s, %s" % (",".join(map(str, codes)) or "no response", "closed" if closed else "open")
    if fragment:
        ok = not out and not closed
        return ok, got + ("" if ok else " (want: no response, open)")
    if not codes:
        if out:
            got = "%d bytes without a status line, %s" % (len(out), "closed" if closed else "open")
        return False, got + " (want a response)"
    first = codes[0]
    in_range = any(lo <= first <= hi for lo, hi in ranges)
    if first >= 400:
        ok = in_range and closed and len(codes) == 1
        return ok, got + ("" if ok else " (want: one %s response, then close)" % ranges)
    final = [c for c in codes if c >= 200]
    if both_lengths(req):
        ok = in_range and closed and len(final) == 1
        return ok, got + ("" if ok else " (want: status in %s, then close)" % ranges)
    ok = in_range and not closed and len(final) == 1
    return ok, got + ("" if ok else " (want: status in %s, open)" % ranges)


def main():
    target, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    cases = CASE.findall(open(path, encoding="utf-8").read())
    if not cases:
        sys.exit("h1close: no cases found in " + path)
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        futs = [
            (desc, pool.submit(verdict, port, js_string(req), json.loads(rng), bool(frag)))
            for req, desc, rng, frag in cases
        ]
        for desc, f in futs:
            try:
                ok, detail = f.result(timeout=30)
            except Exception as e:  # a refused connection is a verdict too
                ok, detail = False, "error: %s" % e
            print("%s\th1close\t%s\t%s\t%s" % (target, desc, "pass" if ok else "fail", detail))


if __name__ == "__main__":
    main()
