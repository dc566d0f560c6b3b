#!/usr/bin/python3
"""The relay benchmark (issue 15): N calls relayed on loopback by
rtpengine (userspace, 1 and 2 threads) and by one rtpmuxserver, all driven
by the same load generator (loadgen.c), each relay's own CPU time read from
/proc/PID/stat (utime + stime, all its threads) over a steady window.

Every row: CPU-MHz per relayed stream (a call is two streams, A to B and B
to A), packets relayed (received by the endpoints over the whole run), lost,
misdelivered, and the ratio of our CPU per stream to rtpengine's with 1 and
2 threads measured in the same run. A row whose property this build lacks
prints "not available: <reason>". See README.md beside this file.

Environment: BENCH_RELAY_N (default 250,1000), BENCH_SECONDS (window,
default 10), BENCH_RELAY_WARMUP (s, default 3), BENCH_RELAY_TICKS (default
0,5), BENCH_RELAY_WORKERS (default 1,2; more than 1 only for the relay-to
rows), BENCH_RELAY_ROWS (default
direct,rtpengine,floor,kernel,relay-to,shared,offload,pipeline; floor is
relayfloor.c, the kernel's part of a shared-port relay; offload is the
shared-port relay with the element's relay-offload),
BENCH_RELAY_RUNS (default 3: every row that many times, the rows of a run
one after the other, then each row's median). The rows direct (no relay:
the endpoints send to each other) and kernel (relaytc.c: a tc BPF program
forwards in the kernel, no socket) are in the default set too: every row
also prints what the traffic took (the relay, the loadgen and ksoftirqd),
and that over direct's, the only measure of a relay that runs in other
processes' softirq.
Run after `cargo build --release` (`make bench-relay` does both).
"""

import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PYTHON = "/usr/bin/python3"
DRAIN = 2.0  # s the endpoints keep receiving after the last send, for a relay briefly descheduled
ROW_SETUP_LIMIT = 120.0  # s a relay may take to open its sockets and answer
GOAL_N = 1000  # issue 15: the goal is stated at 1,000 calls

N_LIST = [int(n) for n in os.environ.get("BENCH_RELAY_N", "250,1000").split(",") if n]
WINDOW = float(os.environ.get("BENCH_SECONDS", "10"))
WARMUP = float(os.environ.get("BENCH_RELAY_WARMUP", "3"))
TICKS = [int(t) for t in os.environ.get("BENCH_RELAY_TICKS", "0,5").split(",") if t]
WORKERS = [int(w) for w in os.environ.get("BENCH_RELAY_WORKERS", "1,2").split(",") if w]
RUNS = max(1, int(os.environ.get("BENCH_RELAY_RUNS", "3")))
ROWS = set(os.environ.get("BENCH_RELAY_ROWS", "direct,rtpengine,floor,kernel,relay-to,shared,offload,pipeline").split(","))

CLK_TCK = os.sysconf("SC_CLK_TCK")
live = []  # every process started and not yet reaped, for the cleanup
live_lock = threading.Lock()


def nominal_mhz():
    """Core 0's clock as /proc/cpuinfo gives it: the other benches' CPU-MHz
    convention (benches/common: CPU seconds per second times this)."""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1])
    raise RuntimeError("no cpu MHz in /proc/cpuinfo")


def cpu_times(pid):
    """(CPU seconds of all of `pid`'s threads, of which in user space)."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name may hold spaces and parentheses: fields are
        # counted after its closing one. utime and stime are fields 14, 15.
        fields = f.read().rsplit(")", 1)[1].split()
    user, system = int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK
    return user + system, user


def machine_busy():
    """(CPU seconds all cores have run anything, seconds the hypervisor took
    from them: steal)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in f.readline().split()[1:9])
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


