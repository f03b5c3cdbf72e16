#!/usr/bin/python3
"""The uplink against the ThingsBoard emulator: one session per device with every
credential form (token, MQTT basic combinations, X.509 over TLS with a throwaway CA),
TLS failures explained, bad credentials, refusals and drops, provisioning (and the restart
that must reuse what was provisioned), exact payloads per device, QoS 0."""
import json
import os
import stat
import time

import harness


def tag(key, address, table="holding", type_="uint16"):
    return '{ key = "%s"; table = "%s"; address = %d; type = "%s"; }' % (key, table, address, type_)


class Uplink(harness.TestCase):
    def bus(self, fm, devices):
        """devices: list of (name, unit, credentials-text, keys)."""
        devs = ", ".join('{ name = "%s"; unit_id = %d; poll_ms = 100; %s telemetry = ( %s ); }'
                         % (n, u, cred, ", ".join(tag(k, i) for i, k in enumerate(keys)))
                         for n, u, cred, keys in devices)
        return ('{ name = "plc"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d; '
                'timeout_ms = 300; devices = ( %s ); }' % (fm.port, devs))

    def keys_of(self, emu, device):
        return {k for _, k, _ in emu.telemetry(device)}

    def test_token_and_basic_credentials(self):
        emu = self.emulator()
        emu.add_device("tok", token="TOK")
        emu.add_device("cid-only", client_id="cid-1")
        emu.add_device("user-pass", username="u1", password="p1")
        emu.add_device("cid-user", client_id="cid-2", username="u2", password="p2")
        fm = self.fake_modbus("--tcp", "0")
        bus = self.bus(fm, [
            ("tok", 1, 'token = "TOK";', ["a"]),
            ("cid-only", 2, 'mqtt = { client_id = "cid-1"; };', ["b"]),
            ("user-pass", 3, 'mqtt = { username = "u1"; password = "p1"; };', ["c"]),
            ("cid-user", 4, 'mqtt = { client_id = "cid-2"; username = "u2"; password = "p2"; };', ["d"]),
        ])
        proc, notify, _ = self.start_tbgw(self.config(emu.port, bus))
        # Each device's data arrives under its own identity, and only its own keys.
        for dev, key in (("tok", "a"), ("cid-only", "b"), ("user-pass", "c"), ("cid-user", "d")):
            emu.wait(lambda: self.keys_of(emu, dev) == {key}, 10, "telemetry of " + dev)
        self.assertEqual(sorted(c[0] for c in emu.connacks if c[2] == 0 and c[0].startswith("cid")),
                         ["cid-1", "cid-2"])
        self.stop_tbgw(proc)

    def test_payload_shape_and_timestamps(self):
        emu = self.emulator(devices=[("a", "TA"), ("b", "TB")])
        fm = self.fake_modbus("--tcp", "0")
        fm.set(1, "holding", 0, 5, 6)
        bus = self.bus(fm, [("a", 1, 'token = "TA";', ["x", "y"]), ("b", 1, 'token = "TB";', ["z"])])
        t0 = int(time.time() * 1000)
        proc, notify, _ = self.start_tbgw(self.config(emu.port, bus))
        m = emu.wait_messages("a", "v1/devices/me/telemetry", 3)[0]
        t1 = int(time.time() * 1000)
        body = m.json()
        self.assertIsInstance(body, list)
        self.assertEqual(set(body[0]), {"ts", "values"})
        self.assertEqual(body[0]["values"], {"x": 5, "y": 6})
        self.assertTrue(t0 - 50 <= body[0]["ts"] <= t1, (t0, body[0]["ts"], t1))
        self.assertLessEqual(len(m.payload), 4096)
        self.assertEqual(m.qos, 1)
        self.assertTrue(all(k == "z" for _, k, _ in emu.telemetry("b")))
        self.stop_tbgw(proc)

    def test_qos0(self):
        emu = self.emulator(devices=[("a", "TA")])
        fm = self.fake_modbus("--tcp", "0")
        proc, notify, _ = self.start_tbgw(self.config(emu.port, self.bus(fm, [("a", 1, 'token = "TA";', ["x"])]),
                                                      edge="qos = 0;"))
        m = emu.wait_messages("a", "v1/devices/me/telemetry", 2)[0]
        self.assertEqual(m.qos, 0)
        self.stop_tbgw(proc)

    def test_bad_credentials_are_logged_once_and_not_hammered(self):
        emu = self.emulator(devices=[("good", "GOOD")])
        emu.add_device("basic", client_id="cid-9", username="u9", password="right-one")
        fm = self.fake_modbus("--tcp", "0")
        bus = self.bus(fm, [("good", 1, 'token = "GOOD";', ["x"]), ("bad", 2, 'token = "WRONG";', ["y"]),
                            ("basic", 3, 'mqtt = { client_id = "cid-9"; username = "u9"; '
                                         'password = "Wrong-One"; };', ["z"])])
        proc, notify, _ = self.start_tbgw(self.config(emu.port, bus))
        emu.wait(lambda: "device 'bad': the edge refused the connection" in proc.output()
                 and "device 'basic': the edge refused" in proc.output(), 10)
        time.sleep(3)
        tries = [c for c in emu.connacks if c[1] == "WRONG"]
        self.assertEqual(len(tries), 1, tries)  # the next try is a minute away
        self.assertEqual(proc.output().count("refused the connection"), 2)
        # The secrets themselves are never logged, but enough to spot a typo is.
        self.assertNotIn("WRONG", proc.output())
        self.assertNotIn("Wrong-One", proc.output())
        self.assertIn("device 'bad': the edge refused the connection with access token (5 chars) "
                      "(CONNACK 5: not authorized", proc.output())
        self.assertIn("device 'basic': the edge refused the connection with client id 'cid-9', "
                      "user 'u9', password (9 chars) (CONNACK 5", proc.output())
        emu.wait(lambda: emu.telemetry("good"), 10)  # the others are not held up
        st = json.loads(self.tbgwctl("status", "--json").stdout)
        bad = [d for d in st["devices"] if d["name"] == "bad"][0]
        self.assertEqual(bad["edge"], "refused")
        self.stop_tbgw(proc)

    def test_server_unavailable_then_back(self):
        emu = self.emulator(devices=[("a", "TA")])
        emu.refuse(3)
        fm = self.fake_modbus("--tcp", "0")
        proc, notify, _ = self.start_tbgw(self.config(emu.port, self.bus(fm, [("a", 1, 'token = "TA";', ["x"])])))
        emu.wait(lambda: len([c for c in emu.connacks if c[2] == 3]) >= 2, 10)
        self.assertIn("CONNACK 3: server unavailable", proc.output())
        emu.refuse(None)
        emu.wait_connected("a", 20)
        emu.wait(lambda: emu.telemetry("a"), 10)
        self.assertIn("device 'a': connected to the edge", proc.output())
        self.stop_tbgw(proc)

    def test_drop_and_tcp_refusal(self):
        emu = self.emulator(devices=[("a", "TA"), ("b", "TB")])
        fm = self.fake_modbus("--tcp", "0")
        bus = self.bus(fm, [("a", 1, 'token = "TA";', ["x"]), ("b", 1, 'token = "TB";', ["y"])])
        proc, notify, _ = self.start_tbgw(self.config(emu.port, bus))
        emu.wait_connected("a")
        emu.drop("a")
        emu.wait(lambda: emu.connect_count("a") >= 2, 10)
        emu.refuse_tcp(True)
        emu.drop_all()
        emu.wait(lambda: "cannot connect" in proc.output(), 15)
        time.sleep(1)
        # The Edge's own outage is one line, not one per device or per attempt.
        self.assertEqual(proc.output().count("cannot connect"), 1, proc.output())
        emu.refuse_tcp(False)
        emu.wait(lambda: emu.connected("a") and emu.connected("b"), 30)
        # The emulator counts a session from the CONNACK it writes; tbgw logs when its
        # uplink thread has handled that CONNACK, a few milliseconds later.
        harness.wait_until(lambda: "reachable again" in proc.output(), 10, "the recovery line")
        self.assertEqual(proc.output().count("reachable again"), 1, proc.output())
        self.stop_tbgw(proc)


    def test_connects_in_flight_are_bounded(self):
        # An Edge that accepts TCP but never answers CONNECT: every attempt stays in flight
        # until paho's 10 s connect timeout, so the connections it sees in the first
        # seconds are the CONNECTs tbgw has in flight at once (at most 32).
        import socket
        import threading
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", 0))
        srv.listen(128)
        srv.settimeout(0.2)
        held, stop = [], threading.Event()

        def accept():
            while not stop.is_set():
                try:
                    held.append(srv.accept()[0])
                except OSError:
                    pass

        t = threading.Thread(target=accept)
        t.start()

        def close():
            stop.set()
            t.join()
            for c in held:
                c.close()
            srv.close()
        self.later(close)
        fm = self.fake_modbus("--tcp", "0")
        names = ["d%02d" % i for i in range(40)]
        bus = self.bus(fm, [(n, 1, 'token = "T%s";' % n, ["x"]) for n in names])
        proc, _, _ = self.start_tbgw(self.config(srv.getsockname()[1], bus))
        harness.wait_until(lambda: len(held) >= 32, 10, "32 connections")
        time.sleep(2)
        self.assertEqual(len(held), 32)
        self.stop_tbgw(proc)


