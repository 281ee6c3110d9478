// The manager itself, in plain Go (no cgo here): config parsing and
// AES-256-GCM. exports.go adapts it to the C ABI. Replace this file's
// logic with calls to your KMS/HSM.
package main

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

const (
	kekLen   = 32 // AES-256
	nonceLen = 12 // GCM's standard nonce
	tagLen   = 16
	overhead = nonceLen + tagLen
	maxIDLen = 256
)

// kmError carries one of the ABI's KM_ERR_* codes and an operator-facing
// message. Messages never contain key material or config values.
type kmError struct {
	code int32
	msg  string
}

func (e *kmError) Error() string { return e.msg }

func fail(code int32, format string, args ...any) error {
	return &kmError{code: code, msg: fmt.Sprintf(format, args...)}
}

// manager is immutable after newManager returns, so wrap/unwrap may run
// on many threads at once (the factory advertises KM_CAP_THREAD_SAFE).
type manager struct {
	keks      map[string]*[kekLen]byte
	defaultID string
}

// newManager parses {"keks": {"<id>": "<64 hex>"}, "default_key_id": "<id>"}.
// config is a view of host memory valid only during this call: nothing
// here keeps a reference to it.
func newManager(config []byte) (*manager, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(config, &top); err != nil {
		return nil, configError(err, "")
	}
	if top == nil {
		return nil, fail(statusInvalidArgument, "config must be a JSON object")
	}
	for name := range top {
		if name != "keks" && name != "default_key_id" {
			return nil, fail(statusInvalidArgument, "config: unknown field %q (expected keks, default_key_id)", truncate(name, 40))
		}
	}
	rawKeks := top["keks"]
	defer wipe(rawKeks) // copies of the hex KEKs that we own: clear them
	keks, err := parseKeks(rawKeks)
	defer func() {
		for _, raw := range keks {
			wipe(raw)
		}
	}()
	if err != nil {
		return nil, err
	}
	m := &manager{keks: make(map[string]*[kekLen]byte, len(keks))}
	if err := m.load(keks, top["default_key_id"]); err != nil {
		m.close()
		return nil, err
	}
	return m, nil
}

// load decodes the KEKs and resolves the default id.
func (m *manager) load(keks map[string]json.RawMessage, rawDefault json.RawMessage) error {
	ids := make([]string, 0, len(keks))
	for id := range keks {
		ids = append(ids, id)
	}
	sort.Strings(ids) // deterministic: the first bad id is always the same one
	for _, id := range ids {
		key, err := decodeKEK(id, keks[id])
		if err != nil {
			return err
		}
		m.keks[id] = key
	}
	if rawDefault != nil {
		if err := json.Unmarshal(rawDefault, &m.defaultID); err != nil {
			return configError(err, "default_key_id")
		}
	}
	if m.defaultID == "" {
		return fail(statusInvalidArgument, `config: "default_key_id" is required`)
	}
	if _, ok := m.keks[m.defaultID]; !ok {
		return fail(statusInvalidArgument, "config: default_key_id names no KEK in keks")
	}
	return nil
}

// parseKeks reads the "keks" object member by member (encoding/json's map
// decoding would silently keep the last of two equal ids). The values stay
// raw JSON, which the caller wipes once decoded.
func parseKeks(raw json.RawMessage) (map[string]json.RawMessage, error) {
	keks := map[string]json.RawMessage{}
	if len(raw) == 0 {
		return nil, fail(statusInvalidArgument, `config: "keks" must name at least one KEK`)
	}
	if raw[0] != '{' {
		return nil, fail(statusInvalidArgument, "config: keks must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // the '{'
		return nil, configError(err, "keks")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, configError(err, "keks")
		}
		id, _ := tok.(string) // object keys are always strings
		if _, dup := keks[id]; dup {
			return nil, fail(statusInvalidArgument, "config: KEK id %q appears twice", truncate(id, 64))
		}
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, configError(err, "keks")
		}
		keks[id] = value
	}
	if len(keks) == 0 {
		return nil, fail(statusInvalidArgument, `config: "keks" must name at least one KEK`)
	}
	return keks, nil
}

