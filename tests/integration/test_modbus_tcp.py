#!/usr/bin/python3
"""The polling engine against the fake slave over Modbus TCP: every type and byte/word
order decoded to the exact JSON ThingsBoard gets, report strategies, the read plan as the
slave sees it, exception-2 splitting, device backoff and recovery, reconnects."""
import json
import re
import struct
import time

import harness


def regs(fmt, *values):
    """Registers (big-endian words) holding values packed big-endian."""
    b = struct.pack(">" + fmt, *values)
    return [int.from_bytes(b[i:i + 2], "big") for i in range(0, len(b), 2)]


def reorder(words, byte_order, word_order):
    if word_order == "little":
        words = list(reversed(words))
    if byte_order == "little":
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    return words


def tag(key, table, address, type_, **kw):
    extra = "".join(' %s = %s;' % (k, json.dumps(v) if isinstance(v, str) else v) for k, v in kw.items())
    return '{ key = "%s"; table = "%s"; address = %d; type = "%s";%s }' % (key, table, address, type_, extra)


class ModbusTcp(harness.TestCase):
    def setup_gateway(self, devices, fm_args=(), emu_devices=None, prepare=None):
        """devices: list of (name, unit, body); prepare(fm) runs before tbgw starts.
        Returns (emu, fm, proc)."""
        emu = self.emulator(devices=emu_devices or [(n, "T-" + n) for n, _, _ in devices])
        fm = self.fake_modbus("--tcp", "0", *fm_args)
        if prepare:
            prepare(fm)
        devs = ",\n".join('{ name = "%s"; unit_id = %d; token = "T-%s"; %s }' % (n, u, n, body)
                          for n, u, body in devices)
        bus = '{ name = "plc"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d; ' \
              'timeout_ms = 300; devices = ( %s ); }' % (fm.port, devs)
        self.cfg_text = self.config(emu.port, bus)
        proc, notify, _ = self.start_tbgw(self.cfg_text)
        return emu, fm, proc

    def first_values(self, emu, device, n_keys, timeout=10):
        """The values object of the first telemetry entry that has n_keys keys, and the raw
        payload it came in."""
        def find():
            for m in emu.messages(device, "v1/devices/me/telemetry"):
                for entry in m.json():
                    if len(entry["values"]) >= n_keys:
                        return entry["values"], m.payload.decode()
            return None
        return emu.wait(find, timeout, "telemetry of %s" % device)

    def test_types_orders_and_json_forms(self):
        telemetry = []
        fm_sets = []
        addr = 0
        cases = [
            ("i16", "int16", "h", -123, {}),
            ("u16", "uint16", "H", 65000, {}),
            ("i32", "int32", "i", -70000, {}),
            ("u32", "uint32", "I", 4000000000, {}),
            ("i64", "int64", "q", -5000000000, {}),
            ("u64", "uint64", "Q", 9000000000000000000, {}),
            ("f32", "float32", "f", 0.1, {}),
            ("f64", "float64", "d", 1234.5678, {}),
            ("scaled", "int16", "h", 215, {"scale": 0.1}),
            ("offset", "uint16", "H", 1000, {"scale": 0.01, "offset": -1.0}),
            ("whole", "int16", "h", 220, {"scale": 0.1}),
        ]
        orders = [("big", "big"), ("big", "little"), ("little", "big"), ("little", "little")]
        expect = {}
        for bo, wo in orders:
            for key, typ, fmt, value, kw in cases:
                words = reorder(regs(fmt, value), bo, wo)
                k = "%s_%s%s" % (key, bo[0], wo[0])
                telemetry.append(tag(k, "holding", addr, typ, byte_order=bo, word_order=wo, **kw))
                fm_sets.append((addr, words))
                expect[k] = (value, kw)
                addr += len(words)
        telemetry.append(tag("text", "input", 0, "string", count=5))
        telemetry.append(tag("bit3", "holding", 500, "bit", bit=3))
        telemetry.append(tag("bit4", "holding", 500, "bit", bit=4))
        telemetry.append(tag("coil", "coil", 7, "bool"))
        telemetry.append(tag("din", "discrete", 9, "bool"))
        body = "poll_ms = 300; telemetry = ( %s );" % ",\n".join(telemetry)

        def prepare(fm):
            for a, words in fm_sets:
                fm.set(1, "holding", a, *words)
            fm.set(1, "input", 0, *regs("10s", b"  Pump\x00xyz"))
            fm.set(1, "holding", 500, 0b1000)
            fm.set(1, "coil", 7, 1)

        emu, fm, proc = self.setup_gateway([("dev", 1, body)], prepare=prepare)
        values, raw = self.first_values(emu, "dev", len(telemetry))
        for k, (value, kw) in expect.items():
            if kw:
                want = value * kw["scale"] + kw.get("offset", 0)
                self.assertAlmostEqual(values[k], want, places=9, msg=k)
                self.assertIsInstance(values[k], float, k)
            elif k.startswith("f32"):
                self.assertAlmostEqual(values[k], 0.1, places=7)
            else:
                self.assertEqual(values[k], value, k)
        # The JSON text itself: integers without '.', scaled and float values always with one,
        # float32 in float precision, no %f noise.
        self.assertIn('"i16_bb":-123,', raw)
        self.assertIn('"u64_ll":9000000000000000000', raw)
        self.assertIn('"f32_bl":0.1,', raw)
        self.assertIn('"scaled_bb":21.5,', raw)
        self.assertIn('"whole_bb":22.0,', raw)
        self.assertIn('"offset_lb":9.0,', raw)
        self.assertNotRegex(raw, r"\d\.\d*0000\d")
        self.assertEqual(values["text"], "Pump")
        self.assertEqual((values["bit3"], values["bit4"]), (True, False))
        self.assertEqual((values["coil"], values["din"]), (True, False))
        self.stop_tbgw(proc)

    def test_report_change_deadband_heartbeat(self):
        body = ('poll_ms = 100; report = "change"; deadband = 1.0; heartbeat_s = 1; telemetry = ( %s, %s );'
                % (tag("t", "holding", 0, "int16"), tag("a", "holding", 1, "int16", report="always")))
        emu, fm, proc = self.setup_gateway([("dev", 1, body)],
                                           prepare=lambda fm: fm.set(1, "holding", 0, 10))

        def series(key):
            return [v for _, k, v in emu.telemetry("dev") if k == key]

        emu.wait(lambda: len(series("a")) >= 3, 10)
        self.assertEqual(series("t"), [10])
        fm.set(1, "holding", 0, 10)  # no change
        time.sleep(0.3)
        fm.set(1, "holding", 0, 11)  # = last reported + deadband: reported
        emu.wait(lambda: series("t")[-1:] == [11], 5)
        n = len(series("t"))
        # Unchanged: the heartbeat repeats it about once a second, not every 100 ms.
        emu.wait(lambda: len(series("t")) >= n + 2, 5)
        a_rate = len(series("a"))
        self.assertLess(len(series("t")), a_rate / 3)
        self.stop_tbgw(proc)

    def test_requests_per_cycle_follow_the_plan(self):
        body = ("poll_ms = 200; telemetry = ( %s );" % ", ".join([
            tag("a", "holding", 0, "uint16"), tag("b", "holding", 1, "float32"),
            tag("c", "holding", 60, "uint32"),          # merged across the gap (TCP)
            tag("d", "holding", 200, "uint16"),          # 125-register limit: new request
            tag("e", "input", 0, "uint16"), tag("f", "coil", 0, "bool"), tag("g", "coil", 100, "bool")]))
        emu, fm, proc = self.setup_gateway([("dev", 1, body)])
        emu.wait(lambda: len(emu.messages("dev", "v1/devices/me/telemetry")) >= 3, 10)
        fm.reset()
        emu.wait(lambda: len(emu.messages("dev", "v1/devices/me/telemetry")) >= 6, 10)
        log = fm.log()
        cycles = [log[i:i + 4] for i in range(0, len(log) - 3, 4)]
        self.assertGreaterEqual(len(cycles), 2)
        # One cycle: coils 0..100 (one request), input 0, holding 0..61, holding 200.
        self.assertEqual(sorted(cycles[0]), sorted([(1, 1, 0, 101), (1, 4, 0, 1), (1, 3, 0, 62),
                                                    (1, 3, 200, 1)]))
        self.stop_tbgw(proc)

    def test_hole_splits_the_request_once(self):
        body = "poll_ms = 150; telemetry = ( %s );" % ", ".join(
            [tag("a", "holding", 0, "uint16"), tag("b", "holding", 5, "uint16"),
             tag("c", "holding", 10, "uint16")])

        def prepare(fm):
            fm.fault("hole", 1, "holding", 7, 1)  # between b and c: the merged read fails
            fm.set(1, "holding", 0, 1)
            fm.set(1, "holding", 5, 2)
            fm.set(1, "holding", 10, 3)

        emu, fm, proc = self.setup_gateway([("dev", 1, body)], prepare=prepare)
        values, _ = self.first_values(emu, "dev", 3)
        self.assertEqual(values, {"a": 1, "b": 2, "c": 3})
        fm.reset()
        emu.wait(lambda: len(fm.log()) >= 6, 5)
        self.assertEqual(set(fm.log()), {(1, 3, 0, 1), (1, 3, 5, 1), (1, 3, 10, 1)})
        out = proc.output()
        self.assertEqual(out.count("refused as one read"), 1, out)
        self.assertIn("device 'dev': holding 0..10 refused as one read (Illegal data address); "
                      "reading its 3 tags in 3 requests from now on", out)
        self.stop_tbgw(proc)

    def test_silent_device_backs_off_others_keep_their_rate(self):
        t = "poll_ms = 100; telemetry = ( %s );" % tag("v", "holding", 0, "uint16")
        emu, fm, proc = self.setup_gateway([("good", 1, t), ("dead", 2, t)])
        fm.fault("silent", 2)
        emu.wait(lambda: "device 'dead' (unit 2 on bus 'plc'): Connection timed out; backing off"
                 in proc.output(), 10)
        fm.reset()
        time.sleep(2.0)
        log = fm.log()
        good = sum(1 for e in log if e[0] == 1)
        dead = sum(1 for e in log if e[0] == 2)
        # 100 ms polls for 2 s: ~20, despite a neighbour that times out.
        self.assertGreaterEqual(good, 14, log)
        self.assertLessEqual(dead, 4, log)  # backed off: at most a retry or two
        fm.fault("clear")
        emu.wait(lambda: "device 'dead': answering again" in proc.output(), 70)
        out = proc.output()
        self.assertEqual(out.count("backing off"), 1, out)
        self.assertEqual(out.count("answering again"), 1, out)
        self.stop_tbgw(proc)

    def test_reconnects_when_the_slave_comes_back(self):
        t = "poll_ms = 100; telemetry = ( %s );" % tag("v", "holding", 0, "uint16")
        emu, fm, proc = self.setup_gateway([("dev", 1, t)])
        emu.wait(lambda: len(emu.telemetry("dev")) >= 2, 10)
        port = fm.port
        fm.proc.stop()
        emu.wait(lambda: "bus 'plc': cannot connect: Connection refused; retrying with backoff"
                 in proc.output() or "reconnecting with backoff" in proc.output(), 10)
        fm2 = self.fake_modbus("--tcp", str(port), name="fake-modbus-2")
        fm2.set(1, "holding", 0, 77)
        emu.wait(lambda: 77 in [v for _, k, v in emu.telemetry("dev")], 20)
        self.assertIn("bus 'plc': connected", proc.output())
        self.stop_tbgw(proc)

    def test_attributes_at_connect_and_on_change(self):
        body = ('poll_ms = 100; telemetry = ( %s ); attributes = ( %s, %s );'
                % (tag("v", "holding", 0, "uint16"), tag("serial", "holding", 100, "string", count=4),
                   tag("fw", "holding", 108, "uint16")))
        emu, fm, proc = self.setup_gateway([("dev", 1, body)])
        fm.set(1, "holding", 100, *regs("8s", b"SN-42\x00\x00\x00"))
        fm.set(1, "holding", 108, 3)
        emu.wait(lambda: emu.attributes("dev").get("fw") == 3, 10)
        self.assertEqual(emu.attributes("dev")["serial"], "SN-42")
        self.assertEqual(emu.attributes("dev")["tbgw_unit_id"], 1)
        n = len(emu.messages("dev", "v1/devices/me/attributes"))
        time.sleep(0.5)
        self.assertEqual(len(emu.messages("dev", "v1/devices/me/attributes")), n)  # no change, no message
        fm.set(1, "holding", 108, 4)
        emu.wait(lambda: emu.attributes("dev").get("fw") == 4, 5)
        # After a reconnect, the whole set is published again.
        emu.drop("dev")
        emu.wait(lambda: emu.connect_count("dev") >= 2, 10)
        emu.wait(lambda: len(emu.messages("dev", "v1/devices/me/attributes")) >= n + 3, 10)
        last = emu.messages("dev", "v1/devices/me/attributes")[-1].json()
        self.assertEqual(last, {"serial": "SN-42", "fw": 4})
        self.stop_tbgw(proc)

    def test_overrun_is_counted_and_logged_once(self):
        t = "poll_ms = 50; telemetry = ( %s );" % tag("v", "holding", 0, "uint16")
        emu, fm, proc = self.setup_gateway([("dev", 1, t)])
        fm.fault("delay", 120)
        emu.wait(lambda: "polling takes longer than poll_ms=50" in proc.output(), 10)
        time.sleep(0.5)
        self.assertEqual(proc.output().count("polling takes longer"), 1)
        st = json.loads(self.tbgwctl("status", "--json").stdout)
        self.assertGreater(st["devices"][0]["overruns"], 0)
        self.stop_tbgw(proc)


if __name__ == "__main__":
    harness.main()
