"""An endpoint of run.sh: endpoint.py LOCAL_IP LOCAL_PORT RELAY_IP RELAY_PORT
SSRC N sends N RTP packets 20 ms apart and counts what it receives, and from
where."""

import socket, struct, sys, time
lip, lport, rip, rport, ssrc, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5], 0), int(sys.argv[6])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((lip, lport)); s.setblocking(False)
got, srcs = 0, set()
for seq in range(n):
    s.sendto(struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + bytes(160), (rip, rport))
    end = time.time() + 0.02
    while time.time() < end:
        try:
            d, a = s.recvfrom(2048); got += 1; srcs.add(a)
        except BlockingIOError:
            time.sleep(0.001)
end = time.time() + 0.5
while time.time() < end:
    try:
        d, a = s.recvfrom(2048); got += 1; srcs.add(a)
    except BlockingIOError:
        time.sleep(0.005)
print(f"{lip} sent {n} got {got} from {sorted(srcs)}", flush=True)
