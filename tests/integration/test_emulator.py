#!/usr/bin/python3
"""The ThingsBoard emulator (tests/fakes/tb_emulator.py) checked against the rules of
thingsboard-device-api.md, with an independent MQTT client (Debian's python3-paho-mqtt)
and, where paho cannot produce the bad input, raw sockets.

Run directly: /usr/bin/python3 tests/integration/test_emulator.py
Exit status 77 (automake SKIP) when paho is not installed.
"""
import base64
import hashlib
import json
import os
import queue
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import warnings
import zlib

FAKES = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'fakes')
sys.path.insert(0, FAKES)

try:
    import paho.mqtt.client as mqtt
except ImportError:
    print("SKIP: python3-paho-mqtt is not installed")
    sys.exit(77)

import tb_emulator  # noqa: E402  (after the path set-up above)
from tb_emulator import Emulator, tb_checksum  # noqa: E402

TIMEOUT = 5.0          # bound on every single wait for something that should happen
QUIET = 0.3            # how long "nothing arrives" is watched


# ---------------------------------------------------------------------------------------------
# Clients

class Client:
    """A paho MQTT 3.1.1 client that records CONNACK, SUBACKs, PUBACKs, messages and the end
    of the connection. It never reconnects by itself."""

    def __init__(self, port, username=None, password=None, client_id="test", tls=None,
                 clean=True, protocol=mqtt.MQTTv311):
        self.c = mqtt.Client(client_id=client_id, protocol=protocol, clean_session=clean,
                             reconnect_on_failure=False)
        if username is not None or password is not None:
            self.c.username_pw_set(username, password)
        if tls:
            with warnings.catch_warnings():
                # paho 1.6 builds its context with ssl.PROTOCOL_TLS, deprecated since 3.10.
                warnings.simplefilter("ignore", DeprecationWarning)
                self.c.tls_set(**tls)
        self.connacks = queue.Queue()
        self.msgs = queue.Queue()
        self.subacks = queue.Queue()
        self.acked = []
        self.ack_cond = threading.Condition()
        self.gone = threading.Event()
        self.c.on_connect = lambda c, u, flags, rc: self.connacks.put(
            (rc, flags.get("session present")))
        self.c.on_message = lambda c, u, m: self.msgs.put((m.topic, m.payload, m.qos))
        self.c.on_subscribe = lambda c, u, mid, granted: self.subacks.put(tuple(granted))
        self.c.on_publish = self._on_publish
        self.c.on_disconnect = lambda c, u, rc: self.gone.set()
        self.c.connect("127.0.0.1", port, 30)
        self.c.loop_start()

    def _on_publish(self, c, u, mid):
        with self.ack_cond:
            self.acked.append(mid)
            self.ack_cond.notify_all()

    def connack(self):
        """The CONNACK return code."""
        return self.connacks.get(timeout=TIMEOUT)[0]

    def sub(self, *filters, qos=1):
        """Subscribe in one SUBSCRIBE; returns the granted codes."""
        self.c.subscribe([(f, qos) for f in filters])
        return self.subacks.get(timeout=TIMEOUT)

    def unsub(self, topic):
        self.c.unsubscribe(topic)

    def pub(self, topic, payload, qos=1):
        """Publish; returns the message id."""
        return self.c.publish(topic, payload, qos).mid

    def wait_ack(self, mid, timeout=TIMEOUT):
        """True once mid is PUBACKed, False if not within timeout."""
        with self.ack_cond:
            return self.ack_cond.wait_for(lambda: mid in self.acked, timeout)

    def msg(self, timeout=TIMEOUT):
        """(topic, payload, qos) of the next message."""
        return self.msgs.get(timeout=timeout)

    def no_msg(self, timeout=QUIET):
        try:
            m = self.msgs.get(timeout=timeout)
        except queue.Empty:
            return True
        raise AssertionError("unexpected message %r" % (m,))

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def _mqtt_str(b):
    if isinstance(b, str):
        b = b.encode()
    return struct.pack("!H", len(b)) + b


def _varint(n):
    out = bytearray()
    while True:
        n, d = n >> 7, n & 0x7F
        out.append(d | 0x80 if n else d)
        if not n:
            return bytes(out)


def packet(first, body):
    return bytes((first,)) + _varint(len(body)) + body


def connect_packet(client_id="raw", username=None, password=None, clean=True, proto=b"MQTT",
                   level=4):
    flags = (0x02 if clean else 0) | (0x80 if username is not None else 0) \
        | (0x40 if password is not None else 0)
    body = _mqtt_str(proto) + bytes((level, flags)) + struct.pack("!H", 60) + _mqtt_str(client_id)
    if username is not None:
        body += _mqtt_str(username)
    if password is not None:
        body += _mqtt_str(password)
    return packet(0x10, body)


def publish_packet(topic, payload, qos=1, pid=1):
    if isinstance(payload, str):
        payload = payload.encode()
    return packet(0x30 | (qos << 1), _mqtt_str(topic) + (struct.pack("!H", pid) if qos else b"")
                  + payload)


class Raw:
    """A hand-made MQTT client on a plain socket, for input paho refuses to produce."""

    def __init__(self, port, ctx=None):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        if ctx is not None:
            self.s = ctx.wrap_socket(self.s, server_hostname="127.0.0.1")
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def connect(self, **kw):
        """Send CONNECT; returns (session present, return code) of the CONNACK."""
        self.send(connect_packet(**kw))
        p = self.packet()
        if p is None:
            raise ConnectionError("closed before CONNACK")
        assert p[0] == 2, p
        return p[2][0], p[2][1]

    def publish(self, topic, payload, qos=1, pid=1):
        self.send(publish_packet(topic, payload, qos, pid))

    def packet(self, timeout=TIMEOUT):
        """(type, flags, body) of the next packet; None at end of stream."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                length, shift, i = 0, 0, 1
                while i < len(self.buf):
                    b = self.buf[i]
                    i += 1
                    length |= (b & 0x7F) << shift
                    shift += 7
                    if not b & 0x80:
                        if len(self.buf) >= i + length:
                            first, body = self.buf[0], self.buf[i:i + length]
                            self.buf = self.buf[i + length:]
                            return first >> 4, first & 15, body
                        break
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no packet within %.1fs" % timeout)
            self.s.settimeout(left)
            try:
                data = self.s.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                return None
            if not data:
                return None
            self.buf += data

    def packets_until_closed(self, timeout=TIMEOUT):
        """Every packet received before the server closes the connection."""
        out = []
        while True:
            p = self.packet(timeout)
            if p is None:
                return out
            out.append(p)

    def close(self):
        self.s.close()


# ---------------------------------------------------------------------------------------------
# Base class

class EmuTest(unittest.TestCase):
    """One emulator per test (127.0.0.1, free port), stopped afterwards."""

    emu_options = {}

    def setUp(self):
        self.emu = Emulator(**self.emu_options)
        self.emu.add_device("dev", token="TOKEN")
        self.emu.start()
        self.addCleanup(self.emu.stop)

    def client(self, username="TOKEN", port=None, **kw):
        c = Client(port or self.emu.port, username=username, **kw)
        self.addCleanup(c.close)
        return c

    def connected_client(self, username="TOKEN", **kw):
        c = self.client(username, **kw)
        self.assertEqual(c.connack(), 0)
        return c

    def raw(self, port=None, ctx=None):
        r = Raw(port or self.emu.port, ctx)
        self.addCleanup(r.close)
        return r

    def raw_session(self, username="TOKEN"):
        r = self.raw()
        self.assertEqual(r.connect(username=username)[1], 0)
        return r

    def assert_rejected(self, topic, payload, device="dev", username="TOKEN"):
        """A QoS 1 PUBLISH that ThingsBoard rejects: the connection closes, no PUBACK, and
        the message is recorded as rejected."""
        r = self.raw_session(username)
        r.publish(topic, payload, qos=1, pid=7)
        got = r.packets_until_closed()
        self.assertNotIn(4, [p[0] for p in got], "PUBACK for rejected %r on %s" % (payload, topic))
        last = self.emu.messages(device, topic)[-1]
        self.assertTrue(last.rejected)
        self.assertEqual(last.payload, payload if isinstance(payload, bytes) else payload.encode())
        return got


def openssl(cwd, *args):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True,
                   timeout=30)


def make_pki(d):
    """A throwaway CA, a server certificate for 127.0.0.1, client certificates "dev" and
    "other" signed by the CA, and a self-signed "rogue" one. Returns {name: (crt, key)}."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(d, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=test CA",
            "-days", "2")
    openssl(d, "req", "-x509", *ec, "-keyout", "rogue.key", "-out", "rogue.crt", "-subj",
            "/CN=rogue", "-days", "2")
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "dev", "other", "prov"):
        openssl(d, "req", *ec, "-keyout", name + ".key", "-out", name + ".csr", "-subj",
                "/CN=" + name)
        openssl(d, "x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", name + ".crt", "-days", "2",
                *(["-extfile", "server.ext"] if name == "server" else []))
    return {n: (os.path.join(d, n + ".crt"), os.path.join(d, n + ".key"))
            for n in ("ca", "rogue", "server", "dev", "other", "prov")}


# ---------------------------------------------------------------------------------------------
# Checksums (no network)

