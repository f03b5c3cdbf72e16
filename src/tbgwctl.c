/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tbgwctl: see and steer a running tbgw through its control socket.
 *
 *   tbgwctl status [--json]
 *   tbgwctl read DEVICE KEY
 *   tbgwctl write DEVICE KEY VALUE
 *   tbgwctl claim DEVICE [--secret S] [--duration-ms N]
 *   tbgwctl reload
 *
 * The socket is -s PATH, else control.socket of the configuration (-c FILE, default
 * /etc/tbgw.conf), else /run/tbgw/control.sock. Exit status: 0 done, 1 the daemon said no,
 * 64 bad usage, 69 the daemon cannot be reached, 77 permission denied.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <libconfig.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "config/config.h"

#define EXIT_NO 1
#define EXIT_USAGE 64
#define EXIT_UNAVAILABLE 69
#define EXIT_NOPERM 77
#define REPLY_TIMEOUT_MS 15000

static const char *arg_socket;
static const char *arg_config = DEFAULT_CONFIG_FILE;
static bool arg_json;
static const char *arg_secret;
static long long arg_duration_ms = -1;

static void usage(FILE *f)
{
    fprintf(f, "Usage: tbgwctl [OPTION]... COMMAND [ARG]...\n"
               "See and steer a running tbgw.\n"
               "\n"
               "Commands:\n"
               "  status                      buses, devices and the gateway at a glance\n"
               "  read DEVICE KEY             read a declared tag now\n"
               "  write DEVICE KEY VALUE      write a declared shared-attribute tag now\n"
               "  claim DEVICE                ask ThingsBoard to let a user claim the device\n"
               "  identify DEVICE             read the device's identification (Modbus 43/14)\n"
               "  reload                      re-read the configuration (like SIGHUP) and\n"
               "                              show why it is refused, if it is\n"
               "  spool                       batches the edge refused, kept for inspection\n"
               "\n"
               "Options:\n"
               "  -s, --socket PATH           control socket (default: from the configuration)\n"
               "  -c, --config FILE           configuration to take the socket from\n"
               "                              (default: %s)\n"
               "      --json                  status, identify and spool as JSON\n"
               "      --secret S              claim: the secret key the user must give\n"
               "      --duration-ms N         claim: how long the claim stays open\n"
               "  -h, --help                  this help\n"
               "      --version               the version\n"
               "See tbgwctl(8).\n",
            DEFAULT_CONFIG_FILE);
}

/* The control socket named by the configuration, if it can be read. */
static const char *socket_from_config(void)
{
    static char path[4096];
    config_t c;
    const char *s = NULL, *env;

    config_init(&c);
    if (config_read_file(&c, arg_config) == CONFIG_TRUE &&
        config_lookup_string(&c, "control.socket", &s) == CONFIG_TRUE)
        snprintf(path, sizeof(path), "%s", s);
    config_destroy(&c);
    if (s)
        return path;
    env = getenv("RUNTIME_DIRECTORY");
    if (env && *env) {
        snprintf(path, sizeof(path), "%s/control.sock", env);
        return path;
    }
    return DEFAULT_CONTROL_SOCKET;
}

