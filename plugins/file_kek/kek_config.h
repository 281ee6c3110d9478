/*
 * kek_config.h -- the file-kek provider configuration: which KEKs exist and
 * which one is the default. Parsed once in create(); read-only afterwards,
 * so any number of threads may look keys up at the same time.
 *
 * Accepted shapes (JSON object, no other members):
 *   {"keks": {"<key id>": "<64 hex chars>", ...}, "default_key_id": "<key id>"}
 *   {"kek_dir": "<dir>", "default_key_id": "<key id>"}   (default optional)
 * kek_dir holds one file per key, <key id>.key, containing 64 hex characters
 * and an optional trailing newline. Hidden files and other names are ignored.
 * default_key_id may be omitted when exactly one KEK is configured.
 */
#ifndef FILE_KEK_KEK_CONFIG_H
#define FILE_KEK_KEK_CONFIG_H

#include <stddef.h>

#define KEK_LEN 32            /* AES-256 */
#define KEK_ID_MAX 128        /* bytes of UTF-8 */
#define KEK_MAX_COUNT 4096

typedef struct kek {
    char *id;                 /* NUL-terminated UTF-8, 1..KEK_ID_MAX bytes */
    size_t id_len;
    unsigned char key[KEK_LEN];
} kek;

typedef struct kek_set {
    kek *keks;                /* sorted by id (strcmp) */
    size_t count;
    const kek *default_kek;   /* points into keks */
} kek_set;

/* Called with warnings worth an operator's attention (never key material). */
typedef void (*kek_warn_fn)(const char *message);

/* Parses config_json into *out. On failure returns -1 and writes a one-line
 * reason (never key material) into err. */
int kek_set_parse(const char *config_json, size_t len, kek_set *out,
                  char *err, size_t err_size, kek_warn_fn warn);

/* The KEK named id; "" means the default. NULL if there is none. */
const kek *kek_set_find(const kek_set *set, const char *id);

/* Wipes and frees every KEK. */
void kek_set_clear(kek_set *set);

#endif
