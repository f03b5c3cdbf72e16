/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <MQTTAsync.h>
#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "uplink/events.h"
#include "uplink/session.h"
#include "util/log.h"
#include "util/macros.h"

#define CONNECT_TIMEOUT_S 10

struct session {
    /* Where events go: set at creation and by session_move() (a reload hands the session
     * to a new uplink), read by paho's threads, so under lock. */
    pthread_mutex_t lock;
    uint32_t device;
    struct evq *evq;
    const struct edge_config *edge;
    char *name;
    char *client_id;
    char *uri;
    MQTTAsync client;
    _Atomic bool ack_wakes; /* read by paho's threads */
};

static struct event *event_new(struct session *s, enum event_type type)
{
    struct event *e = xcalloc(1, sizeof(*e));

    e->type = type;
    return e;
}

/* The device number is taken under the same lock as the queue: an event is either posted
 * before a session_move() under the old number to the old queue, or after it under the
 * new number to the new queue. */
static void post(struct session *s, struct event *e, bool quiet)
{
    pthread_mutex_lock(&s->lock);
    e->device = s->device;
    if (quiet)
        evq_post_quiet(s->evq, e);
    else
        evq_post(s->evq, e);
    pthread_mutex_unlock(&s->lock);
}

/* ---- paho callbacks: copy, post, return ---- */

static void on_connection_lost(void *ctx, char *cause)
{
    struct session *s = ctx;
    struct event *e = event_new(s, EV_CONNECTION_LOST);

    if (cause)
        e->text = xstrdup(cause);
    post(s, e, false);
}

static int on_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *m)
{
    struct session *s = ctx;
    struct event *e = event_new(s, EV_MESSAGE);
    size_t tl = topic_len > 0 ? (size_t)topic_len : strlen(topic);

    e->topic = xstrndup(topic, tl);
    e->len = m->payloadlen > 0 ? (size_t)m->payloadlen : 0;
    e->payload = xmalloc(e->len + 1);
    if (e->len)
        memcpy(e->payload, m->payload, e->len);
    e->payload[e->len] = '\0';
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    post(s, e, false);
    return 1;
}

/* paho leaves Nagle's algorithm on and offers no way to reach its socket. An RPC answer
 * follows paho's PUBACK for the request within milliseconds, so Nagle holds the answer
 * until the Edge acknowledges the PUBACK, and the Edge delays that ACK by 40 ms or more.
 * So: switch Nagle off on every TCP socket of this process that is connected to the Edge's
 * port. They are all paho's (Modbus TCP sockets go to other ports, and libmodbus turns
 * Nagle off on them anyway); a socket seen twice, or one another thread has just
 * replaced, costs one harmless setsockopt(). */
static void edge_sockets_nodelay(int port)
{
    DIR *dir = opendir("/proc/self/fd");
    struct dirent *de;

    if (!dir)
        return;
    while ((de = readdir(dir))) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        char *end;
        long fd = strtol(de->d_name, &end, 10);
        int on = 1, peer_port;

        if (*end || fd < 0 || fd == dirfd(dir) ||
            getpeername((int)fd, (struct sockaddr *)&peer, &len) < 0)
            continue;
        if (peer.ss_family == AF_INET)
            peer_port = ntohs(((struct sockaddr_in *)&peer)->sin_port);
        else if (peer.ss_family == AF_INET6)
            peer_port = ntohs(((struct sockaddr_in6 *)&peer)->sin6_port);
        else
            continue;
        if (peer_port == port)
            (void)setsockopt((int)fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    }
    closedir(dir);
}

static void on_connect(void *ctx, MQTTAsync_successData *r)
{
    struct session *s = ctx;
    int port;

    pthread_mutex_lock(&s->lock);
    port = s->edge->port;
    pthread_mutex_unlock(&s->lock);
    edge_sockets_nodelay(port);
    post(s, event_new(s, EV_CONNECTED), false);
}

