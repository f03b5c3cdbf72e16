#!/usr/bin/python3
"""Field links against the fake slave: Modbus RTU frames over TCP (tbgw dialling a device
server, and listening for a DTU that dials in), Modbus TCP in listen mode, Modbus ASCII on
a pty pair in 7E1 and 8N1, and the rule that faults stay local: a silent unit, a late
reply or garbage never costs the shared connection, and a device server that restarts, or
a serial adapter that vanishes, is reconnected by itself."""
import json
import os
import signal
import time

import harness

FC_READ_HOLDING, FC_WRITE_COILS, FC_WRITE_REGS, FC_MASK_WRITE, FC_MEI = 3, 15, 16, 22, 43


def tag(key, table, address, type_, extra=""):
    return '{ key = "%s"; table = "%s"; address = %d; type = "%s"; %s }' % (key, table, address,
                                                                           type_, extra)


def device(name, unit, poll_ms=100, extra=""):
    return ('{ name = "%s"; unit_id = %d; token = "T-%s"; poll_ms = %d; telemetry = ( %s ); %s }'
            % (name, unit, name, poll_ms, tag("v", "holding", 0, "uint16"), extra))


class FieldLinks(harness.TestCase):
    def values(self, emu, dev):
        return [v for _, k, v in emu.telemetry(dev) if k == "v"]

    def wait_value(self, emu, dev, want, timeout=10, what=None):
        emu.wait(lambda: self.values(emu, dev)[-1:] == [want], timeout,
                 what or "%s = %r" % (dev, want))

    def start_rtu_tcp(self, units, bus_extra="", port=None, fm=None):
        emu = self.emulator(devices=[("u%d" % u, "T-u%d" % u) for u in units])
        if fm is None:
            fm = self.fake_modbus("--rtu-tcp", str(port or 0), "--units",
                                  ",".join(str(u) for u in units))
        for u in units:
            fm.set(u, "holding", 0, 100 + u)
        bus = ('{ name = "ds"; driver = "modbus-rtu-tcp"; host = "127.0.0.1"; port = %d; '
               'timeout_ms = 200; %s devices = ( %s ); }'
               % (fm.port, bus_extra, ", ".join(device("u%d" % u, u) for u in units)))
        proc, _, _ = self.start_tbgw(self.config(emu.port, bus))
        return emu, fm, proc

    # ---- RTU over TCP, tbgw dialling ----

    def test_silent_unit_beside_healthy_ones_keeps_one_connection(self):
        emu, fm, proc = self.start_rtu_tcp([1, 2, 3], "retries = 1;")
        for u in (1, 2, 3):
            self.wait_value(emu, "u%d" % u, 100 + u)
        fm.fault("silent", 2)
        emu.wait(lambda: "device 'u2' (unit 2 on bus 'ds')" in proc.output(), 10, "u2 failing")
        n1, n3 = len(self.values(emu, "u1")), len(self.values(emu, "u3"))
        # Line noise between requests is dropped too, without a reconnect.
        fm.fault("garbage", 3)
        time.sleep(3)
        fm.set(1, "holding", 0, 501)
        fm.set(3, "holding", 0, 503)
        self.wait_value(emu, "u1", 501)
        self.wait_value(emu, "u3", 503)
        self.assertGreater(len(self.values(emu, "u1")), n1 + 10)
        self.assertGreater(len(self.values(emu, "u3")), n3 + 10)
        fm.fault("clear")
        fm.set(2, "holding", 0, 502)
        self.wait_value(emu, "u2", 502, 15)
        # One TCP connection for the whole run: no unit's timeout closed it.
        self.assertEqual(fm.cmd("connections"), "ok 1")
        self.assertNotIn("reconnecting", proc.output())
        self.stop_tbgw(proc)

    def test_modbus_tcp_timeout_keeps_the_connection(self):
        # Units behind a Modbus TCP gateway share its socket just the same.
        emu = self.emulator(devices=[("u1", "T-u1"), ("u2", "T-u2")])
        fm = self.fake_modbus("--tcp", "0", "--units", "1,2")
        fm.set(1, "holding", 0, 101)
        fm.fault("silent", 2)
        bus = ('{ name = "gw"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d; '
               'timeout_ms = 200; devices = ( %s, %s ); }' % (fm.port, device("u1", 1), device("u2", 2)))
        proc, _, _ = self.start_tbgw(self.config(emu.port, bus))
        self.wait_value(emu, "u1", 101)
        emu.wait(lambda: "device 'u2' (unit 2 on bus 'gw')" in proc.output(), 10, "u2 failing")
        time.sleep(3)
        fm.set(1, "holding", 0, 102)
        self.wait_value(emu, "u1", 102)
        self.assertEqual(fm.cmd("connections"), "ok 1")
        self.stop_tbgw(proc)

    def test_late_reply_is_never_taken_for_the_next_request(self):
        # Both units hold their own value at the same address: a late answer of one unit
        # would decode as a value of the other.
        emu, fm, proc = self.start_rtu_tcp([1, 2], "retries = 0;")
        self.wait_value(emu, "u1", 101)
        self.wait_value(emu, "u2", 102)
        fm.reset()
        # Every answer comes 300 ms after its request, past the 200 ms timeout: each arrives
        # while tbgw waits for the answer to its next request.
        fm.fault("delay", 300)
        time.sleep(5)
        fm.fault("clear")
        # The units fail one after the other (and back off alike), so the late answer to
        # one request arrives while tbgw waits for the other unit.
        self.assertGreaterEqual(fm.stats()["requests"], 6)
        fm.set(1, "holding", 0, 201)
        fm.set(2, "holding", 0, 202)
        self.wait_value(emu, "u1", 201, 20)
        self.wait_value(emu, "u2", 202, 20)
        self.assertNotIn(102, self.values(emu, "u1"))
        self.assertNotIn(101, self.values(emu, "u2"))
        self.assertEqual(fm.cmd("connections"), "ok 1")
        self.stop_tbgw(proc)

    def test_device_server_restart_resumes_within_10s(self):
        port = harness.free_port()
        emu, fm, proc = self.start_rtu_tcp([1], port=port)
        self.wait_value(emu, "u1", 101)
        fm.close()
        fm.proc.stop()
        emu.wait(lambda: "reconnecting with backoff" in proc.output(), 10, "the link lost")
        time.sleep(6)  # long enough for the reconnect backoff to reach its 5 s cap
        fm = self.fake_modbus("--rtu-tcp", str(port), "--units", "1", name="fake-modbus-2")
        fm.set(1, "holding", 0, 999)
        t0 = time.monotonic()
        self.wait_value(emu, "u1", 999, 30)
        self.assertLess(time.monotonic() - t0, 10 * harness.SLOW)
        self.stop_tbgw(proc)

    def test_units_backed_off_during_an_outage_resume_with_the_link(self):
        # A device server that power-cycles keeps its old connection half open: every unit
        # times out and backs off until the connection is known dead (here: the fake
        # hangs up, as the kernel gives up on it). That is noticed while the bus is idle,
        # and once the link is back every unit is polled at once, not when its backoff
        # (8 s by then) runs out.
        emu, fm, proc = self.start_rtu_tcp([1, 2])
        self.wait_value(emu, "u1", 101)
        fm.fault("silent", 0)
        time.sleep(10)
        fm.fault("clear")
        fm.set(1, "holding", 0, 301)
        fm.set(2, "holding", 0, 302)
        fm.cmd("hangup")
        t0 = time.monotonic()
        self.wait_value(emu, "u1", 301, 20)
        self.wait_value(emu, "u2", 302, 20)
        self.assertLess(time.monotonic() - t0, 4 * harness.SLOW)
        self.stop_tbgw(proc)

    # ---- listen mode ----

    def test_listen_mode_with_a_redialling_dtu(self):
        port = harness.free_port()
        emu = self.emulator(devices=[("u1", "T-u1"), ("u2", "T-u2")])
        bus = ('{ name = "dtu"; driver = "modbus-rtu-tcp"; listen = { bind = "127.0.0.1"; port = %d; }; '
               'timeout_ms = 200; devices = ( %s, %s ); }' % (port, device("u1", 1), device("u2", 2)))
        proc, _, _ = self.start_tbgw(self.config(emu.port, bus))
        waiting = "waiting for a connection on 127.0.0.1:%d" % port
        emu.wait(lambda: waiting in proc.output(), 10, "the waiting message")
        st = json.loads(self.tbgwctl("status", "--json").stdout)
        self.assertEqual(st["buses"][0]["state"], "waiting")
        self.assertEqual(st["buses"][0]["status"], waiting)
        self.assertEqual([d["polling"] for d in st["devices"]], ["down", "down"])
        self.assertEqual([d["last_error"] for d in st["devices"]], [waiting, waiting])
        self.assertIn(waiting, self.tbgwctl("status").stdout)

        fm = self.fake_modbus("--rtu-tcp-dial", str(port), "--units", "1,2")
        fm.set(1, "holding", 0, 11)
        fm.set(2, "holding", 0, 22)
        self.wait_value(emu, "u1", 11)
        self.wait_value(emu, "u2", 22)
        # The DTU re-dials and its old connection stays open but dead: the newest wins.
        fm.cmd("redial keep")
        fm.set(1, "holding", 0, 12)
        self.wait_value(emu, "u1", 12)
        emu.wait(lambda: "a newer connection on 127.0.0.1:%d replaces" % port in proc.output(), 5)
        # It re-dials after closing: tbgw sees the end, waits, takes the new one.
        fm.cmd("redial")
        fm.set(2, "holding", 0, 23)
        self.wait_value(emu, "u2", 23, 15)
        self.assertEqual(proc.output().count(waiting), 1)
        st = json.loads(self.tbgwctl("status", "--json").stdout)
        self.assertEqual(st["buses"][0]["state"], "connected")
        self.stop_tbgw(proc)

    def test_reload_keeps_listening(self):
        port = harness.free_port()
        emu = self.emulator(devices=[("u1", "T-u1")])
        bus = ('{ name = "dtu"; driver = "modbus-rtu-tcp"; listen = { bind = "127.0.0.1"; port = %d; }; '
               'timeout_ms = 200; devices = ( %s ); }' % (port, device("u1", 1)))
        proc, notify, _ = self.start_tbgw(self.config(emu.port, bus))
        fm = self.fake_modbus("--rtu-tcp-dial", str(port), "--units", "1")
        fm.set(1, "holding", 0, 41)
        self.wait_value(emu, "u1", 41)
        proc.kill(signal.SIGHUP)
        emu.wait(lambda: "configuration reloaded" in proc.output(), 10, "the reload")
        # The old bus's connection went with it; the DTU dials the new listener.
        fm.cmd("redial")
        fm.set(1, "holding", 0, 42)
        self.wait_value(emu, "u1", 42, 15)
        self.stop_tbgw(proc)

    def test_modbus_tcp_listen_mode(self):
        port = harness.free_port()
        emu = self.emulator(devices=[("u1", "T-u1")])
        bus = ('{ name = "gw"; driver = "modbus-tcp"; listen = { port = %d; }; timeout_ms = 300; '
               'devices = ( %s ); }' % (port, device("u1", 1)))
        proc, _, _ = self.start_tbgw(self.config(emu.port, bus))
        emu.wait(lambda: "waiting for a connection on 0.0.0.0:%d" % port in proc.output(), 10)
        fm = self.fake_modbus("--tcp-dial", str(port), "--units", "1")
        fm.set(1, "holding", 0, 31)
        self.wait_value(emu, "u1", 31)
        fm.cmd("redial keep")
        fm.set(1, "holding", 0, 32)
        self.wait_value(emu, "u1", 32)
        self.stop_tbgw(proc)

    def test_listen_port_in_use_is_a_startup_error(self):
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        self.later(s.close)
        port = s.getsockname()[1]
        emu = self.emulator(devices=[("u1", "T-u1")])
        bus = ('{ name = "dtu"; driver = "modbus-rtu-tcp"; listen = { bind = "127.0.0.1"; port = %d; }; '
               'devices = ( %s ); }' % (port, device("u1", 1)))
        proc, _, _ = self.start_tbgw(self.config(emu.port, bus), wait_ready=False)
        self.assertNotEqual(proc.wait(harness.START_TIMEOUT), 0)
        self.assertIn("bus 'dtu': cannot listen on 127.0.0.1:%d: Address already in use" % port,
                      proc.output())
        self.assertNotIn("AddressSanitizer", proc.output())

    # ---- Modbus ASCII ----

    def ascii(self, parity, data_bits, bus_extra=""):
        a, b = self.socat_pair()
        emu = self.emulator(devices=[("m1", "T-m1"), ("m7", "T-m7")])
        fm = self.fake_modbus("--ascii", b, "--parity", parity[0].upper(), "--data-bits",
                              str(data_bits))
        fm.set(1, "holding", 0, 11)
        fm.set(7, "holding", 0, 77)
        writes = 'writes = ( { key = "sp"; table = "holding"; address = 20; type = "uint16"; } );'
        bus = ('{ name = "old"; driver = "modbus-ascii"; port = "%s"; parity = "%s"; data_bits = %d; '
               'timeout_ms = 300; %s devices = ( %s, %s ); }'
               % (a, parity, data_bits, bus_extra, device("m1", 1, extra=writes), device("m7", 7)))
        proc, _, _ = self.start_tbgw(self.config(emu.port, bus))
        self.wait_value(emu, "m1", 11)
        self.wait_value(emu, "m7", 77)
        r = self.tbgwctl("write", "m1", "sp", "1234")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(fm.get(1, "holding", 20), [1234])
        # A damaged frame (bad LRC) is dropped and retried; the port stays open.
        fm.fault("crc", 1)
        fm.set(7, "holding", 0, 78)
        self.wait_value(emu, "m7", 78)
        self.assertEqual(fm.stats()["crc_errors"], 0)
        self.assertNotIn("reconnecting", proc.output())
        self.stop_tbgw(proc)

    def test_ascii_7e1(self):
        self.ascii("even", 7, 'rs485 = { rts = "up"; delay_us = 100; };')

    def test_ascii_8n1(self):
        self.ascii("none", 8)

    def test_vanished_serial_adapter_is_reopened_ascii(self):
        self.vanished_serial_adapter("ascii")

    def test_vanished_serial_adapter_is_reopened_rtu(self):
        self.vanished_serial_adapter("rtu")

    def vanished_serial_adapter(self, kind):
        a, b = self.socat_pair("usb")
        emu = self.emulator(devices=[("m1", "T-m1")])
        fm = self.fake_modbus("--" + kind, b)
        fm.set(1, "holding", 0, 5)
        bus = ('{ name = "usb"; driver = "modbus-%s"; port = "%s"; timeout_ms = 200; '
               'devices = ( %s ); }' % (kind, a, device("m1", 1)))
        proc, _, _ = self.start_tbgw(self.config(emu.port, bus))
        self.wait_value(emu, "m1", 5)
        # Unplugged: the pty pair goes away (and the slave with it).
        socat = [p for p in self._procs if "socat" in p.argv[0]][0]
        socat.stop()
        fm.proc.stop()
        emu.wait(lambda: "bus 'usb'" in proc.output() and "reconnecting" in proc.output(), 10)
        time.sleep(1)
        a2, b2 = self.socat_pair("usb")
        self.assertEqual(a2, a)
        fm = self.fake_modbus("--" + kind, b2, name="fake-modbus-2")
        fm.set(1, "holding", 0, 6)
        self.wait_value(emu, "m1", 6, 20)
        self.stop_tbgw(proc)

    # ---- register-map function codes and identification on the framed links ----

    def framed(self, kind, *devices):
        """tbgw polling devices [(name, unit, extra)] through RTU over TCP or ASCII, whose
        framing is tbgw's own (not libmodbus's)."""
        emu = self.emulator(devices=[(n, "T-" + n) for n, _, _ in devices])
        units = ",".join(str(u) for _, u, _ in devices)
        if kind == "rtu-tcp":
            fm = self.fake_modbus("--rtu-tcp", "0", "--units", units)
            link = 'driver = "modbus-rtu-tcp"; host = "127.0.0.1"; port = %d;' % fm.port
        else:
            a, b = self.socat_pair()
            fm = self.fake_modbus("--ascii", b, "--units", units)
            link = 'driver = "modbus-ascii"; port = "%s";' % a
        for name, unit, _ in devices:
            fm.set(unit, "holding", 0, 100 + unit)
        bus = ('{ name = "f"; %s timeout_ms = 300; devices = ( %s ); }'
               % (link, ", ".join(device(n, u, 200, x) for n, u, x in devices)))
        return emu, fm, lambda: self.start_tbgw(self.config(emu.port, bus))[0]

    def write_codes(self, kind):
        # write_multiple: 16 and 15 for single writes; mask_write: 22 for a bit.
        writes = ('write_multiple = true; mask_write = true; writes = ( %s, %s, %s );'
                  % (tag("sp", "holding", 2, "uint16"), tag("pump", "coil", 4, "bool"),
                     tag("flag", "holding", 3, "bit", "bit = 3;")))
        emu, fm, start = self.framed(kind, ("m1", 1, writes))
        fm.cmd("unit 1 refuse 5,6")
        fm.set(1, "holding", 3, 0xF001)
        proc = start()
        self.wait_value(emu, "m1", 101)
        fm.reset()
        for key, value in (("sp", "1234"), ("pump", "true"), ("flag", "true")):
            r = self.tbgwctl("write", "m1", key, value)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(fm.get(1, "holding", 2), [1234])
        self.assertEqual(fm.get(1, "coil", 4), [1])
        self.assertEqual(fm.get(1, "holding", 3), [0xF009])
        self.assertEqual([(fc, a, c) for u, fc, a, c in fm.log() if fc != FC_READ_HOLDING],
                         [(FC_WRITE_REGS, 2, 1), (FC_WRITE_COILS, 4, 1), (FC_MASK_WRITE, 3, 1)])
        self.stop_tbgw(proc)

    def test_write_codes_rtu_tcp(self):
        self.write_codes("rtu-tcp")

    def test_write_codes_ascii(self):
        self.write_codes("ascii")

    def illegal_function_hints(self, kind):
        # A unit that takes neither 5/6 nor 22: the error names the setting to change.
        extra = ('mask_write = true; writes = ( %s ); rpc = ( '
                 '{ method = "set"; access = "write"; table = "holding"; address = 2; type = "uint16"; },'
                 ' { method = "on"; access = "write"; table = "coil"; address = 4; type = "bool"; } );'
                 % tag("flag", "holding", 3, "bit", "bit = 0;"))
        emu, fm, start = self.framed(kind, ("m2", 2, extra))
        fm.cmd("unit 2 refuse 5,6,22")
        proc = start()
        r = emu.rpc_response("m2", emu.rpc("m2", "set", {"value": 5}))
        self.assertIn("function 6 (write single register): set write_multiple = true",
                      r.get("error", ""), r)
        r = emu.rpc_response("m2", emu.rpc("m2", "on", {"value": True}))
        self.assertIn("function 5 (write single coil): set write_multiple = true",
                      r.get("error", ""), r)
        r = self.tbgwctl("write", "m2", "flag", "true")
        self.assertEqual(r.returncode, 1)
        self.assertIn("does not take function 22 (mask write register): set mask_write = false",
                      r.stderr)
        self.assertEqual(fm.get(2, "holding", 3), [0])
        # Exceptions are answers: the link was never reopened for them.
        self.assertNotIn("reconnecting", proc.output())
        self.stop_tbgw(proc)

    def test_illegal_function_hints_rtu_tcp(self):
        self.illegal_function_hints("rtu-tcp")

    def test_illegal_function_hints_ascii(self):
        self.illegal_function_hints("ascii")

    def identify(self, kind):
        # 43/14 over four answers ("more follows"), published as client attributes;
        # tbgwctl identify, also for a device whose config does not ask for it.
        emu, fm, start = self.framed(kind, ("m1", 1, "identify = true;"), ("m2", 2, ""))
        fm.cmd("ident 1 0 ACME Instruments")
        fm.cmd("ident 1 1 PX-200")
        fm.cmd("ident 1 2 v2.7")
        fm.cmd("ident 1 5 PX-200-A")
        fm.cmd("ident 1 per-answer 1")
        proc = start()
        want = {"vendorName": "ACME Instruments", "productCode": "PX-200", "revision": "v2.7",
                "modelName": "PX-200-A"}
        emu.wait(lambda: all(emu.attributes("m1").get(k) == v for k, v in want.items()), 10,
                 "the identification attributes")
        self.assertEqual([(u, a, c) for u, fc, a, c in fm.log() if fc == FC_MEI],
                         [(1, 0, 2), (1, 1, 2), (1, 2, 2), (1, 5, 2)])  # regular objects
        self.assertNotIn("vendorName", emu.attributes("m2"))
        r = self.tbgwctl("--json", "identify", "m1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), want)
        r = self.tbgwctl("identify", "m2")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "vendorName: fake-modbus\nproductCode: FM-1\nrevision: 1.0\n")
        fm.cmd("unit 2 refuse 43")
        r = self.tbgwctl("identify", "m2")
        self.assertEqual(r.returncode, 1)
        self.assertIn("Illegal function", r.stderr)
        self.assertNotIn("reconnecting", proc.output())
        self.stop_tbgw(proc)

    def test_identify_rtu_tcp(self):
        self.identify("rtu-tcp")

    def test_identify_ascii(self):
        self.identify("ascii")

if __name__ == "__main__":
    harness.main()
