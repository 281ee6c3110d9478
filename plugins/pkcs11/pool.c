/* pool.c -- a pool of logged-in sessions on one token (see pool.h). */
#define _POSIX_C_SOURCE 200809L
#include "pool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ckr.h"

static int pin_refused(CK_RV rv)
{
    return rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED || rv == CKR_PIN_EXPIRED ||
           rv == CKR_PIN_INVALID || rv == CKR_PIN_LEN_RANGE;
}

/* Token labels are 32 bytes, blank padded, not NUL-terminated. */
static int label_matches(const CK_UTF8CHAR label[32], const char *want)
{
    size_t n = strlen(want);
    if (n > 32 || memcmp(label, want, n) != 0)
        return 0;
    for (size_t i = n; i < 32; i++)
        if (label[i] != ' ')
            return 0;
    return 1;
}

CK_RV p11_find_token(CK_FUNCTION_LIST_PTR f, const char *token_label, CK_SLOT_ID *slot,
                     int avoid_current)
{
    CK_SLOT_ID current = *slot;
    int found_current = 0;
    CK_TOKEN_INFO info;
    if (!token_label) {
        CK_RV rv = f->C_GetTokenInfo(*slot, &info);
        return rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_SLOT_ID_INVALID ? P11_RV_NO_TOKEN : rv;
    }
    CK_SLOT_ID *slots = NULL;
    CK_ULONG n = 0;
    CK_RV rv;
    /* The slot list can grow between the two calls. */
    for (int tries = 0; tries < 4; tries++) {
        rv = f->C_GetSlotList(CK_TRUE, NULL, &n);
        if (rv != CKR_OK)
            return rv;
        free(slots);
        slots = calloc(n ? n : 1, sizeof *slots);
        if (!slots)
            return CKR_HOST_MEMORY;
        rv = f->C_GetSlotList(CK_TRUE, slots, &n);
        if (rv != CKR_BUFFER_TOO_SMALL)
            break;
    }
    if (rv != CKR_OK) {
        free(slots);
        return rv;
    }
    rv = P11_RV_NO_TOKEN;
    for (CK_ULONG i = 0; i < n; i++) {
        if (f->C_GetTokenInfo(slots[i], &info) != CKR_OK)
            continue;
        if ((info.flags & CKF_TOKEN_INITIALIZED) && label_matches(info.label, token_label)) {
            if (avoid_current && slots[i] == current) {
                found_current = 1; /* a last resort: it just failed */
                continue;
            }
            *slot = slots[i];
            rv = CKR_OK;
            break;
        }
    }
    if (rv != CKR_OK && found_current) {
        *slot = current;
        rv = CKR_OK;
    }
    free(slots);
    return rv;
}

int p11_pool_init(p11_pool *p, p11_module *mod, CK_SLOT_ID slot, const char *token_label,
                  const char *pin, size_t pin_len, unsigned cap)
{
    memset(p, 0, sizeof *p);
    p->idle = calloc(cap, sizeof *p->idle);
    if (!p->idle)
        return -1;
    p->mod = mod;
    p->f = p11_module_functions(mod);
    p->slot = slot;
    p->token_label = token_label;
    p->pin = pin;
    p->pin_len = pin_len;
    p->cap = cap;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&p->freed, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&p->lock, NULL);
    return 0;
}

static CK_RV login(p11_pool *p, CK_SESSION_HANDLE s, CK_SLOT_ID slot)
{
    CK_RV rv = p11_module_login(p->mod, s, slot, p->pin, p->pin_len);
    if (pin_refused(rv)) {
        pthread_mutex_lock(&p->lock);
        p->pin_rejected = rv;
        pthread_mutex_unlock(&p->lock);
    }
    return rv;
}

static CK_RV open_session(p11_pool *p, CK_SLOT_ID slot, CK_SESSION_HANDLE *out)
{
    /* Read-only is enough: we only use existing keys. */
    CK_RV rv = p->f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, out);
    if (rv != CKR_OK)
        return rv;
    rv = login(p, *out, slot);
    if (rv != CKR_OK)
        p->f->C_CloseSession(*out);
    return rv;
}

/* Drops idle entries naming handle s: its old session died and the module
 * handed the number out again. Caller holds the lock. */
static void forget_duplicates(p11_pool *p, CK_SESSION_HANDLE s)
{
    for (unsigned i = 0; i < p->n_idle;) {
        if (p->idle[i].session == s) {
            p->idle[i] = p->idle[--p->n_idle];
            p->n_open--;
        } else {
            i++;
        }
    }
}