static int talk(json_object *req, json_object **ret)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    const char *path = arg_socket ? arg_socket : socket_from_config();
    const char *text = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
    size_t cap = 65536, len = 0;
    char *buf;
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "tbgwctl: socket path too long: %s\n", path);
        return EXIT_USAGE;
    }
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int err = errno;
        fprintf(stderr, "tbgwctl: cannot reach tbgw at %s: %s%s\n", path, strerror(err),
                err == EACCES ? " (are you root or in group tbgw?)"
                : err == ENOENT || err == ECONNREFUSED ? " (is tbgw running?)" : "");
        if (fd >= 0)
            close(fd);
        return err == EACCES ? EXIT_NOPERM : EXIT_UNAVAILABLE;
    }
    /* A refused peer is answered and disconnected at once: the request may then fail to
     * send (no SIGPIPE), but the answer saying why is still there to read. */
    if (send(fd, text, strlen(text), MSG_NOSIGNAL) >= 0)
        (void)send(fd, "\n", 1, MSG_NOSIGNAL);
    buf = malloc(cap);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t n;
        if (poll(&p, 1, REPLY_TIMEOUT_MS) != 1) {
            fprintf(stderr, "tbgwctl: no answer from tbgw\n");
            free(buf);
            close(fd);
            return EXIT_UNAVAILABLE;
        }
        if (len + 1 >= cap)
            buf = realloc(buf, cap *= 2);
        n = read(fd, buf + len, cap - len - 1);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    *ret = json_tokener_parse(buf);
    free(buf);
    if (!*ret) {
        fprintf(stderr, "tbgwctl: unreadable answer from tbgw\n");
        return EXIT_UNAVAILABLE;
    }
    return 0;
}

static const char *str(json_object *o, const char *k)
{
    json_object *m;

    if (!json_object_object_get_ex(o, k, &m) || !m)
        return NULL;
    return json_object_get_string(m);
}

static long long num(json_object *o, const char *k)
{
    json_object *m;

    return json_object_object_get_ex(o, k, &m) && m ? json_object_get_int64(m) : 0;
}

static double dbl(json_object *o, const char *k)
{
    json_object *m;

    return json_object_object_get_ex(o, k, &m) && m ? json_object_get_double(m) : 0;
}

static void age(char *buf, size_t size, long long ms)
{
    if (ms < 0)
        snprintf(buf, size, "never");
    else if (ms < 10000)
        snprintf(buf, size, "%.1fs ago", (double)ms / 1000.0);
    else if (ms < 3600000)
        snprintf(buf, size, "%llds ago", ms / 1000);
    else
        snprintf(buf, size, "%lldh ago", ms / 3600000);
}

static void print_status(json_object *st)
{
    json_object *gw, *spool, *buses, *devs, *tot;
    long long up;

    json_object_object_get_ex(st, "gateway", &gw);
    json_object_object_get_ex(gw, "spool", &spool);
    json_object_object_get_ex(gw, "totals", &tot);
    json_object_object_get_ex(st, "buses", &buses);
    json_object_object_get_ex(st, "devices", &devs);
    up = num(gw, "uptime_s");
    printf("tbgw %s, up %lldd %02lldh%02lldm, configuration %s\n", str(gw, "version"),
           up / 86400, up / 3600 % 24, up / 60 % 60, str(gw, "config"));
    printf("edge %s:%lld: %lld/%lld devices connected, %.0f values/s, %lld delivered\n",
           str(gw, "edge"), num(gw, "edge_port"), num(gw, "connected"), num(gw, "devices"),
           dbl(gw, "values_per_s"), num(gw, "values_delivered"));
    printf("spool: %lld batches (%lld KiB), oldest %llds, dropped %lld, quarantined %lld\n",
           num(spool, "batches"), (num(spool, "bytes") + 1023) / 1024, num(spool, "oldest_age_s"),
           num(spool, "dropped_batches"), num(spool, "quarantined"));
    printf("since start: %lld samples read, %lld values delivered, %lld waiting, %lld dropped "
           "(spool full), %lld quarantined, %lld lost (disk), %lld samples dropped (uplink "
           "behind)\n",
           num(tot, "samples"), num(tot, "values_delivered"), num(tot, "values_waiting"),
           num(tot, "values_dropped"), num(tot, "values_quarantined"), num(tot, "values_lost"),
           num(tot, "samples_dropped"));
    if (num(gw, "clock_offset_ms"))
        printf("clock: not synchronised; timestamps corrected by %+lld ms\n",
               num(gw, "clock_offset_ms"));

    printf("\n%-16s %-12s %-13s %8s %8s %6s\n", "BUS", "DRIVER", "STATE", "REQ/S", "ERRORS",
           "BUSY");
    for (size_t i = 0; i < json_object_array_length(buses); i++) {
        json_object *b = json_object_array_get_idx(buses, i);
        /* BUSY: the share of the bus's time polling needs, as check-config estimates it. */
        printf("%-16s %-12s %-13s %8.1f %8lld %5.0f%%\n", str(b, "name"), str(b, "driver"),
               str(b, "state"), dbl(b, "requests_per_s"), num(b, "errors"),
               100.0 * dbl(b, "load_estimate"));
        if (str(b, "status"))
            printf("%-16s %s\n", "", str(b, "status"));
    }
    printf("\n%-20s %-12s %-13s %-8s %-11s %-28s %10s %8s\n", "DEVICE", "BUS", "EDGE", "POLLING",
           "LAST POLL", "LAST ERROR", "DELIVERED", "BACKLOG");
    for (size_t i = 0; i < json_object_array_length(devs); i++) {
        json_object *d = json_object_array_get_idx(devs, i);
        char last[24];
        const char *err = str(d, "last_error");
        age(last, sizeof(last), num(d, "last_poll_age_ms"));
        printf("%-20s %-12s %-13s %-8s %-11s %-28.28s %10lld %8lld\n", str(d, "name"),
               str(d, "bus"), str(d, "edge"), str(d, "polling"), last, err ? err : "-",
               num(d, "values_delivered"), num(d, "spool_backlog"));
    }
    for (size_t i = 0; i < json_object_array_length(devs); i++) {
        json_object *d = json_object_array_get_idx(devs, i);
        const char *why = str(d, "edge_reason");

        if (why && *why && strcmp(why, "-") != 0)
            printf("%s: %s\n", str(d, "name"), why);
    }
}

