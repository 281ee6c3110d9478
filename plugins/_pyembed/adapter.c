/*
 * adapter.c -- the C side of a Python key-manager plugin (cffi embedding).
 *
 * build.py compiles this file (via ffi.set_source) once per plugin, after
 * defining the KM_PYEMBED_* macros from the plugin's plugin.toml. It owns
 * every C-side concern so that plugin authors only write a Python class:
 *
 *   - the km_plugin descriptor, the one factory and its ops table;
 *   - starting Python when a plain C host loaded us (promoting libpython to
 *     RTLD_GLOBAL first, pointing Python at the venv found relative to the
 *     .so), or sharing the
 *     interpreter when the Python host loaded us;
 *   - buffers: inputs are handed to Python, which copies them; outputs and
 *     error strings are allocated here and released by km_pyembed_free,
 *     which clears them first;
 *   - a status check on every Python result (KM_OK must carry an output).
 *
 * The Python side (km_pyembed/runtime.py) implements the extern "Python"
 * callbacks declared below and maps exceptions to KM_* codes.
 */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keymanager.h"

#define KM_EXPORT __attribute__((visibility("default")))
/* ops the declaration leaves out are compiled but not referenced */
#define KM_MAYBE_UNUSED __attribute__((unused))

/* ---- Python callbacks (runtime.py), static per cffi's extern "Python" -- */
static int32_t km_py_ready(void);
static int32_t km_py_create(const char *config, size_t config_len,
                            uint64_t *handle, char **error);
static int32_t km_py_call(uint64_t handle, int32_t op, uint32_t timeout_ms,
                          const char *request_id, const char *key_id,
                          const uint8_t *in, size_t in_len,
                          uint8_t **out, size_t *out_len, char **error);
static void km_py_destroy(uint64_t handle);

/* Operation numbers shared with runtime.py. */
#define KM_PYEMBED_OP_WRAP 1
#define KM_PYEMBED_OP_UNWRAP 2
#define KM_PYEMBED_OP_PUBLIC_KEY 3
#define KM_PYEMBED_OP_PROBE 4

/* ---- Memory: every buffer handed to the host ---------------------------
 * A 16-byte header records the size so that free can clear the bytes
 * (outputs may be key material) before releasing them. One extra zero byte
 * terminates every buffer so strings and PEM text are NUL-terminated. */
#define KM_PYEMBED_HDR 16

static void *km_pyembed_alloc(size_t n)
{
    if (n > SIZE_MAX - KM_PYEMBED_HDR - 1)
        return NULL;
    unsigned char *base = malloc(KM_PYEMBED_HDR + n + 1);
    if (base == NULL)
        return NULL;
    memcpy(base, &n, sizeof n);
    base[KM_PYEMBED_HDR + n] = 0;
    return base + KM_PYEMBED_HDR;
}

static void km_pyembed_free(void *ptr)
{
    if (ptr == NULL)
        return;
    unsigned char *base = (unsigned char *)ptr - KM_PYEMBED_HDR;
    size_t n;
    memcpy(&n, base, sizeof n);
    explicit_bzero(base, KM_PYEMBED_HDR + n + 1);
    free(base);
}

/* Called by runtime.py: copy `data` into a fresh host-owned buffer. */
static int km_pyembed_set_bytes(uint8_t **out, size_t *out_len,
                                const char *data, size_t n)
{
    uint8_t *buf = km_pyembed_alloc(n);
    if (buf == NULL)
        return -1;
    if (n)
        memcpy(buf, data, n);
    *out = buf;
    *out_len = n;
    return 0;
}

static int km_pyembed_set_error(char **error, const char *message)
{
    if (error == NULL)
        return 0;
    size_t n = strlen(message);
    char *buf = km_pyembed_alloc(n);
    if (buf == NULL)
        return -1;
    memcpy(buf, message, n);
    *error = buf;
    return 0;
}

/* ---- Host logging -------------------------------------------------------- */
static km_log_fn km_host_log;
static void *km_host_log_ctx;

static const km_host *km_the_host; /* valid until unload */

/* The host's threshold (1.1): Python skips formatting lines it would drop. */
static int32_t km_pyembed_log_level(void)
{
    if (km_the_host != NULL
        && km_the_host->struct_size >= offsetof(km_host, log_level) + sizeof km_the_host->log_level)
        return km_the_host->log_level;
    return KM_LOG_DEBUG;
}

static int km_pyembed_has_log(void) { return km_host_log != NULL; }

