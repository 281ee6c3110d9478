/*
 * abi.h -- the C side of the Go template, shared by abi.c and the cgo
 * preambles. Go cannot put Go pointers or Go functions into C structs, so
 * the descriptor, the factory and the ops table live in abi.c as plain C,
 * and their function pointers are C trampolines that call exported Go
 * functions (see exports.go).
 */
#ifndef EXAMPLE_GO_ABI_H
#define EXAMPLE_GO_ABI_H

#include <stddef.h>
#include <stdint.h>

#include "keymanager.h"

/* Buffers returned to the host: released (and wiped) by the descriptor's
 * free function, so every *out and *error must come from ex_alloc. */
__attribute__((visibility("hidden"))) void *ex_alloc(size_t n);

/* Wipes and releases a buffer from ex_alloc (the descriptor's free). */
__attribute__((visibility("hidden"))) void ex_free(void *ptr);

/* Logs through the host's callback, if it gave one. request_id may be NULL. */
__attribute__((visibility("hidden"))) void ex_log(int32_t level, const char *request_id, const char *message);

#endif
