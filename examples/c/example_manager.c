/*
 * example_manager.c -- a template key-manager plugin in C (manager "example-c").
 *
 * Copy this file to start your own plugin. It is a complete, working
 * "file-KEK" style manager:
 *
 *   config   {"keks": {"<id>": "<64 hex chars>", ...}, "default_key_id": "<id>"}
 *   wrap     AES-256-GCM under the KEK named by key_id ("" = default_key_id),
 *            output  nonce(12) || ciphertext || tag(16),  AAD = the key id used
 *   unwrap   the reverse; a bad tag is KM_ERR_CRYPTO
 *
 * Where your manager talks to a real KMS/HSM, replace the three marked
 * places: parse_config() (your config shape), do_wrap()/do_unwrap() (your
 * backend calls) and, if you have one, a get_public_key.
 *
 * The contract is include/keymanager.h; docs/plugin-authors.md explains it.
 * Build:  make example-c   ->  build/examples/example-c-manager.so
 */
#define _POSIX_C_SOURCE 200809L /* strndup */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "keymanager.h"

#define MANAGER_NAME "example-c"
#define KEK_LEN 32   /* AES-256 */
#define NONCE_LEN 12 /* GCM's standard nonce */
#define TAG_LEN 16
#define MAX_KEKS 64
#define MAX_ID_LEN 256

/* ------------------------------------------------------------------------
 * Buffers handed to the host.
 *
 * The host releases every buffer we return (*out, *error) by calling the
 * descriptor's free function. free() alone does not know a buffer's size,
 * so each buffer carries its length in a small header: plugin_free() can
 * then wipe it (an unwrap result is key material) before releasing it.
 * ---------------------------------------------------------------------- */
#define HDR 16 /* keeps the payload 16-byte aligned, like malloc's */

static void *buf_alloc(size_t n) {
    if (n > SIZE_MAX - HDR)
        return NULL;
    unsigned char *p = malloc(HDR + n);
    if (!p)
        return NULL;
    memcpy(p, &n, sizeof n);
    return p + HDR;
}

static void plugin_free(void *ptr) {
    if (!ptr)
        return;
    unsigned char *p = (unsigned char *)ptr - HDR;
    size_t n;
    memcpy(&n, p, sizeof n);
    OPENSSL_cleanse(ptr, n);
    free(p);
}

/* Sets *error to a formatted message (if the host asked for one) and
 * returns `status`. Messages are for operators: never put key material,
 * passwords or config values in them. */
static int32_t fail(char **error, int32_t status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* *error must be valid UTF-8 (keymanager.h rule 3), but messages quote
 * config bytes and may be cut mid-character: replace every byte that is not
 * part of a well-formed sequence with '?'. */
static void utf8_sanitize(char *s) {
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        size_t need = *p < 0x80 ? 0 : *p >= 0xC2 && *p <= 0xDF ? 1 : *p >= 0xE0 && *p <= 0xEF ? 2
                    : *p >= 0xF0 && *p <= 0xF4 ? 3 : 4;
        size_t k = 1;
        if (need < 4)
            while (k <= need && (p[k] & 0xC0) == 0x80)
                k++;
        int ok = need < 4 && k == need + 1
                 && !(need == 2 && ((p[0] == 0xE0 && p[1] < 0xA0) || (p[0] == 0xED && p[1] > 0x9F)))
                 && !(need == 3 && ((p[0] == 0xF0 && p[1] < 0x90) || (p[0] == 0xF4 && p[1] > 0x8F)));
        if (!ok) {
            *p++ = '?';
            continue;
        }
        p += need + 1;
    }
}

static int32_t fail(char **error, int32_t status, const char *fmt, ...) {
    if (error) {
        char msg[320];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        utf8_sanitize(msg);
        char *copy = buf_alloc(strlen(msg) + 1);
        if (copy)
            memcpy(copy, msg, strlen(msg) + 1);
        *error = copy;
    }
    return status;
}

/* ------------------------------------------------------------------------
 * Logging through the host (optional: host->log may be NULL).
 * ---------------------------------------------------------------------- */
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

/* The call context may come from a host built against an older header:
 * read a field only if the host's struct_size says it is there. */