def softirq_threads():
    """The kernel's ksoftirqd threads: softirq work the kernel could not do
    in the context that raised it (a relay in the kernel, under load)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().startswith("ksoftirqd/"):
                    pids.append(int(pid))
        except OSError:
            continue  # gone since the listing
    return pids


def udp_drops(pids):
    """Datagrams the kernel dropped on a full receive buffer of a UDP socket
    of each process in `pids`, so far (the drops column of /proc/net/udp)."""
    inodes = {}
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue  # closed since the listing
            if target.startswith("socket:["):
                inodes[target[8:-1]] = pid
    drops = dict.fromkeys(pids, 0)
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[9] in inodes:
                drops[inodes[fields[9]]] += int(fields[12])
    return drops


def spawn(cmd, **kw):
    # A session of its own, so that a kill takes what it started too (the
    # rtpengine driver's daemon).
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            start_new_session=True, **kw)
    with live_lock:
        live.append(proc)
    return proc


def reap(proc, timeout=10):
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill(proc)
    with live_lock:
        if proc in live:
            live.remove(proc)


def kill(proc):
    # Only while the leader lives is its process group surely still ours;
    # a driver that ended has stopped what it started itself.
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def kill_all():
    """Called by the main thread and by a row's watchdog."""
    with live_lock:
        procs, live[:] = list(live), []
    for proc in procs:
        kill(proc)


def readline(proc, what):
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"{what}: output ended (exit status {proc.poll()})")
    return line.strip()


def key_values(line):
    return {k: int(v) for k, v in (f.split("=") for f in line.split()[1:])}


OUT_DIR = os.path.join(ROOT, "target", "relay-bench")
# The bare shared-port relay (relayfloor.c), the no-relay baseline and the
# kernel relay (relaytc.c) and its BPF program, built by main().
FLOOR = os.path.join(OUT_DIR, "relayfloor")
RELAYTC = os.path.join(OUT_DIR, "relaytc")
RELAYTC_BPF = os.path.join(OUT_DIR, "relaytc.bpf.o")
DIRECT_LABEL = "direct: no relay"
KERNEL_LABEL = "kernel: tc BPF relay, no socket"
# Rows whose process does not relay: its CPU says nothing, the traffic's does.
NOT_IN_PROCESS = (DIRECT_LABEL, KERNEL_LABEL)


# The element's relay offload headers: the kernel row's program shares them.
OFFLOAD_BPF_DIR = os.path.join(ROOT, "rtpsynth-core", "bpf")


def build(name, libs=("-lm",)):
    """benches/relay/NAME.c built into the bench's output directory."""
    os.makedirs(OUT_DIR, exist_ok=True)
    exe = os.path.join(OUT_DIR, name)
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", f"-I{OFFLOAD_BPF_DIR}", "-o", exe,
                    os.path.join(HERE, f"{name}.c"), *libs], check=True)
    return exe


def build_relaytc():
    """relaytc, then its BPF program: (why relaytc cannot be built, why the
    program cannot), None where it could. The direct row needs the first,
    the kernel row both (scripts/setup.sh installs libbpf-dev and clang)."""
    try:
        build("relaytc", libs=("-lbpf",))
    except subprocess.CalledProcessError as e:
        reason = f"building relaytc failed ({e}; it needs libbpf-dev)"
        return reason, reason
    if shutil.which("clang") is None:
        return None, "no clang to build the BPF program"
    # The BPF target has no libc: Debian keeps <asm/...> under the host's
    # multiarch directory, which clang -target bpf does not search by
    # itself.
    multiarch = subprocess.run(["gcc", "-print-multiarch"], capture_output=True, text=True,
                               check=True).stdout.strip()
    try:
        subprocess.run(["clang", "-O2", "-g", "-Wall", "-target", "bpf", f"-I/usr/include/{multiarch}",
                        f"-I{OFFLOAD_BPF_DIR}", "-c", os.path.join(HERE, "relaytc.bpf.c"), "-o", RELAYTC_BPF], check=True)
    except subprocess.CalledProcessError as e:
        return None, f"building relaytc.bpf.c failed ({e})"
    return None, None