static void km_pyembed_log(int32_t level, const char *request_id, const char *message)
{
    if (km_host_log != NULL && level >= km_pyembed_log_level())
        (km_host_log)(km_host_log_ctx, level, request_id, message);
}

/* ---- Where this plugin is ---------------------------------------------------
 * Everything the plugin needs is found relative to the .so itself, so a build
 * tree or an install moved as a whole keeps working: the Python source dirs
 * (build.py bakes them relative to the .so; runtime resolves them with
 * km_pyembed_self_dir) and, for a plain C host, the interpreter below. */
KM_EXPORT const km_plugin *km_plugin_init(const km_host *host);

static char km_self_dir_buf[PATH_MAX];
static pthread_once_t km_self_dir_once = PTHREAD_ONCE_INIT;

static void km_find_self_dir(void)
{
    Dl_info info;
    char resolved[PATH_MAX];
    if (!dladdr((void *)&km_plugin_init, &info) || info.dli_fname == NULL
        || realpath(info.dli_fname, resolved) == NULL)
        return; /* "" -> relative dirs resolve against the working directory */
    char *slash = strrchr(resolved, '/');
    if (slash != NULL)
        *slash = 0;
    snprintf(km_self_dir_buf, sizeof km_self_dir_buf, "%s", resolved[0] ? resolved : "/");
}

static const char *km_pyembed_self_dir(void)
{
    pthread_once(&km_self_dir_once, km_find_self_dir);
    return km_self_dir_buf;
}

/* The interpreter of the virtual environment the plugin is installed in: the
 * nearest directory at or above the .so holding pyvenv.cfg, or a .venv/ that
 * does (a checkout: build/plugins/ next to .venv/). Bounded by the path depth. */
static int km_find_venv_python(char *python, size_t size)
{
    static const char *const layouts[] = {"", "/.venv"};
    char dir[PATH_MAX], probe[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", km_pyembed_self_dir());
    while (dir[0] == '/') {
        for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
            const char *base = strcmp(dir, "/") == 0 ? "" : dir;
            if ((size_t)snprintf(probe, sizeof probe, "%s%s/pyvenv.cfg", base, layouts[i]) >= sizeof probe
                || access(probe, R_OK) != 0)
                continue;
            if ((size_t)snprintf(python, size, "%s%s/bin/python3", base, layouts[i]) < size
                && access(python, X_OK) == 0)
                return 0;
        }
        char *slash = strrchr(dir, '/');
        if (slash == dir) {
            if (dir[1] == 0)
                break;
            dir[1] = 0; /* last round: "/" itself */
        } else {
            *slash = 0;
        }
    }
    return -1;
}

/* ---- Starting Python ------------------------------------------------------
 * Loaded by the Python host, the interpreter is already running: share it.
 * Loaded by a plain C host with dlopen(RTLD_LOCAL), libpython came in as our
 * dependency in a local scope, where extension modules (e.g. _cffi_backend)
 * cannot resolve its symbols: re-open it RTLD_GLOBAL first. Then start
 * Python as a venv's interpreter, so `site` adds that venv's site-packages:
 * KM_PYEMBED_PYTHON if set, else the venv the plugin is installed in, else
 * the interpreter that built it (a plugin built outside any venv tree). */
static pthread_mutex_t km_boot_lock = PTHREAD_MUTEX_INITIALIZER;

static void km_boot_log(int32_t level, const char *message)
{
    km_pyembed_log(level, NULL, message);
}

static void km_promote_libpython(void)
{
    Dl_info info;
    if (dladdr((void *)&Py_IsInitialized, &info) && info.dli_fname != NULL) {
        void *h = dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
        if (h == NULL)
            km_boot_log(KM_LOG_WARN, "pyembed: could not promote libpython to RTLD_GLOBAL");
        /* keep the reference: libpython must outlive the interpreter */
    }
}

static int km_choose_python(char *python, size_t size)
{
    const char *env = getenv("KM_PYEMBED_PYTHON");
    if (env != NULL && env[0] != 0)
        return (size_t)snprintf(python, size, "%s", env) < size ? 0 : -1;
    if (km_find_venv_python(python, size) == 0)
        return 0;
    if (access(KM_PYEMBED_BUILD_PYTHON, X_OK) == 0)
        return (size_t)snprintf(python, size, "%s", KM_PYEMBED_BUILD_PYTHON) < size ? 0 : -1;
    return -1;
}

