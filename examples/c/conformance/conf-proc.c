/* The process: args and environment (sizes and contents), clocks (they
 * succeed and are monotonic; no times printed), random_get, a zero-timeout
 * poll_oneoff smoke case, and exit codes: `conf-proc exit N` calls
 * proc_exit(N), `conf-proc return N` returns N from main. */
#include <stdlib.h>
#include <string.h>
#include <wasi/api.h>

#include "conf.h"

static void clocks(void) {
    static const char *const names[] = {"realtime", "monotonic", "process_cputime", "thread_cputime"};
    for (unsigned id = 0; id < 4; id++) {
        char name[64];
        __wasi_timestamp_t res = 0, t1 = 0, t2 = 0;
        snprintf(name, sizeof name, "clock_res_get %s", names[id]);
        __wasi_errno_t e = __wasi_clock_res_get(id, &res);
        if (e) {
            show_errno(name, e);
        } else {
            printf("%s: ok %s\n", name, res > 0 ? "positive" : "zero");
        }
        snprintf(name, sizeof name, "clock_time_get %s twice", names[id]);
        e = __wasi_clock_time_get(id, 1, &t1);
        if (!e) {
            e = __wasi_clock_time_get(id, 1, &t2);
        }
        if (e) {
            show_errno(name, e);
        } else {
            printf("%s: ok %s\n", name, t2 >= t1 && t1 > 0 ? "nondecreasing" : "WRONG");
        }
    }
}

static void randoms(void) {
    uint8_t buf[64];
    memset(buf, 0, sizeof buf);
    __wasi_errno_t e = __wasi_random_get(buf, sizeof buf);
    int nonzero = 0;
    for (unsigned i = 0; i < sizeof buf; i++) {
        nonzero |= buf[i];
    }
    if (e) {
        show_errno("random_get 64", e);
    } else {
        printf("random_get 64: ok %s\n", nonzero ? "not all zero" : "ALL ZERO");
    }
    show_errno("random_get 0", __wasi_random_get(buf, 0));
}

static void poll_smoke(void) {
    __wasi_subscription_t sub;
    memset(&sub, 0, sizeof sub);
    sub.userdata = 0x1234;
    sub.u.tag = __WASI_EVENTTYPE_CLOCK;
    sub.u.u.clock.id = __WASI_CLOCKID_MONOTONIC;
    sub.u.u.clock.timeout = 0;
    __wasi_event_t ev[2];
    memset(ev, 0, sizeof ev);
    __wasi_size_t n = 0;
    __wasi_errno_t e = __wasi_poll_oneoff(&sub, ev, 1, &n);
    if (e) {
        show_errno("poll_oneoff clock 0", e);
    } else {
        printf("poll_oneoff clock 0: ok events=%u userdata=%#llx error=%u type=%u\n", (unsigned)n,
               (unsigned long long)ev[0].userdata, ev[0].error, ev[0].type);
    }
}

static void args_env(void) {
    __wasi_size_t argc = 0, argv_size = 0, envc = 0, env_size = 0;
    show_errno("args_sizes_get", __wasi_args_sizes_get(&argc, &argv_size));
    printf("argc=%u argv_bytes=%u\n", (unsigned)argc, (unsigned)argv_size);
    char **argv = calloc(argc + 1, sizeof *argv);
    char *argbuf = malloc(argv_size + 1);
    show_errno("args_get", __wasi_args_get((uint8_t **)argv, (uint8_t *)argbuf));
    for (unsigned i = 0; i < argc; i++) {
        printf("arg %u: [%s]\n", i, argv[i]);
    }
    show_errno("environ_sizes_get", __wasi_environ_sizes_get(&envc, &env_size));
    printf("envc=%u env_bytes=%u\n", (unsigned)envc, (unsigned)env_size);
    char **env = calloc(envc + 1, sizeof *env);
    char *envbuf = malloc(env_size + 1);
    show_errno("environ_get", __wasi_environ_get((uint8_t **)env, (uint8_t *)envbuf));
    for (unsigned i = 0; i < envc; i++) {
        printf("env %u: [%s]\n", i, env[i]);
    }
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "exit") == 0) {
        printf("proc_exit %s\n", argv[2]);
        fflush(stdout);
        __wasi_proc_exit((__wasi_exitcode_t)strtoul(argv[2], NULL, 10));
    }
    if (argc == 3 && strcmp(argv[1], "return") == 0) {
        printf("return %s\n", argv[2]);
        return atoi(argv[2]);
    }
    args_env();
    clocks();
    randoms();
    poll_smoke();
    show_errno("sched_yield", __wasi_sched_yield());
    return 0;
}
