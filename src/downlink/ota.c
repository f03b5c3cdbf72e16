/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Firmware and software updates for field devices.
 *
 * ThingsBoard announces an assigned package through shared attributes (fw_title,
 * fw_version, fw_size, fw_checksum_algorithm, fw_checksum [, fw_tag]; sw_* alike). When
 * the announced title/version differs from what the device runs, tbgw:
 *   1. downloads it in CHUNK-byte chunks over v2/fw/request/{reqId}/chunk/{n} into
 *      <storage.path>/ota/<device>.<kind>.part, one chunk in flight, streaming to the file
 *      (never the whole image in memory); an empty chunk is the end. A reconnect resumes at
 *      the next chunk with a fresh reqId (ThingsBoard binds a reqId to one session);
 *   2. checks the size and the checksum with ThingsBoard's algorithm and byte order;
 *   3. runs the device's ota.command with the image path, in its own process group, with
 *      TBGW_* variables describing the device and the image, its bus paused and the port
 *      released first when exclusive_bus is set; timeout_s kills the whole group;
 *   4. reports fw_state DOWNLOADING, DOWNLOADED, VERIFIED, UPDATING, then UPDATED with
 *      current_fw_title/current_fw_version, or FAILED with fw_error saying why.
 * What a device runs is remembered in <storage.path>/ota-state.json and reported at every
 * connect, with the update in progress: a restart resumes a download from the last whole
 * chunk of the .part file (or from chunk 0 without one) and says DOWNLOADING again; an
 * update command that a stop cut short is reported FAILED, one that a graceful stop waited
 * for UPDATED or FAILED, at the next connect.
 *
 * Every assignment makes ThingsBoard set fw_state INITIATED and push the fw_* attributes
 * again, even for the same package (DefaultOtaPackageStateService.update): a push of the
 * package being downloaded continues the download and says DOWNLOADING, of the one
 * updating says UPDATING, of the one running says UPDATED, and of one that FAILED tries it
 * again. The command never runs twice for a package that succeeded; the answer to the
 * attribute request at connect never retries a failed one (or every reconnect would).
 * Without an ota block, an announcement is answered FAILED with a clear fw_error.
 *
 * Thread: uplink (ota_tick watches the command; nothing here blocks).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/bus.h"
#include "core/command.h"
#include "core/device.h"
#include "downlink/downlink.h"
#include "downlink/ota.h"
#include "downlink/router.h"
#include "downlink/rpc.h"
#include "util/checksum.h"
#include "util/fileio.h"
#include "util/log.h"
#include "util/macros.h"
#include "util/time-util.h"
#include "util/utf8.h"

extern char **environ;

#define CHUNK 16384u               /* well under ThingsBoard's 64 KiB message limit */
#define CHUNK_TIMEOUT_MS 30000u
#define CHUNK_RETRIES 3
#define KILL_GRACE_MS 5000u
#define OTA_STATE_MAX (1u << 20)

enum kind {
    FW = OTA_FW,
    SW = OTA_SW,
    N_KINDS = N_OTA_KINDS
};

static const char *const kind_names[N_KINDS] = {"fw", "sw"};

enum phase {
    IDLE,
    DOWNLOADING,
    PAUSING,   /* waiting for the bus to release the port */
    UPDATING,  /* the command runs */
    RESUMING,  /* waiting for the bus to take the port back */
};

struct job {
    struct ota_package announced; /* what the shared attributes say now */
    struct ota_package target;    /* what this job works on (or last worked on) */
    bool target_done;             /* the command ran (or the package failed for good) */
    bool target_failed;           /* ... and it failed: a new assignment retries it */
    char *pending;                /* a state to report at the next connect (after a restart) */
    char *pending_error;
    enum phase phase;
    char *part, *image;
    int fd;
    uint64_t bytes;
    unsigned chunk;
    int req_id;
    uint64_t deadline_ms;
    int retries;
    bool request_held;            /* the chunk request waits for room under the limits */
    pid_t pid;
    int out_fd;
    char last_line[256];
    char linebuf[256];
    size_t linelen;
    uint64_t cmd_deadline_ms;
    uint64_t kill_at_ms;
    bool timed_out;
    int exit_status;
    bool exit_ok;
    char *running_title, *running_version; /* what the device runs (persisted) */
};

struct ota {
    /* Per device, NULL until the device has something to do with updates: most never
     * do (every device in gateway mode), and a pair of jobs is 1.6 KB. */
    struct job **jobs;
    int next_req_id;
    char *state_path;
};

/* ---- helpers ------------------------------------------------------------------------------ */

/* The device's jobs, or NULL when it has none yet. */
static struct job *jobs_of(const struct downlink *dl, size_t dev)
{
    return dl->ota->jobs[dev];
}

static struct job *job(struct downlink *dl, struct dl_dev *d, enum kind k)
{
    struct job **jp = &dl->ota->jobs[d->dc->index];

    if (!*jp) {
        *jp = xcalloc(N_KINDS, sizeof(**jp));
        for (int i = 0; i < N_KINDS; i++) {
            (*jp)[i].fd = (*jp)[i].out_fd = -1;
            (*jp)[i].announced.size = (*jp)[i].target.size = -1;
        }
    }
    return &(*jp)[k];
}

void ota_package_clear(struct ota_package *p)
{
    free(p->title);
    free(p->version);
    free(p->checksum);
    free(p->alg);
    free(p->tag);
    free(p->url);
    memset(p, 0, sizeof(*p));
    p->size = -1;
}

