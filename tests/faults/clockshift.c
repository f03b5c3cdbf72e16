/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * clockshift.so: make the wall clock of one process jump, for tests/faults/test_clock_jumps.py.
 *
 *   LD_PRELOAD=tests/faults/clockshift.so TBGW_CLOCKSHIFT_FILE=/path/offset tbgw ...
 *
 * The file holds an offset in milliseconds (e.g. -3600000); the test rewrites it to make
 * the clock jump, as settimeofday() or an NTP step would. Only the wall clock moves:
 * CLOCK_REALTIME (and its coarse and TAI forms), gettimeofday() and time(). The monotonic
 * and boot clocks go on as the kernel keeps them, as they do when the real clock is set.
 * The file is read again at most every 20 ms of monotonic time.
 *
 * pthread_cond_timedwait() takes a CLOCK_REALTIME deadline (paho waits on such condition
 * variables): a deadline computed from the shifted clock is shifted back before the
 * kernel sees it, so a wait lasts what its caller asked for. What this cannot show is a
 * wait already in progress when the clock is set (after a real backward step it would
 * last until the old deadline); paho's waits are woken by every command anyway. Every
 * condition variable in tbgw's process that is waited on with a deadline is paho's, and
 * those use CLOCK_REALTIME (none sets another clock with pthread_condattr_setclock()).
 *
 * libfaketime is not used: with FAKETIME_DONT_FAKE_MONOTONIC=1 (0.9.10, Debian 12) an
 * absolute clock_nanosleep() on CLOCK_MONOTONIC fails with EINVAL, which would remove
 * tbgw's inter-frame and wake-up pacing; without it the monotonic clock jumps too, which
 * no real clock step does.
 *
 * Built without sanitizers (it is preloaded into sanitized and plain builds alike).
 */
#ifndef _GNU_SOURCE /* config.h, when the build includes it, has it already */
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static _Atomic int64_t offset_ms;
static _Atomic uint64_t next_read_ns;

/* The real clock, straight from the kernel: no recursion into ourselves, no libc state. */
static int raw_clock(clockid_t id, struct timespec *ts)
{
    return (int)syscall(SYS_clock_gettime, id, ts);
}

static int64_t shift_ms(void)
{
    struct timespec now;
    uint64_t ns;
    const char *path;
    char buf[32];
    ssize_t n;
    int fd;

    raw_clock(CLOCK_MONOTONIC, &now);
    ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    if (ns < atomic_load(&next_read_ns))
        return atomic_load(&offset_ms);
    atomic_store(&next_read_ns, ns + 20000000u);
    path = getenv("TBGW_CLOCKSHIFT_FILE");
    if (!path)
        return 0;
    fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return atomic_load(&offset_ms);
    n = (ssize_t)syscall(SYS_read, fd, buf, sizeof(buf) - 1);
    syscall(SYS_close, fd);
    if (n > 0) {
        buf[n] = '\0';
        atomic_store(&offset_ms, strtoll(buf, NULL, 10));
    }
    return atomic_load(&offset_ms);
}

static void add_ms(struct timespec *ts, int64_t ms)
{
    int64_t ns = (int64_t)ts->tv_nsec + (ms % 1000) * 1000000;

    ts->tv_sec += (time_t)(ms / 1000);
    if (ns < 0) {
        ns += 1000000000;
        ts->tv_sec--;
    } else if (ns >= 1000000000) {
        ns -= 1000000000;
        ts->tv_sec++;
    }
    ts->tv_nsec = (long)ns;
}

static int is_wall(clockid_t id)
{
    return id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE || id == CLOCK_TAI;
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
    int r = raw_clock(id, ts);

    if (r == 0 && is_wall(id))
        add_ms(ts, shift_ms());
    return r;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz)
{
    struct timespec ts;

    (void)tz; /* obsolete, and glibc ignores it too */
    clock_gettime(CLOCK_REALTIME, &ts);
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
    return 0;
}

time_t time(time_t *t)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    if (t)
        *t = ts.tv_sec;
    return ts.tv_sec;
}

int pthread_cond_timedwait(pthread_cond_t *restrict c, pthread_mutex_t *restrict m,
                           const struct timespec *restrict abstime)
{
    static int (*real)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *);
    struct timespec t = *abstime;

    if (!real) {
        /* The versioned default: the 2.2.5 one is the old, ABI-incompatible condvar. */
        real = (int (*)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *))
            dlvsym(RTLD_NEXT, "pthread_cond_timedwait", "GLIBC_2.3.2");
        if (!real)
            real = (int (*)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *))
                dlsym(RTLD_NEXT, "pthread_cond_timedwait");
        if (!real)
            return EINVAL;
    }
    add_ms(&t, -shift_ms());
    return real(c, m, &t);
}
