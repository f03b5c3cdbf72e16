#!/usr/bin/python3
"""Backlog drain at scale: the `large` job of bench/uplink.py (1000 devices x 10 registers
every second, one session each, qos 1, mosquitto on 127.0.0.1 that echoes nothing back)
runs until every device publishes; then the broker is stopped for --outage seconds and
started again on the same port. Prints how long until everything produced since the
outage began has been delivered (the backlog), how long until every device's live data
(a timestamp after the broker came back) has arrived, tbgw's CPU over the drain and its
peak RSS. Each run is one outage; the figures are medians of --runs.

    bench/drain.py --build BUILD [--outage 30] [--devices 1000] [--runs 3]
"""
import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import uplink  # noqa: E402  (sets up the harness's paths)
import harness  # noqa: E402


def run_once(devices, outage):
    job = dict(uplink.JOBS["large"], devices=devices)
    rate = devices * job["tags"] * 1000.0 / job["poll_ms"]
    t = uplink.Bench()
    t.setUp()
    try:
        fm = uplink.fake_slave(t, job)
        mq, port = uplink.mosquitto(t)
        # Back within 0.2 s of the broker: tbgw's devices retry 0.5 s after a failure at
        # the soonest, so none of what they deliver goes uncounted.
        counter = uplink.Counter(port, devices, reconnect_s=0.2)
        t.later(counter.close)
        proc, _, _ = t.start_tbgw(uplink.tbgw_config(t, job, port, fm.port))
        harness.wait_until(lambda: counter.fresh(0)[1] >= devices, 60,
                           "every device publishing")
        time.sleep(5)
        mq.stop()
        off = time.monotonic()
        time.sleep(outage)
        _, cpu0 = uplink.proc_stat("/proc/%d/stat" % proc.pid)
        t.spawn([mq.argv[0], "-c", t.path("mosquitto.conf")], "mosquitto-again")
        back, back_ms = time.monotonic(), time.time() * 1000
        v_back, _ = counter.fresh(back_ms)
        drained = live = None
        while time.monotonic() - back < 300 and (drained is None or live is None):
            time.sleep(0.2)
            now = time.monotonic()
            v, fresh = counter.fresh(back_ms)
            if live is None and fresh >= devices:
                live = now - back
            # what was produced from the start of the outage until now (2 % of slack for
            # the polls in progress and the bus's own pace)
            if drained is None and v - v_back >= 0.98 * rate * (now - off):
                drained = now - back
        _, cpu1 = uplink.proc_stat("/proc/%d/stat" % proc.pid)
        hwm = uplink.status("/proc/%d/status" % proc.pid, "VmHWM")
        proc.stop(timeout=30)
    finally:
        t.tearDown()
    return dict(drained=drained, live=live, cpu=cpu1 - cpu0, hwm=hwm / 1024)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--outage", type=float, default=30)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    uplink.use_build(a.build)
    runs = [run_once(a.devices, a.outage) for _ in range(a.runs)]

    def med(k):
        xs = [r[k] for r in runs if r[k] is not None]
        return statistics.median(xs) if xs else float("nan")
    print("bench drain: %d devices x 10 registers every 1000 ms, qos 1, broker away %.0f s; "
          "median of %d" % (a.devices, a.outage, len(runs)))
    print("  backlog delivered after    %.1f s (runs: %s)" % (med("drained"), ", ".join(
        "%.1f" % r["drained"] if r["drained"] is not None else "-" for r in runs)))
    print("  every device's live data   %.1f s after the broker is back" % med("live"))
    print("  tbgw CPU over the drain    %.1f s" % med("cpu"))
    print("  peak RSS                   %.1f MiB" % med("hwm"))


if __name__ == "__main__":
    main()
