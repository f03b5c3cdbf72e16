#!/usr/bin/python3
"""The template library: template_path look-up and the shipped vendor register maps.

Every file in templates/ must pass `tbgw --check-config` with a device that uses it, and
name the document its registers come from. A template that the file does not define is
read from NAME.conf in the folders of template_path, first match wins, and problems in
such a file are reported at that file's own lines.
"""
import glob
import os
import subprocess

import harness

LIBRARY = os.path.join(harness.SRCDIR, "templates")


def check(cfg, cwd):
    return subprocess.run([harness.TBGW, "--check-config", "-c", cfg], cwd=cwd,
                          capture_output=True, text=True, timeout=30)


def device(name, unit, template):
    return ('{ name = "%s"; unit_id = %d; token = "T%d"; template = "%s"; }'
            % (name, unit, unit, template))


class Templates(harness.TestCase):
    def write_conf(self, template_path, devices, name="tbgw.conf"):
        tp = "" if template_path is None else "template_path = [ %s ];\n" % ", ".join(
            '"%s"' % p for p in template_path)
        text = ('edge = { host = "127.0.0.1"; };\n' + tp +
                'buses = ( { name = "b"; driver = "modbus-tcp"; host = "127.0.0.1";\n'
                '  devices = (\n    ' + ",\n    ".join(devices) + "\n  ); } );\n")
        with open(self.path(name), "w") as f:
            f.write(text)
        os.chmod(self.path(name), 0o600)
        return name

    def write_template(self, folder, name, text):
        os.makedirs(self.path(folder), exist_ok=True)
        with open(os.path.join(self.path(folder), name + ".conf"), "w") as f:
            f.write(text)

    def test_every_shipped_template_passes_check_config(self):
        files = sorted(glob.glob(os.path.join(LIBRARY, "*.conf")))
        self.assertGreaterEqual(len(files), 8)
        names = [os.path.basename(f)[:-len(".conf")] for f in files]
        for f in files:
            with open(f) as fh, self.subTest(template=f):
                head = fh.read(2000)
                self.assertIn("// Source: ", head, "a shipped template names its document")
        devices = [device("dev-%s" % n, i + 1, n) for i, n in enumerate(names)]
        r = check(self.write_conf([LIBRARY], devices), self.tmp)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")
        self.assertIn("(1 bus, %d devices)" % len(names), r.stdout)

    def test_first_folder_with_the_file_wins(self):
        good = 'telemetry = ( { key = "t"; table = "input"; address = 1; type = "int16"; } );\n'
        self.write_template("local", "sensor", good)
        self.write_template("vendor", "sensor", "this is not libconfig\n")
        r = check(self.write_conf(["local", "vendor"], [device("d", 1, "sensor")]), self.tmp)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = check(self.write_conf(["vendor", "local"], [device("d", 1, "sensor")]), self.tmp)
        self.assertEqual(r.returncode, 78)
        self.assertIn("vendor/sensor.conf:1: ", r.stderr)

    def test_errors_in_a_template_file_are_at_its_own_lines(self):
        self.write_template("lib", "meter",
                            'name = "metre";\n'
                            'poll_ms = 5000;\n'
                            'telemetry = (\n'
                            '  { key = "v"; table = "input"; address = 0; type = "flaot32"; }\n'
                            ');\n')
        r = check(self.write_conf(["lib"], [device("m1", 1, "meter")]), self.tmp)
        self.assertEqual(r.returncode, 78)
        lines = r.stderr.splitlines()
        self.assertIn("./lib/meter.conf:1: name: 'metre' is not this file's template name: a "
                      "template file is named by its file name without .conf ('meter')", lines)
        self.assertIn("./lib/meter.conf:4: telemetry.[0].type: unknown type 'flaot32' (did you "
                      "mean 'float32'?) (template 'meter', used by 'm1')", lines)
        self.assertEqual(len(lines), 2, r.stderr)

    def test_unknown_template_names_the_folders_searched(self):
        os.makedirs(self.path("lib"))
        r = check(self.write_conf(["lib", "/nonexistent"], [device("m1", 1, "../etc/passwd")]),
                  self.tmp)
        self.assertEqual(r.returncode, 78)
        self.assertIn("buses.[0].devices.[0].template: unknown template '../etc/passwd': not in "
                      "this file's templates, and no ../etc/passwd.conf in ./lib, /nonexistent",
                      r.stderr)

    def test_a_template_in_the_file_is_not_looked_up(self):
        self.write_template("lib", "m", "this is not libconfig\n")
        with open(self.path("tbgw.conf"), "w") as f:
            f.write('edge = { host = "127.0.0.1"; };\ntemplate_path = [ "lib" ];\n'
                    'templates = ( { name = "m"; telemetry = ( { key = "k"; table = "input"; '
                    'address = 0; type = "uint16"; } ); } );\n'
                    'buses = ( { name = "b"; driver = "modbus-tcp"; host = "127.0.0.1"; '
                    'devices = ( ' + device("d", 1, "m") + ' ); } );\n')
        os.chmod(self.path("tbgw.conf"), 0o600)
        r = check("tbgw.conf", self.tmp)
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    harness.main()
