#!/usr/bin/python3
"""Gateway mode, downlink: shared attributes, server RPC, the attribute sync at connect and
claims for devices carried by one gateway session (v1/gateway/*), reaching the same register
writes and answers as in device mode; malformed gateway messages and downlinks for devices
the gateway does not carry write nothing; the clock check asks over the gateway's own
session; OTA topics never appear."""
import json
import signal
import time

import harness

WRITES = """
writes = ( { key = "sp"; table = "holding"; address = 20; type = "int16"; scale = 0.1; },
           { key = "pump"; table = "coil"; address = 1; type = "bool"; } );
rpc = ( { method = "setValve"; access = "write"; table = "coil"; address = 5; type = "bool"; },
        { method = "getSetpoint"; access = "read"; table = "holding"; address = 20; type = "int16"; scale = 0.1; } );
"""

RPC = "v1/gateway/rpc"
REQUEST = "v1/gateway/attributes/request"
WRITE_FUNCTIONS = (5, 6, 15, 16)


class GatewayDownlink(harness.TestCase):
    def start(self, env=None, prepare=None, announce_acked=True):
        """A gateway ("gw") carrying m1 (unit 1, raw RPC allowed) and m2 (unit 2) of one
        Modbus TCP bus. announce_acked False: return at once (prepare holds the PUBACKs)."""
        self.emu = self.emulator(devices=[("gw", "GW")])
        self.emu.set_gateway("gw")
        self.fm = self.fake_modbus("--tcp", "0")
        if prepare:
            prepare(self.emu, self.fm)
        dev = ('{ name = "%s"; type = "meter"; unit_id = %d; poll_ms = 200; allow_raw_rpc = %s; '
               'telemetry = ( { key = "sp_read"; table = "holding"; address = 20; type = "int16"; '
               'scale = 0.1; report = "change"; } ); ' + WRITES + ' }')
        bus = ('{ name = "plc"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d; '
               'timeout_ms = 300; devices = ( %s, %s ); }'
               % (self.fm.port, dev % ("m1", 1, "true"),
                  dev % ("m2", 2, "false")))
        cfg = self.config(self.emu.port, bus, edge='gateway = { token = "GW"; };')
        self.proc, _, _ = self.start_tbgw(cfg, env=env)
        emu = self.emu
        if not announce_acked:
            return emu, self.fm, self.proc
        emu.wait(lambda: set(emu.gateway_connected("gw")) == {"m1", "m2"}, 15,
                 "both devices announced")
        # Pushes before the sync at connect was answered would be written twice.
        emu.wait(lambda: {r.get("device") for r in self.requests()} >= {"m1", "m2"}, 10,
                 "the attribute sync of both devices")
        return emu, self.fm, self.proc

    def requests(self):
        return [m.json() for m in self.emu.messages("gw", REQUEST)]

    def replies(self):
        return [m.json() for m in self.emu.messages("gw", RPC)]

    def hw_writes(self):
        return [e for e in self.fm.log() if e[1] in WRITE_FUNCTIONS]

    def call(self, device, method, params):
        rid = self.emu.rpc(device, method, params)
        return self.emu.rpc_response(device, rid, 10)

    def reply_to(self, device, rid, timeout=10):
        """The data of the gateway's reply to RPC rid of device, pushed by push_raw."""
        def found():
            return [r for r in self.replies() if r.get("device") == device and r.get("id") == rid]
        self.emu.wait(found, timeout, "the reply to %s's RPC %d" % (device, rid))
        return found()[0]["data"]

    def test_shared_attributes_become_register_writes(self):
        emu, fm, proc = self.start()
        fm.reset()
        emu.set_shared("m1", {"sp": 22.5, "pump": True})
        emu.set_shared("m2", {"sp": -1.5})
        harness.wait_until(lambda: fm.get(1, "holding", 20) == [225] and
                           fm.get(1, "coil", 1) == [1] and
                           fm.get(2, "holding", 20) == [0x10000 - 15], 10, "the writes")
        # Each device's own unit, nothing else.
        self.assertEqual(sorted(self.hw_writes()), [(1, 5, 1, 1), (1, 6, 20, 1), (2, 6, 20, 1)])
        fm.reset()
        emu.set_shared("m1", {"sp": 99999.0})    # does not fit int16: refused
        emu.set_shared("m1", {"undeclared": 1})  # not a declared write
        emu.delete_shared("m1", ["sp"])          # a deletion writes nothing
        emu.set_shared("m2", {"sp": 1.0})        # a good one after them
        harness.wait_until(lambda: fm.get(2, "holding", 20) == [10], 10, "the good write")
        self.assertEqual(self.hw_writes(), [(2, 6, 20, 1)])
        self.assertIn("device 'm1': shared attribute sp = 99999.0 refused", proc.output())
        self.stop_tbgw(proc)

    def test_attribute_sync_at_connect(self):
        def prepare(emu, fm):
            # Known to ThingsBoard before the gateway connects: m1 exists with its values.
            emu.add_device("m1", token="M1")
            emu.set_shared("m1", {"sp": 19.5, "pump": True, "other": 1})
        emu, fm, proc = self.start(prepare=prepare)
        harness.wait_until(lambda: fm.get(1, "holding", 20) == [195] and fm.get(1, "coil", 1) == [1],
                           10, "the synced values")
        req = [r for r in self.requests() if r["device"] == "m1"][0]
        # The gateway API's form: one scope, keys as an array.
        self.assertIs(req["client"], False)
        self.assertIn("sp", req["keys"])
        self.assertIn("pump", req["keys"])
        self.assertNotIn("sharedKeys", req)
        # Changed while the gateway was away: written after the reconnect and announcement.
        n = len(self.requests())
        emu.drop("gw")
        emu.set_shared("m1", {"sp": 20.5})
        emu.wait(lambda: len(self.requests()) >= n + 2, 20, "the sync after the reconnect")
        harness.wait_until(lambda: fm.get(1, "holding", 20) == [205], 15, "the write after reconnect")
        self.stop_tbgw(proc)

    def test_rpc_outcomes(self):
        emu, fm, proc = self.start()
        fm.set(1, "holding", 20, 215)
        fm.set(1, "holding", 7, 4242)
        self.assertEqual(self.call("m1", "getSetpoint", {}), {"value": 21.5})
        self.assertEqual(self.call("m1", "setValve", {"value": True}), {"ok": True})
        self.assertEqual(fm.get(1, "coil", 5), [1])
        self.assertEqual(self.call("m1", "read", {"table": "holding", "address": 7, "type": "uint16"}),
                         {"value": 4242})
        self.assertEqual(self.call("m1", "write", {"table": "holding", "address": 8, "type": "int32",
                                                   "value": -2}), {"ok": True})
        self.assertEqual(fm.get(1, "holding", 8, 2), [0xFFFF, 0xFFFE])
        # m2 does not allow raw RPC: its own configuration decides.
        fm.reset()
        self.assertEqual(self.call("m2", "write", {"table": "holding", "address": 8, "value": 1}),
                         {"error": "unknown method 'write'"})
        self.assertEqual(self.call("m1", "nosuch", {}), {"error": "unknown method 'nosuch'"})
        self.assertEqual(self.call("m1", "setValve", {"value": 3}),
                         {"error": "'setValve' needs true or false"})
        self.assertIn("does not fit", self.call("m1", "write", {"table": "holding", "address": 8,
                                                                "type": "int16", "value": 40000})["error"])
        self.assertEqual(self.hw_writes(), [])
        fm.fault("silent", 1)
        self.assertEqual(self.call("m1", "getSetpoint", {}), {"error": "the device did not answer"})
        self.assertTrue(proc.alive())
        self.stop_tbgw(proc)

    def test_duplicate_request_runs_once(self):
        emu, fm, proc = self.start()
        params = {"table": "holding", "address": 3, "type": "uint16", "value": 1}
        rid = emu.rpc("m1", "write", params)
        self.assertEqual(emu.rpc_response("m1", rid), {"ok": True})
        # ThingsBoard re-sends a pending RPC with the same id when the device is connected
        # again; here the same request arrives after it was answered.
        fm.reset()
        emu.push_raw("gw", RPC, json.dumps({"device": "m1", "data": {"id": rid, "method": "write",
                                                                     "params": params}}))
        emu.wait(lambda: len(emu.rpc_answers("m1", rid)) >= 2, 10)
        self.assertEqual(emu.rpc_answers("m1", rid)[1], {"ok": True})
        self.assertEqual([e for e in fm.log() if e[1] == 6], [])  # not written again
        # The same id for the other device is another request.
        emu.push_raw("gw", RPC, json.dumps({"device": "m2", "data": {"id": rid, "method": "setValve",
                                                                     "params": True}}))
        harness.wait_until(lambda: fm.get(2, "coil", 5) == [1], 10, "m2's write")
        self.stop_tbgw(proc)

    def test_malformed_gateway_messages_write_nothing(self):
        emu, fm, proc = self.start()
        fm.reset()
        # Device and id readable: an error reply for that device and id.
        for i, data in enumerate([{"method": 5}, {"params": {}}, {"method": "setValve", "params": {"value": "x"}},
                                  {"method": "write", "params": [1, 2, 3]},
                                  {"method": "read", "params": {"table": "holding", "address": -1}}]):
            rid = 100 + i
            emu.push_raw("gw", RPC, json.dumps({"device": "m1", "data": dict(data, id=rid)}))
            with self.subTest(data=data):
                self.assertIn("error", self.reply_to("m1", rid))
        # Not even that: logged, no reply, no write, no crash.
        n = len(self.replies())
        for body in [b"", b"not json", b"[]", b"{}", b'{"device":"m1"}', b'{"device":5,"data":{"id":1}}',
                     b'{"device":"m1","data":{"method":"setValve","params":true}}',
                     b'{"device":"m1","data":[1]}', b"\xff\xfe\x00", b"[" * 5000,
                     # Not a name ThingsBoard has; echoing it would close the session.
                     b'{"device":"m\xff","data":{"id":1,"method":"setValve","params":true}}']:
            emu.push_raw("gw", RPC, body)
        for body in [b"not json", b"{}", b'{"device":"m1"}', b'{"device":"m1","data":[1]}',
                     b'{"data":{"sp":1}}', b'{"device":"m1","data":"sp"}']:
            emu.push_raw("gw", "v1/gateway/attributes", body)
        for body in [b"x", b'{"device":"m1","value":5}', b'{"device":"m1","id":999999,"value":5}']:
            emu.push_raw("gw", "v1/gateway/attributes/response", body)
        # Still serving, in order after the bad ones.
        emu.set_shared("m1", {"sp": 2.0})
        harness.wait_until(lambda: fm.get(1, "holding", 20) == [20], 10, "the good write")
        self.assertEqual(self.call("m1", "getSetpoint", {}), {"value": 2.0})
        self.assertEqual(len(self.replies()), n + 1)
        self.assertEqual(self.hw_writes(), [(1, 6, 20, 1)])
        out = proc.output()
        self.assertIn("gateway: ignoring an RPC request that names no device", out)
        self.assertIn("gateway: ignoring an RPC request for a device name that is not UTF-8", out)
        self.assertEqual(emu.connect_count("gw"), 1)  # the session was never dropped
        self.assertIn("gateway: ignoring a shared-attribute message", out)
        self.assertTrue(proc.alive())
        self.stop_tbgw(proc)

    def test_downlinks_for_devices_not_carried(self):
        emu, fm, proc = self.start()
        fm.reset()
        emu.push_raw("gw", RPC, json.dumps({"device": "ghost", "data": {"id": 7, "method": "setValve",
                                                                        "params": True}}))
        self.assertEqual(self.reply_to("ghost", 7), {"error": "no device 'ghost' on this gateway"})
        emu.push_raw("gw", "v1/gateway/attributes", json.dumps({"device": "ghost", "data": {"sp": 1}}))
        # Names are exact: no prefix, no case folding.
        emu.push_raw("gw", RPC, json.dumps({"device": "M1", "data": {"id": 8, "method": "setValve",
                                                                     "params": True}}))
        self.assertEqual(self.reply_to("M1", 8), {"error": "no device 'M1' on this gateway"})
        emu.set_shared("m2", {"pump": True})
        harness.wait_until(lambda: fm.get(2, "coil", 1) == [1], 10, "m2's write")
        self.assertEqual(self.hw_writes(), [(2, 5, 1, 1)])
        self.assertIn("no device 'ghost' on this gateway", proc.output())
        self.stop_tbgw(proc)

    def test_downlinks_before_the_announcement_is_acknowledged(self):
        def prepare(emu, fm):
            emu.hold_puback("gw")   # ThingsBoard has not confirmed v1/gateway/connect yet
        emu, fm, proc = self.start(prepare=prepare, announce_acked=False)
        # ThingsBoard knows the devices, tbgw does not yet count them as announced.
        emu.wait(lambda: set(emu.gateway_connected("gw")) == {"m1", "m2"}, 15, "the announcements")
        fm.reset()
        emu.push_raw("gw", RPC, json.dumps({"device": "m1", "data": {"id": 5, "method": "setValve",
                                                                     "params": True}}))
        self.assertEqual(self.reply_to("m1", 5),
                         {"error": "device 'm1' is not connected through this gateway yet"})
        emu.push_raw("gw", "v1/gateway/attributes", json.dumps({"device": "m1", "data": {"sp": 1.0}}))
        emu.wait(lambda: "ignoring shared attributes: device 'm1' is not connected" in proc.output(),
                 10)
        self.assertEqual(self.hw_writes(), [])
        # Confirmed: served from then on.
        emu.hold_puback("gw", False)
        emu.wait(lambda: {r.get("device") for r in self.requests()} >= {"m1"}, 15, "m1's sync")
        self.assertEqual(self.call("m1", "setValve", {"value": True}), {"ok": True})
        self.assertEqual(fm.get(1, "coil", 5), [1])
        self.stop_tbgw(proc)

    def test_the_sync_at_connect_survives_a_reload(self):
        """A reload right after start, while the sync at connect is unanswered or still
        waiting for room under the gateway's limits: the kept session asks again, and the
        setpoints changed while tbgw was away still reach the hardware."""
        def prepare(emu, fm):
            emu.add_device("m1", token="M1")  # known to ThingsBoard already
            emu.add_device("m2", token="M2")
            emu.set_shared("m1", {"sp": 19.5})
            emu.set_shared("m2", {"sp": 18.5})
            emu.set_gateway_rate_limits(messages="9:8")
        emu, fm, proc = self.start(prepare=prepare, announce_acked=False)
        time.sleep(0.4)
        cfg = self.path("tbgw.conf")
        with open(cfg) as f:
            text = f.read()
        m3 = ('{ name = "m3"; type = "meter"; unit_id = 3; poll_ms = 200; telemetry = ( '
              '{ key = "x"; table = "holding"; address = 20; type = "int16"; } ); }, {')
        with open(cfg, "w") as f:
            f.write(text.replace("devices = ( {", "devices = ( " + m3, 1))
        proc.kill(signal.SIGHUP)
        harness.wait_until(lambda: fm.get(1, "holding", 20) == [195] and
                           fm.get(2, "holding", 20) == [185], 30, "both setpoints written")
        self.assertEqual(emu.connect_count("gw"), 1)
        self.stop_tbgw(proc)

    def test_claim(self):
        emu, fm, proc = self.start()
        r = self.tbgwctl("claim", "m2", "--secret", "abc", "--duration-ms", "60000")
        self.assertEqual(r.returncode, 0, r.stderr)
        emu.wait(lambda: emu.claims("m2") == [("abc", 60000)], 10)
        body = emu.messages("gw", "v1/gateway/claim")[0].json()
        self.assertEqual(body, {"m2": {"secretKey": "abc", "durationMs": 60000}})
        self.assertEqual(emu.claims("m1"), [])
        self.assertEqual(emu.messages("m2", "v1/devices/me/claim"), [])
        self.stop_tbgw(proc)

    def test_clock_check_over_the_gateway_session(self):
        skew_ms = 3600 * 1000
        asked = []

        def prepare(emu, fm):
            def answer(dev, method, params):
                if method != "getTime":
                    return None
                asked.append(dev)
                return {"time": int(time.time() * 1000) + skew_ms}
            emu.on_client_rpc(answer)
        emu, fm, proc = self.start(env={"TBGW_CLOCK": "unsynced"}, prepare=prepare)
        emu.wait(lambda: "correcting sample timestamps" in proc.output(), 15)
        self.assertEqual(set(asked), {"gw"})
        st = json.loads(self.tbgwctl("status", "--json").stdout)
        self.assertAlmostEqual(st["gateway"]["clock_offset_ms"], skew_ms, delta=2000)
        self.stop_tbgw(proc)

    def test_no_ota_topics(self):
        emu, fm, proc = self.start()
        # An assigned package reaches the device as shared attributes; the gateway API has
        # no OTA, so it is reported failed and nothing is fetched.
        emu.set_shared("m1", {"fw_title": "t", "fw_version": "1", "fw_size": 4, "fw_checksum": "00",
                              "fw_checksum_algorithm": "SHA256"})
        emu.wait(lambda: any(k == "fw_state" and v == "FAILED" for _, k, v in emu.telemetry("m1")),
                 10, "fw_state FAILED")
        self.assertIn(("fw_error", "ThingsBoard's gateway API carries no OTA updates (tbgw runs in "
                                   "gateway mode)"),
                      [(k, v) for _, k, v in emu.telemetry("m1")])
        self.assertEqual([m.topic for m in emu.messages("gw") if m.topic.startswith("v2/")],
                         [])
        self.assertNotIn("v2/fw/response/+", emu.subscriptions("gw"))
        self.stop_tbgw(proc)


if __name__ == "__main__":
    harness.main()
