#!/usr/bin/python3
"""fake-modbus itself, checked against an independent master (python3-pymodbus) and raw
frames: the READY line, every table, separate units, --map and --units, concurrent clients,
every fault, the control protocol, RTU over a socat pty pair, and SIGTERM/SIGINT.

The binary comes from $TBGW_BUILDDIR/tests/fakes/fake-modbus (see harness.py); when it is
not built, or pymodbus is missing, the file exits 77 (SKIP). Every process is started
through the harness and stopped by PID; every wait is bounded."""
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import tty
import unittest

import harness

try:
    from pymodbus.client import ModbusSerialClient, ModbusTcpClient
    from pymodbus.exceptions import ModbusIOException
except ImportError:
    harness.skip_unless(False, "python3-pymodbus is not installed")

# A test method cannot skip by exiting (unittest would report an error), so decide here.
harness.skip_unless(os.access(harness.FAKE_MODBUS, os.X_OK),
                    "fake-modbus not built (%s)" % harness.FAKE_MODBUS)

NO_ANSWER = 0.3     # how long "no answer" is waited for


def crc16(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def rtu(unit, pdu):
    """An RTU frame: unit, PDU, CRC low byte first."""
    body = bytes([unit]) + pdu
    return body + struct.pack("<H", crc16(body))


def mbap(tid, unit, pdu):
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


def read_holding_pdu(addr, count):
    return struct.pack(">BHH", 3, addr, count)


def recv_exact(sock, n, deadline):
    buf = b""
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            chunk = sock.recv(n - len(buf))
        except socket.timeout:
            return None
        except ConnectionResetError:  # closed with our bytes unread: RST instead of FIN
            chunk = b""
        if not chunk:
            return buf if buf else b""
        buf += chunk
    return buf


def recv_mbap(sock, timeout=2.0):
    """One MBAP frame; None when nothing came within timeout, b"" when the peer closed."""
    deadline = time.monotonic() + timeout
    head = recv_exact(sock, 6, deadline)
    if not head or len(head) < 6:
        return head
    rest = recv_exact(sock, struct.unpack(">H", head[4:6])[0], deadline)
    return head + (rest or b"")


def no_answer(r):
    return isinstance(r, ModbusIOException)


class FakeModbusCase(harness.TestCase):
    def setUp(self):
        super().setUp()
        self.fakes = []

    def tearDown(self):
        # Every fake must stop on SIGTERM with status 0 and, in a sanitizer build, no report.
        problems = []
        for fm in self.fakes:
            rc = fm.proc.stop()
            out = fm.proc.output()
            if rc != 0:
                problems.append("%s exited with %s" % (fm.proc.logpath, rc))
            for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
                if marker in out:
                    problems.append("%s:\n%s" % (marker, out))
        super().tearDown()
        self.assertEqual(problems, [])

    def tcp_client(self, fm, timeout=1.0):
        # pymodbus 3.0.0 cannot connect with a fractional timeout, so connect with 1 s and
        # then shorten the wait for answers.
        c = ModbusTcpClient("127.0.0.1", port=fm.port, timeout=1, retries=0)
        self.assertTrue(c.connect())
        c.params.timeout = timeout
        c.socket.settimeout(timeout)
        self.later(c.close)
        return c

    def raw(self, fm):
        s = socket.create_connection(("127.0.0.1", fm.port), timeout=5)
        self.later(s.close)
        return s

    def control(self, fm):
        """A second control connection, for raw lines and err replies."""
        s = socket.create_connection(("127.0.0.1", fm.proc_control_port), timeout=5)
        self.later(s.close)
        return s, s.makefile("rw", newline="\n")

    def fake(self, *args, name="fake-modbus"):
        fm = self.fake_modbus(*args, name=name)
        self.fakes.append(fm)
        # harness.FakeModbus does not keep the control port; the READY line had it.
        fm.proc_control_port = fm.sock.getpeername()[1]
        return fm

    def say(self, f, line):
        f.write(line + "\n")
        f.flush()
        return f.readline().strip()


class Tcp(FakeModbusCase):
    def test_ready_line_on_given_ports_and_nothing_else_on_stdout(self):
        tcp, ctl = harness.free_port(), harness.free_port()
        fm = self.fake("--tcp", str(tcp), "--control", str(ctl))
        self.assertEqual((fm.port, fm.proc_control_port), (tcp, ctl))
        c = self.tcp_client(fm)
        self.assertFalse(c.read_holding_registers(0, 1, slave=1).isError())
        fm.proc.kill(signal.SIGTERM)
        self.assertEqual(fm.proc.wait(harness.STOP_TIMEOUT), 0)
        self.assertEqual(os.read(fm.proc.p.stdout.fileno(), 4096), b"")  # only READY, once

    def test_every_table_reads_and_writes(self):
        fm = self.fake("--tcp", "0")
        c = self.tcp_client(fm)
        # coils: written by the master
        self.assertFalse(c.write_coil(3, True, slave=1).isError())
        self.assertFalse(c.write_coils(10, [True, False, True, True], slave=1).isError())
        self.assertEqual(c.read_coils(0, 16, slave=1).bits,
                         [False] * 3 + [True] + [False] * 6 + [True, False, True, True]
                         + [False] * 2)
        self.assertEqual(fm.get(1, "coil", 10, 4), [1, 0, 1, 1])
        # discrete inputs and input registers: written through the control port
        fm.set(1, "discrete", 65534, 1, 1)
        self.assertEqual(c.read_discrete_inputs(65533, 3, slave=1).bits[:3], [False, True, True])
        fm.set(1, "input", 5, 0xBEEF, 7, 65535)
        self.assertEqual(c.read_input_registers(5, 3, slave=1).registers, [0xBEEF, 7, 65535])
        # holding registers: every write function
        self.assertFalse(c.write_register(0, 0x1234, slave=1).isError())
        self.assertFalse(c.write_registers(1, [1, 2, 3], slave=1).isError())
        self.assertEqual(c.read_holding_registers(0, 4, slave=1).registers, [0x1234, 1, 2, 3])
        r = c.readwrite_registers(read_address=0, read_count=2, write_address=0,
                                  write_registers=[9, 8], unit=1)
        self.assertEqual(r.registers, [9, 8])  # written first, then read
        self.assertFalse(c.mask_write_register(address=1, and_mask=0x00F0, or_mask=0x000F,
                                               unit=1).isError())
        self.assertEqual(fm.get(1, "holding", 0, 4), [9, (8 & 0xF0) | (0x0F & ~0xF0), 2, 3])
        # libmodbus's own checks: past the end of a table
        r = c.read_holding_registers(65535, 2, slave=1)
        self.assertEqual(r.exception_code, 2)
        st = fm.stats()
        self.assertEqual((st["reads"], st["writes"], st["exceptions"]), (6, 6, 1), st)

    def test_unknown_function_gets_exception_1(self):
        fm = self.fake("--tcp", "0")
        s = self.raw(fm)
        s.sendall(mbap(0x4242, 1, bytes([0x41, 1, 2, 3])))
        self.assertEqual(recv_mbap(s), mbap(0x4242, 1, bytes([0xC1, 1])))
        s.sendall(mbap(7, 1, read_holding_pdu(0, 1)))  # the stream is still in step
        self.assertEqual(recv_mbap(s), mbap(7, 1, bytes([3, 2, 0, 0])))
        self.assertEqual(fm.log(), [(1, 0x41, 0, 0), (1, 3, 0, 1)])

    def test_units_have_separate_tables(self):
        fm = self.fake("--tcp", "0")
        c = self.tcp_client(fm)
        for unit in (1, 2, 247, 255):
            self.assertFalse(c.write_registers(100, [unit, unit + 1], slave=unit).isError())
        for unit in (1, 2, 247, 255):
            self.assertEqual(c.read_holding_registers(100, 2, slave=unit).registers,
                             [unit, unit + 1])
            self.assertEqual(fm.get(unit, "holding", 100, 2), [unit, unit + 1])
        self.assertEqual(fm.get(3, "holding", 100, 2), [0, 0])

    def test_map_preload(self):
        m = self.write("map", "# a preload map\n"
                              "* holding 10 11 12 0x0D   # every unit\n"
                              "3 holding 11 0xBEEF\n"
                              "3 coil 0 1 0 1\n"
                              "\n"
                              "200 discrete 65535 1\n"
                              "  7  input 0 65535 0xffff 0\n"
                              "* coil 1 1\n")
        fm = self.fake("--tcp", "0", "--map", m)
        c = self.tcp_client(fm)
        self.assertEqual(c.read_holding_registers(10, 3, slave=3).registers, [11, 0xBEEF, 0x0D])
        self.assertEqual(c.read_holding_registers(10, 3, slave=9).registers, [11, 12, 13])
        self.assertEqual(c.read_holding_registers(10, 3, slave=255).registers, [11, 12, 13])
        # "3 coil 0 1 0 1" sets coils 0..2; the later "* coil 1 1" sets coil 1 everywhere
        self.assertEqual(c.read_coils(0, 4, slave=3).bits[:4], [True, True, True, False])
        self.assertEqual(c.read_coils(0, 2, slave=9).bits[:2], [False, True])
        self.assertEqual(c.read_discrete_inputs(65535, 1, slave=200).bits[0], True)
        self.assertEqual(c.read_input_registers(0, 3, slave=7).registers, [65535, 65535, 0])
        # a later "*" set reaches units that exist and units still to come
        fm.cmd("set * holding 12 99")
        self.assertEqual(fm.get(3, "holding", 12), [99])
        self.assertEqual(c.read_holding_registers(12, 1, slave=100).registers, [99])

    def test_map_errors_are_reported_with_file_and_line(self):
        m = self.write("map", "1 holding 0 1\n"
                              "1 tabel 0 1\n"
                              "# fine\n"
                              "0 holding 0 1\n"
                              "1 coil 0 2\n"
                              "1 holding 65535 1 2\n"
                              "1 holding 0 0x10000\n"
                              "1 holding 0\n"
                              "x input 0 1\n")
        p = subprocess.run([harness.FAKE_MODBUS, "--tcp", "0", "--map", m],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertEqual(p.stdout, "")
        lines = [l for l in p.stderr.splitlines() if l.startswith(m + ":")]
        self.assertEqual([int(l.split(":")[1]) for l in lines], [2, 4, 5, 6, 7, 8, 9], p.stderr)
        self.assertIn(m + ":2: bad table 'tabel'", p.stderr)
        self.assertIn(m + ":6: 2 values from address 65535 run past 65535", p.stderr)
        p = subprocess.run([harness.FAKE_MODBUS, "--tcp", "0", "--map", self.path("missing")],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("missing: No such file or directory", p.stderr)

    def test_bad_command_lines(self):
        for args in ([], ["--tcp", "0", "--rtu", "/dev/null"], ["--tcp", "70000"],
                     ["--tcp", "0", "--units", "0-3"], ["--tcp", "0", "--units", "5-2"],
                     ["--tcp", "0", "--units", "1,,x"], ["--tcp", "0", "--bogus"],
                     ["--tcp", "0", "extra"], ["--rtu", "x", "--parity", "X"],
                     ["--rtu", "x", "--data-bits", "9"], ["--rtu", "x", "--stop-bits", "3"]):
            p = subprocess.run([harness.FAKE_MODBUS] + args, capture_output=True, text=True,
                               timeout=10)
            self.assertEqual(p.returncode, 2, (args, p.stderr))
            self.assertIn("usage: fake-modbus", p.stderr, args)
            self.assertEqual(p.stdout, "", args)
        p = subprocess.run([harness.FAKE_MODBUS, "--help"], capture_output=True, text=True,
                           timeout=10)
        self.assertEqual(p.returncode, 0)
        self.assertIn("usage: fake-modbus", p.stdout)

    def test_units_restriction(self):
        fm = self.fake("--tcp", "0", "--units", "1,7,20-30")
        c = self.tcp_client(fm, timeout=NO_ANSWER)
        for unit in (1, 7, 20, 25, 30):
            self.assertFalse(c.read_holding_registers(0, 1, slave=unit).isError(), unit)
        t = time.monotonic()
        self.assertTrue(no_answer(c.read_holding_registers(0, 1, slave=2)))
        self.assertGreaterEqual(time.monotonic() - t, NO_ANSWER * 0.9)  # a timeout, no answer
        c = self.tcp_client(fm, timeout=NO_ANSWER)
        self.assertTrue(no_answer(c.read_holding_registers(0, 1, slave=31)))
        st = fm.stats()
        self.assertEqual((st["requests"], st["ignored"]), (7, 2), st)

    def test_concurrent_clients(self):
        fm = self.fake("--tcp", "0")
        errors = []

        def work(k):
            try:
                c = ModbusTcpClient("127.0.0.1", port=fm.port, timeout=2, retries=0)
                if not c.connect():
                    raise AssertionError("client %d cannot connect" % k)
                for i in range(40):
                    if c.write_register(k * 100 + i, k * 1000 + i, slave=1 + k % 3).isError():
                        raise AssertionError("client %d: write %d failed" % (k, i))
                    r = c.read_holding_registers(k * 100 + i, 1, slave=1 + k % 3)
                    if r.isError() or r.registers != [k * 1000 + i]:
                        raise AssertionError("client %d: read %d: %r" % (k, i, r))
                c.close()
            except Exception as e:  # reported by the main thread
                errors.append(e)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertFalse(any(t.is_alive() for t in threads), "clients hung")
        self.assertEqual(errors, [])
        self.assertEqual(fm.stats()["requests"], 6 * 80)
        self.assertEqual(fm.get(1 + 5 % 3, "holding", 539), [5039])

    def test_idle_and_half_frame_clients_do_not_stall_the_loop(self):
        fm = self.fake("--tcp", "0")
        idle = self.raw(fm)
        half = self.raw(fm)
        half.sendall(mbap(1, 1, read_holding_pdu(0, 1))[:5])
        c = self.tcp_client(fm)
        t = time.monotonic()
        fm.stats()
        self.assertFalse(c.read_holding_registers(0, 1, slave=1).isError())
        self.assertLess(time.monotonic() - t, 0.4)  # the half frame is given up after 0.5 s
        # The half frame is given up on (after 500 ms), the idle client is not.
        self.assertEqual(recv_mbap(half, 3.0), b"")
        self.assertIn("incomplete frame", fm.proc.output())
        idle.sendall(mbap(2, 1, read_holding_pdu(0, 1)))
        self.assertEqual(recv_mbap(idle), mbap(2, 1, bytes([3, 2, 0, 0])))

    def test_pipelined_requests_are_answered_in_order(self):
        fm = self.fake("--tcp", "0")
        fm.set(1, "holding", 0, 10, 11, 12)
        s = self.raw(fm)
        s.sendall(b"".join(mbap(t, 1, read_holding_pdu(t, 1)) for t in range(3)))
        for t in range(3):
            self.assertEqual(recv_mbap(s), mbap(t, 1, bytes([3, 2, 0, 10 + t])))

    def test_fault_delay(self):
        fm = self.fake("--tcp", "0")
        c = self.tcp_client(fm, timeout=2)
        fm.fault("delay", 500)
        took, result = [], []

        def read():
            t = time.monotonic()
            result.append(c.read_holding_registers(0, 1, slave=1))
            took.append(time.monotonic() - t)

        th = threading.Thread(target=read)
        th.start()
        time.sleep(0.05)
        t = time.monotonic()
        self.assertEqual(fm.stats()["requests"], 1)  # the control port answers meanwhile
        self.assertLess(time.monotonic() - t, 0.25)
        th.join(5)
        self.assertFalse(result[0].isError())
        self.assertGreaterEqual(took[0], 0.48)
        self.assertLess(took[0], 1.9)
        fm.fault("delay", 0)
        t = time.monotonic()
        self.assertFalse(c.read_holding_registers(0, 1, slave=1).isError())
        self.assertLess(time.monotonic() - t, 0.3)

    def test_fault_silent(self):
        fm = self.fake("--tcp", "0")
        fm.fault("silent", 2)
        c = self.tcp_client(fm, timeout=NO_ANSWER)
        self.assertTrue(no_answer(c.read_holding_registers(0, 1, slave=2)))
        c = self.tcp_client(fm, timeout=NO_ANSWER)
        self.assertFalse(c.read_holding_registers(0, 1, slave=1).isError())
        c = self.tcp_client(fm, timeout=NO_ANSWER)
        self.assertTrue(no_answer(c.write_register(0, 5, slave=2)))  # silent: not written either
        self.assertEqual(fm.get(2, "holding", 0), [0])
        fm.fault("silent", 0)  # every unit
        s = self.raw(fm)
        s.sendall(mbap(1, 1, read_holding_pdu(0, 1)))
        self.assertIsNone(recv_mbap(s, NO_ANSWER))  # accepted, read, never answered
        fm.fault("clear")
        s.sendall(mbap(2, 1, read_holding_pdu(0, 1)))
        self.assertEqual(recv_mbap(s), mbap(2, 1, bytes([3, 2, 0, 0])))
        st = fm.stats()
        self.assertEqual((st["requests"], st["ignored"]), (5, 3), st)

    def test_fault_exception_and_hole(self):
        fm = self.fake("--tcp", "0")
        c = self.tcp_client(fm)
        fm.fault("exception", 1, "holding", 100, 10, 4)
        self.assertEqual(c.read_holding_registers(95, 6, slave=1).exception_code, 4)
        self.assertEqual(c.read_holding_registers(109, 1, slave=1).exception_code, 4)
        self.assertFalse(c.read_holding_registers(90, 10, slave=1).isError())
        self.assertFalse(c.read_holding_registers(110, 5, slave=1).isError())
        self.assertFalse(c.read_coils(100, 1, slave=1).isError())          # other table
        self.assertFalse(c.read_holding_registers(100, 1, slave=2).isError())  # other unit
        self.assertEqual(c.write_register(105, 7, slave=1).exception_code, 4)
        self.assertEqual(fm.get(1, "holding", 105), [0])                   # not written
        fm.fault("hole", 0, "input", 50, 1)                                # every unit
        for unit in (1, 9):
            self.assertEqual(c.read_input_registers(40, 20, slave=unit).exception_code, 2)
        self.assertFalse(c.read_input_registers(51, 1, slave=9).isError())
        self.assertEqual(c.read_holding_registers(100, 1, slave=1).exception_code, 4)  # both stay
        self.assertEqual(fm.stats()["exceptions"], 6)
        _, f = self.control(fm)
        for i in range(62):
            self.assertEqual(self.say(f, "fault hole 1 coil %d 1" % i), "ok")
        self.assertTrue(self.say(f, "fault hole 1 coil 999 1").startswith("err too many"))
        self.assertTrue(self.say(f, "fault exception 1 holding 0 1 12").startswith("err"))
        self.assertTrue(self.say(f, "fault exception 1 holding 0 0 4").startswith("err"))
        fm.fault("clear")
        self.assertFalse(c.read_holding_registers(100, 1, slave=1).isError())

    def test_fault_garbage(self):
        fm = self.fake("--tcp", "0")
        fm.fault("garbage", 1)
        c = self.tcp_client(fm, timeout=NO_ANSWER)
        self.assertTrue(c.read_holding_registers(0, 1, slave=1).isError())
        c = self.tcp_client(fm)
        self.assertFalse(c.read_holding_registers(0, 1, slave=1).isError())  # only N answers
        fm.fault("garbage", 1)
        s = self.raw(fm)
        s.sendall(mbap(0x0102, 1, read_holding_pdu(0, 1)))
        s.settimeout(2)
        junk = s.recv(64)
        self.assertEqual(len(junk), 11)  # as long as the real answer
        self.assertNotEqual(junk[:2], b"\x01\x02")
        self.assertEqual(fm.stats()["damaged"], 2)

    def test_fault_drop(self):
        fm = self.fake("--tcp", "0")
        fm.fault("drop", 2)
        for _ in range(2):
            s = self.raw(fm)
            s.sendall(mbap(1, 1, read_holding_pdu(0, 1)))
            self.assertEqual(recv_mbap(s), b"")  # closed instead of answered
        s = self.raw(fm)
        s.sendall(mbap(1, 1, read_holding_pdu(0, 1)))
        self.assertEqual(recv_mbap(s), mbap(1, 1, bytes([3, 2, 0, 0])))
        self.assertEqual(fm.stats()["damaged"], 2)
        fm.fault("drop", 1)
        c = self.tcp_client(fm)
        try:
            failed = c.read_holding_registers(0, 1, slave=1).isError()
        except Exception:  # pymodbus may also raise on a connection closed under it
            failed = True
        self.assertTrue(failed)
        _, f = self.control(fm)
        self.assertTrue(self.say(f, "fault crc 1").startswith("err"))  # no CRC on TCP

    def test_broadcast_writes_every_unit_without_answer(self):
        fm = self.fake("--tcp", "0")
        fm.set(1, "holding", 0, 1)
        s = self.raw(fm)
        s.sendall(mbap(1, 0, struct.pack(">BHH", 6, 40, 0xABCD)))
        self.assertIsNone(recv_mbap(s, NO_ANSWER))
        self.assertEqual(fm.get(1, "holding", 40), [0xABCD])
        c = self.tcp_client(fm)
        self.assertEqual(c.read_holding_registers(40, 1, slave=33).registers, [0xABCD])
        st = fm.stats()
        self.assertEqual((st["requests"], st["writes"]), (2, 1), st)

    def test_control_protocol(self):
        fm = self.fake("--tcp", "0")
        c = self.tcp_client(fm)
        s, f = self.control(fm)
        self.assertEqual(self.say(f, "set 4 holding 0x10 1 0x2 65535"), "ok")
        self.assertEqual(self.say(f, "get 4 holding 16 4"), "ok 1 2 65535 0")
        self.assertEqual(self.say(f, "get 5 coil 0 3"), "ok 0 0 0")
        self.assertEqual(self.say(f, "set 5 coil 65535 1"), "ok")
        self.assertEqual(self.say(f, "get 5 coil 65535 1"), "ok 1")
        f.write("\n\r\n")  # blank lines are ignored, not answered
        for bad in ("set 4 holding 0 65536", "set 4 coil 0 2", "set 0 holding 0 1",
                    "set 4 holding 65535 1 2", "set 4 tabel 0 1", "set 4 holding 0",
                    "get 4 holding 0 0", "get 4 holding 65535 2", "get * holding 0 1",
                    "get 4 holding", "frobnicate", "stats now", "fault", "fault delay -1",
                    "fault silent 256", "fault garbage x"):
            self.assertTrue(self.say(f, bad).startswith("err "), bad)
        self.assertEqual(self.say(f, "stats"), "ok requests=0 reads=0 writes=0 exceptions=0 "
                                               "crc_errors=0 ignored=0 damaged=0 "
                                               "min_gap_us=-1")
        c.write_coil(7, True, slave=4)
        c.write_register(8, 3, slave=4)
        c.write_coils(9, [True] * 10, slave=4)
        c.read_input_registers(100, 125, slave=4)
        c.read_discrete_inputs(3, 2000, slave=4)
        self.assertEqual(fm.log(), [(4, 5, 7, 1), (4, 6, 8, 1), (4, 15, 9, 10), (4, 4, 100, 125),
                                    (4, 2, 3, 2000)])
        self.assertEqual(self.say(f, "log"), "ok 5")
        lines = [f.readline().strip() for _ in range(6)]
        self.assertEqual(lines, ["4 5 7 1", "4 6 8 1", "4 15 9 10", "4 4 100 125", "4 2 3 2000",
                                 "end"])
        self.assertEqual(fm.stats(), dict(requests=5, reads=2, writes=3, exceptions=0,
                                          crc_errors=0, ignored=0, damaged=0,
                                          min_gap_us=-1))  # -1: TCP
        self.assertEqual(self.say(f, "reset"), "ok")
        self.assertEqual(fm.log(), [])
        self.assertEqual(fm.stats()["requests"], 0)
        self.assertEqual(fm.get(4, "coil", 7), [1])  # reset keeps the tables
        # A control client that sends and half-closes still gets its answers.
        s2 = socket.create_connection(("127.0.0.1", fm.proc_control_port), timeout=5)
        s2.sendall(b"get 4 holding 16 2\nstats")  # the last line without its newline
        s2.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s2.recv(4096)
            if not chunk:
                break
            out += chunk
        s2.close()
        self.assertEqual(out.decode().splitlines()[0], "ok 1 2")
        self.assertTrue(out.decode().splitlines()[1].startswith("ok requests="))

    def test_large_get_and_log(self):
        fm = self.fake("--tcp", "0", "--quiet")
        fm.set(1, "holding", 0, *range(1000))
        self.assertEqual(fm.get(1, "holding", 0, 65536)[:1000], list(range(1000)))
        c = self.tcp_client(fm)
        for _ in range(200):
            c.read_holding_registers(0, 1, slave=1)
        self.assertEqual(len(fm.log()), 200)
        self.assertEqual(fm.proc.output(), "")  # --quiet

    def test_sigterm_and_sigint_exit_0(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            fm = self.fake("--tcp", "0", name="fake-%d" % sig)
            self.tcp_client(fm)  # a connected client does not delay the exit
            t = time.monotonic()
            fm.proc.kill(sig)
            self.assertEqual(fm.proc.wait(harness.STOP_TIMEOUT), 0)
            self.assertLess(time.monotonic() - t, 2)
            self.assert_clean_log(fm.proc)


@unittest.skipUnless(shutil.which("socat"), "socat is not installed")
class Rtu(FakeModbusCase):
    def setUp(self):
        super().setUp()
        self.a, self.b = self.socat_pair()

    def serial_client(self, timeout=1.0):
        c = ModbusSerialClient(port=self.a, baudrate=19200, timeout=timeout, retries=0)
        self.assertTrue(c.connect())
        self.later(c.close)
        return c

    def open_line(self):
        fd = os.open(self.a, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(fd)
        self.later(lambda: os.close(fd))
        return fd

    def read_line(self, fd, timeout=2.0, quiet=0.05):
        """Bytes from the line until quiet seconds of silence after the first byte; b"" when
        nothing comes within timeout."""
        deadline = time.monotonic() + timeout
        buf = b""
        while True:
            wait = quiet if buf else deadline - time.monotonic()
            if wait <= 0:
                return buf
            r, _, _ = select.select([fd], [], [], wait)
            if not r:
                return buf
            buf += os.read(fd, 512)

    def test_reads_and_writes_for_two_units(self):
        fm = self.fake("--rtu", self.b, "--baud", "19200", "--parity", "N", "--data-bits", "8",
                       "--stop-bits", "1")
        self.assertIsNone(fm.port)
        fm.set(1, "holding", 0, 42, 43)
        fm.set(17, "input", 3, 0x1717)
        fm.set(17, "discrete", 5, 1)
        c = self.serial_client()
        self.assertEqual(c.read_holding_registers(0, 2, slave=1).registers, [42, 43])
        self.assertEqual(c.read_input_registers(3, 1, slave=17).registers, [0x1717])
        self.assertTrue(c.read_discrete_inputs(5, 1, slave=17).bits[0])
        self.assertFalse(c.write_register(3, 7, slave=17).isError())
        self.assertFalse(c.write_registers(10, [1, 2, 3], slave=1).isError())
        self.assertFalse(c.write_coil(1, True, slave=17).isError())
        self.assertFalse(c.write_coils(0, [True, True, False, True], slave=1).isError())
        self.assertEqual(fm.get(17, "holding", 3), [7])
        self.assertEqual(fm.get(1, "holding", 10, 3), [1, 2, 3])
        self.assertEqual(fm.get(1, "holding", 3), [0])  # separate units
        self.assertEqual(c.read_coils(0, 4, slave=1).bits[:4], [True, True, False, True])
        self.assertEqual(c.read_coils(1, 1, slave=17).bits[0], True)
        self.assertEqual(c.read_holding_registers(65535, 2, slave=1).exception_code, 2)
        self.assertEqual(fm.log()[:2], [(1, 3, 0, 2), (17, 4, 3, 1)])
        st = fm.stats()
        self.assertEqual((st["requests"], st["reads"], st["writes"], st["exceptions"]),
                         (10, 6, 4, 1), st)

    def test_bad_crc_is_dropped_and_counted(self):
        fm = self.fake("--rtu", self.b)
        fm.set(1, "holding", 0, 0x0102)
        fd = self.open_line()
        bad = bytearray(rtu(1, read_holding_pdu(0, 1)))
        bad[-1] ^= 0x55
        os.write(fd, bytes(bad))
        self.assertEqual(self.read_line(fd, NO_ANSWER), b"")
        st = fm.stats()
        self.assertEqual((st["crc_errors"], st["requests"]), (1, 0), st)
        os.write(fd, rtu(1, read_holding_pdu(0, 1)))
        self.assertEqual(self.read_line(fd), rtu(1, bytes([3, 2, 1, 2])))

    def test_fault_crc(self):
        fm = self.fake("--rtu", self.b)
        fm.set(1, "holding", 0, 5)
        fm.fault("crc", 1)
        c = self.serial_client()
        self.assertTrue(c.read_holding_registers(0, 1, slave=1).isError())  # CRC error
        self.assertEqual(c.read_holding_registers(0, 1, slave=1).registers, [5])
        c.close()
        fm.fault("crc", 1)
        fd = self.open_line()
        os.write(fd, rtu(1, read_holding_pdu(0, 1)))
        got = self.read_line(fd)
        good = rtu(1, bytes([3, 2, 0, 5]))
        self.assertEqual(got[:-2], good[:-2])  # the right data ...
        self.assertNotEqual(got[-2:], good[-2:])  # ... with a wrong CRC
        self.assertEqual(fm.stats()["damaged"], 2)
        _, f = self.control(fm)
        self.assertTrue(self.say(f, "fault drop 1").startswith("err"))  # no connection on RTU

    def test_fault_garbage_delay_and_silent(self):
        fm = self.fake("--rtu", self.b)
        fd = self.open_line()
        fm.fault("garbage", 1)
        os.write(fd, rtu(1, read_holding_pdu(0, 2)))
        junk = self.read_line(fd)
        self.assertEqual(len(junk), 9)  # as long as the real answer, with a bad CRC
        self.assertNotEqual(struct.unpack("<H", junk[-2:])[0], crc16(junk[:-2]))
        fm.fault("delay", 200)
        t = time.monotonic()
        os.write(fd, rtu(1, read_holding_pdu(0, 1)))
        self.assertEqual(self.read_line(fd, quiet=0.02), rtu(1, bytes([3, 2, 0, 0])))
        self.assertGreaterEqual(time.monotonic() - t, 0.18)
        fm.fault("clear")
        fm.fault("silent", 1)
        os.write(fd, rtu(1, read_holding_pdu(0, 1)))
        self.assertEqual(self.read_line(fd, NO_ANSWER), b"")
        self.assertEqual(fm.stats()["ignored"], 1)

    def test_partial_frames_unknown_functions_and_unserved_units(self):
        fm = self.fake("--rtu", self.b, "--units", "1,17")
        fd = self.open_line()
        frame = rtu(17, read_holding_pdu(0, 1))
        os.write(fd, frame[:3])
        time.sleep(0.15)  # longer than the 50 ms after which a partial frame is dropped
        os.write(fd, frame)
        self.assertEqual(self.read_line(fd), rtu(17, bytes([3, 2, 0, 0])))
        os.write(fd, rtu(1, bytes([0x41, 9, 9, 9])))  # length unknown: ends at silence
        self.assertEqual(self.read_line(fd), rtu(1, bytes([0xC1, 1])))
        for unit in (2, 255):  # not served (255 is served by default on TCP only)
            os.write(fd, rtu(unit, read_holding_pdu(0, 1)))
            self.assertEqual(self.read_line(fd, NO_ANSWER), b"")
        # two frames in one write are both answered
        os.write(fd, rtu(1, read_holding_pdu(0, 1)) + rtu(17, read_holding_pdu(1, 1)))
        self.assertEqual(self.read_line(fd),
                         rtu(1, bytes([3, 2, 0, 0])) + rtu(17, bytes([3, 2, 0, 0])))
        st = fm.stats()
        self.assertEqual((st["requests"], st["ignored"], st["exceptions"], st["crc_errors"]),
                         (6, 2, 1, 0), st)

    def test_broadcast_writes_without_answer(self):
        fm = self.fake("--rtu", self.b)
        fm.set(1, "holding", 0, 1)
        fd = self.open_line()
        os.write(fd, rtu(0, struct.pack(">BHHB", 16, 7, 2, 4) + b"\x00\x05\x00\x06"))
        self.assertEqual(self.read_line(fd, NO_ANSWER), b"")
        self.assertEqual(fm.get(1, "holding", 7, 2), [5, 6])
        os.write(fd, rtu(9, read_holding_pdu(7, 2)))
        self.assertEqual(self.read_line(fd), rtu(9, bytes([3, 4, 0, 5, 0, 6])))

    def test_min_gap_between_answer_and_next_request(self):
        fm = self.fake("--rtu", self.b)
        self.assertEqual(fm.stats()["min_gap_us"], -1)  # nothing measured yet
        fd = self.open_line()
        for pause in (0.2, 0.06, 0.15):
            os.write(fd, rtu(1, read_holding_pdu(0, 1)))
            self.assertEqual(self.read_line(fd, quiet=0.01), rtu(1, bytes([3, 2, 0, 0])))
            time.sleep(pause)
        os.write(fd, rtu(1, read_holding_pdu(0, 1)))
        self.read_line(fd, quiet=0.01)
        gap = fm.stats()["min_gap_us"]
        self.assertGreaterEqual(gap, 60000)  # the shortest pause, never less
        self.assertLess(gap, 150000)
        fm.reset()
        self.assertEqual(fm.stats()["min_gap_us"], -1)
        # A master that does not wait for the answer: the next request is already there.
        os.write(fd, rtu(1, read_holding_pdu(0, 1)) + rtu(1, read_holding_pdu(1, 1)))
        self.assertEqual(len(self.read_line(fd)), 14)
        self.assertEqual(fm.stats()["min_gap_us"], 0)

    def test_sigterm_exit_0(self):
        fm = self.fake("--rtu", self.b)
        fm.proc.kill(signal.SIGTERM)
        self.assertEqual(fm.proc.wait(harness.STOP_TIMEOUT), 0)
        self.assert_clean_log(fm.proc)


if __name__ == "__main__":
    harness.main()