// decodeKEK turns the raw JSON value `"<64 hex>"` into a key, naming only the id on error.
func decodeKEK(id string, raw json.RawMessage) (*[kekLen]byte, error) {
	if id == "" || len(id) > maxIDLen {
		return nil, fail(statusInvalidArgument, "config: KEK ids must be 1 to %d bytes", maxIDLen)
	}
	bad := fail(statusInvalidArgument, "config: keks.%s must be 64 hex characters (a 256-bit key)", truncate(id, 64))
	if len(raw) != 2*kekLen+2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return nil, bad
	}
	key := new([kekLen]byte)
	if _, err := hex.Decode(key[:], raw[1:len(raw)-1]); err != nil {
		wipe(key[:])
		return nil, bad
	}
	return key, nil
}

// configError turns an encoding/json error into a message that names the
// place but never quotes the config (its values may be secrets).
func configError(err error, where string) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	if where == "" {
		if errors.As(err, &typ) {
			return fail(statusInvalidArgument, "config must be a JSON object, not %s", typ.Value)
		}
		where = "config"
	}
	switch {
	case errors.As(err, &syntax):
		return fail(statusInvalidArgument, "%s is not valid JSON (at byte %d)", where, syntax.Offset)
	case errors.As(err, &typ):
		return fail(statusInvalidArgument, "config: %s has the wrong type: found %s", where, typ.Value)
	default:
		return fail(statusInvalidArgument, "config: %s could not be read", where)
	}
}

// kek resolves key_id ("" = the default) to its KEK and the id used as AAD.
func (m *manager) kek(keyID string) (*[kekLen]byte, string, error) {
	if keyID == "" {
		keyID = m.defaultID
	}
	key, ok := m.keks[keyID]
	if !ok {
		return nil, "", fail(statusNotFound, "no KEK named %q", truncate(keyID, 64))
	}
	return key, keyID, nil
}

// aead builds a fresh AES-GCM for each call. Cheap (a key schedule), and it
// does not rely on a shared cipher.AEAD being safe for concurrent use,
// which the standard library does not document.
func aead(key *[kekLen]byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal writes nonce || ciphertext || tag into dst, which must be exactly
// len(plain)+overhead bytes (exports.go passes C memory, so the output is
// never copied through the Go heap).
func (m *manager) seal(ctx context.Context, dst []byte, keyID string, plain []byte) error {
	if err := checkDeadline(ctx); err != nil {
		return err
	}
	key, id, err := m.kek(keyID)
	if err != nil {
		return err
	}
	gcm, err := aead(key)
	if err != nil {
		return fail(statusInternal, "AES-GCM setup failed")
	}
	nonce := dst[:nonceLen]
	if _, err := rand.Read(nonce); err != nil {
		return fail(statusInternal, "no randomness for the nonce")
	}
	gcm.Seal(dst[nonceLen:nonceLen], nonce, plain, []byte(id))
	return nil
}

// open checks and decrypts wrapped into dst (len(wrapped)-overhead bytes).
func (m *manager) open(ctx context.Context, dst []byte, keyID string, wrapped []byte) error {
	if err := checkDeadline(ctx); err != nil {
		return err
	}
	key, id, err := m.kek(keyID)
	if err != nil {
		return err
	}
	gcm, err := aead(key)
	if err != nil {
		return fail(statusInternal, "AES-GCM setup failed")
	}
	if _, err := gcm.Open(dst[:0], wrapped[:nonceLen], wrapped[nonceLen:], []byte(id)); err != nil {
		return fail(statusCrypto, "wrapped key failed to authenticate under KEK %q", truncate(id, 64))
	}
	return nil
}

// checkDeadline gives up once the call's deadline has passed. Local AES
// takes microseconds, so this only matters in a template: a manager that
// calls a KMS passes ctx to its SDK so that waits end at the deadline too.
func checkDeadline(ctx context.Context) error {
	if ctx.Err() != nil {
		return fail(statusDeadline, "deadline exceeded")
	}
	return nil
}

// probe proves the default KEK works with a round trip.
func (m *manager) probe(ctx context.Context) error {
	plain := []byte("probe")
	wrapped := make([]byte, len(plain)+overhead)
	if err := m.seal(ctx, wrapped, "", plain); err != nil {
		return err
	}
	back := make([]byte, len(plain))
	if err := m.open(ctx, back, "", wrapped); err != nil {
		return err
	}
	if string(back) != string(plain) {
		return fail(statusInternal, "probe round trip returned different bytes")
	}
	return nil
}

// close wipes the KEKs. (The AES key schedules built per call are garbage
// the Go runtime frees without clearing: a limit of Go, see docs.)
func (m *manager) close() {
	for id, key := range m.keks {
		wipe(key[:])
		delete(m.keks, id)
	}
}

func wipe(b []byte) {
	for i := range b {
		b[i] = 0
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}