static const char *request_id_of(const km_call_ctx *ctx) {
    if (ctx && ctx->struct_size >= offsetof(km_call_ctx, request_id) + sizeof ctx->request_id)
        return ctx->request_id;
    return NULL;
}

/* Log rarely: the host's callback may take a lock (the Python host takes its
 * interpreter lock), so a log line per wrap/unwrap would serialize calls. */
static void log_msg(int32_t level, const km_call_ctx *ctx, const char *msg) {
    if (log_enabled(level)) /* (host_log)(...): `log` may be a <tgmath.h> macro (keymanager.h rule 7) */
        (host_log)(host_log_ctx, level, request_id_of(ctx), msg);
}

/* ------------------------------------------------------------------------
 * The manager: an immutable table of KEKs. Nothing changes after create(),
 * so any number of threads may call wrap/unwrap at once without locks
 * (each call uses its own EVP_CIPHER_CTX). That is what lets the factory
 * claim KM_CAP_THREAD_SAFE.
 * ---------------------------------------------------------------------- */
typedef struct kek {
    char *id;
    unsigned char key[KEK_LEN];
} kek;

struct km_manager {
    kek keks[MAX_KEKS];
    size_t n_keks;
    size_t default_index;
};

static void manager_free(km_manager *m) {
    if (!m)
        return;
    for (size_t i = 0; i < m->n_keks; i++)
        free(m->keks[i].id);
    OPENSSL_cleanse(m, sizeof *m); /* wipes the KEKs */
    free(m);
}

/* key_id "" means the default KEK. Returns NULL when there is no such KEK. */
static const kek *find_kek(const km_manager *m, const char *key_id) {
    if (key_id == NULL || key_id[0] == '\0')
        return &m->keks[m->default_index];
    for (size_t i = 0; i < m->n_keks; i++)
        if (strcmp(m->keks[i].id, key_id) == 0)
            return &m->keks[i];
    return NULL;
}

/* ------------------------------------------------------------------------
 * Minimal JSON for exactly this config shape. REPLACE THIS with a real
 * JSON library (json-c, jansson, cJSON) when your config grows: it accepts
 * strings without escapes only, and no other value types.
 * ---------------------------------------------------------------------- */
typedef struct reader {
    const char *p, *end;
    char error[200];
} reader;

