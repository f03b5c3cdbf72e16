#!/usr/bin/python3
"""Process lifecycle under a systemd-like supervisor: READY=1, STATUS=, WATCHDOG=1,
SIGTERM/SIGINT (exit 0), SIGHUP (reload; an invalid file is refused and the old
configuration kept), and log output for the journal versus a terminal."""
import os
import re
import signal

import harness

class Lifecycle(harness.TestCase):
    def config(self, level="info"):
        return harness.TestCase.config(self, harness.free_port()).replace(
            'level = "debug"', 'level = "%s"' % level)

    def test_ready_status_and_sigterm(self):
        proc, notify, _ = self.start_tbgw(self.config())
        notify.wait_for("STATUS=", proc=proc)
        proc.kill(signal.SIGTERM)
        self.assertEqual(proc.wait(harness.STOP_TIMEOUT), 0, proc.output())
        notify.wait_for("STOPPING=1")
        self.assertIn("received Terminated, stopping", proc.output())
        self.stop_tbgw(proc)

    def test_sigint_stops_cleanly(self):
        proc, notify, _ = self.start_tbgw(self.config())
        proc.kill(signal.SIGINT)
        self.assertEqual(proc.wait(harness.STOP_TIMEOUT), 0, proc.output())
        self.stop_tbgw(proc)

    def test_sighup_reloads_a_valid_config(self):
        proc, notify, cfg = self.start_tbgw(self.config("info"))
        with open(cfg, "w") as f:
            f.write(self.config("debug"))
        proc.kill(signal.SIGHUP)
        i = notify.wait_for("RELOADING=1", proc=proc)
        notify.wait_for("READY=1", proc=proc, start=i)
        harness.wait_until(lambda: "configuration reloaded" in proc.output(), 10, "reload log")
        self.stop_tbgw(proc)

    def test_sighup_keeps_running_on_an_invalid_config(self):
        proc, notify, cfg = self.start_tbgw(self.config())
        with open(cfg, "w") as f:
            f.write('edge = { host = "127.0.0.1"; qos = 7; };\n')
        proc.kill(signal.SIGHUP)
        i = notify.wait_for("RELOADING=1", proc=proc)
        notify.wait_for("READY=1", proc=proc, start=i)
        out = harness.wait_until(lambda: "still running with the previous one" in proc.output()
                                 and proc.output(), 10, "refusal log")
        self.assertIn("tbgw.conf:1: edge.qos: must be between 0 and 1 (got 7)", out)
        self.assertTrue(proc.alive())
        # Still serving: a further valid reload works.
        with open(cfg, "w") as f:
            f.write(self.config())
        proc.kill(signal.SIGHUP)
        harness.wait_until(lambda: "configuration reloaded" in proc.output(), 10, "reload log")
        self.stop_tbgw(proc)

    def test_sighup_storm(self):
        proc, notify, _ = self.start_tbgw(self.config())
        for _ in range(20):
            proc.kill(signal.SIGHUP)
        harness.wait_until(lambda: proc.output().count("configuration reloaded") >= 1, 20,
                           "reloads")
        self.assertTrue(proc.alive())
        self.stop_tbgw(proc)

    def test_watchdog_is_fed(self):
        proc, notify, _ = self.start_tbgw(self.config(), env={"WATCHDOG_USEC": "300000"})
        i = notify.wait_for("WATCHDOG=1", proc=proc, timeout=5)
        notify.wait_for("WATCHDOG=1", proc=proc, timeout=5, start=i + 1)
        self.stop_tbgw(proc)

    def test_journal_gets_priority_prefixes(self):
        # JOURNAL_STREAM names the device and inode of stderr, as systemd sets it.
        log = self.path("tbgw.log")
        open(log, "wb").close()
        st = os.stat(log)
        proc, notify, _ = self.start_tbgw(
            self.config(), env={"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)})
        self.stop_tbgw(proc)
        lines = proc.output().splitlines()
        self.assertTrue(lines)
        for line in lines:
            self.assertRegex(line, r"^<[0-7]>\S")
        self.assertTrue(any(l.startswith("<6>tbgw ") and "started" in l for l in lines), lines)

    def test_terminal_gets_timestamps(self):
        proc, notify, _ = self.start_tbgw(self.config())
        self.stop_tbgw(proc)
        for line in proc.output().splitlines():
            self.assertRegex(line, r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (info|warning|error|debug): ")

    def test_verbose_overrides_level(self):
        proc, notify, _ = self.start_tbgw(self.config("error"), args=["-v"])
        self.stop_tbgw(proc)
        self.assertIn("info: tbgw", proc.output())


if __name__ == "__main__":
    harness.main()
