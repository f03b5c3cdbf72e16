/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tbgw: command line, configuration, process lifecycle.
 *
 * The main thread runs an sd-event loop and nothing else: signals (SIGTERM/SIGINT stop,
 * SIGHUP reloads), the systemd watchdog, and the STATUS= line. The gateway's threads
 * (one per bus, the uplink, paho's) are started after the signals are blocked, so every
 * signal arrives here through signalfd and never interrupts a bus transaction.
 *
 * This is the only file that chooses an exit status: 0 (stopped on request), 1 (could not
 * run), 64 (bad command line), 78 (bad configuration, EX_CONFIG).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#ifdef HAVE_MALLOPT
#include <malloc.h>
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "config/config.h"
#include "config/diff.h"
#include "control/control.h"
#include "core/budget.h"
#include "drivers/driver.h"
#include "gateway.h"
#include "metrics/metrics.h"
#include "util/log.h"
#include "util/macros.h"

#define MALLOC_ARENAS 1

#define EXIT_USAGE 64
#define STATUS_INTERVAL_US (5ull * 1000000ull)

static const char *arg_config = DEFAULT_CONFIG_FILE;
static bool arg_check_config;
static int arg_verbose;

struct daemon {
    sd_event *event;
    struct config *cfg;    /* the file as last loaded */
    struct config *gw_cfg; /* the one the running gateway was built from: cfg, or an
                            * earlier load whose buses and devices cfg does not change */
    struct gateway *gw;
    struct control *control;
    struct control_ops control_ops;
    struct metrics *metrics;
    uint64_t watchdog_us; /* 0: no watchdog */
};

static void help(void)
{
    printf("Usage: tbgw [OPTION]...\n"
           "Poll Modbus and serial-line sensors and deliver their data to ThingsBoard.\n"
           "\n"
           "  -c, --config FILE   configuration file (default: %s)\n"
           "      --check-config  validate the configuration, print every problem, and exit\n"
           "                      (0: valid, 78: invalid)\n"
           "  -v, --verbose       log at debug level (overrides log.level)\n"
           "  -h, --help          show this help and exit\n"
           "      --version       show the version and exit\n"
           "\n"
           "Signals: SIGTERM/SIGINT stop (everything unsent is kept), SIGHUP reloads the\n"
           "configuration (an invalid one is refused and the running one kept).\n"
           "See tbgw(8) and tbgw.conf(5).\n",
           DEFAULT_CONFIG_FILE);
}

static int parse_argv(int argc, char **argv)
{
    enum { ARG_VERSION = 0x100, ARG_CHECK };
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, ARG_CHECK},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, ARG_VERSION},
        {NULL, 0, NULL, 0},
    };
    int c;

    while ((c = getopt_long(argc, argv, "c:vh", opts, NULL)) >= 0) {
        switch (c) {
        case 'c':
            arg_config = optarg;
            break;
        case ARG_CHECK:
            arg_check_config = true;
            break;
        case 'v':
            arg_verbose++;
            break;
        case 'h':
            help();
            return 0;
        case ARG_VERSION:
            printf("tbgw %s\n", PACKAGE_VERSION);
            return 0;
        default:
            fprintf(stderr, "Try 'tbgw --help'.\n");
            return -EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tbgw: unexpected argument '%s'\nTry 'tbgw --help'.\n", argv[optind]);
        return -EINVAL;
    }
    return 1;
}

/* Print each line of a diagnostic report through the log (journald gets priorities). */
static void log_diag(struct diag *d)
{
    const char *text = diag_text(d);

    while (*text) {
        const char *nl = strchr(text, '\n');
        int len = (int)(nl ? nl - text : (ptrdiff_t)strlen(text));
        bool warning = memmem(text, (size_t)len, ": warning: ", 11) != NULL;

        if (warning)
            log_warning("%.*s", len, text);
        else
            log_error("%.*s", len, text);
        text += len + (nl ? 1 : 0);
    }
}

/* The configuration, with the warnings that need the read plan (can each bus keep up?). */
static struct config *load(struct diag *d)
{
    struct config *c = config_load(arg_config, d);

