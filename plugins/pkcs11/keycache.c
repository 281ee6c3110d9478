/* keycache.c -- find keys by label, and cache their handles (see keycache.h). */
#define _POSIX_C_SOURCE 200809L
#include "ckr.h"
#include "keycache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keymanager.h"

void keycache_init(keycache *c)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->lock, NULL);
}

static void clear_locked(keycache *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->entries[i].label);
    c->n = 0;
}

void keycache_destroy(keycache *c)
{
    clear_locked(c);
    pthread_mutex_destroy(&c->lock);
}

void keycache_clear(keycache *c)
{
    pthread_mutex_lock(&c->lock);
    clear_locked(c);
    pthread_mutex_unlock(&c->lock);
}

int keycache_get(keycache *c, unsigned long generation, const char *label,
                 enum key_use use, key_ref *ref)
{
    int hit = 0;
    pthread_mutex_lock(&c->lock);
    if (c->generation != generation) {
        clear_locked(c);
        c->generation = generation;
    }
    for (size_t i = 0; i < c->n; i++) {
        if (c->entries[i].use == use && !strcmp(c->entries[i].label, label)) {
            *ref = c->entries[i].ref;
            hit = 1;
            break;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return hit;
}

void keycache_put(keycache *c, unsigned long generation, const char *label,
                  enum key_use use, const key_ref *ref)
{
    char *copy = strdup(label);
    if (!copy)
        return; /* only a cache */
    pthread_mutex_lock(&c->lock);
    if (c->generation != generation) {
        clear_locked(c);
        c->generation = generation;
    }
    for (size_t i = 0; i < c->n; i++) {
        if (c->entries[i].use == use && !strcmp(c->entries[i].label, label)) {
            c->entries[i].ref = *ref; /* another thread got here first */
            pthread_mutex_unlock(&c->lock);
            free(copy);
            return;
        }
    }
    if (c->n == KEYCACHE_SIZE)
        clear_locked(c); /* key ids come from requests: stay bounded */
    c->entries[c->n].label = copy;
    c->entries[c->n].use = use;
    c->entries[c->n].ref = *ref;
    c->n++;
    pthread_mutex_unlock(&c->lock);
}

const char *key_type_name(CK_KEY_TYPE t)
{
    switch (t) {
    case CKK_AES: return "AES";
    case CKK_RSA: return "RSA";
    case CKK_EC: return "EC";
    default: return "non-AES/RSA/EC";
    }
}

/* Objects of class cls labelled `label`: up to two handles, and how many. */
static CK_RV find_class(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, const char *label,
                        CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE found[2], CK_ULONG *count)
{
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_LABEL, (void *)label, strlen(label)},
    };
    *count = 0;
    CK_RV rv = f->C_FindObjectsInit(s, tmpl, 2);
    if (rv != CKR_OK)
        return rv;
    rv = f->C_FindObjects(s, found, 2, count);
    CK_RV rv2 = f->C_FindObjectsFinal(s);
    return rv != CKR_OK ? rv : rv2;
}

static CK_RV read_key_type(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, key_ref *ref)
{
    CK_ATTRIBUTE a = {CKA_KEY_TYPE, &ref->type, sizeof ref->type};
    ref->modulus_len = 0;
    CK_RV rv = f->C_GetAttributeValue(s, ref->handle, &a, 1);
    if (rv != CKR_OK || ref->type != CKK_RSA)
        return rv;
    /* The modulus size bounds RSA ciphertexts and plaintexts: ask only
     * for its length. */
    CK_ATTRIBUTE mod = {CKA_MODULUS, NULL, 0};
    rv = f->C_GetAttributeValue(s, ref->handle, &mod, 1);
    if (rv == CKR_OK && mod.ulValueLen != CK_UNAVAILABLE_INFORMATION)
        ref->modulus_len = mod.ulValueLen;
    return rv;
}

CK_RV key_find(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, const char *label,
               enum key_use use, const char *where, key_ref *ref, int *status, char *msg,
               size_t msglen)
{
    /* Classes in order of preference for each use. */
    static const CK_OBJECT_CLASS order[][3] = {
        [USE_WRAP] = {CKO_SECRET_KEY, CKO_PRIVATE_KEY, CKO_PUBLIC_KEY},
        [USE_UNWRAP] = {CKO_SECRET_KEY, CKO_PRIVATE_KEY, CKO_PUBLIC_KEY},
        [USE_PUBLIC] = {CKO_PUBLIC_KEY, CKO_PRIVATE_KEY, CKO_SECRET_KEY},
        [USE_ANY] = {CKO_SECRET_KEY, CKO_PRIVATE_KEY, CKO_PUBLIC_KEY},
    };
    CK_OBJECT_HANDLE found[2];
    CK_ULONG count = 0;
    CK_RV rv = CKR_OK;
    int k;
    for (k = 0; k < 3; k++) {
        rv = find_class(f, s, label, order[use][k], found, &count);
        if (rv != CKR_OK)
            return rv;
        if (count > 0)
            break;
    }
    if (count == 0) {
        *status = KM_ERR_NOT_FOUND;
        snprintf(msg, msglen, "pkcs11: no key labelled '%.64s' on %s", label, where);
        return CKR_OK;
    }
    if (count > 1) {
        *status = KM_ERR_INVALID_ARGUMENT;
        snprintf(msg, msglen, "pkcs11: more than one key of the same class is labelled '%.64s'; "
                              "labels must be unique", label);
        return CKR_OK;
    }
    ref->handle = found[0];
    ref->cls = order[use][k];
    rv = read_key_type(f, s, ref);
    if (rv != CKR_OK)
        return rv;

    *status = KM_OK;
    const char *type = key_type_name(ref->type);
    switch (use) {
    case USE_WRAP:
        if (ref->cls != CKO_SECRET_KEY || ref->type != CKK_AES) {
            /* The key id names the wrong kind of key (km-conformance then
             * skips its wrap round trips). */
            *status = km_status_wrong_key_kind();
            snprintf(msg, msglen, "pkcs11: key '%.64s' is an %s key; wrap needs an AES key "
                                  "(clients encrypt to an RSA or EC key's public key instead)",
                     label, type);
        }
        break;
    case USE_UNWRAP:
        if (ref->cls == CKO_PUBLIC_KEY) {
            *status = KM_ERR_NOT_FOUND;
            snprintf(msg, msglen, "pkcs11: the token holds only the public half of key '%.64s'",
                     label);
        } else if (ref->type != CKK_AES && ref->type != CKK_RSA && ref->type != CKK_EC) {
            *status = km_status_wrong_key_kind();
            snprintf(msg, msglen, "pkcs11: key '%.64s' is an %s key; unwrap needs an AES key "
                                  "or an RSA or EC private key", label, type);
        }
        break;
    case USE_PUBLIC:
        if (ref->cls == CKO_SECRET_KEY) {
            *status = km_status_wrong_key_kind();
            snprintf(msg, msglen, "pkcs11: key '%.64s' is an %s key; it has no public key",
                     label, type);
        } else if (ref->type != CKK_RSA && ref->type != CKK_EC) {
            *status = km_status_wrong_key_kind();
            snprintf(msg, msglen, "pkcs11: key '%.64s' is an %s key; only RSA and EC public "
                                  "keys can be exported", label, type);
        } else if (ref->cls == CKO_PRIVATE_KEY && ref->type == CKK_EC) {
            *status = KM_ERR_NOT_FOUND;
            snprintf(msg, msglen, "pkcs11: EC key '%.64s' has no public key object on the token",
                     label);
        }
        break;
    case USE_ANY:
        break;
    }
    return CKR_OK;
}