def run_row(loadgen, driver_cmd, n, log):
    """One relay under the load: its CPU seconds per second over the window,
    the loadgen's totals and the driver's last line, or the driver's "not
    available" reason. The driver's stderr (and rtpengine's) goes to `log`."""
    gen = spawn([loadgen, str(n), str(WARMUP), str(WINDOW), str(DRAIN)])
    endpoints = [readline(gen, "loadgen") for _ in range(n)]
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"),
               GST_PLUGIN_PATH=os.path.join(ROOT, "target", "release"))
    # As the Makefile: a registry of our own, so a stale one never hides
    # the plugin just built.
    env.setdefault("GST_REGISTRY", os.path.join(ROOT, "target", "gst-registry.bin"))
    relay = spawn(driver_cmd, env=env, stderr=log)
    relay.stdin.write("\n".join(endpoints) + "\n\n")
    relay.stdin.flush()
    first = readline(relay, "relay driver")
    if first.startswith("not available"):
        return first
    if not first.startswith("pid "):
        raise RuntimeError(f"relay driver said {first!r}")
    pid = int(first.split()[1])
    gen.stdin.write("".join(readline(relay, "relay driver") + "\n" for _ in range(n)))
    gen.stdin.close()
    if readline(gen, "loadgen") != "started":
        raise RuntimeError("loadgen did not start")
    time.sleep(WARMUP)
    softirqd = softirq_threads()

    def sample():
        return (*cpu_times(pid), cpu_times(gen.pid)[0], sum(cpu_times(p)[0] for p in softirqd),
                *machine_busy())

    before, t0 = sample(), time.monotonic()
    time.sleep(WINDOW)
    after, t1 = sample(), time.monotonic()
    # Before the loadgen ends and closes its sockets; drops in the drain
    # second are left out.
    drops = udp_drops([pid, gen.pid])
    totals = key_values(readline(gen, "loadgen"))
    totals["kernel_drops_relay"], totals["kernel_drops_loadgen"] = drops[pid], drops[gen.pid]
    reap(gen, timeout=WINDOW + DRAIN + 30)
    relay.stdin.close()
    relay_totals = relay.stdout.read().strip()
    reap(relay)
    relay_cpu, relay_user, gen_cpu, softirqd_cpu, busy, steal = (
        (a - b) / (t1 - t0) for a, b in zip(after, before))
    return relay_cpu, relay_user, gen_cpu, softirqd_cpu, busy, steal, totals, relay_totals


def rows_for(relaytc_missing):
    """(label, driver command, rtpengine threads or None) of every row: the
    no-relay baseline, then rtpengine: the others are compared with both.
    A row that cannot run has a reason instead of a command (for relaytc's
    rows, `relaytc_missing` from build_relaytc)."""
    rows = []
    if "direct" in ROWS:
        rows.append((DIRECT_LABEL, relaytc_missing[0] or [RELAYTC, "direct"], None))
    if "rtpengine" in ROWS:
        for threads in (1, 2):
            rows.append((f"rtpengine {threads} thread{'s' if threads > 1 else ''}",
                         [PYTHON, os.path.join(HERE, "rtpengine_ng.py"), str(threads)], threads))
    if "floor" in ROWS:
        # The kernel's part of a shared-port relay, in the same run.
        for tick in TICKS:
            rows.append((f"floor: bare shared-port relay tick={tick}", [FLOOR, str(tick)], None))
    if "kernel" in ROWS:
        # The design that moves the floor: no socket in the relay's path.
        rows.append((KERNEL_LABEL, relaytc_missing[1] or [RELAYTC, "tc", RELAYTC_BPF], None))
    mux = [PYTHON, os.path.join(HERE, "mux_relay.py")]
    for mode in ("relay-to", "shared", "offload", "pipeline"):
        if mode not in ROWS:
            continue
        # offload: the shared-port relay with relay-offload, the element's
        # own kernel forwarding.
        args = ["--mode", "shared", "--offload"] if mode == "offload" else ["--mode", mode]
        name = "shared+offload" if mode == "offload" else mode
        for workers in WORKERS if mode != "pipeline" else [1]:
            for tick in TICKS:
                # workers 1 is the default: left unset, so the row runs on
                # builds that have no workers property.
                extra = ["--workers", str(workers)] if workers != 1 else []
                label = f"rtpmuxserver {name} tick={tick}" + (f" workers={workers}" if extra else "")
                rows.append((label, mux + args + ["--tick", str(tick)] + extra, None))
    return rows


