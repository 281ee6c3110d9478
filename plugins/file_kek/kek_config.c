/* kek_config.c -- parse and validate the file-kek configuration. */
#define _POSIX_C_SOURCE 200809L
#include "kek_config.h"
#include "json_scan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#define KEK_HEX_LEN (2 * KEK_LEN)
#define KEK_FILE_SUFFIX ".key"

typedef struct parse_state {
    kek_set *set;
    size_t cap;
    char *default_id;
    char *kek_dir;
    int seen_keks;
    char *err;
    size_t err_size;
    kek_warn_fn warn;
} parse_state;

static int fail(parse_state *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(parse_state *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->err, st->err_size, fmt, ap);
    va_end(ap);
    utf8_trim_partial(st->err);
    return -1;
}

/* A printable rendering of a name for error messages: control characters
 * become '?', long names are cut on a UTF-8 character boundary. */
static const char *printable_n(char *dst, size_t dst_size, const char *s, size_t limit)
{
    size_t n = strlen(s), i;
    int cut = 0;
    if (n > limit) {
        n = limit;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--; /* do not split a multi-byte character */
        cut = 1;
    }
    if (n + 4 > dst_size)
        n = dst_size > 4 ? dst_size - 4 : 0;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        dst[i] = (ch < 0x20 || ch == 0x7F) ? '?' : (char)ch;
    }
    dst[i] = '\0';
    if (cut)
        strcat(dst, "...");
    return dst;
}

static const char *printable(char *dst, size_t dst_size, const char *s)
{
    return printable_n(dst, dst_size, s, 48);
}

static int hex_nibble(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* Decodes exactly KEK_HEX_LEN hex characters. Returns a reason or NULL. */
static const char *decode_kek_hex(const char *hex, size_t len, unsigned char key[KEK_LEN])
{
    if (len != KEK_HEX_LEN)
        return "must be 64 hex characters (a 256-bit key)";
    for (size_t i = 0; i < KEK_LEN; i++) {
        int hi = hex_nibble(hex[2 * i]), lo = hex_nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            OPENSSL_cleanse(key, KEK_LEN);
            return "contains a character that is not hex";
        }
        key[i] = (unsigned char)(hi << 4 | lo);
    }
    return NULL;
}

/* Key ids from JSON: 1..KEK_ID_MAX bytes, no control characters. */
static const char *check_key_id(const char *id, size_t len)
{
    if (len == 0)
        return "key id is empty";
    if (len > KEK_ID_MAX)
        return "key id is longer than 128 bytes";
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)id[i];
        if (ch < 0x20 || ch == 0x7F)
            return "key id contains a control character";
    }
    return NULL;
}

/* Appends a KEK; takes ownership of id. */
static int add_kek(parse_state *st, char *id, size_t id_len, const unsigned char key[KEK_LEN])
{
    kek_set *set = st->set;
    if (set->count >= KEK_MAX_COUNT) {
        free(id);
        return fail(st, "file-kek config: more than %d KEKs", KEK_MAX_COUNT);
    }
    if (set->count == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 8;
        kek *grown = calloc(cap, sizeof *grown);
        if (!grown) {
            free(id);
            return fail(st, "file-kek config: out of memory");
        }
        if (set->count) {
            memcpy(grown, set->keks, set->count * sizeof *grown);
            OPENSSL_cleanse(set->keks, set->count * sizeof *grown);
        }
        free(set->keks);
        set->keks = grown;
        st->cap = cap;
    }
    kek *k = &set->keks[set->count++];
    k->id = id;
    k->id_len = id_len;
    memcpy(k->key, key, KEK_LEN);
    return 0;
}

/* A member had the wrong type, or was not JSON at all. */
static int type_error(parse_state *st, json_cursor *c, json_type t, const char *want)
{
    if (t == JSON_T_INVALID)
        return fail(st, "file-kek config: invalid JSON at byte %zu: expected a value", c->pos);
    return fail(st, "file-kek config: %s, got %s", want, json_type_name(t));
}

static int parse_keks(parse_state *st, json_cursor *c)
{
    json_type t = json_peek(c);
    if (t != JSON_T_OBJECT)
        return type_error(st, c, t, "\"keks\" must be an object of key id -> 64 hex characters");
    c->pos++;
    if (json_accept(c, '}'))
        return 0;
    do {
        char *id = NULL, *hex = NULL, shown[64];
        size_t id_len, hex_len;
        if (json_read_string(c, &id, &id_len) < 0 || json_expect(c, ':') < 0) {
            free(id);
            return fail(st, "file-kek config: %s", c->error);
        }
        const char *why = check_key_id(id, id_len);
        if (why) {
            fail(st, "file-kek config: \"keks\": %s", why);
            free(id);
            return -1;
        }
        t = json_peek(c);
        if (t != JSON_T_STRING) {
            char want[128];
            snprintf(want, sizeof want, "keks[\"%s\"] must be a string of 64 hex characters",
                     printable(shown, sizeof shown, id));
            free(id);
            return type_error(st, c, t, want);
        }
        if (json_read_string(c, &hex, &hex_len) < 0) {
            free(id);
            return fail(st, "file-kek config: %s", c->error);
        }
        unsigned char key[KEK_LEN];
        why = decode_kek_hex(hex, hex_len, key);
        OPENSSL_clear_free(hex, hex_len + 1);
        if (why) {
            fail(st, "file-kek config: keks[\"%s\"] %s", printable(shown, sizeof shown, id), why);
            free(id);
            return -1;
        }
        int rc = add_kek(st, id, id_len, key);
        OPENSSL_cleanse(key, sizeof key);
        if (rc < 0)
            return -1;
    } while (json_accept(c, ','));
    if (json_expect(c, '}') < 0)
        return fail(st, "file-kek config: %s", c->error);
    return 0;
}

