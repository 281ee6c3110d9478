/* A plugin that misbehaves on request, for the isolation tests. Manager
 * "wild": wrap and unwrap echo their input, unless the key id names a
 * misbehaviour:
 *   segv     dereferences NULL          abort    calls abort()
 *   huge     returns out_len 2^40 with a 1-byte buffer
 *   sleep    sleeps 60 s, ignoring its deadline
 *   garbage  writes junk to every socket it can find, then answers
 *   exit     _exit(7) in the middle of the call
 *   log      logs "hello from wild" with the call's request id
 *   alloc    mallocs and touches 512 MiB (KM_ERR_UNAVAILABLE when refused)
 *   nnp      returns PR_GET_NO_NEW_PRIVS as one byte
 *   dumpable returns PR_GET_DUMPABLE as one byte
 *   pid      returns getpid() as text (tells children apart)
 *   slow     sleeps 20 ms, counting how many calls overlap
 *   maxc     returns the largest overlap seen, as one byte
 *   loglevel returns km_host.log_level as text (read at the call, as plugins must)
 *   created  returns the timeout_ms create_ex was given as text, "create" without create_ex
 *   precond  KM_ERR_FAILED_PRECONDITION to a 1.1 host, KM_ERR_INVALID_ARGUMENT to a 1.0 one
 *   late     answers KM_OK 20 ms after its deadline passed
 *   badstatus returns 70000, which is no KM_* status
 *   destroyed returns how many managers were destroyed, as text
 * A config starting with {"late" makes create_ex answer KM_OK 20 ms after its
 * deadline. -DNOT_THREAD_SAFE drops KM_CAP_THREAD_SAFE; -DNO_CREATE_EX leaves
 * create_ex NULL (a 1.0-style factory).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "keymanager.h"

struct km_manager { long created_ms; };
static const km_host *g_host;
static int g_destroyed;
static km_log_fn g_log;
static void *g_log_ctx;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_in_call, g_max_overlap;

static void track(int delta) {
    pthread_mutex_lock(&g_mu);
    g_in_call += delta;
    if (g_in_call > g_max_overlap) g_max_overlap = g_in_call;
    pthread_mutex_unlock(&g_mu);
}

static char *dup_str(const char *s) { size_t n = strlen(s) + 1; char *p = malloc(n); memcpy(p, s, n); return p; }

static int32_t create(const char *cfg, size_t len, km_manager **out, char **err) {
    if (len == 0 || cfg[0] != '{') { *err = dup_str("config must be a JSON object"); return KM_ERR_INVALID_ARGUMENT; }
    *out = calloc(1, sizeof(km_manager));
    (*out)->created_ms = -1;
    return KM_OK;
}

/* Sleeps until 20 ms after ctx's deadline (bounded: timeout_ms is at most 2^32 ms). */
static void overrun(const km_call_ctx *ctx) {
    struct timespec ts = {(time_t)(ctx->timeout_ms / 1000), (long)(ctx->timeout_ms % 1000) * 1000000L + 20000000L};
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    while (nanosleep(&ts, &ts) != 0) {}
}

static int32_t create_ex(const km_call_ctx *ctx, const char *cfg, size_t len, km_manager **out, char **err) {
    int32_t st = create(cfg, len, out, err);
    if (st == KM_OK) (*out)->created_ms = ctx->timeout_ms;
    if (st == KM_OK && len >= 6 && memcmp(cfg, "{\"late\"", 6) == 0) overrun(ctx);
    return st;
}

static int32_t give(const void *data, size_t n, uint8_t **out, size_t *out_len) {
    *out = malloc(n ? n : 1);
    memcpy(*out, data, n);
    *out_len = n;
    return KM_OK;
}