static void skip_ws(reader *r) {
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

/* Consumes `ch` (after whitespace) if it is next; returns 1 if it was. */
static int accept_char(reader *r, char ch) {
    skip_ws(r);
    if (r->p < r->end && *r->p == ch) {
        r->p++;
        return 1;
    }
    return 0;
}

static int expect_char(reader *r, char ch, const char *what, const char *start) {
    if (accept_char(r, ch))
        return 0;
    snprintf(r->error, sizeof r->error, "config is not the expected JSON: expected %s at byte %zu",
             what, (size_t)(r->p - start));
    return -1;
}

/* Reads a "string"; points *s and *len at its bytes inside the config. */
static int read_string(reader *r, const char **s, size_t *len, const char *start) {
    if (expect_char(r, '"', "a string", start) < 0)
        return -1;
    const char *begin = r->p;
    while (r->p < r->end && *r->p != '"') {
        if (*r->p == '\\' || (unsigned char)*r->p < 0x20) {
            snprintf(r->error, sizeof r->error,
                     "config: escapes and control characters in strings are not supported (byte %zu)",
                     (size_t)(r->p - start));
            return -1;
        }
        r->p++;
    }
    if (r->p >= r->end) {
        snprintf(r->error, sizeof r->error, "config is not valid JSON: unterminated string");
        return -1;
    }
    *s = begin;
    *len = (size_t)(r->p - begin);
    r->p++; /* closing quote */
    return 0;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* 64 hex chars -> 32 bytes. The message names the KEK id, never the value. */
static int decode_kek(reader *r, const char *hex, size_t len, unsigned char key[KEK_LEN], const char *id) {
    int ok = (len == 2 * KEK_LEN);
    for (size_t i = 0; ok && i < KEK_LEN; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            ok = 0;
        else
            key[i] = (unsigned char)(hi << 4 | lo);
    }
    if (!ok) {
        OPENSSL_cleanse(key, KEK_LEN);
        snprintf(r->error, sizeof r->error, "config: keks.%.64s must be 64 hex characters (a 256-bit key)", id);
        return -1;
    }
    return 0;
}

/* Parses {"keks": {...}, "default_key_id": "..."} into m. */
static int parse_config(reader *r, km_manager *m) {
    const char *start = r->p;
    const char *def = NULL;
    size_t def_len = 0;
    int seen_keks = 0;

    if (expect_char(r, '{', "a JSON object", start) < 0)
        return -1;
    if (!accept_char(r, '}')) {
        do {
            const char *name;
            size_t name_len;
            if (read_string(r, &name, &name_len, start) < 0 || expect_char(r, ':', "':'", start) < 0)
                return -1;
            if (name_len == 4 && memcmp(name, "keks", 4) == 0) {
                seen_keks = 1;
                if (expect_char(r, '{', "an object for keks", start) < 0)
                    return -1;
                if (accept_char(r, '}'))
                    continue;
                do {
                    const char *id, *hex;
                    size_t id_len, hex_len;
                    if (read_string(r, &id, &id_len, start) < 0 || expect_char(r, ':', "':'", start) < 0)
                        return -1;
                    if (id_len == 0 || id_len > MAX_ID_LEN) {
                        snprintf(r->error, sizeof r->error, "config: KEK ids must be 1 to %d bytes", MAX_ID_LEN);
                        return -1;
                    }
                    if (m->n_keks == MAX_KEKS) {
                        snprintf(r->error, sizeof r->error, "config: at most %d KEKs", MAX_KEKS);
                        return -1;
                    }
                    kek *k = &m->keks[m->n_keks];
                    k->id = strndup(id, id_len);
                    if (!k->id) {
                        snprintf(r->error, sizeof r->error, "out of memory");
                        return -1;
                    }
                    m->n_keks++;
                    if (find_kek(m, k->id) != k) { /* the earlier one wins the lookup */
                        snprintf(r->error, sizeof r->error, "config: KEK id \"%.64s\" appears twice", k->id);
                        return -1;
                    }
                    skip_ws(r);
                    if (r->p < r->end && *r->p != '"') /* a number, object...: say what we want */
                        return decode_kek(r, "", 0, k->key, k->id);
                    if (read_string(r, &hex, &hex_len, start) < 0 ||
                        decode_kek(r, hex, hex_len, k->key, k->id) < 0)
                        return -1;
                } while (accept_char(r, ','));
                if (expect_char(r, '}', "',' or '}' in keks", start) < 0)
                    return -1;
            } else if (name_len == 14 && memcmp(name, "default_key_id", 14) == 0) {
                if (read_string(r, &def, &def_len, start) < 0)
                    return -1;
            } else {
                snprintf(r->error, sizeof r->error, "config: unknown field \"%.*s\" (expected keks, default_key_id)",
                         (int)(name_len > 40 ? 40 : name_len), name);
                return -1;
            }
        } while (accept_char(r, ','));
        if (expect_char(r, '}', "',' or '}'", start) < 0)
            return -1;
    }
    skip_ws(r);
    if (r->p != r->end) {
        snprintf(r->error, sizeof r->error, "config is not valid JSON: trailing bytes at %zu", (size_t)(r->p - start));
        return -1;
    }
    if (!seen_keks || m->n_keks == 0) {
        snprintf(r->error, sizeof r->error, "config: \"keks\" must name at least one KEK");
        return -1;
    }
    if (!def || def_len == 0) {
        snprintf(r->error, sizeof r->error, "config: \"default_key_id\" is required");
        return -1;
    }
    for (size_t i = 0; i < m->n_keks; i++) {
        if (strlen(m->keks[i].id) == def_len && memcmp(m->keks[i].id, def, def_len) == 0) {
            m->default_index = i;
            return 0;
        }
    }
    snprintf(r->error, sizeof r->error, "config: default_key_id names no KEK in keks");
    return -1;
}

/* ------------------------------------------------------------------------
 * AES-256-GCM (OpenSSL). Replace with your backend's wrap/unwrap.
 * ---------------------------------------------------------------------- */
static int32_t do_wrap(const kek *k, const uint8_t *plain, size_t plain_len,
                       uint8_t **out, size_t *out_len, char **error) {
    if (plain_len > INT32_MAX)
        return fail(error, KM_ERR_INVALID_ARGUMENT, "input too large");
    size_t n = NONCE_LEN + plain_len + TAG_LEN;
    uint8_t *buf = buf_alloc(n);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int len, ok = buf && c && RAND_bytes(buf, NONCE_LEN) == 1 &&
        EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, k->key, buf) == 1 &&
        EVP_EncryptUpdate(c, NULL, &len, (const unsigned char *)k->id, (int)strlen(k->id)) == 1 && /* AAD */
        EVP_EncryptUpdate(c, buf + NONCE_LEN, &len, plain, (int)plain_len) == 1 &&
        EVP_EncryptFinal_ex(c, buf + NONCE_LEN + len, &len) == 1 &&
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, buf + NONCE_LEN + plain_len) == 1;
    EVP_CIPHER_CTX_free(c); /* also wipes the key schedule */
    if (!ok) {
        plugin_free(buf);
        return fail(error, KM_ERR_INTERNAL, "AES-GCM encryption failed");
    }
    *out = buf;
    *out_len = n;
    return KM_OK;
}

