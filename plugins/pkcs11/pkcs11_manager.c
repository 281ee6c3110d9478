/* pkcs11_manager.c -- the "pkcs11" key manager: keys that live in an HSM.
 *
 * Provider mode: an AES key on the token encrypts (wrap) and decrypts
 * (unwrap) KAS private keys with AES-GCM (output iv[12] || ciphertext ||
 * tag[16]), or AES key wrap with padding (RFC 5649) on tokens without GCM.
 * Remote mode: an RSA key pair on the token; get_public_key exports the
 * public half as PEM and unwrap decrypts a client's RSA-OAEP(SHA-1) wrapped
 * DEK on the token; with an EC key pair, unwrap takes the client's
 * ephemeral public key and returns the ECDH shared secret (ecdh.c). The
 * operation follows the key object's type, so one manager serves every kind
 * of key.
 *
 * Module loading/login sharing is in module.c, the session pool in pool.c,
 * key lookup in keycache.c, config parsing in config.c, ECDH in ecdh.c.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <malloc.h> /* malloc_usable_size: the wipe in plugin_free */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "ckr.h"
#include "config.h"
#include "ecdh.h"
#include "keycache.h"
#include "keymanager.h"
#include "module.h"
#include "pool.h"
#include "pubkey.h"

#define EXPORT __attribute__((visibility("default")))

#define GCM_IV_LEN 12
#define GCM_TAG_LEN 16
#define MSG_LEN 320

/* The host's logger, copied at init (function pointer and context only),
 * and the host itself (valid until unload) for its minor and log level. */
static km_log_fn host_log;
static void *host_log_ctx;
static const km_host *host_ref;

int32_t km_status_wrong_key_kind(void)
{
    return host_ref && host_ref->abi_minor >= 1 ? KM_ERR_FAILED_PRECONDITION : KM_ERR_INVALID_ARGUMENT;
}

static int log_enabled(int32_t level)
{
    if (!host_log)
        return 0;
    if (host_ref && host_ref->struct_size >= offsetof(km_host, log_level) + sizeof host_ref->log_level)
        return level >= host_ref->log_level; /* read per line: the host may change it */
    return 1;
}

/* *error must be valid UTF-8 (keymanager.h rule 3); messages quote labels
 * and config bytes and may be cut mid-character: '?' for every byte that is
 * not part of a well-formed sequence. */
