/* ecdh.c -- remote-mode unwrap with an EC key (see ecdh.h). */
#include "ecdh.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "ckr.h"
#include "keymanager.h"

/* An SPKI of the largest curve PKCS#11 tokens offer is ~160 bytes. */
#define MAX_SPKI_LEN 1024
/* 0x04 || x || y for fields up to 571 bits (sect571), with room to spare. */
#define MAX_POINT_LEN (1 + 2 * 72)
/* The curve OID is all a named-curve CKA_EC_PARAMS holds. */
#define MAX_EC_PARAMS_LEN 64

static int refuse(int *status, char *msg, size_t msglen, int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int refuse(int *status, char *msg, size_t msglen, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, msglen, fmt, ap);
    va_end(ap);
    *status = code;
    return -1;
}

/* The NID of the named curve in a DER CKA_EC_PARAMS, or NID_undef. */
static int token_curve(const uint8_t *params, size_t len)
{
    const unsigned char *p = params;
    ASN1_OBJECT *oid = d2i_ASN1_OBJECT(NULL, &p, (long)len);
    int nid = oid && p == params + len ? OBJ_obj2nid(oid) : NID_undef;
    ASN1_OBJECT_free(oid);
    ERR_clear_error();
    return nid;
}

/* Parses the client's DER SPKI, checks it is an EC key on curve `nid`, and
 * writes its uncompressed point (0x04 || x || y) into point[MAX_POINT_LEN].
 * Returns 0, or -1 with *status/msg set. */
static int peer_point(const uint8_t *spki, size_t spki_len, int nid, const char *label,
                      uint8_t *point, size_t *point_len, size_t *field_len, int *status,
                      char *msg, size_t msglen)
{
    const char *want = OBJ_nid2sn(nid);
    if (spki_len == 0)
        return refuse(status, msg, msglen, KM_ERR_INVALID_ARGUMENT,
                      "pkcs11: key '%.64s' is an EC key: unwrap wants the client's ephemeral "
                      "public key (DER SubjectPublicKeyInfo); got 0 bytes", label);
    if (spki_len > MAX_SPKI_LEN)
        return refuse(status, msg, msglen, KM_ERR_INVALID_ARGUMENT,
                      "pkcs11: key '%.64s' is an EC key: the ephemeral public key is too long "
                      "for a DER SubjectPublicKeyInfo", label);

    const unsigned char *p = spki;
    EVP_PKEY *peer = d2i_PUBKEY(NULL, &p, (long)spki_len);
    int rc = -1;
    char group[64] = "";
    BIGNUM *x = NULL, *y = NULL;
    unsigned char *enc = NULL;
    if (!peer || p != spki + spki_len) {
        refuse(status, msg, msglen, KM_ERR_INVALID_ARGUMENT,
               "pkcs11: key '%.64s' is an EC key: the ephemeral public key is not a DER "
               "SubjectPublicKeyInfo of a point on a curve", label);
        goto out;
    }
    if (EVP_PKEY_get_base_id(peer) != EVP_PKEY_EC) {
        refuse(status, msg, msglen, KM_ERR_INVALID_ARGUMENT,
               "pkcs11: key '%.64s' is an EC key on %s: the ephemeral public key is not an EC "
               "key", label, want);
        goto out;
    }
    if (!EVP_PKEY_get_group_name(peer, group, sizeof group, NULL)) {
        refuse(status, msg, msglen, KM_ERR_INVALID_ARGUMENT,
               "pkcs11: key '%.64s' is an EC key on %s: the ephemeral public key has explicit "
               "curve parameters; a named curve is required", label, want);
        goto out;
    }
    if (OBJ_txt2nid(group) != nid) {
        refuse(status, msg, msglen, KM_ERR_INVALID_ARGUMENT,
               "pkcs11: key '%.64s' is an EC key on %s: the ephemeral public key is on another "
               "curve (%s)", label, want, group);
        goto out;
    }
    /* The field size from the key's own encoding (compressed: 1 + f,
     * uncompressed: 1 + 2f); the coordinates, padded to it, make the
     * uncompressed point whatever form the client sent. */
    size_t enc_len = EVP_PKEY_get1_encoded_public_key(peer, &enc);
    size_t f = enc_len == 0 ? 0 : enc[0] == 0x04 ? (enc_len - 1) / 2 : enc_len - 1;
    if (f == 0 || 1 + 2 * f > MAX_POINT_LEN ||
        !EVP_PKEY_get_bn_param(peer, OSSL_PKEY_PARAM_EC_PUB_X, &x) ||
        !EVP_PKEY_get_bn_param(peer, OSSL_PKEY_PARAM_EC_PUB_Y, &y) ||
        BN_bn2binpad(x, point + 1, (int)f) < 0 || BN_bn2binpad(y, point + 1 + f, (int)f) < 0) {
        refuse(status, msg, msglen, KM_ERR_INTERNAL,
               "pkcs11: cannot encode the ephemeral public key's point for key '%.64s'", label);
        goto out;
    }
    point[0] = 0x04;
    *point_len = 1 + 2 * f;
    *field_len = f;
    rc = 0;
out:
    OPENSSL_free(enc);
    BN_free(x);
    BN_free(y);
    EVP_PKEY_free(peer);
    ERR_clear_error(); /* leave no OpenSSL errors on this thread's queue */
    return rc;
}