static void print_spool(json_object *r)
{
    json_object *list;
    size_t n;

    json_object_object_get_ex(r, "batches", &list);
    n = list ? json_object_array_length(list) : 0;
    printf("%lld quarantined batch%s", num(r, "quarantined"), num(r, "quarantined") == 1 ? "" : "es");
    if ((long long)n < num(r, "quarantined"))
        printf(" (the newest %zu shown)", n);
    printf("\n");
    for (size_t i = 0; i < n; i++) {
        json_object *b = json_object_array_get_idx(list, i);

        printf("\n#%lld device %s, %lld values from %lld, quarantined at %lld: %s\n%s\n",
               num(b, "seq"), str(b, "device"), num(b, "values"), num(b, "first_ts"),
               num(b, "quarantined_at"), str(b, "reason"), str(b, "payload"));
    }
}

/* VALUE on the command line: JSON if it reads as JSON (22.5, true, "text"), else text. */
static json_object *parse_value(const char *s)
{
    json_object *v = json_tokener_parse(s);

    return v ? v : json_object_new_string(s);
}

/* Options after the command word are the command's own (--json, --secret,
 * --duration-ms); everything else is positional, so "write dev sp -5" writes -5. */
static int command_args(int argc, char **argv, char ***ret_pos, int *ret_n)
{
    static char *pos[8];
    int n = 0;

    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) {
            arg_json = true;
        } else if ((strcmp(a, "--secret") == 0 || strcmp(a, "--duration-ms") == 0) && i + 1 < argc) {
            if (a[2] == 's')
                arg_secret = argv[++i];
            else
                arg_duration_ms = strtoll(argv[++i], NULL, 10);
        } else if (strcmp(a, "--") == 0) {
            continue;
        } else if (n < 8) {
            pos[n++] = argv[i];
        } else {
            return -1;
        }
    }
    *ret_pos = pos;
    *ret_n = n;
    return 0;
}

