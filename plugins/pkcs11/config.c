/* config.c -- parse the pkcs11 manager's config_json (a flat JSON object).
 *
 * A small strict reader: the document must be one object whose members are
 * the known fields with string or non-negative integer values. Unknown or
 * duplicate fields are refused so a typo ("pin_flie") is not silently
 * ignored. Messages name fields, never values.
 */
#define _POSIX_C_SOURCE 200809L
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "keymanager.h"

#define PIN_FILE_MAX 1024

typedef struct reader {
    const char *s;
    size_t len, pos;
    char *err;
    size_t errlen;
} reader;

static int fail(reader *r, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(r->err, r->errlen, "pkcs11 config: ");
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < r->errlen)
        vsnprintf(r->err + n, r->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static void skip_ws(reader *r)
{
    while (r->pos < r->len && (r->s[r->pos] == ' ' || r->s[r->pos] == '\t' ||
                               r->s[r->pos] == '\n' || r->s[r->pos] == '\r'))
        r->pos++;
}

static int peek(reader *r)
{
    skip_ws(r);
    return r->pos < r->len ? (unsigned char)r->s[r->pos] : -1;
}

static int hex4(reader *r, unsigned *out)
{
    unsigned v = 0;
    if (r->len - r->pos < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        char c = r->s[r->pos++];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Reads a JSON string at the cursor into a fresh NUL-terminated buffer.
 * `what` names the thing being read for error messages. */
static int read_string(reader *r, const char *what, char **out, size_t *out_len)
{
    if (peek(r) != '"')
        return fail(r, "%s must be a string", what);
    r->pos++;
    /* Escapes never expand: the output fits in the remaining input. */
    char *buf = malloc(r->len - r->pos + 1);
    size_t n = 0;
    if (!buf)
        return fail(r, "out of memory");
    for (;;) {
        if (r->pos >= r->len) { fail(r, "unterminated string in %s", what); goto bad; }
        unsigned char c = (unsigned char)r->s[r->pos++];
        if (c == '"')
            break;
        if (c < 0x20) { fail(r, "control character in %s", what); goto bad; }
        if (c != '\\') { buf[n++] = (char)c; continue; }
        if (r->pos >= r->len) { fail(r, "unterminated string in %s", what); goto bad; }
        char e = r->s[r->pos++];
        switch (e) {
        case '"': case '\\': case '/': buf[n++] = e; break;
        case 'b': buf[n++] = '\b'; break;
        case 'f': buf[n++] = '\f'; break;
        case 'n': buf[n++] = '\n'; break;
        case 'r': buf[n++] = '\r'; break;
        case 't': buf[n++] = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (hex4(r, &cp) < 0) { fail(r, "bad \\u escape in %s", what); goto bad; }
            if (cp >= 0xD800 && cp < 0xDC00) {
                if (r->len - r->pos < 6 || r->s[r->pos] != '\\' || r->s[r->pos + 1] != 'u') {
                    fail(r, "unpaired surrogate in %s", what); goto bad;
                }
                r->pos += 2;
                if (hex4(r, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF) {
                    fail(r, "unpaired surrogate in %s", what); goto bad;
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                fail(r, "unpaired surrogate in %s", what); goto bad;
            }
            if (cp == 0) { fail(r, "NUL character in %s", what); goto bad; }
            n += put_utf8(buf + n, cp);
            break;
        }
        default:
            fail(r, "bad escape in %s", what);
            goto bad;
        }
    }
    buf[n] = '\0';
    *out = buf;
    if (out_len)
        *out_len = n;
    return 0;
bad:
    OPENSSL_cleanse(buf, n);
    free(buf);
    return -1;
}

/* A non-negative integer: a JSON integer, or a string of decimal digits. */
static int read_uint(reader *r, const char *what, unsigned long *out)
{
    char *digits = NULL;
    const char *p;
    size_t n = 0;
    if (peek(r) == '"') {
        if (read_string(r, what, &digits, &n) < 0)
            return -1;
        p = digits;
    } else {
        p = r->s + r->pos;
        while (r->pos + n < r->len && p[n] >= '0' && p[n] <= '9')
            n++;
        r->pos += n;
        if (r->pos < r->len && (r->s[r->pos] == '.' || r->s[r->pos] == 'e' ||
                                r->s[r->pos] == 'E' || r->s[r->pos] == '-'))
            n = 0; /* fractions, exponents and signs are refused below */
    }
    unsigned long v = 0;
    int ok = n > 0 && n <= 19 && !(n > 1 && p[0] == '0');
    for (size_t i = 0; ok && i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            ok = 0;
        else
            v = v * 10 + (unsigned long)(p[i] - '0');
    }
    free(digits);
    if (!ok)
        return fail(r, "%s must be a non-negative integer", what);
    *out = v;
    return 0;
}

static int read_pin_file(reader *r, const char *path, p11_config *cfg)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(r, "pin_file: cannot read %s: %s", path, strerror(errno));
    char *buf = malloc(PIN_FILE_MAX + 1);
    if (!buf) {
        fclose(f);
        return fail(r, "out of memory");
    }
    size_t n = fread(buf, 1, PIN_FILE_MAX + 1, f);
    int read_error = ferror(f);
    fclose(f);
    if (read_error || n > PIN_FILE_MAX) {
        OPENSSL_cleanse(buf, PIN_FILE_MAX + 1);
        free(buf);
        return fail(r, read_error ? "pin_file: cannot read %s" : "pin_file: %s is larger than %d bytes",
                    path, PIN_FILE_MAX);
    }
    /* One line: drop a trailing newline (and CR). */
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    if (n == 0 || memchr(buf, '\0', n)) {
        OPENSSL_cleanse(buf, PIN_FILE_MAX + 1);
        free(buf);
        return fail(r, n == 0 ? "pin_file: %s is empty" : "pin_file: %s holds a NUL byte", path);
    }
    cfg->pin = buf;
    cfg->pin_len = n;
    return 0;
}

static int set_string(reader *r, const char *name, char **slot)
{
    if (*slot)
        return fail(r, "duplicate field \"%s\"", name);
    size_t n;
    if (read_string(r, name, slot, &n) < 0)
        return -1;
    if (n == 0 || memchr(*slot, '\0', n))
        return fail(r, "%s must not be empty", name);
    return 0;
}

int p11_config_parse(const char *json, size_t len, p11_config *cfg,
                     char *err, size_t errlen)
{
    reader r = {json, len, 0, err, errlen};
    char *pin_inline = NULL, *pin_env = NULL, *pin_file = NULL, *aes = NULL;
    size_t pin_inline_len = 0;
    int seen_slot = 0, seen_max = 0;
    int status = KM_ERR_INVALID_ARGUMENT;

    memset(cfg, 0, sizeof *cfg);
    cfg->max_sessions = 16;
    if (!json || peek(&r) != '{') {
        fail(&r, "config_json must be a JSON object");
        goto out;
    }
    r.pos++;
    if (peek(&r) == '}') {
        r.pos++;
    } else {
        for (;;) {
            char *name = NULL;
            if (read_string(&r, "a field name", &name, NULL) < 0)
                goto out;
            if (peek(&r) != ':') {
                free(name);
                fail(&r, "expected ':' at byte %zu", r.pos);
                goto out;
            }
            r.pos++;
            int rc;
            if (!strcmp(name, "module")) rc = set_string(&r, "module", &cfg->module);
            else if (!strcmp(name, "token_label")) rc = set_string(&r, "token_label", &cfg->token_label);
            else if (!strcmp(name, "key_label")) rc = set_string(&r, "key_label", &cfg->key_label);
            else if (!strcmp(name, "pin_env")) rc = set_string(&r, "pin_env", &pin_env);
            else if (!strcmp(name, "pin_file")) rc = set_string(&r, "pin_file", &pin_file);
            else if (!strcmp(name, "aes_mechanism")) rc = set_string(&r, "aes_mechanism", &aes);
            else if (!strcmp(name, "pin")) {
                rc = pin_inline ? fail(&r, "duplicate field \"pin\"")
                                : read_string(&r, "pin", &pin_inline, &pin_inline_len);
            } else if (!strcmp(name, "slot_id")) {
                rc = seen_slot++ ? fail(&r, "duplicate field \"slot_id\"")
                                 : read_uint(&r, "slot_id", &cfg->slot_id);
                cfg->has_slot_id = 1;
            } else if (!strcmp(name, "max_sessions")) {
                unsigned long v = 0;
                rc = seen_max++ ? fail(&r, "duplicate field \"max_sessions\"")
                                : read_uint(&r, "max_sessions", &v);
                if (rc == 0 && (v < 1 || v > 256))
                    rc = fail(&r, "max_sessions must be between 1 and 256");
                cfg->max_sessions = (unsigned)v;
            } else {
                /* Field names are not secret; clip them for the message. */
                rc = fail(&r, "unknown field \"%.40s\" (known: module, token_label, slot_id, "
                              "pin, pin_env, pin_file, key_label, max_sessions, aes_mechanism)",
                          name);
            }
            free(name);
            if (rc < 0)
                goto out;
            int c = peek(&r);
            if (c == ',') { r.pos++; continue; }
            if (c == '}') { r.pos++; break; }
            fail(&r, "expected ',' or '}' at byte %zu", r.pos);
            goto out;
        }
    }
    if (peek(&r) != -1) {
        fail(&r, "unexpected data after the JSON object at byte %zu", r.pos);
        goto out;
    }

    if (!cfg->module) {
        fail(&r, "\"module\" (path of the PKCS#11 library) is required");
        goto out;
    }
    if (!cfg->token_label == !cfg->has_slot_id) {
        fail(&r, "give exactly one of \"token_label\" or \"slot_id\"");
        goto out;
    }
    if (cfg->token_label && strlen(cfg->token_label) > 32) {
        fail(&r, "token_label is longer than 32 bytes");
        goto out;
    }
    if (!!pin_inline + !!pin_env + !!pin_file != 1) {
        fail(&r, "give exactly one of \"pin\", \"pin_env\" or \"pin_file\"");
        goto out;
    }
    if (aes) {
        if (!strcmp(aes, "auto")) cfg->aes_mech = P11_AES_AUTO;
        else if (!strcmp(aes, "gcm")) cfg->aes_mech = P11_AES_GCM;
        else if (!strcmp(aes, "kwp")) cfg->aes_mech = P11_AES_KWP;
        else {
            fail(&r, "aes_mechanism must be \"auto\", \"gcm\" or \"kwp\"");
            goto out;
        }
    }
    if (pin_inline) {
        if (pin_inline_len == 0) {
            fail(&r, "pin is empty");
            goto out;
        }
        cfg->pin = pin_inline;
        cfg->pin_len = pin_inline_len;
        pin_inline = NULL;
    } else if (pin_env) {
        const char *v = getenv(pin_env);
        if (!v || !*v) {
            fail(&r, "pin_env: environment variable %.64s is %s", pin_env, v ? "empty" : "not set");
            goto out;
        }
        cfg->pin_len = strlen(v);
        cfg->pin = strdup(v);
        if (!cfg->pin) {
            fail(&r, "out of memory");
            goto out;
        }
    } else if (read_pin_file(&r, pin_file, cfg) < 0) {
        goto out;
    }
    status = KM_OK;
out:
    if (pin_inline) {
        OPENSSL_cleanse(pin_inline, pin_inline_len);
        free(pin_inline);
    }
    free(pin_env);
    free(pin_file);
    free(aes);
    if (status != KM_OK)
        p11_config_free(cfg);
    return status;
}

void p11_config_free(p11_config *cfg)
{
    if (cfg->pin) {
        OPENSSL_cleanse(cfg->pin, cfg->pin_len);
        free(cfg->pin);
    }
    free(cfg->module);
    free(cfg->token_label);
    free(cfg->key_label);
    memset(cfg, 0, sizeof *cfg);
}