/* DER OCTET STRING of point[len] (len < 256) into der[len + 3]. */
static size_t der_octet_string(const uint8_t *point, size_t len, uint8_t *der)
{
    size_t h = 0;
    der[h++] = 0x04;
    if (len >= 0x80)
        der[h++] = 0x81;
    der[h++] = (uint8_t)len;
    memcpy(der + h, point, len);
    return h + len;
}

static CK_RV derive(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
                    const uint8_t *public_data, size_t public_len, CK_ULONG field_len,
                    CK_OBJECT_HANDLE *secret)
{
    CK_ECDH1_DERIVE_PARAMS params = {CKD_NULL, 0, NULL, public_len, (CK_BYTE_PTR)public_data};
    CK_MECHANISM mech = {CKM_ECDH1_DERIVE, &params, sizeof params};
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_GENERIC_SECRET;
    CK_BBOOL no = CK_FALSE, yes = CK_TRUE;
    /* A session object the plugin may read: it lives only until destroyed
     * below (or until the session closes, if this process dies first). */
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_KEY_TYPE, &type, sizeof type},
        {CKA_TOKEN, &no, sizeof no},
        {CKA_SENSITIVE, &no, sizeof no},
        {CKA_EXTRACTABLE, &yes, sizeof yes},
        {CKA_VALUE_LEN, &field_len, sizeof field_len},
    };
    return f->C_DeriveKey(s, &mech, key, tmpl, sizeof tmpl / sizeof tmpl[0], secret);
}

CK_RV ecdh_unwrap(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key,
                  const char *label, const uint8_t *spki, size_t spki_len,
                  uint8_t **out, size_t *out_len, const char **failed_call,
                  int *status, char *msg, size_t msglen)
{
    *status = KM_OK;
    *out = NULL;

    /* The token key's curve. */
    uint8_t params[MAX_EC_PARAMS_LEN];
    CK_ATTRIBUTE a = {CKA_EC_PARAMS, params, sizeof params};
    CK_RV rv = f->C_GetAttributeValue(s, key, &a, 1);
    if (rv != CKR_OK) {
        *failed_call = "C_GetAttributeValue(CKA_EC_PARAMS)";
        return rv;
    }
    int nid = token_curve(params, a.ulValueLen);
    if (nid == NID_undef) {
        refuse(status, msg, msglen, KM_ERR_INVALID_ARGUMENT,
               "pkcs11: EC key '%.64s' is not on a named curve this plugin knows", label);
        return CKR_OK;
    }

    uint8_t point[MAX_POINT_LEN], der[MAX_POINT_LEN + 3];
    size_t point_len = 0, field_len = 0;
    if (peer_point(spki, spki_len, nid, label, point, &point_len, &field_len, status, msg,
                   msglen) < 0)
        return CKR_OK;

    /* PKCS#11 v2.40 wants the raw point; some tokens want it as a DER
     * OCTET STRING (like CKA_EC_POINT) and say so with one of these. */
    CK_OBJECT_HANDLE secret = CK_INVALID_HANDLE;
    rv = derive(f, s, key, point, point_len, field_len, &secret);
    if (rv == CKR_DOMAIN_PARAMS_INVALID || rv == CKR_ARGUMENTS_BAD ||
        rv == CKR_MECHANISM_PARAM_INVALID) {
        size_t der_len = der_octet_string(point, point_len, der);
        CK_RV rv2 = derive(f, s, key, der, der_len, field_len, &secret);
        if (rv2 == CKR_OK || ckr_is_session_lost(rv2) || ckr_is_handle_stale(rv2))
            rv = rv2;
    }
    if (rv != CKR_OK) {
        *failed_call = "C_DeriveKey(CKM_ECDH1_DERIVE)";
        return rv;
    }

    uint8_t *value = malloc(field_len);
    CK_ATTRIBUTE v = {CKA_VALUE, value, field_len};
    rv = value ? f->C_GetAttributeValue(s, secret, &v, 1) : CKR_HOST_MEMORY;
    f->C_DestroyObject(s, secret);
    if (rv != CKR_OK) {
        *failed_call = "C_GetAttributeValue(CKA_VALUE) of the derived secret";
    } else if (v.ulValueLen != field_len) {
        *status = KM_ERR_INTERNAL;
        snprintf(msg, msglen, "pkcs11: ECDH with key '%.64s' gave a %lu-byte secret; want %zu",
                 label, (unsigned long)v.ulValueLen, field_len);
    } else {
        *out = value;
        *out_len = field_len;
        value = NULL;
    }
    if (value) {
        OPENSSL_cleanse(value, field_len);
        free(value);
    }
    return rv;
}
