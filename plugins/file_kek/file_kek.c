/*
 * file_kek.c -- the file-kek key-manager plugin (reference C plugin).
 *
 * KEKs are AES-256 keys given in the provider config (see kek_config.h).
 * wrap/unwrap use AES-256-GCM; the wrapped format is
 *
 *     nonce (12 random bytes) || ciphertext (len(plain) bytes) || tag (16 bytes)
 *
 * with the resolved key id (the default key's id when key_id is "") as the
 * additional authenticated data, so a blob wrapped under one key id does not
 * unwrap under another even if two ids hold the same key bytes.
 *
 * A manager is immutable after create(): calls share no mutable state, so
 * the factory is flagged thread-safe.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stdio.h>
#include <malloc.h> /* malloc_usable_size: the wipe in plugin_free */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "keymanager.h"
#include "json_scan.h"
#include "kek_config.h"

#define PLUGIN_NAME "file-kek"
#define PLUGIN_VERSION "1.0.0"
#define NONCE_LEN 12
#define TAG_LEN 16
#define OVERHEAD (NONCE_LEN + TAG_LEN)
/* EVP takes int lengths; stay far below that and below GCM's limit. */
#define FK_MAX_INPUT ((size_t)1 << 30)

struct km_manager {
    kek_set keks;
    EVP_CIPHER *cipher; /* fetched once; read-only use is thread-safe */
};

/* The host's logging callback, recorded once by km_plugin_init before any
 * manager exists and never changed afterwards. */
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

static void log_msg(int32_t level, const char *request_id, const char *message)
{
    if (log_enabled(level)) /* (host_log)(...): `log` may be a <tgmath.h> macro (keymanager.h rule 7) */
        (host_log)(host_log_ctx, level, request_id, message);
}

static void log_warning(const char *message)
{
    log_msg(KM_LOG_WARN, NULL, message);
}

/* Sets *error to a malloc'd copy of the formatted message (if error != NULL)
 * and returns status. */
static int32_t fail(char **error, int32_t status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int32_t fail(char **error, int32_t status, const char *fmt, ...)
{
    if (error) {
        char buf[640];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        utf8_trim_partial(buf);
        *error = strdup(buf); /* NULL on OOM: the status still says it all */
    }
    return status;
}

/* Every buffer the host gets back may hold key material (an unwrapped KAS
 * private key): wipe the whole allocation, whatever the host did, before
 * returning it to the allocator. */
static void plugin_free(void *ptr)
{
    if (ptr)
        OPENSSL_cleanse(ptr, malloc_usable_size(ptr));
    free(ptr);
}

/* Resolves key_id; on failure sets *error. */
static const kek *find_kek(const km_manager *mgr, const char *key_id, char **error, int32_t *status)
{
    if (!key_id) {
        *status = fail(error, KM_ERR_INVALID_ARGUMENT, "file-kek: key id is NULL");
        return NULL;
    }
    const kek *k = kek_set_find(&mgr->keks, key_id);
    if (!k) {
        size_t n = strlen(key_id);
        int printable = n <= KEK_ID_MAX;
        for (size_t i = 0; printable && i < n; i++)
            printable = (unsigned char)key_id[i] >= 0x20 && (unsigned char)key_id[i] < 0x7F;
        if (printable)
            *status = fail(error, KM_ERR_NOT_FOUND, "file-kek: no KEK with key id \"%s\"", key_id);
        else
            *status = fail(error, KM_ERR_NOT_FOUND, "file-kek: no KEK with the given key id");
    }
    return k;
}

static int32_t check_io(const uint8_t *in, size_t in_len, uint8_t **out, size_t *out_len, char **error)
{
    if (!out || !out_len)
        return fail(error, KM_ERR_INVALID_ARGUMENT, "file-kek: output pointers are NULL");
    if (!in && in_len > 0)
        return fail(error, KM_ERR_INVALID_ARGUMENT, "file-kek: input is NULL");
    if (in_len > FK_MAX_INPUT + OVERHEAD)
        return fail(error, KM_ERR_INVALID_ARGUMENT, "file-kek: input larger than 1 GiB");
    return KM_OK;
}

static int32_t fk_wrap(km_manager *mgr, const km_call_ctx *ctx, const char *key_id,
                       const uint8_t *plain, size_t plain_len,
                       uint8_t **out, size_t *out_len, char **error)
{
    (void)ctx;
    int32_t status = check_io(plain, plain_len, out, out_len, error);
    if (status != KM_OK)
        return status;
    if (plain_len > FK_MAX_INPUT)
        return fail(error, KM_ERR_INVALID_ARGUMENT, "file-kek: input larger than 1 GiB");
    const kek *k = find_kek(mgr, key_id, error, &status);
    if (!k)
        return status;

    size_t total = NONCE_LEN + plain_len + TAG_LEN;
    uint8_t *buf = malloc(total);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int len = 0, ok = buf && c;
    ok = ok && RAND_bytes(buf, NONCE_LEN) == 1;
    ok = ok && EVP_EncryptInit_ex2(c, mgr->cipher, k->key, buf, NULL) == 1;
    ok = ok && EVP_EncryptUpdate(c, NULL, &len, (const unsigned char *)k->id, (int)k->id_len) == 1;
    ok = ok && (plain_len == 0
                || EVP_EncryptUpdate(c, buf + NONCE_LEN, &len, plain, (int)plain_len) == 1);
    ok = ok && EVP_EncryptFinal_ex(c, buf + NONCE_LEN + plain_len, &len) == 1;
    ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, buf + NONCE_LEN + plain_len) == 1;
    EVP_CIPHER_CTX_free(c); /* clears the key schedule */
    if (!ok) {
        free(buf); /* holds no plaintext: ciphertext at most */
        return fail(error, KM_ERR_INTERNAL, "file-kek: AES-256-GCM encryption failed");
    }
    *out = buf;
    *out_len = total;
    return KM_OK;
}

