/* keycache.h -- object handles of keys, found by label, remembered.
 *
 * Finding an object costs three PKCS#11 calls; the handle stays valid for
 * the life of the token's objects, so it is cached per (label, use). The
 * cache is tied to the session pool's generation: when sessions or login
 * were lost (maybe the token was replaced), every handle is looked up again.
 */
#ifndef PKCS11_KEYCACHE_H
#define PKCS11_KEYCACHE_H

#include <pthread.h>
#include <stddef.h>

#include <p11-kit/pkcs11.h>

/* What a key is wanted for; decides which object classes qualify. */
enum key_use { USE_WRAP, USE_UNWRAP, USE_PUBLIC, USE_ANY };

typedef struct key_ref {
    CK_OBJECT_HANDLE handle;
    CK_OBJECT_CLASS cls;
    CK_KEY_TYPE type;
    CK_ULONG modulus_len;  /* RSA: bytes in the modulus; 0 otherwise */
} key_ref;

#define KEYCACHE_SIZE 64

typedef struct keycache {
    pthread_mutex_t lock;
    unsigned long generation;
    size_t n;
    struct keycache_entry {
        char *label;
        enum key_use use;
        key_ref ref;
    } entries[KEYCACHE_SIZE];
} keycache;

void keycache_init(keycache *c);
void keycache_destroy(keycache *c);

/* 1 and *ref filled when (label, use) is cached for this generation. */
int keycache_get(keycache *c, unsigned long generation, const char *label,
                 enum key_use use, key_ref *ref);
void keycache_put(keycache *c, unsigned long generation, const char *label,
                  enum key_use use, const key_ref *ref);
/* Forgets every handle (a stale one was seen). */
void keycache_clear(keycache *c);

/* Looks the key up on the token (`where` names it in messages). Returns a CKR from the find calls; when
 * that is CKR_OK, *status is a KM_* code and msg says why it is not KM_OK
 * (no such key, wrong kind of key, ambiguous label). */
CK_RV key_find(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, const char *label,
               enum key_use use, const char *where, key_ref *ref, int *status, char *msg,
               size_t msglen);

/* "AES", "RSA", "EC" or "generic". */
const char *key_type_name(CK_KEY_TYPE t);

#endif
