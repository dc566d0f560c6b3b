"""rtpengine as the reference relay: the daemon started in the foreground in
userspace mode, and calls set up over its ng control protocol (a cookie, a
space, then a bencoded dictionary, over UDP). Standard library only.

The relay driver of bench_relay.py, as mux_relay.py is:

  python3 rtpengine_ng.py THREADS

stdin: N lines "portA portB" (the endpoints' ports) then an empty line.
stdout: "pid <rtpengine's pid>", N lines "relayA relayB" (the ports A_i and
B_i send to); rtpengine then relays until stdin closes.
"""

import re
import secrets
import socket
import subprocess
import sys
import time

LOOPBACK = "127.0.0.1"


def bencode(value):
    if isinstance(value, bool):
        raise TypeError("bencode has no booleans")
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, (list, tuple)):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        # Keys in sorted order, as the format requires.
        items = sorted((k.encode() if isinstance(k, str) else k, v) for k, v in value.items())
        return b"d" + b"".join(bencode(k) + bencode(v) for k, v in items) + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")


def bdecode(data):
    """The value bencoded in `data` (strings as str when they are UTF-8);
    ValueError when `data` holds anything else or more."""
    value, end = _decode_at(data, 0)
    if end != len(data):
        raise ValueError(f"trailing bytes after offset {end}")
    return value


def _decode_at(data, i):
    if i >= len(data):
        raise ValueError("truncated")
    c = data[i:i + 1]
    if c == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1:end]), end + 1
    if c in (b"l", b"d"):
        items, i = [], i + 1
        while data[i:i + 1] != b"e":
            if i >= len(data):
                raise ValueError("truncated")
            item, i = _decode_at(data, i)
            items.append(item)
        if c == b"l":
            return items, i + 1
        if len(items) % 2:
            raise ValueError("dictionary with a key and no value")
        return dict(zip(items[::2], items[1::2])), i + 1
    if c.isdigit():
        colon = data.index(b":", i)
        start = colon + 1
        end = start + int(data[i:colon])
        if end > len(data):
            raise ValueError("truncated string")
        raw = data[start:end]
        try:
            return raw.decode(), end
        except UnicodeDecodeError:
            return raw, end
    raise ValueError(f"unexpected byte {c!r} at offset {i}")


class NgClient:
    """Requests over UDP, each retried under the same cookie: rtpengine
    answers a repeated cookie from its cache instead of running the command
    twice."""

    def __init__(self, port, timeout=1.0, tries=5):
        self.addr = (LOOPBACK, port)
        self.tries = tries
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(timeout)

    def close(self):
        self.sock.close()

    def request(self, command, **args):
        cookie = secrets.token_hex(8).encode()
        msg = dict(args, command=command)
        packet = cookie + b" " + bencode(msg)
        for _ in range(self.tries):
            self.sock.sendto(packet, self.addr)
            try:
                while True:
                    reply = self.sock.recv(65536)
                    head, _, body = reply.partition(b" ")
                    if head == cookie:
                        break
            except (socket.timeout, ConnectionRefusedError):
                continue
            answer = bdecode(body)
            if answer.get("result") not in ("ok", "pong"):
                raise RuntimeError(f"rtpengine {command}: {answer}")
            return answer
        raise TimeoutError(f"rtpengine did not answer {command} on port {self.addr[1]}")


def sdp(port, session):
    return (
        "v=0\r\n"
        f"o=- {session} 1 IN IP4 {LOOPBACK}\r\n"
        "s=-\r\n"
        f"c=IN IP4 {LOOPBACK}\r\n"
        "t=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=sendrecv\r\n"
    )


def media_port(sdp_text):
    m = re.search(r"^m=audio (\d+) ", sdp_text, re.M)
    if not m:
        raise RuntimeError(f"no m=audio line in rtpengine's SDP:\n{sdp_text}")
    return int(m.group(1))


def setup_calls(client, endpoint_ports):
    """One call per (portA, portB): offer with A's SDP, answer with B's.
    Returns (relayA, relayB) per call: the ports A and B send to (the
    answer's SDP is what A is told, the offer's what B is told)."""
    relays = []
    for i, (port_a, port_b) in enumerate(endpoint_ports):
        call = f"bench-{i}"
        offer = client.request("offer", **{"call-id": call, "from-tag": f"a{i}", "sdp": sdp(port_a, 2 * i)})
        answer = client.request(
            "answer", **{"call-id": call, "from-tag": f"a{i}", "to-tag": f"b{i}", "sdp": sdp(port_b, 2 * i + 1)})
        relays.append((media_port(answer["sdp"]), media_port(offer["sdp"])))
    return relays


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def start(threads, port_min=20000, port_max=29999, log=None):
    """rtpengine in the foreground, userspace only, answering ping; returns
    (process, NgClient)."""
    ng_port = free_udp_port()
    cmd = [
        "rtpengine",
        "--table=-1",
        "--config-file=none",
        f"--interface={LOOPBACK}",
        f"--listen-ng={LOOPBACK}:{ng_port}",
        f"--num-threads={threads}",
        f"--port-min={port_min}",
        f"--port-max={port_max}",
        "--foreground",
        "--log-stderr",
        # Warnings only: at the default level it logs every offer and
        # answer, which is not the relaying being measured.
        "--log-level=4",
    ]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    client = NgClient(ng_port, timeout=0.5, tries=20)
    try:
        client.request("ping")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, client


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    ports = []
    for line in iter(sys.stdin.readline, ""):
        if not line.strip():
            break
        ports.append(tuple(int(p) for p in line.split()))
    proc, client = start(threads, log=sys.stderr)
    try:
        t = time.monotonic()
        relays = setup_calls(client, ports)
        print(f"# rtpengine: {len(relays)} calls set up in {time.monotonic() - t:.2f} s", file=sys.stderr)
        print("pid", proc.pid)
        for a, b in relays:
            print(a, b)
        sys.stdout.flush()
        sys.stdin.read()
        print(f"rtpengine threads={threads} exit={proc.poll()}", flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