class Checksums(unittest.TestCase):
    FOX = b"The quick brown fox jumps over the lazy dog"

    def test_guava_known_hashes(self):
        # Guava's HashingTest.KNOWN_HASHES (guava-tests/test/com/google/common/hash/
        # HashingTest.java): the strings ThingsBoard's generateChecksum prints.
        known = [
            ("MURMUR3_32", b"", "00000000"),
            ("MURMUR3_32", self.FOX, "23f74f2e"),
            ("MURMUR3_32", self.FOX + b".", "fc8bc4d5"),
            ("MURMUR3_128", b"", "00000000000000000000000000000000"),
            ("MURMUR3_128", self.FOX, "6c1b07bc7bbc4be347939ac4a93c437a"),
            ("MURMUR3_128", self.FOX + b".", "c902e99e1f4899cde7b68789a3a15d69"),
            ("CRC32", b"", "00000000"),
            ("CRC32", self.FOX, "39a34f41"),
            ("CRC32", self.FOX + b".", "e9259051"),
            ("MD5", self.FOX, "9e107d9d372bb6826bd81d3542a419d6"),
            ("SHA256", self.FOX,
             "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592"),
        ]
        for alg, data, want in known:
            with self.subTest(alg=alg, data=data):
                self.assertEqual(tb_checksum(alg, data), want)

    def test_little_endian_32_bit_hashes(self):
        # The check value of CRC-32 is 0xcbf43926; ThingsBoard prints its bytes little-endian.
        self.assertEqual(tb_checksum("CRC32", b"123456789"), "2639f4cb")
        # MurmurHash3_x86_32("hello", seed 0) = 0x248bfa47 (613153351) with Austin Appleby's
        # reference MurmurHash3.cpp, the value every port of it publishes (e.g. Python's
        # mmh3.hash("hello")); Guava's HashCode prints those bytes little-endian.
        self.assertEqual(tb_emulator.murmur3_32(b"hello"), 0x248BFA47)
        self.assertEqual(tb_checksum("MURMUR3_32", b"hello"), "47fa8b24")

    def test_murmur3_128_tails(self):
        # Every tail length of the x64 variant (1..15 bytes after whole 16-byte blocks) must
        # stay consistent with the block path: hashing a prefix never equals the whole.
        data = bytes(range(64))
        seen = {tb_checksum("MURMUR3_128", data[:n]) for n in range(40)}
        self.assertEqual(len(seen), 40)
        self.assertEqual(tb_emulator.murmur3_128(self.FOX),
                         (0xE34BBC7BBC071B6C, 0x7A433CA9C49A9347))


# ---------------------------------------------------------------------------------------------
# Authentication and the session

class Authentication(EmuTest):
    def setUp(self):
        super().setUp()
        self.emu.add_device("cid", client_id="only-cid")
        self.emu.add_device("user", username="u-only", password="pw")
        self.emu.add_device("pair", client_id="c1", username="u1", password="p1")
        self.emu.add_device("pair-nopw", client_id="c2", username="u2")

    def connack(self, **kw):
        c = self.client(**kw)
        return c.connack()

    def test_access_token_ignores_password_and_client_id(self):
        self.assertEqual(self.connack(username="TOKEN", password="whatever", client_id="x"), 0)
        self.emu.wait_connected("dev")
        self.assertIn(("x", "TOKEN", 0), self.emu.connacks)

    def test_basic_credentials(self):
        cases = [
            # (client id, username, password) -> CONNACK code
            (("only-cid", None, None), 0),
            (("only-cid", "x", None), 5),     # with a username the client id is no key
            (("nobody", None, None), 2),      # only an unknown client id: identifier rejected
            (("", None, None), 5),            # nothing at all
            (("any", "u-only", "pw"), 0),
            (("any", "u-only", "bad"), 5),
            (("any", "u-only", None), 5),
            (("c1", "u1", "p1"), 0),
            (("c1", "u1", "bad"), 5),         # password mismatch on the pair is final
            (("zz", "u1", "p1"), 5),          # pair not found, u1 alone is no credential
            (("c2", "u2", "anything"), 0),    # empty stored password accepts any
            (("c2", "u2", None), 0),
            (("x", "c1", None), 5),
        ]
        for (cid, user, pw), code in cases:
            with self.subTest(client_id=cid, username=user, password=pw):
                c = Client(self.emu.port, username=user, password=pw, client_id=cid)
                try:
                    self.assertEqual(c.connack(), code)
                    if code:
                        self.assertTrue(c.gone.wait(TIMEOUT), "not closed after refusal")
                finally:
                    c.close()
        self.assertIn(("nobody", None, 2), self.emu.connacks)
        self.assertEqual(self.emu.connect_count("pair-nopw"), 2)

    def test_password_without_username(self):
        r = self.raw()
        # Looked up by client id alone; a stored client-id-only credential has no password.
        self.assertEqual(r.connect(client_id="only-cid", password="p")[1], 0)
        self.assertEqual(self.raw().connect(client_id="nobody", password="p")[1], 5)

    def test_refuse_and_session_present(self):
        self.emu.refuse(3)
        r = self.raw()
        self.assertEqual(r.connect(username="TOKEN"), (0, 3))
        self.assertEqual(r.packets_until_closed(), [])
        self.emu.refuse(None)
        # ThingsBoard keeps no session but reports session-present = !cleanSession.
        self.assertEqual(self.raw().connect(username="TOKEN", clean=False), (1, 0))
        self.assertEqual(self.raw().connect(username="TOKEN", clean=True), (0, 0))

    def test_refuse_tcp(self):
        self.emu.refuse_tcp(True)
        r = self.raw()
        try:
            r.send(connect_packet(username="TOKEN"))
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.assertIsNone(r.packet())
        self.emu.refuse_tcp(False)
        self.assertEqual(self.raw().connect(username="TOKEN")[1], 0)

    def test_one_session_per_device(self):
        a = self.client(client_id="a")
        self.assertEqual(a.connack(), 0)
        b = self.client(client_id="b")
        self.assertEqual(b.connack(), 0)
        self.assertTrue(a.gone.wait(TIMEOUT), "older session not closed")
        self.assertFalse(b.gone.is_set())
        self.assertEqual(self.emu.connect_count("dev"), 2)
        self.assertTrue(self.emu.connected("dev"))

    def test_protocol_levels(self):
        c = self.client(client_id="v31", protocol=mqtt.MQTTv31)
        self.assertEqual(c.connack(), 0)
        self.assertEqual(self.raw().connect(username="TOKEN", level=5)[1], 1)
        # MQTT 3.1 limits client ids to 1..23 characters: the connection is dropped.
        r = self.raw()
        r.send(connect_packet(client_id="x" * 24, username="TOKEN", proto=b"MQIsdp", level=3))
        self.assertEqual(r.packets_until_closed(), [])

    def test_add_device_rejects_what_thingsboard_rejects(self):
        with self.assertRaises(ValueError):
            self.emu.add_device("bad", client_id="c9", password="p")
        with self.assertRaises(ValueError):
            self.emu.add_device("dup", token="TOKEN")
        with self.assertRaises(ValueError):
            self.emu.add_device("dup", username="TOKEN")   # tokens share the username space
        with self.assertRaises(ValueError):
            self.emu.add_device("none")

    def test_changed_credentials_close_the_session(self):
        c = self.connected_client()
        self.emu.add_device("dev", token="NEW")
        self.assertTrue(c.gone.wait(TIMEOUT))
        self.assertEqual(self.connack(username="TOKEN", client_id="o"), 5)
        self.assertEqual(self.connack(username="NEW", client_id="n"), 0)


