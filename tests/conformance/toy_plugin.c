/*
 * toy_plugin.c -- a small but correct plugin used to show that km-conformance
 * passes good plugins and catches each kind of broken one. Not crypto:
 * wrap is  (plain XOR 0xA5) || FNV-1a-32(plain), which detects any single
 * byte change, so tamper checks behave as with a real AEAD.
 *
 * Manager "toy"; key ids "" (the default) and "toy". Config: any JSON object
 * text, i.e. it must start with '{' and end with '}', be ASCII and nest at
 * most 64 brackets deep.
 *
 * Compile with one -D to break it on purpose:
 *   BROKEN_INIT_NULL   km_plugin_init returns NULL
 *   BROKEN_ABI_MAJOR   reports ABI 2.0
 *   BROKEN_CAPS        claims KM_CAP_WRAP without ops->wrap
 *   BROKEN_DUP_NAMES   two factories named "toy"
 *   BROKEN_CREATE      create accepts anything
 *   BROKEN_TAMPER      unwrap skips the checksum
 *   BROKEN_STATUS      unknown key ids give status 42
 *   BROKEN_NOT_FOUND   unknown key ids give KM_ERR_INVALID_ARGUMENT (message with a newline)
 *   BROKEN_OK_NULL     wrap of 1 byte returns KM_OK with a NULL output
 *   BROKEN_ROUNDTRIP   unwrap returns one byte too few for inputs > 1000 bytes
 *   BROKEN_LEAK        unwrap leaks 24 bytes per call
 *   BROKEN_OOB         unwrap reads one byte past the input (for ASan)
 *   BROKEN_NO_WIPE     free releases outputs without clearing them
 *   BROKEN_ECHO_CONFIG create errors quote the config's raw bytes
 *   BROKEN_OUT_ON_ERROR  unknown key ids fail with *out set
 *   BROKEN_CTX_READ    reads ctx->request_id whatever ctx->struct_size says
 *   BROKEN_MAJOR2_LOG  logs through a host of another ABI major
 */
#define _DEFAULT_SOURCE /* explicit_bzero */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keymanager.h"

struct km_manager {
    int unused;
};

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

static int32_t fail(char **error, int32_t status, const char *msg)
{
    if (error)
        *error = dup_str(msg);
    return status;
}

