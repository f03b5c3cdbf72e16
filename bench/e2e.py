#!/usr/bin/python3
"""End-to-end benchmark: N devices x M tags polled from the fake Modbus slave, delivered by
tbgw to the ThingsBoard emulator. Prints delivered samples/s, tbgw's CPU seconds per 100k
samples and share of one core, its peak RSS, and the latency from the poll's timestamp to
the emulator's receipt (p50, p99).

    bench/e2e.py --build BUILD [--devices 100] [--tags 20] [--poll-ms 100] [--seconds 30]
                 [--buses 4]
"""
import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
os.environ.setdefault("TBGW_SRCDIR", os.path.join(HERE, ".."))

import harness  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p / 100))]


class Bench(harness.TestCase):
    def runTest(self):
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--tags", type=int, default=20)
    ap.add_argument("--poll-ms", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--buses", type=int, default=4)
    a = ap.parse_args()
    harness.BUILDDIR = os.path.abspath(a.build)
    harness.TBGW = os.path.join(harness.BUILDDIR, "tbgw")
    harness.FAKE_MODBUS = os.path.join(harness.BUILDDIR, "tests", "fakes", "fake-modbus")

    t = Bench()
    t.setUp()
    try:
        names = ["dev%03d" % i for i in range(a.devices)]
        emu = t.emulator(devices=[(n, "T-" + n) for n in names], latency_samples=2_000_000)
        fm = t.fake_modbus("--tcp", "0", "--quiet")
        for u in range(1, min(a.devices, 247) + 1):
            fm.set(u, "holding", 0, *range(100, 100 + a.tags))
        tags = ", ".join('{ key = "t%02d"; table = "holding"; address = %d; type = "uint16"; }' % (i, i)
                         for i in range(a.tags))
        buses = []
        per_bus = (a.devices + a.buses - 1) // a.buses
        for b in range(a.buses):
            devs = ", ".join('{ name = "%s"; unit_id = %d; token = "T-%s"; poll_ms = %d; telemetry = ( %s ); }'
                             % (n, (i % 247) + 1, n, a.poll_ms, tags)
                             for i, n in enumerate(names) if i // per_bus == b)
            if devs:
                buses.append('{ name = "bus%d"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d; '
                             'devices = ( %s ); }' % (b, fm.port, devs))
        cfg = t.config(emu.port, ", ".join(buses)).replace('level = "debug"', 'level = "info"')
        proc, _, _ = t.start_tbgw(cfg)
        emu.wait(lambda: all(emu.connected(n) for n in names), 60, "all devices connected")
        time.sleep(a.warmup)

        def delivered():
            return sum(emu.counts(n).get("telemetry_values", 0) for n in names)

        emu.latency(clear=True)
        v0, c0, t0 = delivered(), cpu_seconds(proc.pid), time.monotonic()
        time.sleep(a.seconds)
        v1, c1, t1 = delivered(), cpu_seconds(proc.pid), time.monotonic()
        lat = sorted(recv - ts for ts, recv in emu.latency(clear=True))
        rss_peak = status_kb(proc.pid, "VmHWM")
        rss = status_kb(proc.pid, "VmRSS")
        t.stop_tbgw(proc)
    finally:
        t.tearDown()

    rate = (v1 - v0) / (t1 - t0)
    expected = a.devices * a.tags * 1000.0 / a.poll_ms
    cpu = c1 - c0
    print("bench e2e: %d devices x %d tags every %d ms on %d buses (%.0f samples/s offered), %.0f s"
          % (a.devices, a.tags, a.poll_ms, a.buses, expected, t1 - t0))
    print("  delivered:  %.0f samples/s (%.1f%% of offered)" % (rate, 100 * rate / expected))
    print("  tbgw CPU:   %.2f s per 100k samples, %.1f%% of one core" %
          (cpu / max(v1 - v0, 1) * 100000, 100 * cpu / (t1 - t0)))
    print("  tbgw RSS:   %.1f MiB now, %.1f MiB peak" % (rss / 1024, rss_peak / 1024))
    print("  latency poll -> emulator: p50 %.0f ms, p99 %.0f ms, max %.0f ms (%d samples)" %
          (percentile(lat, 50), percentile(lat, 99), lat[-1] if lat else float("nan"), len(lat)))


if __name__ == "__main__":
    main()