static char *dup0(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static void package_copy(struct ota_package *dst, const struct ota_package *src)
{
    ota_package_clear(dst);
    dst->title = dup0(src->title);
    dst->version = dup0(src->version);
    dst->checksum = dup0(src->checksum);
    dst->alg = dup0(src->alg);
    dst->tag = dup0(src->tag);
    dst->url = dup0(src->url);
    dst->size = src->size;
}

static bool same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool same_package(const struct ota_package *a, const struct ota_package *b)
{
    return same(a->title, b->title) && same(a->version, b->version) &&
           (!a->checksum || !b->checksum || strcasecmp(a->checksum, b->checksum) == 0);
}

/* Telemetry of the update's progress. extra: more members (taken). */
static void report(struct downlink *dl, struct dl_dev *d, enum kind k, const char *state,
                   const char *error, json_object *extra)
{
    json_object *o = extra ? extra : json_object_new_object();
    char key[32];

    snprintf(key, sizeof(key), "%s_state", kind_names[k]);
    json_object_object_add(o, key, json_object_new_string(state));
    if (error) {
        /* It may quote the Edge's v2/fw/error payload as it came, or have been cut in the
         * middle of a character; ThingsBoard drops a session on bad UTF-8. */
        char *text = utf8_sanitize_dup(error, strlen(error));

        snprintf(key, sizeof(key), "%s_error", kind_names[k]);
        json_object_object_add(o, key, json_object_new_string(text));
        free(text);
    }
    dl_publish_json(dl, d, "v1/devices/me/telemetry", o);
    json_object_put(o);
}

static json_object *current_version_object(enum kind k, const struct job *j)
{
    json_object *o = json_object_new_object();
    char key[32];

    snprintf(key, sizeof(key), "current_%s_title", kind_names[k]);
    json_object_object_add(o, key, json_object_new_string(j->running_title));
    snprintf(key, sizeof(key), "current_%s_version", kind_names[k]);
    json_object_object_add(o, key, json_object_new_string(j->running_version));
    return o;
}

/* ---- persisted state --------------------------------------------------------------------- */

static long long size_of(json_object *v);

static void add_text(json_object *o, const char *key, const char *v)
{
    if (v)
        json_object_object_add(o, key, json_object_new_string(v));
}

static const char *text_member(json_object *o, const char *key)
{
    json_object *v;

    return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

/* The update in progress, so that a restart can say what it does next. */
static json_object *job_object(const struct job *j, const char *phase, const char *error)
{
    json_object *o = json_object_new_object();

    add_text(o, "phase", phase);
    add_text(o, "error", error);
    add_text(o, "title", j->target.title);
    add_text(o, "version", j->target.version);
    add_text(o, "checksum", j->target.checksum);
    add_text(o, "checksum_algorithm", j->target.alg);
    add_text(o, "tag", j->target.tag);
    json_object_object_add(o, "size", json_object_new_int64(j->target.size));
    return o;
}

static void save_state(struct downlink *dl)
{
    json_object *root = json_object_new_object(), *devs = json_object_new_object();
    const char *text;
    int r;

    json_object_object_add(root, "devices", devs);
    for (size_t i = 0; i < dl->n_devs; i++) {
        json_object *dev = NULL;
        if (!jobs_of(dl, i))
            continue;
        for (int k = 0; k < N_KINDS; k++) {
            struct job *j = &jobs_of(dl, i)[k];
            json_object *o, *job = NULL;

            if (j->pending)
                job = job_object(j, j->pending, j->pending_error);
            else if (j->phase == DOWNLOADING)
                job = job_object(j, "DOWNLOADING", NULL);
            else if (j->phase != IDLE)
                job = job_object(j, "UPDATING", NULL);
            if (!j->running_title && !job)
                continue;
            if (!dev)
                dev = json_object_new_object();
            o = json_object_new_object();
            add_text(o, "title", j->running_title);
            add_text(o, "version", j->running_version);
            if (job)
                json_object_object_add(o, "job", job);
            json_object_object_add(dev, kind_names[k], o);
        }
        if (dev)
            json_object_object_add(devs, dl->devs[i].dc->name, dev);
    }
    text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY);
    r = write_file_atomic(dl->ota->state_path, text, strlen(text), 0640);
    if (r < 0)
        log_error_errno(r, "cannot save '%s': %m", dl->ota->state_path);
    json_object_put(root);
}

static void load_state(struct downlink *dl)
{
    char *text = NULL;
    json_object *root, *devs;

    if (read_file(dl->ota->state_path, &text, NULL, OTA_STATE_MAX) < 0)
        return;
    root = json_tokener_parse(text);
    free(text);
    if (!root || !json_object_object_get_ex(root, "devices", &devs) ||
        !json_object_is_type(devs, json_type_object)) {
        log_warning("'%s' is unreadable; running versions are unknown until the next update",
                    dl->ota->state_path);
        json_object_put(root);
        return;
    }
    for (size_t i = 0; i < dl->n_devs; i++) {
        json_object *dev;
        if (!json_object_object_get_ex(devs, dl->devs[i].dc->name, &dev))
            continue;
        for (int k = 0; k < N_KINDS; k++) {
            json_object *o, *t, *v;
            struct job *j = job(dl, &dl->devs[i], (enum kind)k);
            json_object *jo, *sz;
            if (!json_object_object_get_ex(dev, kind_names[k], &o))
                continue;
            if (json_object_object_get_ex(o, "title", &t) &&
                json_object_object_get_ex(o, "version", &v) &&
                json_object_is_type(t, json_type_string) && json_object_is_type(v, json_type_string)) {
                j->running_title = xstrdup(json_object_get_string(t));
                j->running_version = xstrdup(json_object_get_string(v));
            }
            if (json_object_object_get_ex(o, "job", &jo) && text_member(jo, "phase") &&
                text_member(jo, "title") && text_member(jo, "version")) {
                j->target.title = xstrdup(text_member(jo, "title"));
                j->target.version = xstrdup(text_member(jo, "version"));
                j->target.checksum = dup0(text_member(jo, "checksum"));
                j->target.alg = dup0(text_member(jo, "checksum_algorithm"));
                j->target.tag = dup0(text_member(jo, "tag"));
                j->target.size = json_object_object_get_ex(jo, "size", &sz) ? size_of(sz) : -1;
                j->pending = xstrdup(text_member(jo, "phase"));
                j->pending_error = dup0(text_member(jo, "error"));
            }
        }
    }
    json_object_put(root);
}

/* ---- download ---------------------------------------------------------------------------- */

static void request_chunk(struct downlink *dl, struct dl_dev *d, enum kind k)
{
    struct job *j = job(dl, d, k);
    char topic[96], size[16];

    uint64_t at;

    /* A chunk request is a message under the Edge's "messages" limit: a download at full
     * speed would get the session closed. It waits for room instead. */
    if (dl_session(dl, d) != DL_DOWN && !dl_message_fits(dl, d, &at)) {
        j->request_held = true;
        j->deadline_ms = at;
        return;
    }
    j->request_held = false;
    snprintf(topic, sizeof(topic), "v2/%s/request/%d/chunk/%u", kind_names[k], j->req_id, j->chunk);
    snprintf(size, sizeof(size), "%u", CHUNK);
    j->deadline_ms = now_ms() + CHUNK_TIMEOUT_MS;
    if (dl_publish(dl, d, topic, size, strlen(size)) == 0)
        dl_count_message(dl, d);
}

static void end_job(struct job *j)
{
    if (j->fd >= 0)
        close(j->fd);
    j->fd = -1;
    if (j->part)
        unlink(j->part);
    if (j->image)
        unlink(j->image);
    j->phase = IDLE;
}

static void fail(struct downlink *dl, struct dl_dev *d, enum kind k, const char *fmt, ...)
    PRINTF_LIKE(4, 5);

static void fail(struct downlink *dl, struct dl_dev *d, enum kind k, const char *fmt, ...)
{
    struct job *j = job(dl, d, k);
    char msg[300];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_warning("device '%s': %s update %s %s failed: %s", d->dc->name,
                k == FW ? "firmware" : "software", strempty(j->target.title),
                strempty(j->target.version), msg);
    report(dl, d, k, "FAILED", msg, NULL);
    end_job(j);
    j->target_done = true;
    j->target_failed = true;
    save_state(dl);
}

/* <storage.path>/ota/<device>.<kind> and its .part. Returns 0 or -errno (directory). */
static int set_paths(struct downlink *dl, struct dl_dev *d, enum kind k)
{
    struct job *j = job(dl, d, k);
    char *dir = xasprintf("%s/ota", dl->cfg->storage.path);
    int r = mkdir_p(dir, 0750);

    free(j->part);
    free(j->image);
    j->image = xasprintf("%s/%s.%s", dir, d->dc->name, kind_names[k]);
    for (char *p = j->image + strlen(dir) + 1; *p; p++)
        if (*p == '/')
            *p = '_'; /* a device name is not a path */
    j->part = xasprintf("%s.part", j->image);
    free(dir);
    return r;
}

/* Open the .part file and go on from its last whole chunk (from 0 with trunc). */
static int open_part(struct job *j, bool trunc)
{
    struct stat st;

    j->fd = open(j->part, O_WRONLY | O_CREAT | (trunc ? O_TRUNC : 0) | O_CLOEXEC, 0640);
    if (j->fd < 0)
        return -errno;
    j->bytes = 0;
    if (!trunc && fstat(j->fd, &st) == 0)
        j->bytes = (uint64_t)st.st_size / CHUNK * CHUNK;
    if (j->target.size >= 0 && (long long)j->bytes > j->target.size)
        j->bytes = 0;
    if (ftruncate(j->fd, (off_t)j->bytes) < 0)
        return -errno;
    j->chunk = (unsigned)(j->bytes / CHUNK);
    return 0;
}

static void start_download(struct downlink *dl, struct dl_dev *d, enum kind k)
{
    struct job *j = job(dl, d, k);
    int r = set_paths(dl, d, k);

    if (r < 0) {
        fail(dl, d, k, "cannot create the download directory: %s", strerror(-r));
        return;
    }
    r = open_part(j, true);
    if (r < 0) {
        fail(dl, d, k, "cannot create '%s': %s", j->part, strerror(-r));
        return;
    }
    j->retries = 0;
    j->phase = DOWNLOADING;
    j->target_failed = false;
    j->req_id = ++dl->ota->next_req_id;
    log_info("device '%s': downloading %s %s %s (%lld bytes)", d->dc->name,
             k == FW ? "firmware" : "software", j->target.title, j->target.version,
             j->target.size);
    save_state(dl);
    report(dl, d, k, "DOWNLOADING", NULL, NULL);
    request_chunk(dl, d, k);
}

static void run_command(struct downlink *dl, struct dl_dev *d, enum kind k);

static void pause_done(struct downlink *dl, struct dl_dev *d, struct command *cmd, void *ctx)
{
    enum kind k = (enum kind)(intptr_t)ctx;
    struct job *j = job(dl, d, k);

    if (j->phase != PAUSING)
        return;
    if (cmd->result < 0) {
        fail(dl, d, k, "cannot pause bus '%s': %s", d->dc->bus->name, strerror(-cmd->result));
        return;
    }
    run_command(dl, d, k);
}

static void resume_done(struct downlink *dl, struct dl_dev *d, struct command *cmd, void *ctx)
{
    enum kind k = (enum kind)(intptr_t)ctx;
    struct job *j = job(dl, d, k);

    if (j->phase == RESUMING)
        j->phase = IDLE;
}

static void verified(struct downlink *dl, struct dl_dev *d, enum kind k)
{
    struct job *j = job(dl, d, k);
    struct command *cmd;
    int r;

    if (rename(j->part, j->image) < 0) {
        fail(dl, d, k, "cannot rename the image: %s", strerror(errno));
        return;
    }
    report(dl, d, k, "VERIFIED", NULL, NULL);
    if (!d->dc->ota.exclusive_bus) {
        run_command(dl, d, k);
        return;
    }
    cmd = xcalloc(1, sizeof(*cmd));
    cmd->kind = CMD_PAUSE;
    j->phase = PAUSING;
    r = router_submit_internal(dl, d, cmd, pause_done, (void *)(intptr_t)k);
    if (r < 0)
        fail(dl, d, k, "cannot pause bus '%s': %s", d->dc->bus->name, strerror(-r));
}

static void download_finished(struct downlink *dl, struct dl_dev *d, enum kind k)
{
    struct job *j = job(dl, d, k);
    char got[CHECKSUM_HEX_MAX];
    int alg = checksum_alg_from_string(j->target.alg);
    int r;

    close(j->fd);
    j->fd = -1;
    if (j->target.size >= 0 && (long long)j->bytes != j->target.size) {
        fail(dl, d, k, "size mismatch: expected %lld bytes, got %llu", j->target.size,
             (unsigned long long)j->bytes);
        return;
    }
    report(dl, d, k, "DOWNLOADED", NULL, NULL);
    r = checksum_file((enum checksum_alg)alg, j->part, got);
    if (r < 0) {
        fail(dl, d, k, "cannot read the image back: %s", strerror(-r));
        return;
    }
    if (strcasecmp(got, j->target.checksum) != 0) {
        fail(dl, d, k, "checksum mismatch: %s expected %s, got %s", j->target.alg,
             j->target.checksum, got);
        return;
    }
    verified(dl, d, k);
}

static void on_chunk(struct downlink *dl, struct dl_dev *d, enum kind k, int req, unsigned n,
                     const char *payload, size_t len)
{
    struct job *j = job(dl, d, k);

    if (j->phase != DOWNLOADING || req != j->req_id || n != j->chunk)
        return; /* late answer to a request we gave up on */
    if (len == 0) {
        download_finished(dl, d, k);
        return;
    }
    if (len > CHUNK) {
        fail(dl, d, k, "the edge sent a chunk larger than requested");
        return;
    }
    if (pwrite(j->fd, payload, len, (off_t)j->bytes) != (ssize_t)len) {
        fail(dl, d, k, "cannot write the image: %s", strerror(errno));
        return;
    }
    j->bytes += len;
    j->retries = 0;
    if (j->target.size >= 0 && (long long)j->bytes > j->target.size) {
        fail(dl, d, k, "size mismatch: more than the announced %lld bytes", j->target.size);
        return;
    }
    /* A short chunk is the last one; asking for the empty one would only cost a round trip. */
    if (len < CHUNK || (j->target.size >= 0 && (long long)j->bytes == j->target.size)) {
        download_finished(dl, d, k);
        return;
    }
    j->chunk++;
    request_chunk(dl, d, k);
}

/* ---- the command ----------------------------------------------------------------------------- */

static void setenvp(char ***envp, size_t *n, const char *name, const char *value)
{
    *envp = xreallocarray(*envp, *n + 2, sizeof(char *));
    (*envp)[(*n)++] = xasprintf("%s=%s", name, value ? value : "");
    (*envp)[*n] = NULL;
}

static void run_command(struct downlink *dl, struct dl_dev *d, enum kind k)
{
    struct job *j = job(dl, d, k);
    const struct device_config *dc = d->dc;
    const struct bus_config *bc = dc->bus;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    char **envp = NULL;
    size_t n = 0;
    int pipefd[2];
    char num[32];
    char *argv[3];
    int r;

    for (char **e = environ; *e; e++)
        if (strncmp(*e, "TBGW_", 5) != 0) {
            envp = xreallocarray(envp, n + 2, sizeof(char *));
            envp[n++] = xstrdup(*e);
            envp[n] = NULL;
        }
    setenvp(&envp, &n, "TBGW_DEVICE", dc->name);
    setenvp(&envp, &n, "TBGW_OTA_KIND", kind_names[k]);
    setenvp(&envp, &n, "TBGW_OTA_FILE", j->image);
    setenvp(&envp, &n, "TBGW_OTA_TITLE", j->target.title);
    setenvp(&envp, &n, "TBGW_OTA_VERSION", j->target.version);
    setenvp(&envp, &n, "TBGW_OTA_TAG", j->target.tag);
    setenvp(&envp, &n, "TBGW_OTA_CHECKSUM", j->target.checksum);
    setenvp(&envp, &n, "TBGW_OTA_CHECKSUM_ALGORITHM", j->target.alg);
    snprintf(num, sizeof(num), "%llu", (unsigned long long)j->bytes);
    setenvp(&envp, &n, "TBGW_OTA_SIZE", num);
    setenvp(&envp, &n, "TBGW_BUS", bc->name);
    setenvp(&envp, &n, "TBGW_BUS_DRIVER", driver_kind_to_string(bc->driver));
    if (bc->driver == DRIVER_MODBUS_TCP || bc->driver == DRIVER_MODBUS_RTU_TCP) {
        /* A listening bus has no address to give: its device server dials in. */
        if (!bc->listen) {
            setenvp(&envp, &n, "TBGW_BUS_HOST", bc->host);
            snprintf(num, sizeof(num), "%d", bc->tcp_port);
            setenvp(&envp, &n, "TBGW_BUS_PORT", num);
        }
    } else {
        setenvp(&envp, &n, "TBGW_BUS_PORT", bc->device);
        snprintf(num, sizeof(num), "%d", bc->baud);
        setenvp(&envp, &n, "TBGW_BUS_BAUD", num);
    }
    if (bc->driver != DRIVER_SERIAL_LINE) {
        snprintf(num, sizeof(num), "%d", dc->unit_id);
        setenvp(&envp, &n, "TBGW_UNIT_ID", num);
    }
    setenvp(&envp, &n, "TBGW_EXCLUSIVE_BUS", dc->ota.exclusive_bus ? "1" : "0");

    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        fail(dl, d, k, "cannot run the command: %s", strerror(errno));
        goto out;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDERR_FILENO);
    posix_spawnattr_init(&attr);
    /* Its own process group: a timeout kills whatever it started too. Default signal mask
     * and dispositions: tbgw blocks SIGTERM and friends in all its threads. */
    posix_spawnattr_setpgroup(&attr, 0);
    {
        sigset_t none, all;
        sigemptyset(&none);
        sigfillset(&all);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &all);
    }
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETSIGDEF);
    argv[0] = dc->ota.command;
    argv[1] = j->image;
    argv[2] = NULL;
    r = posix_spawn(&j->pid, dc->ota.command, &fa, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(pipefd[1]);
    if (r != 0) {
        close(pipefd[0]);
        fail(dl, d, k, "cannot run '%s': %s", dc->ota.command, strerror(r));
        goto resume;
    }
    fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
    j->out_fd = pipefd[0];
    j->last_line[0] = '\0';
    j->linelen = 0;
    j->timed_out = false;
    j->kill_at_ms = 0;
    j->cmd_deadline_ms = now_ms() + (uint64_t)dc->ota.timeout_s * 1000u;
    j->phase = UPDATING;
    save_state(dl);
    log_info("device '%s': running '%s %s'", dc->name, dc->ota.command, j->image);
    report(dl, d, k, "UPDATING", NULL, NULL);
    goto out;
resume:
    if (dc->ota.exclusive_bus) {
        struct command *cmd = xcalloc(1, sizeof(*cmd));
        cmd->kind = CMD_RESUME;
        j->phase = RESUMING;
        if (router_submit_internal(dl, d, cmd, resume_done, (void *)(intptr_t)k) < 0)
            j->phase = IDLE;
    }
out:
    for (size_t i = 0; i < n; i++)
        free(envp[i]);
    free(envp);
}

