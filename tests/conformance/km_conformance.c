/*
 * km-conformance -- checks that a key-manager plugin keeps the ABI v1
 * contract (include/keymanager.h). A plain C program: no Python needed.
 *
 *   km-conformance [-v] [--manager NAME] [--iterations N] [--hung-endpoint-config FILE]
 *                  PLUGIN.so [CONFIG.json|-]
 *
 * Prints one line per check (PASS name / FAIL name: reason / SKIP name:
 * reason) and "N passed, N failed" last. Exit status: 0 when nothing failed,
 * 1 when a check failed, 2 on a usage error.
 *
 * The config (a file, or "-" for stdin) is handed to the factory named by
 * --manager, or to the first factory. Without a config only the checks that
 * need no manager run. --iterations repeats the round-trip and error-path
 * checks (for sanitizer runs). The plugin's log lines go to stderr (debug
 * level only with -v).
 *
 * ABI 1.1 checks: bad configs (non-UTF-8, 1 MB of nesting) answer
 * KM_ERR_INVALID_ARGUMENT; every *error is UTF-8 of at most KM_MAX_ERROR_LEN
 * bytes; a failing call leaves *out (and create *mgr) NULL, KM_OK leaves
 * *error NULL; call contexts smaller (guard page right after) and larger than
 * the plugin's; a host offering ABI major 2 (in a child process: the plugin
 * must use nothing of km_host beyond its first three fields); load/unload
 * cycles (child process); managers created and used from several threads
 * at once; and a wipe check: this program's own free() (it interposes libc's
 * for the plugin) inspects an unwrap output when the plugin's free releases it.
 *
 * --hung-endpoint-config FILE (remote plugins): FILE's endpoint accepts
 * connections and never answers. create and every call the manager offers,
 * each with timeout_ms = HUNG_TIMEOUT_MS, must come back by themselves, and
 * the calls must not answer KM_OK; HUNG_GUARD_MS only tells a hang from a
 * slow give-up.
 */
#define _GNU_SOURCE /* memmem */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "keymanager.h"

#define CALL_TIMEOUT_MS 60000
#define MAX_CONFIG_BYTES (1u << 20)
#define MAX_FACTORIES 1024
#define THREADS 8
#define OPS_PER_THREAD 200
#define KNOWN_CAPS (KM_CAP_THREAD_SAFE | KM_CAP_WRAP | KM_CAP_UNWRAP | KM_CAP_PUBLIC_KEY | KM_CAP_PROBE)
#define UNKNOWN_KEY_ID "km-conformance-no-such-key-7f3a9c1e"
#define LAST_STATUS KM_ERR_FAILED_PRECONDITION /* the highest KM_* status this runner knows */
#define NESTED_CONFIG_BYTES (1u << 20)
#define LOAD_CYCLES 3
#define MANAGER_THREADS 4
#define OPS_PER_MANAGER 20
#define HUNG_TIMEOUT_MS 300
#define HUNG_GUARD_MS 30000

/* ------------------------------------------------------------------ */
/* The wipe check's free(): the plugin's calls to free() bind to this
 * definition (the runner is linked with -rdynamic), which looks at a watched
 * output buffer before libc releases the allocation holding it. Sanitizer
 * builds keep their own allocator, and skip the check. */
#if defined(__SANITIZE_ADDRESS__)
#define WIPE_CHECK 0
#else
#define WIPE_CHECK 1
extern void __libc_free(void *);
static const uint8_t *volatile watched;
static size_t watched_len;
static volatile long watched_nonzero = -1; /* -1: the watched buffer has not been freed */

__attribute__((visibility("default"))) void free(void *p)
{
    const uint8_t *w = watched;
    if (p && w && w >= (const uint8_t *)p && w < (const uint8_t *)p + malloc_usable_size(p)) {
        long nonzero = 0;
        for (size_t i = 0; i < watched_len; i++)
            nonzero += w[i] != 0;
        watched_nonzero = nonzero;
        watched = NULL;
    }
    __libc_free(p);
}
#endif

/* ------------------------------------------------------------------ */
/* Reporting                                                            */

static int n_passed, n_failed;

static void report_pass(const char *name)
{
    printf("PASS %s\n", name);
    n_passed++;
}

