/* pool.h -- a pool of logged-in sessions on one token.
 *
 * A PKCS#11 session runs one operation at a time, so concurrent calls each
 * borrow their own session: idle sessions are reused, new ones are opened
 * on demand up to `cap`, and callers beyond that wait (up to their
 * deadline). When a call reports that sessions or the login are gone
 * (closed, token removed, logged out), the pool's generation is bumped and
 * every idle session is checked again before its next use: dead ones are
 * forgotten (not closed: their handle may already name a new session),
 * live ones log in again; a fresh session finds the token again by label.
 * Once the token refuses the PIN, the pool stops trying it (a real HSM
 * locks the PIN after a few failures) and reports that refusal until the
 * manager is rebuilt.
 */
#ifndef PKCS11_POOL_H
#define PKCS11_POOL_H

#include <pthread.h>
#include <time.h>

#include <p11-kit/pkcs11.h>

#include "module.h"

/* A private return value: the caller's deadline passed while waiting. */
#define P11_RV_DEADLINE (CKR_VENDOR_DEFINED | 0x4b4d0001UL)
/* A private return value: no token with the configured label is present. */
#define P11_RV_NO_TOKEN (CKR_VENDOR_DEFINED | 0x4b4d0002UL)

typedef struct p11_idle {
    CK_SESSION_HANDLE session;
    unsigned long generation; /* pool generation when last known good */
} p11_idle;

typedef struct p11_pool {
    p11_module *mod;
    CK_FUNCTION_LIST_PTR f;
    const char *token_label;  /* NULL: the slot is fixed by slot_id */
    const char *pin;          /* owned by the manager's config */
    size_t pin_len;

    pthread_mutex_t lock;
    pthread_cond_t freed;
    CK_SLOT_ID slot;
    p11_idle *idle;
    unsigned n_idle;
    unsigned n_open;          /* idle + borrowed */
    unsigned cap;
    unsigned long generation; /* bumped when sessions or login were lost */
    CK_RV pin_rejected;       /* CKR_OK, or why the token refused the PIN */
} p11_pool;

typedef struct p11_lease {
    CK_SESSION_HANDLE session;
    unsigned long generation;
} p11_lease;

/* Finds the token in *slot, or the one labelled token_label. With
 * avoid_current, a match in another slot than *slot wins (the current one
 * just failed; a re-initialized token shows up in a new slot).
 * Returns CKR_OK, P11_RV_NO_TOKEN, or the failing call's CKR. */
CK_RV p11_find_token(CK_FUNCTION_LIST_PTR f, const char *token_label, CK_SLOT_ID *slot,
                     int avoid_current);

/* pin is borrowed and must outlive the pool. */
int p11_pool_init(p11_pool *p, p11_module *mod, CK_SLOT_ID slot, const char *token_label,
                  const char *pin, size_t pin_len, unsigned cap);

/* Borrows a logged-in session. deadline may be NULL (wait forever).
 * Returns CKR_OK, P11_RV_DEADLINE, P11_RV_NO_TOKEN or a CKR from
 * C_OpenSession/C_Login. */
CK_RV p11_pool_acquire(p11_pool *p, const struct timespec *deadline, p11_lease *lease);

/* Returns a borrowed session. last_rv is the result of the last call made
 * on it: CKR_OK keeps it; session/login loss bumps the generation (see
 * above); any other failure closes just this session, so no half-finished
 * operation can leak into the next borrower. */
void p11_pool_release(p11_pool *p, p11_lease *lease, CK_RV last_rv);

/* The slot the pool currently uses, and its generation. */
CK_SLOT_ID p11_pool_slot(p11_pool *p);
unsigned long p11_pool_generation(p11_pool *p);

/* Closes every session. Only when no session is borrowed. */
void p11_pool_destroy(p11_pool *p);

#endif