static int km_start_python(void)
{
    pthread_mutex_lock(&km_boot_lock);
    if (Py_IsInitialized()) {
        pthread_mutex_unlock(&km_boot_lock);
        return 0;
    }
    char python[PATH_MAX];
    if (km_choose_python(python, sizeof python) != 0) {
        km_boot_log(KM_LOG_ERROR, "pyembed: no Python found: no pyvenv.cfg (or .venv/) at or above the plugin's "
                                  "directory; set KM_PYEMBED_PYTHON to the interpreter of the venv with its packages");
        pthread_mutex_unlock(&km_boot_lock);
        return -1;
    }
    km_promote_libpython();

    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.install_signal_handlers = 0; /* the host owns the signals */
    config.parse_argv = 0;
    PyStatus status = PyConfig_SetBytesString(&config, &config.program_name, python);
    if (!PyStatus_Exception(status))
        status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) {
        km_boot_log(KM_LOG_ERROR, "pyembed: Python failed to start (check KM_PYEMBED_PYTHON / PYTHONHOME)");
        pthread_mutex_unlock(&km_boot_lock);
        return -1;
    }
    PyEval_SaveThread(); /* release the GIL; calls take it with PyGILState */
    pthread_mutex_unlock(&km_boot_lock);
    return 0;
}

/* ---- The manager ----------------------------------------------------------- */
struct km_manager {
    uint64_t handle; /* key of the Python instance in runtime.py's table */
};

static int km_host_minor_at_least(uint16_t minor)
{
    return km_the_host != NULL && km_the_host->abi_minor >= minor;
}

/* A Python result of KM_OK without an output would break the host. */
static int32_t km_checked(int32_t status, uint8_t **out, char **error)
{
    if (status == KM_OK && out != NULL && *out == NULL) {
        km_pyembed_set_error(error, "pyembed: manager returned no output");
        return KM_ERR_INTERNAL;
    }
    if (status < KM_OK || status > KM_ERR_FAILED_PRECONDITION)
        return KM_ERR_INTERNAL;
    if (status == KM_ERR_FAILED_PRECONDITION && !km_host_minor_at_least(1))
        return KM_ERR_INVALID_ARGUMENT; /* rule 6: a 1.0 host does not know it */
    if (status != KM_OK && out != NULL && *out != NULL) { /* rule 3: a failure leaves *out NULL */
        km_pyembed_free(*out);
        *out = NULL;
    }
    return status;
}

static int32_t km_op(km_manager *mgr, int32_t op, const km_call_ctx *ctx,
                     const char *key_id, const uint8_t *in, size_t in_len,
                     uint8_t **out, size_t *out_len, char **error)
{
    uint32_t timeout_ms = 0;
    const char *request_id = NULL;
    if (error != NULL)
        *error = NULL;
    if (mgr == NULL || (op != KM_PYEMBED_OP_PROBE && (out == NULL || out_len == NULL))) {
        km_pyembed_set_error(error, "pyembed: NULL manager or output pointer");
        return KM_ERR_INVALID_ARGUMENT;
    }
    if (out != NULL) {
        *out = NULL;
        *out_len = 0;
    }
    /* struct_size: read only the fields this host compiled in */
    if (ctx != NULL && ctx->struct_size >= offsetof(km_call_ctx, timeout_ms) + sizeof ctx->timeout_ms)
        timeout_ms = ctx->timeout_ms;
    if (ctx != NULL && ctx->struct_size >= offsetof(km_call_ctx, request_id) + sizeof ctx->request_id)
        request_id = ctx->request_id;
    if (in == NULL && in_len != 0) {
        km_pyembed_set_error(error, "pyembed: NULL input with non-zero length");
        return KM_ERR_INVALID_ARGUMENT;
    }
    int32_t status = km_py_call(mgr->handle, op, timeout_ms, request_id,
                                key_id != NULL ? key_id : "", in, in_len,
                                out, out_len, error);
    return km_checked(status, out, error);
}

KM_MAYBE_UNUSED static int32_t km_wrap(km_manager *mgr, const km_call_ctx *ctx, const char *key_id,
                       const uint8_t *plain, size_t plain_len,
                       uint8_t **out, size_t *out_len, char **error)
{
    return km_op(mgr, KM_PYEMBED_OP_WRAP, ctx, key_id, plain, plain_len, out, out_len, error);
}

