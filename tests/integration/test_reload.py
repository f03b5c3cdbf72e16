#!/usr/bin/python3
"""Reload without restarts: a file whose buses and devices did not change (only the log
level, the control socket or the metrics address) is applied without touching the
gateway: no new MQTT CONNECT, no client attributes sent again, the bus's connection kept.
A file that changes a device rebuilds the gateway and polling goes on; a file that fails
validation changes nothing and `tbgwctl reload` prints its file:line errors."""
import time

import harness


class Reload(harness.TestCase):
    def setUp(self):
        super().setUp()
        self.emu = self.emulator(devices=[("meter", "T-meter")])
        self.fm = self.fake_modbus("--tcp", "0")
        self.fm.set(1, "input", 0, 215)
        self.fm.set(1, "holding", 100, 0x4142)

    def text(self, level="info", poll_ms=200):
        bus = ('{ name = "plc"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d; devices = ('
               ' { name = "meter"; unit_id = 1; token = "T-meter"; poll_ms = %d;'
               ' telemetry = ( { key = "t"; table = "input"; address = 0; type = "int16"; } );'
               ' attributes = ( { key = "sn"; table = "holding"; address = 100; type = "string";'
               ' count = 1; } ); } ); }' % (self.fm.port, poll_ms))
        return self.config(self.emu.port, bus).replace('level = "debug"', 'level = "%s"' % level)

    def telemetry_count(self):
        return len(self.emu.messages("meter", "v1/devices/me/telemetry"))

    def more_telemetry(self):
        n = self.telemetry_count()
        self.emu.wait(lambda: self.telemetry_count() >= n + 3, 10, "telemetry after the reload")

    def test_unchanged_devices_keep_their_session(self):
        proc, _, cfg = self.start_tbgw(self.text())
        self.emu.wait_connected("meter")
        self.emu.wait_messages("meter", "v1/devices/me/attributes", 1)
        self.more_telemetry()
        connects = self.emu.connect_count("meter")
        attrs = len(self.emu.messages("meter", "v1/devices/me/attributes"))

        with open(cfg, "w") as f:
            f.write(self.text(level="warning") + '\nmetrics = { listen = "127.0.0.1:%d"; };\n'
                    % harness.free_port())
        r = self.tbgwctl("reload")
        self.assertEqual((r.returncode, r.stdout), (0, "configuration reloaded\n"), r.stderr)
        self.more_telemetry()
        self.assertEqual(self.emu.connect_count("meter"), connects)
        self.assertEqual(len(self.emu.messages("meter", "v1/devices/me/attributes")), attrs)
        self.assertIn("no bus or device changed; every session and port kept", proc.output())

        # A refused file changes nothing either.
        with open(cfg, "a") as f:
            f.write("\nbuses = 3;\n")
        r = self.tbgwctl("reload")
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r"tbgw\.conf:\d+: ")
        self.more_telemetry()
        self.assertEqual(self.emu.connect_count("meter"), connects)

        # A changed device: the gateway is rebuilt and polling goes on at the new rate.
        with open(cfg, "w") as f:
            f.write(self.text(poll_ms=100))
        r = self.tbgwctl("reload")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.emu.wait(lambda: self.emu.connect_count("meter") > connects, 10, "a new session")
        self.more_telemetry()
        self.stop_tbgw(proc)


if __name__ == "__main__":
    harness.main()