static void on_connect_failure(void *ctx, MQTTAsync_failureData *r)
{
    struct session *s = ctx;
    struct event *e = event_new(s, EV_CONNECT_FAILED);

    e->code = r ? r->code : MQTTASYNC_FAILURE;
    if (r && r->message)
        e->text = xstrdup(r->message);
    post(s, e, false);
}

static void on_publish(void *ctx, MQTTAsync_successData *r)
{
    struct session *s = ctx;
    struct event *e = event_new(s, EV_DELIVERED);

    e->token = r ? r->token : 0;
    post(s, e, !atomic_load_explicit(&s->ack_wakes, memory_order_relaxed));
}

static void on_publish_failure(void *ctx, MQTTAsync_failureData *r)
{
    struct session *s = ctx;
    struct event *e = event_new(s, EV_DELIVERY_FAILED);

    e->token = r ? r->token : 0;
    e->code = r ? r->code : MQTTASYNC_FAILURE;
    post(s, e, false);
}

static void on_subscribe(void *ctx, MQTTAsync_successData *r)
{
    struct session *s = ctx;
    struct event *e = event_new(s, EV_SUBSCRIBED);

    e->code = r ? r->alt.qos : 0;
    post(s, e, false);
}

static void on_subscribe_failure(void *ctx, MQTTAsync_failureData *r)
{
    struct session *s = ctx;
    struct event *e = event_new(s, EV_SUBSCRIBED);

    e->code = 0x80;
    post(s, e, false);
}

static int on_tls_error(const char *str, size_t len, void *ctx)
{
    struct session *s = ctx;
    struct event *e = event_new(s, EV_TLS_ERROR);

    while (len && (str[len - 1] == '\n' || str[len - 1] == '\r'))
        len--;
    e->text = xstrndup(str, len);
    post(s, e, false);
    return 0;
}

/* ---- API ---- */

/* paho tears its global state down (its threads, its allocation tracking) when its last
 * client is destroyed, and builds it again for the next one. The teardown races its own
 * threads: now and then an allocation made for a client just destroyed is lost (seen under
 * valgrind after reloads, which destroy every session at once; paho issues #1429, #1518).
 * This client is never connected and lives until exit: paho's state is built once and torn
 * down once, when nothing else is left. */
static MQTTAsync anchor;

void session_library_init(void)
{
    MQTTAsync_init_options o = MQTTAsync_init_options_initializer;
    int r;

    if (anchor)
        return;
    /* OpenSSL 3 initialises itself at the first TLS context. Asking paho to do it loads
     * every algorithm and error string at start-up, which a gateway without TLS pays for
     * in memory (1.3 MiB of libcrypto resident, bench/uplink.py --job small) and never
     * uses. */
    o.do_openssl_init = 0;
    MQTTAsync_global_init(&o);
    r = MQTTAsync_create(&anchor, "tcp://127.0.0.1:1883", "tbgw", MQTTCLIENT_PERSISTENCE_NONE,
                         NULL);
    if (r != MQTTASYNC_SUCCESS) {
        log_warning("MQTT library: cannot create its anchor client: %s", MQTTAsync_strerror(r));
        anchor = NULL;
    }
}

void session_library_cleanup(void)
{
    if (anchor)
        MQTTAsync_destroy(&anchor);
}

struct session *session_new(uint32_t device, const char *device_name, const char *client_id,
                            const struct edge_config *edge, struct evq *evq)
{
    struct session *s = xcalloc(1, sizeof(*s));
    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
    int r;

    pthread_mutex_init(&s->lock, NULL);
    s->device = device;
    s->name = xstrdup(device_name);
    s->client_id = xstrdup(client_id);
    s->edge = edge;
    s->evq = evq;
    atomic_init(&s->ack_wakes, true);
    s->uri = xasprintf("%s://%s:%d", edge->tls ? "ssl" : "tcp", edge->host, edge->port);
    co.MQTTVersion = MQTTVERSION_3_1_1;
    r = MQTTAsync_createWithOptions(&s->client, s->uri, s->client_id, MQTTCLIENT_PERSISTENCE_NONE,
                                    NULL, &co);
    if (r != MQTTASYNC_SUCCESS) {
        log_error("device '%s': cannot create an MQTT client for %s: %s", device_name, s->uri,
                  MQTTAsync_strerror(r));
        s->client = NULL;
        return session_free(s);
    }
    MQTTAsync_setCallbacks(s->client, s, on_connection_lost, on_message, NULL);
    return s;
}

