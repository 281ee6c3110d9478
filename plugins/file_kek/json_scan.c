/* json_scan.c -- see json_scan.h. Strict RFC 8259; no extensions. */
#include "json_scan.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

void json_init(json_cursor *c, const char *buf, size_t len)
{
    c->buf = buf;
    c->len = len;
    c->pos = 0;
    c->error[0] = '\0';
}

int json_fail(json_cursor *c, const char *fmt, ...)
{
    if (c->error[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->error, sizeof c->error, fmt, ap);
        va_end(ap);
        utf8_trim_partial(c->error);
    }
    return -1;
}

void utf8_trim_partial(char *s)
{
    size_t n = strlen(s), lead = n, back = 0;
    while (lead > 0 && back < 4 && ((unsigned char)s[lead - 1] & 0xC0) == 0x80) {
        lead--;
        back++;
    }
    if (lead == 0)
        return;
    unsigned char c = (unsigned char)s[lead - 1];
    size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    if (need > 1 && n - (lead - 1) < need)
        s[lead - 1] = '\0';
}

static void skip_ws(json_cursor *c)
{
    while (c->pos < c->len) {
        char ch = c->buf[c->pos];
        if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r')
            break;
        c->pos++;
    }
}

static int has_word(const json_cursor *c, const char *word)
{
    size_t n = strlen(word);
    return c->len - c->pos >= n && memcmp(c->buf + c->pos, word, n) == 0;
}

json_type json_peek(json_cursor *c)
{
    skip_ws(c);
    if (c->pos >= c->len)
        return JSON_T_INVALID;
    switch (c->buf[c->pos]) {
    case '{': return JSON_T_OBJECT;
    case '[': return JSON_T_ARRAY;
    case '"': return JSON_T_STRING;
    case 't': return has_word(c, "true") ? JSON_T_BOOL : JSON_T_INVALID;
    case 'f': return has_word(c, "false") ? JSON_T_BOOL : JSON_T_INVALID;
    case 'n': return has_word(c, "null") ? JSON_T_NULL : JSON_T_INVALID;
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        return JSON_T_NUMBER;
    default: return JSON_T_INVALID;
    }
}

const char *json_type_name(json_type t)
{
    switch (t) {
    case JSON_T_OBJECT: return "an object";
    case JSON_T_ARRAY: return "an array";
    case JSON_T_STRING: return "a string";
    case JSON_T_NUMBER: return "a number";
    case JSON_T_BOOL: return "a boolean";
    case JSON_T_NULL: return "null";
    default: return "not a JSON value";
    }
}

int json_expect(json_cursor *c, char ch)
{
    skip_ws(c);
    if (c->pos >= c->len)
        return json_fail(c, "invalid JSON: unexpected end of input, expected '%c'", ch);
    if (c->buf[c->pos] != ch)
        return json_fail(c, "invalid JSON at byte %zu: expected '%c'", c->pos, ch);
    c->pos++;
    return 0;
}

int json_accept(json_cursor *c, char ch)
{
    skip_ws(c);
    if (c->pos < c->len && c->buf[c->pos] == ch) {
        c->pos++;
        return 1;
    }
    return 0;
}

int json_expect_end(json_cursor *c)
{
    skip_ws(c);
    if (c->pos != c->len)
        return json_fail(c, "invalid JSON at byte %zu: unexpected data after the value", c->pos);
    return 0;
}

/* Length of the valid UTF-8 sequence at s (n bytes available), or 0. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80)
        return 1;
    size_t need;
    uint32_t cp;
    if (s[0] >= 0xC2 && s[0] <= 0xDF) { need = 2; cp = s[0] & 0x1F; }
    else if (s[0] >= 0xE0 && s[0] <= 0xEF) { need = 3; cp = s[0] & 0x0F; }
    else if (s[0] >= 0xF0 && s[0] <= 0xF4) { need = 4; cp = s[0] & 0x07; }
    else return 0;
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((need == 3 && cp < 0x800) || (need == 4 && cp < 0x10000) || cp > 0x10FFFF)
        return 0; /* overlong or out of range */
    if (cp >= 0xD800 && cp <= 0xDFFF)
        return 0; /* surrogates are not characters */
    return need;
}

