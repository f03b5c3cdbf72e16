#!/usr/bin/python3
"""Downlink: shared attributes and server-side RPC reaching the hardware (and only what the
configuration declares), attribute sync at connect, every RPC outcome, duplicate ids,
malformed messages of every kind, and the clock check through client-side RPC getTime."""
import json
import struct
import time

import harness

WRITES = """
writes = (
  { key = "sp";     table = "holding"; address = 20; type = "int16"; scale = 0.1; },
  { key = "big";    table = "holding"; address = 22; type = "uint32"; word_order = "little"; },
  { key = "f";      table = "holding"; address = 24; type = "float32"; byte_order = "little"; },
  { key = "d";      table = "holding"; address = 26; type = "float64"; },
  { key = "i64";    table = "holding"; address = 30; type = "int64"; },
  { key = "pump";   table = "coil";    address = 1;  type = "bool"; },
  { key = "flag";   table = "holding"; address = 40; type = "bit"; bit = 3; },
  { key = "label";  table = "holding"; address = 50; type = "string"; count = 4; },
  { key = "offs";   table = "holding"; address = 60; type = "uint16"; scale = 2; offset = 100; }
);
rpc = (
  { method = "setValve";    access = "write"; table = "coil";    address = 5;  type = "bool"; },
  { method = "getSetpoint"; access = "read";  table = "holding"; address = 20; type = "int16"; scale = 0.1; },
  { method = "getMissing";  access = "read";  table = "holding"; address = 90; type = "uint16"; }
);
"""


def words(fmt, v):
    b = struct.pack(">" + fmt, v)
    return [int.from_bytes(b[i:i + 2], "big") for i in range(0, len(b), 2)]