static void report_fail(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "WORD name: reason" on one line whatever the reason holds
 * (plugin messages may contain newlines). */
static void report_line(const char *word, const char *name, const char *fmt, va_list ap)
{
    char reason[1024];
    vsnprintf(reason, sizeof reason, fmt, ap);
    for (char *p = reason; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7F)
            *p = ' ';
    printf("%s %s: %s\n", word, name, reason);
}

static void report_fail(const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report_line("FAIL", name, fmt, ap);
    va_end(ap);
    n_failed++;
}

static void report_skip(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report_skip(const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    report_line("SKIP", name, fmt, ap);
    va_end(ap);
}

static int finish(void)
{
    printf("%d passed, %d failed\n", n_passed, n_failed);
    fflush(stdout);
    return n_failed ? 1 : 0;
}

/* A reason buffer that check functions fill in. */
typedef struct why {
    char text[400];
} why;

static int because(why *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int because(why *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->text, sizeof w->text, fmt, ap);
    va_end(ap);
    return 0;
}

/* Check outcomes. */
enum { CHECK_FAIL = 0, CHECK_PASS = 1, CHECK_SKIP = 2 };

/* ------------------------------------------------------------------ */
/* Contract violations seen on any call (reported by "status_codes")    */

static pthread_mutex_t violation_lock = PTHREAD_MUTEX_INITIALIZER;
static int violation_count;
static char first_violation[300];

static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void violation(const char *fmt, ...)
{
    pthread_mutex_lock(&violation_lock);
    if (violation_count++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(first_violation, sizeof first_violation, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&violation_lock);
}

static int valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t need;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { need = 2; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { need = 3; cp = c & 0x07; }
        else return 0;
        if (n - i - 1 < need)
            return 0;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) || cp > 0x10FFFF
            || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += need + 1;
    }
    return 1;
}

static int valid_name(const char *s)
{
    return s && s[0] && valid_utf8((const unsigned char *)s, strlen(s));
}

static const char *status_name(int32_t s)
{
    static const char *names[] = {
        "KM_OK", "KM_ERR_INVALID_ARGUMENT", "KM_ERR_NOT_FOUND", "KM_ERR_PERMISSION_DENIED",
        "KM_ERR_UNAVAILABLE", "KM_ERR_DEADLINE_EXCEEDED", "KM_ERR_UNIMPLEMENTED",
        "KM_ERR_INTERNAL", "KM_ERR_CRYPTO", "KM_ERR_FAILED_PRECONDITION",
    };
    return s >= 0 && s <= LAST_STATUS ? names[s] : "an unknown status";
}

/* ------------------------------------------------------------------ */
/* The plugin under test                                                */

static const km_plugin *plugin;
static const km_factory *factory; /* the one the config is for */
static km_manager *mgr;

static int verbose; /* -v: also show the plugin's debug logs */

static void host_log(void *ctx, int32_t level, const char *request_id, const char *message)
{
    (void)ctx;
    if (!message || !valid_utf8((const unsigned char *)message, strlen(message))) {
        violation("log callback got a NULL or non-UTF-8 message");
        return;
    }
    if (level < KM_LOG_INFO && !verbose)
        return;
    fprintf(stderr, "km-conformance: plugin log [%d] %s%s%s\n", level,
            request_id ? request_id : "", request_id ? ": " : "", message);
}

static km_host host = {
    .struct_size = sizeof(km_host),
    .abi_major = KM_ABI_VERSION_MAJOR,
    .abi_minor = KM_ABI_VERSION_MINOR,
    .log = host_log,
    .log_ctx = NULL,
    .log_level = KM_LOG_INFO, /* KM_LOG_DEBUG with -v */
};

/* create through create_ex (1.1) when the factory has it, as a 1.1 host does. */
static int has_create_ex(const km_factory *f)
{
    /* 1.0 factories end before create_ex: do not read it */
    return f->struct_size >= offsetof(km_factory, create_ex) + sizeof f->create_ex && f->create_ex;
}

static int32_t do_create(const km_factory *f, int use_ex, const char *json, size_t len, km_manager **m,
                         char **error)
{
    km_call_ctx ctx = {.struct_size = sizeof(km_call_ctx), .timeout_ms = CALL_TIMEOUT_MS,
                       .request_id = "km-conformance-create"};
    *m = NULL;
    *error = NULL;
    return use_ex && has_create_ex(f) ? f->create_ex(&ctx, json, len, m, error) : f->create(json, len, m, error);
}

/* An *error must be UTF-8 and at most KM_MAX_ERROR_LEN bytes; NULL when fine. */
static const char *error_problem(const char *error)
{
    if (!error)
        return NULL;
    size_t n = strnlen(error, KM_MAX_ERROR_LEN + 1);
    if (n > KM_MAX_ERROR_LEN)
        return "longer than KM_MAX_ERROR_LEN bytes";
    if (!valid_utf8((const unsigned char *)error, n))
        return "not valid UTF-8";
    return NULL;
}

/* One call's results. The runner releases every buffer with plugin->free. */
typedef struct result {
    int32_t status;
    uint8_t *out;
    size_t out_len;
    char *error;
} result;

static void release(result *r)
{
    if (r->out)
        (plugin->free)(r->out);
    if (r->error)
        (plugin->free)(r->error);
    memset(r, 0, sizeof *r);
}

/* Checks what every call must satisfy; records violations. */
static void audit(const char *op, result *r)
{
    const char *problem = error_problem(r->error);
    if (r->status < KM_OK || r->status > LAST_STATUS)
        violation("%s returned status %d, outside the KM_* enum", op, (int)r->status);
    if (r->status == KM_OK && !r->out)
        violation("%s returned KM_OK with a NULL output", op);
    if (r->status == KM_OK && r->out_len > KM_MAX_OUTPUT_LEN)
        violation("%s returned %zu bytes, more than KM_MAX_OUTPUT_LEN", op, r->out_len);
    if (r->status == KM_OK && r->error)
        violation("%s returned KM_OK with an error message", op);
    if (r->status != KM_OK && r->out)
        violation("%s returned %s with a non-NULL output", op, status_name(r->status));
    if (problem)
        violation("%s returned an error message that is %s", op, problem);
}

static const char *error_text(const result *r)
{
    return r->error ? r->error : "(no message)";
}

static km_call_ctx call_ctx(const char *request_id)
{
    km_call_ctx ctx = {.struct_size = sizeof(km_call_ctx), .timeout_ms = CALL_TIMEOUT_MS,
                       .request_id = request_id};
    return ctx;
}

static result do_wrap(const char *key_id, const uint8_t *in, size_t n)
{
    result r = {0};
    km_call_ctx ctx = call_ctx("km-conformance-wrap");
    r.status = factory->ops->wrap(mgr, &ctx, key_id, in, n, &r.out, &r.out_len, &r.error);
    audit("wrap", &r);
    return r;
}

static result do_unwrap(const char *key_id, const uint8_t *in, size_t n)
{
    result r = {0};
    km_call_ctx ctx = call_ctx("km-conformance-unwrap");
    r.status = factory->ops->unwrap(mgr, &ctx, key_id, in, n, &r.out, &r.out_len, &r.error);
    audit("unwrap", &r);
    return r;
}

static result do_unwrap_with(km_manager *m, const km_call_ctx *ctx, const char *key_id, const uint8_t *in,
                             size_t n)
{
    result r = {0};
    r.status = factory->ops->unwrap(m, ctx, key_id, in, n, &r.out, &r.out_len, &r.error);
    audit("unwrap", &r);
    return r;
}

static result do_public_key(const char *key_id)
{
    result r = {0};
    km_call_ctx ctx = call_ctx("km-conformance-public-key");
    r.status = factory->ops->get_public_key(mgr, &ctx, key_id, &r.out, &r.out_len, &r.error);
    audit("get_public_key", &r);
    return r;
}

/* ------------------------------------------------------------------ */
/* What the manager under test can do with its default key              */

static int iterations = 1;
static int can_roundtrip;   /* wrap+unwrap work on the default key */
static EVP_PKEY *pubkey;    /* the default key's public key, if any */
static int pubkey_is_rsa;
static int pubkey_is_ec;
static int data_path_checks; /* passed checks that moved real data */

static void random_bytes(uint8_t *buf, size_t n)
{
    if (n && RAND_bytes(buf, (int)n) != 1) {
        fprintf(stderr, "km-conformance: RAND_bytes failed\n");
        exit(3);
    }
}

/* RSA-OAEP (SHA-1, MGF1-SHA-1) as TDF clients wrap DEKs. 0 on success. */
static int rsa_oaep_encrypt(const uint8_t *in, size_t n, uint8_t **out, size_t *out_len)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pubkey, NULL);
    int ok = c && EVP_PKEY_encrypt_init(c) == 1
             && EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING) == 1
             && EVP_PKEY_CTX_set_rsa_oaep_md(c, EVP_sha1()) == 1
             && EVP_PKEY_CTX_set_rsa_mgf1_md(c, EVP_sha1()) == 1
             && EVP_PKEY_encrypt(c, NULL, out_len, in, n) == 1;
    *out = ok ? malloc(*out_len) : NULL;
    ok = ok && *out && EVP_PKEY_encrypt(c, *out, out_len, in, n) == 1;
    EVP_PKEY_CTX_free(c);
    if (!ok) {
        free(*out);
        *out = NULL;
    }
    return ok ? 0 : -1;
}

/* A ciphertext of `plain` that unwrap("") must accept: from wrap, or from
 * RSA-OAEP with the public key. Returns 0, or -1 with a reason. */
static int make_ciphertext(const uint8_t *plain, size_t n, uint8_t **ct, size_t *ct_len, why *w)
{
    if (can_roundtrip) {
        result r = do_wrap("", plain, n);
        if (r.status != KM_OK) {
            because(w, "wrap returned %s: %s", status_name(r.status), error_text(&r));
            release(&r);
            return -1;
        }
        *ct = malloc(r.out_len ? r.out_len : 1);
        if (!*ct) {
            release(&r);
            return because(w, "out of memory"), -1;
        }
        memcpy(*ct, r.out, r.out_len);
        *ct_len = r.out_len;
        release(&r);
        return 0;
    }
    if (pubkey_is_rsa && rsa_oaep_encrypt(plain, n, ct, ct_len) == 0)
        return 0;
    because(w, "RSA-OAEP encryption with the plugin's public key failed");
    return -1;
}

/* ------------------------------------------------------------------ */
/* Checks on the descriptor                                             */

