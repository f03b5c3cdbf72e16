#!/usr/bin/python3
"""The tbgw demo: three simulated Modbus devices, tbgw polling them, and a ThingsBoard
device-API emulator receiving their data on 127.0.0.1, every message shown as it arrives.

Started by ./scripts/demo (which installs and builds first). Everything runs in a
temporary directory and stops on Ctrl-C (or after --duration seconds).
"""

import argparse
import math
import os
import random
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "fakes"))
from tb_emulator import Emulator  # noqa: E402

CONFIG = """
// tbgw.conf of the demo: three simulated devices on one Modbus TCP "PLC".
edge = {{ host = "127.0.0.1"; port = {edge_port}; }};
storage = {{ path = "{tmp}/state"; }};
control = {{ socket = "{tmp}/control.sock"; }};
health = {{ interval_s = 30; }};

templates = (
  {{ name = "energy-meter"; word_order = "little"; poll_ms = 2000;
    telemetry = (
      {{ key = "voltage"; table = "input"; address = 0; type = "float32"; }},
      {{ key = "current"; table = "input"; address = 2; type = "float32"; }},
      {{ key = "energy";  table = "input"; address = 4; type = "uint32"; scale = 0.01; }}
    ); }}
);

buses = (
  {{ name = "plc"; driver = "modbus-tcp"; host = "127.0.0.1"; port = {modbus_port};
    devices = (
      {{ name = "boiler-1"; unit_id = 1; token = "BOILER1_TOKEN"; poll_ms = 1000;
        telemetry = (
          {{ key = "temperature"; table = "input"; address = 0; type = "int16"; scale = 0.1; }},
          {{ key = "pressure"; table = "input"; address = 1; type = "uint16"; scale = 0.01; }},
          {{ key = "burner_on"; table = "coil"; address = 0; type = "bool"; report = "change"; }}
        );
        attributes = ( {{ key = "serial"; table = "holding"; address = 100; type = "string"; count = 4; }} );
        writes = ( {{ key = "setpoint"; table = "holding"; address = 20; type = "int16"; scale = 0.1; }} );
        rpc = ( {{ method = "getSetpoint"; access = "read"; table = "holding"; address = 20;
                  type = "int16"; scale = 0.1; }} );
      }},
      {{ name = "meter-7"; unit_id = 7; template = "energy-meter";
        mqtt = {{ client_id = "meter-7"; username = "meter7"; password = "s3cret"; }}; }},
      {{ name = "press-line"; unit_id = 3; token = "PRESS_LINE_TOKEN"; poll_ms = 500;
        report = "change";
        telemetry = ( {{ key = "speed"; table = "holding"; address = 0; type = "uint16"; }},
                      {{ key = "count"; table = "holding"; address = 1; type = "uint32"; }} ); }}
    );
  }}
);
"""


