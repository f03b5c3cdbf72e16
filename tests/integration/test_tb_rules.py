#!/usr/bin/python3
"""What a real ThingsBoard does with tbgw's data, against the emulator playing it from its
source: number typing (JsonConverter), transport rate limits per message kind and per
tenant (DefaultTransportService, DefaultTransportRateLimitService), and a device profile
whose payload type makes ThingsBoard close the session after every upload."""
import json
import struct
import time

import harness

TELEMETRY = "v1/devices/me/telemetry"


def as_float(v):
    return struct.unpack(">f", struct.pack(">f", v))[0]


def float_words(v):
    hi, lo = struct.unpack(">HH", struct.pack(">f", v))
    return hi, lo


class Rules(harness.TestCase):
    def start(self, emu, devices, edge="", poll_ms=100, name="tbgw", commit_ms=None):
        """devices: (name, unit, telemetry-text, attributes-text)."""
        self.fm = getattr(self, "fm", None) or self.fake_modbus("--tcp", "0")
        devs = ", ".join('{ name = "%s"; unit_id = %d; token = "T-%s"; poll_ms = %d; '
                         'telemetry = ( %s ); %s }'
                         % (n, u, n, poll_ms, tel, ("attributes = ( %s );" % attrs) if attrs else "")
                         for n, u, tel, attrs in devices)
        bus = ('{ name = "plc"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d; '
               'timeout_ms = 300; devices = ( %s ); }' % (self.fm.port, devs))
        cfg = self.config(emu.port, bus, edge=edge)
        if commit_ms:
            cfg = cfg.replace("commit_interval_ms = 200", "commit_interval_ms = %d" % commit_ms)
        self.proc, _, _ = self.start_tbgw(cfg, name=name)
        return self.proc

    # ---- numbers ----

    def test_number_types_stay_double(self):
        # A float32 register that holds 1e6 was written "1.0e+06", which ThingsBoard
        # stores as LONG: the key switched type under a chart.
        emu = self.emulator(devices=[("a", "T-a")])
        self.fm = self.fake_modbus("--tcp", "0")
        self.fm.set(1, "holding", 0, *float_words(21.5))
        self.fm.set(1, "holding", 2, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF)  # uint64 max
        self.fm.set(1, "holding", 6, 1000)
        self.start(emu, [("a", 1,
                          '{ key = "f"; table = "holding"; address = 0; type = "float32"; }, '
                          '{ key = "big"; table = "holding"; address = 2; type = "uint64"; }, '
                          '{ key = "scaled"; table = "holding"; address = 6; type = "uint16"; '
                          'scale = 1000.0; }, '
                          '{ key = "raw"; table = "holding"; address = 6; type = "uint16"; }',
                          None)])
        emu.wait(lambda: {"f", "big", "scaled", "raw"} <= set(emu.key_types("a")), 10)
        for v in (1e6, 3.4028234663852886e38, 1.5e-5, 1e-7, -2.5e9):
            self.fm.set(1, "holding", 0, *float_words(v))
            want = as_float(v)
            emu.wait(lambda: any(k == "f" and as_float(v2) == want
                                 for _, k, v2 in emu.telemetry("a")), 10, "f = %r" % v)
        types = emu.key_types("a")
        self.assertEqual(types["f"], "DOUBLE")
        self.assertEqual(types["scaled"], "DOUBLE")     # 1000000.0, not 1.0e+06
        self.assertEqual(types["raw"], "LONG")          # unscaled integers stay integers
        # Beyond int64: sent exactly, and ThingsBoard keeps it as a STRING.
        self.assertEqual(types["big"], "STRING")
        self.assertIn(18446744073709551615, [v for _, k, v in emu.telemetry("a") if k == "big"])
        self.assertEqual(emu.type_changes("a"), [])
        texts = b"".join(m.payload for m in emu.messages("a", TELEMETRY))
        self.assertNotIn(b"e+", texts)
        self.assertNotIn(b"e-", texts)
        self.assertIn(b'"f":1000000.0', texts)
        self.stop_tbgw(self.proc)

    # ---- rate limits ----

    def test_telemetry_does_not_count_as_messages(self):
        # ThingsBoard counts telemetry against telemetry messages and data points only. A
        # tight "messages" limit must not slow telemetry down (tbgw used to count it).
        emu = self.emulator(devices=[("a", "T-a")])
        emu.set_rate_limits(messages="4:10")
        self.start(emu, [("a", 1, '{ key = "k"; table = "holding"; address = 0; type = "uint16"; }',
                          None)])
        emu.wait(lambda: emu.connected("a"), 10)
        t0 = time.time()
        emu.wait(lambda: emu.counts("a")["telemetry_msgs"] >= 8, 8, "telemetry at full speed")
        self.assertLess(time.time() - t0, 6 * harness.SLOW)
        self.assertEqual(emu.counts("a")["rate_limited"], 0)
        self.stop_tbgw(self.proc)

    def test_attribute_posts_are_paced(self):
        # Attribute posts cost a telemetry message and their data points, like telemetry:
        # unpaced, a changing attribute and telemetry together trip the limit and
        # ThingsBoard closes the session.
        emu = self.emulator(devices=[("a", "T-a")])
        emu.set_rate_limits(telemetry_messages="4:1", telemetry_datapoints="40:1")
        self.start(emu, [("a", 1, '{ key = "k"; table = "holding"; address = 0; type = "uint16"; }',
                          '{ key = "at"; table = "holding"; address = 1; type = "uint16"; }')],
                   poll_ms=50)
        emu.wait(lambda: emu.connected("a"), 10)
        end = time.time() + 4
        i = 0
        while time.time() < end:
            i += 1
            self.fm.set(1, "holding", 0, i, i)
            time.sleep(0.05)
        emu.wait(lambda: emu.attributes("a").get("at") == i, 15, "the last attribute value")
        self.assertEqual(emu.counts("a")["rate_limited"], 0)
        self.assertEqual(emu.connect_count("a"), 1)
        self.stop_tbgw(self.proc)

    def test_tenant_limit_is_shared_by_all_devices(self):
        # Each device alone is far below its own limits; together they would exceed the
        # tenant's, which ThingsBoard checks first for every device.
        names = ["d%d" % i for i in range(4)]
        emu = self.emulator(devices=[(n, "T-" + n) for n in names])
        # Unpaced, each device sends a message per poll: 40/s together.
        emu.set_rate_limits(telemetry_messages="50:1", tenant_telemetry_messages="20:1",
                            tenant_telemetry_datapoints="200:1")
        self.start(emu, [(n, i + 1, '{ key = "k"; table = "holding"; address = 0; type = "uint16"; }',
                          None) for i, n in enumerate(names)],
                   edge='rate_limits = { tenant_telemetry_messages = "20:1"; '
                        'tenant_telemetry_datapoints = "200:1"; };', poll_ms=100, commit_ms=1000)
        self.assertIn("pacing all 4 devices together below the tenant's rate limits",
                      self.proc.output())
        t0 = int(time.time() * 1000)
        time.sleep(6)
        for n in names:
            emu.wait(lambda: [t for t, _, _ in emu.telemetry(n) if t > t0 + 4000], 15,
                     "telemetry of " + n)
        for n in names:
            self.assertEqual(emu.counts(n)["rate_limited"], 0, n)
            self.assertEqual(emu.connect_count(n), 1, n)
        self.stop_tbgw(self.proc)

    def test_tenant_limits_are_checked(self):
        emu = self.emulator(devices=[("a", "T-a")])
        self.fm = self.fake_modbus("--tcp", "0")
        bus = ('{ name = "plc"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d; '
               'devices = ( { name = "a"; unit_id = 1; token = "T-a"; telemetry = ( { key = "k"; '
               'table = "holding"; address = 0; type = "uint16"; } ); } ); }' % self.fm.port)
        cfg = self.write("bad.conf", self.config(
            emu.port, bus, edge='rate_limits = { tenant_messages = "100"; };'))
        r = self.run_check(cfg)
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertRegex(r.stderr, r"bad\.conf:\d+: edge\.rate_limits\.tenant_messages: ")

    def run_check(self, cfg):
        import subprocess
        return subprocess.run([harness.TBGW, "-c", cfg, "--check-config"], capture_output=True,
                              text=True, timeout=30)

    def test_keepalive_range(self):
        emu_port = harness.free_port()
        for v, ok in ((5, False), (10, True), (300, True), (600, False)):
            cfg = self.write("k%d.conf" % v, self.config(
                emu_port, "", edge="keepalive_s = %d;" % v))
            r = self.run_check(cfg)
            if ok:
                self.assertNotIn("keepalive_s", r.stderr)
            else:
                self.assertEqual(r.returncode, 78, r.stderr)
                self.assertRegex(r.stderr, r"k%d\.conf:2: edge\.keepalive_s: must be between 10 "
                                 r"and 300 \(got %d\): ThingsBoard closes a session that is idle"
                                 % (v, v))

    # ---- a device profile that refuses JSON ----

    def test_protobuf_profile_is_reported_and_backed_off(self):
        emu = self.emulator()
        emu.add_device("pb", token="T-pb", protobuf=True)
        emu.add_device("ok", token="T-ok")
        self.start(emu, [("pb", 1, '{ key = "k"; table = "holding"; address = 0; type = "uint16"; }',
                          None),
                         ("ok", 2, '{ key = "k"; table = "holding"; address = 0; type = "uint16"; }',
                          None)])
        text = ("ThingsBoard closed the session after telemetry: the device profile must use "
                "JSON payloads")
        emu.wait(lambda: text in self.proc.output(), 20, "the log line")
        self.assertEqual(self.proc.output().count(text), 1)
        st = json.loads(self.tbgwctl("status", "--json").stdout)
        dev = [d for d in st["devices"] if d["name"] == "pb"][0]
        self.assertEqual(dev.get("edge_reason"), text)
        self.assertIn(text, self.tbgwctl("status").stdout)
        # The one-line health (systemd STATUS=, the summary) says it too.
        self.assertIn("a device profile refuses JSON payloads", st["gateway"]["summary"])
        # Backoff, not a tight loop: few sessions in 10 s.
        n = emu.connect_count("pb")
        time.sleep(10)
        self.assertLessEqual(emu.connect_count("pb") - n, 5)
        # Nothing was blamed on the data, and the other device is fine.
        self.assertEqual(st["gateway"]["spool"]["quarantined"], 0)
        self.assertGreater(len(emu.telemetry("ok")), 5)
        self.assertEqual(emu.connect_count("ok"), 1)
        self.stop_tbgw(self.proc)


if __name__ == "__main__":
    harness.main()