    if (c)
        budget_check(c, d);
    return c;
}

static void apply_log_level(const struct config *c)
{
    log_max_level = arg_verbose ? LOG_DEBUG : c->log_level;
}

static void update_status(struct daemon *dm)
{
    char status[256];

    gateway_status(dm->gw, status, sizeof(status));
    sd_notifyf(0, "STATUS=%s", status);
}

static int on_stop(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
    struct daemon *dm = userdata;

    log_info("received %s, stopping", strsignal((int)si->ssi_signo));
    sd_notify(0, "STOPPING=1\nSTATUS=stopping");
    return sd_event_exit(dm->event, 0);
}

static void open_control(struct daemon *dm)
{
    const char *want = dm->cfg->control_socket;

    if (dm->control && strcmp(control_path(dm->control), want) == 0)
        return;
    dm->control = control_close(dm->control);
    /* Without the socket tbgw still does its job: a missing /run/tbgw only costs tbgwctl. */
    if (control_open(dm->event, want, &dm->control_ops, &dm->control) < 0)
        log_warning("continuing without the control socket; tbgwctl will not reach this daemon");
}

static void render_metrics(void *userdata, FILE *out)
{
    gateway_metrics(((struct daemon *)userdata)->gw, out);
}

/* The Prometheus endpoint, when configured. At start-up a listener that cannot open is
 * fatal (the user asked for it; a gateway that silently lacks it looks down to
 * Prometheus). On reload the running one is kept unless the address changed, and kept too
 * if the new address cannot be opened. */
static int open_metrics(struct daemon *dm)
{
    const char *want = dm->cfg->metrics_listen;
    struct metrics *m;
    int r;

    if (!want) {
        dm->metrics = metrics_close(dm->metrics);
        return 0;
    }
    if (dm->metrics && strcmp(metrics_listen(dm->metrics), want) == 0)
        return 0;
    r = metrics_open(dm->event, want, render_metrics, dm, &m);
    if (r < 0) {
        if (dm->metrics)
            log_warning("metrics: still serving on %s", metrics_listen(dm->metrics));
        return r;
    }
    metrics_close(dm->metrics);
    dm->metrics = m;
    return 0;
}

/* Does d change anything the running gateway does? Buses, devices, edge and storage
 * settings do; the log level, control socket and metrics address do not (reload() applies
 * those itself). */
static bool gateway_changes(const struct config_diff *d)
{
    bool changed = d->restart_all;

    for (size_t i = 0; i < d->n_buses; i++)
        changed |= d->buses[i].change != CHANGE_NONE;
    for (size_t i = 0; i < d->n_devices; i++)
        changed |= d->devices[i].change != CHANGE_NONE;
    return changed;
}

/* One line per bus and device that the reload restarts, stops or starts. */
static void log_diff(const struct config_diff *d)
{
    size_t kept = 0;

    for (size_t i = 0; i < d->n_buses; i++) {
        const struct bus_diff *b = &d->buses[i];
        if (b->change != CHANGE_NONE)
            log_info("reload: bus '%s': %s%s", (b->new ? b->new : b->old)->name,
                     config_change_to_string(b->change),
                     b->change == CHANGE_RESTART && b->same_transport
                         ? " (its port or connection is kept)" : "");
    }
    for (size_t i = 0; i < d->n_devices; i++) {
        const struct device_diff *dd = &d->devices[i];
        if (dd->change == CHANGE_NONE)
            kept++;
        else
            log_info("reload: device '%s': %s", (dd->new ? dd->new : dd->old)->name,
                     config_change_to_string(dd->change));
    }
    log_info("reload: %zu unchanged device%s keep their session%s", kept, kept == 1 ? "" : "s",
             d->restart_all ? "; edge or storage settings changed, so every session restarts"
                            : "");
}

/* Validate the new file completely before touching the running gateway. Returns 0, or
 * -EINVAL when it was refused; *ret_problems gets the report (errors and warnings). */