/* Keep the last non-empty line the command printed, for fw_error. */
static void read_output(struct job *j)
{
    char buf[512];
    ssize_t n;

    while (j->out_fd >= 0 && (n = read(j->out_fd, buf, sizeof(buf))) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n' || buf[i] == '\r') {
                if (j->linelen) {
                    memcpy(j->last_line, j->linebuf, j->linelen);
                    j->last_line[j->linelen] = '\0';
                }
                j->linelen = 0;
            } else if (j->linelen < sizeof(j->linebuf) - 1) {
                j->linebuf[j->linelen++] = buf[i];
            }
        }
    }
}

static void command_finished(struct downlink *dl, struct dl_dev *d, enum kind k, int status)
{
    struct job *j = job(dl, d, k);
    struct command *cmd;

    read_output(j);
    if (j->linelen) {
        memcpy(j->last_line, j->linebuf, j->linelen);
        j->last_line[j->linelen] = '\0';
    }
    close(j->out_fd);
    j->out_fd = -1;
    j->pid = 0;
    if (j->timed_out) {
        fail(dl, d, k, "the command did not finish within %d s and was killed",
             d->dc->ota.timeout_s);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        free(j->running_title);
        free(j->running_version);
        j->running_title = xstrdup(j->target.title);
        j->running_version = xstrdup(j->target.version);
        save_state(dl);
        log_info("device '%s': updated to %s %s", d->dc->name, j->target.title, j->target.version);
        report(dl, d, k, "UPDATED", NULL, current_version_object(k, j));
        end_job(j);
        j->target_done = true;
        save_state(dl);
    } else if (WIFEXITED(status)) {
        fail(dl, d, k, "the command exited with status %d%s%s", WEXITSTATUS(status),
             j->last_line[0] ? ": " : "", j->last_line);
    } else {
        fail(dl, d, k, "the command was killed by signal %d%s%s", WTERMSIG(status),
             j->last_line[0] ? ": " : "", j->last_line);
    }
    if (d->dc->ota.exclusive_bus) {
        cmd = xcalloc(1, sizeof(*cmd));
        cmd->kind = CMD_RESUME;
        j->phase = RESUMING;
        if (router_submit_internal(dl, d, cmd, resume_done, (void *)(intptr_t)k) < 0) {
            log_error("device '%s': cannot resume bus '%s'", d->dc->name, d->dc->bus->name);
            j->phase = IDLE;
        }
    }
}

