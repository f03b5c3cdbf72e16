#!/usr/bin/python3
"""The Prometheus endpoint: `metrics = { listen = "…"; }` serves /metrics in the text
format 0.0.4 from a running tbgw (fake-modbus slave, ThingsBoard emulator); the figures
move as the gateway works, and `promtool check metrics` accepts the output. A bad listen
address is a check-config error at its line; a port in use stops the start with a clear
line. libmicrohttpd is in memory only when the endpoint is configured and its port open. Skipped (77) when promtool (Debian package prometheus) is not installed."""
import http.client
import os
import re
import socket
import subprocess

import harness

harness.need_tool("promtool")


def scrape(host, port, path="/metrics"):
    c = http.client.HTTPConnection(host, port, timeout=10 * harness.SLOW)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.getheader("Content-Type"), r.read().decode()
    finally:
        c.close()


def value(text, name, **labels):
    """The value of the sample name{labels} (labels: a subset that must match), or None."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            return float(m.group(4))
    return None


TAGS = ('telemetry = ( { key = "t"; table = "input"; address = 0; type = "int16"; },'
        ' { key = "p"; table = "holding"; address = 10; type = "uint32"; } );')


def bus(fm, name="b"):
    """A Modbus TCP bus with the one meter, on the fake slave fm."""
    return ('{ name = "%s"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d; '
            'devices = ( { name = "meter-1"; unit_id = 1; token = "T-meter-1"; poll_ms = 100; '
            '%s } ); }' % (name, fm.port, TAGS))


def maps(proc):
    with open("/proc/%d/maps" % proc.pid) as f:
        return f.read()


class Metrics(harness.TestCase):
    def start(self, listen_fmt="127.0.0.1:%d"):
        emu = self.emulator(devices=[("meter-1", "T-meter-1")])
        fm = self.fake_modbus("--tcp", "0")
        fm.set(1, "input", 0, 215)
        fm.set(1, "holding", 10, 0, 7)
        port = harness.free_port()
        listen = listen_fmt % port
        cfg = self.config(emu.port, bus(fm, 'line \\"A\\"'),
                          extra='metrics = { listen = "%s"; };' % listen)
        proc, _, _ = self.start_tbgw(cfg)
        return emu, fm, proc, port

    def test_scrape_values_move_and_promtool_accepts(self):
        emu, fm, proc, port = self.start()
        emu.wait_connected("meter-1")
        status, ctype, text = scrape("127.0.0.1", port)
        self.assertEqual(status, 200)
        self.assertEqual(ctype, "text/plain; version=0.0.4; charset=utf-8")

        def delivered():
            _, _, t = scrape("127.0.0.1", port)
            v = value(t, "tbgw_device_values_delivered_total", device="meter-1")
            return t if v and v >= 4 else None
        first = emu.wait(delivered, 10, "delivered values in /metrics")
        ok1 = value(first, "tbgw_device_polls_total", device="meter-1", result="ok")
        self.assertGreater(ok1, 0)
        self.assertEqual(value(first, "tbgw_device_session_up", device="meter-1"), 1)
        self.assertEqual(value(first, "tbgw_device_reconnects_total", device="meter-1"), 0)
        self.assertEqual(value(first, "tbgw_build_info"), 1)
        # The bus name is escaped as the format requires.
        self.assertIn('tbgw_bus_up{bus="line \\"A\\""} 1', first)
        count = value(first, "tbgw_bus_poll_duration_seconds_count", bus='line \\"A\\"')
        inf = value(first, "tbgw_bus_poll_duration_seconds_bucket", le="+Inf")
        self.assertGreater(count, 0)
        self.assertEqual(count, inf)
        self.assertGreater(value(first, "tbgw_bus_busy_seconds_total"), 0)
        # The process totals are read before the device families within a scrape, so the
        # scrape that first shows a device's acknowledged values may predate them in the
        # totals; any later scrape has them.
        _, _, later = scrape("127.0.0.1", port)
        self.assertGreater(value(later, "tbgw_messages_published_total"), 0)

        # The figures move: more polls; a failing slave shows as errors.
        fm.fault("silent", "1")
        def errors():
            _, _, t = scrape("127.0.0.1", port)
            e = value(t, "tbgw_device_polls_total", device="meter-1", result="error")
            return t if e and e > 0 else None
        later = emu.wait(errors, 20, "failed polls in /metrics")
        self.assertGreater(value(later, "tbgw_device_polls_total", device="meter-1", result="ok"),
                           ok1 - 1)
        self.assertGreater(value(later, "tbgw_bus_requests_total"),
                           value(first, "tbgw_bus_requests_total"))
        self.assertGreater(value(later, "tbgw_bus_request_errors_total"), 0)

        if os.environ.get("TBGW_METRICS_DUMP"):
            print(later)
        r = subprocess.run(["promtool", "check", "metrics"], input=later, capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

        status, _, _ = scrape("127.0.0.1", port, "/")
        self.assertEqual(status, 404)
        self.stop_tbgw(proc)

    def test_http_library_loaded_only_for_metrics(self):
        # libmicrohttpd (and the GnuTLS it initialises) is loaded when the endpoint opens:
        # a gateway without metrics never maps it.
        emu, fm, proc, port = self.start()
        self.assertEqual(scrape("127.0.0.1", port)[0], 200)
        self.assertIn("libmicrohttpd", maps(proc))
        self.stop_tbgw(proc)
        proc, _, _ = self.start_tbgw(self.config(emu.port, bus(fm)), name="tbgw-nometrics")
        emu.wait_connected("meter-1")
        mapped = maps(proc)
        for lib in ("libmicrohttpd", "libgnutls"):
            self.assertFalse(lib in mapped, "%s is mapped without metrics" % lib)
        self.stop_tbgw(proc)

    def test_a_port_in_use_on_reload_loads_nothing(self):
        # A reload that adds the endpoint on a busy port keeps the gateway running without
        # it, and without the HTTP library; the next reload on a free port serves.
        emu = self.emulator(devices=[("meter-1", "T-meter-1")])
        fm = self.fake_modbus("--tcp", "0")
        proc, _, path = self.start_tbgw(self.config(emu.port, bus(fm)))
        emu.wait_connected("meter-1")

        def reload_listening_on(port):
            with open(path, "w") as f:
                f.write(self.config(emu.port, bus(fm),
                                    extra='metrics = { listen = "127.0.0.1:%d"; };' % port))
            self.assertEqual(self.tbgwctl("reload").returncode, 0)

        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            busy = s.getsockname()[1]
            reload_listening_on(busy)
            self.assertIn("metrics: cannot listen on 127.0.0.1:%d: Address already in use" % busy,
                          proc.output())
            self.assertFalse("libmicrohttpd" in maps(proc),
                             "libmicrohttpd is mapped for a port it cannot have")
        port = harness.free_port()
        reload_listening_on(port)
        self.assertEqual(scrape("127.0.0.1", port)[0], 200)
        self.stop_tbgw(proc)

    def test_ipv6_listen(self):
        try:
            with socket.socket(socket.AF_INET6) as s:
                s.bind(("::1", 0))
        except OSError:
            harness.skip_unless(False, "no IPv6 loopback")
        emu, fm, proc, port = self.start("[::1]:%d")
        status, _, text = scrape("::1", port)
        self.assertEqual(status, 200)
        self.assertIn("tbgw_build_info", text)
        self.stop_tbgw(proc)

    def test_port_in_use_stops_the_start(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            port = s.getsockname()[1]
            cfg = self.config(1, "", extra='metrics = { listen = "127.0.0.1:%d"; };' % port)
            proc, _, _ = self.start_tbgw(cfg, wait_ready=False)
            self.assertEqual(proc.wait(harness.START_TIMEOUT), 1)
            self.assertIn("metrics: cannot listen on 127.0.0.1:%d: Address already in use" % port,
                          proc.output())

    def test_bad_listen_address_is_a_config_error(self):
        for listen, why in [
                ("localhost:9105", "not an IPv4 address (names are not resolved: write "
                                   "127.0.0.1, not localhost)"),
                ("::1:9105", "an IPv6 address needs brackets: \"[::1]:9105\""),
                ("127.0.0.1:0", "the port must be a number from 1 to 65535"),
                ("127.0.0.1", "expected \"address:port\", e.g. \"127.0.0.1:9105\" or "
                              "\"[::1]:9105\"")]:
            with self.subTest(listen=listen):
                cfg = self.write("bad.conf", 'edge = { host = "127.0.0.1"; };\n\nmetrics = {\n'
                                 '  listen = "%s";\n};\n' % listen)
                r = subprocess.run([harness.TBGW, "--check-config", "-c", cfg],
                                   capture_output=True, text=True, timeout=30)
                self.assertEqual(r.returncode, 78)
                self.assertIn("%s:4: metrics.listen: '%s': %s" % (cfg, listen, why),
                              r.stderr.splitlines())


if __name__ == "__main__":
    harness.main()
