/*
 * pkcs11-bench-threads -- does the token serialize RSA decrypts across threads?
 *
 *   pkcs11-bench-threads PLUGIN.so CONFIG.json [SECONDS] [MAX_THREADS]
 *
 * Loads the plugin, builds a manager from CONFIG.json (its default key must
 * be an RSA key pair), wraps a 32-byte DEK to the key's public half with
 * RSA-OAEP-SHA1 (OpenSSL), then for 1..MAX_THREADS threads counts unwraps
 * through the plugin for SECONDS each. The same is done with OpenSSL on an
 * in-memory RSA key of the same size, which shows what the machine's cores
 * give at that moment. Prints one line per thread count:
 *
 *   threads=2 plugin=1234.5/s (x1.93 of 1 thread) openssl=2345.6/s (x1.98) plugin/openssl=0.53
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "keymanager.h"

#define MAX_THREADS 16

static const km_plugin *plugin;
static const km_factory *factory;
static km_manager *mgr;
static EVP_PKEY *local_key;
static uint8_t wrapped[1024], local_wrapped[1024];
static size_t wrapped_len, local_wrapped_len;
static atomic_int stop;
static atomic_int failed;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "pkcs11-bench-threads: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

static int oaep_sha1(EVP_PKEY_CTX *ctx)
{
    return EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) > 0 &&
           EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha1()) > 0 &&
           EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha1()) > 0;
}

static size_t encrypt_to(EVP_PKEY *pub, const uint8_t *dek, size_t n, uint8_t *out, size_t cap)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pub, NULL);
    size_t len = cap;
    if (!ctx || EVP_PKEY_encrypt_init(ctx) <= 0 || !oaep_sha1(ctx) ||
        EVP_PKEY_encrypt(ctx, out, &len, dek, n) <= 0)
        die("RSA-OAEP encrypt failed", NULL);
    EVP_PKEY_CTX_free(ctx);
    return len;
}

static void *plugin_worker(void *arg)
{
    long *count = arg;
    km_call_ctx ctx = {sizeof ctx, 0, NULL};
    while (!atomic_load(&stop)) {
        uint8_t *out = NULL;
        size_t out_len = 0;
        char *err = NULL;
        int32_t st = factory->ops->unwrap(mgr, &ctx, "", wrapped, wrapped_len, &out, &out_len, &err);
        if (st != KM_OK) {
            if (!atomic_exchange(&failed, 1))
                fprintf(stderr, "unwrap failed (%d): %s\n", st, err ? err : "");
            plugin->free(err);
            break;
        }
        plugin->free(out);
        (*count)++;
    }
    return NULL;
}

static void *openssl_worker(void *arg)
{
    long *count = arg;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(local_key, NULL);
    if (!ctx || EVP_PKEY_decrypt_init(ctx) <= 0 || !oaep_sha1(ctx))
        die("OpenSSL decrypt init failed", NULL);
    while (!atomic_load(&stop)) {
        uint8_t out[512];
        size_t n = sizeof out;
        if (EVP_PKEY_decrypt(ctx, out, &n, local_wrapped, local_wrapped_len) <= 0)
            die("OpenSSL decrypt failed", NULL);
        (*count)++;
    }
    EVP_PKEY_CTX_free(ctx);
    return NULL;
}

static double rate(void *(*fn)(void *), int threads, double seconds)
{
    pthread_t t[MAX_THREADS];
    long counts[MAX_THREADS] = {0};
    atomic_store(&stop, 0);
    double start = now();
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, fn, &counts[i]);
    struct timespec nap = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&nap, NULL);
    atomic_store(&stop, 1);
    long total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        total += counts[i];
    }
    if (atomic_load(&failed))
        die("a plugin call failed", NULL);
    return (double)total / (now() - start);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die("cannot open config", path);
    static char buf[65536];
    *len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return buf;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s PLUGIN.so CONFIG.json [SECONDS] [MAX_THREADS]\n", argv[0]);
        return 2;
    }
    double seconds = argc > 3 ? atof(argv[3]) : 2.0;
    int max_threads = argc > 4 ? atoi(argv[4]) : 2;
    if (seconds <= 0 || max_threads < 1 || max_threads > MAX_THREADS)
        die("bad SECONDS or MAX_THREADS", NULL);

    void *dl = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!dl)
        die("dlopen failed", dlerror());
    const km_plugin *(*init)(const km_host *) = NULL;
    *(void **)&init = dlsym(dl, "km_plugin_init");
    km_host host = {.struct_size = sizeof host, .abi_major = KM_ABI_VERSION_MAJOR,
                    .abi_minor = KM_ABI_VERSION_MINOR};
    if (!init || !(plugin = init(&host)) || plugin->factory_count < 1)
        die("not a key-manager plugin", argv[1]);
    factory = plugin->factories[0];

    size_t cfg_len;
    const char *cfg = read_file(argv[2], &cfg_len);
    char *err = NULL;
    if (factory->create(cfg, cfg_len, &mgr, &err) != KM_OK)
        die("create failed", err);

    km_call_ctx ctx = {sizeof ctx, 0, NULL};
    uint8_t *pem = NULL;
    size_t pem_len = 0;
    if (factory->ops->get_public_key(mgr, &ctx, "", &pem, &pem_len, &err) != KM_OK)
        die("get_public_key failed (the default key must be RSA)", err);
    BIO *bio = BIO_new_mem_buf(pem, (int)pem_len);
    EVP_PKEY *pub = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    plugin->free(pem);
    if (!pub || EVP_PKEY_get_base_id(pub) != EVP_PKEY_RSA)
        die("the default key's public key is not RSA", NULL);

    uint8_t dek[32];
    RAND_bytes(dek, sizeof dek);
    wrapped_len = encrypt_to(pub, dek, sizeof dek, wrapped, sizeof wrapped);
    local_key = EVP_RSA_gen((unsigned)EVP_PKEY_get_bits(pub));
    if (!local_key)
        die("RSA key generation failed", NULL);
    local_wrapped_len = encrypt_to(local_key, dek, sizeof dek, local_wrapped, sizeof local_wrapped);

    printf("RSA-%d OAEP-SHA1 unwrap, %.1fs per run\n", EVP_PKEY_get_bits(pub), seconds);
    double plugin_one = 0, openssl_one = 0;
    for (int t = 1; t <= max_threads; t++) {
        double p = rate(plugin_worker, t, seconds);
        double o = rate(openssl_worker, t, seconds);
        if (t == 1) {
            plugin_one = p;
            openssl_one = o;
        }
        printf("threads=%d plugin=%.1f/s (x%.2f of 1 thread) openssl=%.1f/s (x%.2f) plugin/openssl=%.2f\n",
               t, p, p / plugin_one, o, o / openssl_one, p / o);
        fflush(stdout);
    }
    factory->ops->destroy(mgr);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(local_key);
    return 0;
}