static int reload(struct daemon *dm, char **ret_problems)
{
    struct diag *d = diag_new();
    struct config_diff diff;
    struct config *nc;
    int r = 0;

    sd_notify(0, "RELOADING=1\nSTATUS=reloading configuration");
    log_info("reloading configuration from '%s'", arg_config);
    nc = load(d);
    log_diag(d);
    if (ret_problems)
        *ret_problems = xstrdup(diag_text(d));
    d = diag_free(d);
    if (!nc) {
        log_error("configuration '%s' is invalid; still running with the previous one",
                  arg_config);
        r = -EINVAL;
        goto out;
    }
    config_diff(dm->gw_cfg, nc, &diff);
    if (!gateway_changes(&diff)) {
        /* Nothing the gateway runs changed: keep it running as it is, with its sessions,
         * ports and queues, and apply the rest (log level, control socket, metrics). */
        config_diff_free(&diff);
        if (dm->cfg != dm->gw_cfg)
            config_free(dm->cfg);
        dm->cfg = nc;
        open_control(dm);
        open_metrics(dm);
        log_info("configuration reloaded: no bus or device changed; every session and port "
                 "kept");
        apply_log_level(nc);
        goto out;
    }
    log_diff(&diff);
    r = gateway_reload(&dm->gw, nc, &diff);
    config_diff_free(&diff);
    if (r == -EINVAL) {
        log_error("cannot build the new configuration; still running with the previous one");
        config_free(nc);
        goto out;
    }
    /* Nothing points into the old configuration any more. */
    if (dm->cfg != dm->gw_cfg)
        config_free(dm->cfg);
    config_free(dm->gw_cfg);
    dm->cfg = dm->gw_cfg = nc;
    apply_log_level(nc);
    if (r < 0) {
        log_error("cannot start with the new configuration, stopping");
        sd_event_exit(dm->event, 1);
        return -EIO;
    }
    open_control(dm);
    open_metrics(dm);
    log_info("configuration reloaded: %zu bus%s, %zu device%s", nc->n_buses,
             nc->n_buses == 1 ? "" : "es", nc->n_devices, nc->n_devices == 1 ? "" : "s");
out:
    sd_notify(0, "READY=1");
    update_status(dm);
    return r;
}

static int on_reload(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
    reload(userdata, NULL);
    return 0;
}

static struct gateway *control_gateway(void *userdata)
{
    return ((struct daemon *)userdata)->gw;
}

static int control_reload(void *userdata, char **ret_problems)
{
    return reload(userdata, ret_problems);
}

static int on_status_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
    struct daemon *dm = userdata;

    update_status(dm);
    sd_event_source_set_time(s, usec + STATUS_INTERVAL_US);
    return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

/* The watchdog is fed only while every gateway thread is making progress: a wedged bus
 * thread gets the whole daemon restarted by systemd instead of silently stopping data. */
static int on_watchdog_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
    struct daemon *dm = userdata;

    if (gateway_alive(dm->gw, dm->watchdog_us / 1000))
        sd_notify(0, "WATCHDOG=1");
    else
        log_error("a gateway thread is stuck; not feeding the watchdog");
    sd_event_source_set_time(s, usec + dm->watchdog_us / 2);
    return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