KM_MAYBE_UNUSED static int32_t km_unwrap(km_manager *mgr, const km_call_ctx *ctx, const char *key_id,
                         const uint8_t *wrapped, size_t wrapped_len,
                         uint8_t **out, size_t *out_len, char **error)
{
    return km_op(mgr, KM_PYEMBED_OP_UNWRAP, ctx, key_id, wrapped, wrapped_len, out, out_len, error);
}

KM_MAYBE_UNUSED static int32_t km_public_key(km_manager *mgr, const km_call_ctx *ctx, const char *key_id,
                             uint8_t **out, size_t *out_len, char **error)
{
    return km_op(mgr, KM_PYEMBED_OP_PUBLIC_KEY, ctx, key_id, NULL, 0, out, out_len, error);
}

KM_MAYBE_UNUSED static int32_t km_probe(km_manager *mgr, const km_call_ctx *ctx, char **error)
{
    return km_op(mgr, KM_PYEMBED_OP_PROBE, ctx, "", NULL, 0, NULL, NULL, error);
}

static void km_destroy(km_manager *mgr)
{
    if (mgr == NULL)
        return;
    km_py_destroy(mgr->handle);
    explicit_bzero(mgr, sizeof *mgr);
    free(mgr);
}

static int32_t km_create(const char *config_json, size_t config_len,
                         km_manager **mgr, char **error)
{
    if (error != NULL)
        *error = NULL;
    if (mgr == NULL) {
        km_pyembed_set_error(error, "pyembed: NULL manager pointer");
        return KM_ERR_INVALID_ARGUMENT;
    }
    *mgr = NULL;
    if (config_json == NULL && config_len != 0) {
        km_pyembed_set_error(error, "pyembed: NULL config with non-zero length");
        return KM_ERR_INVALID_ARGUMENT;
    }
    km_manager *m = calloc(1, sizeof *m);
    if (m == NULL) {
        km_pyembed_set_error(error, "pyembed: out of memory");
        return KM_ERR_INTERNAL;
    }
    int32_t status = km_py_create(config_json != NULL ? config_json : "", config_len,
                                  &m->handle, error);
    if (status != KM_OK) {
        free(m);
        return (status > KM_OK && status <= KM_ERR_CRYPTO) ? status : KM_ERR_INTERNAL;
    }
    *mgr = m;
    return KM_OK;
}

static const km_manager_ops km_ops = {
    .struct_size = sizeof(km_manager_ops),
#if KM_PYEMBED_HAS_WRAP
    .wrap = km_wrap,
#endif
#if KM_PYEMBED_HAS_UNWRAP
    .unwrap = km_unwrap,
#endif
#if KM_PYEMBED_HAS_PUBLIC_KEY
    .get_public_key = km_public_key,
#endif
#if KM_PYEMBED_HAS_PROBE
    .probe = km_probe,
#endif
    .destroy = km_destroy,
};

static const km_factory km_the_factory = {
    .struct_size = sizeof(km_factory),
    .manager_name = KM_PYEMBED_MANAGER_NAME,
    .capabilities = KM_PYEMBED_CAPABILITIES,
    .create = km_create,
    .ops = &km_ops,
};

static const km_factory *const km_factories[] = {&km_the_factory};

static const km_plugin km_descriptor = {
    .struct_size = sizeof(km_plugin),
    .abi_major = KM_ABI_VERSION_MAJOR,
    .abi_minor = KM_ABI_VERSION_MINOR,
    .plugin_name = KM_PYEMBED_PLUGIN_NAME,
    .plugin_version = KM_PYEMBED_PLUGIN_VERSION,
    .factories = km_factories,
    .factory_count = 1,
    .free = km_pyembed_free,
};

KM_EXPORT const km_plugin *km_plugin_init(const km_host *host)
{
    /* A host of another major: its km_host beyond the first three fields
     * (the log callback included) has an unknown layout; use none of it. */
    if (host != NULL && host->abi_major != KM_ABI_VERSION_MAJOR)
        return NULL;
    if (host != NULL && host->struct_size >= offsetof(km_host, log_ctx) + sizeof host->log_ctx) {
        km_the_host = host;
        km_host_log = host->log;
        km_host_log_ctx = host->log_ctx;
    }
    /* Start (or join) Python now so a plugin that cannot run is refused at
     * load time with a logged reason, not at its first call. */
    if (km_start_python() != 0 || cffi_start_python() != 0)
        return NULL;
    if (km_py_ready() != 0)
        return NULL; /* runtime.py logged why */
    return &km_descriptor;
}
