/* ckr.h -- names of PKCS#11 return values and their mapping to KM_* codes. */
#ifndef PKCS11_CKR_H
#define PKCS11_CKR_H

#include <stdint.h>

#include <p11-kit/pkcs11.h>

/* "CKR_PIN_INCORRECT" etc.; never NULL. */
const char *ckr_name(CK_RV rv);

/* The KM_* status an operation that failed with rv should report:
 * PIN/login errors -> PERMISSION_DENIED, stale handles -> NOT_FOUND,
 * bad ciphertext -> CRYPTO, device/session/token -> UNAVAILABLE,
 * everything else -> INTERNAL. */
int32_t ckr_status(CK_RV rv);

/* The status for "this key exists but cannot do this operation" (an EC key
 * asked to wrap): KM_ERR_FAILED_PRECONDITION for a 1.1 host, the nearest
 * 1.0 code (KM_ERR_INVALID_ARGUMENT) for an older one (keymanager.h rule 6).
 * Defined in pkcs11_manager.c, which knows the host. */
int32_t km_status_wrong_key_kind(void);

/* rv says our session or login is gone (closed, token removed, logged
 * out): worth reopening sessions and logging in again, once. */
int ckr_is_session_lost(CK_RV rv);

/* rv says a cached object handle no longer names an object. */
int ckr_is_handle_stale(CK_RV rv);

#endif
