// The cgo layer: Go functions exported to the C trampolines in abi.c.
//
// cgo pointer rules, as this file applies them: C hands us pointers that
// are valid only during the call (we read them through unsafe.Slice views
// and never keep them); everything we hand back is C memory from ex_alloc;
// C never holds a Go pointer, only a runtime/cgo.Handle (an integer).
package main

/*
#cgo CFLAGS: -I${SRCDIR}/../../include -Wall
#include <stdlib.h>
#include "abi.h"
*/
import "C"

import (
	"context"
	"errors"
	"runtime/cgo"
	"time"
	"unsafe"
)

// The ABI's status codes, straight from keymanager.h.
const (
	statusOK              = int32(C.KM_OK)
	statusInvalidArgument = int32(C.KM_ERR_INVALID_ARGUMENT)
	statusNotFound        = int32(C.KM_ERR_NOT_FOUND)
	statusDeadline        = int32(C.KM_ERR_DEADLINE_EXCEEDED)
	statusInternal        = int32(C.KM_ERR_INTERNAL)
	statusCrypto          = int32(C.KM_ERR_CRYPTO)
)

// -buildmode=c-shared needs a main package; main never runs.
func main() {}

// view is a Go slice over C memory, valid only while the C call lasts.
func view(p unsafe.Pointer, n C.size_t) []byte {
	if p == nil || n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(p), int(n))
}

// setError stores msg in *errOut as a C string the host frees with ex_free.
func setError(errOut **C.char, msg string) {
	if errOut == nil {
		return
	}
	p := C.ex_alloc(C.size_t(len(msg) + 1))
	if p == nil {
		return
	}
	buf := unsafe.Slice((*byte)(p), len(msg)+1)
	copy(buf, msg)
	buf[len(msg)] = 0
	*errOut = (*C.char)(p)
}

// report turns an error into a status code (+ message).
func report(err error, errOut **C.char) C.int32_t {
	var kerr *kmError
	if !errors.As(err, &kerr) {
		kerr = &kmError{code: statusInternal, msg: "internal error"}
	}
	setError(errOut, kerr.msg)
	return C.int32_t(kerr.code)
}

// recovered converts a panic into KM_ERR_INTERNAL: a panic must not unwind
// into C (it would take the whole host process down).
func recovered(st *C.int32_t, errOut **C.char) {
	if r := recover(); r != nil {
		setError(errOut, "internal error (panic in example-go)")
		*st = C.int32_t(statusInternal)
	}
}

func logMsg(level C.int32_t, requestID *C.char, msg string) {
	cmsg := C.CString(msg)
	C.ex_log(level, requestID, cmsg)
	C.free(unsafe.Pointer(cmsg))
}

// callContext turns km_call_ctx.timeout_ms (0 = none) into a context, the
// way Go SDKs (AWS, Vault, Azure) take deadlines.
func callContext(timeoutMs C.uint32_t) (context.Context, context.CancelFunc) {
	if timeoutMs == 0 {
		return context.WithCancel(context.Background())
	}
	return context.WithTimeout(context.Background(), time.Duration(timeoutMs)*time.Millisecond)
}

func lookup(handle C.uintptr_t) *manager {
	return cgo.Handle(handle).Value().(*manager)
}

//export goSetError
func goSetError(errOut **C.char, msg *C.char) {
	setError(errOut, C.GoString(msg))
}

//export goCreate
func goCreate(config *C.char, configLen C.size_t, handle *C.uintptr_t, errOut **C.char) (st C.int32_t) {
	defer recovered(&st, errOut)
	m, err := newManager(view(unsafe.Pointer(config), configLen))
	if err != nil {
		return report(err, errOut)
	}
	*handle = C.uintptr_t(cgo.NewHandle(m))
	logMsg(C.KM_LOG_INFO, nil, "example-go: manager ready")
	return C.int32_t(statusOK)
}

//export goWrap
func goWrap(handle C.uintptr_t, timeoutMs C.uint32_t, requestID, keyID *C.char, in *C.uint8_t, inLen C.size_t,
	out **C.uint8_t, outLen *C.size_t, errOut **C.char) (st C.int32_t) {
	defer recovered(&st, errOut)
	ctx, cancel := callContext(timeoutMs)
	defer cancel()
	n := int(inLen) + overhead
	buf := C.ex_alloc(C.size_t(n))
	if buf == nil {
		return report(fail(statusInternal, "out of memory"), errOut)
	}
	if err := lookup(handle).seal(ctx, unsafe.Slice((*byte)(buf), n), C.GoString(keyID), view(unsafe.Pointer(in), inLen)); err != nil {
		C.ex_free(buf)
		return report(err, errOut)
	}
	*out, *outLen = (*C.uint8_t)(buf), C.size_t(n)
	return C.int32_t(statusOK)
}

//export goUnwrap
func goUnwrap(handle C.uintptr_t, timeoutMs C.uint32_t, requestID, keyID *C.char, in *C.uint8_t, inLen C.size_t,
	out **C.uint8_t, outLen *C.size_t, errOut **C.char) (st C.int32_t) {
	defer recovered(&st, errOut)
	ctx, cancel := callContext(timeoutMs)
	defer cancel()
	m := lookup(handle)
	if _, _, err := m.kek(C.GoString(keyID)); err != nil {
		return report(err, errOut)
	}
	if inLen < overhead {
		return report(fail(statusInvalidArgument, "wrapped input is %d bytes; at least %d expected", inLen, overhead), errOut)
	}
	n := int(inLen) - overhead
	buf := C.ex_alloc(C.size_t(n))
	if buf == nil {
		return report(fail(statusInternal, "out of memory"), errOut)
	}
	plain := unsafe.Slice((*byte)(buf), n)
	if err := m.open(ctx, plain, C.GoString(keyID), view(unsafe.Pointer(in), inLen)); err != nil {
		C.ex_free(buf)
		if err.(*kmError).code == statusCrypto {
			logMsg(C.KM_LOG_WARN, requestID, "example-go: a wrapped key failed to authenticate")
		}
		return report(err, errOut)
	}
	*out, *outLen = (*C.uint8_t)(buf), C.size_t(n)
	return C.int32_t(statusOK)
}

//export goProbe
func goProbe(handle C.uintptr_t, timeoutMs C.uint32_t, requestID *C.char, errOut **C.char) (st C.int32_t) {
	defer recovered(&st, errOut)
	ctx, cancel := callContext(timeoutMs)
	defer cancel()
	if err := lookup(handle).probe(ctx); err != nil {
		return report(err, errOut)
	}
	return C.int32_t(statusOK)
}

//export goDestroy
func goDestroy(handle C.uintptr_t) {
	h := cgo.Handle(handle)
	h.Value().(*manager).close()
	h.Delete()
}