static int run(struct daemon *dm)
{
    sigset_t mask;
    uint64_t now;
    int r;

    /* Before any thread exists: every thread inherits this mask, so the signals are
     * delivered only through sd-event's signalfd. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0)
        return log_error_errno(EINVAL, "cannot block signals");
    signal(SIGPIPE, SIG_IGN);

    r = sd_event_default(&dm->event);
    if (r < 0)
        return log_error_errno(r, "cannot create the event loop: %m");
    sd_event_add_signal(dm->event, NULL, SIGTERM, on_stop, dm);
    sd_event_add_signal(dm->event, NULL, SIGINT, on_stop, dm);
    sd_event_add_signal(dm->event, NULL, SIGHUP, on_reload, dm);

    sd_event_now(dm->event, CLOCK_MONOTONIC, &now);
    r = sd_event_add_time(dm->event, NULL, CLOCK_MONOTONIC, now + STATUS_INTERVAL_US, 0,
                          on_status_timer, dm);
    if (r < 0)
        return log_error_errno(r, "cannot add a timer: %m");
    if (sd_watchdog_enabled(0, &dm->watchdog_us) > 0 && dm->watchdog_us > 0) {
        r = sd_event_add_time(dm->event, NULL, CLOCK_MONOTONIC, now + dm->watchdog_us / 2, 0,
                              on_watchdog_timer, dm);
        if (r < 0)
            return log_error_errno(r, "cannot add the watchdog timer: %m");
    }

    r = open_metrics(dm);
    if (r < 0)
        return r;
    dm->gw_cfg = dm->cfg;
    dm->gw = gateway_new(dm->cfg);
    if (!dm->gw)
        return -EINVAL;
    r = gateway_start(dm->gw);
    if (r < 0)
        return r;

    dm->control_ops = (struct control_ops){
        .gateway = control_gateway, .reload = control_reload, .userdata = dm};
    open_control(dm);

    log_info("tbgw %s started: %zu bus%s, %zu device%s, edge %s:%d", PACKAGE_VERSION,
             dm->cfg->n_buses, dm->cfg->n_buses == 1 ? "" : "es", dm->cfg->n_devices,
             dm->cfg->n_devices == 1 ? "" : "s", dm->cfg->edge.host, dm->cfg->edge.port);
    sd_notify(0, "READY=1");
    update_status(dm);

    r = sd_event_loop(dm->event);

    dm->control = control_close(dm->control);
    dm->metrics = metrics_close(dm->metrics);
    gateway_stop(dm->gw);
    log_info("stopped");
    return r;
}

/* glibc gives each thread that allocates an arena of its own, up to eight per core, and
 * memory freed in one is reused only there: tbgw's threads (main, one per bus, the uplink,
 * paho's two) each kept their own slack, and the peak moved by megabytes between runs of
 * the same job depending on which thread happened to allocate during the start-up burst.
 * Allocation in tbgw is light (the buses allocate only strings; the uplink and paho
 * allocate per message, not per sample), so shared arenas cost no measurable CPU
 * (bench/README.md). */
static void limit_malloc_arenas(void)
{
#if defined(HAVE_MALLOPT) && defined(M_ARENA_MAX)
    mallopt(M_ARENA_MAX, MALLOC_ARENAS);
#endif
}

int main(int argc, char **argv)
{
    struct daemon dm = {0};
    struct diag *d;
    int r;

    limit_malloc_arenas();
    log_open();
    log_set_strerror(driver_strerror); /* %m knows libmodbus's errors too */
    r = parse_argv(argc, argv);
    if (r <= 0)
        return r < 0 ? EXIT_USAGE : EXIT_SUCCESS;
    if (arg_verbose)
        log_max_level = LOG_DEBUG;

    d = diag_new();
    dm.cfg = load(d);
    if (arg_check_config) {
        fputs(diag_text(d), stderr);
        if (dm.cfg)
            printf("%s: configuration is valid (%zu bus%s, %zu device%s)\n", arg_config,
                   dm.cfg->n_buses, dm.cfg->n_buses == 1 ? "" : "es", dm.cfg->n_devices,
                   dm.cfg->n_devices == 1 ? "" : "s");
        r = dm.cfg ? EXIT_SUCCESS : EX_CONFIG_ERROR;
        diag_free(d);
        config_free(dm.cfg);
        return r;
    }
    log_diag(d);
    diag_free(d);
    if (!dm.cfg) {
        log_error("configuration '%s' is invalid, not starting", arg_config);
        return EX_CONFIG_ERROR;
    }
    apply_log_level(dm.cfg);

    r = run(&dm);

    gateway_free(dm.gw);
    gateway_library_cleanup();
    if (dm.gw_cfg != dm.cfg)
        config_free(dm.gw_cfg);
    config_free(dm.cfg);
    sd_event_unref(dm.event);
    return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
