/*
 * json_scan.h -- a small, strict JSON reader (RFC 8259) for plugin configs.
 *
 * Not a DOM: the caller walks the document with a cursor. It validates
 * everything it reads (UTF-8, escapes, structure) over a buffer
 * that need not be NUL-terminated. Error messages name a byte offset and what
 * was expected, never the document's content (configs may hold secrets).
 * It reads objects and strings; other values are only recognised by type
 * (json_peek), which is all a strict config reader needs to reject them.
 */
#ifndef FILE_KEK_JSON_SCAN_H
#define FILE_KEK_JSON_SCAN_H

#include <stddef.h>

typedef struct json_cursor {
    const char *buf;
    size_t len;
    size_t pos;
    char error[160]; /* set on the first failure */
} json_cursor;

/* The type of the next value, judged by its first character. */
typedef enum json_type {
    JSON_T_INVALID = 0,
    JSON_T_OBJECT,
    JSON_T_ARRAY,
    JSON_T_STRING,
    JSON_T_NUMBER,
    JSON_T_BOOL,
    JSON_T_NULL,
} json_type;

void json_init(json_cursor *c, const char *buf, size_t len);

/* Skips whitespace and reports the type of the value that starts there. */
json_type json_peek(json_cursor *c);

/* Human word for a type ("object", "string", ...). */
const char *json_type_name(json_type t);

/* Consumes `ch` after optional whitespace; returns 0 or -1 (error set). */
int json_expect(json_cursor *c, char ch);

/* Consumes `ch` after optional whitespace if present; returns 1 if it did. */
int json_accept(json_cursor *c, char ch);

/* Reads a string value into a fresh NUL-terminated UTF-8 buffer (malloc).
 * *out_len excludes the NUL; strings containing \u0000 are refused so the
 * result is always a valid C string. Returns 0 or -1 (error set). */
int json_read_string(json_cursor *c, char **out, size_t *out_len);

/* Only whitespace may follow the top-level value. Returns 0 or -1. */
int json_expect_end(json_cursor *c);

/* Cuts a multi-byte UTF-8 character left incomplete at the end of s (as
 * snprintf truncation can leave it), so messages stay valid UTF-8. */
void utf8_trim_partial(char *s);

/* Records an error (printf-style) unless one is already set; returns -1. */
int json_fail(json_cursor *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
