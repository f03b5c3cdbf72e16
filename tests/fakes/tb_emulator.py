#!/usr/bin/python3
"""A ThingsBoard device-API emulator: an MQTT 3.1.1 server that behaves, towards devices,
as ThingsBoard CE/Edge does (thingsboard-device-api.md in the project's spec is the
source of every rule here).

- Authenticates every connection as ThingsBoard does: access token (username), MQTT basic
  (client id / user name / password combinations and lookup order), X.509 client
  certificates over TLS, and provisioning sessions (username or client id "provision").
  Refusals use ThingsBoard's CONNACK codes (5, or 2 for "client id only").
- Routes v1/devices/me/... per device: it knows which device published what.
- Validates payloads like ThingsBoard: a malformed telemetry/attribute message closes the
  session without PUBACK; an unknown topic is PUBACKed and dropped; only the exact
  subscription filters ThingsBoard accepts are granted (others get 0x80).
- Serves attribute requests, shared-attribute pushes and deletions, server-side RPC (ids per
  device from 0, every pending request re-sent on each RPC subscription), client-side RPC
  through a handler, claiming, provisioning (not idempotent), and OTA packages over v2/fw
  and v2/sw chunks with ThingsBoard's checksum formats.
- Faults for tests: drop a connection, refuse connections with a CONNACK code or at TCP
  level, withhold PUBACKs, stall a connection half-open, close on a chosen message.

Use it in-process (tests, benches): Emulator(...).start(); or as a program (the demo):
    python3 tb_emulator.py --port 1883 --devices devices.json [--log] [--control PORT]
Standard library only.
"""

import argparse
import asyncio
import base64
import collections
import hashlib
import json
import os
import random
import re
import signal
import socket
import ssl
import string
import struct
import sys
import threading
import time
import zlib

# ---------------------------------------------------------------------------------------
# Checksums as ThingsBoard prints them (Guava hash bytes as lower-case hex).


def _rotl32(x, r):
    return ((x << r) | (x >> (32 - r))) & 0xFFFFFFFF


def _rotl64(x, r):
    return ((x << r) | (x >> (64 - r))) & 0xFFFFFFFFFFFFFFFF


