#!/usr/bin/python3
"""The polling engine over Modbus RTU on a socat pty pair (framing and CRC; a pty ignores
the baud rate, so timing is checked as the gaps the slave sees): several unit ids on one
line, every table, CRC errors retried, RS-485 settings, the inter-frame silence, and a
write through a shared attribute."""
import struct
import time

import harness


def tag(key, table, address, type_, extra=""):
    return '{ key = "%s"; table = "%s"; address = %d; type = "%s"; %s }' % (key, table, address, type_, extra)


class ModbusRtu(harness.TestCase):
    def start(self, bus_extra="", prepare=None, poll_ms=100):
        a, b = self.socat_pair()
        emu = self.emulator(devices=[("m1", "T1"), ("m7", "T7")])
        fm = self.fake_modbus("--rtu", b, "--baud", "19200", "--parity", "E")
        if prepare:
            prepare(fm)
        body = "poll_ms = %d; telemetry = ( %s, %s, %s );" % (
            poll_ms, tag("v", "holding", 0, "int16"), tag("f", "input", 2, "float32", 'word_order = "little";'),
            tag("c", "coil", 4, "bool"))
        bus = ('{ name = "rs485"; driver = "modbus-rtu"; port = "%s"; baud = 19200; parity = "even"; '
               'timeout_ms = 200; retries = 1; %s devices = ( '
               '{ name = "m1"; unit_id = 1; token = "T1"; %s '
               'writes = ( { key = "sp"; table = "holding"; address = 20; type = "uint16"; } ); }, '
               '{ name = "m7"; unit_id = 7; token = "T7"; %s } ); }') % (a, bus_extra, body, body)
        proc, notify, _ = self.start_tbgw(self.config(emu.port, bus))
        return emu, fm, proc

    def prepare(self, fm):
        for unit, v in ((1, 11), (7, 77)):
            fm.set(unit, "holding", 0, v)
            hi, lo = struct.unpack(">HH", struct.pack(">f", unit + 0.5))
            fm.set(unit, "input", 2, lo, hi)
            fm.set(unit, "coil", 4, int(unit == 7))

    def test_two_units_on_one_line(self):
        emu, fm, proc = self.start(prepare=self.prepare)
        for dev, v, f, c in (("m1", 11, 1.5, False), ("m7", 77, 7.5, True)):
            emu.wait(lambda: {k: x for _, k, x in emu.telemetry(dev)} == {"v": v, "f": f, "c": c}, 10,
                     "values of " + dev)
        emu.set_shared("m1", {"sp": 1234})
        harness.wait_until(lambda: fm.get(1, "holding", 20) == [1234], 5, "the RTU write")
        self.assertEqual(fm.get(7, "holding", 20), [0])
        self.stop_tbgw(proc)

    def test_crc_errors_are_retried(self):
        emu, fm, proc = self.start(prepare=self.prepare, poll_ms=200)
        emu.wait(lambda: len(emu.telemetry("m1")) >= 3, 10)
        # retries = 1: a single damaged answer is retried and the device does not fail.
        for _ in range(3):
            fm.fault("crc", 1)
            time.sleep(0.3)  # consumed by the next transaction (polls every 200 ms)
        self.assertNotIn("backing off", proc.output())
        # Two in a row exhaust the retry: the device is backed off, and comes back.
        fm.fault("crc", 2)
        emu.wait(lambda: "Invalid CRC; backing off" in proc.output(), 5)
        emu.wait(lambda: "answering again" in proc.output(), 10)
        self.stop_tbgw(proc)

    def test_inter_frame_silence_is_kept(self):
        emu, fm, proc = self.start('inter_frame_ms = 15; rs485 = { rts = "up"; delay_us = 0; };',
                                   prepare=self.prepare, poll_ms=50)
        emu.wait(lambda: len(emu.telemetry("m7")) >= 3, 10)
        fm.reset()
        time.sleep(1.0)
        st = fm.stats()
        self.assertGreater(st["requests"], 5)
        # 3.5 characters at 19200 baud (11 bits each with parity) = 2 ms, plus 15 ms.
        self.assertGreaterEqual(st["min_gap_us"], 16500, st)
        self.stop_tbgw(proc)

    def test_port_that_vanishes_is_reopened(self):
        a, b = self.socat_pair("gone")
        emu = self.emulator(devices=[("m1", "T1")])
        bus = ('{ name = "rs485"; driver = "modbus-rtu"; port = "%s/missing"; timeout_ms = 200; '
               'devices = ( { name = "m1"; unit_id = 1; token = "T1"; poll_ms = 100; '
               'telemetry = ( %s ); } ); }') % (self.tmp, tag("v", "holding", 0, "int16"))
        proc, notify, _ = self.start_tbgw(self.config(emu.port, bus))
        emu.wait(lambda: "bus 'rs485': cannot connect: No such file or directory; retrying with backoff"
                 in proc.output(), 10)
        import os
        os.symlink(a, self.path("missing"))
        fm = self.fake_modbus("--rtu", b)
        fm.set(1, "holding", 0, 5)
        emu.wait(lambda: [v for _, k, v in emu.telemetry("m1")][-1:] == [5], 20)
        self.assertEqual(proc.output().count("cannot connect"), 1)
        self.stop_tbgw(proc)


if __name__ == "__main__":
    harness.main()
