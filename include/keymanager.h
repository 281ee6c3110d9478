/*
 * keymanager.h -- the key-manager plugin ABI, version 1.1.
 *
 * A key-manager plugin is a shared library that exports ONE symbol:
 *
 *     const km_plugin *km_plugin_init(const km_host *host);
 *
 * The host (the KAS platform) calls it once after dlopen. The plugin returns
 * a pointer to a descriptor it owns (usually a static const struct): its ABI
 * version, its name and version, the factories it offers (one per manager
 * name, e.g. "aws-kms"), and the function the host must use to release any
 * memory the plugin hands out. Returning NULL means "refuse to load".
 *
 * A factory's create() turns a provider configuration (a JSON object, the
 * provider_config.config_json column) into a manager instance. The host then
 * calls the instance through the factory's function table (km_manager_ops):
 * wrap, unwrap, get_public_key, optionally probe, and finally destroy.
 *
 * Rules (read these; they are the whole contract):
 *
 *  1. Versions. KM_ABI_VERSION_MAJOR changes only on incompatible changes;
 *     the host refuses a plugin whose major differs. Minor versions only
 *     APPEND fields to the end of structs; every extensible struct starts
 *     with struct_size so either side uses only the fields both know
 *     (offsetof(field) + sizeof(field) <= struct_size). The first three
 *     fields of km_host and km_plugin never move: given a host whose
 *     abi_major differs from yours, read nothing else of km_host and call
 *     nothing (return NULL, or your descriptor so the host can name both
 *     versions). Exported symbols other than km_plugin_init are ignored.
 *  2. Ownership. Every pointer the host passes (config, key ids, inputs,
 *     call context) is valid only during that call: copy what you keep.
 *     Every buffer the plugin returns (*out, *error) is allocated by the
 *     plugin and released by the host with km_plugin.free, exactly once,
 *     on success AND on error. destroy() is called exactly once per manager,
 *     after every call on it has returned.
 *  3. Outputs. Before every call the host sets *out, *error and *mgr to NULL
 *     and *out_len to 0. KM_OK must come with a non-NULL *out (a zero-length
 *     output may use any non-NULL pointer that free() accepts), *out_len <=
 *     KM_MAX_OUTPUT_LEN (the host refuses more, unread) and *error left NULL.
 *     A failing call should leave *out NULL; if it sets it anyway, the host
 *     frees it and ignores it. *error is optional on failure but recommended:
 *     valid UTF-8, NUL-terminated, at most KM_MAX_ERROR_LEN bytes (the host
 *     truncates longer ones and replaces invalid bytes), never containing
 *     secrets, PINs, tokens, config values or key material. The host wipes
 *     every output (*out_len bytes) before calling free; wipe in free too
 *     (the host cannot see the whole allocation), and clear other sensitive
 *     buffers before freeing them.
 *  4. Threads. If a factory sets KM_CAP_THREAD_SAFE, the host may call one
 *     manager from many threads at once (and it will: the host releases its
 *     interpreter lock around plugin calls). Without the flag the host
 *     serializes all calls into that manager. create() and destroy() are
 *     never called concurrently with other calls on the same manager.
 *  5. Deadlines. ctx is never NULL. km_call_ctx.timeout_ms is the time left
 *     for this call (0 = no deadline). Give up with KM_ERR_DEADLINE_EXCEEDED
 *     rather than block past it: a result (even KM_OK) that arrives after
 *     timeout_ms has elapsed is treated by the host as deadline exceeded.
 *     Since 1.1, create_ex gets a ctx too (e.g. for an HSM login).
 *  6. Statuses added in a minor version (KM_ERR_FAILED_PRECONDITION, 1.1)
 *     are returned only to hosts with that minor (host->abi_minor); an older
 *     host gets the nearest older code (KM_ERR_INVALID_ARGUMENT).
 *  7. Names. `log` and `free` are also macros in <tgmath.h> and in debugging
 *     allocators: call the members with parentheses, (host->log)(...) and
 *     (plugin->free)(p), which no function-like macro can expand.
 *
 * Only <stdint.h> and <stddef.h> are needed. C99. All names are km_/KM_.
 *
 * The region between KM_ABI_BEGIN and KM_ABI_END is read verbatim by the
 * Python host (cffi cdef): keep it to plain declarations and integer
 * #defines there, with no other preprocessor lines.
 */
#ifndef KEYMANAGER_H
#define KEYMANAGER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* KM_ABI_BEGIN */