static uint32_t fnv1a(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static int32_t unknown_key(const char *key_id, char **error)
{
    if (strcmp(key_id, "") == 0 || strcmp(key_id, "toy") == 0)
        return KM_OK;

#if defined(BROKEN_STATUS)
    return fail(error, 42, "no such key");
#elif defined(BROKEN_NOT_FOUND)
    return fail(error, KM_ERR_INVALID_ARGUMENT, "no such\nkey"); /* a newline, too */
#else
    return fail(error, KM_ERR_NOT_FOUND, "no such key");
#endif
}

__attribute__((unused)) static int32_t toy_wrap(km_manager *m, const km_call_ctx *ctx, const char *key_id, const uint8_t *plain,
                        size_t n, uint8_t **out, size_t *out_len, char **error)
{
    (void)m;
    (void)ctx;
    int32_t s = unknown_key(key_id, error);
#ifdef BROKEN_OUT_ON_ERROR
    if (s != KM_OK) {
        *out = malloc(1);
        *out_len = 1;
    }
#endif
    if (s != KM_OK)
        return s;
#ifdef BROKEN_OK_NULL
    if (n == 1) {
        *out = NULL;
        *out_len = 0;
        return KM_OK;
    }
#endif
    uint8_t *buf = malloc(n + 4);
    if (!buf)
        return fail(error, KM_ERR_INTERNAL, "out of memory");
    for (size_t i = 0; i < n; i++)
        buf[i] = plain[i] ^ 0xA5;
    uint32_t h = fnv1a(plain, n);
    memcpy(buf + n, &h, 4);
    *out = buf;
    *out_len = n + 4;
    return KM_OK;
}

static int32_t toy_unwrap(km_manager *m, const km_call_ctx *ctx, const char *key_id, const uint8_t *wrapped,
                          size_t n, uint8_t **out, size_t *out_len, char **error)
{
    (void)m;
#ifdef BROKEN_CTX_READ
    const char *volatile rid = ctx->request_id; /* past struct_size when the host's ctx is smaller */
    (void)rid;
#else
    (void)ctx;
#endif
    int32_t s = unknown_key(key_id, error);
    if (s != KM_OK)
        return s;
#ifdef BROKEN_LEAK
    void *volatile leak = malloc(24);
    (void)leak;
#endif
    if (n < 4)
        return fail(error, KM_ERR_CRYPTO, "too short");
    size_t plain_len = n - 4;
    uint8_t *buf = malloc(plain_len ? plain_len : 1);
    if (!buf)
        return fail(error, KM_ERR_INTERNAL, "out of memory");
    for (size_t i = 0; i < plain_len; i++)
        buf[i] = wrapped[i] ^ 0xA5;
#ifdef BROKEN_OOB
    volatile uint8_t past_end = wrapped[n]; /* one byte past the input */
    (void)past_end;
#endif
    uint32_t h;
    memcpy(&h, wrapped + plain_len, 4);
#ifndef BROKEN_TAMPER
    if (h != fnv1a(buf, plain_len)) {
        free(buf);
        return fail(error, KM_ERR_CRYPTO, "checksum mismatch");
    }
#endif
#ifdef BROKEN_ROUNDTRIP
    if (plain_len > 1000)
        plain_len--;
#endif
    *out = buf;
    *out_len = plain_len;
    return KM_OK;
}

static int32_t toy_create(const char *cfg, size_t len, km_manager **out, char **error)
{
#ifndef BROKEN_CREATE
    if (len < 2 || cfg[0] != '{' || cfg[len - 1] != '}')
        return fail(error, KM_ERR_INVALID_ARGUMENT, "toy config must be a JSON object");
    int depth = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)cfg[i];
        if (c >= 0x80) {
#ifdef BROKEN_ECHO_CONFIG
            char msg[64];
            snprintf(msg, sizeof msg, "toy config: bad byte in \"%.20s\"", cfg);
            return fail(error, KM_ERR_INVALID_ARGUMENT, msg);
#else
            return fail(error, KM_ERR_INVALID_ARGUMENT, "toy config must be ASCII JSON");
#endif
        }
        depth += (c == '{' || c == '[') - (c == '}' || c == ']');
        if (depth > 64)
            return fail(error, KM_ERR_INVALID_ARGUMENT, "toy config is nested too deeply");
    }
#else
    (void)cfg;
    (void)len;
    (void)error;
#endif
    *out = calloc(1, sizeof **out);
    return *out ? KM_OK : fail(error, KM_ERR_INTERNAL, "out of memory");
}

static void toy_destroy(km_manager *m)
{
    free(m);
}

static void toy_free(void *p)
{
#ifndef BROKEN_NO_WIPE
    if (p)
        explicit_bzero(p, malloc_usable_size(p)); /* outputs may be key material; memset could be elided */
#endif
    free(p);
}

static const km_manager_ops toy_ops = {
    .struct_size = sizeof(km_manager_ops),
#ifndef BROKEN_CAPS
    .wrap = toy_wrap,
#endif
    .unwrap = toy_unwrap,
    .destroy = toy_destroy,
};

static const km_factory toy_factory = {
    .struct_size = sizeof(km_factory),
    .manager_name = "toy",
    .capabilities = KM_CAP_THREAD_SAFE | KM_CAP_WRAP | KM_CAP_UNWRAP,
    .create = toy_create,
    .ops = &toy_ops,
};

static const km_factory *const toy_factories[] = {
    &toy_factory,
#ifdef BROKEN_DUP_NAMES
    &toy_factory,
#endif
};

__attribute__((unused)) static const km_plugin toy_plugin = {
    .struct_size = sizeof(km_plugin),
#ifdef BROKEN_ABI_MAJOR
    .abi_major = 2,
#else
    .abi_major = KM_ABI_VERSION_MAJOR,
#endif
    .abi_minor = KM_ABI_VERSION_MINOR,
    .plugin_name = "toy",
    .plugin_version = "0.1",
    .factories = toy_factories,
    .factory_count = sizeof toy_factories / sizeof toy_factories[0],
    .free = toy_free,
};

__attribute__((visibility("default"))) const km_plugin *km_plugin_init(const km_host *host)
{
#ifdef BROKEN_MAJOR2_LOG
    if (host && host->log)
        (host->log)(host->log_ctx, KM_LOG_INFO, NULL, "toy loaded");
#else
    (void)host;
#endif
#ifdef BROKEN_INIT_NULL
    return NULL;
#else
    return &toy_plugin;
#endif
}
