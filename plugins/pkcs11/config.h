/* config.h -- the pkcs11 manager's provider configuration (config_json).
 *
 * {
 *   "module":        "/usr/lib/softhsm/libsofthsm2.so",   required
 *   "token_label":   "kas",        one of token_label / slot_id
 *   "slot_id":       1405173333,   (integer, or a string of digits)
 *   "pin" | "pin_env" | "pin_file": the user PIN, inline, from an
 *                    environment variable, or from a file (one line)
 *   "key_label":     "kas-aes",    the default key (key_id "")
 *   "max_sessions":  16,           optional, 1..256
 *   "aes_mechanism": "auto"        optional: "auto", "gcm" or "kwp"
 * }
 *
 * Errors name the offending field, never a value (the PIN is a secret).
 */
#ifndef PKCS11_CONFIG_H
#define PKCS11_CONFIG_H

#include <stddef.h>

enum p11_aes_mech { P11_AES_AUTO = 0, P11_AES_GCM, P11_AES_KWP };

typedef struct p11_config {
    char *module;          /* path of the PKCS#11 library */
    char *token_label;     /* NULL when slot_id is used */
    int has_slot_id;
    unsigned long slot_id;
    char *pin;             /* resolved user PIN (secret; cleansed on free) */
    size_t pin_len;
    char *key_label;       /* NULL: no default key */
    unsigned max_sessions;
    enum p11_aes_mech aes_mech;
} p11_config;

/* Parses and validates config_json and resolves the PIN source.
 * Returns a KM_* status; on failure writes a one-line message to err. */
int p11_config_parse(const char *json, size_t len, p11_config *cfg,
                     char *err, size_t errlen);

/* Releases everything, cleansing the PIN. Safe on a zeroed config. */
void p11_config_free(p11_config *cfg);

#endif