def report(head, label, n, mhz, result, reference, threads):
    """The row's line, and its (CPU-MHz per stream, user-space share, lost,
    misdelivered, latency, the traffic's CPU-MHz per stream). `reference`
    holds this run's figures the later rows are compared with: an rtpengine
    row (`threads` not None) puts its CPU per stream under "cpu" and what it
    added to the traffic's under "added", the direct row its traffic figure
    under "direct"."""
    cpu, user, gen_cpu, softirqd_cpu, busy, steal, t, relay_totals = result
    per_stream = cpu * mhz / (2 * n)
    # All the CPU these datagrams took, wherever the kernel accounted it:
    # the relay's process, the loadgen (whose softirq a relay in the kernel
    # runs in) and the ksoftirqd threads (where softirq work goes under load).
    traffic = (cpu + gen_cpu + softirqd_cpu) * mhz / (2 * n)
    # CPU the machine spent on neither, and what the hypervisor took: a
    # build or another bench running beside this one, or a busy host, makes
    # the row's figures doubtful.
    # The counters are sampled a moment apart in clock ticks: a difference
    # below zero is that noise.
    other = max(0.0, busy - cpu - gen_cpu - softirqd_cpu)
    # The kernel's part is the same for every relay of these packets (the
    # floor row is nearly all kernel): the user-space part is what a relay's
    # own code costs.
    user_share = 100 * user / cpu if cpu > 0 else 0.0
    # A loadgen without the latency fields (an older build) gives 0.
    latency = tuple(t.get(f"latency_{k}_us", 0) / 1000 for k in ("mean", "p99", "max"))
    figures = (per_stream, user_share, t["lost"], t["misdelivered"], latency, traffic)
    line = (f"{head} {per_stream:7.3f} CPU-MHz/stream ({cpu * 100:5.1f}% of a core, {user_share:.0f}% of it in user "
            f"space; loadgen {gen_cpu * 100:.0f}%, ksoftirqd {softirqd_cpu * 100:.0f}%, "
            f"other processes {other * 100:.0f}%, steal {steal * 100:.0f}% of {os.cpu_count() * 100}%; "
            f"the traffic {traffic:.3f} MHz/stream) | "
            f"relayed {t['received']} lost {t['lost']} misdelivered {t['misdelivered']} | "
            f"latency mean {latency[0]:.2f} p99 {latency[1]:.2f} max {latency[2]:.2f} ms")
    others = {k: t[k] for k in ("duplicated", "reordered", "malformed", "late_ticks", "max_stall_ms", "send_errors",
                                "kernel_drops_relay", "kernel_drops_loadgen") if t[k]}
    if others:
        line += " | " + " ".join(f"{k} {v}" for k, v in others.items())
    if label == DIRECT_LABEL:
        reference["direct"] = traffic
        return line, figures
    line += added_to_traffic(traffic, reference, threads)
    if threads is not None:
        reference["cpu"][threads] = per_stream
        return line, figures
    if label not in NOT_IN_PROCESS:
        line += against_rtpengine(n, per_stream, reference["cpu"], t["lost"] + t["misdelivered"], head)
    if relay_totals.startswith(("mux ", "floor ", "kernel ")):
        line += f" | {relay_totals.split(' ', 1)[0]}: {relay_totals.split(' ', 1)[1]}"
    if relay_totals.startswith("kernel "):
        # Its routes count what they forward, as the relay's channels would:
        # the endpoints must have received exactly that.
        forwarded = int(relay_totals.split("forwarded=")[1].split()[0])
        line += f" unaccounted={t['received'] - forwarded}"
    return line, figures


def added_to_traffic(traffic, reference, threads):
    """What a relay added to the traffic's CPU per stream over the direct
    row of the same run, however the kernel accounted it (the relay's own
    process, or the senders' softirq), and that over rtpengine's; an
    rtpengine row (`threads`) records its own. Empty without a direct
    row."""
    if reference.get("direct") is None:
        return ""
    added = traffic - reference["direct"]
    if threads is not None:
        reference["added"][threads] = added
    text = f" | the traffic {added:+.3f} MHz/stream over no relay"
    return text + "".join(f", x{added / ref:.2f} of rtpengine {t}T's" for t, ref in sorted(reference["added"].items())
                          if threads is None and ref > 0)


def against_rtpengine(n, per_stream, reference, faults, label):
    """Our CPU per stream over rtpengine's (`reference`, by threads), and at
    GOAL_N whether the goal is met (`faults`: packets lost or misdelivered);
    the goal is the element's, not the floor's."""
    text = "".join(f" | x{per_stream / ref:.2f} of rtpengine {threads}T" for threads, ref in sorted(reference.items()))
    if n == GOAL_N and reference and "rtpmuxserver" in label:
        met = per_stream * 3 <= min(reference.values()) and faults == 0
        text += f" | goal {'met' if met else 'missed'}"
    return text


