#!/usr/bin/python3
"""Server-side RPC latency: the time from the emulator sending an RPC request to tbgw's
answer arriving, through the bus thread and a real Modbus transaction on the fake slave.

Sequential calls, a random pause of 0-50 ms between them so that they do not fall into
step with the poll schedule. Three runs: an idle TCP bus (one device, one tag every second),
a busy one (the same device plus 20 devices x 20 tags every 100 ms on the same bus), and a
saturated RTU line (19200 baud, over a pty pair) whose other four units answer 40 ms late
and need four requests per poll every 100 ms: the line never rests, and each poll holds it
for 160 ms or more. Reads (getSetpoint: one holding register) and writes (setValve: one
coil) alternate.

    bench/rpc_latency.py --build BUILD [--calls 400] [--fake PATH] [--only saturated] [--gateway]

--gateway: every device on one gateway session (edge.gateway); requests and answers on
v1/gateway/rpc.

--fake: the fake-modbus to use (one that knows `unit N delay MS`), to measure a tbgw
built from an older tree with the same slave.
"""
import argparse
import os
import random
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
os.environ.setdefault("TBGW_SRCDIR", os.path.join(HERE, ".."))

import harness  # noqa: E402

RPC = """rpc = (
  { method = "setValve";    access = "write"; table = "coil";    address = 5;  type = "bool"; },
  { method = "getSetpoint"; access = "read";  table = "holding"; address = 20; type = "int16"; }
);"""


def percentile(sorted_values, p):
    i = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * (len(sorted_values) - 1)))))
    return sorted_values[i]


