#!/usr/bin/python3
"""Faults of the field bus, staged with tbgw itself: a Modbus TCP slave that accepts and
never answers, answers that are garbage, exception answers, a slave that closes the
connection instead of answering, damaged frames and a vanishing port on RTU. (One silent
unit among answering ones, holes in the map, slow answers, CRC retries and a port missing
at start are in tests/integration/test_modbus_tcp.py and test_modbus_rtu.py.)

Each time: tbgw keeps running and keeps polling what answers, no value from a bad frame
reaches the Edge, every sample it did read arrives, each fault is logged once when it
starts and once when it ends (and again for a second episode: once per episode, not once
per process), and SIGTERM stops it with exit 0."""
import time

import faultlib
from faultlib import harness

VALUE_A, VALUE_B = 4242, 1717


class BusFaults(faultlib.FaultCase):
    def tcp_gateway(self, poll_ms=100):
        self.emu = self.emulator(devices=[("a", "T-a"), ("b", "T-b")])
        self.fm = self.fake_modbus("--tcp", "0")
        self.fm.set(1, "holding", 0, VALUE_A)
        self.fm.set(2, "holding", 0, VALUE_B)
        bus = self.tcp_bus(self.fm, [("a", 1), ("b", 2)], poll_ms=poll_ms, timeout_ms=300)
        self.proc, _, _ = self.start_tbgw(self.config(self.emu.port, bus))
        self.wait_flowing()

    def wait_flowing(self, devices=("a", "b")):
        counts = {d: len(self.stamps(self.emu, d)) for d in devices}
        self.emu.wait(lambda: all(len(self.stamps(self.emu, d)) >= counts[d] + 3
                                  for d in devices), 20, "data from %s" % (devices,))

    def assert_only_good_values(self):
        """Nothing but what the slave holds reached the Edge: no value from a bad frame."""
        self.assertEqual(set(self.values(self.emu, "a")), {VALUE_A})
        self.assertEqual(set(self.values(self.emu, "b")), {VALUE_B})

    def damaged_episodes(self, fm, bus, faults):
        """One episode per fault of fm: a run of damaged answers fails both devices, then
        they answer again; each logged once per episode, not once per poll."""
        for episode, fault in enumerate(faults, 1):
            fm.fault(fault, 1000)
            self.wait_log("device 'a' (unit 1 on bus '%s')" % bus, n=episode)
            self.wait_log("device 'b' (unit 2 on bus '%s')" % bus, n=episode)
            time.sleep(1)
            fm.fault("clear")
            for dev in ("a", "b"):
                self.wait_log("device '%s': answering again" % dev, timeout=70, n=episode)
            self.wait_flowing()
        for dev in ("a", "b"):
            self.assert_logged("device '%s' (unit" % dev, n=len(faults))
            self.assert_logged("device '%s': answering again" % dev, n=len(faults))

    def assert_all_arrived(self, fakes, reads=0):
        """Stop production; every sample tbgw read arrives. reads: answered reads of slaves
        already gone."""
        self.assert_delivered(self.stop_production(fakes) + reads, ("a", "b"))

    # ---- Modbus TCP ----

    def test_slave_accepts_and_never_answers(self):
        self.tcp_gateway()
        for episode in (1, 2):
            self.fm.fault("silent", 0)
            for dev, unit in (("a", 1), ("b", 2)):
                self.wait_log("device '%s' (unit %d on bus 'plc'): Connection timed out; "
                              "backing off" % (dev, unit), n=episode)
            # Still serving: the main thread and the control socket answer, and the
            # devices show as failing.
            st = self.status()
            self.assertEqual({d["polling"] for d in st["devices"]}, {"failing"})
            time.sleep(2)  # backoff retries: more timeouts, no more lines
            self.fm.fault("clear")
            for dev in ("a", "b"):
                self.wait_log("device '%s': answering again" % dev, timeout=70, n=episode)
            self.wait_flowing()
            for dev in ("a", "b"):
                self.assert_logged("device '%s' (unit" % dev, n=episode)
                self.assert_logged("device '%s': answering again" % dev, n=episode)
        self.assertNotIn("bus 'plc': cannot connect", self.out())
        self.assert_only_good_values()
        self.assert_all_arrived([self.fm])
        self.stop_clean()

    def test_garbage_answers(self):
        self.tcp_gateway()
        # One damaged answer is retried (retries = 1): no failure, nothing logged.
        for _ in range(3):
            n = self.fm.stats()["requests"]
            self.fm.fault("garbage", 1)
            harness.wait_until(lambda: self.fm.stats()["requests"] >= n + 4, 10,
                               "the damaged answer and the retry")
        self.assertNotIn("backing off", self.out())
        # A run of them fails the devices; they are backed off and come back.
        self.damaged_episodes(self.fm, "plc", ("garbage", "garbage"))
        # Garbage is not an exception answer: the read plan was not split for it.
        self.assertNotIn("refused as one read", self.out())
        self.assert_only_good_values()
        self.assert_all_arrived([self.fm])
        self.stop_clean()

    def test_exception_answers(self):
        self.tcp_gateway()
        for episode in (1, 2):
            # Slave device failure (4) for a's tag: an answer, not a silence, so the device
            # is not backed off and b is not disturbed; a's value is simply not sent.
            self.fm.fault("exception", 1, "holding", 0, 1, 4)
            self.wait_log("device 'a': key 'v' (holding 0) cannot be read: Slave device or "
                          "server failure", n=episode)
            time.sleep(0.5)
            na = len(self.stamps(self.emu, "a"))
            self.wait_flowing(("b",))
            self.assertEqual(len(self.stamps(self.emu, "a")), na)
            self.fm.fault("clear")
            self.wait_log("device 'a': key 'v' can be read again", n=episode)
            self.wait_flowing()
            self.assert_logged("device 'a': key 'v' (holding 0) cannot be read", n=episode)
            self.assert_logged("device 'a': key 'v' can be read again", n=episode)
        self.assertNotIn("backing off", self.out())
        self.assert_only_good_values()
        self.assert_all_arrived([self.fm])
        self.stop_clean()

    def test_slave_closes_the_connection_instead_of_answering(self):
        # Like a Modbus gateway at its connection limit: it accepts, then closes at the
        # first request. One episode, reconnected with a growing backoff, ends at the first
        # answer; the polls missed meanwhile are not overruns.
        self.tcp_gateway()
        for episode in (1, 2):
            self.fm.fault("drop", 3)
            self.wait_log("bus 'plc': connected, after 3 failures", timeout=30, n=episode)
            self.wait_flowing()
        self.assert_logged("bus 'plc': Transport endpoint is not connected; reconnecting "
                           "with backoff", n=2)
        self.assert_logged("bus 'plc': connected, after", n=2)
        if harness.SLOW == 1:  # a timing claim: under valgrind every poll may be late
            self.assertNotIn("polling takes longer", self.out())
            self.assertEqual({d["overruns"] for d in self.status()["devices"]}, {0})
        self.assert_only_good_values()
        self.assert_all_arrived([self.fm])
        self.stop_clean()

    # ---- Modbus RTU ----

    def rtu_gateway(self, name="tty"):
        a, b = self.socat_pair(name)
        self.emu = self.emulator(devices=[("a", "T-a"), ("b", "T-b")])
        fm = self.fake_modbus("--rtu", b, "--baud", "19200", name="fake-modbus-" + name)
        fm.set(1, "holding", 0, VALUE_A)
        fm.set(2, "holding", 0, VALUE_B)
        bus = self.rtu_bus(a, [("a", 1), ("b", 2)], poll_ms=100, timeout_ms=200)
        self.proc, _, _ = self.start_tbgw(self.config(self.emu.port, bus))
        self.wait_flowing()
        return fm

    def test_rtu_damaged_frames(self):
        fm = self.rtu_gateway()
        self.damaged_episodes(fm, "rs485", ("crc", "garbage"))
        self.assertIn("Invalid CRC; backing off", self.out())
        self.assert_only_good_values()
        self.assert_all_arrived([fm])
        self.stop_clean()

    def test_rtu_port_vanishes_while_polling(self):
        fm = self.rtu_gateway("usb")
        socat = [p for p in self._procs if p.argv[0] == "socat"][0]
        fm.fault("silent", 0)          # what it answered so far is counted ...
        st = fm.stats()
        reads = st["reads"] - st["damaged"]
        socat.stop()                   # ... and the adapter is pulled
        fm.proc.stop()
        self.wait_log("bus 'rs485':")
        self.wait_log("backoff")
        time.sleep(1.5)                # reopening fails quietly meanwhile
        a, b = self.socat_pair("usb")  # plugged back in, same device path
        fm2 = self.fake_modbus("--rtu", b, "--baud", "19200", name="fake-modbus-2")
        fm2.set(1, "holding", 0, VALUE_A)
        fm2.set(2, "holding", 0, VALUE_B)
        self.wait_log("bus 'rs485': connected, after", timeout=70)
        self.wait_flowing()
        self.assert_logged("backoff")
        self.assert_logged("bus 'rs485': connected, after")
        if harness.SLOW == 1:  # a timing claim: under valgrind every poll may be late
            self.assertNotIn("polling takes longer", self.out())
        self.assert_only_good_values()
        self.assert_all_arrived([fm2], reads=reads)
        self.stop_clean()


if __name__ == "__main__":
    harness.main()