static int check_descriptor(void)
{
    int ok_before = n_failed;
    if (plugin->abi_major != KM_ABI_VERSION_MAJOR)
        report_fail("descriptor.abi_version", "plugin ABI %u.%u, this runner speaks %d.%d",
                    plugin->abi_major, plugin->abi_minor, KM_ABI_VERSION_MAJOR, KM_ABI_VERSION_MINOR);
    else
        report_pass("descriptor.abi_version");
    if (plugin->struct_size < sizeof(km_plugin))
        report_fail("descriptor.struct_size", "km_plugin.struct_size %u < %zu (the v1.0 size)",
                    plugin->struct_size, sizeof(km_plugin));
    else
        report_pass("descriptor.struct_size");
    if (!valid_name(plugin->plugin_name) || !valid_name(plugin->plugin_version))
        report_fail("descriptor.names", "plugin_name and plugin_version must be non-empty UTF-8");
    else
        report_pass("descriptor.names");
    if (!plugin->free)
        report_fail("descriptor.free", "km_plugin.free is NULL");
    else
        report_pass("descriptor.free");
    if (!plugin->factories || plugin->factory_count == 0 || plugin->factory_count > MAX_FACTORIES)
        report_fail("descriptor.factories", "factories is NULL or factory_count (%zu) not in 1..%d",
                    plugin->factory_count, MAX_FACTORIES);
    else
        report_pass("descriptor.factories");
    if (n_failed != ok_before)
        return -1; /* nothing below is safe to touch */

    for (size_t i = 0; i < plugin->factory_count; i++) {
        const km_factory *f = plugin->factories[i];
        char name[200];
        snprintf(name, sizeof name, "factory[%zu]", i);
        if (!f) {
            report_fail(name, "factory pointer is NULL");
            continue;
        }
        if (valid_name(f->manager_name))
            snprintf(name, sizeof name, "factory[%s]", f->manager_name);
        why w = {{0}};
        uint32_t caps = f->capabilities;
        const km_manager_ops *ops = f->ops;
        if (f->struct_size < offsetof(km_factory, create_ex))
            because(&w, "km_factory.struct_size %u < %zu (the 1.0 size)", f->struct_size,
                    offsetof(km_factory, create_ex));
        else if (!valid_name(f->manager_name))
            because(&w, "manager_name must be non-empty UTF-8");
        else if (!f->create)
            because(&w, "create is NULL");
        else if (!ops)
            because(&w, "ops is NULL");
        else if (ops->struct_size < sizeof(km_manager_ops))
            because(&w, "km_manager_ops.struct_size %u < %zu", ops->struct_size, sizeof(km_manager_ops));
        else if (!ops->destroy)
            because(&w, "ops->destroy is NULL");
        else if ((caps & KM_CAP_WRAP) && !ops->wrap)
            because(&w, "KM_CAP_WRAP set but ops->wrap is NULL");
        else if ((caps & KM_CAP_UNWRAP) && !ops->unwrap)
            because(&w, "KM_CAP_UNWRAP set but ops->unwrap is NULL");
        else if ((caps & KM_CAP_PUBLIC_KEY) && !ops->get_public_key)
            because(&w, "KM_CAP_PUBLIC_KEY set but ops->get_public_key is NULL");
        else if ((caps & KM_CAP_PROBE) && !ops->probe)
            because(&w, "KM_CAP_PROBE set but ops->probe is NULL");
        else if ((caps & ~(uint32_t)KNOWN_CAPS) && plugin->abi_minor == 0)
            because(&w, "unknown capability bits 0x%x for ABI 1.0", caps & ~(uint32_t)KNOWN_CAPS);
        else if (!(caps & (KM_CAP_WRAP | KM_CAP_UNWRAP | KM_CAP_PUBLIC_KEY)))
            because(&w, "no capability among WRAP, UNWRAP, PUBLIC_KEY");
        for (size_t j = 0; !w.text[0] && j < i; j++) {
            const km_factory *g = plugin->factories[j];
            if (g && g->manager_name && strcmp(g->manager_name, f->manager_name) == 0)
                because(&w, "manager name \"%s\" is registered twice", f->manager_name);
        }
        if (w.text[0])
            report_fail(name, "%s", w.text);
        else
            report_pass(name);
    }
    return n_failed == ok_before ? 0 : -1;
}

/* create() with bad input must fail cleanly, for every factory and both
 * entry points (create, and create_ex when there is one); want_status -1
 * accepts any failure. */
static void check_create_rejects(const km_factory *f, const char *label, const char *json, size_t len,
                                 int32_t want_status)
{
    char name[200];
    snprintf(name, sizeof name, "create.%s[%s]", label, f->manager_name);
    int outcome = CHECK_PASS;
    why w = {{0}};
    for (int it = 0; it < iterations && outcome == CHECK_PASS; it++) {
        for (int use_ex = 0; use_ex <= has_create_ex(f) && outcome == CHECK_PASS; use_ex++) {
            const char *entry = use_ex ? "create_ex" : "create";
            km_manager *m = NULL;
            char *error = NULL;
            int32_t status = do_create(f, use_ex, json, len, &m, &error);
            const char *problem = error_problem(error);
            if (status == KM_OK) {
                outcome = CHECK_FAIL;
                because(&w, "%s returned KM_OK", entry);
                if (m)
                    f->ops->destroy(m);
                m = NULL;
            } else if (status < 0 || status > LAST_STATUS) {
                outcome = because(&w, "%s returned status %d, outside the KM_* enum", entry, (int)status);
            } else if (want_status >= 0 && status != want_status) {
                outcome = because(&w, "%s returned %s, want %s (%.200s)", entry, status_name(status),
                                  status_name(want_status), error ? error : "no message");
            } else if (!error) {
                outcome = because(&w, "%s returned %s without an error message", entry, status_name(status));
            } else if (problem) {
                outcome = because(&w, "%s: error message is %s", entry, problem);
            } else if (m) {
                outcome = because(&w, "%s failed but set *mgr", entry);
            }
            if (error)
                (plugin->free)(error);
        }
    }
    if (outcome == CHECK_PASS)
        report_pass(name);
    else
        report_fail(name, "%s", w.text);
}

/* ------------------------------------------------------------------ */
/* Checks on a live manager                                             */

typedef int (*check_fn)(why *w, void *arg);

/* Runs fn `repeat` times; reports once. */
static int run_check(const char *name, check_fn fn, void *arg, int repeat)
{
    why w = {{0}};
    int outcome = CHECK_PASS;
    for (int i = 0; i < repeat && outcome == CHECK_PASS; i++) {
        outcome = fn(&w, arg);
        if (outcome == CHECK_FAIL && repeat > 1) {
            char tmp[sizeof w.text];
            memcpy(tmp, w.text, sizeof tmp);
            snprintf(w.text, sizeof w.text, "iteration %d: %.360s", i + 1, tmp);
        }
    }
    if (outcome == CHECK_PASS)
        report_pass(name);
    else if (outcome == CHECK_SKIP)
        report_skip(name, "%s", w.text);
    else
        report_fail(name, "%s", w.text);
    return outcome;
}

static int check_probe(why *w, void *arg)
{
    (void)arg;
    char *error = NULL;
    km_call_ctx ctx = call_ctx("km-conformance-probe");
    int32_t status = factory->ops->probe(mgr, &ctx, &error);
    int outcome = CHECK_PASS;
    if (status < 0 || status > LAST_STATUS)
        outcome = because(w, "returned status %d, outside the KM_* enum", (int)status);
    else if (status != KM_OK)
        outcome = because(w, "returned %s: %s", status_name(status), error ? error : "(no message)");
    if (error)
        plugin->free(error);
    return outcome;
}

