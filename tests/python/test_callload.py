"""The Python call-load job (examples/python/callload.py) end to end."""

import json
import os
import subprocess
import sys

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python", "callload.py")


def callload(*args, timeout=60):
    return subprocess.run(
        [sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=timeout, env=os.environ
    )


def test_calls_are_counted_end_to_end(tmp_path):
    calls, seconds = 20, 2
    csv = tmp_path / "rows.csv"
    r = callload("--calls", str(calls), "--seconds", str(seconds), "--json", "--csv", str(csv))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    s = json.loads(lines[-1])
    for key in ("calls", "packets_sent", "packets_received", "lost_uncounted", "erasures",
                "source_dropped", "cpu_seconds", "mhz_per_call", "threads", "rss_mb"):
        assert key in s, key
    assert s["calls"] == calls
    # Every leg sends 50 packets/s from PLAYING (warm-up included) until
    # the sources stop after the window.
    assert s["packets_sent"] >= 2 * calls * 50 * seconds * 0.9
    assert s["lost_uncounted"] == 0 and s["discontinuous_legs"] == 0
    # Clean loopback at this load: nothing dropped anywhere, all arrives.
    assert s["counted_drops"] == 0 and s["source_dropped"] == 0
    assert s["packets_received"] == s["packets_sent"]
    # One rtpmuxserver worker and one shared synthesis thread beside main,
    # whatever the number of calls; GStreamer's clock starts a thread of its
    # own when a jitter buffer's timer is armed (an erasure waits for it),
    # which a busy machine's late packets cause: 5 then, not one per call.
    assert s["threads"] <= 5
    assert s["cpu_seconds"] > 0 and s["mhz_per_call"] > 0
    # The live lines: one a second, and the same rows in the CSV file.
    rows = csv.read_text().strip().splitlines()
    assert rows[0].startswith("t_s,calls,out_pps,in_pps")
    assert len(rows) - 1 == seconds
    for row in rows[1:]:
        fields = row.split(",")
        assert int(fields[1]) == calls
        # 2 legs x 50 packets/s per call, within the timer's jitter.
        assert abs(int(fields[2]) - 100 * calls) <= 10 * calls


def test_bad_options_are_refused():
    r = callload("--calls", "0")
    assert r.returncode == 2
    assert "--calls must be at least 1" in r.stderr


def test_pcma_calls_run_on_the_alaw_decoder():
    r = callload("--calls", "4", "--seconds", "1", "--codec", "pcma", "--json", "--quiet")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["codec"] == "PCMA"
    assert s["lost_uncounted"] == 0 and s["discontinuous_legs"] == 0
    assert s["packets_received"] == s["packets_sent"] > 0


MINIMAL = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python", "minimal.py")


def test_minimal_example_decodes_both_laws():
    for codec, decoder in (("pcmu", "ulawdec"), ("pcma", "g711alawdec")):
        r = subprocess.run([sys.executable, MINIMAL, "1", codec], capture_output=True, text=True,
                           timeout=30, env=os.environ)
        assert r.returncode == 0, r.stdout + r.stderr
        assert decoder in r.stdout
