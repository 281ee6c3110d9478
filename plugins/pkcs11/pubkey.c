/* pubkey.c -- encode token public keys as PEM SPKI with OpenSSL 3. */
#include "pubkey.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

static int pkey_to_pem(EVP_PKEY *pkey, char **pem, size_t *pem_len)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    int rc = -1;
    if (bio && PEM_write_bio_PUBKEY(bio, pkey)) {
        long n = BIO_get_mem_data(bio, &data);
        if (n > 0 && (*pem = malloc((size_t)n + 1)) != NULL) {
            memcpy(*pem, data, (size_t)n);
            (*pem)[n] = '\0';
            *pem_len = (size_t)n;
            rc = 0;
        }
    }
    BIO_free(bio);
    return rc;
}

static int pkey_from_params(const char *type, OSSL_PARAM_BLD *bld, char **pem, size_t *pem_len)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pkey = NULL;
    int rc = -1;
    if (params && ctx && EVP_PKEY_fromdata_init(ctx) > 0 &&
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) > 0)
        rc = pkey_to_pem(pkey, pem, pem_len);
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return rc;
}

int p11_rsa_public_pem(const uint8_t *n, size_t n_len, const uint8_t *e, size_t e_len,
                       char **pem, size_t *pem_len)
{
    BIGNUM *bn_n = BN_bin2bn(n, (int)n_len, NULL);
    BIGNUM *bn_e = BN_bin2bn(e, (int)e_len, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    int rc = -1;
    if (bn_n && bn_e && bld && !BN_is_zero(bn_n) && !BN_is_zero(bn_e) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e))
        rc = pkey_from_params("RSA", bld, pem, pem_len);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    return rc;
}

int p11_ec_public_pem(const uint8_t *params, size_t params_len,
                      const uint8_t *point, size_t point_len,
                      char **pem, size_t *pem_len)
{
    const unsigned char *p = params;
    ASN1_OBJECT *oid = d2i_ASN1_OBJECT(NULL, &p, (long)params_len);
    int nid = oid ? OBJ_obj2nid(oid) : NID_undef;
    ASN1_OBJECT_free(oid);
    const char *curve = nid != NID_undef ? OBJ_nid2sn(nid) : NULL;
    if (!curve)
        return -1; /* explicit parameters or an unknown curve */

    /* PKCS#11 says CKA_EC_POINT is a DER OCTET STRING; some tokens give
     * the bare point. */
    ASN1_OCTET_STRING *os = NULL;
    const unsigned char *q = point;
    if (point_len > 2 && point[0] == V_ASN1_OCTET_STRING) {
        os = d2i_ASN1_OCTET_STRING(NULL, &q, (long)point_len);
        if (os && q != point + point_len) {
            ASN1_OCTET_STRING_free(os);
            os = NULL;
        }
    }
    const unsigned char *pt = os ? ASN1_STRING_get0_data(os) : point;
    size_t pt_len = os ? (size_t)ASN1_STRING_length(os) : point_len;

    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    int rc = -1;
    if (bld && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, curve, 0) &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, pt_len))
        rc = pkey_from_params("EC", bld, pem, pem_len);
    OSSL_PARAM_BLD_free(bld);
    ASN1_OCTET_STRING_free(os);
    return rc;
}