static int check_public_key(why *w, void *arg)
{
    (void)arg;
    result r = do_public_key("");
    if (r.status == KM_ERR_UNIMPLEMENTED || r.status == KM_ERR_INVALID_ARGUMENT
        || r.status == KM_ERR_FAILED_PRECONDITION) {
        because(w, "the default key has no public key (%s: %s)", status_name(r.status), error_text(&r));
        release(&r);
        return CHECK_SKIP;
    }
    if (r.status != KM_OK) {
        because(w, "get_public_key(\"\") returned %s: %s", status_name(r.status), error_text(&r));
        release(&r);
        return CHECK_FAIL;
    }
    static const char header[] = "-----BEGIN PUBLIC KEY-----";
    int outcome = CHECK_PASS;
    if (r.out_len < sizeof header - 1 || memcmp(r.out, header, sizeof header - 1) != 0) {
        outcome = because(w, "output does not start with %s", header);
    } else {
        BIO *bio = BIO_new_mem_buf(r.out, (int)r.out_len);
        EVP_PKEY *k = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
        if (!k) {
            outcome = because(w, "OpenSSL cannot parse the PEM as a public key");
            ERR_clear_error();
        } else if (!pubkey) {
            pubkey = k;
            pubkey_is_rsa = EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA;
            pubkey_is_ec = EVP_PKEY_get_base_id(k) == EVP_PKEY_EC;
        } else {
            if (EVP_PKEY_eq(pubkey, k) != 1)
                outcome = because(w, "the public key changed between calls");
            EVP_PKEY_free(k);
        }
    }
    release(&r);
    return outcome;
}

static int check_public_key_unknown(why *w, void *arg)
{
    (void)arg;
    result r = do_public_key(UNKNOWN_KEY_ID);
    int outcome = CHECK_PASS;
    if (r.status != KM_ERR_NOT_FOUND)
        outcome = because(w, "get_public_key(unknown key id) returned %s, want KM_ERR_NOT_FOUND (%s)",
                          status_name(r.status), error_text(&r));
    release(&r);
    return outcome;
}

static int check_roundtrip(why *w, void *arg)
{
    size_t n = *(const size_t *)arg;
    uint8_t *plain = malloc(n);
    if (!plain)
        return because(w, "out of memory");
    random_bytes(plain, n);
    int outcome = CHECK_PASS;
    result wr = do_wrap("", plain, n);
    if ((wr.status == KM_ERR_UNIMPLEMENTED || wr.status == KM_ERR_INVALID_ARGUMENT
         || wr.status == KM_ERR_FAILED_PRECONDITION) && !can_roundtrip &&
        n == 32) {
        outcome = CHECK_SKIP; /* the default key cannot wrap (e.g. an RSA or EC key) */
        because(w, "wrap on the default key is refused (%s: %s)", status_name(wr.status), error_text(&wr));
    } else if (wr.status != KM_OK) {
        outcome = because(w, "wrap(\"\", %zu bytes) returned %s: %s", n, status_name(wr.status),
                          error_text(&wr));
    } else if (n >= 16 && wr.out_len >= n && memmem(wr.out, wr.out_len, plain, n)) {
        outcome = because(w, "wrapped output contains the plaintext");
    } else {
        result ur = do_unwrap("", wr.out, wr.out_len);
        if (ur.status != KM_OK)
            outcome = because(w, "unwrap of a fresh wrap returned %s: %s", status_name(ur.status),
                              error_text(&ur));
        else if (ur.out_len != n || memcmp(ur.out, plain, n) != 0)
            outcome = because(w, "unwrap returned %zu bytes that differ from the %zu wrapped", ur.out_len, n);
        release(&ur);
    }
    release(&wr);
    free(plain);
    if (outcome == CHECK_PASS)
        can_roundtrip = 1;
    return outcome;
}

static int check_rsa_oaep_unwrap(why *w, void *arg)
{
    (void)arg;
    uint8_t dek[32], *ct = NULL;
    size_t ct_len = 0;
    random_bytes(dek, sizeof dek);
    if (rsa_oaep_encrypt(dek, sizeof dek, &ct, &ct_len) < 0)
        return because(w, "RSA-OAEP encryption with the plugin's public key failed");
    result r = do_unwrap("", ct, ct_len);
    int outcome = CHECK_PASS;
    if (r.status != KM_OK)
        outcome = because(w, "unwrap of an RSA-OAEP(SHA-1) DEK returned %s: %s", status_name(r.status),
                          error_text(&r));
    else if (r.out_len != sizeof dek || memcmp(r.out, dek, sizeof dek) != 0)
        outcome = because(w, "unwrap returned %zu bytes that differ from the 32-byte DEK", r.out_len);
    release(&r);
    free(ct);
    return outcome;
}

/* Remote mode with an EC key (keymanager.h): unwrap takes the client's
 * ephemeral public key as DER SPKI and returns the raw ECDH secret, which
 * must equal what the client derives from the public key. */
static int check_ecdh_unwrap(why *w, void *arg)
{
    (void)arg;
    char group[80];
    if (!EVP_PKEY_get_group_name(pubkey, group, sizeof group, NULL))
        return because(w, "the public key is not on a named curve");
    EVP_PKEY *eph = EVP_PKEY_Q_keygen(NULL, NULL, "EC", group);
    unsigned char *der = NULL;
    int der_len = eph ? i2d_PUBKEY(eph, &der) : -1;
    EVP_PKEY_CTX *c = eph ? EVP_PKEY_CTX_new(eph, NULL) : NULL;
    uint8_t want[200];
    size_t want_len = sizeof want;
    int outcome = CHECK_PASS;
    if (der_len <= 0 || !c || EVP_PKEY_derive_init(c) != 1 || EVP_PKEY_derive_set_peer(c, pubkey) != 1 ||
        EVP_PKEY_derive(c, want, &want_len) != 1) {
        outcome = because(w, "OpenSSL could not make an ephemeral %s key and its ECDH secret", group);
        ERR_clear_error();
    } else {
        result r = do_unwrap("", der, (size_t)der_len);
        if (r.status != KM_OK)
            outcome = because(w, "unwrap of an ephemeral %s public key (DER SPKI) returned %s: %s", group,
                              status_name(r.status), error_text(&r));
        else if (r.out_len != want_len || memcmp(r.out, want, want_len) != 0)
            outcome = because(w, "unwrap returned %zu bytes that differ from the %zu-byte ECDH secret",
                              r.out_len, want_len);
        release(&r);
    }
    OPENSSL_cleanse(want, sizeof want);
    EVP_PKEY_CTX_free(c);
    OPENSSL_free(der);
    EVP_PKEY_free(eph);
    return outcome;
}

/* arg: 0 = flip a bit in the middle byte, 1 = in the last byte. */
static int check_tamper(why *w, void *arg)
{
    int last = *(const int *)arg;
    uint8_t plain[32], *ct = NULL;
    size_t ct_len = 0;
    random_bytes(plain, sizeof plain);
    if (make_ciphertext(plain, sizeof plain, &ct, &ct_len, w) < 0)
        return CHECK_FAIL;
    if (ct_len == 0) {
        free(ct);
        return because(w, "wrap produced an empty ciphertext");
    }
    ct[last ? ct_len - 1 : ct_len / 2] ^= 0x01;
    result r = do_unwrap("", ct, ct_len);
    int outcome = CHECK_PASS;
    if (r.status != KM_ERR_CRYPTO)
        outcome = because(w, "unwrap of a tampered ciphertext returned %s, want KM_ERR_CRYPTO (%s)",
                          status_name(r.status), error_text(&r));
    release(&r);
    free(ct);
    return outcome;
}

static int check_unwrap_short(why *w, void *arg)
{
    (void)arg;
    static const uint8_t one = 0x42;
    static const size_t lens[] = {0, 1};
    for (size_t i = 0; i < 2; i++) {
        result r = do_unwrap("", &one, lens[i]);
        int bad = r.status != KM_ERR_CRYPTO && r.status != KM_ERR_INVALID_ARGUMENT;
        if (bad)
            because(w, "unwrap of %zu bytes returned %s, want KM_ERR_CRYPTO or KM_ERR_INVALID_ARGUMENT (%s)",
                    lens[i], status_name(r.status), error_text(&r));
        release(&r);
        if (bad)
            return CHECK_FAIL;
    }
    return CHECK_PASS;
}

