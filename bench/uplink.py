#!/usr/bin/python3
"""Uplink cost benchmark: N devices x M holding registers polled from the fake Modbus slave,
published by tbgw to a mosquitto broker on 127.0.0.1, samples counted by a subscriber at
the broker. Prints tbgw's CPU seconds per 1000 delivered samples, its peak RSS, CPU and
wake-ups per second of each of its threads, and how long until every device had published.
Each job runs --runs times (default 3); the figures are medians.

    bench/uplink.py --build BUILD [--job small|large|idle|fast|small-qos0|all]
                    [--seconds 20] [--runs 3] [--devices N] [--tags M] [--gateway]

With TBGW_WRAPPER="valgrind --tool=massif --massif-out-file=F" tbgw runs under massif
(the memory table in ARCHITECTURE.md was made so).

Jobs (the targets of the uplink's design, see bench/README.md):
  small       100 devices x 10 registers every 1 s, qos 1
  small-qos0  the same with edge.qos = 0
  large       1000 devices x 10 registers every 1 s, qos 1
  idle        100 devices x 10 registers every 1 s, report = "change", nothing changing
  fast        100 devices x 20 registers every 100 ms (20 000 samples/s), qos 1

The broker delivers nothing back to tbgw (BROKER_ACL below), as ThingsBoard sends a device
only what is addressed to it; nobody answers getSessionLimits (telemetry waits 3 s for it
once per session).

--gateway runs the job in gateway mode (edge.gateway): one session carries every device
over v1/gateway/*, the devices have no credentials; the broker acknowledges the
announcements and nobody answers getSessionLimits (telemetry waits 3 s for it once).

A device is told apart at the broker by its first register's value: device i reads unit
(i % 100) + 1 at address (i // 100) * 32, where register 0 holds i.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
os.environ.setdefault("TBGW_SRCDIR", os.path.join(HERE, ".."))

import harness  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")

JOBS = {
    "small": dict(devices=100, tags=10, poll_ms=1000, qos=1, change=False),
    "small-qos0": dict(devices=100, tags=10, poll_ms=1000, qos=0, change=False),
    "large": dict(devices=1000, tags=10, poll_ms=1000, qos=1, change=False),
    "idle": dict(devices=100, tags=10, poll_ms=1000, qos=1, change=True),
    "fast": dict(devices=100, tags=20, poll_ms=100, qos=1, change=False),
}


def proc_stat(path):
    with open(path) as f:
        text = f.read()
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text.rsplit(")", 1)[1].split()
    return comm, (int(fields[11]) + int(fields[12])) / CLK_TCK


def status(path, key):
    with open(path) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def threads(pid):
    """{tid: (name, cpu_s, context switches)} of every thread of pid."""
    out = {}
    base = "/proc/%d/task" % pid
    for tid in os.listdir(base):
        try:
            name, cpu = proc_stat("%s/%s/stat" % (base, tid))
            cs = (status("%s/%s/status" % (base, tid), "voluntary_ctxt_switches") +
                  status("%s/%s/status" % (base, tid), "nonvoluntary_ctxt_switches"))
        except OSError:
            continue
        out[tid] = (name, cpu, cs)
    return out


def per_thread(t0, t1, seconds):
    """{name: (cpu share of a core, wake-ups/s)} summed over threads of the same name."""
    agg = {}
    for tid, (name, cpu, cs) in t1.items():
        _, cpu0, cs0 = t0.get(tid, (name, 0.0, 0))
        key = name if not name.startswith("tbgw/bus") else "tbgw/bus*"
        if name.startswith("MQTT"):
            key = "paho (%s)" % name
        a = agg.setdefault(key, [0.0, 0.0, 0])
        a[0] += (cpu - cpu0) / seconds
        a[1] += (cs - cs0) / seconds
        a[2] += 1
    return agg


class Counter:
    """Subscribes to the telemetry topics and counts telemetry values per device; keeps
    each device's first arrival and its newest timestamp. reconnect_s: how soon to try
    again when the broker goes away (paho's default backoff grows to 2 minutes)."""

    def __init__(self, port, devices, reconnect_s=None):
        self.lock = threading.Lock()
        self.values = 0
        self.messages = 0
        self.first_seen = {}
        self.newest = {}
        self.devices = devices
        self.c = mqtt.Client(client_id="bench-counter", clean_session=True)
        self.c.on_message = self.on_message
        self.c.on_connect = lambda c, u, f, rc: c.subscribe([("v1/devices/me/telemetry", 0),
                                                              ("v1/gateway/telemetry", 0)])
        if reconnect_s:
            self.c.reconnect_delay_set(min_delay=reconnect_s, max_delay=reconnect_s)
        self.c.connect("127.0.0.1", port, 60)
        self.c.loop_start()

    def on_message(self, c, u, m):
        try:
            doc = json.loads(m.payload)
        except ValueError:
            return
        if m.topic == "v1/gateway/telemetry" and isinstance(doc, dict):
            groups = [v for v in doc.values() if isinstance(v, list)]  # {"dev": [...], ...}
        else:
            groups = [doc if isinstance(doc, list) else [doc]]
        n = 0
        seen = {}
        for entries in groups:
            for e in entries:
                vals = e.get("values", e) if isinstance(e, dict) else {}
                n += sum(1 for k in vals if k.startswith("t"))
                if "t00" in vals:
                    seen[vals["t00"]] = max(seen.get(vals["t00"], 0), e.get("ts", 0))
        now = time.monotonic()
        with self.lock:
            self.values += n
            self.messages += 1
            for dev, ts in seen.items():
                self.first_seen.setdefault(dev, now)
                self.newest[dev] = max(self.newest.get(dev, 0), ts)

    def fresh(self, since_ms):
        """Values so far, and the devices with a value timestamped since_ms or later."""
        with self.lock:
            return self.values, sum(1 for ts in self.newest.values() if ts >= since_ms)

    def snapshot(self):
        with self.lock:
            return self.values, self.messages, len(self.first_seen), \
                max(self.first_seen.values()) if self.first_seen else None

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


class Bench(harness.TestCase):
    def runTest(self):
        pass


# ThingsBoard delivers to a device what is addressed to it; a plain broker delivers every
# device's v1/devices/me/* publications to every device subscribed to that topic. A
# thousand devices' client attributes and getSessionLimits requests would reach all of
# them, a million messages that ThingsBoard never sends (and each a server-side RPC
# "getSessionLimits" answered onto everyone's rpc/response). So tbgw may publish anything
# and read nothing back, as from a ThingsBoard that has nothing to say; only the counter's
# telemetry topics are read.
BROKER_ACL = """pattern write #
pattern read v1/devices/me/telemetry
pattern read v1/gateway/telemetry
"""


def mosquitto(t):
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = harness.free_port()
    acl = t.write("mosquitto.acl", BROKER_ACL)
    # Started as root, mosquitto becomes "mosquitto" and could not read the test's files;
    # started as anyone else, it stays who it is (and "user" is not looked up).
    conf = t.write("mosquitto.conf", "%slistener %d 127.0.0.1\nallow_anonymous true\n"
                   "acl_file %s\n"
                   "persistence false\nmax_inflight_messages 0\nmax_queued_messages 100000\n"
                   "log_dest none\n" % ("user root\n" if os.getuid() == 0 else "", port, acl))
    p = t.spawn([exe, "-c", conf], "mosquitto")
    harness.wait_until(lambda: _connectable(port), 10, "mosquitto listening")
    return p, port


def _connectable(port):
    import socket
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def fake_slave(t, job):
    """The fake Modbus slave holding every device's registers (see the docstring)."""
    fm = t.fake_modbus("--tcp", "0", "--quiet")
    for i in range(job["devices"]):
        fm.set(i % 100 + 1, "holding", (i // 100) * 32, i,
               *range(100, 100 + job["tags"] - 1))
    return fm


def tbgw_config(t, job, broker_port, slave_port):
    """tbgw.conf for the job: 100 devices per TCP bus, commits every second."""
    n, tags = job["devices"], job["tags"]
    buses = []
    per_bus = 100
    for b in range((n + per_bus - 1) // per_bus):
        devs = []
        for i in range(b * per_bus, min(n, (b + 1) * per_bus)):
            base = (i // 100) * 32
            tl = ", ".join('{ key = "t%02d"; table = "holding"; address = %d; type = "uint16"; }'
                           % (k, base + k) for k in range(tags))
            cred = "" if job.get("gateway") else 'token = "T%04d"; ' % i
            devs.append('{ name = "dev%04d"; unit_id = %d; %spoll_ms = %d; %s'
                        'telemetry = ( %s ); }'
                        % (i, i % 100 + 1, cred, job["poll_ms"],
                           'report = "change"; heartbeat_s = 3600; ' if job["change"] else "",
                           tl))
        buses.append('{ name = "bus%d"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d; '
                     'devices = ( %s ); }' % (b, slave_port, ", ".join(devs)))
    edge = "qos = %d;" % job["qos"]
    if job.get("gateway"):
        edge += ' gateway = { token = "GATEWAY"; };'
    cfg = t.config(broker_port, ", ".join(buses), edge=edge,
                   storage="commit_interval_ms = 1000;")
    cfg = cfg.replace('level = "debug"', 'level = "warning"')
    return cfg.replace("commit_interval_ms = 200; commit_interval_ms = 1000;",
                       "commit_interval_ms = 1000;")


def run_once(job, seconds, warmup):
    t = Bench()
    t.setUp()
    try:
        n = job["devices"]
        fm = fake_slave(t, job)
        mq, port = mosquitto(t)
        counter = Counter(port, n)
        t.later(counter.close)
        cfg = tbgw_config(t, job, port, fm.port)
        start = time.monotonic()
        proc, _, _ = t.start_tbgw(cfg)
        all_up = None
        deadline = start + 60
        while time.monotonic() < deadline:
            _, _, seen, last = counter.snapshot()
            if seen >= n:
                all_up = last - start
                break
            time.sleep(0.05)
        if all_up is None and not job["change"]:
            print("bench uplink: after 60 s, %d of %d devices have published" % (seen, n))
        time.sleep(warmup)
        v0, m0, _, _ = counter.snapshot()
        th0 = threads(proc.pid)
        _, c0 = proc_stat("/proc/%d/stat" % proc.pid)
        t0 = time.monotonic()
        time.sleep(seconds)
        v1, m1, _, _ = counter.snapshot()
        th1 = threads(proc.pid)
        _, c1 = proc_stat("/proc/%d/stat" % proc.pid)
        t1 = time.monotonic()
        hwm = status("/proc/%d/status" % proc.pid, "VmHWM")
        ts = time.monotonic()
        rc = proc.stop(timeout=30)
        stop_s = time.monotonic() - ts
        if rc != 0:
            print("bench uplink: tbgw exited with %d after %.1f s" % (rc, stop_s))
    finally:
        t.tearDown()
    dt = t1 - t0
    return dict(values_s=(v1 - v0) / dt, msgs_s=(m1 - m0) / dt, cpu=c1 - c0,
                cpu_per_1k=(c1 - c0) / max(v1 - v0, 1) * 1000, cpu_share=(c1 - c0) / dt,
                hwm_mib=hwm / 1024, all_up_s=all_up, stop_s=stop_s, threads=per_thread(th0, th1, dt),
                offered=job["devices"] * job["tags"] * 1000.0 / job["poll_ms"])


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def report(name, job, runs):
    print("bench uplink %s%s: %d devices x %d registers every %d ms, qos %d%s; median of %d"
          % (name, " (gateway mode)" if job.get("gateway") else "", job["devices"], job["tags"],
             job["poll_ms"], job["qos"],
             ', report = "change", nothing changing' if job["change"] else "", len(runs)))
    print("  delivered:        %.0f samples/s (offered %.0f), %.0f messages/s"
          % (med(r["values_s"] for r in runs), 0 if job["change"] else runs[0]["offered"],
             med(r["msgs_s"] for r in runs)))
    if not job["change"]:
        print("  CPU:              %.4f s per 1000 delivered samples (%.1f%% of one core)"
              % (med(r["cpu_per_1k"] for r in runs), 100 * med(r["cpu_share"] for r in runs)))
    else:
        print("  CPU:              %.1f%% of one core" % (100 * med(r["cpu_share"] for r in runs)))
    print("  peak RSS:         %.1f MiB (runs: %s)"
          % (med(r["hwm_mib"] for r in runs), ", ".join("%.1f" % r["hwm_mib"] for r in runs)))
    if not job["change"]:
        print("  all devices published after %.1f s" % med(r["all_up_s"] for r in runs))
    print("  stopped in        %.1f s" % med(r["stop_s"] for r in runs))
    names = sorted({k for r in runs for k in r["threads"]})
    print("  %-24s %8s %10s %8s" % ("thread", "threads", "CPU %", "wakes/s"))
    for k in names:
        rows = [r["threads"].get(k, [0, 0, 0]) for r in runs]
        print("  %-24s %8d %10.2f %8.1f" % (k, med(x[2] for x in rows),
                                           100 * med(x[0] for x in rows), med(x[1] for x in rows)))
    sys.stdout.flush()


def use_build(path):
    """Run tbgw and fake-modbus from the build directory path."""
    harness.BUILDDIR = os.path.abspath(path)
    harness.TBGW = os.path.join(harness.BUILDDIR, "tbgw")
    harness.FAKE_MODBUS = os.path.join(harness.BUILDDIR, "tests", "fakes", "fake-modbus")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--job", default="all")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--devices", type=int, help="override the job's number of devices")
    ap.add_argument("--tags", type=int, help="override the job's registers per device")
    ap.add_argument("--gateway", action="store_true",
                    help="gateway mode: one session for every device (edge.gateway)")
    a = ap.parse_args()
    use_build(a.build)
    names = list(JOBS) if a.job == "all" else a.job.split(",")
    for name in names:
        job = dict(JOBS[name])
        job["devices"] = a.devices or job["devices"]
        job["tags"] = a.tags or job["tags"]
        job["gateway"] = a.gateway
        runs = [run_once(job, a.seconds, a.warmup) for _ in range(a.runs)]
        report(name, job, runs)


if __name__ == "__main__":
    main()
