//! The few OpenSSL libcrypto functions this plugin needs, declared by hand
//! (no crates available), and safe wrappers for AES-256-GCM.

use std::os::raw::{c_int, c_uchar, c_void};

#[repr(C)]
struct EvpCipherCtx {
    _private: [u8; 0],
}
#[repr(C)]
struct EvpCipher {
    _private: [u8; 0],
}

const EVP_CTRL_GCM_GET_TAG: c_int = 0x10;
const EVP_CTRL_GCM_SET_TAG: c_int = 0x11;

#[link(name = "crypto")]
extern "C" {
    fn EVP_aes_256_gcm() -> *const EvpCipher;
    fn EVP_CIPHER_CTX_new() -> *mut EvpCipherCtx;
    fn EVP_CIPHER_CTX_free(ctx: *mut EvpCipherCtx);
    fn EVP_CIPHER_CTX_ctrl(ctx: *mut EvpCipherCtx, kind: c_int, arg: c_int, ptr: *mut c_void) -> c_int;
    fn EVP_EncryptInit_ex(ctx: *mut EvpCipherCtx, cipher: *const EvpCipher, engine: *mut c_void,
                          key: *const c_uchar, iv: *const c_uchar) -> c_int;
    fn EVP_EncryptUpdate(ctx: *mut EvpCipherCtx, out: *mut c_uchar, out_len: *mut c_int,
                         input: *const c_uchar, input_len: c_int) -> c_int;
    fn EVP_EncryptFinal_ex(ctx: *mut EvpCipherCtx, out: *mut c_uchar, out_len: *mut c_int) -> c_int;
    fn EVP_DecryptInit_ex(ctx: *mut EvpCipherCtx, cipher: *const EvpCipher, engine: *mut c_void,
                          key: *const c_uchar, iv: *const c_uchar) -> c_int;
    fn EVP_DecryptUpdate(ctx: *mut EvpCipherCtx, out: *mut c_uchar, out_len: *mut c_int,
                         input: *const c_uchar, input_len: c_int) -> c_int;
    fn EVP_DecryptFinal_ex(ctx: *mut EvpCipherCtx, out: *mut c_uchar, out_len: *mut c_int) -> c_int;
    fn RAND_bytes(buf: *mut c_uchar, num: c_int) -> c_int;
    fn OPENSSL_cleanse(ptr: *mut c_void, len: usize);
}

pub const KEY_LEN: usize = 32;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;

#[derive(Debug, PartialEq)]
pub enum GcmError {
    /// The tag did not verify: tampered input or the wrong key.
    Authentication,
    /// OpenSSL refused an operation (or the input is too large for it).
    Internal,
}

/// Overwrites `buf` with zeros in a way the optimizer cannot remove.
pub fn cleanse(buf: &mut [u8]) {
    unsafe { OPENSSL_cleanse(buf.as_mut_ptr() as *mut c_void, buf.len()) }
}

/// Owns an EVP_CIPHER_CTX; freeing it also wipes the key schedule.
struct Ctx(*mut EvpCipherCtx);

impl Ctx {
    fn new() -> Result<Ctx, GcmError> {
        let p = unsafe { EVP_CIPHER_CTX_new() };
        if p.is_null() { Err(GcmError::Internal) } else { Ok(Ctx(p)) }
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        unsafe { EVP_CIPHER_CTX_free(self.0) }
    }
}

fn ok(rc: c_int) -> Result<(), GcmError> {
    if rc == 1 { Ok(()) } else { Err(GcmError::Internal) }
}

fn c_len(n: usize) -> Result<c_int, GcmError> {
    c_int::try_from(n).map_err(|_| GcmError::Internal)
}

/// Writes nonce(12) || ciphertext || tag(16) of `plain` into `out`, which
/// must be exactly `plain.len() + NONCE_LEN + TAG_LEN` bytes.
pub fn seal(key: &[u8; KEY_LEN], aad: &[u8], plain: &[u8], out: &mut [u8]) -> Result<(), GcmError> {
    assert_eq!(out.len(), plain.len() + NONCE_LEN + TAG_LEN);
    let (nonce, rest) = out.split_at_mut(NONCE_LEN);
    let (body, tag) = rest.split_at_mut(plain.len());
    let ctx = Ctx::new()?;
    let mut n: c_int = 0;
    unsafe {
        ok(RAND_bytes(nonce.as_mut_ptr(), NONCE_LEN as c_int))?;
        ok(EVP_EncryptInit_ex(ctx.0, EVP_aes_256_gcm(), std::ptr::null_mut(), key.as_ptr(), nonce.as_ptr()))?;
        ok(EVP_EncryptUpdate(ctx.0, std::ptr::null_mut(), &mut n, aad.as_ptr(), c_len(aad.len())?))?;
        ok(EVP_EncryptUpdate(ctx.0, body.as_mut_ptr(), &mut n, plain.as_ptr(), c_len(plain.len())?))?;
        // GCM is a stream mode: Final writes nothing, but needs a valid pointer.
        ok(EVP_EncryptFinal_ex(ctx.0, body.as_mut_ptr(), &mut n))?;
        ok(EVP_CIPHER_CTX_ctrl(ctx.0, EVP_CTRL_GCM_GET_TAG, TAG_LEN as c_int, tag.as_mut_ptr() as *mut c_void))?;
    }
    Ok(())
}

/// Checks and decrypts `wrapped` (nonce || ciphertext || tag) into `out`,
/// which must be exactly `wrapped.len() - NONCE_LEN - TAG_LEN` bytes. On an
/// authentication failure `out` is wiped.
pub fn open(key: &[u8; KEY_LEN], aad: &[u8], wrapped: &[u8], out: &mut [u8]) -> Result<(), GcmError> {
    assert_eq!(out.len() + NONCE_LEN + TAG_LEN, wrapped.len());
    let (nonce, rest) = wrapped.split_at(NONCE_LEN);
    let (body, tag) = rest.split_at(out.len());
    let ctx = Ctx::new()?;
    let mut n: c_int = 0;
    unsafe {
        ok(EVP_DecryptInit_ex(ctx.0, EVP_aes_256_gcm(), std::ptr::null_mut(), key.as_ptr(), nonce.as_ptr()))?;
        ok(EVP_DecryptUpdate(ctx.0, std::ptr::null_mut(), &mut n, aad.as_ptr(), c_len(aad.len())?))?;
        ok(EVP_DecryptUpdate(ctx.0, out.as_mut_ptr(), &mut n, body.as_ptr(), c_len(body.len())?))?;
        ok(EVP_CIPHER_CTX_ctrl(ctx.0, EVP_CTRL_GCM_SET_TAG, TAG_LEN as c_int, tag.as_ptr() as *mut c_void))?;
        if EVP_DecryptFinal_ex(ctx.0, out.as_mut_ptr(), &mut n) != 1 {
            cleanse(out);
            return Err(GcmError::Authentication);
        }
    }
    Ok(())
}