static int32_t do_unwrap(const kek *k, const uint8_t *wrapped, size_t wrapped_len,
                         uint8_t **out, size_t *out_len, char **error) {
    if (wrapped_len < NONCE_LEN + TAG_LEN)
        return fail(error, KM_ERR_INVALID_ARGUMENT, "wrapped input is %zu bytes; at least %d expected",
                    wrapped_len, NONCE_LEN + TAG_LEN);
    if (wrapped_len > INT32_MAX)
        return fail(error, KM_ERR_INVALID_ARGUMENT, "input too large");
    size_t n = wrapped_len - NONCE_LEN - TAG_LEN;
    uint8_t *buf = buf_alloc(n);
    if (!buf)
        return fail(error, KM_ERR_INTERNAL, "out of memory");
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int len, setup = c &&
        EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, k->key, wrapped) == 1 &&
        EVP_DecryptUpdate(c, NULL, &len, (const unsigned char *)k->id, (int)strlen(k->id)) == 1 &&
        EVP_DecryptUpdate(c, buf, &len, wrapped + NONCE_LEN, (int)n) == 1 &&
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, (void *)(wrapped + NONCE_LEN + n)) == 1;
    int authentic = setup && EVP_DecryptFinal_ex(c, buf + len, &len) == 1;
    EVP_CIPHER_CTX_free(c);
    if (!authentic) {
        plugin_free(buf); /* wipes the unauthenticated plaintext */
        if (!setup)
            return fail(error, KM_ERR_INTERNAL, "AES-GCM decryption failed");
        return fail(error, KM_ERR_CRYPTO, "wrapped key failed to authenticate under KEK \"%.64s\"", k->id);
    }
    *out = buf;
    *out_len = n;
    return KM_OK;
}

/* ------------------------------------------------------------------------
 * The ABI entry points: factory create, the ops table, km_plugin_init.
 * ---------------------------------------------------------------------- */
static int32_t example_create(const char *config_json, size_t config_len, km_manager **mgr, char **error) {
    if (!mgr)
        return fail(error, KM_ERR_INVALID_ARGUMENT, "no output pointer");
    *mgr = NULL;
    if (!config_json)
        return fail(error, KM_ERR_INVALID_ARGUMENT, "config is missing");
    km_manager *m = calloc(1, sizeof *m);
    if (!m)
        return fail(error, KM_ERR_INTERNAL, "out of memory");
    reader r = {config_json, config_json + config_len, {0}};
    if (parse_config(&r, m) < 0) {
        manager_free(m);
        return fail(error, KM_ERR_INVALID_ARGUMENT, "%s", r.error);
    }
    char msg[96];
    snprintf(msg, sizeof msg, MANAGER_NAME ": manager ready with %zu KEK(s)", m->n_keks);
    log_msg(KM_LOG_INFO, NULL, msg);
    *mgr = m;
    return KM_OK;
}

