/*
 * toy_rsa_plugin.c -- a remote-mode style plugin for testing km-conformance's
 * public-key path: each manager holds an RSA key pair (generated in create),
 * get_public_key returns its SPKI PEM and unwrap decrypts RSA-OAEP
 * (SHA-1, MGF1-SHA-1) as a KMS/HSM holding the private key would. No wrap.
 *
 * Manager "toy-rsa"; key ids "" and "toy". Config: any JSON object text.
 *   -DBROKEN_PEM          get_public_key returns an unparseable PEM
 *   -DBROKEN_OAEP_SHA256  unwrap uses OAEP with SHA-256 instead of SHA-1
 */
#define _DEFAULT_SOURCE /* explicit_bzero */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "keymanager.h"

struct km_manager {
    EVP_PKEY *key;
    char *pem;
    size_t pem_len;
};

static int32_t fail(char **error, int32_t status, const char *msg)
{
    if (error) {
        *error = malloc(strlen(msg) + 1);
        if (*error)
            strcpy(*error, msg);
    }
    return status;
}

static int32_t check_key(const char *key_id, char **error)
{
    if (strcmp(key_id, "") == 0 || strcmp(key_id, "toy") == 0)
        return KM_OK;
    return fail(error, KM_ERR_NOT_FOUND, "no such key");
}

static int32_t rsa_public_key(km_manager *m, const km_call_ctx *ctx, const char *key_id, uint8_t **out,
                              size_t *out_len, char **error)
{
    (void)ctx;
    int32_t s = check_key(key_id, error);
    if (s != KM_OK)
        return s;
#ifdef BROKEN_PEM
    (void)m;
    static const char pem[] = "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n";
    const char *src = pem;
    size_t n = sizeof pem - 1;
#else
    const char *src = m->pem;
    size_t n = m->pem_len;
#endif
    *out = malloc(n);
    if (!*out)
        return fail(error, KM_ERR_INTERNAL, "out of memory");
    memcpy(*out, src, n);
    *out_len = n;
    return KM_OK;
}

static int32_t rsa_unwrap(km_manager *m, const km_call_ctx *ctx, const char *key_id, const uint8_t *in,
                          size_t n, uint8_t **out, size_t *out_len, char **error)
{
    (void)ctx;
    int32_t s = check_key(key_id, error);
    if (s != KM_OK)
        return s;
#ifdef BROKEN_OAEP_SHA256
    const EVP_MD *md = EVP_sha256();
#else
    const EVP_MD *md = EVP_sha1();
#endif
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(m->key, NULL);
    size_t len = 0;
    uint8_t *buf = NULL;
    int ok = c && EVP_PKEY_decrypt_init(c) == 1 && EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING) == 1
             && EVP_PKEY_CTX_set_rsa_oaep_md(c, md) == 1 && EVP_PKEY_CTX_set_rsa_mgf1_md(c, md) == 1
             && EVP_PKEY_decrypt(c, NULL, &len, in, n) == 1 && (buf = malloc(len ? len : 1)) != NULL
             && EVP_PKEY_decrypt(c, buf, &len, in, n) == 1;
    EVP_PKEY_CTX_free(c);
    if (!ok) {
        free(buf);
        return fail(error, KM_ERR_CRYPTO, "RSA-OAEP decryption failed");
    }
    *out = buf;
    *out_len = len;
    return KM_OK;
}

static void rsa_destroy(km_manager *m)
{
    EVP_PKEY_free(m->key);
    free(m->pem);
    free(m);
}

static int32_t rsa_create(const char *cfg, size_t len, km_manager **out, char **error)
{
    if (len < 2 || cfg[0] != '{' || cfg[len - 1] != '}')
        return fail(error, KM_ERR_INVALID_ARGUMENT, "toy-rsa config must be a JSON object");
    int depth = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)cfg[i];
        if (c >= 0x80)
            return fail(error, KM_ERR_INVALID_ARGUMENT, "toy-rsa config must be ASCII JSON");
        depth += (c == '{' || c == '[') - (c == '}' || c == ']');
        if (depth > 64)
            return fail(error, KM_ERR_INVALID_ARGUMENT, "toy-rsa config is nested too deeply");
    }
    km_manager *m = calloc(1, sizeof *m);
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    long n = 0;
    int ok = m && bio && (m->key = EVP_RSA_gen(1024)) != NULL && PEM_write_bio_PUBKEY(bio, m->key) == 1
             && (n = BIO_get_mem_data(bio, &data)) > 0 && (m->pem = malloc((size_t)n)) != NULL;
    if (ok) {
        memcpy(m->pem, data, (size_t)n);
        m->pem_len = (size_t)n;
    }
    BIO_free(bio);
    if (!ok) {
        if (m)
            rsa_destroy(m);
        return fail(error, KM_ERR_INTERNAL, "key generation failed");
    }
    *out = m;
    return KM_OK;
}

static void rsa_free(void *p)
{
    if (p)
        explicit_bzero(p, malloc_usable_size(p)); /* outputs may be DEKs */
    free(p);
}

static const km_manager_ops rsa_ops = {
    .struct_size = sizeof(km_manager_ops),
    .unwrap = rsa_unwrap,
    .get_public_key = rsa_public_key,
    .destroy = rsa_destroy,
};

static const km_factory rsa_factory = {
    .struct_size = sizeof(km_factory),
    .manager_name = "toy-rsa",
    .capabilities = KM_CAP_THREAD_SAFE | KM_CAP_UNWRAP | KM_CAP_PUBLIC_KEY,
    .create = rsa_create,
    .ops = &rsa_ops,
};

static const km_factory *const rsa_factories[] = {&rsa_factory};

static const km_plugin rsa_plugin = {
    .struct_size = sizeof(km_plugin),
    .abi_major = KM_ABI_VERSION_MAJOR,
    .abi_minor = KM_ABI_VERSION_MINOR,
    .plugin_name = "toy-rsa",
    .plugin_version = "0.1",
    .factories = rsa_factories,
    .factory_count = 1,
    .free = rsa_free,
};

__attribute__((visibility("default"))) const km_plugin *km_plugin_init(const km_host *host)
{
    (void)host;
    return &rsa_plugin;
}
