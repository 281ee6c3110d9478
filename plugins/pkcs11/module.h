/* module.h -- PKCS#11 libraries loaded once per process, shared by managers.
 *
 * A PKCS#11 library keeps process-wide state: C_Initialize once, C_Finalize
 * once, and the user's login belongs to the whole process, not a session.
 * So managers share one p11_module per library, reference-counted: the first
 * acquire loads and initializes it (with CKF_OS_LOCKING_OK), the last release
 * finalizes and unloads it. If someone else in the process initialized the
 * library first (CKR_CRYPTOKI_ALREADY_INITIALIZED), we use it and leave its
 * finalization to them.
 */
#ifndef PKCS11_MODULE_H
#define PKCS11_MODULE_H

#include <stddef.h>

#include <p11-kit/pkcs11.h>

typedef struct p11_module p11_module;

/* Loads (or shares) the library at path. Returns a KM_* status; on failure
 * writes a one-line message to err. */
int p11_module_acquire(const char *path, p11_module **out, char *err, size_t errlen);

/* Drops one reference; the last one finalizes and unloads the library. */
void p11_module_release(p11_module *m);

CK_FUNCTION_LIST_PTR p11_module_functions(const p11_module *m);

/* Makes sure the process is logged in as the user on the token behind
 * `session` (login is process-wide in PKCS#11). If the token is already
 * logged in because of an earlier login through this module with a
 * different PIN, refuses with CKR_PIN_INCORRECT: a wrong PIN must not ride
 * on another manager's login. Returns CKR_OK when logged in. */
CK_RV p11_module_login(p11_module *m, CK_SESSION_HANDLE session, CK_SLOT_ID slot,
                       const char *pin, size_t pin_len);

#endif