/* ---- announcements ---------------------------------------------------------------------- */

/* push: a shared-attribute update (ThingsBoard assigned a package, perhaps the same one
 * again, and set fw_state INITIATED); otherwise the answer to the request at connect. */
static void consider(struct downlink *dl, struct dl_dev *d, enum kind k, bool push)
{
    struct job *j = job(dl, d, k);
    const struct ota_package *a = &j->announced;
    int r = ota_package_check(a);

    if (r == -EAGAIN)
        return; /* not complete yet: the rest of the push follows */
    if (j->running_title && same(a->title, j->running_title) &&
        same(a->version, j->running_version)) {
        /* Already running it: say so, or ThingsBoard shows INITIATED for ever. */
        if (push && j->phase == IDLE)
            report(dl, d, k, "UPDATED", NULL, current_version_object(k, j));
        return;
    }
    if (j->target.title && same_package(a, &j->target)) {
        if (j->phase == DOWNLOADING) {
            if (push) {
                log_info("device '%s': %s %s announced again; continuing the download at "
                         "byte %llu", d->dc->name, a->title, a->version,
                         (unsigned long long)j->bytes);
                report(dl, d, k, "DOWNLOADING", NULL, NULL);
            }
            return;
        }
        if (j->phase != IDLE) {
            if (push)
                report(dl, d, k, "UPDATING", NULL, NULL);
            return;
        }
        if (j->target_done && !(push && j->target_failed))
            return; /* announced again: never twice, and no retry at every reconnect */
        if (j->target_failed)
            log_info("device '%s': %s %s assigned again after it failed; trying again",
                     d->dc->name, a->title, a->version);
    }
    if (j->phase != IDLE) {
        if (j->phase != DOWNLOADING) {
            log_warning("device '%s': %s %s announced while an update runs; it waits for the "
                        "next announcement", d->dc->name, a->title, a->version);
            return;
        }
        log_info("device '%s': a new package was assigned during a download; switching",
                 d->dc->name);
        end_job(j);
    }
    package_copy(&j->target, a);
    j->target_done = false;
    if (dl->cfg->edge.gateway) {
        fail(dl, d, k, "ThingsBoard's gateway API carries no OTA updates (tbgw runs in gateway "
                       "mode)");
        return;
    }
    if (!d->dc->ota.enabled) {
        fail(dl, d, k, "tbgw has no ota block for device '%s' (see tbgw.conf(5))", d->dc->name);
        return;
    }
    if (r == -ENOTSUP) {
        fail(dl, d, k, "the package is a URL; tbgw downloads packages over MQTT only");
        return;
    }
    if (r < 0) {
        fail(dl, d, k, "unknown checksum algorithm '%s'", a->alg);
        return;
    }
    start_download(dl, d, k);
}

