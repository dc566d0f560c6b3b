"""An endpoint of run.sh: endpoint.py LOCAL_IP LOCAL_PORT RELAY_IP RELAY_PORT
SSRC N sends N RTP packets 20 ms apart and counts what it receives, and from
where."""

import socket
import struct
import sys
import time

local_ip, local_port, relay_ip, relay_port = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
ssrc, n = int(sys.argv[5], 0), int(sys.argv[6])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((local_ip, local_port))
s.setblocking(False)
got, sources = 0, set()


def receive_for(seconds):
    """Counts what arrives over `seconds`."""
    global got
    end = time.time() + seconds
    while time.time() < end:
        try:
            _, source = s.recvfrom(2048)
            got += 1
            sources.add(source)
        except BlockingIOError:
            time.sleep(0.001)


for seq in range(n):
    s.sendto(struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + bytes(160), (relay_ip, relay_port))
    receive_for(0.02)
# The other side's last packets.
receive_for(0.5)
print(f"{local_ip} sent {n} got {got} from {sorted(sources)}", flush=True)