int main(int argc, char **argv)
{
    enum { ARG_JSON = 0x100, ARG_VERSION };
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 's'}, {"config", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, ARG_JSON},     {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, ARG_VERSION}, {NULL, 0, NULL, 0},
    };
    json_object *req = json_object_new_object(), *reply = NULL, *m;
    const char *cmd;
    char **pos;
    int c, r, n;

    /* "+": stop at the command word; its arguments are parsed below. */
    while ((c = getopt_long(argc, argv, "+s:c:h", opts, NULL)) >= 0) {
        switch (c) {
        case 's':
            arg_socket = optarg;
            break;
        case 'c':
            arg_config = optarg;
            break;
        case ARG_JSON:
            arg_json = true;
            break;
        case 'h':
            usage(stdout);
            json_object_put(req);
            return 0;
        case ARG_VERSION:
            printf("tbgwctl %s\n", PACKAGE_VERSION);
            json_object_put(req);
            return 0;
        default:
            usage(stderr);
            json_object_put(req);
            return EXIT_USAGE;
        }
    }
    if (optind >= argc || command_args(argc - optind - 1, argv + optind + 1, &pos, &n) < 0) {
        usage(stderr);
        json_object_put(req);
        return EXIT_USAGE;
    }
    cmd = argv[optind];
    json_object_object_add(req, "cmd", json_object_new_string(cmd));
    if ((strcmp(cmd, "read") == 0 && n == 2) || (strcmp(cmd, "write") == 0 && n == 3)) {
        json_object_object_add(req, "device", json_object_new_string(pos[0]));
        json_object_object_add(req, "key", json_object_new_string(pos[1]));
        if (n == 3)
            json_object_object_add(req, "value", parse_value(pos[2]));
    } else if (strcmp(cmd, "identify") == 0 && n == 1) {
        json_object_object_add(req, "device", json_object_new_string(pos[0]));
    } else if (strcmp(cmd, "claim") == 0 && n == 1) {
        json_object_object_add(req, "device", json_object_new_string(pos[0]));
        if (arg_secret)
            json_object_object_add(req, "secret", json_object_new_string(arg_secret));
        if (arg_duration_ms >= 0)
            json_object_object_add(req, "duration_ms", json_object_new_int64(arg_duration_ms));
    } else if ((strcmp(cmd, "status") == 0 || strcmp(cmd, "reload") == 0 ||
                strcmp(cmd, "spool") == 0) && n == 0) {
        /* no arguments */
    } else {
        fprintf(stderr, "tbgwctl: wrong arguments for '%s'\n", cmd);
        usage(stderr);
        json_object_put(req);
        return EXIT_USAGE;
    }

    r = talk(req, &reply);
    json_object_put(req);
    if (r)
        return r;
    if (json_object_object_get_ex(reply, "error", &m)) {
        fprintf(stderr, "tbgwctl: %s\n", json_object_get_string(m));
        r = strncmp(json_object_get_string(m), "permission denied", 17) == 0 ? EXIT_NOPERM : EXIT_NO;
        if (json_object_object_get_ex(reply, "problems", &m))
            fputs(json_object_get_string(m), stderr);
    } else if (strcmp(cmd, "status") == 0) {
        if (arg_json)
            printf("%s\n", json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PRETTY));
        else
            print_status(reply);
    } else if (strcmp(cmd, "spool") == 0) {
        if (arg_json)
            printf("%s\n", json_object_to_json_string_ext(reply, JSON_C_TO_STRING_PRETTY));
        else
            print_spool(reply);
    } else if (strcmp(cmd, "read") == 0) {
        json_object_object_get_ex(reply, "value", &m);
        printf("%s\n", json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN));
    } else if (strcmp(cmd, "identify") == 0) {
        json_object_object_get_ex(reply, "value", &m);
        if (arg_json) {
            printf("%s\n", json_object_to_json_string_ext(m, JSON_C_TO_STRING_PRETTY));
        } else {
            json_object_object_foreach(m, name, v)
                printf("%s: %s\n", name, json_object_get_string(v));
        }
    } else if (strcmp(cmd, "claim") == 0) {
        printf("claiming request sent for %s\n", pos[0]);
    } else if (strcmp(cmd, "reload") == 0) {
        if (json_object_object_get_ex(reply, "warnings", &m))
            fputs(json_object_get_string(m), stderr);
        printf("configuration reloaded\n");
    } else {
        printf("ok\n");
    }
    json_object_put(reply);
    return r;
}