/* arg: 0 = wrap, 1 = unwrap with an unknown key id. */
static int check_unknown_key(why *w, void *arg)
{
    int unwrap = *(const int *)arg;
    uint8_t plain[32], *ct = NULL;
    size_t ct_len = 0;
    random_bytes(plain, sizeof plain);
    result r;
    if (unwrap) {
        if (make_ciphertext(plain, sizeof plain, &ct, &ct_len, w) < 0)
            return CHECK_FAIL;
        r = do_unwrap(UNKNOWN_KEY_ID, ct, ct_len);
    } else {
        r = do_wrap(UNKNOWN_KEY_ID, plain, sizeof plain);
    }
    int outcome = CHECK_PASS;
    if (r.status != KM_ERR_NOT_FOUND)
        outcome = because(w, "%s with an unknown key id returned %s, want KM_ERR_NOT_FOUND (%s)",
                          unwrap ? "unwrap" : "wrap", status_name(r.status), error_text(&r));
    release(&r);
    free(ct);
    return outcome;
}

/* create + destroy again and again with the same config: no leak, no crash. */
typedef struct config_arg {
    const char *json;
    size_t len;
} config_arg;

static int check_create_destroy(why *w, void *arg)
{
    const config_arg *cfg = arg;
    km_manager *m = NULL;
    char *error = NULL;
    int32_t status = do_create(factory, 1, cfg->json, cfg->len, &m, &error);
    int outcome = CHECK_PASS;
    if (status != KM_OK || !m)
        outcome = because(w, "create returned %s: %s", status_name(status), error ? error : "(no message)");
    if (error)
        plugin->free(error);
    if (m)
        factory->ops->destroy(m);
    return outcome;
}

/* ------------------------------------------------------------------ */
/* Concurrency                                                          */

typedef struct worker {
    int index;
    int failures;
    char reason[300];
} worker;

static void *worker_main(void *arg)
{
    worker *wk = arg;
    uint32_t seed = 0x9E3779B9u * (uint32_t)(wk->index + 1);
    for (int op = 0; op < OPS_PER_THREAD; op++) {
        seed = seed * 1664525u + 1013904223u;
        uint8_t plain[512], *ct = NULL;
        size_t n = 1 + (seed >> 8) % (can_roundtrip ? sizeof plain : 32), ct_len = 0;
        random_bytes(plain, n);
        result r;
        int error_path = op % 10 == 9; /* the error path, concurrently too */
        const char *what = error_path ? "unknown key id" : "round trip";
        int32_t want = error_path ? KM_ERR_NOT_FOUND : KM_OK;
        if (error_path && can_roundtrip) {
            r = do_wrap(UNKNOWN_KEY_ID, plain, n);
        } else {
            why w;
            if (make_ciphertext(plain, n, &ct, &ct_len, &w) < 0) {
                if (wk->failures++ == 0)
                    snprintf(wk->reason, sizeof wk->reason, "thread %d op %d: %.250s", wk->index, op, w.text);
                continue;
            }
            r = do_unwrap(error_path ? UNKNOWN_KEY_ID : "", ct, ct_len);
        }
        int bad = r.status != want
                  || (want == KM_OK && (r.out_len != n || memcmp(r.out, plain, n) != 0));
        if (bad && wk->failures++ == 0)
            snprintf(wk->reason, sizeof wk->reason, "thread %d op %d (%s): %s %.200s", wk->index, op, what,
                     status_name(r.status), r.status == KM_OK ? "with wrong bytes" : error_text(&r));
        release(&r);
        free(ct);
    }
    return NULL;
}