static int32_t fk_unwrap(km_manager *mgr, const km_call_ctx *ctx, const char *key_id,
                         const uint8_t *wrapped, size_t wrapped_len,
                         uint8_t **out, size_t *out_len, char **error)
{
    (void)ctx;
    int32_t status = check_io(wrapped, wrapped_len, out, out_len, error);
    if (status != KM_OK)
        return status;
    const kek *k = find_kek(mgr, key_id, error, &status);
    if (!k)
        return status;
    if (wrapped_len < OVERHEAD)
        return fail(error, KM_ERR_CRYPTO, "file-kek: wrapped key is %zu bytes, shorter than nonce and tag (%d)",
                    wrapped_len, OVERHEAD);

    size_t plain_len = wrapped_len - OVERHEAD;
    uint8_t *plain = malloc(plain_len ? plain_len : 1);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int len = 0, ok = plain && c, authentic = 0;
    ok = ok && EVP_DecryptInit_ex2(c, mgr->cipher, k->key, wrapped, NULL) == 1;
    ok = ok && EVP_DecryptUpdate(c, NULL, &len, (const unsigned char *)k->id, (int)k->id_len) == 1;
    ok = ok && (plain_len == 0
                || EVP_DecryptUpdate(c, plain, &len, wrapped + NONCE_LEN, (int)plain_len) == 1);
    ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN,
                                   (void *)(wrapped + NONCE_LEN + plain_len)) == 1;
    if (ok)
        authentic = EVP_DecryptFinal_ex(c, plain + plain_len, &len) == 1;
    EVP_CIPHER_CTX_free(c);
    if (!ok || !authentic) {
        if (plain)
            OPENSSL_clear_free(plain, plain_len ? plain_len : 1);
        if (!ok)
            return fail(error, KM_ERR_INTERNAL, "file-kek: AES-256-GCM decryption failed");
        return fail(error, KM_ERR_CRYPTO,
                    "file-kek: wrapped key failed authentication (tampered, or wrapped under another key id)");
    }
    *out = plain;
    *out_len = plain_len;
    return KM_OK;
}

