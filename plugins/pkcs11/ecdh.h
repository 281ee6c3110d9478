/* ecdh.h -- remote-mode unwrap with an EC key: ECDH on the token.
 *
 * ABI v1: for an EC key, unwrap's input is the client's ephemeral public
 * key (DER SubjectPublicKeyInfo) and its output the raw ECDH shared secret
 * (the x coordinate, field-size bytes); the host runs HKDF + AES-GCM. The
 * private key never leaves the token: C_DeriveKey(CKM_ECDH1_DERIVE) makes
 * a short-lived session object holding the secret, which is read and
 * destroyed at once.
 */
#ifndef PKCS11_ECDH_H
#define PKCS11_ECDH_H

#include <stddef.h>
#include <stdint.h>

#include <p11-kit/pkcs11.h>

/* Derives the shared secret of private key `key` (labelled `label`, for
 * messages) and the peer key in spki[spki_len].
 *
 * Returns a CKR. When it is not CKR_OK, *failed_call names the PKCS#11
 * function that failed and the caller reports it. When it is CKR_OK,
 * *status is a KM_* code: KM_OK with a malloc'd secret in *out (*out_len bytes),
 * or an error explained in msg (e.g. the peer key does not parse or is on
 * another curve: KM_ERR_INVALID_ARGUMENT). */
CK_RV ecdh_unwrap(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
                  const char *label, const uint8_t *spki, size_t spki_len,
                  uint8_t **out, size_t *out_len, const char **failed_call,
                  int *status, char *msg, size_t msglen);

#endif