static int32_t echo(km_manager *m, const km_call_ctx *ctx, const char *kid, const uint8_t *in, size_t n,
                    uint8_t **out, size_t *out_len, char **err) {
    if (strcmp(kid, "segv") == 0) { volatile int *p = NULL; *p = 1; }
    if (strcmp(kid, "abort") == 0) abort();
    if (strcmp(kid, "exit") == 0) _exit(7);
    if (strcmp(kid, "huge") == 0) { *out = malloc(1); *out_len = (size_t)1 << 40; return KM_OK; }
    if (strcmp(kid, "sleep") == 0) { struct timespec ts = {60, 0}; nanosleep(&ts, NULL); }
    if (strcmp(kid, "garbage") == 0) {
        static const char junk[] = "\xde\xad\xbe\xef garbage garbage garbage";
        for (int fd = 0; fd < 256; fd++) {
            struct stat st;
            if (fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) && write(fd, junk, sizeof junk - 1) < 0)
                continue;
        }
    }
    if (strcmp(kid, "log") == 0 && g_log)
        g_log(g_log_ctx, KM_LOG_WARN, ctx ? ctx->request_id : NULL, "hello from wild");
    if (strcmp(kid, "alloc") == 0) {
        size_t size = (size_t)512 << 20;
        char *big = malloc(size);
        if (big == NULL) { *err = dup_str("allocation refused"); return KM_ERR_UNAVAILABLE; }
        memset(big, 1, size);
        free(big);
    }
    if (strcmp(kid, "dumpable") == 0) { uint8_t v = (uint8_t)prctl(PR_GET_DUMPABLE, 0, 0, 0, 0); return give(&v, 1, out, out_len); }
    if (strcmp(kid, "nnp") == 0) { uint8_t v = (uint8_t)prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0); return give(&v, 1, out, out_len); }
    if (strcmp(kid, "slow") == 0) { struct timespec ts = {0, 20000000}; track(1); nanosleep(&ts, NULL); track(-1); }
    if (strcmp(kid, "maxc") == 0) { uint8_t v = (uint8_t)g_max_overlap; return give(&v, 1, out, out_len); }
    if (strcmp(kid, "loglevel") == 0 || strcmp(kid, "created") == 0 || strcmp(kid, "destroyed") == 0) {
        char b[32];
        if (strcmp(kid, "loglevel") == 0) snprintf(b, sizeof b, "%d", (int)g_host->log_level);
        else if (strcmp(kid, "destroyed") == 0) snprintf(b, sizeof b, "%d", __atomic_load_n(&g_destroyed, __ATOMIC_SEQ_CST));
        else if (m->created_ms < 0) snprintf(b, sizeof b, "create");
        else snprintf(b, sizeof b, "%ld", m->created_ms);
        return give(b, strlen(b), out, out_len);
    }
    if (strcmp(kid, "precond") == 0) return g_host->abi_minor >= 1 ? KM_ERR_FAILED_PRECONDITION : KM_ERR_INVALID_ARGUMENT;
    if (strcmp(kid, "badstatus") == 0) return 70000;
    if (strcmp(kid, "late") == 0) { overrun(ctx); return give(in, n, out, out_len); }
    if (strcmp(kid, "pid") == 0) { char b[32]; snprintf(b, sizeof b, "%d", (int)getpid()); return give(b, strlen(b), out, out_len); }
    if (n == 3 && memcmp(in, "bad", 3) == 0) { *err = dup_str("authentication failed"); return KM_ERR_CRYPTO; }
    return give(in, n, out, out_len);
}

static void destroy(km_manager *m) { __atomic_add_fetch(&g_destroyed, 1, __ATOMIC_SEQ_CST); free(m); }

static const km_manager_ops OPS = { sizeof(km_manager_ops), echo, echo, NULL, NULL, destroy };
static const km_factory FACTORY = { sizeof(km_factory), "wild",
#ifndef NOT_THREAD_SAFE
                                    KM_CAP_THREAD_SAFE |
#endif
                                    KM_CAP_WRAP | KM_CAP_UNWRAP,
                                    create, &OPS,
#ifndef NO_CREATE_EX
                                    create_ex
#else
                                    NULL
#endif
                                    };
static const km_factory *const FACTORIES[] = { &FACTORY };
static const km_plugin PLUGIN = { sizeof(km_plugin), KM_ABI_VERSION_MAJOR, KM_ABI_VERSION_MINOR,
                                  "wild", "0.0.1", FACTORIES, 1, free };

__attribute__((visibility("default"))) const km_plugin *km_plugin_init(const km_host *host) {
    if (!host || host->abi_major != KM_ABI_VERSION_MAJOR || host->struct_size < sizeof(km_host)) return NULL;
    g_host = host;
    g_log = host->log;
    g_log_ctx = host->log_ctx;
    return &PLUGIN;
}
