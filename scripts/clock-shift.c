/*
 * clock-shift.c: moves a process's wall clock by INVENTORY_CLOCK_SHIFT_MS milliseconds (may be negative), loaded
 * with LD_PRELOAD. scripts/cluster.sh builds it when INVENTORY_CLUSTER_CLOCK_SHIFTS is set, so that a test cluster's
 * nodes answer TIME with clocks that differ, as two machines' clocks do (ClusterClockTests).
 *
 * Only the wall clock moves (CLOCK_REALTIME and its coarse variant, gettimeofday, time): the monotonic clocks a
 * server measures its own timeouts with are left alone. The kernel is asked directly (syscall), never through the
 * next library's symbol: looking that up may allocate, and an allocator that reads the clock while it starts would
 * call back in here before the lookup is done.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static long long shift_ns(void) {
    static int read_once = 0;
    static long long shift = 0;
    if (!read_once) {
        const char *text = getenv("INVENTORY_CLOCK_SHIFT_MS");
        shift = text ? strtoll(text, NULL, 10) * 1000000LL : 0;
        read_once = 1;
    }
    return shift;
}

static void shifted(struct timespec *ts) {
    long long ns = (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec + shift_ns();
    ts->tv_sec = (time_t)(ns / 1000000000LL);
    ts->tv_nsec = (long)(ns % 1000000000LL);
    if (ts->tv_nsec < 0) {
        ts->tv_nsec += 1000000000L;
        ts->tv_sec -= 1;
    }
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    int result = (int)syscall(SYS_clock_gettime, id, ts);
    if (result == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) shifted(ts);
    return result;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    (void)tz;
    if (!tv) return 0;
    struct timespec ts;
    int result = clock_gettime(CLOCK_REALTIME, &ts);
    if (result == 0) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return result;
}

time_t time(time_t *out) {
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return (time_t)-1;
    if (out) *out = ts.tv_sec;
    return ts.tv_sec;
}