/* ---- Version of this header ------------------------------------------ */
#define KM_ABI_VERSION_MAJOR 1
#define KM_ABI_VERSION_MINOR 1

/* ---- Status codes: each maps one-to-one onto a Connect/gRPC code ------ */
#define KM_OK                     0 /* success                            */
#define KM_ERR_INVALID_ARGUMENT   1 /* bad config, key id or input        */
#define KM_ERR_NOT_FOUND          2 /* the named key does not exist       */
#define KM_ERR_PERMISSION_DENIED  3 /* credentials/PIN refused            */
#define KM_ERR_UNAVAILABLE        4 /* backend down/throttled; retryable  */
#define KM_ERR_DEADLINE_EXCEEDED  5 /* km_call_ctx.timeout_ms ran out     */
#define KM_ERR_UNIMPLEMENTED      6 /* operation not supported            */
#define KM_ERR_INTERNAL           7 /* bug or unexpected plugin state     */
#define KM_ERR_CRYPTO             8 /* ciphertext failed to authenticate/
                                       decrypt (tampered or wrong key)    */
#define KM_ERR_FAILED_PRECONDITION 9 /* 1.1: the key exists but cannot do
                                       this operation (e.g. unwrap with a
                                       wrap-only key, wrap with RSA)      */

/* ---- Limits the host enforces (rule 3) ------------------------------- */
#define KM_MAX_OUTPUT_LEN 1048576 /* bytes in one *out                  */
#define KM_MAX_ERROR_LEN  1024    /* bytes in one *error, without NUL   */

/* ---- Capability flags of a factory (km_factory.capabilities) ----------- */
#define KM_CAP_THREAD_SAFE  1 /* managers may be called concurrently      */
#define KM_CAP_WRAP         2 /* ops->wrap is set                         */
#define KM_CAP_UNWRAP       4 /* ops->unwrap is set                       */
#define KM_CAP_PUBLIC_KEY   8 /* ops->get_public_key is set               */
#define KM_CAP_PROBE       16 /* ops->probe is set                        */
#define KM_CAP_KEM         32 /* 1.1: ops->unwrap decapsulates remote KEM
                                 keys (see unwrap); hosts ignore bits they
                                 do not know, and send KEM input only to
                                 factories that set this one            */

/* ---- Log levels for km_host.log (same numbers as Python's logging) ---- */
#define KM_LOG_DEBUG 10
#define KM_LOG_INFO  20
#define KM_LOG_WARN  30
#define KM_LOG_ERROR 40

/* Host logging callback. Thread-safe; may be called from any plugin call
 * (not from threads the plugin starts after km_plugin_init returns unless
 * those threads only run while a call is in progress). request_id may be
 * NULL. Never log secrets. */
typedef void (*km_log_fn)(void *log_ctx, int32_t level,
                          const char *request_id, const char *message);

/* What the host offers the plugin; valid until the library is unloaded. */
typedef struct km_host {
    uint32_t struct_size;   /* sizeof(km_host) as the host compiled it   */
    uint16_t abi_major;     /* host's KM_ABI_VERSION_MAJOR                */
    uint16_t abi_minor;     /* host's KM_ABI_VERSION_MINOR                */
    km_log_fn log;          /* may be NULL: then do not log               */
    void *log_ctx;          /* pass back as log()'s first argument        */
    /* ---- 1.1 ---- */
    int32_t log_level;      /* the host drops lines below this KM_LOG_*
                               level: skip formatting them. The host may
                               change it while loaded: read it per line. */
} km_host;

/* Per-call context. */
typedef struct km_call_ctx {
    uint32_t struct_size;    /* sizeof(km_call_ctx) as the host compiled it */
    uint32_t timeout_ms;     /* time left for this call; 0 = no deadline   */
    const char *request_id;  /* for log correlation; may be NULL           */
} km_call_ctx;

/* A manager instance; its layout is private to the plugin. */
typedef struct km_manager km_manager;

/* Operations on a manager. Pointers the capabilities do not promise may be
 * NULL. key_id is NUL-terminated UTF-8; "" means the default key named in
 * the manager's config. Outputs: *out and *out_len on KM_OK; *error on failure
 * (both plugin-allocated, released by the host with km_plugin.free). */