static int32_t fk_probe(km_manager *mgr, const km_call_ctx *ctx, char **error)
{
    uint8_t sample[32], *wrapped = NULL, *back = NULL;
    size_t wrapped_len = 0, back_len = 0;
    if (RAND_bytes(sample, sizeof sample) != 1)
        return fail(error, KM_ERR_INTERNAL, "file-kek: probe could not draw random bytes");
    int32_t status = fk_wrap(mgr, ctx, "", sample, sizeof sample, &wrapped, &wrapped_len, error);
    if (status == KM_OK)
        status = fk_unwrap(mgr, ctx, "", wrapped, wrapped_len, &back, &back_len, error);
    if (status == KM_OK && (back_len != sizeof sample || CRYPTO_memcmp(back, sample, sizeof sample) != 0))
        status = fail(error, KM_ERR_INTERNAL, "file-kek: probe round trip returned different bytes");
    free(wrapped);
    if (back)
        OPENSSL_clear_free(back, back_len ? back_len : 1);
    OPENSSL_cleanse(sample, sizeof sample);
    return status;
}

static void fk_destroy(km_manager *mgr)
{
    if (!mgr)
        return;
    kek_set_clear(&mgr->keks);
    EVP_CIPHER_free(mgr->cipher);
    OPENSSL_clear_free(mgr, sizeof *mgr);
}

static int32_t fk_create(const char *config_json, size_t config_len, km_manager **out, char **error)
{
    if (!out)
        return fail(error, KM_ERR_INVALID_ARGUMENT, "file-kek: manager output pointer is NULL");
    *out = NULL;
    km_manager *mgr = calloc(1, sizeof *mgr);
    if (!mgr)
        return fail(error, KM_ERR_INTERNAL, "file-kek: out of memory");
    char reason[512];
    if (kek_set_parse(config_json, config_len, &mgr->keks, reason, sizeof reason, log_warning) < 0) {
        free(mgr);
        return fail(error, KM_ERR_INVALID_ARGUMENT, "%s", reason);
    }
    mgr->cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    if (!mgr->cipher) {
        fk_destroy(mgr);
        return fail(error, KM_ERR_INTERNAL, "file-kek: OpenSSL has no AES-256-GCM");
    }
    char msg[256];
    snprintf(msg, sizeof msg, "file-kek: manager ready with %zu KEK(s), default key id \"%s\"",
             mgr->keks.count, mgr->keks.default_kek->id);
    log_msg(KM_LOG_INFO, NULL, msg);
    *out = mgr;
    return KM_OK;
}

static const km_manager_ops file_kek_ops = {
    .struct_size = sizeof(km_manager_ops),
    .wrap = fk_wrap,
    .unwrap = fk_unwrap,
    .get_public_key = NULL, /* symmetric KEKs have no public key */
    .probe = fk_probe,
    .destroy = fk_destroy,
};

static const km_factory file_kek_factory = {
    .struct_size = sizeof(km_factory),
    .manager_name = "file-kek",
    .capabilities = KM_CAP_THREAD_SAFE | KM_CAP_WRAP | KM_CAP_UNWRAP | KM_CAP_PROBE,
    .create = fk_create,
    .ops = &file_kek_ops,
};

static const km_factory *const file_kek_factories[] = {&file_kek_factory};

static const km_plugin file_kek_plugin = {
    .struct_size = sizeof(km_plugin),
    .abi_major = KM_ABI_VERSION_MAJOR,
    .abi_minor = KM_ABI_VERSION_MINOR,
    .plugin_name = PLUGIN_NAME,
    .plugin_version = PLUGIN_VERSION,
    .factories = file_kek_factories,
    .factory_count = 1,
    .free = plugin_free,
};

__attribute__((visibility("default")))
const km_plugin *km_plugin_init(const km_host *host)
{
    if (host && host->abi_major != KM_ABI_VERSION_MAJOR)
        return NULL; /* the host speaks another major version */
    if (host && host->struct_size >= offsetof(km_host, log_ctx) + sizeof host->log_ctx) {
        host_ref = host;
        host_log = host->log;
        host_log_ctx = host->log_ctx;
    }
    return &file_kek_plugin;
}