class Bench(harness.TestCase):
    gateway = False

    def runTest(self):
        pass

    def emulator_for(self, devices):
        """The emulator with the devices (name, token): in gateway mode with one gateway
        device "gw" instead; sub-devices are created by announcement."""
        if not self.gateway:
            return self.emulator(devices=devices, record=True)
        emu = self.emulator(devices=[("gw", "GW")], record=True)
        emu.set_gateway("gw")
        return emu

    def device_text(self, text):
        """A device's settings: no token of its own in gateway mode."""
        return re.sub(r'token = "[^"]*"; ', "", text) if self.gateway else text

    def run_saturated(self, calls):
        """The RTU case: see the top of this file."""
        slow = [("slow%d" % i, "T-slow%d" % i) for i in range(4)]
        emu = self.emulator_for([("dev", "TD")] + slow)
        a, b = self.socat_pair()
        fm = self.fake_modbus("--rtu", b, "--baud", "19200", "--parity", "E", "--quiet")
        tags = ('telemetry = ( { key = "h"; table = "holding"; address = 0; type = "uint16"; },'
                ' { key = "i"; table = "input"; address = 0; type = "uint16"; },'
                ' { key = "c"; table = "coil"; address = 0; type = "bool"; },'
                ' { key = "d"; table = "discrete"; address = 0; type = "bool"; } );')
        devs = ['{ name = "dev"; unit_id = 1; token = "TD"; poll_ms = 1000; '
                'telemetry = ( { key = "sp"; table = "holding"; address = 20; type = "int16"; } ); %s }'
                % RPC]
        for i, (name, token) in enumerate(slow):
            fm.cmd("unit %d delay 40" % (i + 2))
            devs.append('{ name = "%s"; unit_id = %d; token = "%s"; poll_ms = 100; %s }'
                        % (name, i + 2, token, tags))
        bus = ('{ name = "rs485"; driver = "modbus-rtu"; port = "%s"; baud = 19200; parity = "even"; '
               'timeout_ms = 500; devices = ( %s ); }'
               % (a, ", ".join(self.device_text(d) for d in devs)))
        return self.measure(emu, fm, bus, "saturated", calls)

    def run_case(self, busy, calls):
        others = [("load%02d" % i, "T-load%02d" % i) for i in range(20 if busy else 0)]
        emu = self.emulator_for([("dev", "TD")] + others)
        fm = self.fake_modbus("--tcp", "0", "--quiet")
        tags = ", ".join('{ key = "t%02d"; table = "holding"; address = %d; type = "uint16"; }' % (i, i)
                         for i in range(20))
        devs = ['{ name = "dev"; unit_id = 1; token = "TD"; poll_ms = 1000; '
                'telemetry = ( { key = "sp"; table = "holding"; address = 20; type = "int16"; } ); %s }'
                % RPC]
        devs += ['{ name = "%s"; unit_id = %d; token = "%s"; poll_ms = 100; telemetry = ( %s ); }'
                 % (name, i + 2, token, tags) for i, (name, token) in enumerate(others)]
        bus = ('{ name = "plc"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d; timeout_ms = 500; '
               'devices = ( %s ); }' % (fm.port, ", ".join(self.device_text(d) for d in devs)))
        return self.measure(emu, fm, bus, "busy" if busy else "idle", calls)

    def measure(self, emu, fm, bus, name, calls):
        edge = 'gateway = { token = "GW"; };' if self.gateway else ""
        proc, _, _ = self.start_tbgw(self.config(emu.port, bus, edge=edge)
                                     .replace('level = "debug"', 'level = "warning"'), name=name)
        if self.gateway:
            emu.wait(lambda: "dev" in emu.gateway_connected("gw"), 20, "the announcement")
        else:
            emu.wait(lambda: "v1/devices/me/rpc/request/+" in emu.subscriptions("dev"), 20,
                     "the RPC subscription")
        time.sleep(1)
        rng = random.Random(1)
        lat = {"read": [], "write": []}
        deadline = time.monotonic() + max(60, calls * 0.5)
        for n in range(calls):
            if time.monotonic() > deadline:
                break
            kind = "read" if n % 2 == 0 else "write"
            t0 = time.time() * 1000.0
            if kind == "read":
                rid = emu.rpc("dev", "getSetpoint", {})
            else:
                rid = emu.rpc("dev", "setValve", n % 4 == 1)
            emu.rpc_response("dev", rid, 10)
            if self.gateway:
                answer = [m for m in emu.messages("gw", "v1/gateway/rpc")
                          if m.json().get("device") == "dev" and m.json().get("id") == rid]
            else:
                answer = [m for m in emu.messages("dev", "v1/devices/me/rpc/response/")
                          if m.topic.endswith("/%d" % rid)]
            lat[kind].append(answer[0].recv_ms - t0)
            time.sleep(rng.uniform(0, 0.05))
        self.stop_tbgw(proc)
        emu.stop()
        fm.close()
        fm.proc.stop()
        return lat


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--fake", help="fake-modbus to use (default: the build's)")
    ap.add_argument("--only", choices=("idle", "busy", "saturated"))
    ap.add_argument("--gateway", action="store_true", help="every device on one gateway session")
    a = ap.parse_args()
    harness.BUILDDIR = os.path.abspath(a.build)
    harness.TBGW = os.path.join(harness.BUILDDIR, "tbgw")
    harness.TBGWCTL = os.path.join(harness.BUILDDIR, "tbgwctl")
    harness.FAKE_MODBUS = os.path.abspath(a.fake) if a.fake else \
        os.path.join(harness.BUILDDIR, "tests", "fakes", "fake-modbus")

    b = Bench()
    b.gateway = a.gateway
    b.setUp()
    try:
        cases = [("idle", "idle bus", lambda: b.run_case(False, a.calls)),
                 ("busy", "busy bus (400 tags at 100 ms)", lambda: b.run_case(True, a.calls)),
                 ("saturated", "saturated RTU, slow units", lambda: b.run_saturated(a.calls))]
        results = [(title, run()) for key, title, run in cases if a.only in (None, key)]
    finally:
        b.tearDown()
    print("bench rpc%s: request sent by the emulator -> answer received, sequential calls, ms"
          % (" (gateway mode)" if a.gateway else ""))
    for name, lat in results:
        for kind in ("read", "write"):
            v = sorted(lat[kind])
            if not v:
                continue
            print("  %-30s %-5s n=%-4d p50 %6.1f  p90 %6.1f  p99 %6.1f  max %6.1f" %
                  (name, kind, len(v), percentile(v, 50), percentile(v, 90), percentile(v, 99), v[-1]))


if __name__ == "__main__":
    main()
