#!/usr/bin/python3
"""Register maps as vendors write them: per-tag poll periods, writes ahead of polls on a busy
bus, write function codes (write_multiple, mask_write, and the error that names them),
device identification (43/14), 1-based addresses and invalid readings. Each test checks
what reached the ThingsBoard emulator and which requests the Modbus simulator saw."""
import json
import math
import random
import struct
import time

import harness

FC_READ_HOLDING, FC_READ_INPUT = 3, 4
FC_WRITE_COIL, FC_WRITE_REG, FC_WRITE_COILS, FC_WRITE_REGS, FC_MASK_WRITE = 5, 6, 15, 16, 22
FC_MEI = 43


class RegisterMaps(harness.TestCase):
    def start(self, devices, names=("dev",), timeout_ms=300):
        self.emu = self.emulator(devices=[(n, "T" + n) for n in names])
        self.fm = self.fake_modbus("--tcp", "0")
        bus = ('{ name = "plc"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d; '
               'timeout_ms = %d; retries = 0; devices = ( %s ); }'
               % (self.fm.port, timeout_ms, devices))
        self.proc, _, _ = self.start_tbgw(self.config(self.emu.port, bus))
        for n in names:
            self.emu.wait_connected(n)
            self.emu.wait(lambda n=n: self.emu.messages(n, "v1/devices/me/attributes/request/"),
                          10, "the attribute sync")

    def values(self, key, device="dev"):
        return [v for _, k, v in self.emu.telemetry(device) if k == key]

    def call(self, method, params, device="dev"):
        rid = self.emu.rpc(device, method, params)
        return self.emu.rpc_response(device, rid, 10)

    # ---- per-tag poll periods ----

    def test_each_tag_is_read_at_its_own_period(self):
        self.start('{ name = "dev"; unit_id = 1; token = "Tdev"; poll_ms = 100; telemetry = ('
                   ' { key = "fast"; table = "holding"; address = 0; type = "uint16"; },'
                   ' { key = "slow"; table = "holding"; address = 1; type = "uint16"; poll_ms = 1000; },'
                   ' { key = "fast2"; table = "holding"; address = 2; type = "uint16"; poll_ms = 100; } ); }')
        self.fm.set(1, "holding", 0, 7, 8, 9)
        self.emu.wait(lambda: self.values("slow"), 10)
        self.fm.reset()
        time.sleep(2.0)
        reads = [(a, c) for u, fc, a, c in self.fm.log() if fc == FC_READ_HOLDING]
        # The fast tags are coalesced into one request and the slow one is never read
        # along with them, though it sits right between them.
        # (Register 1 is bridged by the fast request, as any gap that costs less than a
        # round trip, but the slow tag is decoded and sent only from its own request.)
        fast = [r for r in reads if r == (0, 3)]
        slow = [r for r in reads if r == (1, 1)]
        self.assertGreaterEqual(len(fast), 2 * 8, reads)  # two 100 ms requests, ~2 s
        self.assertLessEqual(len(slow), 3, reads)          # one every 1000 ms
        self.assertGreaterEqual(len(slow), 1, reads)
        self.assertEqual(len(reads), len(fast) + len(slow), reads)
        self.assertEqual(self.values("slow")[-1], 8)
        self.assertEqual(self.values("fast2")[-1], 9)
        self.stop_tbgw(self.proc)

    def test_mixed_periods_are_coalesced_per_period(self):
        self.start('{ name = "dev"; unit_id = 1; token = "Tdev"; poll_ms = 1000; telemetry = ('
                   ' { key = "a"; table = "holding"; address = 0; type = "uint16"; poll_ms = 150; },'
                   ' { key = "b"; table = "holding"; address = 1; type = "uint16"; poll_ms = 150; },'
                   ' { key = "c"; table = "holding"; address = 2; type = "uint16"; } ); }')
        self.emu.wait(lambda: self.values("c"), 10)
        self.fm.reset()
        time.sleep(1.5)
        reads = [(a, c) for u, fc, a, c in self.fm.log() if fc == FC_READ_HOLDING]
        self.assertIn((0, 2), reads)  # a and b: one request
        self.assertNotIn((0, 1), reads)
        self.assertNotIn((0, 3), reads)
        self.assertLessEqual(reads.count((2, 1)), 2, reads)
        self.stop_tbgw(self.proc)

    def test_report_strategies_per_tag_with_own_periods(self):
        # A fast tag under report = "change" with a heartbeat, a slow one under "always":
        # each keeps its strategy at its own period.
        self.start('{ name = "dev"; unit_id = 1; token = "Tdev"; poll_ms = 100; telemetry = ('
                   ' { key = "fast"; table = "holding"; address = 0; type = "uint16";'
                   '   report = "change"; heartbeat_s = 1; },'
                   ' { key = "slow"; table = "holding"; address = 1; type = "uint16"; poll_ms = 1000; } ); }')
        self.fm.set(1, "holding", 0, 5, 6)
        self.emu.wait(lambda: 5 in self.values("fast") and 6 in self.values("slow"), 10)
        n_fast, n_slow = len(self.values("fast")), len(self.values("slow"))
        time.sleep(3.5)
        fast = len(self.values("fast")) - n_fast
        slow = len(self.values("slow")) - n_slow
        self.assertGreaterEqual(fast, 2)  # the heartbeat, once a second: not 35 readings
        self.assertLessEqual(fast, 5)
        self.assertGreaterEqual(slow, 2)  # every reading, once a second
        self.assertLessEqual(slow, 5)
        self.fm.set(1, "holding", 0, 7)
        self.emu.wait(lambda: 7 in self.values("fast"), 2)  # a change is sent at once
        self.stop_tbgw(self.proc)

    # ---- writes first ----

    def test_a_write_does_not_wait_for_a_slow_poll(self):
        # Units 2 and 3 answer 500 ms late and need four requests (four tables) per poll,
        # every 100 ms: the bus is never idle, and a poll holds it for 2 s. A write to unit
        # 1 waits for at most the request in flight, not for the rest of a poll.
        slow = ", ".join(
            '{ name = "slow%d"; unit_id = %d; token = "Tslow%d"; poll_ms = 100; telemetry = ('
            ' { key = "h"; table = "holding"; address = 0; type = "uint16"; },'
            ' { key = "i"; table = "input"; address = 0; type = "uint16"; },'
            ' { key = "c"; table = "coil"; address = 0; type = "bool"; },'
            ' { key = "d"; table = "discrete"; address = 0; type = "bool"; } ); }' % (u, u, u)
            for u in (2, 3))
        fast = ('{ name = "dev"; unit_id = 1; token = "Tdev"; poll_ms = 5000;'
                ' rpc = ( { method = "set"; access = "write"; table = "holding"; address = 9; type = "uint16"; } ); }')
        self.emu = self.emulator(devices=[("dev", "Tdev"), ("slow2", "Tslow2"), ("slow3", "Tslow3")])
        self.fm = self.fake_modbus("--tcp", "0")
        self.fm.cmd("unit 2 delay 500")
        self.fm.cmd("unit 3 delay 500")
        bus = ('{ name = "plc"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d; '
               'timeout_ms = 2000; retries = 0; devices = ( %s, %s ); }' % (self.fm.port, fast, slow))
        self.proc, _, _ = self.start_tbgw(self.config(self.emu.port, bus))
        self.emu.wait(lambda: "v1/devices/me/rpc/request/+" in self.emu.subscriptions("dev"), 10)
        self.emu.wait(lambda: self.values("d", "slow2"), 20)
        rng = random.Random(19)
        waits = []
        for i in range(8):
            time.sleep(rng.uniform(0.1, 0.7))  # land anywhere in a poll
            t0 = time.monotonic()
            r = self.call("set", {"value": i + 1})
            waits.append(time.monotonic() - t0)
            self.assertEqual(r, {"ok": True})
            self.assertEqual(self.fm.get(1, "holding", 9), [i + 1])
        # 500 ms for the request in flight, plus the write and the way through MQTT; a write
        # behind the rest of the poll would often take up to 2 s.
        self.assertLess(max(waits), 0.95 * harness.SLOW, "waits: %r" % waits)
        self.stop_tbgw(self.proc)

    # ---- function codes ----

    def test_write_multiple(self):
        self.start('{ name = "dev"; unit_id = 1; token = "Tdev"; write_multiple = true; writes = ('
                   ' { key = "sp"; table = "holding"; address = 20; type = "uint16"; },'
                   ' { key = "pump"; table = "coil"; address = 1; type = "bool"; },'
                   ' { key = "flag"; table = "holding"; address = 30; type = "bit"; bit = 2; } ); }')
        self.fm.cmd("unit 1 refuse 5,6")
        self.fm.set(1, "holding", 30, 0x8001)
        self.fm.reset()
        self.emu.set_shared("dev", {"sp": 1234, "pump": True, "flag": True})
        harness.wait_until(lambda: self.fm.get(1, "holding", 30) == [0x8005], 10, "the bit write")
        self.assertEqual(self.fm.get(1, "holding", 20), [1234])
        self.assertEqual(self.fm.get(1, "coil", 1), [1])
        fcs = [(fc, a, c) for u, fc, a, c in self.fm.log()]
        self.assertIn((FC_WRITE_REGS, 20, 1), fcs)
        self.assertIn((FC_WRITE_COILS, 1, 1), fcs)
        self.assertIn((FC_WRITE_REGS, 30, 1), fcs)
        self.assertFalse([f for f in fcs if f[0] in (FC_WRITE_COIL, FC_WRITE_REG)], fcs)
        self.stop_tbgw(self.proc)

    def test_illegal_function_names_the_setting(self):
        self.start('{ name = "dev"; unit_id = 1; token = "Tdev"; rpc = ('
                   ' { method = "set"; access = "write"; table = "holding"; address = 20; type = "uint16"; },'
                   ' { method = "on"; access = "write"; table = "coil"; address = 1; type = "bool"; } ); }'
                   ', { name = "m"; unit_id = 2; token = "Tm"; mask_write = true; writes = ('
                   ' { key = "flag"; table = "holding"; address = 30; type = "bit"; bit = 0; } ); }',
                   names=("dev", "m"))
        self.fm.cmd("unit 1 refuse 5,6")
        self.fm.cmd("unit 2 refuse 22")
        r = self.call("set", {"value": 5})
        self.assertIn("function 6", r.get("error", ""), r)
        self.assertIn("set write_multiple = true", r["error"])
        r = self.call("on", {"value": True})
        self.assertIn("function 5", r.get("error", ""), r)
        self.assertIn("set write_multiple = true", r["error"])
        r = self.tbgwctl("write", "m", "flag", "true")
        self.assertEqual(r.returncode, 1)
        self.assertIn("does not take function 22 (mask write register): set mask_write = false",
                      r.stderr)
        self.emu.set_shared("m", {"flag": True})
        harness.wait_until(lambda: "set mask_write = false" in self.proc.output(), 10,
                           "the log line naming mask_write")
        self.assertEqual(self.fm.get(2, "holding", 30), [0])
        self.stop_tbgw(self.proc)

    def test_mask_write(self):
        self.start('{ name = "dev"; unit_id = 1; token = "Tdev"; mask_write = true; writes = ('
                   ' { key = "flag"; table = "holding"; address = 30; type = "bit"; bit = 3; } ); }')
        self.fm.set(1, "holding", 30, 0xF001)
        self.fm.reset()
        self.emu.set_shared("dev", {"flag": True})
        harness.wait_until(lambda: self.fm.get(1, "holding", 30) == [0xF009], 10, "the set")
        self.emu.set_shared("dev", {"flag": False})
        harness.wait_until(lambda: self.fm.get(1, "holding", 30) == [0xF001], 10, "the clear")
        fcs = [fc for u, fc, a, c in self.fm.log()]
        self.assertEqual(fcs, [FC_MASK_WRITE, FC_MASK_WRITE])  # no read-modify-write
        r = self.tbgwctl("write", "dev", "flag", "true")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.fm.get(1, "holding", 30), [0xF009])
        self.stop_tbgw(self.proc)

    # ---- identification ----

    def test_identify_publishes_client_attributes(self):
        self.emu = self.emulator(devices=[("dev", "Tdev"), ("other", "Tother")])
        self.fm = self.fake_modbus("--tcp", "0")
        self.fm.cmd("ident 1 0 ACME Instruments")
        self.fm.cmd("ident 1 1 PX-200")
        self.fm.cmd("ident 1 2 v2.7")
        self.fm.cmd("ident 1 4 Pressure transmitter")
        self.fm.cmd("ident 1 5 PX-200-A")
        self.fm.cmd("ident 1 per-answer 2")  # three answers, with "more follows"
        devs = ('{ name = "dev"; unit_id = 1; token = "Tdev"; identify = true; telemetry = ('
                ' { key = "t"; table = "holding"; address = 0; type = "uint16"; } ); },'
                '{ name = "other"; unit_id = 3; token = "Tother"; telemetry = ('
                ' { key = "t"; table = "holding"; address = 0; type = "uint16"; } ); }')
        bus = ('{ name = "plc"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d; '
               'timeout_ms = 300; devices = ( %s ); }' % (self.fm.port, devs))
        self.proc, _, _ = self.start_tbgw(self.config(self.emu.port, bus))
        want = {"vendorName": "ACME Instruments", "productCode": "PX-200", "revision": "v2.7",
                "productName": "Pressure transmitter", "modelName": "PX-200-A"}
        self.emu.wait(lambda: all(self.emu.attributes("dev").get(k) == v for k, v in want.items()),
                      10, "the identification attributes")
        self.assertNotIn("vendorUrl", self.emu.attributes("dev"))
        mei = [(u, a, c) for u, fc, a, c in self.fm.log() if fc == FC_MEI]
        self.assertEqual(mei, [(1, 0, 2), (1, 2, 2), (1, 5, 2)])  # from objects 0, 2, 5
        self.assertNotIn("vendorName", self.emu.attributes("other"))
        # Once per connection: not again at the next polls.
        time.sleep(1.5)
        self.assertEqual(len([1 for u, fc, a, c in self.fm.log() if fc == FC_MEI]), 3)
        # tbgwctl identify, also for a device whose config does not ask for it.
        r = self.tbgwctl("identify", "other")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "vendorName: fake-modbus\nproductCode: FM-1\nrevision: 1.0\n")
        r = self.tbgwctl("--json", "identify", "dev")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), want)
        self.fm.cmd("unit 3 refuse 43")
        r = self.tbgwctl("identify", "other")
        self.assertEqual(r.returncode, 1)
        self.assertIn("Illegal function", r.stderr)
        r = self.tbgwctl("identify", "nobody")
        self.assertEqual((r.returncode, r.stderr), (1, "tbgwctl: no device 'nobody'\n"))
        self.stop_tbgw(self.proc)

    def test_identify_and_write_codes_on_rtu(self):
        # The RTU framing of a 43/14 answer (length from its objects, then the CRC), with
        # "more follows", and function 22 and 16 on a serial line.
        self.emu = self.emulator(devices=[("dev", "Tdev")])
        a, b = self.socat_pair()
        self.fm = self.fake_modbus("--rtu", b, "--baud", "19200")
        self.fm.cmd("ident 5 3 https://example.com/px")
        self.fm.cmd("ident 5 per-answer 1")
        self.fm.cmd("unit 5 refuse 5,6")
        dev = ('{ name = "dev"; unit_id = 5; token = "Tdev"; identify = true; write_multiple = true;'
               ' mask_write = true; telemetry = ( { key = "t"; table = "holding"; address = 0; type = "uint16"; } );'
               ' writes = ( { key = "sp"; table = "holding"; address = 2; type = "uint16"; },'
               ' { key = "bit"; table = "holding"; address = 3; type = "bit"; bit = 15; } ); }')
        bus = ('{ name = "rs485"; driver = "modbus-rtu"; port = "%s"; baud = 19200; timeout_ms = 300; '
               'devices = ( %s ); }' % (a, dev))
        self.proc, _, _ = self.start_tbgw(self.config(self.emu.port, bus))
        want = {"vendorName": "fake-modbus", "productCode": "FM-1", "revision": "1.0",
                "vendorUrl": "https://example.com/px"}
        self.emu.wait(lambda: all(self.emu.attributes("dev").get(k) == v for k, v in want.items()),
                      10, "the identification attributes")
        self.assertEqual([(a, c) for u, fc, a, c in self.fm.log() if fc == FC_MEI],
                         [(0, 2), (1, 2), (2, 2), (3, 2)])
        self.emu.wait(lambda: "v1/devices/me/attributes/response/+" in self.emu.subscriptions("dev")
                      or self.emu.messages("dev", "v1/devices/me/attributes/request/"), 10)
        self.emu.set_shared("dev", {"sp": 9, "bit": True})
        harness.wait_until(lambda: self.fm.get(5, "holding", 2, 2) == [9, 0x8000], 10, "the writes")
        fcs = {fc for u, fc, a, c in self.fm.log()}
        self.assertIn(FC_WRITE_REGS, fcs)
        self.assertIn(FC_MASK_WRITE, fcs)
        self.assertNotIn(FC_WRITE_REG, fcs)
        r = self.tbgwctl("identify", "dev")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("vendorUrl: https://example.com/px\n", r.stdout)
        self.stop_tbgw(self.proc)

    def test_identify_falls_back_to_basic(self):
        self.emu = self.emulator(devices=[("dev", "Tdev")])
        self.fm = self.fake_modbus("--tcp", "0")
        self.fm.cmd("ident 1 max-code 1")
        dev = ('{ name = "dev"; unit_id = 1; token = "Tdev"; identify = true; telemetry = ('
               ' { key = "t"; table = "holding"; address = 0; type = "uint16"; } ); }')
        bus = ('{ name = "plc"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d; '
               'timeout_ms = 300; devices = ( %s ); }' % (self.fm.port, dev))
        self.proc, _, _ = self.start_tbgw(self.config(self.emu.port, bus))
        self.emu.wait(lambda: self.emu.attributes("dev").get("revision") == "1.0", 10)
        self.assertEqual([(a, c) for u, fc, a, c in self.fm.log() if fc == FC_MEI],
                         [(0, 2), (0, 1)])  # regular refused (exception 3), then basic
        self.assertNotIn("cannot read its identification", self.proc.output())
        self.stop_tbgw(self.proc)

    # ---- addresses and values ----

    def test_address_base_1(self):
        self.start('{ name = "dev"; unit_id = 1; token = "Tdev"; address_base = 1; allow_raw_rpc = true;'
                   ' telemetry = ( { key = "t"; table = "input"; address = 1; type = "uint16"; } );'
                   ' writes = ( { key = "sp"; table = "holding"; address = 10; type = "uint16"; } );'
                   ' rpc = ( { method = "get"; access = "read"; table = "holding"; address = 10; type = "uint16"; } ); }')
        self.fm.set(1, "input", 0, 42)
        self.fm.set(1, "input", 1, 99)
        self.emu.wait(lambda: 42 in self.values("t"), 10)
        self.assertNotIn(99, self.values("t"))
        self.emu.set_shared("dev", {"sp": 7})
        harness.wait_until(lambda: self.fm.get(1, "holding", 9) == [7], 10, "the write to 9")
        self.assertEqual(self.call("get", {}), {"value": 7})
        r = self.tbgwctl("read", "dev", "sp")
        self.assertEqual((r.returncode, r.stdout), (0, "7\n"), r.stderr)
        self.assertEqual(self.call("read", {"table": "holding", "address": 10}), {"value": 7})
        self.assertEqual(self.call("write", {"table": "holding", "address": 1, "value": 3}), {"ok": True})
        self.assertEqual(self.fm.get(1, "holding", 0), [3])
        self.assertIn("error", self.call("read", {"table": "holding", "address": 0}))
        wire = {(fc, a) for u, fc, a, c in self.fm.log()}
        self.assertIn((FC_READ_INPUT, 0), wire)
        self.assertNotIn((FC_READ_INPUT, 1), wire)
        self.stop_tbgw(self.proc)

    def test_invalid_values_and_nan_are_not_sent(self):
        self.start('{ name = "dev"; unit_id = 1; token = "Tdev"; poll_ms = 100; telemetry = ('
                   ' { key = "t"; table = "input"; address = 0; type = "int16"; scale = 0.1;'
                   '   invalid = [ -32768, 32767 ]; },'
                   ' { key = "f"; table = "input"; address = 2; type = "float32"; },'
                   ' { key = "marker"; table = "input"; address = 4; type = "uint16"; } ); }')
        nan = struct.unpack(">HH", struct.pack(">f", math.nan))
        inf = struct.unpack(">HH", struct.pack(">f", math.inf))
        self.fm.set(1, "input", 0, 215)
        self.fm.set(1, "input", 2, *struct.unpack(">HH", struct.pack(">f", 1.5)))
        self.emu.wait(lambda: 21.5 in self.values("t") and 1.5 in self.values("f"), 10)
        self.fm.set(1, "input", 0, 0x8000)
        self.fm.set(1, "input", 2, *nan)
        self.fm.set(1, "input", 4, 1)
        self.emu.wait(lambda: 1 in self.values("marker"), 10)
        self.fm.set(1, "input", 0, 32767)
        self.fm.set(1, "input", 2, *inf)
        self.fm.set(1, "input", 4, 2)
        self.emu.wait(lambda: 2 in self.values("marker"), 10)
        time.sleep(0.3)
        self.fm.set(1, "input", 0, 100)
        self.fm.set(1, "input", 2, *struct.unpack(">HH", struct.pack(">f", 2.5)))
        self.fm.set(1, "input", 4, 3)
        self.emu.wait(lambda: 3 in self.values("marker") and 2.5 in self.values("f"), 10)
        self.assertEqual(set(self.values("t")) - {0}, {21.5, 10.0})  # 0: before the first set
        self.assertEqual(set(self.values("f")) - {0}, {1.5, 2.5})
        st = json.loads(self.tbgwctl("status", "--json").stdout)
        self.assertGreaterEqual(st["devices"][0]["invalid_values"], 4)
        self.stop_tbgw(self.proc)


if __name__ == "__main__":
    harness.main()
