#!/usr/bin/python3
"""A full disk under storage.path, on a small tmpfs in a private mount namespace (see
faultlib.SmallFs; without one this file is a SKIP, not a pass).

What tbgw promises: while the disk refuses writes, unacknowledged data stays in memory
(bounded) and the commit is retried; the problem is logged once and its end once; a spool
file that cannot be opened because the disk is full is left alone (it is not damaged) and
opened when there is room; what a stop on a full disk cannot keep is named in the log."""
import re
import time

import faultlib
from faultlib import harness

FULL = "cannot write (database or disk is full); keeping data in memory and retrying"


class DiskFull(faultlib.FaultCase):
    def setUp(self):
        super().setUp()
        # 8 MiB: the spool's WAL grows to about 4 MiB before SQLite checkpoints it.
        self.fs = faultlib.SmallFs(self, self.path("state"), 8192)
        self.emu = self.emulator(devices=[("a", "T-a")])
        self.fm = self.fake_modbus("--tcp", "0")
        bus = self.tcp_bus(self.fm, [("a", 1)], poll_ms=50, timeout_ms=1000)
        self.cfg = self.config(self.emu.port, bus)

    def start(self, name="tbgw"):
        self.proc, _, _ = self.start_tbgw(self.cfg, prefix=self.fs.prefix, name=name)
        return self.proc

    def delivered(self):
        return len(set(self.stamps(self.emu, "a")))

    def outage(self, on):
        self.emu.refuse_tcp(on)
        if on:
            self.emu.drop_all()

    def wait_delivered(self, n):
        self.assert_delivered(n, ("a",), timeout=40, in_order=True)

    def test_full_disk_online_then_offline(self):
        emu = self.emu
        self.start()
        emu.wait(lambda: self.delivered() > 3, 10)
        self.fs.fill()
        # While the Edge answers, nothing needs the disk: delivery goes on.
        n = self.delivered()
        emu.wait(lambda: self.delivered() > n + 20, 10, "delivery on a full disk")
        # The Edge goes away: the backlog stays in memory, the failure is logged once
        # however many commits fail.
        self.outage(True)
        self.wait_log(FULL)
        harness.wait_until(lambda: self.status()["gateway"]["spool"]["batches"] >= 20,
                           20, "a backlog in memory")
        self.assert_logged(FULL)
        self.fs.free()
        self.wait_log("writing again")
        self.outage(False)
        self.wait_delivered(self.stop_production([self.fm]))
        self.assert_logged(FULL)
        self.assert_logged("writing again")
        self.stop_clean()

    def test_start_on_a_full_disk_keeps_the_spool(self):
        # A backlog on disk from a previous run ...
        self.outage(True)
        first = self.start("tbgw1")
        harness.wait_until(lambda: self.status()["gateway"]["spool"]["batches"] >= 20,
                           20, "a backlog")
        self.stop_clean(first)
        # ... and the disk fills while tbgw is down: SQLite cannot even create its WAL.
        self.fs.fill()
        self.start("tbgw2")
        self.wait_log("cannot open")
        time.sleep(1)  # several commit intervals: retried quietly
        self.assert_logged("cannot open")
        self.assertNotIn("moved aside", self.out())
        self.fs.free()
        self.wait_log("writing again")
        self.assertIn("waiting from before; sending them first", self.out())
        self.outage(False)
        self.wait_delivered(self.stop_production([self.fm]))
        self.assertNotIn("moved aside", self.out())
        self.stop_clean()

    def test_stop_on_a_full_disk_names_what_is_lost(self):
        self.outage(True)
        self.start("tbgw1")
        harness.wait_until(lambda: self.status()["gateway"]["spool"]["batches"] >= 5,
                           20, "a backlog on disk")
        self.fs.fill()
        self.wait_log(FULL)
        harness.wait_until(lambda: self.status()["gateway"]["spool"]["batches"] >= 25,
                           20, "a backlog in memory")
        reads = self.stop_production([self.fm])
        self.stop_clean()
        m = re.search(r"cannot write; (\d+) batches \((\d+) values\) kept in memory are lost",
                      self.out())
        self.assertTrue(m, self.out())
        lost = int(m.group(2))
        self.assertGreater(lost, 0)
        # What was on disk survives; with what the log names as lost, that is every read.
        self.fs.free()
        self.outage(False)
        self.start("tbgw2")
        self.wait_delivered(reads - lost)
        self.stop_clean()


if __name__ == "__main__":
    harness.main()
