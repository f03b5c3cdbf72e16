#!/usr/bin/python3
"""Serial-line sensors on socat pty pairs: every format, streaming and polled (several
polled sensors on one port), CR/LF/CRLF, garbage, over-long and non-UTF-8 lines, a silent
sensor, and a port that vanishes and comes back."""
import os
import select
import threading
import time

import harness


class Sensor:
    """The sensor's end of the pty pair: write lines, or answer requests."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        self.answers = {}
        self.stop = threading.Event()
        self.thread = None

    def write(self, data):
        os.write(self.fd, data)

    def serve(self, answers):
        """answers: {request bytes: reply bytes}"""
        self.answers = answers

        def run():
            buf = b""
            while not self.stop.is_set():
                r, _, _ = select.select([self.fd], [], [], 0.1)
                if not r:
                    continue
                try:
                    buf += os.read(self.fd, 256)
                except OSError:
                    return
                for req, reply in self.answers.items():
                    while req in buf:
                        buf = buf.replace(req, b"", 1)
                        os.write(self.fd, reply)
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def close(self):
        self.stop.set()
        if self.thread:
            self.thread.join(2)
        try:
            os.close(self.fd)
        except OSError:
            pass


class SerialLine(harness.TestCase):
    def start(self, devices, port_name="tty", emu=None, bus_extra=""):
        """devices: list of (name, settings). Returns the sensor side."""
        a, b = self.socat_pair(port_name)
        self.a = a
        self.emu = emu or self.emulator(devices=[(n, "T-" + n) for n, _ in devices])
        devs = ", ".join('{ name = "%s"; token = "T-%s"; %s }' % (n, n, s) for n, s in devices)
        bus = ('{ name = "ser"; driver = "serial-line"; port = "%s"; baud = 115200; timeout_ms = 300; %s '
               'devices = ( %s ); }' % (a, bus_extra, devs))
        self.proc, _, _ = self.start_tbgw(self.config(self.emu.port, bus), name="tbgw-" + port_name)
        # The bus thread opens the port after READY=1, and flushes what was sent before (a
        # sensor's stale output): the test's first line must come after that.
        harness.wait_until(lambda: "bus 'ser': connected" in self.proc.output(), 10,
                           "the port to be opened")
        sensor = Sensor(b)
        self.later(sensor.close)
        return sensor

    def values(self, dev):
        return {k: v for _, k, v in self.emu.telemetry(dev)}

    def test_kv_streaming(self):
        s = self.start([("ws", 'format = "kv";')])
        self.emu.wait_connected("ws")
        time.sleep(0.3)
        s.write(b"t=21.5 h=40\r\nWS1 wind:3;dir=\"N E\"\n")
        self.emu.wait(lambda: self.values("ws") == {"t": 21.5, "h": 40, "wind": 3, "dir": "N E"}, 10)
        self.stop_tbgw(self.proc)

    def test_reload_keeps_the_port_and_a_partial_line(self):
        s = self.start([("ws", 'format = "kv";')])
        self.emu.wait_connected("ws")
        time.sleep(0.3)
        s.write(b"t=1\n")
        self.emu.wait(lambda: self.values("ws").get("t") == 1, 10)
        # Half a line, then the sensor's settings change: the bus restarts with its port
        # open, and the rest of the line completes what was read before.
        s.write(b"t=2")
        time.sleep(0.3)
        cfg = self.path("tbgw-tty.conf")
        with open(cfg) as f:
            text = f.read()
        with open(cfg, "w") as f:
            f.write(text.replace('format = "kv";', 'format = "kv"; poll_ms = 5000;'))
        r = self.tbgwctl("reload")
        self.assertEqual(r.returncode, 0, r.stderr)
        s.write(b"5\n")
        self.emu.wait(lambda: self.values("ws").get("t") == 25, 10, "the completed line")
        self.assertEqual(self.proc.output().count("bus 'ser': connected"), 1)
        self.assertIn("reload: bus 'ser': restart (its port or connection is kept)",
                      self.proc.output())
        self.stop_tbgw(self.proc)

    def test_json_csv_regex(self):
        for fmt, settings, line, want in (
                ("json", 'format = "json";', b'{"t":-1.5,"gps":{"fix":true,"sats":7},"id":"a"}\n',
                 {"t": -1.5, "gps.fix": True, "gps.sats": 7, "id": "a"}),
                ("csv", 'format = "csv"; columns = [ "t", "-", "h" ];', b"21.5,skip,40\r",
                 {"t": 21.5, "h": 40}),
                ("regex", 'format = "regex"; pattern = "T=([-0-9.]+) H=([0-9.]+)"; keys = [ "t", "h" ];',
                 b"PM T=19.25 H=55\r\n", {"t": 19.25, "h": 55})):
            with self.subTest(format=fmt):
                s = self.start([(fmt, settings)], port_name=fmt)
                self.emu.wait_connected(fmt)
                time.sleep(0.3)
                s.write(line)
                self.emu.wait(lambda: self.values(fmt) == want, 10, fmt)
                self.stop_tbgw(self.proc)

    def test_polled_sensors_share_a_port(self):
        s = self.start([("p1", 'format = "kv"; send = "READ 1\\r\\n"; poll_ms = 200;'),
                        ("p2", 'format = "csv"; columns = [ "x" ]; send = "READ 2\\r\\n"; poll_ms = 200;')])
        s.serve({b"READ 1\r\n": b"a=1\r\n", b"READ 2\r\n": b"2.5\r\n"})
        self.emu.wait(lambda: self.values("p1") == {"a": 1} and self.values("p2") == {"x": 2.5}, 10)
        n = len(self.emu.telemetry("p1"))
        self.emu.wait(lambda: len(self.emu.telemetry("p1")) >= n + 3, 5)  # every poll_ms
        self.stop_tbgw(self.proc)

    def test_garbage_long_and_broken_lines(self):
        s = self.start([("ws", 'format = "kv";')])
        self.emu.wait_connected("ws")
        time.sleep(0.3)
        s.write(b"complete nonsense\n" + b"x" * 5000 + b"=1\n" + b"name=\xff\xfeok\n" + b"t=1\n")
        self.emu.wait(lambda: self.values("ws").get("t") == 1, 10)
        self.assertEqual(self.values("ws")["name"], "\ufffd\ufffdok")
        s.write(b"more nonsense\n" + b"y" * 3000 + b"\nt=2\n")
        self.emu.wait(lambda: self.values("ws").get("t") == 2, 10)
        out = self.proc.output()
        self.assertEqual(out.count("ignoring a line that is not key=value pairs"), 1)
        self.assertEqual(out.count("dropping a line longer than 1024 bytes"), 1)
        self.assertNotIn("x" * 100, "".join(k for _, k, _ in self.emu.telemetry("ws")))
        self.stop_tbgw(self.proc)

    def test_silent_sensor_is_reported(self):
        s = self.start([("ws", 'format = "kv"; poll_ms = 100;')])
        s.write(b"t=1\n")
        self.emu.wait(lambda: self.values("ws").get("t") == 1, 10)
        self.emu.wait(lambda: "device 'ws' on bus 'ser': Connection timed out; backing off"
                      in self.proc.output(), 10)
        s.write(b"t=2\n")
        self.emu.wait(lambda: "device 'ws': answering again" in self.proc.output(), 70)
        self.stop_tbgw(self.proc)

    def test_unplug_and_replug(self):
        s = self.start([("ws", 'format = "kv";')], port_name="usb")
        self.emu.wait_connected("ws")
        time.sleep(0.3)
        s.write(b"t=1\n")
        self.emu.wait(lambda: self.values("ws").get("t") == 1, 10)
        s.close()
        socat = [p for p in self._procs if p.argv[0] == "socat"][0]
        socat.stop()  # the adapter is pulled: both pty ends vanish
        self.emu.wait(lambda: "bus 'ser':" in self.proc.output() and "backoff" in self.proc.output(), 10)
        a2, b2 = self.socat_pair("usb")  # plugged back in, same device path
        s2 = Sensor(b2)
        self.later(s2.close)
        deadline = time.time() + 30
        while self.values("ws").get("t") != 2 and time.time() < deadline:
            s2.write(b"t=2\n")
            time.sleep(0.3)
        self.assertEqual(self.values("ws").get("t"), 2)
        self.assertIn("bus 'ser': connected", self.proc.output())
        self.stop_tbgw(self.proc)


if __name__ == "__main__":
    harness.main()
