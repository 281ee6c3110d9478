/* pubkey.h -- PEM "PUBLIC KEY" (SPKI) blocks from PKCS#11 key attributes. */
#ifndef PKCS11_PUBKEY_H
#define PKCS11_PUBKEY_H

#include <stddef.h>
#include <stdint.h>

/* From CKA_MODULUS and CKA_PUBLIC_EXPONENT (big-endian unsigned).
 * On success returns 0 and a malloc'd NUL-terminated PEM in *pem. */
int p11_rsa_public_pem(const uint8_t *n, size_t n_len, const uint8_t *e, size_t e_len,
                       char **pem, size_t *pem_len);

/* From CKA_EC_PARAMS (DER: a named-curve OID) and CKA_EC_POINT (DER OCTET
 * STRING holding the uncompressed point; a bare point is accepted too). */
int p11_ec_public_pem(const uint8_t *params, size_t params_len,
                      const uint8_t *point, size_t point_len,
                      char **pem, size_t *pem_len);

#endif