struct session *session_free(struct session *s)
{
    if (!s)
        return NULL;
    if (s->client)
        MQTTAsync_destroy(&s->client);
    pthread_mutex_destroy(&s->lock);
    free(s->name);
    free(s->client_id);
    free(s->uri);
    free(s);
    return NULL;
}

void session_move(struct session *s, uint32_t device, const struct edge_config *edge,
                  struct evq *evq)
{
    pthread_mutex_lock(&s->lock);
    s->device = device;
    s->edge = edge;
    s->evq = evq;
    pthread_mutex_unlock(&s->lock);
}

void session_wake_on_ack(struct session *s, bool on)
{
    atomic_store_explicit(&s->ack_wakes, on, memory_order_relaxed);
}

const char *session_client_id(const struct session *s)
{
    return s->client_id;
}

int session_connect(struct session *s, const struct session_creds *c)
{
    MQTTAsync_connectOptions o = MQTTAsync_connectOptions_initializer;
    MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
    int r;

    o.keepAliveInterval = s->edge->keepalive_s;
    o.cleansession = 1;
    o.MQTTVersion = MQTTVERSION_3_1_1;
    o.connectTimeout = CONNECT_TIMEOUT_S;
    o.automaticReconnect = 0;
    o.username = c->username;
    o.password = c->password;
    o.onSuccess = on_connect;
    o.onFailure = on_connect_failure;
    o.context = s;
    if (s->edge->tls) {
        ssl.trustStore = s->edge->ca_file;
        ssl.keyStore = c->cert_file;
        ssl.privateKey = c->key_file;
        ssl.enableServerCertAuth = 1;
        ssl.verify = s->edge->verify_hostname;
        ssl.ssl_error_cb = on_tls_error;
        ssl.ssl_error_context = s;
        o.ssl = &ssl;
    }
    r = MQTTAsync_connect(s->client, &o);
    if (r != MQTTASYNC_SUCCESS) {
        log_debug("device '%s': MQTTAsync_connect: %s", s->name, MQTTAsync_strerror(r));
        return -EIO;
    }
    return 0;
}

void session_disconnect(struct session *s, int timeout_ms)
{
    MQTTAsync_disconnectOptions o = MQTTAsync_disconnectOptions_initializer;

    if (!MQTTAsync_isConnected(s->client))
        return;
    o.timeout = timeout_ms;
    MQTTAsync_disconnect(s->client, &o);
}

int session_publish(struct session *s, const char *topic, const void *payload, size_t len,
                    int qos, int *ret_token)
{
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    MQTTAsync_message m = MQTTAsync_message_initializer;
    int r;

    if (len > (size_t)INT32_MAX)
        return -EMSGSIZE;
    ro.onSuccess = on_publish;
    ro.onFailure = on_publish_failure;
    ro.context = s;
    m.payload = (void *)payload;
    m.payloadlen = (int)len;
    m.qos = qos;
    r = MQTTAsync_sendMessage(s->client, topic, &m, &ro);
    if (r == MQTTASYNC_DISCONNECTED)
        return -ENOTCONN;
    if (r != MQTTASYNC_SUCCESS)
        return -EIO;
    if (ret_token)
        *ret_token = ro.token;
    return 0;
}

int session_subscribe(struct session *s, const char *topic, int qos)
{
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;

    ro.onSuccess = on_subscribe;
    ro.onFailure = on_subscribe_failure;
    ro.context = s;
    return MQTTAsync_subscribe(s->client, topic, qos, &ro) == MQTTASYNC_SUCCESS ? 0 : -EIO;
}