bool ota_key(const char *key)
{
    return (strncmp(key, "fw_", 3) == 0 || strncmp(key, "sw_", 3) == 0);
}

static int kind_of(const char *key)
{
    return strncmp(key, "fw_", 3) == 0 ? FW : strncmp(key, "sw_", 3) == 0 ? SW : -1;
}

/* fw_size: ThingsBoard sends an integer; a double or a numeric string is taken when it is a
 * whole number. Anything else is unknown (-1). */
static long long size_of(json_object *v)
{
    double d;

    if (json_object_is_type(v, json_type_int))
        return json_object_get_int64(v) >= 0 ? (long long)json_object_get_int64(v) : -1;
    if (json_object_is_type(v, json_type_string)) {
        const char *s = json_object_get_string(v);
        char *end;
        long long n;
        errno = 0;
        n = strtoll(s, &end, 10);
        return *s >= '0' && *s <= '9' && !*end && !errno ? n : -1;
    }
    if (!json_object_is_type(v, json_type_double))
        return -1;
    /* Checked here: json-c's own conversion of NaN to an integer is undefined. */
    d = json_object_get_double(v);
    return d >= 0 && d < 9.2e18 && d == floor(d) ? (long long)d : -1;
}

/* Strings from the announcement go back out in fw_error telemetry and in log lines. */
static char *text_of(json_object *v)
{
    const char *s = json_object_get_string(v);
    size_t len = json_object_is_type(v, json_type_string) ? (size_t)json_object_get_string_len(v)
                                                          : strlen(s);

    return utf8_sanitize_dup(s, len);
}