def murmur3_32(data, seed=0):
    """MurmurHash3_x86_32, as Guava's murmur3_32 (seed 0)."""
    h = seed
    n = len(data)
    for i in range(0, n // 4 * 4, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * 0xCC9E2D51) & 0xFFFFFFFF
        k = _rotl32(k, 15)
        k = (k * 0x1B873593) & 0xFFFFFFFF
        h ^= k
        h = _rotl32(h, 13)
        h = (h * 5 + 0xE6546B64) & 0xFFFFFFFF
    tail = data[n // 4 * 4:]
    k = 0
    for b in reversed(tail):
        k = (k << 8) | b
    if tail:
        k = (k * 0xCC9E2D51) & 0xFFFFFFFF
        k = _rotl32(k, 15)
        k = (k * 0x1B873593) & 0xFFFFFFFF
        h ^= k
    h ^= n
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h


def _fmix64(k):
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & 0xFFFFFFFFFFFFFFFF
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & 0xFFFFFFFFFFFFFFFF
    k ^= k >> 33
    return k


def murmur3_128(data, seed=0):
    """MurmurHash3_x64_128 -> (h1, h2), as Guava's murmur3_128 (seed 0)."""
    M = 0xFFFFFFFFFFFFFFFF
    c1, c2 = 0x87C37B91114253D5, 0x4CF5AD432745937F
    h1 = h2 = seed
    n = len(data)
    for i in range(0, n // 16 * 16, 16):
        k1 = int.from_bytes(data[i:i + 8], "little")
        k2 = int.from_bytes(data[i + 8:i + 16], "little")
        k1 = (k1 * c1) & M
        k1 = _rotl64(k1, 31)
        k1 = (k1 * c2) & M
        h1 ^= k1
        h1 = _rotl64(h1, 27)
        h1 = (h1 + h2) & M
        h1 = (h1 * 5 + 0x52DCE729) & M
        k2 = (k2 * c2) & M
        k2 = _rotl64(k2, 33)
        k2 = (k2 * c1) & M
        h2 ^= k2
        h2 = _rotl64(h2, 31)
        h2 = (h2 + h1) & M
        h2 = (h2 * 5 + 0x38495AB5) & M
    tail = data[n // 16 * 16:]
    k1 = k2 = 0
    for i in range(len(tail) - 1, 7, -1):
        k2 = (k2 << 8) | tail[i]
    for i in range(min(len(tail), 8) - 1, -1, -1):
        k1 = (k1 << 8) | tail[i]
    if len(tail) > 8:
        k2 = (k2 * c2) & M
        k2 = _rotl64(k2, 33)
        k2 = (k2 * c1) & M
        h2 ^= k2
    if tail:
        k1 = (k1 * c1) & M
        k1 = _rotl64(k1, 31)
        k1 = (k1 * c2) & M
        h1 ^= k1
    h1 ^= n
    h2 ^= n
    h1 = (h1 + h2) & M
    h2 = (h2 + h1) & M
    h1 = _fmix64(h1)
    h2 = _fmix64(h2)
    h1 = (h1 + h2) & M
    h2 = (h2 + h1) & M
    return h1, h2


def tb_checksum(algorithm, data):
    """The checksum ThingsBoard computes for an OTA package (lower-case hex)."""
    a = algorithm.upper()
    if a in ("MD5", "SHA256", "SHA384", "SHA512"):
        return hashlib.new(a.lower(), data).hexdigest()
    if a == "CRC32":
        return (zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "little").hex()
    if a == "MURMUR3_32":
        return murmur3_32(data).to_bytes(4, "little").hex()
    if a == "MURMUR3_128":
        h1, h2 = murmur3_128(data)
        return h1.to_bytes(8, "little").hex() + h2.to_bytes(8, "little").hex()
    raise ValueError("unknown checksum algorithm " + algorithm)


# ---------------------------------------------------------------------------------------
# MQTT packet plumbing

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14

MAX_PAYLOAD = 65536

# SUBSCRIBE filters ThingsBoard grants (thingsboard-device-api.md §1); anything else: 0x80.
GRANTED = {
    "v1/devices/me/attributes", "v1/devices/me/rpc/request/+", "v2/a", "v2/a/j", "v2/a/p",
    "v2/r/req/+", "v2/r/req/j/+", "v2/r/req/p/+",
    "v1/devices/me/attributes/response/+", "v1/devices/me/rpc/response/+", "v2/a/res/+",
    "v2/a/res/j/+", "v2/a/res/p/+", "v2/r/res/+", "v2/r/res/j/+", "v2/r/res/p/+",
    "v2/fw/response/+/chunk/+", "v2/fw/error", "v2/sw/response/+/chunk/+", "v2/sw/error",
    "v1/gateway/attributes", "v1/gateway/rpc", "v1/gateway/attributes/response",
}
ATTR_PUSH_FILTERS = {"v1/devices/me/attributes", "v2/a", "v2/a/j"}
RPC_FILTERS = {"v1/devices/me/rpc/request/+", "v2/r/req/+", "v2/r/req/j/+"}

JAVA_INT = re.compile(r"^-?\d+$")


class Closed(Exception):
    """The session must end (ThingsBoard closes it; no PUBACK)."""


def _varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(ptype, flags, body):
    return bytes([(ptype << 4) | flags]) + _varint(len(body)) + body


def _utf8(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def _java_int(s):
    if not JAVA_INT.match(s):
        return None
    v = int(s)
    return v if -2**31 <= v < 2**31 else None


class Message:
    """One PUBLISH the emulator received."""

    __slots__ = ("device", "topic", "payload", "qos", "recv_ms", "rejected")

    def __init__(self, device, topic, payload, qos, recv_ms, rejected=False):
        self.device, self.topic, self.payload = device, topic, payload
        self.qos, self.recv_ms, self.rejected = qos, recv_ms, rejected

    def json(self):
        return json.loads(self.payload)

    def __repr__(self):
        return "Message(%r, %r, %r)" % (self.device, self.topic, self.payload[:80])


class Device:
    """A ThingsBoard device as the emulator knows it."""

    def __init__(self, name, token=None, client_id=None, username=None, password=None,
                 cert_der=None):
        self.name = name
        self.token, self.client_id, self.username, self.password = token, client_id, username, password
        self.cert_der = cert_der
        self.shared = {}
        self.client = {}
        self.rpc_next = 0
        self.rpc_pending = collections.OrderedDict()  # id -> request body
        self.rpc_answers = {}
        self.claims = []
        self.ota = {}          # kind -> package dict
        self.ota_bound = {}    # (session id, kind, reqId) -> package
        self.ota_requests = []
        self.session = None
        self.connects = 0
        self.hold_puback = False
        self.held = []
        self.close_on = None
        self.counts = collections.Counter()


class Session:
    """One client connection."""

    def __init__(self, emu, reader, writer, peer_cert_der):
        self.emu, self.reader, self.writer = emu, reader, writer
        self.peer_cert_der = peer_cert_der
        self.device = None
        self.provision = False
        self.subs = {}  # filter -> granted qos
        self.next_pid = 1
        self.stalled = False
        self.closed = False
        self.provision_size = {}

    # ---- output ----

    def send(self, data):
        if self.closed or self.stalled:
            return
        try:
            self.writer.write(data)
        except Exception:
            pass

    def publish(self, topic, payload, qos=None):
        if isinstance(payload, str):
            payload = payload.encode()
        if qos is None:
            qos = 1
        body = _utf8(topic)
        if qos:
            pid = self.next_pid
            self.next_pid = self.next_pid % 65535 + 1
            body += struct.pack(">H", pid)
        self.send(_packet(PUBLISH, qos << 1, body + payload))

    def qos_for(self, topic):
        """Downlink QoS: the granted QoS of a matching subscription, else 1 (§2)."""
        for f, q in self.subs.items():
            if _topic_matches(f, topic):
                return q
        return 1

    def abort(self):
        self.closed = True
        try:
            self.writer.transport.abort()
        except Exception:
            pass


def _topic_matches(filt, topic):
    fp, tp = filt.split("/"), topic.split("/")
    for i, f in enumerate(fp):
        if f == "#":
            return True
        if i >= len(tp) or (f != "+" and f != tp[i]):
            return False
    return len(fp) == len(tp)


# ---------------------------------------------------------------------------------------


class Emulator:
    """See the module docstring. All public methods are safe to call from any thread."""

    def __init__(self, host="127.0.0.1", port=0, tls=None, record=True, latency_samples=None,
                 log=None):
        self.host, self.port, self.tls_port = host, port, None
        self.tls = tls
        self.record = record
        self.latency_samples = latency_samples
        self.log = log
        self.devices = {}
        self.provision_profiles = {}
        self.provisions = []
        self.provision_close_s = 60.0
        self.connacks = []
        self._messages = []
        self._latency = []
        self._refuse = None
        self._refuse_tcp = False
        self._client_rpc = None
        self._cond = threading.Condition()
        self._loop = None
        self._thread = None
        self._servers = []
        self._sessions = set()

    # ---- lifecycle ----

    def start(self):
        ready = threading.Event()
        err = []

        def run():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._listen())
            except Exception as e:  # reported to start()
                err.append(e)
                ready.set()
                return
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="tb-emulator", daemon=True)
        self._thread.start()
        ready.wait(10)
        if err:
            raise err[0]
        return self

    async def _listen(self):
        srv = await asyncio.start_server(self._serve, self.host, self.port)
        self._servers.append(srv)
        self.port = srv.sockets[0].getsockname()[1]
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.tls["certfile"], self.tls["keyfile"])
            if self.tls.get("cafile"):
                ctx.load_verify_locations(self.tls["cafile"])
                ctx.verify_mode = ssl.CERT_OPTIONAL
            srv = await asyncio.start_server(self._serve, self.host, self.tls.get("port", 0), ssl=ctx)
            self._servers.append(srv)
            self.tls_port = srv.sockets[0].getsockname()[1]

    def stop(self):
        if not self._loop:
            return

        async def shutdown():
            for s in self._servers:
                s.close()
            for sess in list(self._sessions):
                sess.abort()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop = None

    def _call(self, fn, *args):
        """Run fn(*args) on the loop thread and return its result."""
        fut = asyncio.run_coroutine_threadsafe(self._acall(fn, *args), self._loop)
        return fut.result(10)

    @staticmethod
    async def _acall(fn, *args):
        return fn(*args)

    # ---- registry ----

    def add_device(self, name, token=None, client_id=None, username=None, password=None,
                   cert_pem=None):
        der = None
        if cert_pem:
            der = ssl.PEM_cert_to_DER_cert(cert_pem)
        with self._cond:
            self.devices[name] = Device(name, token, client_id, username, password, der)
        return self.devices[name]

    def add_provision_profile(self, key, secret, allow_create=True):
        self.provision_profiles[key] = {"secret": secret, "allow_create": allow_create}

    # ---- observation ----

    def _note(self, msg):
        with self._cond:
            if self.record:
                self._messages.append(msg)
            d = self.devices.get(msg.device)
            if d is not None:
                d.counts["messages"] += 1
            self._cond.notify_all()

    def messages(self, device=None, topic=None):
        with self._cond:
            out = []
            for m in self._messages:
                if device is not None and m.device != device:
                    continue
                if topic is not None:
                    if topic.endswith("/") and not m.topic.startswith(topic):
                        continue
                    if not topic.endswith("/") and m.topic != topic:
                        continue
                out.append(m)
            return out

    def telemetry(self, device):
        """[(ts, key, value)] of every accepted telemetry message of device, in order."""
        out = []
        for m in self.messages(device):
            if m.rejected or m.topic not in ("v1/devices/me/telemetry", "v2/t", "v2/t/j"):
                continue
            body = m.json()
            items = body if isinstance(body, list) else [body]
            for it in items:
                if "ts" in it and "values" in it:
                    ts, values = int(it["ts"]), it["values"]
                else:
                    ts, values = m.recv_ms, it
                for k, v in values.items():
                    if v is not None:
                        out.append((ts, k, v))
        return out

    def attributes(self, device):
        with self._cond:
            return dict(self.devices[device].client)

    def shared(self, device):
        with self._cond:
            return dict(self.devices[device].shared)

    def connected(self, device):
        with self._cond:
            s = self.devices[device].session
            return s is not None and not s.closed

    def connect_count(self, device):
        with self._cond:
            return self.devices[device].connects

    def subscriptions(self, device):
        with self._cond:
            s = self.devices[device].session
            return dict(s.subs) if s else {}

    def claims(self, device):
        with self._cond:
            return list(self.devices[device].claims)

    def ota_requests(self, device):
        with self._cond:
            return list(self.devices[device].ota_requests)

    def counts(self, device):
        with self._cond:
            return dict(self.devices[device].counts)

    def latency(self, clear=True):
        """[(ts_ms, recv_ms)] per telemetry value, for latency figures."""
        with self._cond:
            out = self._latency
            if clear:
                self._latency = []
            return out

    def wait(self, predicate, timeout=10.0, what=None):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                try:
                    v = predicate()
                except (KeyError, IndexError):
                    v = None
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("emulator: timed out waiting for %s"
                                       % (what or getattr(predicate, "__name__", "a condition")))
                self._cond.wait(min(left, 0.1))

    def wait_messages(self, device, topic, count=1, timeout=10.0):
        return self.wait(lambda: (lambda l: l if len(l) >= count else None)(
            self.messages(device, topic)), timeout,
            "%d message(s) of %s on %s" % (count, device, topic))

    def wait_connected(self, device, timeout=10.0):
        return self.wait(lambda: self.connected(device), timeout, "%s to connect" % device)

    # ---- server actions ----

    def set_shared(self, device, data):
        def do():
            d = self.devices[device]
            d.shared.update(data)
            s = d.session
            if s and not s.closed and any(f in ATTR_PUSH_FILTERS for f in s.subs):
                s.publish("v1/devices/me/attributes", json.dumps(data),
                          s.qos_for("v1/devices/me/attributes"))
        self._call(do)

    def delete_shared(self, device, keys):
        def do():
            d = self.devices[device]
            for k in keys:
                d.shared.pop(k, None)
            s = d.session
            if s and not s.closed and any(f in ATTR_PUSH_FILTERS for f in s.subs):
                s.publish("v1/devices/me/attributes", json.dumps({"deleted": list(keys)}),
                          s.qos_for("v1/devices/me/attributes"))
        self._call(do)

    def push_raw(self, device, topic, payload):
        """Publish arbitrary bytes to the device (malformed-input tests)."""
        def do():
            s = self.devices[device].session
            if s and not s.closed:
                s.publish(topic, payload, 1)
        self._call(do)

    def rpc(self, device, method, params=None, raw=None):
        """Send a server-side RPC; returns its id. raw: send these bytes as the body."""
        def do():
            d = self.devices[device]
            rid = d.rpc_next
            d.rpc_next += 1
            body = raw if raw is not None else json.dumps({"method": method, "params": params})
            d.rpc_pending[rid] = body
            s = d.session
            if s and not s.closed and any(f in RPC_FILTERS for f in s.subs):
                s.publish("v1/devices/me/rpc/request/%d" % rid, body,
                          s.qos_for("v1/devices/me/rpc/request/%d" % rid))
            return rid
        return self._call(do)

    def rpc_response(self, device, rid, timeout=10.0):
        def answered():
            a = self.devices[device].rpc_answers.get(rid)
            return a if a is not None else None
        raw = self.wait(answered, timeout, "the answer to RPC %d of %s" % (rid, device))
        return json.loads(raw)

    def rpc_answers(self, device, rid):
        """Every answer published for rid (duplicates included)."""
        return [m.json() for m in self.messages(device, "v1/devices/me/rpc/response/%d" % rid)]

    def on_client_rpc(self, fn):
        self._client_rpc = fn

    def set_ota(self, device, kind, title, version, data, algorithm="SHA256", checksum=None,
                tag=None):
        if checksum is None:
            checksum = tb_checksum(algorithm, data)
        pkg = {"title": title, "version": version, "data": bytes(data), "algorithm": algorithm,
               "checksum": checksum, "tag": tag}

        def do():
            d = self.devices[device]
            d.ota[kind] = pkg
            p = kind
            deleted = ["%s_url" % p] if tag else ["%s_tag" % p, "%s_url" % p]
            attrs = {"%s_title" % p: title, "%s_version" % p: version}
            if tag:
                attrs["%s_tag" % p] = tag
            attrs.update({"%s_size" % p: len(data), "%s_checksum_algorithm" % p: algorithm,
                          "%s_checksum" % p: checksum})
            for k in deleted:
                d.shared.pop(k, None)
            d.shared.update(attrs)
            s = d.session
            if s and not s.closed and any(f in ATTR_PUSH_FILTERS for f in s.subs):
                s.publish("v1/devices/me/attributes", json.dumps({"deleted": deleted}))
                s.publish("v1/devices/me/attributes", json.dumps(attrs))
        self._call(do)

    def clear_ota(self, device, kind):
        keys = ["%s_%s" % (kind, k) for k in ("title", "version", "ts", "state", "size", "checksum",
                                              "checksum_algorithm", "url", "tag")]

        def do():
            d = self.devices[device]
            d.ota.pop(kind, None)
        self._call(do)
        self.delete_shared(device, keys)

    def drop(self, device):
        def do():
            s = self.devices[device].session
            if s:
                s.abort()
        self._call(do)

    def drop_all(self):
        def do():
            for s in list(self._sessions):
                s.abort()
        self._call(do)

    def refuse(self, code):
        self._refuse = code

    def refuse_tcp(self, on=True):
        self._refuse_tcp = on

    def hold_puback(self, device, on=True):
        def do():
            d = self.devices[device]
            d.hold_puback = on
            if not on:
                held, d.held = d.held, []
                for sess, pid in held:
                    if not sess.closed:
                        sess.send(_packet(PUBACK, 0, struct.pack(">H", pid)))
        self._call(do)

    def stall(self, device, on=True):
        def do():
            s = self.devices[device].session
            if s:
                s.stalled = on
        self._call(do)

    def close_on(self, device, fn):
        def do():
            self.devices[device].close_on = fn
        self._call(do)

    # ---- connection handling ----

    async def _serve(self, reader, writer):
        if self._refuse_tcp:
            writer.transport.abort()
            return
        der = None
        sslobj = writer.get_extra_info("ssl_object")
        if sslobj is not None:
            der = sslobj.getpeercert(binary_form=True)
        sess = Session(self, reader, writer, der)
        self._sessions.add(sess)
        try:
            await self._session(sess)
        except (Closed, asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            self._sessions.discard(sess)
            sess.closed = True
            with self._cond:
                if sess.device and sess.device.session is sess:
                    sess.device.session = None
                self._cond.notify_all()
            try:
                writer.transport.abort()
            except Exception:
                pass

    async def _read_packet(self, sess):
        while sess.stalled:
            await asyncio.sleep(0.05)
        h = await sess.reader.readexactly(1)
        mult, length = 1, 0
        for _ in range(4):
            b = (await sess.reader.readexactly(1))[0]
            length += (b & 0x7F) * mult
            mult *= 128
            if not b & 0x80:
                break
        else:
            raise Closed()
        body = await sess.reader.readexactly(length) if length else b""
        while sess.stalled:
            await asyncio.sleep(0.05)
        return h[0] >> 4, h[0] & 0x0F, body

    def _emit(self, text):
        if self.log:
            self.log(text)

    async def _session(self, sess):
        ptype, _, body = await asyncio.wait_for(self._read_packet(sess), 30)
        if ptype != CONNECT:
            raise Closed()
        self._connect(sess, body)
        while not sess.closed:
            ptype, flags, body = await self._read_packet(sess)
            if ptype == PUBLISH:
                self._publish(sess, flags, body)
            elif ptype == SUBSCRIBE:
                self._subscribe(sess, body)
            elif ptype == UNSUBSCRIBE:
                pid = body[:2]
                pos = 2
                while pos < len(body):
                    n = struct.unpack(">H", body[pos:pos + 2])[0]
                    sess.subs.pop(body[pos + 2:pos + 2 + n].decode(errors="replace"), None)
                    pos += 2 + n
                sess.send(_packet(UNSUBACK, 0, pid))
            elif ptype == PINGREQ:
                sess.send(_packet(PINGRESP, 0, b""))
            elif ptype == DISCONNECT:
                raise Closed()
            elif ptype == PUBACK:
                pass
            else:
                raise Closed()
            await sess.writer.drain()

    def _connect(self, sess, body):
        pos = 0

        def take_str():
            nonlocal pos
            n = struct.unpack(">H", body[pos:pos + 2])[0]
            s = body[pos + 2:pos + 2 + n]
            pos += 2 + n
            return s

        proto = take_str()
        level = body[pos]
        cflags = body[pos + 1]
        pos += 4  # level, flags, keepalive
        client_id = take_str().decode(errors="replace")
        if cflags & 0x04:
            take_str()
            take_str()
        username = take_str().decode(errors="replace") if cflags & 0x80 else None
        password = take_str().decode(errors="replace") if cflags & 0x40 else None
        if proto not in (b"MQTT", b"MQIsdp") or level not in (3, 4):
            sess.send(_packet(CONNACK, 0, bytes([0, 1])))
            raise Closed()

        code, device = self._authenticate(sess, client_id, username, password)
        if code == 0 and self._refuse is not None:
            code = self._refuse
        with self._cond:
            self.connacks.append((client_id, username, code))
        if code:
            self._emit("refused %s (user %s): CONNACK %d" % (client_id, username, code))
            sess.send(_packet(CONNACK, 0, bytes([0, code])))
            raise Closed()
        sess.send(_packet(CONNACK, 0, bytes([0, 0])))
        if sess.provision:
            self._emit("provision session from %s" % client_id)
            return
        with self._cond:
            old = device.session
            device.session = sess
            device.connects += 1
            sess.device = device
            self._cond.notify_all()
        if old and not old.closed:
            old.abort()  # one session per device: the new one wins
        self._emit("%s connected" % device.name)

    def _authenticate(self, sess, client_id, username, password):
        if username == "provision" or client_id == "provision":
            sess.provision = True
            return 0, None
        if sess.peer_cert_der is not None:
            for d in self.devices.values():
                if d.cert_der == sess.peer_cert_der:
                    return 0, d
            return 5, None
        if username is None and password is None:
            if client_id:
                for d in self.devices.values():
                    if d.client_id == client_id and not d.username and not d.token:
                        return 0, d
                return 2, None
            return 5, None
        if username is None:
            return 5, None
        # With a user name: (client id, user name) pair, then the user name alone (which
        # also finds access tokens).
        cands = [d for d in self.devices.values()
                 if d.username == username and d.client_id and d.client_id == client_id]
        cands += [d for d in self.devices.values() if d.username == username and not d.client_id]
        cands += [d for d in self.devices.values() if d.token == username]
        for d in cands:
            if d.token == username:
                return 0, d
            if d.password and d.password != (password or ""):
                continue
            return 0, d
        return 5, None

    def _subscribe(self, sess, body):
        pid = body[:2]
        pos = 2
        codes = bytearray()
        while pos < len(body):
            n = struct.unpack(">H", body[pos:pos + 2])[0]
            filt = body[pos + 2:pos + 2 + n].decode(errors="replace")
            qos = body[pos + 2 + n] & 3
            pos += 3 + n
            if sess.provision:
                ok = filt == "/provision/response"
            else:
                ok = filt in GRANTED
            if ok:
                q = min(qos, 1)
                sess.subs[filt] = q
                codes.append(q)
            else:
                codes.append(0x80)
            if ok and filt in RPC_FILTERS and sess.device:
                # BURST: every pending RPC is (re)sent on subscription.
                for rid, req in sess.device.rpc_pending.items():
                    sess.publish("v1/devices/me/rpc/request/%d" % rid, req, min(qos, 1))
        sess.send(_packet(SUBACK, 0, pid + bytes(codes)))

    def _ack(self, sess, qos, pid):
        if qos == 0 or pid is None:
            return
        d = sess.device
        if d is not None and d.hold_puback:
            d.held.append((sess, pid))
            return
        sess.send(_packet(PUBACK, 0, struct.pack(">H", pid)))

    def _publish(self, sess, flags, body):
        qos = (flags >> 1) & 3
        n = struct.unpack(">H", body[:2])[0]
        topic = body[2:2 + n].decode(errors="replace")
        pos = 2 + n
        pid = None
        if qos:
            pid = struct.unpack(">H", body[pos:pos + 2])[0]
            pos += 2
        payload = body[pos:]
        now = int(time.time() * 1000)
        d = sess.device
        name = d.name if d else ("<provision>" if sess.provision else "?")
        msg = Message(name, topic, bytes(payload), qos, now)
        if len(payload) > MAX_PAYLOAD:
            msg.rejected = True
            self._note(msg)
            raise Closed()
        if d is not None and d.close_on and d.close_on(topic, bytes(payload)):
            msg.rejected = True
            self._note(msg)
            raise Closed()
        if self.log:
            self._emit("%s  %s  %s" % (name, topic.replace("v1/devices/me/", ""),
                                       bytes(payload[:200]).decode(errors="replace")))
        try:
            if sess.provision:
                self._provision(sess, topic, payload, qos, pid, msg)
            else:
                self._device_publish(sess, topic, payload, qos, pid, msg)
        except Closed:
            msg.rejected = True
            self._note(msg)
            raise

    def _device_publish(self, sess, topic, payload, qos, pid, msg):
        d = sess.device
        if topic in ("v1/devices/me/telemetry", "v2/t", "v2/t/j"):
            body = self._json(payload)
            items = body if isinstance(body, list) else [body]
            if not isinstance(body, (list, dict)) or not items:
                raise Closed()
            nvalues = 0
            for it in items:
                if not isinstance(it, dict):
                    raise Closed()
                if "ts" in it and "values" in it:
                    ts = it["ts"]
                    if isinstance(ts, bool) or not (isinstance(ts, (int, float)) or
                                                    (isinstance(ts, str) and ts.isdigit())):
                        raise Closed()
                    if not isinstance(it["values"], dict):
                        raise Closed()
                    nvalues += len(it["values"])
                    if self.latency_samples is not False:
                        with self._cond:
                            for _ in it["values"]:
                                self._latency.append((int(ts), msg.recv_ms))
                            if self.latency_samples and len(self._latency) > self.latency_samples:
                                del self._latency[:len(self._latency) - self.latency_samples]
                else:
                    nvalues += len(it)
            with self._cond:
                d.counts["telemetry_msgs"] += 1
                d.counts["telemetry_values"] += nvalues
            self._note(msg)
            self._ack(sess, qos, pid)
            return
        if topic in ("v1/devices/me/attributes", "v2/a", "v2/a/j"):
            body = self._json(payload)
            if not isinstance(body, dict):
                raise Closed()
            with self._cond:
                d.client.update(body)
                d.counts["attributes_msgs"] += 1
            self._note(msg)
            self._ack(sess, qos, pid)
            return
        m = re.match(r"^v1/devices/me/attributes/request/(.*)$", topic)
        if m:
            rid = _java_int(m.group(1))
            body = self._json(payload) if payload else None
            if rid is None or not isinstance(body, dict):
                raise Closed()
            self._note(msg)
            self._ack(sess, qos, pid)
            self._attribute_request(sess, rid, body)
            return
        m = re.match(r"^v1/devices/me/rpc/response/(.*)$", topic)
        if m:
            rid = _java_int(m.group(1))
            if rid is None:
                raise Closed()
            self._note(msg)
            self._ack(sess, qos, pid)
            with self._cond:
                if rid in d.rpc_pending and rid not in d.rpc_answers:
                    d.rpc_pending.pop(rid, None)
                    d.rpc_answers[rid] = bytes(payload).decode(errors="replace")
                self._cond.notify_all()
            return
        m = re.match(r"^v1/devices/me/rpc/request/(.*)$", topic)
        if m:
            rid = _java_int(m.group(1))
            body = self._json(payload)
            if rid is None or not isinstance(body, dict) or "method" not in body:
                raise Closed()
            self._note(msg)
            self._ack(sess, qos, pid)
            fn = self._client_rpc
            result = fn(d.name, body["method"], body.get("params")) if fn else None
            if result is not None:
                sess.publish("v1/devices/me/rpc/response/%d" % rid, json.dumps(result), 1)
            return
        if topic == "v1/devices/me/claim":
            if payload:
                body = self._json(payload)
                if not isinstance(body, dict):
                    raise Closed()
            else:
                body = {}
            with self._cond:
                d.claims.append((body.get("secretKey", ""), body.get("durationMs", 0)))
            self._note(msg)
            self._ack(sess, qos, pid)
            return
        m = re.match(r"^v2/(fw|sw)/request/([^/]+)/chunk/([^/]+)$", topic)
        if m:
            self._ota_request(sess, m.group(1), m.group(2), m.group(3), payload, qos, pid, msg)
            return
        # Unknown topic: acknowledged and dropped (§2).
        self._note(msg)
        self._ack(sess, qos, pid)

    @staticmethod
    def _json(payload):
        try:
            return json.loads(bytes(payload).decode())
        except (UnicodeDecodeError, ValueError):
            raise Closed()

    def _attribute_request(self, sess, rid, body):
        d = sess.device

        def keys(field):
            v = body.get(field)
            if v is None:
                return None
            if isinstance(v, list):
                if len(v) != 1:
                    raise Closed()
                v = v[0]
            if not isinstance(v, str):
                raise Closed()
            return v.split(",")

        ck, sk = keys("clientKeys"), keys("sharedKeys")
        resp = {}
        if ck is None and sk is None:
            if d.client:
                resp["client"] = dict(d.client)
            if d.shared:
                resp["shared"] = dict(d.shared)
        else:
            if ck:
                c = {k: d.client[k] for k in ck if k in d.client}
                if c:
                    resp["client"] = c
            if sk:
                s = {k: d.shared[k] for k in sk if k in d.shared}
                if s:
                    resp["shared"] = s
        if rid < 0:
            return
        sess.publish("v1/devices/me/attributes/response/%d" % rid, json.dumps(resp),
                     sess.qos_for("v1/devices/me/attributes/response/%d" % rid))

    def _ota_request(self, sess, kind, req, chunk, payload, qos, pid, msg):
        d = sess.device
        if not req.isdigit() or not chunk.isdigit():
            raise Closed()
        text = bytes(payload).decode(errors="replace").strip()
        key = (id(sess), kind, req)
        if text:
            if not re.match(r"^-?\d+$", text):
                raise Closed()
            size = int(text)
            sess.provision_size[key] = size
        else:
            size = sess.provision_size.get(key, 0)
        with self._cond:
            d.ota_requests.append((kind, int(req), int(chunk), size))
        self._note(msg)
        if size > MAX_PAYLOAD:
            sess.publish("v2/fw/error", "PAYLOAD_TOO_LARGE", 1)
            raise Closed()
        pkg = d.ota_bound.get(key)
        if pkg is None:
            pkg = d.ota.get(kind)
            if pkg is None:
                sess.publish("v2/fw/error", "NOT_FOUND", 1)
                raise Closed()
            d.ota_bound[key] = pkg
        self._ack(sess, qos, pid)
        data = pkg["data"]
        n = int(chunk)
        part = data if size <= 0 else data[size * n:size * n + size]
        if size <= 0 and n > 0:
            part = b""
        sess.publish("v2/%s/response/%s/chunk/%s" % (kind, req, chunk), part, 1)

    def _provision(self, sess, topic, payload, qos, pid, msg):
        if topic != "/provision/request":
            self._note(msg)
            self._ack(sess, qos, pid)
            raise Closed()
        body = self._json(payload)
        if not isinstance(body, dict) or "provisionDeviceKey" not in body or \
                "provisionDeviceSecret" not in body:
            self._note(msg)
            self._ack(sess, qos, pid)
            raise Closed()
        ctype = body.get("credentialsType", "ACCESS_TOKEN")
        if ctype not in ("ACCESS_TOKEN", "MQTT_BASIC", "X509_CERTIFICATE"):
            self._note(msg)
            self._ack(sess, qos, pid)
            raise Closed()
        self._note(msg)
        self._ack(sess, qos, pid)
        prof = self.provision_profiles.get(body.get("provisionDeviceKey"))
        name = (body.get("deviceName") or "").strip() if isinstance(body.get("deviceName"), str) else ""
        if not prof or prof["secret"] != body.get("provisionDeviceSecret") or \
                not body.get("provisionDeviceKey"):
            resp = {"errorMsg": "Provision data was not found!", "status": "NOT_FOUND"}
        elif (body.get("deviceName") is not None and not name) or name in self.devices:
            resp = {"errorMsg": "Failed to provision device!", "status": "FAILURE"}
        else:
            if not name:
                name = "".join(random.choice(string.ascii_letters) for _ in range(20))
            if ctype == "ACCESS_TOKEN":
                tok = body.get("token") or "".join(random.choice(string.ascii_letters + string.digits)
                                                   for _ in range(20))
                self.add_device(name, token=tok)
                resp = {"credentialsValue": tok, "credentialsType": ctype, "status": "SUCCESS"}
            elif ctype == "MQTT_BASIC":
                self.add_device(name, client_id=body.get("clientId"), username=body.get("username"),
                                password=body.get("password"))
                resp = {"credentialsValue": {"clientId": body.get("clientId") or "",
                                             "userName": body.get("username") or "",
                                             "password": body.get("password") or ""},
                        "credentialsType": ctype, "status": "SUCCESS"}
            else:
                pem = body.get("hash") or ""
                self.add_device(name, cert_pem=pem)
                b = "".join(l for l in pem.splitlines() if "-----" not in l)
                resp = {"credentialsValue": b, "credentialsType": ctype, "status": "SUCCESS"}
        with self._cond:
            self.provisions.append((body, resp))
        sess.publish("/provision/response", json.dumps(resp), 1)
        self._loop.call_later(self.provision_close_s, sess.abort)


# ---------------------------------------------------------------------------------------
# Command line: the demo, and benches that run the emulator in another process.


def _load_devices(emu, path):
    with open(path) as f:
        spec = json.load(f)
    for d in spec.get("devices", []):
        pem = None
        if d.get("cert_file"):
            with open(d["cert_file"]) as cf:
                pem = cf.read()
        emu.add_device(d["name"], token=d.get("token"), client_id=d.get("client_id"),
                       username=d.get("username"), password=d.get("password"), cert_pem=pem)
    for p in spec.get("provision", []):
        emu.add_provision_profile(p["key"], p["secret"])


def _control_server(emu, port):
    def handle(req):
        c = req.get("cmd")
        dev = req.get("device")
        if c == "set_shared":
            emu.set_shared(dev, req["data"])
        elif c == "delete_shared":
            emu.delete_shared(dev, req["keys"])
        elif c == "rpc":
            return {"id": emu.rpc(dev, req["method"], req.get("params"))}
        elif c == "rpc_response":
            return {"response": emu.rpc_response(dev, req["id"], req.get("timeout", 10))}
        elif c == "drop":
            emu.drop(dev)
        elif c == "refuse":
            emu.refuse(req.get("code"))
        elif c == "refuse_tcp":
            emu.refuse_tcp(req.get("on", True))
        elif c == "hold_puback":
            emu.hold_puback(dev, req.get("on", True))
        elif c == "stall":
            emu.stall(dev, req.get("on", True))
        elif c == "counts":
            return {"counts": {n: emu.counts(n) for n in emu.devices}}
        elif c == "telemetry":
            t = emu.telemetry(dev)
            return {"telemetry": t[req.get("since", 0):]}
        elif c == "attributes":
            return {"attributes": emu.attributes(dev)}
        elif c == "connected":
            return {"connected": {n: emu.connected(n) for n in emu.devices}}
        elif c == "latency":
            return {"latency": emu.latency()}
        elif c == "set_ota":
            emu.set_ota(dev, req["kind"], req["title"], req["version"],
                        base64.b64decode(req["data"]), req.get("algorithm", "SHA256"))
        else:
            return {"error": "unknown cmd"}
        return {"ok": True}

    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(8)

    def client(conn):
        with conn, conn.makefile("rw") as f:
            for line in f:
                try:
                    out = handle(json.loads(line))
                except Exception as e:  # the control client sees what went wrong
                    out = {"error": str(e)}
                f.write(json.dumps(out) + "\n")
                f.flush()

    def accept():
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=client, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return srv.getsockname()[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--devices", required=True, help="JSON file: {devices: [...], provision: [...]}")
    ap.add_argument("--tls-port", type=int)
    ap.add_argument("--certfile")
    ap.add_argument("--keyfile")
    ap.add_argument("--cafile")
    ap.add_argument("--control", type=int, help="control port on 127.0.0.1 (0: any)")
    ap.add_argument("--log", action="store_true", help="print every message received")
    ap.add_argument("--no-record", action="store_true", help="count, do not keep payloads")
    a = ap.parse_args()

    def log(text):
        print(time.strftime("%H:%M:%S.") + "%03d  %s" % (int(time.time() * 1000) % 1000, text),
              flush=True)

    tls = None
    if a.tls_port is not None:
        tls = {"certfile": a.certfile, "keyfile": a.keyfile, "cafile": a.cafile, "port": a.tls_port}
    emu = Emulator(port=a.port, tls=tls, record=not a.no_record,
                   latency_samples=None if not a.no_record else 200000,
                   log=log if a.log else None)
    _load_devices(emu, a.devices)
    emu.start()
    ctl = _control_server(emu, a.control) if a.control is not None else None
    print("READY port=%d tls_port=%s control=%s" % (emu.port, emu.tls_port or "-", ctl or "-"),
          flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    emu.stop()


if __name__ == "__main__":
    main()