/* Arguments the host must always pass; checked once for both directions. */
static int32_t check_call(km_manager *m, const char *key_id, const void *in, size_t in_len,
                          uint8_t **out, size_t *out_len, char **error, const kek **k) {
    if (!m || !out || !out_len || (!in && in_len))
        return fail(error, KM_ERR_INVALID_ARGUMENT, "missing argument");
    *out = NULL;
    *out_len = 0;
    *k = find_kek(m, key_id);
    if (!*k)
        return fail(error, KM_ERR_NOT_FOUND, "no KEK named \"%.64s\"", key_id);
    return KM_OK;
}

/* These calls are local and take microseconds, so they never approach
 * ctx->timeout_ms. A plugin that does network I/O must bound each wait
 * by the time left and return KM_ERR_DEADLINE_EXCEEDED when it runs out. */
static int32_t example_wrap(km_manager *m, const km_call_ctx *ctx, const char *key_id,
                            const uint8_t *plain, size_t plain_len,
                            uint8_t **out, size_t *out_len, char **error) {
    const kek *k;
    int32_t st = check_call(m, key_id, plain, plain_len, out, out_len, error, &k);
    if (st != KM_OK)
        return st;
    (void)ctx;
    return do_wrap(k, plain, plain_len, out, out_len, error);
}

static int32_t example_unwrap(km_manager *m, const km_call_ctx *ctx, const char *key_id,
                              const uint8_t *wrapped, size_t wrapped_len,
                              uint8_t **out, size_t *out_len, char **error) {
    const kek *k;
    int32_t st = check_call(m, key_id, wrapped, wrapped_len, out, out_len, error, &k);
    if (st != KM_OK)
        return st;
    st = do_unwrap(k, wrapped, wrapped_len, out, out_len, error);
    if (st == KM_ERR_CRYPTO) /* worth an operator's attention; the id is not secret */
        log_msg(KM_LOG_WARN, ctx, MANAGER_NAME ": a wrapped key failed to authenticate");
    return st;
}

/* Health check: prove the default KEK works by a wrap/unwrap round trip. */
static int32_t example_probe(km_manager *m, const km_call_ctx *ctx, char **error) {
    static const uint8_t probe[] = "probe";
    uint8_t *w = NULL, *p = NULL;
    size_t wl = 0, pl = 0;
    int32_t st = example_wrap(m, ctx, "", probe, sizeof probe, &w, &wl, error);
    if (st == KM_OK)
        st = example_unwrap(m, ctx, "", w, wl, &p, &pl, error);
    if (st == KM_OK && (pl != sizeof probe || memcmp(p, probe, pl) != 0))
        st = fail(error, KM_ERR_INTERNAL, "probe round trip returned different bytes");
    plugin_free(w);
    plugin_free(p);
    return st;
}

static void example_destroy(km_manager *m) {
    manager_free(m);
}

static const km_manager_ops example_ops = {
    .struct_size = sizeof(km_manager_ops),
    .wrap = example_wrap,
    .unwrap = example_unwrap,
    .get_public_key = NULL, /* symmetric KEKs have no public key */
    .probe = example_probe,
    .destroy = example_destroy,
};

static const km_factory example_factory = {
    .struct_size = sizeof(km_factory),
    .manager_name = MANAGER_NAME,
    .capabilities = KM_CAP_THREAD_SAFE | KM_CAP_WRAP | KM_CAP_UNWRAP | KM_CAP_PROBE,
    .create = example_create,
    .ops = &example_ops,
};

static const km_factory *const example_factories[] = {&example_factory};

static const km_plugin example_plugin = {
    .struct_size = sizeof(km_plugin),
    .abi_major = KM_ABI_VERSION_MAJOR,
    .abi_minor = KM_ABI_VERSION_MINOR,
    .plugin_name = MANAGER_NAME,
    .plugin_version = "1.0.0",
    .factories = example_factories,
    .factory_count = 1,
    .free = plugin_free,
};

/* The one exported symbol (the build hides everything else with
 * -fvisibility=hidden). */
__attribute__((visibility("default")))
const km_plugin *km_plugin_init(const km_host *host) {
    if (host && host->abi_major != KM_ABI_VERSION_MAJOR)
        return NULL; /* the host speaks another major version: refuse */
    if (host && host->struct_size >= offsetof(km_host, log_ctx) + sizeof host->log_ctx) {
        host_ref = host;
        host_log = host->log;
        host_log_ctx = host->log_ctx;
    }
    return &example_plugin;
}