static void set_field(struct ota_package *p, const char *field, json_object *v)
{
    char **dst = NULL;

    if (strcmp(field, "size") == 0) {
        p->size = size_of(v);
        return;
    }
    if (strcmp(field, "title") == 0)
        dst = &p->title;
    else if (strcmp(field, "version") == 0)
        dst = &p->version;
    else if (strcmp(field, "checksum") == 0)
        dst = &p->checksum;
    else if (strcmp(field, "checksum_algorithm") == 0)
        dst = &p->alg;
    else if (strcmp(field, "tag") == 0)
        dst = &p->tag;
    else if (strcmp(field, "url") == 0)
        dst = &p->url;
    if (!dst)
        return; /* fw_state, fw_ts…: the server's own bookkeeping */
    free(*dst);
    *dst = json_object_is_type(v, json_type_null) ? NULL : text_of(v);
}

unsigned ota_announce(struct ota_package *const pkg[N_OTA_KINDS], json_object *o)
{
    unsigned touched = 0;

    json_object_object_foreach(o, key, v) {
        int k = kind_of(key);
        if (k < 0)
            continue;
        set_field(pkg[k], key + 3, v);
        touched |= 1u << k;
    }
    return touched;
}

static bool has_ota_key(json_object *o)
{
    json_object_object_foreach(o, key, v) {
        (void)v;
        if (ota_key(key))
            return true;
    }
    return false;
}

unsigned ota_unannounce(struct ota_package *const pkg[N_OTA_KINDS], json_object *keys)
{
    size_t n = json_object_array_length(keys);
    unsigned gone = 0;

    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(keys, i);
        const char *key = json_object_is_type(e, json_type_string) ? json_object_get_string(e) : "";
        int k = kind_of(key);

        if (k < 0)
            continue;
        if (strcmp(key + 3, "title") == 0 || strcmp(key + 3, "version") == 0) {
            ota_package_clear(pkg[k]);
            gone |= 1u << k;
        } else {
            set_field(pkg[k], key + 3, NULL);
        }
    }
    return gone;
}