CK_RV p11_pool_acquire(p11_pool *p, const struct timespec *deadline, p11_lease *lease)
{
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (!p->pin_rejected && p->n_idle == 0 && p->n_open >= p->cap) {
            if (!deadline) {
                pthread_cond_wait(&p->freed, &p->lock);
            } else if (pthread_cond_timedwait(&p->freed, &p->lock, deadline) == ETIMEDOUT) {
                pthread_mutex_unlock(&p->lock);
                return P11_RV_DEADLINE;
            }
        }
        if (p->pin_rejected) {
            CK_RV rv = p->pin_rejected;
            pthread_mutex_unlock(&p->lock);
            return rv;
        }
        unsigned long generation = p->generation;
        CK_SLOT_ID slot = p->slot;
        if (p->n_idle > 0) {
            p11_idle e = p->idle[--p->n_idle];
            pthread_mutex_unlock(&p->lock);
            lease->session = e.session;
            lease->generation = generation;
            if (e.generation == generation)
                return CKR_OK;
            /* Something was lost since this session last worked. */
            CK_RV rv = login(p, e.session, slot);
            if (rv == CKR_OK)
                return CKR_OK;
            pthread_mutex_lock(&p->lock);
            if (ckr_is_session_lost(rv) && rv != CKR_USER_NOT_LOGGED_IN) {
                p->n_open--; /* dead: forget it, try the next one */
                pthread_cond_signal(&p->freed);
                pthread_mutex_unlock(&p->lock);
                continue;
            }
            p->idle[p->n_idle++] = e; /* alive; login failed: report that */
            pthread_cond_signal(&p->freed);
            pthread_mutex_unlock(&p->lock);
            return rv;
        }
        p->n_open++;
        pthread_mutex_unlock(&p->lock);

        CK_SESSION_HANDLE s;
        CK_RV rv = open_session(p, slot, &s);
        if (rv != CKR_OK && !pin_refused(rv) && rv != CKR_HOST_MEMORY && p->token_label) {
            /* The token may be gone, or re-initialized into another slot
             * (SoftHSM2 answers CKR_GENERAL_ERROR for a deleted token):
             * look for the label again, preferring another slot. */
            CK_SLOT_ID found = slot;
            CK_RV frv = p11_find_token(p->f, p->token_label, &found, 1);
            if (frv == P11_RV_NO_TOKEN) {
                rv = frv;
            } else if (frv == CKR_OK && found != slot) {
                slot = found;
                pthread_mutex_lock(&p->lock);
                p->slot = slot;
                pthread_mutex_unlock(&p->lock);
                rv = open_session(p, slot, &s);
            }
        } else if (rv == CKR_SLOT_ID_INVALID || rv == CKR_TOKEN_NOT_PRESENT) {
            rv = P11_RV_NO_TOKEN;
        }
        pthread_mutex_lock(&p->lock);
        if (rv == CKR_OK)
            forget_duplicates(p, s);
        else
            p->n_open--;
        pthread_cond_signal(&p->freed);
        pthread_mutex_unlock(&p->lock);
        if (rv != CKR_OK)
            return rv;
        lease->session = s;
        lease->generation = generation;
        return CKR_OK;
    }
}

void p11_pool_release(p11_pool *p, p11_lease *lease, CK_RV last_rv)
{
    int close_it = 0;
    pthread_mutex_lock(&p->lock);
    if (last_rv == CKR_OK) {
        forget_duplicates(p, lease->session);
        p->idle[p->n_idle++] = (p11_idle){lease->session, lease->generation};
    } else if (last_rv == CKR_USER_NOT_LOGGED_IN) {
        /* Logged out behind our back: every session needs a new login. */
        p->generation++;
        forget_duplicates(p, lease->session);
        p->idle[p->n_idle++] = (p11_idle){lease->session, lease->generation};
    } else if (ckr_is_session_lost(last_rv)) {
        /* Dead session: forget it; check the others before reuse. */
        p->generation++;
        p->n_open--;
    } else {
        p->n_open--;
        close_it = 1;
    }
    pthread_cond_signal(&p->freed);
    pthread_mutex_unlock(&p->lock);
    if (close_it)
        p->f->C_CloseSession(lease->session);
    lease->session = CK_INVALID_HANDLE;
}

CK_SLOT_ID p11_pool_slot(p11_pool *p)
{
    pthread_mutex_lock(&p->lock);
    CK_SLOT_ID slot = p->slot;
    pthread_mutex_unlock(&p->lock);
    return slot;
}

unsigned long p11_pool_generation(p11_pool *p)
{
    pthread_mutex_lock(&p->lock);
    unsigned long g = p->generation;
    pthread_mutex_unlock(&p->lock);
    return g;
}

void p11_pool_destroy(p11_pool *p)
{
    for (unsigned i = 0; i < p->n_idle; i++)
        p->f->C_CloseSession(p->idle[i].session);
    free(p->idle);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->freed);
    memset(p, 0, sizeof *p);
}
