#!/usr/bin/python3
"""Soak: tbgw against the fakes with random faults, for a set time, then checks.

    bench/soak.py --build BUILD [--seconds 90] [--seed S] [--rss-growth 0.10]

Four devices of 10 tags every 100 ms: two on a Modbus TCP slave, two on an RTU slave at
the other end of a socat pty pair, all delivered to the ThingsBoard emulator. Faults are
drawn at random (the seed is printed; --seed replays the same draw): the Edge dropping
every connection, refusing TCP, half-open (one session stalled), withholding PUBACKs,
restarting; the TCP slave silent, slow, answering garbage, closing connections; the RTU
slave silent, answering with bad CRCs or garbage; SIGHUP. Each lasts 1-4 s, then it is
cleared and the soak waits until everything is healthy again before the next one.

Every second it samples tbgw's RSS (/proc/PID/status) and open file descriptors
(/proc/PID/fd). At the end production stops, the spool drains, and it checks:

- accounting: tbgw's totals (tbgwctl status) add up, with nothing waiting: every sample
  read was delivered or counted as dropped (spool full, quarantined, lost, ring full);
  and the samples read are exactly what the slaves answered (10 per intact answer);
- file descriptors: back to the healthy count after every recovery and at the end;
- RSS flat: the median of the last quarter of the run is at most --rss-growth (10 %) above
  the median of the second quarter. The first quarter is warm-up (malloc arenas, SQLite's
  page cache, paho's buffers, the WAL reaching its size); after it a healthy tbgw holds a
  plateau give or take allocator noise of a few hundred KiB, while a leak of one batch,
  message or connection per fault or per reload grows without bound. 10 % of ~10 MiB
  catches a leak of about 1 MiB over the run, which per-fault leaks of a few KiB reach in
  a long run (--seconds 3600: ~900 faults); the short CI run relies on LeakSanitizer and
  valgrind for small leaks and on this check for large ones.
- exit 0 on SIGTERM with no sanitizer report (on an ASan build the quarantine is kept
  small so that RSS means something).

Exit status 0 when every check passed. Figures go to stdout.
"""
import argparse
import collections
import json
import os
import random
import signal
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
os.environ.setdefault("TBGW_SRCDIR", os.path.join(HERE, ".."))
import harness  # noqa: E402

TAGS = 10
POLL_MS = 100
KEEPALIVE_S = 10  # the least edge.keepalive_s takes
DEVICES = (("t1", "tcp", 1), ("t2", "tcp", 2), ("r1", "rtu", 1), ("r2", "rtu", 2))
RECOVERY_S = 90


def proc_status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def sanitizer(pid):
    """The sanitizer runtime loaded into pid, or None."""
    with open("/proc/%d/maps" % pid) as f:
        maps = f.read()
    for name, lib in (("ASan", "libasan.so"), ("TSan", "libtsan.so")):
        if lib in maps:
            return name
    return None