class Tls(harness.TestCase):
    def setUp(self):
        super().setUp()
        self.pki = harness.make_pki(self.path("pki"), clients=("dev-x509",))

    def tls_emulator(self, server="server"):
        emu = self.emulator(tls=dict(certfile=self.pki[server][0], keyfile=self.pki[server][1],
                                     cafile=self.pki["ca"][0]))
        with open(self.pki["dev-x509"][0]) as f:
            emu.add_device("x", cert_pem=f.read())
        emu.add_device("t", token="TT")
        return emu

    def tls_config(self, emu, ca="ca", extra=""):
        fm = self.fake_modbus("--tcp", "0")
        crt, key = self.pki["dev-x509"]
        bus = ('{ name = "plc"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d; devices = ( '
               '{ name = "x"; unit_id = 1; poll_ms = 100; x509 = { cert_file = "%s"; key_file = "%s"; }; '
               'telemetry = ( %s ); }, '
               '{ name = "t"; unit_id = 2; poll_ms = 100; token = "TT"; telemetry = ( %s ); } ); }'
               % (fm.port, crt, key, tag("a", 0), tag("b", 0)))
        return self.config(emu.tls_port, bus, edge='tls = { ca_file = "%s"; %s };' % (self.pki[ca][0], extra))

    def test_x509_and_token_over_tls(self):
        emu = self.tls_emulator()
        proc, notify, _ = self.start_tbgw(self.tls_config(emu))
        emu.wait(lambda: emu.telemetry("x") and emu.telemetry("t"), 15)
        self.stop_tbgw(proc)

    def check_failure(self, server, ca, expected, extra=""):
        """expected: the reason, or a tuple of acceptable reasons."""
        emu = self.tls_emulator(server)
        proc, notify, _ = self.start_tbgw(self.tls_config(emu, ca, extra))
        emu.wait(lambda: "cannot connect" in proc.output(), 15, "the TLS failure line")
        out = proc.output()
        expected = expected if isinstance(expected, tuple) else (expected,)
        self.assertTrue(any(e in out for e in expected), out)
        self.assertEqual(out.count("cannot connect"), 1)
        self.assertFalse(emu.connected("t"))
        self.stop_tbgw(proc)

    def test_unknown_ca(self):
        # Which of the two OpenSSL says depends on whether the server sends its root along.
        self.check_failure("server", "other-ca", (
            "the edge's certificate is not accepted: unable to get local issuer certificate",
            "the edge's certificate is not accepted: self-signed certificate in certificate chain"))

    def test_expired(self):
        self.check_failure("server-expired", "ca", "the edge's certificate is not accepted: "
                                                   "certificate has expired")

    def test_hostname_mismatch(self):
        self.check_failure("server-wronghost", "ca", "the edge's certificate is not accepted: "
                                                     "IP address mismatch")

    def test_hostname_check_can_be_disabled(self):
        emu = self.tls_emulator("server-wronghost")
        proc, notify, _ = self.start_tbgw(self.tls_config(emu, "ca", "verify_hostname = false;"))
        emu.wait(lambda: emu.telemetry("t"), 15)
        self.stop_tbgw(proc)