static void utf8_sanitize(char *s)
{
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

/* Set in a create_ex thread: it may outlive the call it serves, and the host
 * takes log lines only while a call is in progress (keymanager.h). */
static __thread int quiet;

static void log_msg(int32_t level, const km_call_ctx *ctx, const char *fmt, ...)
{
    if (quiet || !log_enabled(level))
        return;
    char buf[MSG_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    const char *rid = ctx && ctx->struct_size >= offsetof(km_call_ctx, request_id) + sizeof(char *)
                          ? ctx->request_id : NULL;
    utf8_sanitize(buf);
    (host_log)(host_log_ctx, level, rid, buf);
}

enum aes_mode { AES_NONE, AES_GCM, AES_KWP };

struct km_manager {
    p11_config cfg;
    p11_module *mod;
    CK_FUNCTION_LIST_PTR f;
    p11_pool pool;
    keycache keys;
    enum aes_mode aes;
    char token_desc[64]; /* "token 'kas'" or "slot 7": for messages */
};

/* The result of one attempt: a KM status and, unless KM_OK, a message. */
typedef struct outcome {
    int status;
    char msg[MSG_LEN];
} outcome;

static int set_error(char **error, int status, const char *fmt, ...)
{
    if (!error)
        return status;
    char buf[MSG_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    utf8_sanitize(buf);
    *error = strdup(buf);
    return status;
}

/* Describes a failed PKCS#11 call in o. */
static void fail_ckr(km_manager *m, outcome *o, const char *call, const char *label, CK_RV rv)
{
    if (rv == P11_RV_DEADLINE) {
        o->status = KM_ERR_DEADLINE_EXCEEDED;
        snprintf(o->msg, sizeof o->msg, "pkcs11: deadline passed waiting for a free session on %s",
                 m->token_desc);
    } else if (rv == P11_RV_NO_TOKEN) {
        o->status = KM_ERR_UNAVAILABLE;
        snprintf(o->msg, sizeof o->msg, "pkcs11: %s is not present", m->token_desc);
    } else if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED || rv == CKR_PIN_EXPIRED ||
               rv == CKR_PIN_INVALID || rv == CKR_PIN_LEN_RANGE) {
        o->status = KM_ERR_PERMISSION_DENIED;
        snprintf(o->msg, sizeof o->msg, "pkcs11: %s refused the user PIN (%s)", m->token_desc,
                 ckr_name(rv));
    } else {
        o->status = ckr_status(rv);
        snprintf(o->msg, sizeof o->msg, "pkcs11: %s%s%s%s on %s failed: %s", call,
                 label ? " with key '" : "", label ? label : "", label ? "'" : "",
                 m->token_desc, ckr_name(rv));
    }
}

/* No session could be had: the token is unreachable unless the PIN or the
 * deadline is to blame. */
static void session_failed(km_manager *m, outcome *o, CK_RV rv)
{
    fail_ckr(m, o, "C_OpenSession", NULL, rv);
    if (o->status == KM_ERR_INTERNAL && rv != CKR_HOST_MEMORY)
        o->status = KM_ERR_UNAVAILABLE;
}

static void deadline_from(const km_call_ctx *ctx, struct timespec *ts, int *has)
{
    *has = 0;
    if (!ctx || ctx->struct_size < offsetof(km_call_ctx, timeout_ms) + sizeof(uint32_t) ||
        ctx->timeout_ms == 0)
        return;
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ctx->timeout_ms / 1000;
    ts->tv_nsec += (long)(ctx->timeout_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
    *has = 1;
}

static int deadline_passed(const struct timespec *ts)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > ts->tv_sec || (now.tv_sec == ts->tv_sec && now.tv_nsec >= ts->tv_nsec);
}

/* ---- The operations, each on one borrowed session ---------------------- */

/* Inputs and outputs of one operation. */
typedef struct op_io {
    const uint8_t *in;
    size_t in_len;
    uint8_t *out;
    size_t out_len;
} op_io;

typedef CK_RV (*op_fn)(km_manager *m, CK_SESSION_HANDLE s, const char *label,
                       const key_ref *k, op_io *io, outcome *o);

/* Frees an output buffer that may hold key material. */
static void free_secret(uint8_t *p, size_t cap)
{
    if (p) {
        OPENSSL_cleanse(p, cap);
        free(p);
    }
}

static CK_RV op_wrap(km_manager *m, CK_SESSION_HANDLE s, const char *label,
                     const key_ref *k, op_io *io, outcome *o)
{
    CK_FUNCTION_LIST_PTR f = m->f;
    if (m->aes == AES_NONE) {
        o->status = KM_ERR_UNIMPLEMENTED;
        snprintf(o->msg, sizeof o->msg, "pkcs11: %s offers neither AES-GCM nor AES key wrap "
                 "with padding for encrypt/decrypt", m->token_desc);
        return CKR_OK;
    }
    uint8_t iv[GCM_IV_LEN];
    CK_GCM_PARAMS gcm = {iv, sizeof iv, sizeof iv * 8, NULL, 0, GCM_TAG_LEN * 8};
    CK_MECHANISM mech = {CKM_AES_GCM, &gcm, sizeof gcm};
    size_t prefix = GCM_IV_LEN;
    CK_ULONG cap = io->in_len + GCM_TAG_LEN;
    if (m->aes == AES_KWP) {
        mech = (CK_MECHANISM){CKM_AES_KEY_WRAP_PAD, NULL, 0};
        prefix = 0;
        cap = (io->in_len + 7) / 8 * 8 + 8;
    } else if (RAND_bytes(iv, sizeof iv) != 1) {
        o->status = KM_ERR_INTERNAL;
        snprintf(o->msg, sizeof o->msg, "pkcs11: no randomness for the AES-GCM IV");
        return CKR_OK;
    }
    CK_RV rv = f->C_EncryptInit(s, &mech, k->handle);
    if (rv != CKR_OK) {
        fail_ckr(m, o, "C_EncryptInit", label, rv);
        return rv;
    }
    uint8_t *out = malloc(prefix + cap);
    if (!out) {
        /* Finish the active operation before the session goes back. */
        f->C_EncryptInit(s, NULL, k->handle);
        o->status = KM_ERR_INTERNAL;
        snprintf(o->msg, sizeof o->msg, "pkcs11: out of memory");
        return CKR_HOST_MEMORY;
    }
    memcpy(out, iv, prefix);
    CK_ULONG n = cap;
    rv = f->C_Encrypt(s, (CK_BYTE_PTR)io->in, io->in_len, out + prefix, &n);
    if (rv != CKR_OK) {
        free(out);
        fail_ckr(m, o, "C_Encrypt", label, rv);
        return rv;
    }
    io->out = out;
    io->out_len = prefix + n;
    return CKR_OK;
}

/* EC key, remote mode: io->in is the client's ephemeral public key (DER
 * SPKI); the output is the raw ECDH shared secret. */
static CK_RV op_ecdh(km_manager *m, CK_SESSION_HANDLE s, const char *label,
                     const key_ref *k, op_io *io, outcome *o)
{
    const char *call = "C_DeriveKey";
    CK_RV rv = ecdh_unwrap(m->f, s, k->handle, label, io->in, io->in_len, &io->out, &io->out_len,
                           &call, &o->status, o->msg, sizeof o->msg);
    if (rv != CKR_OK)
        fail_ckr(m, o, call, label, rv);
    return rv;
}

static CK_RV op_unwrap(km_manager *m, CK_SESSION_HANDLE s, const char *label,
                       const key_ref *k, op_io *io, outcome *o)
{
    CK_FUNCTION_LIST_PTR f = m->f;
    if (k->type == CKK_EC)
        return op_ecdh(m, s, label, k, io, o);
    CK_RSA_PKCS_OAEP_PARAMS oaep = {CKM_SHA_1, CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED, NULL, 0};
    CK_GCM_PARAMS gcm;
    CK_MECHANISM mech;
    const uint8_t *ct = io->in;
    size_t ct_len = io->in_len;

    if (k->type == CKK_RSA) {
        /* A client wrapped a DEK to this key's public half: RSA-OAEP,
         * SHA-1, MGF1-SHA-1, no label (what TDF clients produce). */
        mech = (CK_MECHANISM){CKM_RSA_PKCS_OAEP, &oaep, sizeof oaep};
        if (k->modulus_len && io->in_len != k->modulus_len) {
            o->status = KM_ERR_CRYPTO;
            snprintf(o->msg, sizeof o->msg, "pkcs11: wrapped data is %zu bytes; an RSA-OAEP "
                     "ciphertext for key '%.64s' is %lu bytes", io->in_len, label,
                     (unsigned long)k->modulus_len);
            return CKR_OK;
        }
    } else if (m->aes == AES_GCM) {
        if (io->in_len < GCM_IV_LEN + GCM_TAG_LEN) {
            o->status = KM_ERR_CRYPTO;
            snprintf(o->msg, sizeof o->msg, "pkcs11: wrapped data (%zu bytes) is shorter than "
                     "an AES-GCM IV and tag", io->in_len);
            return CKR_OK;
        }
        gcm = (CK_GCM_PARAMS){(CK_BYTE_PTR)io->in, GCM_IV_LEN, GCM_IV_LEN * 8, NULL, 0,
                              GCM_TAG_LEN * 8};
        mech = (CK_MECHANISM){CKM_AES_GCM, &gcm, sizeof gcm};
        ct += GCM_IV_LEN;
        ct_len -= GCM_IV_LEN;
    } else if (m->aes == AES_KWP) {
        if (io->in_len < 16 || io->in_len % 8 != 0) {
            o->status = KM_ERR_CRYPTO;
            snprintf(o->msg, sizeof o->msg, "pkcs11: wrapped data (%zu bytes) is not AES key "
                     "wrap output", io->in_len);
            return CKR_OK;
        }
        mech = (CK_MECHANISM){CKM_AES_KEY_WRAP_PAD, NULL, 0};
    } else {
        return op_wrap(m, s, label, k, io, o); /* reports AES_NONE */
    }
    if (ct_len == 0) {
        o->status = KM_ERR_CRYPTO;
        snprintf(o->msg, sizeof o->msg, "pkcs11: wrapped data is empty");
        return CKR_OK;
    }
    CK_RV rv = f->C_DecryptInit(s, &mech, k->handle);
    if (rv != CKR_OK) {
        fail_ckr(m, o, "C_DecryptInit", label, rv);
        return rv;
    }
    /* Plaintext is never longer than the ciphertext (RSA: the modulus). */
    size_t cap = ct_len > k->modulus_len ? ct_len : k->modulus_len;
    uint8_t *out = malloc(cap);
    if (!out) {
        f->C_DecryptInit(s, NULL, k->handle);
        o->status = KM_ERR_INTERNAL;
        snprintf(o->msg, sizeof o->msg, "pkcs11: out of memory");
        return CKR_HOST_MEMORY;
    }
    CK_ULONG n = cap;
    rv = f->C_Decrypt(s, (CK_BYTE_PTR)ct, ct_len, out, &n);
    if (rv != CKR_OK) {
        free_secret(out, cap);
        fail_ckr(m, o, "C_Decrypt", label, rv);
        /* DecryptInit accepted key and mechanism, so a failure here is the
         * data's: a bad GCM tag or OAEP padding. SoftHSM2 reports those as
         * CKR_GENERAL_ERROR/CKR_FUNCTION_FAILED rather than
         * CKR_ENCRYPTED_DATA_INVALID. */
        if (rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE ||
            rv == CKR_DATA_INVALID || rv == CKR_DATA_LEN_RANGE || rv == CKR_GENERAL_ERROR ||
            rv == CKR_FUNCTION_FAILED) {
            o->status = KM_ERR_CRYPTO;
            snprintf(o->msg, sizeof o->msg, "pkcs11: wrapped data does not decrypt under key "
                     "'%.64s' (tampered, truncated or another key's; %s)", label, ckr_name(rv));
        }
        return rv;
    }
    io->out = out;
    io->out_len = n;
    return CKR_OK;
}

/* Reads attributes whose sizes are unknown: sizes first, then values. */
static CK_RV get_attrs(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
                       CK_ATTRIBUTE *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        a[i].pValue = NULL;
    CK_RV rv = f->C_GetAttributeValue(s, h, a, n);
    if (rv != CKR_OK)
        return rv;
    for (size_t i = 0; i < n; i++) {
        if (a[i].ulValueLen == CK_UNAVAILABLE_INFORMATION || a[i].ulValueLen > 16384)
            return CKR_ATTRIBUTE_TYPE_INVALID;
        a[i].pValue = malloc(a[i].ulValueLen ? a[i].ulValueLen : 1);
        if (!a[i].pValue)
            return CKR_HOST_MEMORY;
    }
    return f->C_GetAttributeValue(s, h, a, n);
}

static CK_RV op_public_key(km_manager *m, CK_SESSION_HANDLE s, const char *label,
                           const key_ref *k, op_io *io, outcome *o)
{
    CK_ATTRIBUTE a[2];
    int ec = k->type == CKK_EC;
    a[0].type = ec ? CKA_EC_PARAMS : CKA_MODULUS;
    a[1].type = ec ? CKA_EC_POINT : CKA_PUBLIC_EXPONENT;
    CK_RV rv = get_attrs(m->f, s, k->handle, a, 2);
    if (rv != CKR_OK) {
        fail_ckr(m, o, "C_GetAttributeValue", label, rv);
    } else {
        char *pem = NULL;
        size_t pem_len = 0;
        int bad = ec ? p11_ec_public_pem(a[0].pValue, a[0].ulValueLen, a[1].pValue,
                                         a[1].ulValueLen, &pem, &pem_len)
                     : p11_rsa_public_pem(a[0].pValue, a[0].ulValueLen, a[1].pValue,
                                          a[1].ulValueLen, &pem, &pem_len);
        if (bad) {
            o->status = KM_ERR_INTERNAL;
            snprintf(o->msg, sizeof o->msg, "pkcs11: cannot encode the public key of '%.64s' "
                     "(unsupported curve or malformed attributes)", label);
        } else {
            io->out = (uint8_t *)pem;
            io->out_len = pem_len;
        }
    }
    free(a[0].pValue);
    free(a[1].pValue);
    return rv;
}

/* Runs op on key `label`: borrows a session, finds the key (cached), and
 * retries once when the session/login was lost or a cached handle went
 * stale. Returns a KM status; fills io->out or *error. */
static int run(km_manager *m, const km_call_ctx *ctx, const char *key_id, enum key_use use,
               op_fn op, op_io *io, char **error)
{
    const char *label = key_id && *key_id ? key_id : m->cfg.key_label;
    if (!label)
        return set_error(error, KM_ERR_INVALID_ARGUMENT,
                         "pkcs11: no key id given and the config names no key_label");
    struct timespec deadline;
    int has_deadline;
    deadline_from(ctx, &deadline, &has_deadline);

    outcome o;
    for (int attempt = 0;; attempt++) {
        o.status = KM_OK;
        o.msg[0] = '\0';
        if (has_deadline && deadline_passed(&deadline)) {
            o.status = KM_ERR_DEADLINE_EXCEEDED;
            snprintf(o.msg, sizeof o.msg, "pkcs11: deadline exceeded");
            break;
        }
        p11_lease lease;
        CK_RV rv = p11_pool_acquire(&m->pool, has_deadline ? &deadline : NULL, &lease);
        if (rv != CKR_OK) {
            session_failed(m, &o, rv);
            break;
        }
        key_ref k;
        unsigned long gen = lease.generation;
        if (!keycache_get(&m->keys, gen, label, use, &k)) {
            rv = key_find(m->f, lease.session, label, use, m->token_desc, &k, &o.status, o.msg,
                          sizeof o.msg);
            if (rv != CKR_OK)
                fail_ckr(m, &o, "C_FindObjects", label, rv);
            else if (o.status == KM_OK)
                keycache_put(&m->keys, gen, label, use, &k);
        }
        if (rv == CKR_OK && o.status == KM_OK)
            rv = op(m, lease.session, label, &k, io, &o);
        p11_pool_release(&m->pool, &lease, rv);
        if (rv == CKR_OK || attempt > 0)
            break;
        if (ckr_is_handle_stale(rv)) {
            keycache_clear(&m->keys);
            continue;
        }
        if (ckr_is_session_lost(rv)) {
            log_msg(KM_LOG_WARN, ctx, "pkcs11: %s: %s; reopening sessions and retrying once",
                    m->token_desc, ckr_name(rv));
            continue;
        }
        break;
    }
    if (o.status != KM_OK)
        return set_error(error, o.status, "%s", o.msg);
    return KM_OK;
}

/* ---- ABI entry points ---------------------------------------------------- */

static int32_t mgr_wrap(km_manager *m, const km_call_ctx *ctx, const char *key_id,
                        const uint8_t *plain, size_t plain_len,
                        uint8_t **out, size_t *out_len, char **error)
{
    op_io io = {plain, plain_len, NULL, 0};
    int status = run(m, ctx, key_id, USE_WRAP, op_wrap, &io, error);
    if (status == KM_OK) {
        *out = io.out;
        *out_len = io.out_len;
    }
    return status;
}

static int32_t mgr_unwrap(km_manager *m, const km_call_ctx *ctx, const char *key_id,
                          const uint8_t *wrapped, size_t wrapped_len,
                          uint8_t **out, size_t *out_len, char **error)
{
    op_io io = {wrapped, wrapped_len, NULL, 0};
    int status = run(m, ctx, key_id, USE_UNWRAP, op_unwrap, &io, error);
    if (status == KM_OK) {
        *out = io.out;
        *out_len = io.out_len;
    }
    return status;
}

static int32_t mgr_public_key(km_manager *m, const km_call_ctx *ctx, const char *key_id,
                              uint8_t **out, size_t *out_len, char **error)
{
    op_io io = {NULL, 0, NULL, 0};
    int status = run(m, ctx, key_id, USE_PUBLIC, op_public_key, &io, error);
    if (status == KM_OK) {
        *out = io.out;
        *out_len = io.out_len;
    }
    return status;
}

static CK_RV op_probe(km_manager *m, CK_SESSION_HANDLE s, const char *label,
                      const key_ref *k, op_io *io, outcome *o)
{
    (void)m; (void)s; (void)label; (void)k; (void)io; (void)o;
    return CKR_OK; /* session, login and key lookup already happened */
}

static int32_t mgr_probe(km_manager *m, const km_call_ctx *ctx, char **error)
{
    if (!m->cfg.key_label) {
        /* No default key: a logged-in session is the whole check. */
        struct timespec deadline;
        int has_deadline;
        p11_lease lease;
        outcome o = {KM_OK, ""};
        deadline_from(ctx, &deadline, &has_deadline);
        CK_RV rv = p11_pool_acquire(&m->pool, has_deadline ? &deadline : NULL, &lease);
        if (rv != CKR_OK) {
            session_failed(m, &o, rv);
            return set_error(error, o.status, "%s", o.msg);
        }
        p11_pool_release(&m->pool, &lease, CKR_OK);
        return KM_OK;
    }
    op_io io = {NULL, 0, NULL, 0};
    return run(m, ctx, "", USE_ANY, op_probe, &io, error);
}

static void mgr_destroy(km_manager *m)
{
    if (!m)
        return;
    p11_pool_destroy(&m->pool);
    keycache_destroy(&m->keys);
    p11_module_release(m->mod);
    p11_config_free(&m->cfg); /* cleanses the PIN */
    free(m);
}

static int mechanism_can(CK_FUNCTION_LIST_PTR f, CK_SLOT_ID slot, CK_MECHANISM_TYPE t)
{
    CK_MECHANISM_INFO info;
    return f->C_GetMechanismInfo(slot, t, &info) == CKR_OK &&
           (info.flags & (CKF_ENCRYPT | CKF_DECRYPT)) == (CKF_ENCRYPT | CKF_DECRYPT);
}

/* Builds a manager: parse, load the module, find the token, log in, probe. */
static int32_t build_manager(const char *config_json, size_t config_len, km_manager **out,
                             char **error)
{
    char msg[MSG_LEN];
    *out = NULL;
    km_manager *m = calloc(1, sizeof *m);
    if (!m)
        return set_error(error, KM_ERR_INTERNAL, "pkcs11: out of memory");
    int status = p11_config_parse(config_json, config_len, &m->cfg, msg, sizeof msg);
    if (status != KM_OK) {
        free(m);
        return set_error(error, status, "%s", msg);
    }
    keycache_init(&m->keys);
    status = p11_module_acquire(m->cfg.module, &m->mod, msg, sizeof msg);
    if (status != KM_OK) {
        keycache_destroy(&m->keys);
        p11_config_free(&m->cfg);
        free(m);
        return set_error(error, status, "%s", msg);
    }
    m->f = p11_module_functions(m->mod);
    if (m->cfg.token_label)
        snprintf(m->token_desc, sizeof m->token_desc, "token '%s'", m->cfg.token_label);
    else
        snprintf(m->token_desc, sizeof m->token_desc, "slot %lu", m->cfg.slot_id);

    CK_SLOT_ID slot = m->cfg.slot_id;
    CK_RV rv = p11_find_token(m->f, m->cfg.token_label, &slot, 0);
    if (rv != CKR_OK) {
        if (rv == P11_RV_NO_TOKEN)
            status = set_error(error, KM_ERR_NOT_FOUND, "pkcs11: no %s%s in module %s",
                               m->cfg.token_label ? "initialized " : "token in ", m->token_desc,
                               m->cfg.module);
        else
            status = set_error(error, ckr_status(rv), "pkcs11: looking for %s failed: %s",
                               m->token_desc, ckr_name(rv));
        goto fail_pool;
    }
    if (p11_pool_init(&m->pool, m->mod, slot, m->cfg.token_label, m->cfg.pin, m->cfg.pin_len,
                      m->cfg.max_sessions) < 0) {
        status = set_error(error, KM_ERR_INTERNAL, "pkcs11: out of memory");
        goto fail_pool;
    }

    int gcm = mechanism_can(m->f, slot, CKM_AES_GCM);
    int kwp = mechanism_can(m->f, slot, CKM_AES_KEY_WRAP_PAD);
    switch (m->cfg.aes_mech) {
    case P11_AES_AUTO: m->aes = gcm ? AES_GCM : kwp ? AES_KWP : AES_NONE; break;
    case P11_AES_GCM: m->aes = gcm ? AES_GCM : AES_NONE; break;
    case P11_AES_KWP: m->aes = kwp ? AES_KWP : AES_NONE; break;
    }
    if (m->aes == AES_NONE && m->cfg.aes_mech != P11_AES_AUTO) {
        status = set_error(error, KM_ERR_INVALID_ARGUMENT,
                           "pkcs11: aes_mechanism %s: %s does not offer %s for encrypt/decrypt",
                           m->cfg.aes_mech == P11_AES_GCM ? "gcm" : "kwp", m->token_desc,
                           m->cfg.aes_mech == P11_AES_GCM ? "CKM_AES_GCM" : "CKM_AES_KEY_WRAP_PAD");
        goto fail;
    }

    /* Log in now and check the default key, so bad config fails here. */
    char *probe_error = NULL;
    status = mgr_probe(m, NULL, &probe_error);
    if (status != KM_OK) {
        if (error)
            *error = probe_error;
        else
            free(probe_error);
        goto fail;
    }
    *out = m;
    return KM_OK;

fail:
    mgr_destroy(m);
    return status;
fail_pool:
    keycache_destroy(&m->keys);
    p11_module_release(m->mod);
    p11_config_free(&m->cfg);
    free(m);
    return status;
}

/* Logged by create's caller, never by a create_ex thread (it may outlive its call). */
static int32_t log_ready(km_manager *m, int32_t status)
{
    if (status == KM_OK)
        log_msg(KM_LOG_INFO, NULL, "pkcs11: %s (slot %lu) ready via %s, AES mode %s, %u sessions max",
                m->token_desc, (unsigned long)p11_pool_slot(&m->pool), m->cfg.module,
                m->aes == AES_GCM ? "GCM" : m->aes == AES_KWP ? "KWP" : "unavailable",
                m->cfg.max_sessions);
    return status;
}

static int32_t mgr_create(const char *config_json, size_t config_len, km_manager **out,
                          char **error)
{
    int32_t status = build_manager(config_json, config_len, out, error);
    return log_ready(*out, status);
}

/* ---- create_ex: create within a deadline ---------------------------------
 * No PKCS#11 call can be interrupted, and create loads the module, finds the
 * token and logs in: against a remote HSM each can block. So with a deadline
 * the work runs in its own thread; when the deadline comes first the caller
 * answers DEADLINE_EXCEEDED and abandons the job, and the thread, once the
 * module answers, destroys what it built. */
typedef struct create_job {
    pthread_mutex_t lock;
    pthread_cond_t done_cv;
    int done, abandoned;
    char *config; /* a copy: the host's buffer is valid only during the call */
    size_t config_len;
    km_manager *mgr;
    int32_t status;
    char *error;
} create_job;

static void job_free(create_job *j)
{
    OPENSSL_cleanse(j->config, j->config_len); /* the config may hold the PIN */
    free(j->config);
    pthread_cond_destroy(&j->done_cv);
    pthread_mutex_destroy(&j->lock);
    free(j);
}

static void *create_thread(void *arg)
{
    create_job *j = arg;
    quiet = 1;
    km_manager *m = NULL;
    char *err = NULL;
    int32_t st = build_manager(j->config, j->config_len, &m, &err);
    pthread_mutex_lock(&j->lock);
    int abandoned = j->abandoned;
    j->mgr = m;
    j->status = st;
    j->error = err;
    j->done = 1;
    pthread_cond_signal(&j->done_cv);
    pthread_mutex_unlock(&j->lock);
    if (abandoned) {
        mgr_destroy(m);
        free(err);
        job_free(j);
    }
    return NULL;
}

static int32_t mgr_create_ex(const km_call_ctx *ctx, const char *config_json, size_t config_len,
                             km_manager **out, char **error)
{
    struct timespec deadline;
    int has_deadline;
    deadline_from(ctx, &deadline, &has_deadline);
    if (!has_deadline)
        return mgr_create(config_json, config_len, out, error);
    *out = NULL;
    create_job *j = calloc(1, sizeof *j);
    if (!j || !(j->config = malloc(config_len ? config_len : 1))) {
        free(j);
        return set_error(error, KM_ERR_INTERNAL, "pkcs11: out of memory");
    }
    memcpy(j->config, config_json, config_len);
    j->config_len = config_len;
    pthread_mutex_init(&j->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* deadline_from's clock */
    pthread_cond_init(&j->done_cv, &attr);
    pthread_condattr_destroy(&attr);
    pthread_t t;
    if (pthread_create(&t, NULL, create_thread, j) != 0) {
        job_free(j);
        return set_error(error, KM_ERR_UNAVAILABLE, "pkcs11: cannot start a thread for create");
    }
    pthread_mutex_lock(&j->lock);
    int rc = 0;
    while (!j->done && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&j->done_cv, &j->lock, &deadline);
    if (!j->done) {
        j->abandoned = 1; /* the thread cleans up when the module answers */
        pthread_mutex_unlock(&j->lock);
        pthread_detach(t);
        return set_error(error, KM_ERR_DEADLINE_EXCEEDED,
                         "pkcs11: create did not finish within %u ms (module load, token lookup or "
                         "login still running)", ctx->timeout_ms);
    }
    pthread_mutex_unlock(&j->lock);
    pthread_join(t, NULL); /* joined, not detached: no thread of ours runs after we return */
    int32_t st = j->status;
    *out = j->mgr;
    if (error)
        *error = j->error;
    else
        free(j->error);
    job_free(j);
    return log_ready(*out, st);
}

static const km_manager_ops pkcs11_ops = {
    .struct_size = sizeof(km_manager_ops),
    .wrap = mgr_wrap,
    .unwrap = mgr_unwrap,
    .get_public_key = mgr_public_key,
    .probe = mgr_probe,
    .destroy = mgr_destroy,
};

static const km_factory pkcs11_factory = {
    .struct_size = sizeof(km_factory),
    .manager_name = "pkcs11",
    .capabilities = KM_CAP_THREAD_SAFE | KM_CAP_WRAP | KM_CAP_UNWRAP | KM_CAP_PUBLIC_KEY |
                    KM_CAP_PROBE,
    .create = mgr_create,
    .ops = &pkcs11_ops,
    .create_ex = mgr_create_ex,
};

static const km_factory *const pkcs11_factories[] = {&pkcs11_factory};

/* Outputs may hold DEKs or ECDH secrets: wipe the whole allocation, whatever
 * the host did, before returning it to the allocator. */
static void plugin_free(void *p)
{
    if (p)
        OPENSSL_cleanse(p, malloc_usable_size(p));
    free(p);
}

static const km_plugin pkcs11_plugin = {
    .struct_size = sizeof(km_plugin),
    .abi_major = KM_ABI_VERSION_MAJOR,
    .abi_minor = KM_ABI_VERSION_MINOR,
    .plugin_name = "pkcs11",
    .plugin_version = "1.0.0",
    .factories = pkcs11_factories,
    .factory_count = 1,
    .free = plugin_free,
};

EXPORT const km_plugin *km_plugin_init(const km_host *host)
{
    if (!host || host->abi_major != KM_ABI_VERSION_MAJOR)
        return NULL;
    host_ref = host;
    if (host->struct_size >= offsetof(km_host, log_ctx) + sizeof(void *)) {
        host_log = host->log;
        host_log_ctx = host->log_ctx;
    }
    return &pkcs11_plugin;
}