def medians(n, runs, rtpengine_labels):
    """One line per row over its runs: the median CPU per stream, its range,
    the median user-space share, every run's losses, the medians' ratios to
    rtpengine's, and the same for the traffic's CPU over the direct row's
    median (the machines are noisy: one run proves little)."""
    def median_of(label, i):
        return statistics.median(f[i] for f in runs[label])

    reference = {"cpu": {threads: median_of(label, 0) for label, threads in rtpengine_labels.items()
                         if runs.get(label)},
                 "added": {}, "direct": median_of(DIRECT_LABEL, 5) if runs.get(DIRECT_LABEL) else None}
    lines = []
    for label, figures in runs.items():
        per_stream = [f[0] for f in figures]
        median = statistics.median(per_stream)
        lost, misdelivered = sum(f[2] for f in figures), sum(f[3] for f in figures)
        line = (f"relay, N={n:<5} {label:<40} median {median:7.3f} CPU-MHz/stream "
                f"({min(per_stream):.3f}-{max(per_stream):.3f} over {len(figures)} runs; "
                f"{statistics.median(f[1] for f in figures):.0f}% in user space; the traffic "
                f"{median_of(label, 5):.3f}) | "
                f"lost {lost} misdelivered {misdelivered} in all runs | latency mean "
                f"{statistics.median(f[4][0] for f in figures):.2f} p99 "
                f"{statistics.median(f[4][1] for f in figures):.2f} ms (medians), max "
                f"{max(f[4][2] for f in figures):.2f} ms")
        if label != DIRECT_LABEL:
            line += added_to_traffic(median_of(label, 5), reference, rtpengine_labels.get(label))
        if label not in rtpengine_labels and label not in NOT_IN_PROCESS:
            line += against_rtpengine(n, median, reference["cpu"], lost + misdelivered, label)
        lines.append(line)
    return lines


def run_rows(n, run, loadgen, mhz, runs, rtpengine_labels, relaytc_missing):
    """Runs every row once for N = `n`, printing its line; adds each row's
    figures to `runs` (by label). Returns False when a row failed."""
    ok = True
    reference = {"cpu": {}, "added": {}, "direct": None}
    for label, cmd, threads in rows_for(relaytc_missing):
        head = f"relay, N={n:<5} {label:<40}"
        if RUNS > 1:
            head = f"{head} run {run}/{RUNS}"
        if threads is not None and shutil.which("rtpengine") is None:
            print(f"{head} not available: no rtpengine (scripts/setup.sh installs rtpengine-daemon)")
            continue
        if isinstance(cmd, str):
            print(f"{head} not available: {cmd}")
            continue
        log_path = os.path.join(OUT_DIR, f"{label.replace(' ', '_')}_N{n}.log")
        # Bounds the row: a hung relay or loadgen is killed, and its
        # closed pipe ends the row with an error.
        watchdog = threading.Timer(ROW_SETUP_LIMIT + WARMUP + WINDOW + DRAIN + 30, kill_all)
        watchdog.start()
        try:
            with open(log_path, "w") as log:
                result = run_row(loadgen, cmd, n, log)
        except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as e:
            ok = False
            print(f"{head} FAILED: {e} (relay log: {log_path})", flush=True)
            continue
        finally:
            watchdog.cancel()
            kill_all()
        if isinstance(result, str):
            print(f"{head} {result}", flush=True)
            continue
        line, figures = report(head, label, n, mhz, result, reference, threads)
        print(line, flush=True)
        runs.setdefault(label, []).append(figures)
        if threads is not None:
            rtpengine_labels[label] = threads
    return ok


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    mhz = nominal_mhz()
    loadgen = build("loadgen")
    build("relayfloor")
    relaytc_missing = build_relaytc()
    print(f"# relay bench: {os.cpu_count()} cores at {mhz:.0f} MHz nominal, warm-up {WARMUP:g} s, "
          f"window {WINDOW:g} s, {RUNS} run(s), 50 packets/s per stream, 2 streams per call; goal at "
          f"N={GOAL_N}: at most 1/3 of rtpengine's CPU per stream (the lower of 1 and 2 threads), no loss",
          flush=True)
    failed = False
    try:
        for n in N_LIST:
            runs, rtpengine_labels = {}, {}
            for run in range(1, RUNS + 1):
                failed |= not run_rows(n, run, loadgen, mhz, runs, rtpengine_labels, relaytc_missing)
            if RUNS > 1:
                for line in medians(n, runs, rtpengine_labels):
                    print(line, flush=True)
    finally:
        kill_all()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