class Downlink(harness.TestCase):
    def start(self, raw=False, extra_dev="", env=None, prepare=None, emu_kw=None):
        self.emu = self.emulator(devices=[("dev", "TD")], **(emu_kw or {}))
        self.fm = self.fake_modbus("--tcp", "0")
        if prepare:
            prepare(self.emu, self.fm)
        bus = ('{ name = "plc"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d; timeout_ms = 300; '
               'devices = ( { name = "dev"; unit_id = 1; token = "TD"; poll_ms = 200; allow_raw_rpc = %s; '
               'telemetry = ( { key = "sp_read"; table = "holding"; address = 20; type = "int16"; '
               'scale = 0.1; report = "change"; } ); %s %s } ); }'
               % (self.fm.port, "true" if raw else "false", WRITES, extra_dev))
        self.proc, _, _ = self.start_tbgw(self.config(self.emu.port, bus), env=env)
        self.emu.wait(lambda: "v1/devices/me/rpc/request/+" in self.emu.subscriptions("dev"), 10,
                      "the RPC subscription")
        # The attribute sync at connect answers with the shared attributes of that moment:
        # a test that pushes before it was asked would see its writes done twice.
        self.emu.wait(lambda: self.emu.messages("dev", "v1/devices/me/attributes/request/"), 10,
                      "the attribute sync")
        return self.emu, self.fm, self.proc

    def call(self, method, params, raw_body=None):
        rid = self.emu.rpc("dev", method, params) if raw_body is None else self.emu.rpc("dev", method, raw=raw_body)
        return self.emu.rpc_response("dev", rid, 10)

    def test_shared_attribute_writes_every_type(self):
        emu, fm, proc = self.start()
        emu.set_shared("dev", {"sp": 22.5, "big": 4000000000, "f": 1.5, "d": -2.25,
                               "i64": -9000000000000000000, "pump": True, "flag": True,
                               "label": "AB", "offs": 300})
        harness.wait_until(lambda: fm.get(1, "holding", 60) == [100], 10, "the last write")
        self.assertEqual(fm.get(1, "holding", 20), [225])
        self.assertEqual(fm.get(1, "holding", 22, 2), list(reversed(words("I", 4000000000))))
        self.assertEqual(fm.get(1, "holding", 24, 2),
                         [((w & 0xFF) << 8) | (w >> 8) for w in words("f", 1.5)])
        self.assertEqual(fm.get(1, "holding", 26, 4), words("d", -2.25))
        self.assertEqual(fm.get(1, "holding", 30, 4), words("q", -9000000000000000000))
        self.assertEqual(fm.get(1, "coil", 1), [1])
        self.assertEqual(fm.get(1, "holding", 40), [8])
        self.assertEqual(fm.get(1, "holding", 50, 4), [0x4142, 0, 0, 0])
        # The write is read back on the next cycle even under report = "change".
        emu.wait(lambda: 22.5 in [v for _, k, v in emu.telemetry("dev") if k == "sp_read"], 5)
        # A bit write keeps the register's other bits.
        fm.set(1, "holding", 40, 0b10000001)
        emu.set_shared("dev", {"flag": False})
        emu.set_shared("dev", {"flag": True})
        harness.wait_until(lambda: fm.get(1, "holding", 40) == [0b10001001], 5, "bit write")
        self.stop_tbgw(proc)

    def test_refusals_never_write(self):
        emu, fm, proc = self.start()
        fm.reset()
        emu.set_shared("dev", {"sp": 99999.0})          # int16 after scale: out of range
        emu.set_shared("dev", {"pump": "maybe"})        # not a boolean
        emu.set_shared("dev", {"label": "too long!"})   # more than 8 characters
        emu.set_shared("dev", {"undeclared": 5})        # not a declared write
        emu.delete_shared("dev", ["sp"])                # a deletion writes nothing
        emu.push_raw("dev", "v1/devices/me/attributes", b"{not json")
        emu.push_raw("dev", "v1/devices/me/attributes", b"[1,2]")
        emu.set_shared("dev", {"sp": 1.0})              # a good one after them all
        harness.wait_until(lambda: fm.get(1, "holding", 20) == [10], 5, "the good write")
        writes = [e for e in fm.log() if e[1] in (5, 6, 15, 16)]
        self.assertEqual(writes, [(1, 6, 20, 1)])
        out = proc.output()
        self.assertIn("shared attribute sp = 99999.0 refused: 99999 does not fit 'sp' (int16 after "
                      "scale and offset)", out)
        self.assertIn("shared attribute pump = \"maybe\" refused", out)
        self.assertIn("ignoring a shared-attribute message that is not a JSON object", out)
        self.stop_tbgw(proc)

    def test_attribute_sync_at_connect(self):
        def prepare(emu, fm):
            emu.set_shared("dev", {"sp": 19.5, "pump": True, "other": 1})
        emu, fm, proc = self.start(prepare=prepare)
        harness.wait_until(lambda: fm.get(1, "holding", 20) == [195] and fm.get(1, "coil", 1) == [1],
                           10, "the synced values")
        req = emu.messages("dev", "v1/devices/me/attributes/request/")[0].json()
        self.assertIn("sp", req["sharedKeys"].split(","))
        self.assertIn("fw_title", req["sharedKeys"].split(","))
        # Changed while the gateway was away: written after the reconnect.
        emu.drop("dev")
        emu.set_shared("dev", {"sp": 20.5})
        harness.wait_until(lambda: fm.get(1, "holding", 20) == [205], 15, "the write after reconnect")
        self.stop_tbgw(proc)

    def test_rpc_outcomes(self):
        emu, fm, proc = self.start(raw=True)
        fm.set(1, "holding", 20, 215)
        fm.set(1, "holding", 7, 4242)
        self.assertEqual(self.call("getSetpoint", {}), {"value": 21.5})
        self.assertEqual(self.call("setValve", {"value": True}), {"ok": True})
        self.assertEqual(fm.get(1, "coil", 5), [1])
        self.assertEqual(self.call("setValve", False), {"ok": True})  # a bare value
        self.assertEqual(fm.get(1, "coil", 5), [0])
        self.assertEqual(self.call("read", {"table": "holding", "address": 7, "type": "uint16", "count": 1}),
                         {"value": 4242})
        self.assertEqual(self.call("write", {"table": "holding", "address": 8, "type": "int32", "value": -2}),
                         {"ok": True})
        self.assertEqual(fm.get(1, "holding", 8, 2), [0xFFFF, 0xFFFE])
        self.assertEqual(self.call("nosuch", {}), {"error": "unknown method 'nosuch'"})
        self.assertEqual(self.call("setValve", {"value": 3}), {"error": "'setValve' needs true or false"})
        self.assertIn("does not fit", self.call("write", {"table": "holding", "address": 8,
                                                          "type": "int16", "value": 40000})["error"])
        self.assertEqual(self.call("write", {"table": "input", "address": 8, "value": 1}),
                         {"error": "table 'input' is read-only"})
        fm.fault("exception", 1, "holding", 90, 1, 2)
        self.assertEqual(self.call("getMissing", {}), {"error": "Illegal data address"})
        fm.fault("clear")
        fm.fault("silent", 1)
        self.assertEqual(self.call("getSetpoint", {}), {"error": "the device did not answer"})
        self.stop_tbgw(proc)

    def test_raw_rpc_is_off_by_default(self):
        emu, fm, proc = self.start(raw=False)
        fm.reset()
        self.assertEqual(self.call("write", {"table": "holding", "address": 1, "value": 1}),
                         {"error": "unknown method 'write'"})
        self.assertEqual([e for e in fm.log() if e[1] == 6], [])
        self.stop_tbgw(proc)

    def test_malformed_requests_get_an_error_and_touch_nothing(self):
        emu, fm, proc = self.start(raw=True)
        fm.reset()
        bodies = [b"", b"not json", b"[]", b"{}", b'{"method": 5}', b'{"method":"setValve"',
                  b'{"method":"setValve","params":{"value":"x"}}', b"\xff\xfe\x00",
                  b'{"method":"write","params":{"table":"holding"}}',
                  b'{"method":"write","params":[1,2,3]}',
                  b'{"method":"read","params":{"table":"holding","address":-1}}',
                  b"[" * 5000]
        for b in bodies:
            with self.subTest(body=b[:40]):
                r = self.call(None, None, raw_body=b)
                self.assertIn("error", r)
        self.assertEqual([e for e in fm.log() if e[1] in (5, 6, 15, 16)], [])
        self.assertTrue(proc.alive())
        self.stop_tbgw(proc)

    def test_duplicate_request_runs_once(self):
        emu, fm, proc = self.start(raw=True)
        rid = emu.rpc("dev", "write", {"table": "holding", "address": 3, "type": "uint16", "value": 1})
        self.assertEqual(emu.rpc_response("dev", rid), {"ok": True})
        # ThingsBoard re-sends pending RPCs on resubscription with the same id; here the
        # same request arrives again after it was answered.
        fm.reset()
        emu.push_raw("dev", "v1/devices/me/rpc/request/%d" % rid,
                     json.dumps({"method": "write", "params": {"table": "holding", "address": 3,
                                                               "type": "uint16", "value": 1}}))
        emu.wait(lambda: len(emu.rpc_answers("dev", rid)) >= 2, 5)
        self.assertEqual(emu.rpc_answers("dev", rid)[1], {"ok": True})
        self.assertEqual([e for e in fm.log() if e[1] == 6], [])  # not written again
        self.stop_tbgw(proc)

    def test_a_flood_is_bounded(self):
        emu, fm, proc = self.start(raw=True)
        fm.fault("delay", 50)
        ids = [emu.rpc("dev", "getSetpoint", {}) for _ in range(60)]
        answers = [emu.rpc_response("dev", i, 20) for i in ids]
        busy = [a for a in answers if "busy" in a.get("error", "")]
        ok = [a for a in answers if "value" in a]
        self.assertTrue(busy and ok, answers[:5])
        self.assertEqual(len(busy) + len(ok) + len([a for a in answers if "timeout" in a.get("error", "")]), 60)
        self.stop_tbgw(proc)

    def test_clock_correction_via_gettime(self):
        skew_ms = 3600 * 1000  # the Edge is an hour ahead of this "unsynchronised" clock

        def prepare(emu, fm):
            emu.on_client_rpc(lambda dev, method, params:
                              {"time": int(time.time() * 1000) + skew_ms} if method == "getTime" else None)
        emu, fm, proc = self.start(env={"TBGW_CLOCK": "unsynced"}, prepare=prepare)
        emu.wait(lambda: "correcting sample timestamps" in proc.output(), 10)
        emu.wait(lambda: len(emu.telemetry("dev")) >= 1, 10)
        n = len(emu.messages("dev", "v1/devices/me/telemetry"))
        emu.set_shared("dev", {"sp": 3.0})  # a change, so that a new sample is reported
        emu.wait(lambda: len(emu.messages("dev", "v1/devices/me/telemetry")) > n, 10)
        ts = emu.messages("dev", "v1/devices/me/telemetry")[-1].json()[0]["ts"]
        self.assertAlmostEqual(ts, time.time() * 1000 + skew_ms, delta=5000)
        st = json.loads(self.tbgwctl("status", "--json").stdout)
        self.assertAlmostEqual(st["gateway"]["clock_offset_ms"], skew_ms, delta=2000)
        self.stop_tbgw(proc)


if __name__ == "__main__":
    harness.main()