class Sampler(threading.Thread):
    """RSS and open fds of pid, once a second."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.samples = []  # (monotonic s, rss KiB, fds)
        self.stopping = threading.Event()

    def run(self):
        while not self.stopping.wait(1.0):
            try:
                self.samples.append((time.monotonic(), proc_status_kb(self.pid, "VmRSS"),
                                     open_fds(self.pid)))
            except OSError:
                return


class Soak(harness.TestCase):
    def runTest(self):
        pass

    def setup_peers(self):
        self.emus = []
        self.emu = self.new_emulator(0)
        self.fm_tcp = self.fake_modbus("--tcp", "0", "--quiet")
        a, b = self.socat_pair("rtu")
        self.fm_rtu = self.fake_modbus("--rtu", b, "--baud", "115200", "--quiet",
                                       name="fake-modbus-rtu")
        for fm in (self.fm_tcp, self.fm_rtu):
            for unit in (1, 2):
                fm.set(unit, "holding", 0, *[unit * 100 + i for i in range(TAGS)])
        tags = ", ".join('{ key = "k%d"; table = "holding"; address = %d; type = "uint16"; }'
                         % (i, i) for i in range(TAGS))

        def devs(kind):
            return ", ".join('{ name = "%s"; unit_id = %d; token = "T-%s"; poll_ms = %d; '
                             'telemetry = ( %s ); }' % (n, u, n, POLL_MS, tags)
                             for n, k, u in DEVICES if k == kind)
        buses = ('{ name = "tcp"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d; '
                 'timeout_ms = 500; devices = ( %s ); }, '
                 '{ name = "rtu"; driver = "modbus-rtu"; port = "%s"; baud = 115200; '
                 'timeout_ms = 300; devices = ( %s ); }'
                 % (self.fm_tcp.port, devs("tcp"), a, devs("rtu")))
        cfg = self.config(self.emu.port, buses, edge="keepalive_s = %d;" % KEEPALIVE_S)
        cfg = cfg.replace('level = "debug"', 'level = "info"').replace(
            "interval_s = 0", "interval_s = 5")
        # ASan keeps freed memory in quarantine (256 MiB by default): RSS would measure
        # that, not tbgw.
        env = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=1"}
        self.proc, self.notify, self.cfg_path = self.start_tbgw(cfg, env=env)
        self.cfg_text = cfg

    def new_emulator(self, port):
        emu = self.emulator(devices=[(n, "T-" + n) for n, _, _ in DEVICES], port=port,
                            record=False, latency_samples=1)
        self.emus.append(emu)
        return emu

    def status(self):
        r = self.tbgwctl("status", "--json")
        if r.returncode != 0:
            raise AssertionError("tbgwctl status: " + r.stderr)
        return json.loads(r.stdout)

    def healthy(self):
        if not all(self.emu.connected(n) for n, _, _ in DEVICES):
            return False
        st = self.status()
        return (all(b["state"] == "connected" for b in st["buses"]) and
                all(d["edge"] == "connected" and d["polling"] == "active"
                    for d in st["devices"]))

    # ---- faults: each returns the function that clears it ----

    def f_edge_drop(self, rng):
        self.emu.drop_all()
        return lambda: None

    def f_edge_refuse(self, rng):
        self.emu.refuse_tcp(True)
        self.emu.drop_all()
        return lambda: self.emu.refuse_tcp(False)

    def f_edge_stall(self, rng):
        dev = rng.choice(DEVICES)[0]
        n = self.emu.connect_count(dev)
        self.emu.stall(dev, True)
        # Keepalive notices within two intervals; the new session is not stalled.
        return lambda: self.emu.wait(lambda: self.emu.connect_count(dev) > n, 30,
                                     "%s to reconnect" % dev)

    def f_edge_hold_puback(self, rng):
        dev = rng.choice(DEVICES)[0]
        self.emu.hold_puback(dev, True)
        return lambda: self.emu.hold_puback(dev, False)

    def f_edge_restart(self, rng):
        port = self.emu.port
        self.emu.stop()

        def clear():
            self.emu = self.new_emulator(port)
        return clear

    def f_tcp_silent(self, rng):
        self.fm_tcp.fault("silent", 0)
        return lambda: self.fm_tcp.fault("clear")

    def f_tcp_slow(self, rng):
        self.fm_tcp.fault("delay", 150)  # slower than poll_ms, within timeout_ms
        return lambda: self.fm_tcp.fault("clear")

    def f_tcp_garbage(self, rng):
        self.fm_tcp.fault("garbage", rng.randint(1, 40))
        return lambda: self.fm_tcp.fault("clear")

    def f_tcp_drop(self, rng):
        self.fm_tcp.fault("drop", rng.randint(1, 3))
        return lambda: self.fm_tcp.fault("clear")

    def f_rtu_silent(self, rng):
        self.fm_rtu.fault("silent", 0)
        return lambda: self.fm_rtu.fault("clear")

    def f_rtu_crc(self, rng):
        self.fm_rtu.fault("crc", rng.randint(1, 40))
        return lambda: self.fm_rtu.fault("clear")

    def f_rtu_garbage(self, rng):
        self.fm_rtu.fault("garbage", rng.randint(1, 40))
        return lambda: self.fm_rtu.fault("clear")

    def f_sighup(self, rng):
        # Half the reloads change a device (the gateway is rebuilt), half change nothing
        # the gateway runs (it keeps running as it is).
        with open(self.cfg_path, "w") as f:
            f.write(self.cfg_text if rng.random() < 0.5 else
                    self.cfg_text.replace("poll_ms = %d;" % POLL_MS,
                                          "poll_ms = %d;" % (POLL_MS + 1), 1))
        self.proc.kill(signal.SIGHUP)
        n = self.notify.count("READY=1")
        return lambda: harness.wait_until(lambda: self.notify.count("READY=1") > n, 30,
                                          "the reload")


FAULTS = [name[2:] for name in dir(Soak) if name.startswith("f_")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--seconds", type=float, default=90)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--rss-growth", type=float, default=0.10)
    ap.add_argument("--warmup", type=float, default=0,
                    help="seconds of faults before the measured run (RSS not sampled)")
    ap.add_argument("--faults", default=",".join(FAULTS),
                    help="the kinds to draw from (default: all of %s)" % ", ".join(FAULTS))
    a = ap.parse_args()
    kinds = [k for k in a.faults.split(",") if k]
    for k in kinds:
        if k not in FAULTS:
            ap.error("no fault %r" % k)
    seed = a.seed if a.seed is not None else int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    harness.BUILDDIR = os.path.abspath(a.build)
    harness.TBGW = os.path.join(harness.BUILDDIR, "tbgw")
    harness.TBGWCTL = os.path.join(harness.BUILDDIR, "tbgwctl")
    harness.FAKE_MODBUS = os.path.join(harness.BUILDDIR, "tests", "fakes", "fake-modbus")
    print("soak: %.0f s, seed %d" % (a.seconds, seed), flush=True)

    problems = []
    injected = collections.Counter()
    fd_checks = []
    s = Soak()
    s.setUp()
    sampler = None
    phases = {}
    t0 = time.monotonic()
    try:
        s.setup_peers()
        harness.wait_until(s.healthy, RECOVERY_S, "a healthy start")
        phases["start"] = time.monotonic() - t0
        fds_healthy = open_fds(s.proc.pid)
        san = sanitizer(s.proc.pid)
        start = time.monotonic()
        measure_from = start + a.warmup
        deadline = measure_from + a.seconds
        while time.monotonic() < deadline:
            if sampler is None and time.monotonic() >= measure_from:
                sampler = Sampler(s.proc.pid)
                sampler.start()
            name = rng.choice(kinds)
            injected[name] += 1
            clear = getattr(s, "f_" + name)(rng)
            time.sleep(rng.uniform(1, 4))
            clear()
            try:
                harness.wait_until(s.healthy, RECOVERY_S, "recovery")
            except AssertionError:
                problems.append("no recovery within %d s from %s" % (RECOVERY_S, name))
                break
            # Back to the healthy number of descriptors (a reconnect in progress may hold
            # one more for a moment).
            try:
                harness.wait_until(lambda: open_fds(s.proc.pid) == fds_healthy, 5, "fds")
                fd_checks.append(True)
            except AssertionError:
                fd_checks.append(False)
                problems.append("after %s: %d fds open, %d when healthy"
                                % (name, open_fds(s.proc.pid), fds_healthy))
            time.sleep(rng.uniform(0.5, 2))
        run_s = time.monotonic() - start

        # Stop production; let everything drain; account.
        for fm in (s.fm_tcp, s.fm_rtu):
            fm.fault("silent", 0)
        answered = 0
        for fm in (s.fm_tcp, s.fm_rtu):
            st = fm.stats()
            answered += st["reads"] - st["exceptions"] - st["damaged"]

        def drained():
            t = s.status()["gateway"]["totals"]
            return t if t["values_waiting"] == 0 else None
        t1 = time.monotonic()
        t = harness.wait_until(drained, 180, "the spool to drain")
        phases["drain"] = time.monotonic() - t1
        if sampler:
            sampler.stopping.set()
            sampler.join()
        fds_end = open_fds(s.proc.pid)
        received = sum(emu.counts()["telemetry_values"] for emu in s.emus)
        t1 = time.monotonic()
        s.stop_tbgw(s.proc)
        phases["stop"] = time.monotonic() - t1
    except AssertionError as e:
        problems.append(str(e).splitlines()[0])
        t = None
    finally:
        if sampler:
            sampler.stopping.set()
        t1 = time.monotonic()
        s.tearDown()
        phases["teardown"] = time.monotonic() - t1

    if t is None:
        print("FAILED: " + "; ".join(problems))
        return 1
    print("  ran %.0f s (%.0f s of them warm-up) with %d faults: %s"
          % (run_s, a.warmup, sum(injected.values()),
             ", ".join("%s %d" % kv for kv in sorted(injected.items()))))
    print("  setup and checks: " + ", ".join("%s %.1f s" % kv for kv in phases.items()))

    # Accounting.
    left = t["samples"] + t["health_values"] + t["values_at_start"]
    right = sum(t[k] for k in ("attribute_values", "values_rejected", "values_delivered",
                               "values_waiting", "values_dropped", "values_quarantined",
                               "values_lost"))
    print("  samples: %d read (+%d health values), %d delivered, %d waiting, %d dropped "
          "(spool full %d, quarantined %d, lost %d; ring full %d)"
          % (t["samples"], t["health_values"], t["values_delivered"], t["values_waiting"],
             t["values_dropped"] + t["values_quarantined"] + t["values_lost"] +
             t["samples_dropped"], t["values_dropped"], t["values_quarantined"],
             t["values_lost"], t["samples_dropped"]))
    if left != right:
        problems.append("totals do not add up: %d in, %d accounted for (%r)" % (left, right, t))
    if t["samples"] + t["samples_dropped"] != TAGS * answered:
        problems.append("%d samples read, but the slaves answered %d reads of %d tags"
                        % (t["samples"] + t["samples_dropped"], answered, TAGS))
    if received < t["values_delivered"]:
        problems.append("the Edge received %d values, fewer than the %d delivered"
                        % (received, t["values_delivered"]))
    print("  slaves answered %d reads intact (x%d tags = %d); the Edge received %d values "
          "(repeats included)" % (answered, TAGS, answered * TAGS, received))

    # RSS and fds.
    rss = [r for _, r, _ in sampler.samples] if sampler else []
    fds = [f for _, _, f in sampler.samples] if sampler else []
    if len(rss) >= 8:
        q = len(rss) // 4
        second, last = statistics.median(rss[q:2 * q]), statistics.median(rss[3 * q:])
        growth = last / second - 1
        print("  RSS: start %.1f MiB, end %.1f MiB, max %.1f MiB; median of the 2nd quarter "
              "%.1f MiB, of the last %.1f MiB (%+.1f %%, limit %+.0f %%)"
              % (rss[0] / 1024, rss[-1] / 1024, max(rss) / 1024, second / 1024, last / 1024,
                 100 * growth, 100 * a.rss_growth))
        if san:
            # Its allocator keeps caches and a record of every allocating stack that only
            # grow. Leaks are LeakSanitizer's to find at exit on an ASan build (stop_tbgw
            # reads its report), and valgrind's.
            print("  RSS not judged on a %s build: its runtime's own memory only grows" % san)
        elif growth > a.rss_growth:
            problems.append("RSS grew %.1f %%" % (100 * growth))
        step = max(1, len(rss) // 12)
        print("  RSS over the run (MiB): " + " ".join("%.1f" % (r / 1024) for r in rss[::step]))
    else:
        problems.append("too few RSS samples (%d): run longer" % len(rss))
    print("  fds: %d when healthy, %d at the end, %d at most; back to %d after %d of %d "
          "recoveries" % (fds_healthy, fds_end, max(fds or [0]), fds_healthy, sum(fd_checks),
                          len(fd_checks)))
    if fds_end != fds_healthy:
        problems.append("%d fds open at the end, %d when healthy" % (fds_end, fds_healthy))

    if problems:
        print("FAILED: " + "; ".join(problems))
        return 1
    print("soak: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