static int check_concurrency(why *w, void *arg)
{
    (void)arg;
    pthread_t tids[THREADS];
    worker workers[THREADS];
    int started = 0;
    for (int i = 0; i < THREADS; i++) {
        workers[i] = (worker){.index = i};
        if (pthread_create(&tids[i], NULL, worker_main, &workers[i]) != 0)
            break;
        started++;
    }
    for (int i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    if (started != THREADS)
        return because(w, "could not start %d threads", THREADS);
    int failures = 0;
    const char *first = NULL;
    for (int i = 0; i < THREADS; i++) {
        failures += workers[i].failures;
        if (!first && workers[i].failures)
            first = workers[i].reason;
    }
    if (failures)
        return because(w, "%d of %d concurrent calls failed; first: %s", failures, THREADS * OPS_PER_THREAD,
                       first);
    return CHECK_PASS;
}

/* ------------------------------------------------------------------ */
/* ABI 1.1: context sizes, wipe, managers on many threads               */

/* A round trip (ciphertext -> unwrap) through `ctx`. */
static int unwrap_through(km_manager *m, const km_call_ctx *ctx, why *w)
{
    uint8_t plain[32], *ct = NULL;
    size_t ct_len = 0;
    random_bytes(plain, sizeof plain);
    if (make_ciphertext(plain, sizeof plain, &ct, &ct_len, w) < 0)
        return CHECK_FAIL;
    result r = do_unwrap_with(m, ctx, "", ct, ct_len);
    int outcome = CHECK_PASS;
    if (r.status != KM_OK)
        outcome = because(w, "unwrap returned %s: %s", status_name(r.status), error_text(&r));
    else if (r.out_len != sizeof plain || memcmp(r.out, plain, sizeof plain) != 0)
        outcome = because(w, "unwrap returned the wrong bytes");
    release(&r);
    free(ct);
    return outcome;
}

/* A ctx that ends right after timeout_ms, on a page followed by an
 * inaccessible one: reading request_id (not covered by struct_size) faults. */
static int check_ctx_smaller(why *w, void *arg)
{
    const config_arg *cfg = arg;
    long page = sysconf(_SC_PAGESIZE);
    uint8_t *map = mmap(NULL, 2 * (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
        return because(w, "mmap failed");
    mprotect(map + page, (size_t)page, PROT_NONE);
    size_t size = offsetof(km_call_ctx, timeout_ms) + sizeof(uint32_t);
    km_call_ctx *ctx = (km_call_ctx *)(map + page - size);
    ctx->struct_size = (uint32_t)size;
    ctx->timeout_ms = CALL_TIMEOUT_MS;
    fflush(NULL);
    pid_t pid = fork(); /* the fault, if any, ends the child, not this run */
    if (pid == 0) {
        /* a manager of its own: the parent's may hold connections the child must not touch */
        km_manager *m = NULL;
        char *error = NULL;
        if (do_create(factory, 1, cfg->json, cfg->len, &m, &error) != KM_OK || !m)
            _exit(2);
        _exit(unwrap_through(m, ctx, w) == CHECK_PASS ? 0 : 1);
    }
    int status = 0, outcome = CHECK_PASS;
    while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (pid < 0)
        outcome = because(w, "fork failed");
    else if (!WIFEXITED(status))
        outcome = because(w, "the plugin crashed reading past the context's struct_size");
    else if (WEXITSTATUS(status) == 2)
        outcome = because(w, "create failed in the child process");
    else if (WEXITSTATUS(status) != 0)
        outcome = unwrap_through(mgr, ctx, w); /* safe now: it did not crash; get the reason */
    munmap(map, 2 * (size_t)page);
    return outcome;
}

/* A ctx from a future minor: more fields than the plugin knows. */
static int check_ctx_larger(why *w, void *arg)
{
    (void)arg;
    struct { km_call_ctx ctx; uint8_t future[64]; } big;
    memset(&big, 0xA7, sizeof big);
    big.ctx.struct_size = sizeof big;
    big.ctx.timeout_ms = CALL_TIMEOUT_MS;
    big.ctx.request_id = "km-conformance-large-ctx";
    return unwrap_through(mgr, &big.ctx, w);
}

/* The plugin's free must clear an unwrap output (rule 3): this runner does
 * not wipe it, and its free() sees the bytes before libc releases them. */
static int check_wipe(why *w, void *arg)
{
    (void)arg;
#if WIPE_CHECK
    uint8_t plain[32], *ct = NULL;
    size_t ct_len = 0;
    memset(plain, 0x5A, sizeof plain);
    if (make_ciphertext(plain, sizeof plain, &ct, &ct_len, w) < 0)
        return CHECK_FAIL;
    km_call_ctx ctx = call_ctx("km-conformance-wipe");
    result r = do_unwrap_with(mgr, &ctx, "", ct, ct_len);
    free(ct);
    if (r.status != KM_OK || r.out_len == 0) {
        because(w, "unwrap returned %s: %s", status_name(r.status), error_text(&r));
        release(&r);
        return CHECK_FAIL;
    }
    watched_len = r.out_len;
    watched_nonzero = -1;
    watched = r.out;
    (plugin->free)(r.out);
    watched = NULL;
    r.out = NULL;
    release(&r);
    long nonzero = watched_nonzero;
    if (nonzero < 0)
        return because(w, "the plugin's free did not release the output through libc free()"), CHECK_SKIP;
    if (nonzero > 0)
        return because(w, "%ld of %zu output bytes were still set when the plugin's free released them "
                          "(wipe them in free: keymanager.h rule 3)", nonzero, watched_len);
    return CHECK_PASS;
#else
    (void)w;
    return because(w, "sanitizer build: the allocator is the sanitizer's"), CHECK_SKIP;
#endif
}

typedef struct manager_worker {
    const config_arg *cfg;
    char reason[300];
} manager_worker;

/* Each thread creates its own manager, uses it, destroys it. */
static void *manager_worker_main(void *arg)
{
    manager_worker *mw = arg;
    km_manager *m = NULL;
    char *error = NULL;
    int32_t status = do_create(factory, 1, mw->cfg->json, mw->cfg->len, &m, &error);
    if (status != KM_OK || !m) {
        snprintf(mw->reason, sizeof mw->reason, "create returned %s: %.200s", status_name(status),
                 error ? error : "(no message)");
    } else {
        for (int i = 0; i < OPS_PER_MANAGER && !mw->reason[0]; i++) {
            why w = {{0}};
            km_call_ctx ctx = call_ctx("km-conformance-managers");
            if (can_roundtrip) { /* same config, same keys: the main manager's ciphertext opens here */
                if (unwrap_through(m, &ctx, &w) != CHECK_PASS)
                    snprintf(mw->reason, sizeof mw->reason, "op %d: %.250s", i, w.text);
            } else { /* keys may be per manager (generated on create): ask for this one's */
                result r = {0};
                r.status = factory->ops->get_public_key(m, &ctx, "", &r.out, &r.out_len, &r.error);
                audit("get_public_key", &r);
                if (r.status != KM_OK)
                    snprintf(mw->reason, sizeof mw->reason, "op %d: get_public_key returned %s: %.200s", i,
                             status_name(r.status), error_text(&r));
                release(&r);
            }
        }
        factory->ops->destroy(m);
    }
    if (error)
        (plugin->free)(error);
    return NULL;
}

static int check_concurrent_managers(why *w, void *arg)
{
    pthread_t tids[MANAGER_THREADS];
    manager_worker workers[MANAGER_THREADS];
    int started = 0;
    for (int i = 0; i < MANAGER_THREADS; i++) {
        workers[i] = (manager_worker){.cfg = arg};
        if (pthread_create(&tids[i], NULL, manager_worker_main, &workers[i]) != 0)
            break;
        started++;
    }
    for (int i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    if (started != MANAGER_THREADS)
        return because(w, "could not start %d threads", MANAGER_THREADS);
    for (int i = 0; i < MANAGER_THREADS; i++)
        if (workers[i].reason[0])
            return because(w, "thread %d: %s", i, workers[i].reason);
    return CHECK_PASS;
}

/* ------------------------------------------------------------------ */
/* In a child process: a host offering ABI major 2; load/unload cycles  */

static volatile int major2_host_called;

static void major2_log(void *ctx, int32_t level, const char *request_id, const char *message)
{
    (void)ctx; (void)level; (void)request_id; (void)message;
    major2_host_called = 1;
}

static const char *child_reasons[] = {
    "ok", "dlopen failed", "no km_plugin_init",
    "called the log callback of a host whose ABI major differs",
    "returned a descriptor claiming ABI major 2",
    "km_plugin_init returned NULL on a later load", "create failed on a later load",
};

/* Runs `what` in a child so that a crash, or a plugin that cannot be
 * unloaded, stays there. Returns the child's reason index, or -1 on a crash. */
static int in_child(int (*what)(const char *, const config_arg *), const char *path, const config_arg *cfg)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return 0; /* cannot fork: nothing to report against the plugin */
    if (pid == 0)
        _exit(what(path, cfg));
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int child_major2(const char *path, const config_arg *cfg)
{
    (void)cfg;
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib)
        return 1;
    void *sym = dlsym(lib, "km_plugin_init");
    if (!sym)
        return 2;
    const km_plugin *(*init)(const km_host *);
    memcpy(&init, &sym, sizeof init);
    /* a major-2 host: same first three fields, the rest unknown to a 1.x plugin */
    struct { km_host h; uint8_t more[64]; } future;
    memset(&future, 0xA7, sizeof future);
    future.h.struct_size = sizeof future;
    future.h.abi_major = KM_ABI_VERSION_MAJOR + 1;
    future.h.abi_minor = 0;
    future.h.log = major2_log;
    const km_plugin *p = init(&future.h);
    if (major2_host_called)
        return 3;
    if (p && p->abi_major != KM_ABI_VERSION_MAJOR)
        return 4;
    return 0;
}

static int child_cycles(const char *path, const config_arg *cfg)
{
    for (int i = 0; i < LOAD_CYCLES; i++) {
        void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!lib)
            return 1;
        void *sym = dlsym(lib, "km_plugin_init");
        if (!sym)
            return 2;
        const km_plugin *(*init)(const km_host *);
        memcpy(&init, &sym, sizeof init);
        const km_plugin *p = init(&host);
        if (!p)
            return 5;
        if (cfg && cfg->json) {
            const km_factory *f = NULL;
            for (size_t j = 0; j < p->factory_count && !f; j++)
                if (p->factories[j] && factory && strcmp(p->factories[j]->manager_name, factory->manager_name) == 0)
                    f = p->factories[j];
            if (f) {
                km_manager *m = NULL;
                char *error = NULL;
                int32_t status = do_create(f, 1, cfg->json, cfg->len, &m, &error);
                if (error)
                    (p->free)(error);
                if (status != KM_OK || !m)
                    return 6;
                f->ops->destroy(m);
            }
        }
        dlclose(lib);
    }
    return 0;
}

static void report_child(const char *name, int rc)
{
    if (rc == 0)
        report_pass(name);
    else if (rc < 0)
        report_fail(name, "the plugin crashed the process");
    else
        report_fail(name, "%s", rc < (int)(sizeof child_reasons / sizeof *child_reasons) ? child_reasons[rc]
                                                                                    : "unexpected exit");
}

/* ------------------------------------------------------------------ */
/* An endpoint that accepts and never answers (--hung-endpoint-config)  */

enum hung_op { HUNG_CREATE, HUNG_PROBE, HUNG_WRAP, HUNG_UNWRAP, HUNG_PUBLIC_KEY };
static const char *hung_names[] = {"hung_endpoint.create", "hung_endpoint.probe", "hung_endpoint.wrap",
                                   "hung_endpoint.unwrap", "hung_endpoint.get_public_key"};

typedef struct hung_call {
    enum hung_op op;
    const config_arg *cfg; /* HUNG_CREATE */
    km_manager *m;         /* the manager called, or the one create made */
    result r;
} hung_call;

static void *hung_call_main(void *arg)
{
    hung_call *c = arg;
    km_call_ctx ctx = {.struct_size = sizeof ctx, .timeout_ms = HUNG_TIMEOUT_MS,
                       .request_id = "km-conformance-hung"};
    static const uint8_t in[32] = {1};
    const km_manager_ops *ops = factory->ops;
    result *r = &c->r;
    switch (c->op) {
    case HUNG_CREATE:
        r->status = has_create_ex(factory) ? factory->create_ex(&ctx, c->cfg->json, c->cfg->len, &c->m, &r->error)
                                           : factory->create(c->cfg->json, c->cfg->len, &c->m, &r->error);
        break;
    case HUNG_PROBE: r->status = ops->probe(c->m, &ctx, &r->error); break;
    case HUNG_WRAP: r->status = ops->wrap(c->m, &ctx, "", in, sizeof in, &r->out, &r->out_len, &r->error); break;
    case HUNG_UNWRAP: r->status = ops->unwrap(c->m, &ctx, "", in, sizeof in, &r->out, &r->out_len, &r->error); break;
    case HUNG_PUBLIC_KEY: r->status = ops->get_public_key(c->m, &ctx, "", &r->out, &r->out_len, &r->error); break;
    }
    return NULL;
}

/* Runs one call in a thread. A call still running after the guard has hung:
 * report, and end the process now (the thread is inside the plugin). */
static void hung_run(hung_call *c)
{
    pthread_t t;
    if (pthread_create(&t, NULL, hung_call_main, c) != 0) {
        report_fail(hung_names[c->op], "cannot start a thread");
        _exit(finish());
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until); /* pthread_timedjoin_np's clock */
    until.tv_sec += (HUNG_TIMEOUT_MS + HUNG_GUARD_MS) / 1000;
    if (pthread_timedjoin_np(t, NULL, &until) != 0) {
        report_fail(hung_names[c->op], "no answer %d s after its %d ms deadline: the call hangs",
                    HUNG_GUARD_MS / 1000, HUNG_TIMEOUT_MS);
        fflush(NULL);
        _exit(finish());
    }
}

static void check_hung_endpoint(const config_arg *cfg)
{
    hung_call create = {.op = HUNG_CREATE, .cfg = cfg};
    hung_run(&create);
    const char *problem = error_problem(create.r.error);
    if (problem)
        report_fail(hung_names[HUNG_CREATE], "its error message is %s", problem);
    else if (create.r.status != KM_OK)
        report_pass(hung_names[HUNG_CREATE]); /* gave up on the endpoint in time */
    else if (!create.m)
        report_fail(hung_names[HUNG_CREATE], "KM_OK without a manager");
    else
        report_pass(hung_names[HUNG_CREATE]);
    if (create.r.error)
        (plugin->free)(create.r.error);
    if (create.r.status != KM_OK || !create.m) {
        report_skip("hung_endpoint.calls", "create answered %s: no manager to call", status_name(create.r.status));
        return;
    }
    const km_manager_ops *ops = factory->ops;
    uint32_t caps = factory->capabilities;
    const int offered[] = {[HUNG_PROBE] = ops->probe != NULL,
                           [HUNG_WRAP] = (caps & KM_CAP_WRAP) && ops->wrap,
                           [HUNG_UNWRAP] = (caps & KM_CAP_UNWRAP) && ops->unwrap,
                           [HUNG_PUBLIC_KEY] = (caps & KM_CAP_PUBLIC_KEY) && ops->get_public_key};
    for (int op = HUNG_PROBE; op <= HUNG_PUBLIC_KEY; op++) {
        if (!offered[op])
            continue;
        hung_call c = {.op = (enum hung_op)op, .m = create.m};
        hung_run(&c);
        problem = error_problem(c.r.error);
        if (c.r.status == KM_OK)
            report_fail(hung_names[op], "answered KM_OK, but the endpoint never answers");
        else if (c.r.status < 0 || c.r.status > LAST_STATUS)
            report_fail(hung_names[op], "returned status %d, outside the KM_* enum", (int)c.r.status);
        else if (c.r.out)
            report_fail(hung_names[op], "returned %s with a non-NULL output", status_name(c.r.status));
        else if (problem)
            report_fail(hung_names[op], "its error message is %s", problem);
        else
            report_pass(hung_names[op]);
        release(&c.r);
    }
    ops->destroy(create.m);
}

/* ------------------------------------------------------------------ */
/* Driver                                                               */

static int read_config(const char *path, char **out, size_t *out_len, why *w)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f)
        return because(w, "cannot open %s: %s", path, strerror(errno)), -1;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            if (cap >= MAX_CONFIG_BYTES) {
                because(w, "%s is larger than %u bytes", path, MAX_CONFIG_BYTES);
                free(buf);
                buf = NULL;
                break;
            }
            char *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                because(w, "cannot read %s: %s", path, strerror(errno));
                free(buf);
                buf = NULL;
            }
            break;
        }
    }
    if (f != stdin)
        fclose(f);
    if (!buf) {
        if (!w->text[0])
            because(w, "out of memory reading %s", path);
        return -1;
    }
    *out = buf;
    *out_len = n;
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: km-conformance [-v] [--manager NAME] [--iterations N] [--hung-endpoint-config FILE] "
                    "PLUGIN.so [CONFIG.json|-]\n");
}

