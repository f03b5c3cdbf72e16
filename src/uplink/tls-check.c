/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "uplink/tls-check.h"

#define CONNECT_TIMEOUT_MS 2000
#define HANDSHAKE_TIMEOUT_MS 3000

static int tcp_connect(const struct edge_config *e, char *why, size_t size)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    char port[8];
    int fd = -1, r, err = 0;

    snprintf(port, sizeof(port), "%d", e->port);
    r = getaddrinfo(e->host, port, &hints, &res);
    if (r != 0) {
        snprintf(why, size, "cannot resolve '%s': %s", e->host, gai_strerror(r));
        return -1;
    }
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        struct pollfd p;
        socklen_t len = sizeof(err);

        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        err = errno;
        if (err == EINPROGRESS) {
            p = (struct pollfd){.fd = fd, .events = POLLOUT};
            if (poll(&p, 1, CONNECT_TIMEOUT_MS) == 1 &&
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
                break;
            if (err == EINPROGRESS)
                err = ETIMEDOUT;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(why, size, "%s", strerror(err ? err : EHOSTUNREACH));
    return fd;
}

void tcp_check(const struct edge_config *e, char *why, size_t size)
{
    int fd;

    why[0] = '\0';
    fd = tcp_connect(e, why, size);
    if (fd >= 0) {
        snprintf(why, size, "the port answers, but the MQTT connection failed");
        close(fd);
    }
}

void tls_check(const struct edge_config *e, const char *cert, const char *key, char *why,
               size_t size)
{
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    int fd, r;
    long v;

    why[0] = '\0';
    fd = tcp_connect(e, why, size);
    if (fd < 0)
        return;
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        goto fail_ssl;
    if (SSL_CTX_load_verify_locations(ctx, e->ca_file, NULL) != 1) {
        snprintf(why, size, "cannot load the CA file '%s'", e->ca_file);
        goto out;
    }
    if (cert && (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
                 SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)) {
        snprintf(why, size, "cannot use the client certificate '%s' with key '%s'", cert, key);
        goto out;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    ssl = SSL_new(ctx);
    if (!ssl)
        goto fail_ssl;
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, e->host);
    if (e->verify_hostname) {
        /* The same check paho makes after the handshake, so that it shows as a verify
         * error here: a name, or an IP address. */
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        if (X509_VERIFY_PARAM_set1_ip_asc(param, e->host) != 1)
            SSL_set1_host(ssl, e->host);
    }
    for (;;) {
        struct pollfd p = {.fd = fd};
        r = SSL_connect(ssl);
        if (r == 1)
            break;
        r = SSL_get_error(ssl, r);
        if (r != SSL_ERROR_WANT_READ && r != SSL_ERROR_WANT_WRITE)
            break;
        p.events = r == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
        if (poll(&p, 1, HANDSHAKE_TIMEOUT_MS) != 1) {
            snprintf(why, size, "TLS handshake timed out");
            goto out;
        }
    }
    v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK) {
        snprintf(why, size, "TLS: the edge's certificate is not accepted: %s",
                 X509_verify_cert_error_string(v));
        goto out;
    }
    if (r != 1)
        goto fail_ssl;
    snprintf(why, size, "TLS works, but the MQTT connection failed");
    goto out;

fail_ssl:
    {
        unsigned long err = ERR_get_error();
        char buf[160];
        ERR_error_string_n(err, buf, sizeof(buf));
        snprintf(why, size, "TLS handshake failed: %s", err ? buf : "connection closed");
    }
out:
    ERR_clear_error();
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
}