@unittest.skipUnless(shutil.which("openssl"), "openssl is not installed")
class X509(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="tb-emu-pki-")
        cls.pki = make_pki(cls.dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        p = self.pki
        self.emu = Emulator(tls=dict(certfile=p["server"][0], keyfile=p["server"][1],
                                     cafile=p["ca"][0]))
        with open(p["dev"][0]) as f:
            self.emu.add_device("x509", cert_pem=f.read())
        self.emu.add_device("tok", token="TOKEN")
        self.emu.add_provision_profile("K", "S")
        self.emu.start()
        self.addCleanup(self.emu.stop)

    def tls_client(self, cert, **kw):
        tls = dict(ca_certs=self.pki["ca"][0])
        if cert:
            tls.update(certfile=self.pki[cert][0], keyfile=self.pki[cert][1])
        c = Client(self.emu.tls_port, tls=tls, **kw)
        self.addCleanup(c.close)
        return c

    def test_certificate_authenticates(self):
        # The certificate wins: username and password are ignored.
        c = self.tls_client("dev", username="not-a-token", password="x", client_id="x")
        self.assertEqual(c.connack(), 0)
        self.emu.wait_connected("x509")

    def test_unknown_certificate_is_refused_even_with_a_token(self):
        c = self.tls_client("other", username="TOKEN")
        self.assertEqual(c.connack(), 5)
        self.assertFalse(self.emu.connected("tok"))

    def test_no_certificate_falls_back_to_the_token(self):
        self.assertEqual(self.tls_client(None, username="TOKEN").connack(), 0)
        self.emu.wait_connected("tok")

    def test_refuse_tcp_before_the_handshake(self):
        self.emu.refuse_tcp(True)
        s = socket.create_connection(("127.0.0.1", self.emu.tls_port), timeout=TIMEOUT)
        self.addCleanup(s.close)
        self.assertEqual(s.recv(100), b"")          # closed without a ServerHello
        self.emu.refuse_tcp(False)
        self.assertEqual(self.tls_client(None, username="TOKEN").connack(), 0)

    def test_certificate_from_another_ca_fails_the_handshake(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.pki["ca"][0])
        ctx.load_cert_chain(*self.pki["rogue"])
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            r = Raw(self.emu.tls_port, ctx)
            self.addCleanup(r.close)
            r.connect(username="TOKEN")      # TLS 1.3 reports the failure on first read

    def test_provision_x509_then_connect(self):
        with open(self.pki["prov"][0]) as f:
            pem = f.read()
        c = Client(self.emu.port, username="provision", client_id="p")
        self.addCleanup(c.close)
        self.assertEqual(c.connack(), 0)
        c.pub("/provision/request", json.dumps({
            "deviceName": "px", "provisionDeviceKey": "K", "provisionDeviceSecret": "S",
            "credentialsType": "X509_CERTIFICATE", "hash": pem}))
        topic, body, _ = c.msg()
        body_only = "".join(l for l in pem.splitlines() if "CERTIFICATE" not in l)
        self.assertEqual(json.loads(body), {"credentialsValue": body_only,
                                            "credentialsType": "X509_CERTIFICATE",
                                            "status": "SUCCESS"})
        self.assertEqual(self.tls_client("prov").connack(), 0)
        self.emu.wait_connected("px")


# ---------------------------------------------------------------------------------------------
# Provisioning

class Provisioning(EmuTest):
    def setUp(self):
        super().setUp()
        self.emu.add_provision_profile("K", "S")
        self.emu.add_provision_profile("PRE", "PS", allow_create=False)
        self.emu.provision_close_s = 0.3

    def provision(self, request, **kw):
        """Send one request in a fresh provision session; returns (raw response, client)."""
        c = self.client(username="provision", client_id="p", **kw)
        self.assertEqual(c.connack(), 0)
        mid = c.pub("/provision/request", json.dumps(request))
        self.assertTrue(c.wait_ack(mid))
        topic, body, qos = c.msg()
        self.assertEqual((topic, qos), ("/provision/response", 1))
        return body, c

    def test_access_token_then_failure_on_retry(self):
        req = {"deviceName": "new1", "provisionDeviceKey": "K", "provisionDeviceSecret": "S"}
        body, c = self.provision(req)
        self.assertTrue(body.startswith(b'{"credentialsValue":"'), body)
        r = json.loads(body)
        self.assertEqual((r["credentialsType"], r["status"]), ("ACCESS_TOKEN", "SUCCESS"))
        self.assertRegex(r["credentialsValue"], r"\A[A-Za-z0-9]{20}\Z")
        self.assertTrue(c.gone.wait(TIMEOUT), "provision session not closed by the server")
        self.assertIn("new1", self.emu.devices)
        self.assertEqual(self.connected_client(r["credentialsValue"]).sub("v2/fw/error"), (1,))
        # Not idempotent: the same request again fails.
        body, _ = self.provision(req)
        self.assertEqual(json.loads(body), {"errorMsg": "Failed to provision device!",
                                            "status": "FAILURE"})
        self.assertEqual([p[1]["status"] for p in self.emu.provisions], ["SUCCESS", "FAILURE"])
        self.assertEqual(self.emu.provisions[0][0], req)

    def test_not_found(self):
        for key, secret in (("K", "wrong"), ("nope", "S"), ("", "")):
            with self.subTest(key=key, secret=secret):
                body, _ = self.provision({"deviceName": "x", "provisionDeviceKey": key,
                                          "provisionDeviceSecret": secret})
                self.assertEqual(json.loads(body), {"errorMsg": "Provision data was not found!",
                                                    "status": "NOT_FOUND"})
        self.assertNotIn("x", self.emu.devices)

    def test_mqtt_basic_and_chosen_token(self):
        body, _ = self.provision({"deviceName": "b1", "provisionDeviceKey": "K",
                                  "provisionDeviceSecret": "S", "credentialsType": "MQTT_BASIC",
                                  "clientId": "cb", "username": "ub", "password": "pb"})
        self.assertEqual(json.loads(body), {
            "credentialsValue": {"clientId": "cb", "userName": "ub", "password": "pb"},
            "credentialsType": "MQTT_BASIC", "status": "SUCCESS"})
        self.assertEqual(self.client(username="ub", password="pb", client_id="cb").connack(), 0)
        body, _ = self.provision({"deviceName": "t1", "provisionDeviceKey": "K",
                                  "provisionDeviceSecret": "S", "token": "CHOSEN"})
        self.assertEqual(json.loads(body)["credentialsValue"], "CHOSEN")
        # A token already in use: FAILURE.
        body, _ = self.provision({"deviceName": "t2", "provisionDeviceKey": "K",
                                  "provisionDeviceSecret": "S", "token": "TOKEN"})
        self.assertEqual(json.loads(body)["status"], "FAILURE")

    def test_names_and_pre_provisioned_devices(self):
        body, _ = self.provision({"provisionDeviceKey": "K", "provisionDeviceSecret": "S"})
        self.assertEqual(json.loads(body)["status"], "SUCCESS")       # random device name
        body, _ = self.provision({"deviceName": "  ", "provisionDeviceKey": "K",
                                  "provisionDeviceSecret": "S"})
        self.assertEqual(json.loads(body)["status"], "FAILURE")
        # "Check pre-provisioned devices": only an existing device, and only once.
        body, _ = self.provision({"deviceName": "dev", "provisionDeviceKey": "PRE",
                                  "provisionDeviceSecret": "PS"})
        self.assertEqual(json.loads(body), {"credentialsValue": "TOKEN",
                                            "credentialsType": "ACCESS_TOKEN",
                                            "status": "SUCCESS"})
        for name in ("dev", "absent"):
            body, _ = self.provision({"deviceName": name, "provisionDeviceKey": "PRE",
                                      "provisionDeviceSecret": "PS"})
            self.assertEqual(json.loads(body)["status"], "FAILURE")

    def test_provision_session_rules(self):
        c = self.client(username="someone", client_id="provision")   # client id works too
        self.assertEqual(c.connack(), 0)
        self.assertEqual(c.sub("/provision/response", "v1/devices/me/attributes"), (1, 128))
        # Missing secret: PUBACK, then the server closes, no answer.
        mid = c.pub("/provision/request", '{"provisionDeviceKey":"K"}')
        self.assertTrue(c.wait_ack(mid))
        self.assertTrue(c.gone.wait(TIMEOUT))
        c.no_msg()
        # Another topic: PUBACK then close. Invalid JSON: close without PUBACK.
        r = self.raw()
        self.assertEqual(r.connect(username="provision")[1], 0)
        r.publish("v1/devices/me/telemetry", '{"a":1}')
        self.assertEqual([p[0] for p in r.packets_until_closed()], [4])
        r = self.raw()
        self.assertEqual(r.connect(username="provision")[1], 0)
        r.publish("/provision/request", "{not json")
        self.assertEqual(r.packets_until_closed(), [])
        self.assertEqual(self.emu.messages(None, "/provision/request")[-1].rejected, True)


# ---------------------------------------------------------------------------------------------
# Subscriptions, framing

class Subscriptions(EmuTest):
    ALLOWED = ["v1/devices/me/attributes", "v1/devices/me/rpc/request/+", "v2/a", "v2/a/j",
               "v2/a/p", "v2/r/req/+", "v2/r/req/j/+", "v2/r/req/p/+",
               "v1/devices/me/attributes/response/+", "v1/devices/me/rpc/response/+",
               "v2/a/res/+", "v2/a/res/j/+", "v2/a/res/p/+", "v2/r/res/+", "v2/r/res/j/+",
               "v2/r/res/p/+", "v2/fw/response/+/chunk/+", "v2/fw/error",
               "v2/sw/response/+/chunk/+", "v2/sw/error", "v1/gateway/attributes",
               "v1/gateway/rpc", "v1/gateway/attributes/response"]
    REFUSED = ["#", "v1/devices/me/#", "v1/devices/me/rpc/request/#", "v1/devices/me/telemetry",
               "v1/devices/me/attributes/+", "+/devices/me/attributes",
               "v1/devices/me/rpc/request/0"]

    def test_exact_filters_only(self):
        c = self.connected_client()
        self.assertEqual(c.sub(*self.ALLOWED, qos=2), (1,) * len(self.ALLOWED))
        self.assertEqual(c.sub(*self.ALLOWED, qos=0), (0,) * len(self.ALLOWED))
        self.assertEqual(c.sub(*self.REFUSED), (128,) * len(self.REFUSED))
        self.assertEqual(self.emu.subscriptions("dev"), dict.fromkeys(self.ALLOWED, 0))
        self.assertTrue(c.wait_ack(c.pub("v1/devices/me/telemetry", '{"a":1}')))  # still open

    def test_downlink_qos_follows_the_subscription(self):
        c = self.connected_client()
        c.sub("v1/devices/me/attributes", qos=0)
        self.emu.set_shared("dev", {"a": 1})
        self.assertEqual(c.msg(), ("v1/devices/me/attributes", b'{"a":1}', 0))
        # No subscription for responses: QoS 1.
        c.pub("v1/devices/me/attributes/request/1", "{}")
        self.assertEqual(c.msg()[2], 1)
        self.emu.wait(lambda: not self.emu.unacked("dev"), TIMEOUT, "PUBACK of the response")
        c.sub("v1/devices/me/attributes/response/+", qos=0)
        c.pub("v1/devices/me/attributes/request/2", "{}")
        self.assertEqual(c.msg()[2], 0)

    def test_unsubscribe_stops_pushes(self):
        c = self.connected_client()
        c.sub("v1/devices/me/attributes")
        c.unsub("v1/devices/me/attributes")
        self.emu.wait(lambda: not self.emu.subscriptions("dev"), TIMEOUT)
        self.emu.set_shared("dev", {"a": 1})
        c.no_msg()
        self.assertEqual(self.emu.downlinks("dev"), [])

    def test_no_state_across_sessions(self):
        c = self.connected_client()
        c.sub("v1/devices/me/attributes")
        c.close()
        self.emu.wait(lambda: not self.emu.connected("dev"), TIMEOUT)
        c = self.connected_client(clean=False, client_id="same")
        self.assertEqual(self.emu.subscriptions("dev"), {})
        self.emu.set_shared("dev", {"a": 1})
        c.no_msg()

    def test_framing(self):
        r = self.raw()
        for b in connect_packet(username="TOKEN"):        # one byte per write
            r.send(bytes((b,)))
            time.sleep(0.001)
        self.assertEqual(r.packet(), (2, 0, b"\x00\x00"))
        # Two-byte remaining length split between writes, several packets in one write.
        big = publish_packet("v1/devices/me/telemetry", json.dumps({"k": "x" * 300}), pid=5)
        r.send(big[:2])
        time.sleep(0.05)
        r.send(big[2:] + b"\xc0\x00" + packet(0xA2, b"\x00\x09" + _mqtt_str("v2/a")))
        self.assertEqual(r.packet(), (4, 0, b"\x00\x05"))       # PUBACK
        self.assertEqual(r.packet(), (13, 0, b""))              # PINGRESP
        self.assertEqual(r.packet(), (11, 0, b"\x00\x09"))      # UNSUBACK
        # QoS 2 is answered with PUBACK, like ThingsBoard does.
        r.publish("v1/devices/me/telemetry", '{"q":2}', qos=2, pid=6)
        self.assertEqual(r.packet(), (4, 0, b"\x00\x06"))
        self.assertEqual(self.emu.messages("dev")[-1].qos, 2)
        # A remaining length of five bytes is malformed.
        r.send(b"\x30\xff\xff\xff\xff\x01")
        self.assertEqual(r.packets_until_closed(), [])

    def test_first_packet_must_be_connect(self):
        r = self.raw()
        r.send(b"\xc0\x00")
        self.assertEqual(r.packets_until_closed(), [])

    def test_downlink_packet_ids_and_pubacks(self):
        r = self.raw_session()
        r.send(packet(0x82, b"\x00\x01" + _mqtt_str("v1/devices/me/attributes") + b"\x01"))
        self.assertEqual(r.packet(), (9, 0, b"\x00\x01\x01"))
        for i in range(3):
            self.emu.set_shared("dev", {"i": i})
        pids = []
        for i in range(3):
            t, flags, body = r.packet()
            self.assertEqual((t, flags), (3, 2))
            pids.append(body[2 + 24:4 + 24])
        self.assertEqual(len(set(pids)), 3)
        self.assertEqual(len(self.emu.unacked("dev")), 3)
        for pid in pids:
            r.send(b"\x40\x02" + pid)
        self.emu.wait(lambda: not self.emu.unacked("dev"), TIMEOUT, "the PUBACKs to be taken")


# ---------------------------------------------------------------------------------------------
# Uplinks

class Telemetry(EmuTest):
    def test_forms(self):
        c = self.connected_client()
        before = int(time.time() * 1000)
        for topic, payload in [
                ("v1/devices/me/telemetry", '{"a":1,"s":"x","b":true,"n":null}'),   # form 1
                ("v1/devices/me/telemetry", '[{"c":1.5},{"d":{"nested":[1]}}]'),    # form 2
                ("v1/devices/me/telemetry", '{"ts":1451649600512,"values":{"e":3}}'),  # 3
                ("v2/t", '[{"ts":1000,"values":{"f":1}},{"ts":"2000","values":{"g":2}},'
                         '{"h":3}]'),                                               # 4, mixed
                ("v2/t/j", '{"ts":1500.9,"values":{"i":1}}'),       # fraction truncated
                ("v1/devices/me/telemetry", '{"ts":5,"t":1}'),      # ts without values: a key
                ("v1/devices/me/telemetry", '[]')]:
            self.assertTrue(c.wait_ack(c.pub(topic, payload)), payload)
        after = int(time.time() * 1000)
        got = self.emu.telemetry("dev")
        server_ts = {k: ts for ts, k, _ in got if k in "abcdhst"}
        for k, ts in server_ts.items():
            self.assertTrue(before <= ts <= after, (k, ts))
        self.assertEqual([(k, v) for _, k, v in got],
                         [("a", 1), ("s", "x"), ("b", True), ("c", 1.5), ("d", {"nested": [1]}),
                          ("e", 3), ("f", 1), ("g", 2), ("h", 3), ("i", 1), ("ts", 5), ("t", 1)])
        self.assertEqual([ts for ts, k, _ in got if k in "efgi"], [1451649600512, 1000, 2000, 1500])
        msgs = self.emu.messages("dev", "v1/devices/me/telemetry")
        self.assertEqual(len(msgs), 5)
        m = msgs[0]
        self.assertEqual((m.device, m.topic, m.payload, m.qos, m.rejected),
                         ("dev", "v1/devices/me/telemetry",
                          b'{"a":1,"s":"x","b":true,"n":null}', 1, False))
        self.assertTrue(before <= m.recv_ms <= after)
        counts = self.emu.counts("dev")
        self.assertEqual((counts["telemetry_msgs"], counts["telemetry_values"]), (7, 12))
        self.assertEqual([ts for ts, _ in self.emu.latency()], [1451649600512, 1000, 2000, 1500])
        self.assertEqual(self.emu.latency(), [])        # cleared by the first call

    def test_malformed_closes_without_puback(self):
        for payload in ['{"ts":"abc","values":{}}', '{"ts":true,"values":{}}',
                        '{"ts":1,"values":5}', '[1,2]', '[{"a":1},"x"]', '"str"', '42', 'null',
                        '{bad', '', '{"a":1} trailing']:
            with self.subTest(payload=payload):
                self.assert_rejected("v1/devices/me/telemetry", payload)
        self.assert_rejected("v2/t/p", '{"a":1}')          # protobuf is not emulated
        self.assertEqual(self.emu.telemetry("dev"), [])
        self.assertEqual(self.emu.counts("dev")["rejected_msgs"], 12)

    def test_unknown_gateway_and_oversized(self):
        r = self.raw_session()
        r.publish("v1/devices/me/unknown", "whatever", pid=1)
        self.assertEqual(r.packet(), (4, 0, b"\x00\x01"))
        # The limit counts topic and packet id too (Netty's MqttDecoder, remaining length).
        fits = tb_emulator.MAX_PAYLOAD - 2 - len("v1/devices/me/unknown") - 2
        r.publish("v1/devices/me/unknown", b"x" * fits, pid=2)
        self.assertEqual(r.packet(), (4, 0, b"\x00\x02"))
        # A device that is not a gateway: never acknowledged, the session stays.
        r.publish("v1/gateway/telemetry", '{"A":[{"x":1}]}', pid=3)
        r.send(b"\xc0\x00")
        self.assertEqual(r.packet(), (13, 0, b""))
        r.publish("v1/devices/me/telemetry", "x" * (fits + 1), pid=4)
        self.assertEqual(r.packets_until_closed(), [])
        counts = self.emu.counts("dev")
        self.assertEqual((counts["unknown_msgs"], counts["gateway_msgs"]), (2, 1))
        self.assertTrue(self.emu.messages("dev")[-1].rejected)

    def test_qos0_and_close_on(self):
        c = self.connected_client()
        c.pub("v1/devices/me/telemetry", '{"q":0}', qos=0)
        self.emu.wait(lambda: self.emu.telemetry("dev"), TIMEOUT)
        self.assertEqual(self.emu.messages("dev")[-1].qos, 0)
        self.emu.close_on("dev", lambda topic, payload: b"poison" in payload)
        self.assertTrue(c.wait_ack(c.pub("v1/devices/me/telemetry", '{"ok":1}')))
        mid = c.pub("v1/devices/me/telemetry", '{"poison":1}')
        self.assertTrue(c.gone.wait(TIMEOUT))
        self.assertNotIn(mid, c.acked)
        self.assertTrue(self.emu.messages("dev")[-1].rejected)
        self.emu.close_on("dev", None)
        c = self.connected_client(client_id="again")
        self.assertTrue(c.wait_ack(c.pub("v1/devices/me/telemetry", '{"poison":2}')))


class CountersOnly(EmuTest):
    emu_options = dict(record=False, latency_samples=2)

    def test_counts_without_records(self):
        c = self.connected_client()
        for i in range(5):
            c.pub("v1/devices/me/telemetry", json.dumps({"ts": i, "values": {"a": i, "b": i}}))
        self.emu.wait(lambda: self.emu.counts("dev")["telemetry_values"] == 10, TIMEOUT)
        self.assertEqual(self.emu.messages(), [])
        self.assertEqual(self.emu.telemetry("dev"), [])
        self.assertEqual([ts for ts, _ in self.emu.latency()], [3, 4])
        self.assertEqual(self.emu.counts()["telemetry_msgs"], 5)


class Attributes(EmuTest):
    def setUp(self):
        super().setUp()
        self.emu.set_shared("dev", {"sp": 22.0, "mode": "auto", "tiny": 1e-4})
        self.c = self.connected_client()
        self.assertTrue(self.c.wait_ack(self.c.pub("v1/devices/me/attributes",
                                                   '{"fw":"1.0","n":5,"gone":null}')))

    def request(self, body, topic="v1/devices/me/attributes/request/7"):
        self.assertTrue(self.c.wait_ack(self.c.pub(topic, body)))
        return self.c.msg()

    def test_client_attributes_merge(self):
        self.c.pub("v2/a", '{"n":6}')
        self.emu.wait(lambda: self.emu.attributes("dev") == {"fw": "1.0", "n": 6}, TIMEOUT)
        self.assert_rejected("v1/devices/me/attributes", '[{"a":1}]')

    def test_requests(self):
        t, body, _ = self.request('{"clientKeys":"fw,zz","sharedKeys":"sp"}')
        self.assertEqual((t, body), ("v1/devices/me/attributes/response/7",
                                     b'{"client":{"fw":"1.0"},"shared":{"sp":22.0}}'))
        body = self.request("{}")[1]          # everything; doubles printed as Java does
        self.assertEqual(json.loads(body), {"client": {"fw": "1.0", "n": 5},
                                            "shared": {"sp": 22.0, "mode": "auto", "tiny": 1e-4}})
        self.assertIn(b'"tiny":1.0E-4', body)
        cases = [('{"clientKeys":"fw"}', {"client": {"fw": "1.0"}}),      # never a shared member
                 ('{"sharedKeys":"nope"}', {}),
                 ('{"clientKeys":["fw"]}', {"client": {"fw": "1.0"}}),    # one-element array
                 ('{"clientKeys":"fw, n"}', {"client": {"fw": "1.0"}}),   # " n" is not trimmed
                 ('{"clientKeys":","}', {"client": {"fw": "1.0", "n": 5},  # no key: everything
                                         "shared": {"sp": 22.0, "mode": "auto", "tiny": 1e-4}})]
        for req, want in cases:
            with self.subTest(request=req):
                self.assertEqual(json.loads(self.request(req)[1]), want)

    def test_ids_and_topic_families(self):
        # A negative id is accepted but never answered.
        self.assertTrue(self.c.wait_ack(self.c.pub("v1/devices/me/attributes/request/-1", "{}")))
        self.assertEqual(self.request('{"sharedKeys":"mode"}', "v2/a/req/3")[:2],
                         ("v2/a/res/3", b'{"shared":{"mode":"auto"}}'))
        self.assertEqual(self.request('{"sharedKeys":"mode"}', "v2/a/req/j/4")[0], "v2/a/res/j/4")
        # Integer.parseInt accepts a sign; the answer carries the number as printed by Java.
        r = self.raw_session()
        r.publish("v1/devices/me/attributes/request/+8", '{"sharedKeys":"mode"}', pid=3)
        self.assertEqual(r.packet(), (4, 0, b"\x00\x03"))
        want = _mqtt_str("v1/devices/me/attributes/response/8")
        self.assertEqual(r.packet()[2][:len(want)], want)

    def test_bad_requests_close(self):
        for topic, body in [("v1/devices/me/attributes/request/1", '{"clientKeys":["a","b"]}'),
                            ("v1/devices/me/attributes/request/1", '{"clientKeys":null}'),
                            ("v1/devices/me/attributes/request/1", '{"sharedKeys":{}}'),
                            ("v1/devices/me/attributes/request/1", ''),
                            ("v1/devices/me/attributes/request/1", '[]'),
                            ("v1/devices/me/attributes/request/abc", '{}'),
                            ("v1/devices/me/attributes/request/2147483648", '{}')]:
            with self.subTest(topic=topic, body=body):
                self.assert_rejected(topic, body)

    def test_shared_pushes(self):
        self.c.no_msg(0.05)
        self.emu.set_shared("dev", {"sp": 23.5})
        self.c.no_msg()                                 # not subscribed: nothing pushed
        self.assertEqual(self.emu.shared("dev")["sp"], 23.5)
        self.assertEqual(self.c.sub("v1/devices/me/attributes"), (1,))
        self.c.no_msg()                                 # subscribing sends no current values
        self.emu.set_shared("dev", {"sp": 24.0, "mode": "eco"})
        self.assertEqual(self.c.msg()[:2], ("v1/devices/me/attributes",
                                            b'{"sp":24.0,"mode":"eco"}'))
        self.emu.delete_shared("dev", ["mode", "never-existed"])
        self.assertEqual(self.c.msg()[1], b'{"deleted":["mode","never-existed"]}')
        self.assertNotIn("mode", self.emu.shared("dev"))
        self.c.sub("v2/a/j")                            # pushes follow the latest family
        self.emu.set_shared("dev", {"x": 1})
        self.assertEqual(self.c.msg()[:2], ("v2/a/j", b'{"x":1}'))


class ServerRpc(EmuTest):
    def test_ids_burst_and_answers(self):
        self.emu.add_device("other", token="OTHER")
        c = self.connected_client()
        self.assertEqual(self.emu.rpc("dev", "first", {}), 0)     # no subscription yet
        c.no_msg(0.1)
        c.sub("v1/devices/me/rpc/request/+")
        self.assertEqual(c.msg()[:2], ("v1/devices/me/rpc/request/0",
                                       b'{"method":"first","params":{}}'))
        self.assertEqual(self.emu.rpc("dev", "second", {"x": 1.0}), 1)
        self.assertEqual(c.msg()[:2], ("v1/devices/me/rpc/request/1",
                                       b'{"method":"second","params":{"x":1.0}}'))
        self.assertEqual(self.emu.rpc("other", "m", "text"), 0)     # ids are per device
        c.pub("v1/devices/me/rpc/response/1", '{"ok":true}')
        self.assertEqual(self.emu.rpc_response("dev", 1), {"ok": True})
        c.pub("v1/devices/me/rpc/response/1", '{"ok":"again"}')    # only the first counts
        self.emu.wait(lambda: len(self.emu.rpc_answers("dev", 1)) == 2, TIMEOUT)
        self.assertEqual(self.emu.rpc_response("dev", 1), {"ok": True})
        # Every (re)subscription re-sends what is still pending, with the same id.
        for _ in range(2):
            c.sub("v1/devices/me/rpc/request/+")
            self.assertEqual(c.msg()[0], "v1/devices/me/rpc/request/0")
            c.no_msg()
        c.pub("v1/devices/me/rpc/response/0", "")
        self.assertIsNone(self.emu.rpc_response("dev", 0))
        c.sub("v1/devices/me/rpc/request/+")
        c.no_msg()

    def test_expiry_and_bad_answers(self):
        c = self.connected_client()
        c.sub("v2/r/req/+")
        rid = self.emu.rpc("dev", "slow", None, expire_s=0.2)
        self.assertEqual(c.msg()[:2], ("v2/r/req/0", b'{"method":"slow","params":null}'))
        with self.assertRaises(TimeoutError):
            self.emu.rpc_response("dev", rid, timeout=2)
        c.sub("v2/r/req/+")
        c.no_msg()                                     # expired: not re-sent
        rid = self.emu.rpc("dev", "m", {})
        c.msg()
        c.pub("v2/r/res/%d" % rid, "not json")
        with self.assertRaises(ValueError):
            self.emu.rpc_response("dev", rid)
        rid = self.emu.rpc("dev", "raw", raw=b"\xff garbage")
        self.assertEqual(c.msg()[1], b"\xff garbage")
        self.assert_rejected("v1/devices/me/rpc/response/x", "{}")


class ClientRpcAndClaim(EmuTest):
    def test_client_rpc(self):
        calls = []

        def handler(device, method, params):
            calls.append((device, method, params))
            return {"time": 123} if method == "getTime" else None
        self.emu.on_client_rpc(handler)
        self.emu.client_rpc_timeout_s = 0.3
        c = self.connected_client()
        c.pub("v1/devices/me/rpc/request/5", '{"method":"getTime","params":{}}')
        self.assertEqual(c.msg(), ("v1/devices/me/rpc/response/5", b'{"time":123}', 1))
        c.pub("v2/r/req/6", '{"method":"getTime"}')
        self.assertEqual(c.msg()[:2], ("v2/r/res/6", b'{"time":123}'))
        t0 = time.monotonic()
        c.pub("v1/devices/me/rpc/request/7", '{"method":"unknown","params":[1]}')
        self.assertEqual(c.msg()[:2], ("v1/devices/me/rpc/response/7", b'{"error":"timeout"}'))
        self.assertGreaterEqual(time.monotonic() - t0, 0.25)
        self.assertEqual(calls, [("dev", "getTime", {}), ("dev", "getTime", None),
                                 ("dev", "unknown", [1])])
        self.assert_rejected("v1/devices/me/rpc/request/8", '{"params":{}}')

    def test_claim(self):
        c = self.connected_client()
        for body in ('{"secretKey":"abc","durationMs":60000}', "", "{}", '{"durationMs":"5"}'):
            self.assertTrue(c.wait_ack(c.pub("v1/devices/me/claim", body)))
        self.assertEqual(self.emu.claims("dev"), [("abc", 60000), ("", 0), ("", 0), ("", 5)])
        self.assert_rejected("v1/devices/me/claim", "[1]")
        self.assert_rejected("v1/devices/me/claim", '{"durationMs":"soon"}')


# ---------------------------------------------------------------------------------------------
# OTA

def expected_checksum(alg, data):
    """Independent of the emulator for everything but the murmur hashes (whose
    implementation the Checksums vectors pin down)."""
    if alg in ("MD5", "SHA256", "SHA384", "SHA512"):
        return hashlib.new(alg, data).hexdigest()
    if alg == "CRC32":
        return struct.pack("<I", zlib.crc32(data)).hex()
    if alg == "MURMUR3_32":
        return struct.pack("<I", tb_emulator.murmur3_32(data)).hex()
    return struct.pack("<QQ", *tb_emulator.murmur3_128(data)).hex()


class Ota(EmuTest):
    DATA = bytes((i * 7919 >> 3) & 0xFF for i in range(5000))

    def download(self, c, req, size, kind="fw"):
        got, n = b"", 0
        while True:
            mid = c.pub("v2/%s/request/%d/chunk/%d" % (kind, req, n), size)
            topic, part, _ = c.msg()
            self.assertTrue(c.wait_ack(mid))
            self.assertEqual(topic, "v2/%s/response/%d/chunk/%d" % (kind, req, n))
            if not part:
                return got
            got += part
            n += 1

    def test_every_algorithm(self):
        c = self.connected_client()
        c.sub("v1/devices/me/attributes", "v2/fw/response/+/chunk/+")
        for i, alg in enumerate(tb_emulator.OTA_ALGORITHMS):
            with self.subTest(algorithm=alg):
                self.emu.set_ota("dev", "fw", "fw", "1.%d" % i, self.DATA, alg)
                self.assertEqual(json.loads(c.msg()[1]), {"deleted": ["fw_tag", "fw_url"]})
                push = json.loads(c.msg()[1])
                self.assertEqual(list(push), ["fw_title", "fw_version", "fw_size",
                                              "fw_checksum_algorithm", "fw_checksum"])
                self.assertEqual((push["fw_size"], push["fw_checksum_algorithm"]),
                                 (len(self.DATA), alg))
                self.assertEqual(push["fw_checksum"], expected_checksum(alg, self.DATA))
                self.assertEqual(self.download(c, 100 + i, "1024"), self.DATA)
        self.emu.set_ota("dev", "fw", "crc", "1", b"123456789", "CRC32")
        c.msg()
        self.assertEqual(json.loads(c.msg()[1])["fw_checksum"], "2639f4cb")
        self.assertEqual(self.emu.ota_requests("dev")[:2], [("fw", 100, 0, 1024),
                                                            ("fw", 100, 1, 1024)])

    def test_sizes_and_binding(self):
        self.emu.set_ota("dev", "fw", "a", "1", self.DATA)
        c = self.connected_client()
        c.pub("v2/fw/request/1/chunk/0", "")        # no size yet: the whole package
        self.assertEqual(c.msg()[1], self.DATA)
        c.pub("v2/fw/request/2/chunk/0", "1000")
        self.assertEqual(c.msg()[1], self.DATA[:1000])
        c.pub("v2/fw/request/2/chunk/3", "")        # empty: the size last given for reqId 2
        self.assertEqual(c.msg()[1], self.DATA[3000:4000])
        c.pub("v2/fw/request/2/chunk/5", "1000")
        self.assertEqual(c.msg()[1], b"")           # past the end: empty
        c.pub("v2/fw/request/3/chunk/0", "65536")   # the limit itself is fine
        self.assertEqual(c.msg()[1], self.DATA)
        # A reqId stays bound to the package it first fetched.
        self.emu.set_ota("dev", "fw", "b", "2", b"B" * 3000)
        c.pub("v2/fw/request/2/chunk/1", "")
        self.assertEqual(c.msg()[1], self.DATA[1000:2000])
        c.pub("v2/fw/request/4/chunk/1", "1000")
        self.assertEqual(c.msg()[1], b"B" * 1000)
        c.pub("v2/fw/request/x/chunk/0", "1")       # not ThingsBoard's pattern: unknown topic
        self.assertTrue(c.wait_ack(c.pub("v2/fw/request/x/chunk/0", "1")))
        c.no_msg()

    def test_software_tag_and_clear(self):
        c = self.connected_client()
        c.sub("v1/devices/me/attributes")
        self.emu.set_ota("dev", "sw", "app", "3.1", b"S" * 10, "MD5", tag="app-3.1")
        self.assertEqual(c.msg()[1], b'{"deleted":["sw_url"]}')
        self.assertEqual(list(json.loads(c.msg()[1])),
                         ["sw_title", "sw_version", "sw_tag", "sw_size", "sw_checksum_algorithm",
                          "sw_checksum"])
        self.assertEqual(self.download(c, 1, "4", "sw"), b"S" * 10)
        self.emu.clear_ota("dev", "sw")
        self.assertEqual(json.loads(c.msg()[1]), {"deleted": [
            "sw_title", "sw_version", "sw_ts", "sw_state", "sw_size", "sw_checksum",
            "sw_checksum_algorithm", "sw_url", "sw_tag"]})
        self.assertFalse([k for k in self.emu.shared("dev") if k.startswith("sw_")])

    def test_errors_close_the_session(self):
        self.emu.set_ota("dev", "fw", "a", "1", self.DATA)
        for topic, size, error in [("v2/fw/request/1/chunk/0", "65537", b"PAYLOAD_TOO_LARGE"),
                                   ("v2/sw/request/1/chunk/0", "100", b"NOT_FOUND"),
                                   ("v2/fw/request/1/chunk/0", "abc", None),
                                   ("v2/fw/request/1/chunk/99999999999", "1", None)]:
            with self.subTest(topic=topic, size=size):
                got = self.assert_rejected(topic, size)
                if error is None:
                    self.assertEqual(got, [])
                else:       # the error at QoS 1 (its packet id is the server's choice)
                    self.assertEqual(len(got), 1)
                    self.assertEqual((got[0][0], got[0][1]), (3, 2))
                    self.assertEqual(got[0][2][:13], _mqtt_str("v2/fw/error"))
                    self.assertEqual(got[0][2][15:], error)


# ---------------------------------------------------------------------------------------------
# Faults

class Faults(EmuTest):
    def test_drop(self):
        c = self.connected_client()
        self.assertTrue(self.emu.drop("dev"))
        self.assertTrue(c.gone.wait(TIMEOUT))
        self.assertFalse(self.emu.connected("dev"))
        self.assertFalse(self.emu.drop("dev"))
        c = self.connected_client(client_id="2")
        self.emu.drop_all()
        self.assertTrue(c.gone.wait(TIMEOUT))

    def test_hold_puback(self):
        c = self.connected_client()
        self.emu.hold_puback("dev", True)
        mids = [c.pub("v1/devices/me/telemetry", '{"i":%d}' % i) for i in range(3)]
        self.emu.wait(lambda: len(self.emu.telemetry("dev")) == 3, TIMEOUT)  # recorded already
        self.assertFalse(c.wait_ack(mids[0], QUIET))
        self.emu.hold_puback("dev", False)
        self.assertTrue(c.wait_ack(mids[2]))
        self.assertEqual(c.acked, mids)                 # released in order

    def test_stall(self):
        c = self.connected_client()
        c.sub("v1/devices/me/attributes")
        self.assertTrue(self.emu.stall("dev", True))
        mid = c.pub("v1/devices/me/telemetry", '{"late":1}')
        self.emu.set_shared("dev", {"held": 1})
        time.sleep(QUIET)
        self.assertEqual(self.emu.telemetry("dev"), [])
        self.assertFalse(c.acked)
        c.no_msg(0.05)
        self.assertTrue(self.emu.connected("dev"))      # half-open, not closed
        self.assertFalse(c.gone.is_set())
        self.emu.stall("dev", False)
        self.assertTrue(c.wait_ack(mid))
        self.assertEqual(c.msg()[1], b'{"held":1}')
        self.assertEqual([k for _, k, _ in self.emu.telemetry("dev")], ["late"])

    def test_wait_reports_what_it_waited_for(self):
        with self.assertRaises(TimeoutError) as cm:
            self.emu.wait(lambda: self.emu.telemetry("dev"), 0.1, "telemetry of dev")
        self.assertIn("telemetry of dev", str(cm.exception))
        self.assertIn("connected: []", str(cm.exception))
        # A device that does not exist yet counts as "not yet", not as an error.
        with self.assertRaises(TimeoutError):
            self.emu.wait(lambda: self.emu.telemetry("later"), 0.1)


# ---------------------------------------------------------------------------------------------
# Gateway API (§11)

class Gateway(EmuTest):
    def setUp(self):
        super().setUp()
        self.emu.add_device("gw", token="GW")
        self.emu.set_gateway("gw")

    def gw(self):
        c = self.connected_client("GW", client_id="gw")
        return c

    def acked(self, c, topic, body):
        self.assertTrue(c.wait_ack(c.pub(topic, body)), "no PUBACK for %s %r" % (topic, body))

    def test_not_a_gateway_is_never_acked(self):
        c = self.connected_client()                 # "dev" is a plain device
        mid = c.pub("v1/gateway/connect", '{"device":"A"}')
        self.assertFalse(c.wait_ack(mid, QUIET))
        self.assertFalse(c.gone.is_set())
        self.assertEqual(self.emu.subdevices("dev"), {})
        # The flag is read at CONNECT: setting it later changes nothing for this session.
        self.emu.set_gateway("dev")
        self.assertFalse(c.wait_ack(c.pub("v1/gateway/connect", '{"device":"A"}'), QUIET))

    def test_connect_telemetry_attributes(self):
        c = self.gw()
        self.acked(c, "v1/gateway/connect", '{"device":"A","type":"meter"}')
        self.acked(c, "v1/gateway/connect", '{"device":"B"}')
        self.assertEqual(self.emu.subdevices("gw"), {"A": "meter", "B": "default"})
        self.assertEqual(self.emu.gateway_connected("gw"), ["A", "B"])
        self.assertTrue(self.emu.connected("A"))
        self.acked(c, "v1/gateway/telemetry", json.dumps({
            "A": [{"ts": 1000, "values": {"t": 1.5, "n": None}}, {"ts": 2000, "values": {"t": 2}}],
            "B": [{"x": "s"}, {"ts": 500, "values": {"y": 1}, "metadata": {"connector": "c"}}]}))
        self.assertEqual(self.emu.telemetry("A"), [(1000, "t", 1.5), (2000, "t", 2)])
        tb = self.emu.telemetry("B")
        self.assertEqual((tb[0][1:], tb[1]), (("x", "s"), (500, "y", 1)))
        self.assertEqual(self.emu.counts("A")["telemetry_values"], 2)
        self.acked(c, "v1/gateway/attributes", '{"A":{"fw":"1.2","n":null},"B":{"k":3}}')
        self.assertEqual(self.emu.attributes("A"), {"fw": "1.2"})
        self.assertEqual(self.emu.attributes("B"), {"k": 3})
        # A device ThingsBoard does not know is created with the default profile and
        # connected by its first data.
        self.acked(c, "v1/gateway/telemetry", '{"C":[{"v":1}]}')
        self.assertEqual(self.emu.subdevices("gw")["C"], "default")
        self.assertIn("C", self.emu.gateway_connected("gw"))
        # An existing device keeps its profile.
        self.acked(c, "v1/gateway/connect", '{"device":"A","type":"other"}')
        self.assertEqual(self.emu.subdevices("gw")["A"], "meter")
        self.acked(c, "v1/gateway/disconnect", '{"device":"A"}')
        self.assertFalse(self.emu.connected("A"))
        self.assertEqual(self.emu.gateway_connected("gw"), ["B", "C"])
        self.acked(c, "v1/gateway/disconnect", '{"device":"nobody"}')
        # Non-array members are skipped, the rest is stored.
        self.acked(c, "v1/gateway/telemetry", '{"B":{"ts":1,"values":{"z":1}},"C":[{"w":2}]}')
        self.assertEqual(self.emu.telemetry("C")[-1][1:], ("w", 2))
        self.assertNotIn("z", [k for _, k, _ in self.emu.telemetry("B")])
        # Unknown v1/gateway topics are acknowledged and dropped.
        self.acked(c, "v1/gateway/nothing", "{}")
        self.assertFalse(c.gone.is_set())

    def test_downlinks_only_while_connected(self):
        c = self.gw()
        self.assertEqual(c.sub("v1/gateway/attributes", "v1/gateway/rpc",
                               "v1/gateway/attributes/response"), (1, 1, 1))
        self.acked(c, "v1/gateway/connect", '{"device":"A"}')
        self.emu.set_shared("A", {"sp": 21.0})
        self.assertEqual(c.msg()[:2], ("v1/gateway/attributes",
                                       b'{"device":"A","data":{"sp":21.0}}'))
        self.emu.delete_shared("A", ["sp"])
        self.assertEqual(c.msg()[1], b'{"device":"A","data":{"deleted":["sp"]}}')
        rid = self.emu.rpc("A", "setValve", {"open": True})
        self.assertEqual(rid, 0)
        self.assertEqual(c.msg()[:2], ("v1/gateway/rpc", b'{"device":"A","data":'
                                       b'{"id":0,"method":"setValve","params":{"open":true}}}'))
        self.acked(c, "v1/gateway/rpc", '{"device":"A","id":0,"data":{"ok":1}}')
        self.assertEqual(self.emu.rpc_response("A", 0), {"ok": 1})
        self.acked(c, "v1/gateway/rpc", '{"device":"A","id":0,"data":{"ok":2}}')
        self.emu.wait(lambda: len(self.emu.rpc_answers("A", 0)) == 2, TIMEOUT)
        self.assertEqual(self.emu.rpc_answers("A", 0), [{"ok": 1}, {"ok": 2}])
        self.assertEqual(self.emu.rpc_response("A", 0), {"ok": 1})   # the first one counts
        # Disconnected: nothing flows, pending RPCs wait for the next connect.
        self.acked(c, "v1/gateway/disconnect", '{"device":"A"}')
        self.emu.set_shared("A", {"sp": 22})
        rid = self.emu.rpc("A", "later", None)
        c.no_msg()
        self.acked(c, "v1/gateway/connect", '{"device":"A"}')
        self.assertEqual(json.loads(c.msg()[1]),
                         {"device": "A", "data": {"id": rid, "method": "later", "params": None}})
        # A new gateway session starts with no sub-device connected.
        c.close()
        self.emu.wait(lambda: not self.emu.connected("gw"), TIMEOUT)
        c = self.gw()
        self.assertEqual(self.emu.gateway_connected("gw"), [])
        self.assertFalse(self.emu.connected("A"))
        self.emu.set_shared("A", {"sp": 23})
        c.no_msg()
        self.assertEqual(self.emu.shared("A"), {"sp": 23})

    def test_attribute_request(self):
        c = self.gw()
        self.acked(c, "v1/gateway/attributes", '{"A":{"c1":1,"c2":"x"}}')
        self.emu.set_shared("A", {"s1": 2.5})
        # A is connected by its attributes: the push needs no subscription.
        self.assertEqual(c.msg()[:2], ("v1/gateway/attributes",
                                       b'{"device":"A","data":{"s1":2.5}}'))
        for req, answer in (
                ({"id": 1, "device": "A", "client": True, "key": "c1"},
                 {"id": 1, "device": "A", "value": 1}),
                ({"id": 2, "device": "A", "client": True, "keys": ["c1", "c2", "no"]},
                 {"id": 2, "device": "A", "values": {"c1": 1, "c2": "x"}}),
                ({"id": 3, "device": "A", "client": False, "keys": ["s1"]},
                 {"id": 3, "device": "A", "value": 2.5}),
                ({"id": 4, "device": "A", "client": False, "key": "c1"},
                 {"id": 4, "device": "A"})):
            c.pub("v1/gateway/attributes/request", json.dumps(req))
            topic, body, _ = c.msg()
            self.assertEqual((topic, json.loads(body)), ("v1/gateway/attributes/response", answer))

    def test_claim(self):
        c = self.gw()
        self.acked(c, "v1/gateway/claim",
                   '{"A":{"secretKey":"s","durationMs":60000},"B":{"durationMs":"x"},"C":1}')
        self.assertEqual(self.emu.claims("A"), [("s", 60000)])
        self.assertEqual(self.emu.claims("B"), [])       # not converted: logged only
        self.assertFalse(c.gone.is_set())

    def rejected(self, topic, payload, puback):
        """The gateway's connection closes; PUBACK first or not, as ThingsBoard does."""
        r = self.raw_session("GW")
        r.publish(topic, payload, qos=1, pid=9)
        got = [p[0] for p in r.packets_until_closed()]
        self.assertEqual(4 in got, puback, "%s %r: packets %r" % (topic, payload, got))

    def test_conversion_errors_close_the_gateway(self):
        # Unparseable JSON (an AdaptorException): closed, no PUBACK.
        self.rejected("v1/gateway/telemetry", "{nope", False)
        self.rejected("v1/gateway/connect", "", False)
        # A value that does not convert (ts, values) closes the whole connection.
        self.rejected("v1/gateway/telemetry", '{"A":[{"ts":"soon","values":{"x":1}}]}', False)
        self.rejected("v1/gateway/telemetry", '{"A":[{"v":1}],"B":[{"ts":1,"values":3}]}', False)
        self.assertNotIn("A", self.emu.devices)              # nothing of it was taken
        # Valid JSON of the wrong shape (RuntimeException): PUBACK, then close.
        self.rejected("v1/gateway/telemetry", "[1]", True)
        self.rejected("v1/gateway/telemetry", '{"A":{"v":1}}', True)   # no array left
        self.rejected("v1/gateway/connect", '{"type":"x"}', True)
        self.rejected("v1/gateway/connect", '{"device":""}', True)
        self.rejected("v1/gateway/attributes/request", '{"id":1,"device":"A","key":"k"}', True)
        self.rejected("v1/gateway/attributes/request", '{"id":1,"device":"A","client":true}',
                      True)
        # An RPC reply without id is dropped unacknowledged; the session stays.
        c = self.gw()
        self.assertFalse(c.wait_ack(c.pub("v1/gateway/rpc", '{"device":"A","data":1}'), QUIET))
        self.assertFalse(c.gone.is_set())

    def test_payload_limit(self):
        # Topic and packet id count against the limit: 65 512 bytes of payload here.
        limit = tb_emulator.MAX_PAYLOAD - 2 - len("v1/gateway/telemetry") - 2
        frame = len('{"A":[{"v":""}]}')
        big = '{"A":[{"v":"%s"}]}' % ("x" * (limit - frame + 1))
        self.assertEqual(len(big), limit + 1)
        self.rejected("v1/gateway/telemetry", big, False)
        c = self.gw()
        fits = big[:-5] + '"}]}'
        self.assertEqual(len(fits), limit)
        self.acked(c, "v1/gateway/telemetry", fits)

    def test_rate_limits(self):
        self.emu.set_rate_limits(messages="1:60")             # device limits: not for gateways
        self.emu.set_gateway_rate_limits(telemetry_datapoints="5:60")
        c = self.gw()
        self.acked(c, "v1/gateway/telemetry", '{"A":[{"a":1,"b":2}],"B":[{"c":3,"d":4}]}')
        self.acked(c, "v1/gateway/connect", '{"device":"C"}')
        self.assertFalse(c.wait_ack(c.pub("v1/gateway/telemetry", '{"A":[{"a":1,"b":2}]}')))
        self.assertTrue(c.gone.wait(TIMEOUT))
        self.assertEqual(self.emu.counts("gw")["rate_limited"], 1)

    def test_session_limits(self):
        self.emu.set_rate_limits(messages="1:60")
        self.emu.set_gateway_rate_limits(messages="100:1", telemetry_datapoints="5:60",
                                         device_messages="2:60")
        c = self.gw()
        c.pub("v1/devices/me/rpc/request/1", '{"method":"getSessionLimits","params":{}}')
        topic, body, _ = c.msg()
        self.assertEqual(topic, "v1/devices/me/rpc/response/1")
        self.assertEqual(json.loads(body), {
            "maxPayloadSize": 65536, "maxInflightMessages": 100,
            "rateLimits": {"messages": "2:60"},
            "gatewayRateLimits": {"messages": "100:1", "telemetryDataPoints": "5:60"}})

    def test_rate_limits_per_device(self):
        self.emu.set_gateway_rate_limits(device_messages="2:60")
        c = self.gw()
        for _ in range(2):
            self.acked(c, "v1/gateway/telemetry", '{"A":[{"a":1}],"B":[{"b":1}]}')
        self.acked(c, "v1/gateway/telemetry", '{"C":[{"c":1}]}')
        self.assertFalse(c.wait_ack(c.pub("v1/gateway/attributes", '{"A":{"k":1}}')))
        self.assertTrue(c.gone.wait(TIMEOUT))

    def test_control_port(self):
        for line, want in (
                ({"cmd": "set_gateway", "device": "dev"}, {"ok": True}),
                ({"cmd": "subdevices", "device": "gw"}, {"ok": True, "subdevices": {}}),
                ({"cmd": "gateway_connected", "device": "gw"},
                 {"ok": True, "gateway_connected": []}),
                ({"cmd": "set_gateway_rate_limits", "messages": "100:1"}, {"ok": True})):
            self.assertEqual(self.emu.control_command(json.dumps(line)), want)
        c = self.gw()
        self.acked(c, "v1/gateway/connect", '{"device":"A","type":"meter"}')
        self.assertEqual(self.emu.control_command('{"cmd":"subdevices","device":"gw"}'),
                         {"ok": True, "subdevices": {"A": "meter"}})
        self.assertEqual(self.emu.control_command('{"cmd":"connected","device":"A"}'),
                         {"ok": True, "connected": True})
        c2 = self.connected_client()              # "dev" flagged above: a gateway now
        self.assertTrue(c2.wait_ack(c2.pub("v1/gateway/connect", '{"device":"D"}')))


# ---------------------------------------------------------------------------------------------
# Command line

class CommandLine(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="tb-emu-cli-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def read_line(self, f, timeout=10):
        line = b""
        deadline = time.monotonic() + timeout
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            r, _, _ = select.select([f], [], [], max(0, left))
            if not r:
                raise AssertionError("no line within %ss (got %r)" % (timeout, line))
            c = os.read(f.fileno(), 1)
            if not c:
                raise AssertionError("stream ended (got %r)" % line)
            line += c
        return line.decode().strip()

    def test_cli_and_control_port(self):
        devices = os.path.join(self.dir, "devices.json")
        with open(devices, "w") as f:
            json.dump({"devices": [{"name": "d", "token": "T"},
                                   {"name": "b", "client_id": "c", "username": "u",
                                    "password": "p"}],
                       "provision": [{"key": "K", "secret": "S"}]}, f)
        errlog = open(os.path.join(self.dir, "stderr"), "w+b")
        self.addCleanup(errlog.close)
        p = subprocess.Popen([sys.executable, os.path.join(FAKES, "tb_emulator.py"), "--port",
                              "0", "--devices", devices, "--control", "0", "--log"],
                             stdout=subprocess.PIPE, stderr=errlog, start_new_session=True)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        self.addCleanup(p.stdout.close)
        line = self.read_line(p.stdout)
        m = re.fullmatch(r"READY port=(\d+) tls_port=- control=(\d+)", line)
        self.assertTrue(m, line)
        port, control = int(m.group(1)), int(m.group(2))

        c = Client(port, username="T")
        self.addCleanup(c.close)
        self.assertEqual(c.connack(), 0)
        c.sub("v1/devices/me/attributes", "v1/devices/me/rpc/request/+")
        mid = c.pub("v1/devices/me/telemetry", '{"ts":1000,"values":{"x":5}}')
        self.assertTrue(c.wait_ack(mid))
        self.assertEqual(Client(port, username="u", password="p", client_id="c").connack(), 0)

        s = socket.create_connection(("127.0.0.1", control), timeout=TIMEOUT)
        self.addCleanup(s.close)
        f = s.makefile("rw")

        def cmd(**req):
            f.write(json.dumps(req) + "\n")
            f.flush()
            return json.loads(f.readline())
        self.assertEqual(cmd(cmd="telemetry", device="d"),
                         {"ok": True, "telemetry": [[1000, "x", 5]], "next": 1})
        self.assertEqual(cmd(cmd="telemetry", device="d", since=1)["telemetry"], [])
        self.assertEqual(cmd(cmd="set_shared", device="d", data={"sp": 1.5}), {"ok": True})
        self.assertEqual(c.msg()[1], b'{"sp":1.5}')
        rid = cmd(cmd="rpc", device="d", method="m", params={"a": 1})["id"]
        self.assertEqual(c.msg()[:2], ("v1/devices/me/rpc/request/%d" % rid,
                                       b'{"method":"m","params":{"a":1}}'))
        c.pub("v1/devices/me/rpc/response/%d" % rid, '{"done":1}')
        self.assertEqual(cmd(cmd="rpc_response", device="d", id=rid, timeout=5),
                         {"ok": True, "response": {"done": 1}})
        self.assertEqual(cmd(cmd="counts", device="d")["counts"]["telemetry_values"], 1)
        self.assertEqual(cmd(cmd="connected")["connected"], {"d": True, "b": True})
        self.assertEqual([ts for ts, _ in cmd(cmd="latency")["latency"]], [1000])
        self.assertEqual(cmd(cmd="latency")["latency"], [])      # the first call cleared it
        data = b"\x01\x02\x03"
        self.assertTrue(cmd(cmd="set_ota", device="d", kind="fw", title="t", version="2",
                            data=base64.b64encode(data).decode(), algorithm="CRC32")["ok"])
        c.msg()
        self.assertEqual(json.loads(c.msg()[1])["fw_checksum"],
                         struct.pack("<I", zlib.crc32(data)).hex())
        self.assertFalse(cmd(cmd="no-such-command")["ok"])
        self.assertIn("KeyError", cmd(cmd="attributes", device="nobody")["error"])
        self.assertEqual(cmd(cmd="drop", device="d"), {"ok": True, "dropped": True})
        self.assertTrue(c.gone.wait(TIMEOUT))

        os.kill(p.pid, signal.SIGTERM)
        self.assertEqual(p.wait(timeout=10), 0)
        errlog.seek(0)
        log = errlog.read().decode()
        self.assertRegex(log, r"\d\d:\d\d:\d\d\.\d{3}  d  telemetry  "
                              r"\{\"ts\":1000,\"values\":\{\"x\":5\}\}\n")
        self.assertRegex(log, r"\d\d:\d\d:\d\d\.\d{3}  d  connected ")
        self.assertRegex(log, r"  d  disconnected \(dropped by test\)")


if __name__ == "__main__":
    unittest.main(verbosity=2)