static int read_string_member(parse_state *st, json_cursor *c, const char *name, char **out)
{
    json_type t = json_peek(c);
    if (t != JSON_T_STRING) {
        char want[64];
        snprintf(want, sizeof want, "\"%s\" must be a string", name);
        return type_error(st, c, t, want);
    }
    size_t len;
    if (json_read_string(c, out, &len) < 0)
        return fail(st, "file-kek config: %s", c->error);
    if (len == 0)
        return fail(st, "file-kek config: \"%s\" is empty", name);
    return 0;
}

static int parse_json(parse_state *st, const char *json, size_t len)
{
    json_cursor c;
    json_init(&c, json, len);
    json_type t = json_peek(&c);
    if (t == JSON_T_INVALID && c.pos >= c.len)
        return fail(st, "file-kek config: empty; expected a JSON object");
    if (t != JSON_T_OBJECT) {
        if (t == JSON_T_INVALID)
            return fail(st, "file-kek config: invalid JSON at byte %zu: expected an object", c.pos);
        return fail(st, "file-kek config: must be a JSON object, got %s", json_type_name(t));
    }
    c.pos++;
    if (!json_accept(&c, '}')) {
        do {
            char *name = NULL, shown[64];
            size_t name_len;
            if (json_read_string(&c, &name, &name_len) < 0 || json_expect(&c, ':') < 0) {
                free(name);
                return fail(st, "file-kek config: %s", c.error);
            }
            int rc, dup = 0;
            if (strcmp(name, "keks") == 0) {
                dup = st->seen_keks;
                st->seen_keks = 1;
                rc = dup ? -1 : parse_keks(st, &c);
            } else if (strcmp(name, "default_key_id") == 0) {
                dup = st->default_id != NULL;
                rc = dup ? -1 : read_string_member(st, &c, name, &st->default_id);
            } else if (strcmp(name, "kek_dir") == 0) {
                dup = st->kek_dir != NULL;
                rc = dup ? -1 : read_string_member(st, &c, name, &st->kek_dir);
            } else {
                rc = fail(st, "file-kek config: unknown field \"%s\" (allowed: keks, kek_dir, default_key_id)",
                          printable(shown, sizeof shown, name));
            }
            if (dup)
                fail(st, "file-kek config: field \"%s\" appears twice", name);
            free(name);
            if (rc < 0)
                return -1;
        } while (json_accept(&c, ','));
        if (json_expect(&c, '}') < 0)
            return fail(st, "file-kek config: %s", c.error);
    }
    if (json_expect_end(&c) < 0)
        return fail(st, "file-kek config: %s", c.error);
    return 0;
}

