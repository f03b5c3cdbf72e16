#!/usr/bin/python3
"""Store-and-forward benchmark.

1. Disk writes per hour at 1 000 samples/s (100 devices x 10 tags, 1 s), online (the Edge
   acknowledges) and offline (the Edge is away): tbgw's write_bytes from /proc, scaled to
   an hour.
2. Drain: a backlog of 3.6 M samples (one hour at 1 000 samples/s) is produced while the
   Edge is away (faster, by polling 100 tags every 100 ms), then tbgw restarts at
   1 000 samples/s with the Edge back; the time until the backlog is delivered.

    bench/spool.py --build BUILD [--measure-s 60] [--backlog 3600000]
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
os.environ.setdefault("TBGW_SRCDIR", os.path.join(HERE, ".."))
import harness  # noqa: E402

DEVICES = 100


def write_bytes(pid):
    with open("/proc/%d/io" % pid) as f:
        for line in f:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    return 0


class Bench(harness.TestCase):
    def runTest(self):
        pass

    def cfg(self, emu, fm, tags, poll_ms):
        names = ["dev%03d" % i for i in range(DEVICES)]
        t = ", ".join('{ key = "t%02d"; table = "holding"; address = %d; type = "uint16"; }' % (i, i)
                      for i in range(tags))
        devs = ", ".join('{ name = "%s"; unit_id = %d; token = "T-%s"; poll_ms = %d; telemetry = ( %s ); }'
                         % (n, i % 247 + 1, n, poll_ms, t) for i, n in enumerate(names))
        bus = '{ name = "plc"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d; devices = ( %s ); }' % (
            fm.port, devs)
        # The defaults a user gets: commit every second, log at info.
        return self.config(emu.port, bus, storage="max_size_mb = 1024;").replace(
            'level = "debug"', 'level = "info"').replace(
            "commit_interval_ms = 200;", "commit_interval_ms = 1000;")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--measure-s", type=float, default=60)
    ap.add_argument("--backlog", type=int, default=3600000)
    a = ap.parse_args()
    harness.BUILDDIR = os.path.abspath(a.build)
    harness.TBGW = os.path.join(harness.BUILDDIR, "tbgw")
    harness.TBGWCTL = os.path.join(harness.BUILDDIR, "tbgwctl")
    harness.FAKE_MODBUS = os.path.join(harness.BUILDDIR, "tests", "fakes", "fake-modbus")
    names = ["dev%03d" % i for i in range(DEVICES)]

    b = Bench()
    b.setUp()
    try:
        emu = b.emulator(devices=[(n, "T-" + n) for n in names], record=False, latency_samples=False)
        fm = b.fake_modbus("--tcp", "0", "--quiet")
        live = b.cfg(emu, fm, 10, 1000)

        def delivered():
            return sum(emu.counts(n).get("telemetry_values", 0) for n in names)

        # 1. disk writes online and offline
        proc, _, _ = b.start_tbgw(live, name="live")
        emu.wait(lambda: all(emu.connected(n) for n in names), 60)
        time.sleep(3)
        w0, t0 = write_bytes(proc.pid), time.monotonic()
        time.sleep(a.measure_s)
        online = (write_bytes(proc.pid) - w0) / (time.monotonic() - t0) * 3600
        emu.refuse_tcp(True)
        emu.drop_all()
        time.sleep(3)
        w0, t0 = write_bytes(proc.pid), time.monotonic()
        time.sleep(a.measure_s)
        offline = (write_bytes(proc.pid) - w0) / (time.monotonic() - t0) * 3600
        b.stop_tbgw(proc)

        # 2. a backlog, produced fast while the Edge is away
        fast = b.cfg(emu, fm, 100, 100)
        proc, _, _ = b.start_tbgw(fast, name="fast")
        t0 = time.monotonic()
        while True:
            st = json.loads(b.tbgwctl("status", "--json").stdout)
            polled = sum(d["samples"] for d in st["devices"])
            if polled >= a.backlog or time.monotonic() - t0 > 600:
                break
            time.sleep(1)
        b.stop_tbgw(proc)
        spool_mb = os.path.getsize(b.path("state", "spool.db")) / 2**20

        # 3. the Edge is back; tbgw restarts at 1 000 samples/s and drains
        emu.refuse_tcp(False)
        base = delivered()
        proc, _, _ = b.start_tbgw(live, name="drain")
        t0 = time.monotonic()
        emu.wait(lambda: delivered() - base >= polled, 1800, "the backlog")
        drain_s = time.monotonic() - t0
        b.stop_tbgw(proc)
    finally:
        b.tearDown()

    print("bench spool: 100 devices x 10 tags every 1 s (1 000 samples/s), commit every 1 s (default)")
    print("  disk writes online:   %8.1f MiB/hour" % (online / 2**20))
    print("  disk writes offline:  %8.1f MiB/hour" % (offline / 2**20))
    print("  backlog: %d samples (%.2f hours at 1 000/s) in a %.0f MiB spool" %
          (polled, polled / 3.6e6, spool_mb))
    print("  drained in %.0f s while live data continued: %.0f samples/s (%.0fx the production rate)"
          % (drain_s, polled / drain_s, polled / drain_s / 1000))


if __name__ == "__main__":
    main()