class Provisioning(harness.TestCase):
    def config_for(self, emu, fm, secret="S"):
        bus = ('{ name = "plc"; driver = "modbus-tcp"; host = "127.0.0.1"; port = %d; devices = ( '
               '{ name = "newdev"; unit_id = 1; poll_ms = 100; provision = { key = "K"; secret = "%s"; }; '
               'telemetry = ( %s ); } ); }' % (fm.port, secret, tag("a", 0)))
        return self.config(emu.port, bus)

    def test_provision_store_and_reuse_after_restart(self):
        emu = self.emulator()
        emu.add_provision_profile("K", "S")
        fm = self.fake_modbus("--tcp", "0")
        cfg = self.config_for(emu, fm)
        proc, notify, _ = self.start_tbgw(cfg)
        emu.wait(lambda: "newdev" in emu.devices and emu.telemetry("newdev"), 15)
        self.assertEqual(len(emu.provisions), 1)
        req, resp = emu.provisions[0]
        self.assertEqual(req, {"deviceName": "newdev", "provisionDeviceKey": "K",
                               "provisionDeviceSecret": "S"})
        creds = self.path("state", "credentials.json")
        self.assertEqual(stat.S_IMODE(os.stat(creds).st_mode), 0o600)
        with open(creds) as f:
            self.assertEqual(json.load(f)["devices"]["newdev"]["token"], resp["credentialsValue"])
        self.assertNotIn(resp["credentialsValue"], proc.output())
        self.stop_tbgw(proc)
        # A restart uses what was stored: ThingsBoard would refuse a second provisioning.
        n = len(emu.telemetry("newdev"))
        proc, notify, _ = self.start_tbgw(cfg, name="tbgw2")
        emu.wait(lambda: len(emu.telemetry("newdev")) > n + 2, 15)
        self.assertEqual(len(emu.provisions), 1)
        self.stop_tbgw(proc)

    def test_refused_provisioning_halts_the_device(self):
        emu = self.emulator()
        emu.add_provision_profile("K", "S")
        fm = self.fake_modbus("--tcp", "0")
        proc, notify, _ = self.start_tbgw(self.config_for(emu, fm, secret="WRONG"))
        emu.wait(lambda: "ThingsBoard refused to provision it (NOT_FOUND: Provision data was not found!)"
                 in proc.output(), 15)
        time.sleep(2)
        self.assertEqual(len(emu.provisions), 1)  # no second try
        st = json.loads(self.tbgwctl("status", "--json").stdout)
        self.assertEqual(st["devices"][0]["edge"], "halted")
        self.assertIn("NOT_FOUND", st["devices"][0]["edge_reason"])
        self.stop_tbgw(proc)


if __name__ == "__main__":
    harness.main()
