/*
 * bench_plugin.c -- two thread-safe managers for `make bench` (not shipped):
 *
 *   bench-echo  unwrap returns a copy of its input. Measures the cost of the
 *               C ABI round trip itself (buffers in, malloc'd buffer out,
 *               host frees it) with no work inside.
 *   bench-rsa   a remote-mode manager doing RSA-2048 OAEP-SHA1 decrypts with
 *               OpenSSL inside the plugin, on a key pair generated at create.
 *               The host releases the GIL around the call, so N threads
 *               should scale with the cores; a control for tokens (SoftHSM2)
 *               that may serialize internally.
 *
 * Key ids: any (one key per manager). Config: any JSON object text.
 * Built by bench/env.py with gcc at bench time: a benchmark fixture.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "keymanager.h"

struct km_manager {
    EVP_PKEY *key; /* NULL for bench-echo */
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

static int32_t echo_unwrap(km_manager *m, const km_call_ctx *ctx, const char *key_id, const uint8_t *in,
                           size_t n, uint8_t **out, size_t *out_len, char **error)
{
    (void)m;
    (void)ctx;
    (void)key_id;
    *out = malloc(n ? n : 1);
    if (!*out)
        return fail(error, KM_ERR_INTERNAL, "out of memory");
    memcpy(*out, in, n);
    *out_len = n;
    return KM_OK;
}

static int32_t rsa_unwrap(km_manager *m, const km_call_ctx *ctx, const char *key_id, const uint8_t *in,
                          size_t n, uint8_t **out, size_t *out_len, char **error)
{
    (void)ctx;
    (void)key_id;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(m->key, NULL);
    size_t len = 0;
    uint8_t *buf = NULL;
    int ok = c && EVP_PKEY_decrypt_init(c) == 1 && EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING) == 1
             && EVP_PKEY_CTX_set_rsa_oaep_md(c, EVP_sha1()) == 1 && EVP_PKEY_CTX_set_rsa_mgf1_md(c, EVP_sha1()) == 1
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

static int32_t rsa_public_key(km_manager *m, const km_call_ctx *ctx, const char *key_id, uint8_t **out,
                              size_t *out_len, char **error)
{
    (void)ctx;
    (void)key_id;
    *out = malloc(m->pem_len);
    if (!*out)
        return fail(error, KM_ERR_INTERNAL, "out of memory");
    memcpy(*out, m->pem, m->pem_len);
    *out_len = m->pem_len;
    return KM_OK;
}

static void destroy(km_manager *m)
{
    EVP_PKEY_free(m->key);
    free(m->pem);
    free(m);
}

static int32_t check_config(const char *cfg, size_t len, char **error)
{
    while (len > 0 && (cfg[len - 1] == '\n' || cfg[len - 1] == ' ' || cfg[len - 1] == '\r'))
        len--;
    if (len < 2 || cfg[0] != '{' || cfg[len - 1] != '}')
        return fail(error, KM_ERR_INVALID_ARGUMENT, "bench plugin config must be a JSON object");
    return KM_OK;
}

static int32_t echo_create(const char *cfg, size_t len, km_manager **out, char **error)
{
    int32_t s = check_config(cfg, len, error);
    if (s != KM_OK)
        return s;
    *out = calloc(1, sizeof **out);
    return *out ? KM_OK : fail(error, KM_ERR_INTERNAL, "out of memory");
}

static int32_t rsa_create(const char *cfg, size_t len, km_manager **out, char **error)
{
    int32_t s = check_config(cfg, len, error);
    if (s != KM_OK)
        return s;
    km_manager *m = calloc(1, sizeof *m);
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    long n = 0;
    int ok = m && bio && (m->key = EVP_RSA_gen(2048)) != NULL && PEM_write_bio_PUBKEY(bio, m->key) == 1
             && (n = BIO_get_mem_data(bio, &data)) > 0 && (m->pem = malloc((size_t)n)) != NULL;
    if (ok) {
        memcpy(m->pem, data, (size_t)n);
        m->pem_len = (size_t)n;
    }
    BIO_free(bio);
    if (!ok) {
        if (m)
            destroy(m);
        return fail(error, KM_ERR_INTERNAL, "RSA key generation failed");
    }
    *out = m;
    return KM_OK;
}

static void plugin_free(void *p)
{
    free(p);
}

static const km_manager_ops echo_ops = {
    .struct_size = sizeof(km_manager_ops),
    .unwrap = echo_unwrap,
    .destroy = destroy,
};

static const km_manager_ops rsa_ops = {
    .struct_size = sizeof(km_manager_ops),
    .unwrap = rsa_unwrap,
    .get_public_key = rsa_public_key,
    .destroy = destroy,
};

static const km_factory echo_factory = {
    .struct_size = sizeof(km_factory),
    .manager_name = "bench-echo",
    .capabilities = KM_CAP_THREAD_SAFE | KM_CAP_UNWRAP,
    .create = echo_create,
    .ops = &echo_ops,
};

static const km_factory rsa_factory = {
    .struct_size = sizeof(km_factory),
    .manager_name = "bench-rsa",
    .capabilities = KM_CAP_THREAD_SAFE | KM_CAP_UNWRAP | KM_CAP_PUBLIC_KEY,
    .create = rsa_create,
    .ops = &rsa_ops,
};

/* bench-rsa first: build/pkcs11-bench-threads uses the first factory */
static const km_factory *const factories[] = {&rsa_factory, &echo_factory};

static const km_plugin plugin = {
    .struct_size = sizeof(km_plugin),
    .abi_major = KM_ABI_VERSION_MAJOR,
    .abi_minor = KM_ABI_VERSION_MINOR,
    .plugin_name = "bench",
    .plugin_version = "0.1",
    .factories = factories,
    .factory_count = 2,
    .free = plugin_free,
};

__attribute__((visibility("default"))) const km_plugin *km_plugin_init(const km_host *host)
{
    (void)host;
    return &plugin;
}
