/*
 * abi.c -- the plugin descriptor and C trampolines of the Go template.
 *
 * cgo compiles this file into the same shared library as the Go code. It
 * defines km_plugin_init (the one exported symbol) and the static ABI
 * tables; each table entry is a small C function that checks its pointer
 * arguments and calls the matching exported Go function.
 */
#define _DEFAULT_SOURCE /* explicit_bzero */
#include <stdlib.h>
#include <string.h>

#include "abi.h"
#include "_cgo_export.h" /* prototypes of the //export functions */

/* A manager, as the host sees it: a C struct holding a runtime/cgo.Handle
 * to the Go manager value (C memory must never hold Go pointers). */
struct km_manager {
    uintptr_t handle;
};

/* ---- buffers: a 16-byte size header lets ex_free wipe what it frees ---- */
#define HDR 16

void *ex_alloc(size_t n) {
    if (n > SIZE_MAX - HDR)
        return NULL;
    unsigned char *p = malloc(HDR + n);
    if (!p)
        return NULL;
    memcpy(p, &n, sizeof n);
    return p + HDR;
}

void ex_free(void *ptr) {
    if (!ptr)
        return;
    unsigned char *p = (unsigned char *)ptr - HDR;
    size_t n;
    memcpy(&n, p, sizeof n);
    explicit_bzero(ptr, n); /* unwrap results are key material */
    free(p);
}

/* ---- logging ------------------------------------------------------------ */
static km_log_fn host_log;
static void *host_log_ctx;

/* 1.1: the host's log threshold; read per line (the host may change it).
 * A 1.0 host has none: everything goes. */
static const km_host *host_ref; /* valid until the library is unloaded */

static int log_enabled(int32_t level)
{
    if (!host_log)
        return 0;
    if (host_ref && host_ref->struct_size >= offsetof(km_host, log_level) + sizeof host_ref->log_level)
        return level >= host_ref->log_level;
    return 1;
}

void ex_log(int32_t level, const char *request_id, const char *message) {
    if (log_enabled(level)) /* (host_log)(...): `log` may be a <tgmath.h> macro (keymanager.h rule 7) */
        (host_log)(host_log_ctx, level, request_id, message);
}

/* Read a field of the host's call context only if its struct_size has it. */
static const char *request_id_of(const km_call_ctx *ctx) {
    if (ctx && ctx->struct_size >= offsetof(km_call_ctx, request_id) + sizeof ctx->request_id)
        return ctx->request_id;
    return NULL;
}

/* 0 = no deadline (also when the host's struct predates the field). */
static uint32_t timeout_ms_of(const km_call_ctx *ctx) {
    if (ctx && ctx->struct_size >= offsetof(km_call_ctx, timeout_ms) + sizeof ctx->timeout_ms)
        return ctx->timeout_ms;
    return 0;
}

/* ---- trampolines ---------------------------------------------------------- */
static int32_t bad_args(char **error) {
    goSetError(error, "missing argument");
    return KM_ERR_INVALID_ARGUMENT;
}

static int32_t ex_create(const char *config, size_t config_len, km_manager **mgr, char **error) {
    if (!mgr || (!config && config_len))
        return bad_args(error);
    *mgr = NULL;
    struct km_manager *m = malloc(sizeof *m);
    if (!m) {
        goSetError(error, "out of memory");
        return KM_ERR_INTERNAL;
    }
    int32_t st = goCreate((char *)config, config_len, &m->handle, error);
    if (st != KM_OK) {
        free(m);
        return st;
    }
    *mgr = m;
    return KM_OK;
}

static int32_t ex_wrap(km_manager *m, const km_call_ctx *ctx, const char *key_id,
                       const uint8_t *in, size_t in_len, uint8_t **out, size_t *out_len, char **error) {
    if (!m || !out || !out_len || (!in && in_len))
        return bad_args(error);
    *out = NULL;
    *out_len = 0;
    return goWrap(m->handle, timeout_ms_of(ctx), (char *)request_id_of(ctx), (char *)(key_id ? key_id : ""),
                  (uint8_t *)in, in_len, out, out_len, error);
}

static int32_t ex_unwrap(km_manager *m, const km_call_ctx *ctx, const char *key_id,
                         const uint8_t *in, size_t in_len, uint8_t **out, size_t *out_len, char **error) {
    if (!m || !out || !out_len || (!in && in_len))
        return bad_args(error);
    *out = NULL;
    *out_len = 0;
    return goUnwrap(m->handle, timeout_ms_of(ctx), (char *)request_id_of(ctx), (char *)(key_id ? key_id : ""),
                    (uint8_t *)in, in_len, out, out_len, error);
}

static int32_t ex_probe(km_manager *m, const km_call_ctx *ctx, char **error) {
    if (!m)
        return bad_args(error);
    return goProbe(m->handle, timeout_ms_of(ctx), (char *)request_id_of(ctx), error);
}

static void ex_destroy(km_manager *m) {
    if (!m)
        return;
    goDestroy(m->handle);
    free(m);
}

/* ---- the static descriptor ---------------------------------------------- */
static const km_manager_ops ex_ops = {
    .struct_size = sizeof(km_manager_ops),
    .wrap = ex_wrap,
    .unwrap = ex_unwrap,
    .get_public_key = NULL, /* symmetric KEKs have no public key */
    .probe = ex_probe,
    .destroy = ex_destroy,
};

static const km_factory ex_factory = {
    .struct_size = sizeof(km_factory),
    .manager_name = "example-go",
    .capabilities = KM_CAP_THREAD_SAFE | KM_CAP_WRAP | KM_CAP_UNWRAP | KM_CAP_PROBE,
    .create = ex_create,
    .ops = &ex_ops,
};

static const km_factory *const ex_factories[] = {&ex_factory};

static const km_plugin ex_plugin = {
    .struct_size = sizeof(km_plugin),
    .abi_major = KM_ABI_VERSION_MAJOR,
    .abi_minor = KM_ABI_VERSION_MINOR,
    .plugin_name = "example-go",
    .plugin_version = "1.0.0",
    .factories = ex_factories,
    .factory_count = 1,
    .free = ex_free,
};

__attribute__((visibility("default")))
const km_plugin *km_plugin_init(const km_host *host) {
    if (host && host->abi_major != KM_ABI_VERSION_MAJOR)
        return NULL; /* another major version: refuse to load */
    if (host && host->struct_size >= offsetof(km_host, log_ctx) + sizeof host->log_ctx) {
        host_ref = host;
        host_log = host->log;
        host_log_ctx = host->log_ctx;
    }
    return &ex_plugin;
}