int main(int argc, char **argv)
{
    const char *manager_name = NULL, *plugin_path = NULL, *config_path = NULL, *hung_path = NULL;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--manager") == 0 && i + 1 < argc) {
            manager_name = argv[++i];
        } else if (strcmp(argv[i], "--hung-endpoint-config") == 0 && i + 1 < argc) {
            hung_path = argv[++i];
        } else if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 1000000) {
                fprintf(stderr, "km-conformance: --iterations wants a number from 1 to 1000000\n");
                return 2;
            }
            iterations = (int)v;
        } else if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--verbose") == 0) {
            verbose = 1;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage();
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "km-conformance: unknown option %s\n", argv[i]);
            usage();
            return 2;
        } else if (!plugin_path) {
            plugin_path = argv[i];
        } else if (!config_path) {
            config_path = argv[i];
        } else {
            usage();
            return 2;
        }
    }
    if (!plugin_path) {
        usage();
        return 2;
    }

    /* dlopen searches the library path for bare names: make them relative. */
    host.log_level = verbose ? KM_LOG_DEBUG : KM_LOG_INFO;
    char *path = malloc(strlen(plugin_path) + 3);
    if (!path)
        return 3;
    sprintf(path, "%s%s", strchr(plugin_path, '/') ? "" : "./", plugin_path);
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        free(path);
        report_fail("load", "%s", dlerror());
        return finish();
    }
    report_pass("load");
    typedef const km_plugin *(*init_fn)(const km_host *);
    dlerror();
    void *sym = dlsym(lib, "km_plugin_init");
    if (!sym) {
        report_fail("entry_point", "%s does not export km_plugin_init", plugin_path);
        return finish();
    }
    report_pass("entry_point");
    init_fn init;
    memcpy(&init, &sym, sizeof init); /* object pointer -> function pointer, as POSIX allows */
    plugin = init(&host);
    if (!plugin) {
        report_fail("init", "km_plugin_init returned NULL");
        return finish();
    }
    report_pass("init");
    if (check_descriptor() < 0) {
        free(path);
        return finish();
    }
    report_child("abi.host_major_2", in_child(child_major2, path, NULL));

    /* {"a": followed by [[[... for 1 MB: a JSON object nested far too deep */
    char *nested = malloc(NESTED_CONFIG_BYTES);
    if (nested) {
        memset(nested, '[', NESTED_CONFIG_BYTES);
        memcpy(nested, "{\"a\":", 5);
    }
    for (size_t i = 0; i < plugin->factory_count; i++) {
        const km_factory *f = plugin->factories[i];
        if (!f || !f->create || !f->ops || !f->ops->destroy || !valid_name(f->manager_name))
            continue;
        check_create_rejects(f, "invalid_json", "{not json", 9, -1);
        check_create_rejects(f, "json_array", "[]", 2, -1);
        check_create_rejects(f, "empty", "", 0, -1);
        static const char non_utf8[] = "{\"default_key_id\": \"k\xff\xfe\xc0\x80\"}";
        static const char non_utf8_name[] = "{\"k\xff\xfe\xc0\x80\": 1}"; /* echoed by "unknown field" errors */
        check_create_rejects(f, "non_utf8", non_utf8, sizeof non_utf8 - 1, KM_ERR_INVALID_ARGUMENT);
        check_create_rejects(f, "non_utf8_name", non_utf8_name, sizeof non_utf8_name - 1, KM_ERR_INVALID_ARGUMENT);
        if (nested) {
            check_create_rejects(f, "nested_array", nested + 5, NESTED_CONFIG_BYTES - 5, KM_ERR_INVALID_ARGUMENT);
            check_create_rejects(f, "nested_object", nested, NESTED_CONFIG_BYTES, KM_ERR_INVALID_ARGUMENT);
        }
    }
    free(nested);

    for (size_t i = 0; i < plugin->factory_count && !factory; i++) {
        const km_factory *f = plugin->factories[i];
        if (f && (!manager_name || (f->manager_name && strcmp(f->manager_name, manager_name) == 0)))
            factory = f;
    }
    if (!factory) {
        free(path);
        report_fail("manager", "the plugin has no manager named \"%s\"", manager_name);
        return finish();
    }
    if (hung_path) {
        config_arg hung = {0};
        why hw = {{0}};
        if (read_config(hung_path, (char **)&hung.json, &hung.len, &hw) < 0) {
            free(path);
            report_fail("hung_endpoint.config", "%s", hw.text);
            return finish();
        }
        check_hung_endpoint(&hung);
        free((char *)hung.json);
    }
    if (!config_path) {
        report_child("load_unload_cycles", in_child(child_cycles, path, NULL));
        free(path);
        report_skip("create", "no config given; manager checks not run");
        return finish();
    }
    config_arg cfg = {0};
    why w = {{0}};
    if (read_config(config_path, (char **)&cfg.json, &cfg.len, &w) < 0) {
        free(path);
        report_fail("config", "%s", w.text);
        return finish();
    }
    report_child("load_unload_cycles", in_child(child_cycles, path, &cfg));
    free(path);
    char *create_error = NULL;
    int32_t status = do_create(factory, 1, cfg.json, cfg.len, &mgr, &create_error);
    if (status != KM_OK || !mgr) {
        report_fail("create", "%s returned %s: %s", factory->manager_name, status_name(status),
                    create_error ? create_error : "(no message)");
        if (create_error)
            plugin->free(create_error);
        free((char *)cfg.json);
        return finish();
    }
    if (create_error)
        plugin->free(create_error);
    report_pass("create");
    /* A few cycles find leaks and double frees; thousands would only be slow
     * for plugins whose create is expensive (HSM login, key generation). */
    run_check("create.destroy_cycle", check_create_destroy, &cfg, iterations < 100 ? iterations : 100);

    uint32_t caps = factory->capabilities;
    const km_manager_ops *ops = factory->ops;
    if (ops->probe)
        run_check("probe", check_probe, NULL, 1);
    else
        report_skip("probe", "the manager has no probe");

    int have_wrap = (caps & KM_CAP_WRAP) && ops->wrap, have_unwrap = (caps & KM_CAP_UNWRAP) && ops->unwrap;
    if ((caps & KM_CAP_PUBLIC_KEY) && ops->get_public_key) {
        run_check("public_key", check_public_key, NULL, 1);
        run_check("public_key.unknown_key", check_public_key_unknown, NULL, iterations);
    } else {
        report_skip("public_key", "KM_CAP_PUBLIC_KEY not set");
    }
    if (pubkey && pubkey_is_rsa && have_unwrap) {
        if (run_check("unwrap.rsa_oaep", check_rsa_oaep_unwrap, NULL, iterations) == CHECK_PASS)
            data_path_checks++;
    } else if (pubkey && have_unwrap) {
        report_skip("unwrap.rsa_oaep", "the default key is not RSA");
    }
    if (pubkey && pubkey_is_ec && have_unwrap) {
        if (run_check("unwrap.ecdh", check_ecdh_unwrap, NULL, iterations) == CHECK_PASS)
            data_path_checks++;
    } else if (pubkey && have_unwrap) {
        report_skip("unwrap.ecdh", "the default key is not EC");
    }

    if (have_wrap && have_unwrap) {
        static const size_t sizes[] = {32, 1, 4096};
        static const char *names[] = {"roundtrip.32", "roundtrip.1", "roundtrip.4096"};
        for (int i = 0; i < 3; i++) {
            int outcome = run_check(names[i], check_roundtrip, (void *)&sizes[i], iterations);
            if (outcome == CHECK_PASS)
                data_path_checks++;
            if (outcome == CHECK_SKIP)
                break;
        }
    } else {
        report_skip("roundtrip", "KM_CAP_WRAP and KM_CAP_UNWRAP not both set");
    }

    if (have_unwrap && (can_roundtrip || pubkey_is_rsa)) {
        static const int middle = 0, last = 1;
        run_check("tamper.middle", check_tamper, (void *)&middle, iterations);
        run_check("tamper.last", check_tamper, (void *)&last, iterations);
        run_check("unwrap.short", check_unwrap_short, NULL, iterations);
        static const int unwrap = 1;
        run_check("unknown_key.unwrap", check_unknown_key, (void *)&unwrap, iterations);
    } else {
        report_skip("tamper", "no way to produce a ciphertext for the default key");
    }
    if (can_roundtrip) {
        static const int wrap = 0;
        run_check("unknown_key.wrap", check_unknown_key, (void *)&wrap, iterations);
    }

    if (have_unwrap && (can_roundtrip || pubkey_is_rsa)) {
        run_check("ctx.smaller", check_ctx_smaller, &cfg, 1);
        run_check("ctx.larger", check_ctx_larger, NULL, 1);
        run_check("wipe", check_wipe, NULL, 1);
        if (can_roundtrip || ((caps & KM_CAP_PUBLIC_KEY) && ops->get_public_key))
            run_check("concurrent_managers", check_concurrent_managers, &cfg, 1);
    } else {
        report_skip("ctx", "no data path to exercise");
    }

    if (!(caps & KM_CAP_THREAD_SAFE))
        report_skip("concurrency", "not flagged KM_CAP_THREAD_SAFE");
    else if (!(have_unwrap && (can_roundtrip || pubkey_is_rsa)))
        report_skip("concurrency", "no data path to exercise");
    else
        run_check("concurrency", check_concurrency, NULL, 1);

    if (data_path_checks > 0)
        report_pass("coverage");
    else
        report_fail("coverage", "no wrap/unwrap or public-key unwrap check ran on the default key");

    if (violation_count)
        report_fail("status_codes", "%d contract violation(s); first: %s", violation_count, first_violation);
    else
        report_pass("status_codes");

    ops->destroy(mgr);
    mgr = NULL;
    report_pass("destroy");
    EVP_PKEY_free(pubkey);
    free((char *)cfg.json);
    return finish();
}