/* Key file stems: [A-Za-z0-9._-], not starting with '.', 1..KEK_ID_MAX. */
static int is_safe_file_id(const char *s, size_t len)
{
    if (len == 0 || len > KEK_ID_MAX || s[0] == '.')
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')
              || ch == '.' || ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

static int load_key_file(parse_state *st, int dir_fd, const char *name, size_t id_len)
{
    char shown[64];
    printable(shown, sizeof shown, name);
    int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return fail(st, "file-kek config: kek_dir: cannot open %s: %s", shown, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return fail(st, "file-kek config: kek_dir: %s is not a regular file", shown);
    }
    if (sb.st_mode & (S_IRWXG | S_IRWXO)) {
        char msg[160];
        snprintf(msg, sizeof msg, "file-kek: key file %s is accessible by group or others (mode %03o)",
                 shown, (unsigned)(sb.st_mode & 0777));
        if (st->warn)
            st->warn(msg);
    }
    /* 64 hex characters plus an optional "\n" or "\r\n"; one byte more
     * lets us tell "too long" apart. */
    char buf[KEK_HEX_LEN + 3];
    size_t n = 0;
    while (n < sizeof buf) {
        ssize_t r = read(fd, buf + n, sizeof buf - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            OPENSSL_cleanse(buf, sizeof buf);
            return fail(st, "file-kek config: kek_dir: cannot read %s: %s", shown, strerror(e));
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    size_t hex_len = n;
    if (hex_len > 0 && buf[hex_len - 1] == '\n') {
        hex_len--;
        if (hex_len > 0 && buf[hex_len - 1] == '\r')
            hex_len--;
    }
    unsigned char key[KEK_LEN];
    const char *why = decode_kek_hex(buf, hex_len, key);
    OPENSSL_cleanse(buf, sizeof buf);
    if (why)
        return fail(st, "file-kek config: kek_dir: %s %s", shown, why);
    char *id = strndup(name, id_len);
    if (!id) {
        OPENSSL_cleanse(key, sizeof key);
        return fail(st, "file-kek config: out of memory");
    }
    int rc = add_kek(st, id, id_len, key);
    OPENSSL_cleanse(key, sizeof key);
    return rc;
}

static int load_kek_dir(parse_state *st)
{
    const char *dir = st->kek_dir;
    char shown[260]; /* paths are not secret: show most of them */
    printable_n(shown, sizeof shown, dir, 240);
    DIR *d = opendir(dir);
    if (!d)
        return fail(st, "file-kek config: kek_dir %s: %s", shown, strerror(errno));
    const size_t suffix_len = strlen(KEK_FILE_SUFFIX);
    struct dirent *e;
    int rc = 0;
    errno = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        size_t len = strlen(name);
        if (name[0] == '.')
            continue; /* hidden files, "." and "..", Kubernetes' ..data links */
        if (len <= suffix_len || strcmp(name + len - suffix_len, KEK_FILE_SUFFIX) != 0)
            continue;
        if (!is_safe_file_id(name, len - suffix_len)) {
            char bad[64];
            rc = fail(st, "file-kek config: kek_dir: key file name %s is not <id>.key with an id of "
                      "1-128 characters from A-Z a-z 0-9 . _ -", printable(bad, sizeof bad, name));
            break;
        }
        rc = load_key_file(st, dirfd(d), name, len - suffix_len);
        errno = 0;
    }
    if (rc == 0 && errno != 0)
        rc = fail(st, "file-kek config: kek_dir %s: %s", shown, strerror(errno));
    closedir(d);
    if (rc == 0 && st->set->count == 0)
        rc = fail(st, "file-kek config: kek_dir %s holds no <key id>.key files", shown);
    return rc;
}

static int compare_keks(const void *a, const void *b)
{
    return strcmp(((const kek *)a)->id, ((const kek *)b)->id);
}

int kek_set_parse(const char *config_json, size_t len, kek_set *out,
                  char *err, size_t err_size, kek_warn_fn warn)
{
    parse_state st = {.set = out, .err = err, .err_size = err_size, .warn = warn};
    memset(out, 0, sizeof *out);
    int rc = config_json || len == 0 ? parse_json(&st, config_json ? config_json : "", len)
                                     : fail(&st, "file-kek config: missing");
    if (rc == 0 && st.seen_keks && st.kek_dir)
        rc = fail(&st, "file-kek config: give either \"keks\" or \"kek_dir\", not both");
    else if (rc == 0 && !st.seen_keks && !st.kek_dir)
        rc = fail(&st, "file-kek config: needs \"keks\" (key id -> 64 hex characters) or \"kek_dir\"");
    if (rc == 0 && st.kek_dir)
        rc = load_kek_dir(&st);
    if (rc == 0 && out->count == 0)
        rc = fail(&st, "file-kek config: \"keks\" is empty");
    if (rc == 0) {
        qsort(out->keks, out->count, sizeof *out->keks, compare_keks);
        for (size_t i = 1; i < out->count; i++) {
            if (strcmp(out->keks[i - 1].id, out->keks[i].id) == 0) {
                char shown[64];
                rc = fail(&st, "file-kek config: key id \"%s\" appears twice",
                          printable(shown, sizeof shown, out->keks[i].id));
                break;
            }
        }
    }
    if (rc == 0) {
        if (st.default_id) {
            out->default_kek = kek_set_find(out, st.default_id);
            if (!out->default_kek) {
                char shown[64];
                rc = fail(&st, "file-kek config: default_key_id \"%s\" is not one of the configured KEKs",
                          printable(shown, sizeof shown, st.default_id));
            }
        } else if (out->count == 1) {
            out->default_kek = &out->keks[0];
        } else {
            rc = fail(&st, "file-kek config: default_key_id is required when more than one KEK is configured");
        }
    }
    free(st.default_id);
    free(st.kek_dir);
    if (rc < 0)
        kek_set_clear(out);
    return rc;
}

const kek *kek_set_find(const kek_set *set, const char *id)
{
    if (id[0] == '\0')
        return set->default_kek;
    kek probe = {.id = (char *)id};
    return bsearch(&probe, set->keks, set->count, sizeof *set->keks, compare_keks);
}

void kek_set_clear(kek_set *set)
{
    for (size_t i = 0; i < set->count; i++)
        free(set->keks[i].id);
    if (set->keks)
        OPENSSL_clear_free(set->keks, set->count * sizeof *set->keks);
    memset(set, 0, sizeof *set);
}