class Demo:
    def __init__(self, build, tmp):
        self.build, self.tmp = build, tmp
        self.procs = []
        self.received = 0

    def spawn(self, argv, **kw):
        p = subprocess.Popen(argv, start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()

    # ---- the simulated devices ----

    def start_slave(self):
        fm = self.spawn([os.path.join(self.build, "tests", "fakes", "fake-modbus"), "--tcp", "0",
                         "--quiet"], stdout=subprocess.PIPE, text=True)
        line = fm.stdout.readline().split()
        fields = dict(f.split("=") for f in line[1:])
        self.modbus_port = int(fields["tcp"])
        self.ctl = socket.create_connection(("127.0.0.1", int(fields["control"])))
        self.ctl_f = self.ctl.makefile("rw")

    def slave(self, cmd):
        self.ctl_f.write(cmd + "\n")
        self.ctl_f.flush()
        return self.ctl_f.readline().strip()

    @staticmethod
    def f32_le_words(v):
        import struct
        hi, lo = struct.unpack(">HH", struct.pack(">f", v))
        return lo, hi  # word_order = "little"

    def animate(self, stop):
        """Move the simulated values, as real sensors would."""
        energy, count = 123456, 0
        self.slave("set 1 holding 100 0x544d 0x2d31 0x3030 0x3400")  # "TM-1004"
        self.slave("set 1 holding 20 215")
        t0 = time.monotonic()
        while not stop.wait(0.25):
            t = time.monotonic() - t0
            temp = int(round((60 + 8 * math.sin(t / 20)) * 10))
            self.slave("set 1 input 0 %d %d" % (temp, int(150 + 10 * math.sin(t / 7))))
            self.slave("set 1 coil 0 %d" % (1 if math.sin(t / 15) > 0 else 0))
            energy += random.randint(5, 15)
            v = self.f32_le_words(230 + random.uniform(-2, 2))
            a = self.f32_le_words(12.5 + random.uniform(-0.5, 0.5))
            self.slave("set 7 input 0 %d %d %d %d %d %d" % (v + a + (energy & 0xFFFF, energy >> 16)))
            count += random.randint(0, 2)
            self.slave("set 3 holding 0 %d %d %d" % (random.choice((118, 120, 120, 122)),
                                                    count >> 16, count & 0xFFFF))

    # ---- the edge ----

    def show(self, text):
        print(text, flush=True)

    def on_message(self, line):
        self.received += 1
        self.show(line)

    def start_edge(self):
        self.emu = Emulator(log=self.on_message)
        self.emu.add_device("boiler-1", token="BOILER1_TOKEN")
        self.emu.add_device("meter-7", client_id="meter-7", username="meter7", password="s3cret")
        self.emu.add_device("press-line", token="PRESS_LINE_TOKEN")
        self.emu.start()

    def start_tbgw(self):
        cfg = os.path.join(self.tmp, "tbgw.conf")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(edge_port=self.emu.port, modbus_port=self.modbus_port, tmp=self.tmp))
        os.chmod(cfg, 0o640)
        notify = os.path.join(self.tmp, "notify")
        ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        ns.bind(notify)
        env = dict(os.environ, NOTIFY_SOCKET=notify)
        self.log = open(os.path.join(self.tmp, "tbgw.log"), "w")
        self.tbgw = self.spawn([os.path.join(self.build, "tbgw"), "-c", cfg], env=env,
                               stderr=self.log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            r, _, _ = select.select([ns], [], [], 0.5)
            if r and b"READY=1" in ns.recv(4096):
                return cfg
            if self.tbgw.poll() is not None:
                break
        sys.exit("demo: tbgw did not start; its log:\n" + open(self.log.name).read())

    def downlink(self, stop):
        """Now and then, what ThingsBoard does the other way round."""
        while not stop.wait(20):
            sp = round(random.uniform(18, 24), 1)
            self.show("\n>>> ThingsBoard sets shared attribute setpoint = %s on boiler-1 (a register write)" % sp)
            self.emu.set_shared("boiler-1", {"setpoint": sp})
            time.sleep(1)
            rid = self.emu.rpc("boiler-1", "getSetpoint", {})
            try:
                self.show(">>> RPC getSetpoint on boiler-1 answered %s\n" % self.emu.rpc_response("boiler-1", rid, 10))
            except TimeoutError:
                self.show(">>> RPC getSetpoint: no answer\n")


def main():
    ap = argparse.ArgumentParser(description="tbgw demo")
    ap.add_argument("--build", required=True, help="the build directory")
    ap.add_argument("--duration", type=float, help="stop after this many seconds")
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="tbgw-demo-")
    demo = Demo(os.path.abspath(a.build), tmp)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        demo.start_slave()
        demo.start_edge()
        cfg = demo.start_tbgw()
        threading.Thread(target=demo.animate, args=(stop,), daemon=True).start()
        threading.Thread(target=demo.downlink, args=(stop,), daemon=True).start()
        ctl = os.path.join(demo.build, "tbgwctl")
        print("""
tbgw is polling three simulated Modbus devices and delivering their data to a ThingsBoard
emulator on 127.0.0.1:{port}. Every line below is one MQTT message as the emulator
receives it: device, topic, payload.

  configuration:  {cfg}
  tbgw's log:     {log}
  in another terminal:  {ctl} -s {tmp}/control.sock status
                        {ctl} -s {tmp}/control.sock read boiler-1 temperature

To send real data to ThingsBoard, see "Connect to a ThingsBoard Edge" in README.md.
Ctrl-C stops the demo.
""".format(port=demo.emu.port, cfg=cfg, log=demo.log.name, ctl=ctl, tmp=tmp), flush=True)
        stop.wait(a.duration)
    finally:
        stop.set()
        demo.stop()
        if hasattr(demo, "emu"):
            demo.emu.stop()
    print("\ndemo stopped: %d messages received; files left in %s" % (demo.received, tmp))
    sys.exit(0 if demo.received > 0 else 1)


if __name__ == "__main__":
    main()
