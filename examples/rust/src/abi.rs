//! Rust mirrors of include/keymanager.h (ABI v1.0). `#[repr(C)]` keeps the
//! layout identical to the C structs; keep field order exactly as there.

use std::os::raw::{c_char, c_void};

pub const KM_ABI_VERSION_MAJOR: u16 = 1;
pub const KM_ABI_VERSION_MINOR: u16 = 0;

pub const KM_OK: i32 = 0;
pub const KM_ERR_INVALID_ARGUMENT: i32 = 1;
pub const KM_ERR_NOT_FOUND: i32 = 2;
pub const KM_ERR_INTERNAL: i32 = 7;
pub const KM_ERR_CRYPTO: i32 = 8;

pub const KM_CAP_THREAD_SAFE: u32 = 1;
pub const KM_CAP_WRAP: u32 = 2;
pub const KM_CAP_UNWRAP: u32 = 4;
pub const KM_CAP_PROBE: u32 = 16;

pub const KM_LOG_INFO: i32 = 20;
pub const KM_LOG_WARN: i32 = 30;

pub type KmLogFn =
    Option<unsafe extern "C" fn(log_ctx: *mut c_void, level: i32, request_id: *const c_char, message: *const c_char)>;

#[repr(C)]
pub struct KmHost {
    pub struct_size: u32,
    pub abi_major: u16,
    pub abi_minor: u16,
    pub log: KmLogFn,
    pub log_ctx: *mut c_void,
}

#[repr(C)]
pub struct KmCallCtx {
    pub struct_size: u32,
    pub timeout_ms: u32,
    pub request_id: *const c_char,
}

/// The host only ever sees `*mut KmManager`; what it points to is ours
/// (a `Box<crate::manager::Manager>`).
pub enum KmManager {}

pub type WrapFn = unsafe extern "C" fn(
    mgr: *mut KmManager,
    ctx: *const KmCallCtx,
    key_id: *const c_char,
    input: *const u8,
    input_len: usize,
    out: *mut *mut u8,
    out_len: *mut usize,
    error: *mut *mut c_char,
) -> i32;

pub type PublicKeyFn = unsafe extern "C" fn(
    mgr: *mut KmManager,
    ctx: *const KmCallCtx,
    key_id: *const c_char,
    out: *mut *mut u8,
    out_len: *mut usize,
    error: *mut *mut c_char,
) -> i32;

#[repr(C)]
pub struct KmManagerOps {
    pub struct_size: u32,
    pub wrap: Option<WrapFn>,
    pub unwrap: Option<WrapFn>,
    pub get_public_key: Option<PublicKeyFn>,
    pub probe: Option<unsafe extern "C" fn(*mut KmManager, *const KmCallCtx, *mut *mut c_char) -> i32>,
    pub destroy: Option<unsafe extern "C" fn(*mut KmManager)>,
}

#[repr(C)]
pub struct KmFactory {
    pub struct_size: u32,
    pub manager_name: *const c_char,
    pub capabilities: u32,
    pub create: Option<unsafe extern "C" fn(*const c_char, usize, *mut *mut KmManager, *mut *mut c_char) -> i32>,
    pub ops: *const KmManagerOps,
}

#[repr(C)]
pub struct KmPlugin {
    pub struct_size: u32,
    pub abi_major: u16,
    pub abi_minor: u16,
    pub plugin_name: *const c_char,
    pub plugin_version: *const c_char,
    pub factories: *const *const KmFactory,
    pub factory_count: usize,
    pub free: Option<unsafe extern "C" fn(*mut c_void)>,
}

/// Statics holding raw pointers must be `Sync`; these point only at other
/// immutable statics, so sharing them between threads is sound.
#[repr(transparent)]
pub struct Shared<T>(pub T);
unsafe impl<T> Sync for Shared<T> {}
