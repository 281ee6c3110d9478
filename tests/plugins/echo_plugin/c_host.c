/*
 * c_host.c -- a plain C host for tests/plugins/test_pyembed.py.
 *
 *   c_host PLUGIN.so CONFIG_JSON THREADS CALLS
 *
 * dlopen(RTLD_NOW|RTLD_LOCAL) like any C program would (so libpython lands in
 * a local scope), create a manager, then THREADS threads each do CALLS
 * wrap+unwrap round trips. Prints "init NULL", "create <status> <error>" or
 * "ok <n>" (round trips that came back byte-identical); log lines go to stderr.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keymanager.h"

static const km_plugin *plugin;
static km_manager *mgr;
static int calls;
static int good;
static pthread_mutex_t good_lock = PTHREAD_MUTEX_INITIALIZER;

static void log_line(void *ctx, int32_t level, const char *request_id, const char *message)
{
    (void)ctx;
    fprintf(stderr, "log %d %s %s\n", level, request_id ? request_id : "-", message);
}

static void *worker(void *arg)
{
    const km_manager_ops *ops = plugin->factories[0]->ops;
    char plain[64];
    for (int i = 0; i < calls; i++) {
        int n = snprintf(plain, sizeof plain, "thread %ld call %d", (long)(intptr_t)arg, i);
        km_call_ctx ctx = {sizeof ctx, 30000, "c-host"};
        uint8_t *wrapped = NULL, *back = NULL;
        size_t wrapped_len = 0, back_len = 0;
        char *error = NULL;
        if (ops->wrap(mgr, &ctx, "", (const uint8_t *)plain, (size_t)n, &wrapped, &wrapped_len, &error) == KM_OK
            && ops->unwrap(mgr, &ctx, "", wrapped, wrapped_len, &back, &back_len, &error) == KM_OK
            && back_len == (size_t)n && memcmp(back, plain, (size_t)n) == 0) {
            pthread_mutex_lock(&good_lock);
            good++;
            pthread_mutex_unlock(&good_lock);
        }
        plugin->free(wrapped);
        plugin->free(back);
        plugin->free(error);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: c_host PLUGIN.so CONFIG_JSON THREADS CALLS\n");
        return 2;
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        printf("dlopen %s\n", dlerror());
        return 1;
    }
    const km_plugin *(*init)(const km_host *) = (const km_plugin *(*)(const km_host *))dlsym(lib, "km_plugin_init");
    km_host host = {.struct_size = sizeof host, .abi_major = KM_ABI_VERSION_MAJOR,
                    .abi_minor = KM_ABI_VERSION_MINOR, .log = log_line, .log_level = KM_LOG_DEBUG};
    plugin = init ? init(&host) : NULL;
    if (plugin == NULL) {
        printf("init NULL\n");
        return 1;
    }
    char *error = NULL;
    int32_t status = plugin->factories[0]->create(argv[2], strlen(argv[2]), &mgr, &error);
    if (status != KM_OK) {
        printf("create %d %s\n", status, error ? error : "");
        plugin->free(error);
        return 1;
    }
    int threads = atoi(argv[3]);
    calls = atoi(argv[4]);
    pthread_t tids[64];
    if (threads < 1 || threads > 64)
        return 2;
    for (int t = 0; t < threads; t++)
        pthread_create(&tids[t], NULL, worker, (void *)(intptr_t)t);
    for (int t = 0; t < threads; t++)
        pthread_join(tids[t], NULL);
    plugin->factories[0]->ops->destroy(mgr);
    printf("ok %d\n", good);
    fflush(stdout);
    return good == threads * calls ? 0 : 1;
}