typedef struct km_manager_ops {
    uint32_t struct_size;    /* sizeof(km_manager_ops) as the plugin compiled it */

    /* Encrypt `plain` (e.g. a KAS private key) under key_id. */
    int32_t (*wrap)(km_manager *mgr, const km_call_ctx *ctx,
                    const char *key_id,
                    const uint8_t *plain, size_t plain_len,
                    uint8_t **out, size_t *out_len, char **error);

    /* Provider mode: decrypt what wrap produced (a KAS private key).
     * Remote mode, RSA key: `wrapped` is a DEK a client encrypted to key_id's
     *   public key with RSA-OAEP (SHA-1, MGF1-SHA-1); return the DEK.
     * Remote mode, EC key: `wrapped` is the client's ephemeral public key
     *   (DER SubjectPublicKeyInfo); return the raw ECDH shared secret (the
     *   x coordinate); the host derives the AES key from it (HKDF).
     * Remote mode, KEM key (KM_CAP_KEM only):
     *   ML-KEM-768/1024: `wrapped` is the ML-KEM ciphertext (FIPS 203);
     *     return the 32-byte shared secret.
     *   ML-KEM + EC hybrid (key_id names both private keys): `wrapped` is
     *     the ML-KEM ciphertext || the client's ephemeral EC point
     *     (uncompressed); return the 32-byte ML-KEM secret || the ECDH x
     *     coordinate. The host combines them and opens the DEK. */
    int32_t (*unwrap)(km_manager *mgr, const km_call_ctx *ctx,
                      const char *key_id,
                      const uint8_t *wrapped, size_t wrapped_len,
                      uint8_t **out, size_t *out_len, char **error);

    /* The public key of key_id as a PEM "PUBLIC KEY" (SPKI) block; KEM
     * keys in OpenTDF's SPKI (docs/plugin-authors.md). */
    int32_t (*get_public_key)(km_manager *mgr, const km_call_ctx *ctx,
                              const char *key_id,
                              uint8_t **out, size_t *out_len, char **error);

    /* Health/config check (credentials work, default key usable).
     * On KM_OK *error is left NULL. */
    int32_t (*probe)(km_manager *mgr, const km_call_ctx *ctx, char **error);

    /* Release the manager. Called exactly once; never NULL. */
    void (*destroy)(km_manager *mgr);
} km_manager_ops;

/* One manager kind the plugin offers. */
typedef struct km_factory {
    uint32_t struct_size;     /* sizeof(km_factory) as the plugin compiled it */
    const char *manager_name; /* non-empty UTF-8, unique across all plugins
                                 the host loads, e.g. "aws-kms"              */
    uint32_t capabilities;    /* KM_CAP_* bits                               */

    /* Build a manager from config_json (config_len bytes, not NUL-terminated;
     * meant to be a UTF-8 JSON object, but check: anything else, including
     * invalid UTF-8 or nesting too deep for your parser, is
     * KM_ERR_INVALID_ARGUMENT). On KM_OK set *mgr; otherwise set *error.
     * The config may hold secrets: never echo it. */
    int32_t (*create)(const char *config_json, size_t config_len,
                      km_manager **mgr, char **error);

    const km_manager_ops *ops; /* never NULL */

    /* ---- 1.1 ---- */
    /* create with a call context (deadline, request id). May be NULL; when
     * set, a 1.1 host calls it instead of create. */
    int32_t (*create_ex)(const km_call_ctx *ctx,
                         const char *config_json, size_t config_len,
                         km_manager **mgr, char **error);
} km_factory;

/* The plugin descriptor returned by km_plugin_init; must stay valid until
 * the library is unloaded. */
typedef struct km_plugin {
    uint32_t struct_size;        /* sizeof(km_plugin) as the plugin compiled it */
    uint16_t abi_major;          /* KM_ABI_VERSION_MAJOR the plugin was built with */
    uint16_t abi_minor;          /* KM_ABI_VERSION_MINOR the plugin was built with */
    const char *plugin_name;     /* e.g. "file-kek"                             */
    const char *plugin_version;  /* e.g. "1.0.0"                                */
    const km_factory *const *factories; /* array of factory_count pointers     */
    size_t factory_count;        /* >= 1                                        */
    void (*free)(void *ptr);     /* releases every buffer the plugin returns    */
} km_plugin;

/* The one exported entry point. Called once per dlopen. */
const km_plugin *km_plugin_init(const km_host *host);

/* KM_ABI_END */

#ifdef __cplusplus
}
#endif

#endif /* KEYMANAGER_H */