int ota_package_check(const struct ota_package *p)
{
    if (!p->title || !p->version)
        return -EAGAIN;
    if (p->url)
        return -ENOTSUP;
    if (!p->checksum || !p->alg || p->size < 0)
        return -EAGAIN;
    return checksum_alg_from_string(p->alg) < 0 ? -EINVAL : 0;
}

void ota_attributes(struct downlink *dl, struct dl_dev *d, json_object *o, bool push)
{
    struct ota_package *pkg[N_KINDS];
    unsigned touched;

    if (!jobs_of(dl, d->dc->index) && !has_ota_key(o))
        return;
    pkg[FW] = &job(dl, d, FW)->announced;
    pkg[SW] = &job(dl, d, SW)->announced;
    touched = ota_announce(pkg, o);

    for (int k = 0; k < N_KINDS; k++)
        if (touched & (1u << k))
            consider(dl, d, (enum kind)k, push);
}

void ota_deleted(struct downlink *dl, struct dl_dev *d, json_object *keys)
{
    struct ota_package *pkg[N_KINDS];
    unsigned gone;

    if (!jobs_of(dl, d->dc->index))
        return; /* nothing was announced */
    pkg[FW] = &job(dl, d, FW)->announced;
    pkg[SW] = &job(dl, d, SW)->announced;
    gone = ota_unannounce(pkg, keys);

    for (int k = 0; k < N_KINDS; k++) {
        struct job *j = job(dl, d, (enum kind)k);
        /* Unassigned. A download stops; a running command is left to finish. */
        if ((gone & (1u << k)) && j->phase == DOWNLOADING) {
            log_info("device '%s': the package was unassigned; download stopped", d->dc->name);
            end_job(j);
            save_state(dl);
        }
    }
}

size_t ota_request_keys(char *buf, size_t size)
{
    static const char keys[] = "fw_title,fw_version,fw_size,fw_checksum,fw_checksum_algorithm,"
                               "fw_tag,fw_url,sw_title,sw_version,sw_size,sw_checksum,"
                               "sw_checksum_algorithm,sw_tag,sw_url";

    if (buf) {
        if (*buf)
            strncat(buf, ",", size - strlen(buf) - 1);
        strncat(buf, keys, size - strlen(buf) - 1);
    }
    return sizeof(keys);
}

int ota_chunk_topic(const char *topic, int *ret_req, unsigned *ret_n)
{
    for (int k = 0; k < N_KINDS; k++) {
        char prefix[24];
        const char *p;
        char *end;
        long a, b;

        snprintf(prefix, sizeof(prefix), "v2/%s/response/", kind_names[k]);
        if (strncmp(topic, prefix, strlen(prefix)) != 0)
            continue;
        p = topic + strlen(prefix);
        a = strtol(p, &end, 10);
        if (end == p || strncmp(end, "/chunk/", 7) != 0)
            return -EINVAL;
        p = end + 7;
        b = strtol(p, &end, 10);
        if (end == p || *end || a < 0 || a > INT32_MAX || b < 0 || b > INT32_MAX)
            return -EINVAL;
        *ret_req = (int)a;
        *ret_n = (unsigned)b;
        return k;
    }
    return -EINVAL;
}

