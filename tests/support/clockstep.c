/* A wall-clock step for one process tree, as `date -s` would make for the whole machine.
 *
 * LD_PRELOAD=clockstep.so CLOCKSTEP_FILE=/path: CLOCK_REALTIME (clock_gettime, gettimeofday,
 * time) reads as the real time plus the number of seconds written in the file (re-read at
 * most every 50 ms, so a test steps the clock by rewriting it). CLOCK_MONOTONIC and every
 * sleep are left alone: only the wall clock jumps, as in a real step. Built by the clock
 * tests with the system's cc (tests/security/test_clock_steps.py).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static double offset_seconds(void) {
    static double offset = 0.0;
    static struct timespec last = {0, 0};
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    double since = (now.tv_sec - last.tv_sec) + (now.tv_nsec - last.tv_nsec) / 1e9;
    if (last.tv_sec == 0 || since > 0.05) {
        const char *path = getenv("CLOCKSTEP_FILE");
        FILE *f = path ? fopen(path, "r") : NULL;
        if (f) {
            double value;
            if (fscanf(f, "%lf", &value) == 1) offset = value;
            fclose(f);
        }
        last = now;
    }
    return offset;
}

int clock_gettime(clockid_t clock, struct timespec *tp) {
    static int (*real)(clockid_t, struct timespec *) = NULL;
    if (!real) real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    int rc = real(clock, tp);
    if (rc == 0 && (clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE)) {
        double shifted = tp->tv_sec + tp->tv_nsec / 1e9 + offset_seconds();
        tp->tv_sec = (time_t)shifted;
        tp->tv_nsec = (long)((shifted - (double)tp->tv_sec) * 1e9);
    }
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    (void)tz;
    clock_gettime(CLOCK_REALTIME, &ts);
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
    return 0;
}

time_t time(time_t *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out) *out = ts.tv_sec;
    return ts.tv_sec;
}
