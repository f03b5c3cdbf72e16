#!/usr/bin/python3
"""Reload benchmark: D devices on B Modbus TCP buses, delivered to the ThingsBoard
emulator; R reloads, each changing one device's register. Prints how long each reload took
(tbgw's log: "reloading configuration" to "configuration reloaded", which is the pause in
polling), and the MQTT CONNECTs and Modbus TCP connections the reloads cost.

    bench/reload.py --build BUILD [--devices 30] [--buses 3] [--reloads 10] [--poll-ms 100]
"""
import argparse
import os
import statistics
import sys
import time
from datetime import datetime

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
os.environ.setdefault("TBGW_SRCDIR", os.path.join(HERE, ".."))

import harness  # noqa: E402


class Bench(harness.TestCase):
    def runTest(self):
        pass


def stamp(line):
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").timestamp()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--devices", type=int, default=30)
    ap.add_argument("--buses", type=int, default=3)
    ap.add_argument("--reloads", type=int, default=10)
    ap.add_argument("--poll-ms", type=int, default=100)
    a = ap.parse_args()
    harness.BUILDDIR = os.path.abspath(a.build)
    harness.TBGW = os.path.join(harness.BUILDDIR, "tbgw")
    harness.TBGWCTL = os.path.join(harness.BUILDDIR, "tbgwctl")
    harness.FAKE_MODBUS = os.path.join(harness.BUILDDIR, "tests", "fakes", "fake-modbus")

    t = Bench()
    t.setUp()
    try:
        names = ["dev%03d" % i for i in range(a.devices)]
        emu = t.emulator(devices=[(n, "T-" + n) for n in names])
        slaves = [t.fake_modbus("--tcp", "0", "--quiet", name="fm%d" % b) for b in range(a.buses)]

        def text(changed_address):
            buses = []
            for b, fm in enumerate(slaves):
                devs = ", ".join(
                    '{ name = "%s"; unit_id = %d; token = "T-%s"; poll_ms = %d; telemetry = ( '
                    '{ key = "t"; table = "holding"; address = %d; type = "uint16"; } ); }'
                    % (n, i % 247 + 1, n, a.poll_ms, changed_address if i == 0 else 0)
                    for i, n in enumerate(names) if i % a.buses == b)
                buses.append('{ name = "bus%d"; driver = "modbus-tcp"; host = "127.0.0.1"; '
                             'port = %d; devices = ( %s ); }' % (b, fm.port, devs))
            return t.config(emu.port, ", ".join(buses)).replace('level = "debug"', 'level = "info"')

        proc, _, cfg = t.start_tbgw(text(0))
        emu.wait(lambda: all(emu.connected(n) for n in names), 60, "all devices connected")
        time.sleep(1)
        connects = sum(emu.connect_count(n) for n in names)
        links = sum(int(fm.cmd("connections").split()[1]) for fm in slaves)
        for r in range(a.reloads):
            with open(cfg, "w") as f:
                f.write(text(r + 1))
            if t.tbgwctl("reload").returncode != 0:
                raise SystemExit("reload %d refused" % r)
            time.sleep(0.5)
        emu.wait(lambda: all(emu.connected(n) for n in names), 60, "all devices connected")
        connects = sum(emu.connect_count(n) for n in names) - connects
        links = sum(int(fm.cmd("connections").split()[1]) for fm in slaves) - links
        lines = proc.output().splitlines()
        starts = [stamp(l) for l in lines if "reloading configuration" in l]
        ends = [stamp(l) for l in lines if "configuration reloaded" in l]
        took = sorted((e - s) * 1000 for s, e in zip(starts, ends))
        t.stop_tbgw(proc)
    finally:
        t.tearDown()

    print("bench reload: %d devices on %d buses every %d ms, %d reloads changing one device"
          % (a.devices, a.buses, a.poll_ms, a.reloads))
    print("  reload (polling paused): median %.0f ms, max %.0f ms" %
          (statistics.median(took), took[-1]))
    print("  MQTT CONNECTs: %d (%.1f per reload)" % (connects, connects / a.reloads))
    print("  Modbus TCP connections opened: %d" % links)


if __name__ == "__main__":
    main()
