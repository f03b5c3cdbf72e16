#!/usr/bin/python3
"""Configuration validation end to end: `tbgw --check-config` and start-up.

Every bad-*.conf in tests/data/config must be refused with exit 78 and exactly the
`file:line: path: message` lines of its bad-*.err file; every good-*.conf and the shipped
etc/tbgw.conf.example (the contract) must be accepted.
"""
import glob
import os
import shutil
import subprocess

import harness


def check(cfg, cwd, extra=()):
    return subprocess.run([harness.TBGW, "--check-config", "-c", cfg] + list(extra), cwd=cwd,
                          capture_output=True, text=True, timeout=30)


class ConfigCheck(harness.TestCase):
    def copy_data(self, name, mode=0o640):
        dst = self.path(name)
        shutil.copy(os.path.join(harness.DATA, "config", name), dst)
        os.chmod(dst, mode)
        return name

    def test_bad_configs_report_every_problem(self):
        bad = sorted(glob.glob(os.path.join(harness.DATA, "config", "bad-*.conf")))
        self.assertGreaterEqual(len(bad), 8)
        for path in bad:
            name = os.path.basename(path)
            with self.subTest(config=name):
                self.copy_data(name)
                with open(path[:-5] + ".err") as f:
                    expected = f.read()
                r = check(name, self.tmp)
                self.assertEqual(r.returncode, 78, r.stderr)
                self.assertEqual(r.stderr, expected)
                self.assertEqual(r.stdout, "")

    def test_warnings_do_not_fail_the_check(self):
        warn = sorted(glob.glob(os.path.join(harness.DATA, "config", "warn-*.conf")))
        self.assertTrue(warn)
        for path in warn:
            name = os.path.basename(path)
            with self.subTest(config=name):
                self.copy_data(name)
                with open(path[:-5] + ".err") as f:
                    expected = f.read()
                r = check(name, self.tmp)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stderr, expected)

    def test_good_configs_are_accepted(self):
        self.copy_data("ca.pem")
        for path in sorted(glob.glob(os.path.join(harness.DATA, "config", "good-*.conf"))):
            name = os.path.basename(path)
            with self.subTest(config=name):
                self.copy_data(name)
                r = check(name, self.tmp)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn("configuration is valid", r.stdout)
                self.assertNotIn(": error", r.stderr)

    def test_contract_example_is_accepted(self):
        example = os.path.join(harness.SRCDIR, "etc", "tbgw.conf.example")
        shutil.copy(example, self.path("tbgw.conf"))
        os.chmod(self.path("tbgw.conf"), 0o640)
        r = check("tbgw.conf", self.tmp)
        self.assertEqual(r.returncode, 0, r.stderr)
        # The one warning the example asks for: its /dev/ttyUSB0.
        for line in r.stderr.splitlines():
            self.assertRegex(line, r"warning: buses\.\[\d+\]\.port: port '/dev/ttyUSB\d+' .* "
                                   r"prefer its /dev/serial/by-id/ path$")
        self.assertIn("(5 buses, 6 devices)", r.stdout)

    def test_field_link_settings(self):
        """modbus-rtu-tcp, modbus-ascii and listen: what is accepted, what is refused, and the
        warning for USB serial names that move."""
        head = 'edge = { host = "127.0.0.1"; };\nbuses = (\n'
        dev = 'devices = ( { name = "%s"; unit_id = 1; token = "t%s"; telemetry = ( { key = "v"; table = "holding"; address = 0; type = "uint16"; } ); } ); }'
        good = head + ",\n".join([
            '{ name = "a"; driver = "modbus-rtu-tcp"; host = "10.0.0.5"; port = 4001; inter_frame_ms = 5; retries = 2; ' + dev % ("a", "a"),
            '{ name = "b"; driver = "modbus-rtu-tcp"; listen = { bind = "0.0.0.0"; port = 5020; }; ' + dev % ("b", "b"),
            '{ name = "c"; driver = "modbus-tcp"; listen = { port = 5021; }; ' + dev % ("c", "c"),
            '{ name = "d"; driver = "modbus-ascii"; port = "/dev/ttyACM1"; parity = "even"; data_bits = 7; ' + dev % ("d", "d"),
        ]) + "\n);\n"
        self.write("good.conf", good, 0o640)
        r = check("good.conf", self.tmp)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "good.conf:6: warning: buses.[3].port: port '/dev/ttyACM1' is "
                                   "numbered by the order USB adapters appear in and may name "
                                   "another adapter after a replug or reboot; prefer its "
                                   "/dev/serial/by-id/ path\n")
        bad = head + ",\n".join([
            '{ name = "a"; driver = "modbus-rtu-tcp"; ' + dev % ("a", "a"),
            '{ name = "b"; driver = "modbus-rtu-tcp"; host = "x"; listen = { port = 5020; }; ' + dev % ("b", "b"),
            '{ name = "c"; driver = "modbus-tcp"; listen = { bind = "eth0"; port = 5020; }; ' + dev % ("c", "c"),
            '{ name = "d"; driver = "modbus-ascii"; port = "/dev/serial/by-id/x"; listen = { port = 1; }; ' + dev % ("d", "d"),
            '{ name = "e"; driver = "modbus-rtu-tcp"; listen = { bind = "127.0.0.1"; }; ' + dev % ("e", "e"),
            '{ name = "f"; driver = "modbus-rtu-tcp"; listen = { bind = "192.0.2.77"; port = 5030; }; ' + dev % ("f", "f"),
        ]) + "\n);\n"
        self.write("bad.conf", bad, 0o640)
        r = check("bad.conf", self.tmp)
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertEqual(r.stderr.splitlines(), [
            "bad.conf:3: buses.[0]: missing required setting 'host' (or listen = { port = …; } for "
            "a device server that connects to tbgw)",
            "bad.conf:4: buses.[1]: 'host' and 'listen' exclude each other: tbgw either connects "
            "to the device or waits for it to connect",
            "bad.conf:5: buses.[2].listen.bind: bind 'eth0' is not an IP address of this host "
            "(e.g. \"0.0.0.0\" for all)",
            "bad.conf:5: buses.[2].listen.port: port 5020 is already listened on by bus 'b'",
            "bad.conf:6: buses.[3].listen: 'listen' does not apply to a modbus-ascii bus",
            "bad.conf:7: buses.[4].listen: missing required setting 'port'",
            "bad.conf:8: buses.[5].listen.bind: bind '192.0.2.77' is not an IP address of this "
            "host (e.g. \"0.0.0.0\" for all)",
        ])

    def test_world_readable_secrets_warn_with_the_fix(self):
        name = self.copy_data("good-minimal.conf", mode=0o644)
        r = check(name, self.tmp)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("good-minimal.conf: warning: the file holds device credentials and every "
                      "user can read it; fix: chown root:tbgw good-minimal.conf && chmod 0640 "
                      "good-minimal.conf", r.stderr)

    def test_missing_file(self):
        r = check("no-such.conf", self.tmp)
        self.assertEqual(r.returncode, 78)
        self.assertEqual(r.stderr, "no-such.conf: cannot read: No such file or directory\n")

    def test_startup_refuses_a_bad_config_with_the_same_lines(self):
        name = self.copy_data("bad-values.conf")
        with open(os.path.join(harness.DATA, "config", "bad-values.err")) as f:
            expected = f.read().splitlines()
        env = self.tbgw_env()
        r = subprocess.run([harness.TBGW, "-c", name], cwd=self.tmp, capture_output=True,
                           text=True, timeout=30, env=env)
        self.assertEqual(r.returncode, 78)
        for line in expected:
            self.assertIn(line, r.stderr)
        self.assertIn("configuration 'bad-values.conf' is invalid, not starting", r.stderr)

    def test_command_line(self):
        r = subprocess.run([harness.TBGW, "--version"], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^tbgw \d+\.\d+\.\d+\n$")
        r = subprocess.run([harness.TBGW, "--help"], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 0)
        self.assertIn("--check-config", r.stdout)
        r = subprocess.run([harness.TBGW, "--bogus"], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 64)
        r = subprocess.run([harness.TBGW, "extra"], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 64)


if __name__ == "__main__":
    harness.main()
