#!/usr/bin/python3
"""tbgwctl against a running daemon: status (table and JSON), read and write through the
bus thread, claim, reload (and the problems of a refused file), refusal of peers that are
not root or in group tbgw; and the health telemetry every device reports."""
import json
import os
import pwd
import shutil

import harness

DEVICE = """
{ name = "boiler"; unit_id = 1; token = "TB"; poll_ms = 200;
  telemetry = ( { key = "temp"; table = "input"; address = 0; type = "int16"; scale = 0.1; } );
  writes = ( { key = "sp"; table = "holding"; address = 20; type = "uint16"; } );
}"""


class Control(harness.TestCase):
    def start(self, health=0):
        self.emu = self.emulator(devices=[("boiler", "TB")])
        self.fm = self.fake_modbus("--tcp", "0")
        self.fm.set(1, "input", 0, 215)
        self.bus = ('{ name = "plc"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d; '
                    'timeout_ms = 300; devices = ( %s ); }' % (self.fm.port, DEVICE))
        cfg = self.config(self.emu.port, self.bus).replace("interval_s = 0", "interval_s = %d" % health)
        self.proc, _, self.cfgpath = self.start_tbgw(cfg)
        self.emu.wait_connected("boiler")

    def test_status(self):
        self.start()
        self.emu.wait(lambda: self.emu.telemetry("boiler"), 10)
        r = self.tbgwctl("status")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"edge 127\.0\.0\.1:\d+: 1/1 devices connected")
        self.assertRegex(r.stdout, r"\nplc +modbus-tcp +connected")
        self.assertRegex(r.stdout, r"\nboiler +plc +connected +active")
        st = json.loads(self.tbgwctl("status", "--json").stdout)
        self.assertEqual(st["gateway"]["version"], "0.1.0")
        self.assertEqual(st["buses"][0]["name"], "plc")
        dev = st["devices"][0]
        self.assertEqual((dev["name"], dev["edge"], dev["polling"]), ("boiler", "connected", "active"))
        self.assertGreater(dev["polls"], 0)
        self.stop_tbgw(self.proc)

    def test_read_and_write(self):
        self.start()
        r = self.tbgwctl("read", "boiler", "temp")
        self.assertEqual((r.returncode, r.stdout), (0, "21.5\n"), r.stderr)
        r = self.tbgwctl("write", "boiler", "sp", "300")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.fm.get(1, "holding", 20), [300])
        r = self.tbgwctl("write", "boiler", "temp", "1")
        self.assertEqual(r.returncode, 1)
        self.assertIn("device 'boiler' declares no write 'temp'", r.stderr)
        r = self.tbgwctl("write", "boiler", "sp", "-5")
        self.assertEqual(r.returncode, 1)
        self.assertIn("does not fit", r.stderr)
        r = self.tbgwctl("read", "nobody", "x")
        self.assertEqual((r.returncode, r.stderr), (1, "tbgwctl: no device 'nobody'\n"))
        self.stop_tbgw(self.proc)

    def test_claim(self):
        self.start()
        # A claim needs the device's session: READY=1 does not wait for the Edge.
        harness.wait_until(lambda: json.loads(self.tbgwctl("status", "--json").stdout)
                           ["devices"][0]["edge"] == "connected", 10, "the session")
        r = self.tbgwctl("claim", "boiler", "--secret", "abc", "--duration-ms", "60000")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.emu.wait(lambda: self.emu.claims("boiler") == [("abc", 60000)], 5)
        self.stop_tbgw(self.proc)

    def test_reload(self):
        self.start()
        r = self.tbgwctl("reload")
        self.assertEqual((r.returncode, r.stdout), (0, "configuration reloaded\n"), r.stderr)
        with open(self.cfgpath, "a") as f:
            f.write("\nbogus = 1;\n")
        r = self.tbgwctl("reload")
        self.assertEqual(r.returncode, 1)
        self.assertIn("the configuration was refused; still running with the previous one", r.stderr)
        self.assertRegex(r.stderr, r"tbgw\.conf:\d+: bogus: unknown setting 'bogus'")
        self.assertTrue(self.proc.alive())
        self.assertEqual(self.tbgwctl("read", "boiler", "temp").stdout, "21.5\n")
        self.stop_tbgw(self.proc)

    def test_peers_that_are_not_allowed(self):
        harness.need_tool("setpriv")
        try:
            pwd.getpwnam("nobody")
        except KeyError:
            harness.skip_unless(False, "no user 'nobody'")
        self.start()
        os.chmod(self.tmp, 0o755)
        # The socket's mode keeps others out...
        r = self.tbgwctl("status", user="nobody")
        self.assertEqual(r.returncode, 77, r.stderr)
        # ...and the daemon checks the peer itself too, should the mode be too wide.
        os.chmod(self.path("control.sock"), 0o666)
        r = self.tbgwctl("status", user="nobody")
        self.assertEqual(r.returncode, 77, r.stderr)
        self.assertIn("permission denied", r.stderr)
        self.assertIn("refused a connection from uid", self.proc.output())
        self.stop_tbgw(self.proc)

    def test_no_daemon(self):
        r = self.tbgwctl("status")
        self.assertEqual(r.returncode, 69)
        self.assertIn("is tbgw running?", r.stderr)
        r = harness.subprocess.run([harness.TBGWCTL, "frobnicate"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 64)

    def test_health_telemetry(self):
        self.start(health=1)
        keys = ("tbgw_poll_success_ratio", "tbgw_polls", "tbgw_poll_failures", "tbgw_latency_ms",
                "tbgw_last_error", "tbgw_active", "tbgw_spool_backlog", "tbgw_invalid_values")
        self.emu.wait(lambda: all(k in {k for _, k, _ in self.emu.telemetry("boiler")} for k in keys), 10)
        health = {k: v for _, k, v in self.emu.telemetry("boiler") if k.startswith("tbgw_")}
        self.assertEqual(health["tbgw_poll_success_ratio"], 1.0)
        self.assertEqual(health["tbgw_last_error"], "")
        self.assertTrue(health["tbgw_active"])
        self.fm.fault("silent", 1)
        self.emu.wait(lambda: [v for _, k, v in self.emu.telemetry("boiler")
                               if k == "tbgw_last_error"][-1] == "Connection timed out", 10)
        self.stop_tbgw(self.proc)


if __name__ == "__main__":
    harness.main()
