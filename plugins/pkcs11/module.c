/* module.c -- load, initialize and share PKCS#11 libraries (see module.h). */
#define _GNU_SOURCE
#include "module.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "ckr.h"
#include "keymanager.h"

#define MAX_LOGIN_RECORDS 32

/* Which PIN last logged a slot in: a salted digest, never the PIN. */
struct login_record {
    CK_SLOT_ID slot;
    unsigned char digest[32];
};

struct p11_module {
    void *dl;
    CK_FUNCTION_LIST_PTR f;
    int refs;
    int we_initialized;         /* we called C_Initialize, so we finalize */
    pthread_mutex_t login_lock;
    struct login_record logins[MAX_LOGIN_RECORDS];
    size_t n_logins;
    p11_module *next;
};

/* All loaded modules; guarded by registry_lock. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static p11_module *registry;
static unsigned char pin_salt[32];
static int pin_salt_ready;

CK_FUNCTION_LIST_PTR p11_module_functions(const p11_module *m)
{
    return m->f;
}

int p11_module_acquire(const char *path, p11_module **out, char *err, size_t errlen)
{
    *out = NULL;
    /* RTLD_LOCAL: the module's symbols stay out of the global namespace. */
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        const char *why = dlerror();
        snprintf(err, errlen, "pkcs11: cannot load module %s: %s", path,
                 why ? why : "unknown error");
        return KM_ERR_INVALID_ARGUMENT;
    }
    pthread_mutex_lock(&registry_lock);
    if (!pin_salt_ready) {
        if (RAND_bytes(pin_salt, sizeof pin_salt) != 1) {
            pthread_mutex_unlock(&registry_lock);
            dlclose(dl);
            snprintf(err, errlen, "pkcs11: no randomness for the PIN digest salt");
            return KM_ERR_INTERNAL;
        }
        pin_salt_ready = 1;
    }
    for (p11_module *m = registry; m; m = m->next) {
        if (m->dl == dl) {
            /* Same library: share it; dlopen took an extra reference. */
            m->refs++;
            pthread_mutex_unlock(&registry_lock);
            dlclose(dl);
            *out = m;
            return KM_OK;
        }
    }

    int status = KM_ERR_INTERNAL;
    p11_module *m = calloc(1, sizeof *m);
    CK_C_GetFunctionList get_list = NULL;
    *(void **)&get_list = dlsym(dl, "C_GetFunctionList");
    if (!m) {
        snprintf(err, errlen, "pkcs11: out of memory");
        goto fail;
    }
    if (!get_list) {
        snprintf(err, errlen, "pkcs11: %s is not a PKCS#11 library (no C_GetFunctionList)", path);
        status = KM_ERR_INVALID_ARGUMENT;
        goto fail;
    }
    CK_RV rv = get_list(&m->f);
    if (rv != CKR_OK || !m->f) {
        snprintf(err, errlen, "pkcs11: %s: C_GetFunctionList failed: %s", path, ckr_name(rv));
        status = KM_ERR_INVALID_ARGUMENT;
        goto fail;
    }
    if (m->f->version.major != 2) {
        snprintf(err, errlen, "pkcs11: %s implements Cryptoki %u.%u; this plugin needs 2.x",
                 path, m->f->version.major, m->f->version.minor);
        status = KM_ERR_INVALID_ARGUMENT;
        goto fail;
    }
    /* The library locks with OS primitives; we call it from many threads. */
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof args);
    args.flags = CKF_OS_LOCKING_OK;
    rv = m->f->C_Initialize(&args);
    if (rv == CKR_OK) {
        m->we_initialized = 1;
    } else if (rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        snprintf(err, errlen, "pkcs11: %s: C_Initialize failed: %s", path, ckr_name(rv));
        status = rv == CKR_CANT_LOCK ? KM_ERR_INTERNAL : ckr_status(rv);
        goto fail;
    }
    m->dl = dl;
    m->refs = 1;
    pthread_mutex_init(&m->login_lock, NULL);
    m->next = registry;
    registry = m;
    pthread_mutex_unlock(&registry_lock);
    *out = m;
    return KM_OK;

fail:
    pthread_mutex_unlock(&registry_lock);
    free(m);
    dlclose(dl);
    return status;
}

void p11_module_release(p11_module *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&registry_lock);
    if (--m->refs > 0) {
        pthread_mutex_unlock(&registry_lock);
        return;
    }
    for (p11_module **p = &registry; *p; p = &(*p)->next) {
        if (*p == m) {
            *p = m->next;
            break;
        }
    }
    if (m->we_initialized)
        m->f->C_Finalize(NULL);
    pthread_mutex_unlock(&registry_lock);
    pthread_mutex_destroy(&m->login_lock);
    OPENSSL_cleanse(m->logins, sizeof m->logins);
    dlclose(m->dl);
    free(m);
}

static int pin_digest(CK_SLOT_ID slot, const char *pin, size_t pin_len, unsigned char out[32])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int n = 0;
    int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(md, pin_salt, sizeof pin_salt) &&
             EVP_DigestUpdate(md, &slot, sizeof slot) &&
             EVP_DigestUpdate(md, pin, pin_len) && EVP_DigestFinal_ex(md, out, &n) && n == 32;
    EVP_MD_CTX_free(md);
    return ok ? 0 : -1;
}

static struct login_record *find_record(p11_module *m, CK_SLOT_ID slot)
{
    for (size_t i = 0; i < m->n_logins; i++)
        if (m->logins[i].slot == slot)
            return &m->logins[i];
    return NULL;
}

CK_RV p11_module_login(p11_module *m, CK_SESSION_HANDLE session, CK_SLOT_ID slot,
                       const char *pin, size_t pin_len)
{
    unsigned char digest[32];
    CK_SESSION_INFO info;
    if (pin_digest(slot, pin, pin_len, digest) < 0)
        return CKR_HOST_MEMORY;

    pthread_mutex_lock(&m->login_lock);
    struct login_record *rec = find_record(m, slot);
    CK_RV rv = m->f->C_GetSessionInfo(session, &info);
    if (rv != CKR_OK)
        goto out;
    if (info.state == CKS_RO_USER_FUNCTIONS || info.state == CKS_RW_USER_FUNCTIONS) {
        /* Already logged in. If we know which PIN did it, ours must match;
         * a login by someone else in the process is taken as is. */
        if (rec && CRYPTO_memcmp(rec->digest, digest, sizeof digest) != 0)
            rv = CKR_PIN_INCORRECT;
        goto out;
    }
    rv = m->f->C_Login(session, CKU_USER, (CK_UTF8CHAR_PTR)pin, (CK_ULONG)pin_len);
    if (rv == CKR_USER_ALREADY_LOGGED_IN)
        rv = CKR_OK;
    if (rv != CKR_OK)
        goto out;
    if (!rec && m->n_logins < MAX_LOGIN_RECORDS) {
        rec = &m->logins[m->n_logins++];
        rec->slot = slot;
    }
    if (rec)
        memcpy(rec->digest, digest, sizeof digest);
out:
    pthread_mutex_unlock(&m->login_lock);
    OPENSSL_cleanse(digest, sizeof digest);
    return rv;
}