bool ota_message(struct downlink *dl, struct dl_dev *d, const char *topic, const char *payload,
                 size_t len)
{
    int req, kind;
    unsigned n;

    kind = ota_chunk_topic(topic, &req, &n);
    if (kind >= 0) {
        on_chunk(dl, d, (enum kind)kind, req, n, payload, len);
        return true;
    }
    if (strcmp(topic, "v2/fw/error") == 0 || strcmp(topic, "v2/sw/error") == 0) {
        /* ThingsBoard uses v2/fw/error for software requests too: fail whichever downloads. */
        char msg[128];
        snprintf(msg, sizeof(msg), "the edge refused the download: %.*s", (int)MIN(len, (size_t)80),
                 payload);
        for (int k = 0; k < N_KINDS && jobs_of(dl, d->dc->index); k++)
            if (job(dl, d, (enum kind)k)->phase == DOWNLOADING)
                fail(dl, d, (enum kind)k, "%s", msg);
        return true;
    }
    return false;
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

/* An update that was in progress when tbgw stopped (ota-state.json): a download goes on
 * from the last whole chunk of its .part file, or from chunk 0, and says DOWNLOADING at
 * the next connect; a command that was cut short is reported FAILED (its outcome is
 * unknown, and it is not run again unless the package is assigned again). */
static void restore_job(struct downlink *dl, struct dl_dev *d, enum kind k)
{
    struct job *j = jobs_of(dl, d->dc->index) ? job(dl, d, k) : NULL;
    int r;

    if (!j || !j->pending)
        return;
    if (strcmp(j->pending, "UPDATING") == 0) {
        log_warning("device '%s': tbgw stopped while the update to %s %s ran; its outcome is "
                    "unknown", d->dc->name, j->target.title, j->target.version);
        free(j->pending);
        j->pending = xstrdup("FAILED");
        free(j->pending_error);
        j->pending_error = xstrdup("tbgw stopped while the update command ran; its outcome "
                                   "is unknown");
        j->target_done = j->target_failed = true;
        return;
    }
    if (strcmp(j->pending, "DOWNLOADING") != 0 || !d->dc->ota.enabled ||
        ota_package_check(&j->target) < 0) {
        if (strcmp(j->pending, "DOWNLOADING") == 0) {
            free(j->pending);
            j->pending = NULL;
        } else {
            j->target_done = true; /* UPDATED or FAILED while stopping: reported at connect */
            j->target_failed = strcmp(j->pending, "FAILED") == 0;
        }
        return;
    }
    r = set_paths(dl, d, k);
    if (r == 0)
        r = open_part(j, false);
    if (r < 0) {
        free(j->pending);
        j->pending = NULL; /* the announcement at connect starts it afresh */
        return;
    }
    j->phase = DOWNLOADING;
    j->retries = 0;
    log_info("device '%s': the download of %s %s goes on from byte %llu%s", d->dc->name,
             j->target.title, j->target.version, (unsigned long long)j->bytes,
             j->bytes ? "" : " (chunk 0: nothing usable was kept)");
}

void ota_init(struct downlink *dl)
{
    dl->ota = xcalloc(1, sizeof(*dl->ota));
    dl->ota->jobs = xcalloc(dl->n_devs ? dl->n_devs : 1, sizeof(*dl->ota->jobs));
    dl->ota->state_path = xasprintf("%s/ota-state.json", dl->cfg->storage.path);
    /* reqIds only need to differ within a session; starting from the clock keeps them
     * different from any the server saw before a restart, too. */
    dl->ota->next_req_id = (int)(now_ms() % 1000000);
    load_state(dl);
    for (size_t i = 0; i < dl->n_devs; i++)
        for (int k = 0; k < N_KINDS; k++)
            restore_job(dl, &dl->devs[i], (enum kind)k);
}

void ota_free(struct downlink *dl)
{
    if (!dl->ota)
        return;
    for (size_t i = 0; i < dl->n_devs; i++) {
        if (!jobs_of(dl, i))
            continue;
        for (int k = 0; k < N_KINDS; k++) {
            struct job *j = &jobs_of(dl, i)[k];
            if (j->pid > 0) {
                int status = 0;

                /* Stopping: an update in progress is not abandoned half way, and its
                 * outcome is reported at the next connect. */
                log_warning("device '%s': waiting for the update command (pid %d) to finish",
                            dl->devs[i].dc->name, (int)j->pid);
                waitpid(j->pid, &status, 0);
                free(j->pending);
                if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
                    free(j->running_title);
                    free(j->running_version);
                    j->running_title = xstrdup(j->target.title);
                    j->running_version = xstrdup(j->target.version);
                    j->pending = xstrdup("UPDATED");
                } else {
                    j->pending = xstrdup("FAILED");
                    free(j->pending_error);
                    j->pending_error = xstrdup("the update command failed while tbgw stopped");
                }
                j->phase = IDLE;
                save_state(dl);
            }
            if (j->out_fd >= 0)
                close(j->out_fd);
            if (j->fd >= 0)
                close(j->fd);
            /* A download goes on after a restart from what the .part file holds. */
            if (j->part && j->phase != DOWNLOADING)
                unlink(j->part);
            ota_package_clear(&j->announced);
            ota_package_clear(&j->target);
            free(j->part);
            free(j->image);
            free(j->running_title);
            free(j->running_version);
            free(j->pending);
            free(j->pending_error);
        }
        free(jobs_of(dl, i));
    }
    free(dl->ota->jobs);
    free(dl->ota->state_path);
    free(dl->ota);
    dl->ota = NULL;
}

void ota_connected(struct downlink *dl, struct dl_dev *d)
{
    if (!jobs_of(dl, d->dc->index))
        return; /* nothing to report, nothing to resume */
    for (int k = 0; k < N_KINDS; k++) {
        struct job *j = job(dl, d, (enum kind)k);
        if (j->running_title)
            dl_publish_json_take(dl, d, "v1/devices/me/telemetry",
                                     current_version_object((enum kind)k, j));
        if (j->pending) {
            /* After a restart: what happened while tbgw was away, or what it does now. */
            report(dl, d, (enum kind)k, j->pending, j->pending_error,
                   strcmp(j->pending, "UPDATED") == 0 ? current_version_object((enum kind)k, j)
                                                      : NULL);
            free(j->pending);
            free(j->pending_error);
            j->pending = j->pending_error = NULL;
            save_state(dl);
        }
        if (j->phase == DOWNLOADING) {
            /* Resume where it stopped, under a new reqId for the new session. */
            j->req_id = ++dl->ota->next_req_id;
            j->retries = 0;
            log_info("device '%s': resuming the download at byte %llu", d->dc->name,
                     (unsigned long long)j->bytes);
            request_chunk(dl, d, (enum kind)k);
        }
    }
}

void ota_disconnected(struct downlink *dl, struct dl_dev *d)
{
}

void ota_tick(struct downlink *dl, uint64_t now)
{
    for (size_t i = 0; i < dl->n_devs; i++) {
        struct dl_dev *d = &dl->devs[i];
        if (!jobs_of(dl, i))
            continue;
        for (int k = 0; k < N_KINDS; k++) {
            struct job *j = &jobs_of(dl, i)[k];
            int status;

            if (j->phase == DOWNLOADING && dl_session(dl, d) != DL_DOWN && now >= j->deadline_ms) {
                if (j->request_held)
                    request_chunk(dl, d, (enum kind)k);
                else if (++j->retries > CHUNK_RETRIES)
                    fail(dl, d, (enum kind)k, "download timed out at byte %llu",
                         (unsigned long long)j->bytes);
                else
                    request_chunk(dl, d, (enum kind)k);
            }
            if (j->phase != UPDATING || j->pid <= 0)
                continue;
            read_output(j);
            if (waitpid(j->pid, &status, WNOHANG) == j->pid) {
                command_finished(dl, d, (enum kind)k, status);
                continue;
            }
            if (!j->timed_out && now >= j->cmd_deadline_ms) {
                j->timed_out = true;
                j->kill_at_ms = now + KILL_GRACE_MS;
                kill(-j->pid, SIGTERM);
            } else if (j->timed_out && j->kill_at_ms && now >= j->kill_at_ms) {
                kill(-j->pid, SIGKILL);
                j->kill_at_ms = 0;
            }
        }
    }
}