static int hex4(json_cursor *c, uint32_t *out)
{
    if (c->len - c->pos < 4)
        return json_fail(c, "invalid JSON: truncated \\u escape at byte %zu", c->pos);
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char ch = c->buf[c->pos + i];
        v <<= 4;
        if (ch >= '0' && ch <= '9') v |= (uint32_t)(ch - '0');
        else if (ch >= 'a' && ch <= 'f') v |= (uint32_t)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F') v |= (uint32_t)(ch - 'A' + 10);
        else return json_fail(c, "invalid JSON at byte %zu: bad \\u escape", c->pos);
    }
    c->pos += 4;
    *out = v;
    return 0;
}

static size_t put_utf8(char *dst, uint32_t cp)
{
    if (cp < 0x80) { dst[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        dst[0] = (char)(0xC0 | (cp >> 6));
        dst[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        dst[0] = (char)(0xE0 | (cp >> 12));
        dst[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        dst[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    dst[0] = (char)(0xF0 | (cp >> 18));
    dst[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    dst[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    dst[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Parses one string; if dst is non-NULL writes the decoded bytes there
 * (dst must hold at least the raw length). Returns decoded length or -1. */
static long scan_string(json_cursor *c, char *dst)
{
    skip_ws(c);
    if (c->pos >= c->len || c->buf[c->pos] != '"')
        return json_fail(c, "invalid JSON at byte %zu: expected a string", c->pos);
    c->pos++;
    size_t n = 0;
    for (;;) {
        if (c->pos >= c->len)
            return json_fail(c, "invalid JSON: unterminated string");
        unsigned char ch = (unsigned char)c->buf[c->pos];
        if (ch == '"') {
            c->pos++;
            return (long)n;
        }
        if (ch < 0x20)
            return json_fail(c, "invalid JSON at byte %zu: control character in string", c->pos);
        if (ch != '\\') {
            size_t k = utf8_seq_len((const unsigned char *)c->buf + c->pos, c->len - c->pos);
            if (k == 0)
                return json_fail(c, "invalid JSON at byte %zu: invalid UTF-8", c->pos);
            if (dst)
                memcpy(dst + n, c->buf + c->pos, k);
            n += k;
            c->pos += k;
            continue;
        }
        c->pos++; /* backslash */
        if (c->pos >= c->len)
            return json_fail(c, "invalid JSON: unterminated escape");
        char esc = c->buf[c->pos++];
        uint32_t cp;
        switch (esc) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            if (hex4(c, &cp) < 0)
                return -1;
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return json_fail(c, "invalid JSON at byte %zu: lone low surrogate", c->pos);
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (c->len - c->pos < 2 || c->buf[c->pos] != '\\' || c->buf[c->pos + 1] != 'u')
                    return json_fail(c, "invalid JSON at byte %zu: lone high surrogate", c->pos);
                c->pos += 2;
                if (hex4(c, &lo) < 0)
                    return -1;
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return json_fail(c, "invalid JSON at byte %zu: bad surrogate pair", c->pos);
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp == 0)
                return json_fail(c, "invalid value at byte %zu: \\u0000 is not allowed", c->pos);
            break;
        default:
            return json_fail(c, "invalid JSON at byte %zu: bad escape", c->pos - 1);
        }
        if (dst)
            n += put_utf8(dst + n, cp);
        else
            n += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    }
}

int json_read_string(json_cursor *c, char **out, size_t *out_len)
{
    size_t start = c->pos;
    /* First pass validates and measures; the second decodes. */
    long n = scan_string(c, NULL);
    if (n < 0)
        return -1;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return json_fail(c, "out of memory");
    c->pos = start;
    if (scan_string(c, s) != n) { /* cannot happen: same input */
        OPENSSL_clear_free(s, (size_t)n + 1);
        return json_fail(c, "internal error reading a string");
    }
    s[n] = '\0';
    *out = s;
    *out_len = (size_t)n;
    return 0;
}
