#!/usr/bin/python3
"""Faults of the host: SIGHUP storms while data flows. (A full disk and clock jumps have
files of their own, test_disk_full.py and test_clock_jumps.py, so that automake reports
them as SKIP on a machine that cannot stage them, instead of a pass.)

A reload builds the new gateway while the old one still runs, stops the old one (which
commits its spool) and starts the new one (which reads it). Every sample read in between
must reach the Edge exactly as if nothing had happened, in order."""
import signal
import time

import faultlib
from faultlib import harness, SLOW


class HostFaults(faultlib.FaultCase):
    def test_sighup_storm_while_the_backlog_drains(self):
        emu = self.emu = self.emulator(devices=[("a", "T-a"), ("b", "T-b")])
        fm = self.fake_modbus("--tcp", "0")
        # timeout_ms is generous: a poll the slave answered but tbgw gave up on would be a
        # read without a sample, and the accounting below is exact.
        bus = self.tcp_bus(fm, [("a", 1), ("b", 2)], poll_ms=50, timeout_ms=1000)
        self.proc, notify, _ = self.start_tbgw(self.config(emu.port, bus))
        emu.wait(lambda: len(self.stamps(emu, "a")) > 3, 10)

        # An outage builds a backlog on disk; reloads during it hand it on, each new
        # gateway taking over the spool the previous one has just committed ...
        emu.refuse_tcp(True)
        emu.drop_all()
        self.wait_log("cannot connect")
        for i in range(5):
            self.proc.kill(signal.SIGHUP)
            self.wait_log("configuration reloaded", n=i + 1)
        harness.wait_until(lambda: self.status()["gateway"]["spool"]["batches"] >= 40,
                           20, "a backlog")
        emu.refuse_tcp(False)
        # ... and more follow each other while it drains.
        deadline = time.monotonic() + 10 * SLOW
        for _ in range(30):
            self.proc.kill(signal.SIGHUP)
            time.sleep(0.1)
            if time.monotonic() > deadline:
                break
        self.wait_log("configuration reloaded", n=7)
        # Production stops here: every read so far must arrive.
        self.assert_delivered(self.stop_production([fm]), ("a", "b"), timeout=40,
                              in_order=True)
        # The outage is logged once per gateway that saw it (a reload starts a new one).
        self.assertLessEqual(self.count("cannot connect"), 6)
        self.assertLessEqual(self.count("reachable again"), 1)
        self.assertTrue(self.proc.alive())
        self.stop_clean()

    def test_totals_add_up_over_reloads_and_drops(self):
        """tbgwctl status's totals account for every sample across reloads, an outage, a
        full spool (drops) and health telemetry, and agree with the slaves and the Edge."""
        emu = self.emulator(devices=[("a", "T-a"), ("b", "T-b"), ("c", "T-c")])
        fm1, fm2 = self.fake_modbus("--tcp", "0"), self.fake_modbus("--tcp", "0", name="fm2")
        tags = ", ".join(faultlib.tag("k%d" % i, i) for i in range(100))

        def bus(name, fm, devices):
            devs = ", ".join('{ name = "%s"; unit_id = %d; token = "T-%s"; poll_ms = 20; '
                             'telemetry = ( %s ); %s }' % (n, u, n, tags, extra)
                             for n, u, extra in devices)
            return ('{ name = "%s"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d; '
                    'timeout_ms = 1000; devices = ( %s ); }' % (name, fm.port, devs))
        # a: 100 telemetry tags and an attribute, read in one request; b, c: 100 tags.
        buses = "%s, %s" % (
            bus("one", fm1, [("a", 1, "attributes = ( %s );" % faultlib.tag("serial", 100))]),
            bus("two", fm2, [("b", 2, ""), ("c", 3, "")]))
        cfg = self.config(emu.port, buses, storage="max_size_mb = 1;").replace(
            "interval_s = 0", "interval_s = 1")
        self.proc, notify, path = self.start_tbgw(cfg)
        emu.wait(lambda: emu.telemetry("c"), 10)
        emu.refuse_tcp(True)
        emu.drop_all()
        self.wait_log("dropping the oldest data", timeout=60)
        for i in range(2):
            # A changed file, so that the reload builds a new gateway (an unchanged one
            # would keep the running gateway, and its counters, as they are).
            with open(path, "w") as f:
                f.write(cfg.replace("poll_ms = 20;", "poll_ms = %d;" % (21 + i)))
            self.proc.kill(signal.SIGHUP)
            self.wait_log("configuration reloaded", n=i + 1)
            # The new gateway has read the attribute (once per gateway) before the next step.
            harness.wait_until(lambda: self.status()["gateway"]["totals"]["attribute_values"]
                               == i + 2, 20, "gateway %d's first poll" % (i + 2))
        emu.refuse_tcp(False)
        fm1.fault("silent", 0)
        fm2.fault("silent", 0)
        r1, r2 = fm1.stats()["reads"], fm2.stats()["reads"]

        def settled():
            t = self.status()["gateway"]["totals"]
            return t if t["values_waiting"] == 0 else None
        t = harness.wait_until(settled, 60, "the spool to drain")
        left = t["samples"] + t["health_values"] + t["values_at_start"]
        right = sum(t[k] for k in ("attribute_values", "values_rejected", "values_delivered",
                                   "values_waiting", "values_dropped", "values_quarantined",
                                   "values_lost"))
        self.assertEqual(left, right, t)
        self.assertGreater(t["values_dropped"], 0, t)
        self.assertGreater(t["health_values"], 0, t)
        self.assertEqual(t["values_at_start"], 0, t)
        # Every answered read became its 100 samples; the attribute is reported when it
        # changes, i.e. once per gateway (the start and two reloads). The ring never
        # overflows here.
        self.assertEqual(t["samples_dropped"], 0, t)
        self.assertEqual(t["attribute_values"], 3, t)
        self.assertEqual(t["samples"], 100 * (r1 + r2) + 3, t)
        # The Edge has everything counted as delivered. (A batch may also arrive and lose
        # its PUBACK to the outage, then be dropped for room: counted dropped, not lost.)
        distinct = sum(len({(ts, k) for ts, k, _ in emu.telemetry(d)}) for d in "abc")
        self.assertGreaterEqual(distinct, t["values_delivered"])
        self.assertLessEqual(distinct, t["values_delivered"] + t["values_dropped"])
        self.stop_clean()


if __name__ == "__main__":
    harness.main()
