//! A template key-manager plugin in Rust (manager "example-rust").
//!
//! A `cdylib` that exports one C symbol, `km_plugin_init`, and speaks the
//! ABI of include/keymanager.h (mirrored in abi.rs). It is a working
//! file-KEK style manager:
//!
//!   config  {"keks": {"<id>": "<64 hex>"}, "default_key_id": "<id>"}
//!   wrap    AES-256-GCM, output nonce(12) || ciphertext || tag(16), AAD = the key id used
//!
//! Layout: abi.rs (C structs), ossl.rs (hand-declared libcrypto), json.rs
//! (config reader), manager.rs (the logic, safe Rust), and this file: the
//! `extern "C"` functions that turn C pointers into slices, call the
//! manager, and turn results back into C buffers and status codes.
//!
//! Build: make example-rust -> build/examples/example-rust-manager.so

mod abi;
mod json;
mod manager;
mod ossl;

use std::alloc::{alloc, dealloc, Layout};
use std::ffi::CStr;
use std::os::raw::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

use abi::*;
use manager::{KmError, Manager};

const MANAGER_NAME: &[u8] = b"example-rust\0";

// ---- Buffers handed to the host --------------------------------------------
//
// The host releases every *out / *error with km_plugin.free, which gets only
// the pointer. Each buffer therefore starts with a 16-byte header holding
// its size, so plugin_free can rebuild the Layout and wipe the bytes.

const HDR: usize = 16;

fn layout(n: usize) -> Option<Layout> {
    Layout::from_size_align(n.checked_add(HDR)?, HDR).ok()
}

fn buf_alloc(n: usize) -> *mut u8 {
    let Some(l) = layout(n) else { return std::ptr::null_mut() };
    unsafe {
        let p = alloc(l);
        if p.is_null() {
            return p;
        }
        (p as *mut usize).write(n);
        p.add(HDR)
    }
}

unsafe extern "C" fn plugin_free(ptr: *mut c_void) {
    if ptr.is_null() {
        return;
    }
    let p = (ptr as *mut u8).sub(HDR);
    let n = (p as *const usize).read();
    ossl::cleanse(std::slice::from_raw_parts_mut(ptr as *mut u8, n));
    dealloc(p, layout(n).expect("size was valid at allocation"));
}

/// Stores msg as a NUL-terminated C string in *error (if the host asked).
unsafe fn set_error(error: *mut *mut c_char, msg: &str) {
    if error.is_null() {
        return;
    }
    let msg = msg.replace('\0', " ");
    let p = buf_alloc(msg.len() + 1);
    if !p.is_null() {
        std::ptr::copy_nonoverlapping(msg.as_ptr(), p, msg.len());
        *p.add(msg.len()) = 0;
    }
    *error = p as *mut c_char;
}

// ---- Logging through the host ------------------------------------------------

static LOG_FN: AtomicUsize = AtomicUsize::new(0);
static LOG_CTX: AtomicUsize = AtomicUsize::new(0);

/// Log rarely: the host's callback may take a lock (the Python host takes
/// its interpreter lock), so a line per call would serialize callers.
fn log(level: i32, request_id: *const c_char, msg: &str) {
    let f = LOG_FN.load(Ordering::Acquire);
    if f == 0 {
        return;
    }
    let f: unsafe extern "C" fn(*mut c_void, i32, *const c_char, *const c_char) = unsafe { std::mem::transmute(f) };
    let line = format!("{}\0", msg.replace('\0', " "));
    unsafe { f(LOG_CTX.load(Ordering::Acquire) as *mut c_void, level, request_id, line.as_ptr() as *const c_char) }
}

/// The host may be older than this header: read request_id only if its
/// struct_size says the field is there.
unsafe fn request_id_of(ctx: *const KmCallCtx) -> *const c_char {
    let needed = std::mem::offset_of!(KmCallCtx, request_id) + std::mem::size_of::<*const c_char>();
    if ctx.is_null() || ((*ctx).struct_size as usize) < needed {
        std::ptr::null()
    } else {
        (*ctx).request_id
    }
}

// ---- From C arguments to Rust values -----------------------------------------

fn bad_args() -> KmError {
    KmError { code: KM_ERR_INVALID_ARGUMENT, msg: "missing argument".into() }
}

/// A view of host memory, valid for this call only.
unsafe fn input<'a>(p: *const u8, n: usize) -> Result<&'a [u8], KmError> {
    match (p.is_null(), n) {
        (_, 0) => Ok(&[]),
        (true, _) => Err(bad_args()),
        (false, _) => Ok(std::slice::from_raw_parts(p, n)),
    }
}

unsafe fn key_id<'a>(p: *const c_char) -> Result<&'a str, KmError> {
    if p.is_null() {
        return Ok("");
    }
    CStr::from_ptr(p)
        .to_str()
        .map_err(|_| KmError { code: KM_ERR_INVALID_ARGUMENT, msg: "key id is not UTF-8".into() })
}

unsafe fn manager<'a>(m: *mut KmManager) -> Result<&'a Manager, KmError> {
    (m as *const Manager).as_ref().ok_or_else(bad_args)
}

/// Runs one ABI call: a panic becomes KM_ERR_INTERNAL (unwinding into C
/// is undefined behaviour), an error becomes its code and *error.
fn call(error: *mut *mut c_char, body: impl FnOnce() -> Result<(), KmError>) -> i32 {
    let result = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| {
        Err(KmError { code: KM_ERR_INTERNAL, msg: "internal error (panic in example-rust)".into() })
    });
    match result {
        Ok(()) => KM_OK,
        Err(e) => {
            unsafe { set_error(error, &e.msg) };
            e.code
        }
    }
}

/// Allocates an n-byte host buffer, lets `fill` write it, and hands it
/// out through *out / *out_len, or wipes and frees it if `fill` fails.
unsafe fn produce(
    n: usize,
    out: *mut *mut u8,
    out_len: *mut usize,
    fill: impl FnOnce(&mut [u8]) -> Result<(), KmError>,
) -> Result<(), KmError> {
    let p = buf_alloc(n);
    if p.is_null() {
        return Err(KmError { code: KM_ERR_INTERNAL, msg: "out of memory".into() });
    }
    if let Err(e) = fill(std::slice::from_raw_parts_mut(p, n)) {
        plugin_free(p as *mut c_void);
        return Err(e);
    }
    *out = p;
    *out_len = n;
    Ok(())
}

// ---- The ABI functions --------------------------------------------------------

unsafe extern "C" fn create(config: *const c_char, len: usize, mgr: *mut *mut KmManager, error: *mut *mut c_char) -> i32 {
    call(error, || unsafe {
        if mgr.is_null() {
            return Err(bad_args());
        }
        *mgr = std::ptr::null_mut();
        let m = Manager::new(input(config as *const u8, len)?)?;
        *mgr = Box::into_raw(Box::new(m)) as *mut KmManager;
        log(KM_LOG_INFO, std::ptr::null(), "example-rust: manager ready");
        Ok(())
    })
}

// These calls are local and take microseconds, so ctx->timeout_ms never
// matters here. A plugin that does network I/O must bound each wait by the
// time left and return KM_ERR_DEADLINE_EXCEEDED when it runs out.
unsafe extern "C" fn wrap(
    m: *mut KmManager, _ctx: *const KmCallCtx, key: *const c_char,
    plain: *const u8, plain_len: usize, out: *mut *mut u8, out_len: *mut usize, error: *mut *mut c_char,
) -> i32 {
    call(error, || unsafe {
        if out.is_null() || out_len.is_null() {
            return Err(bad_args());
        }
        *out = std::ptr::null_mut();
        *out_len = 0;
        let (m, key, plain) = (manager(m)?, key_id(key)?, input(plain, plain_len)?);
        let n = m.wrap_len(key, plain.len())?;
        produce(n, out, out_len, |buf| m.wrap(key, plain, buf))
    })
}

unsafe extern "C" fn unwrap(
    m: *mut KmManager, ctx: *const KmCallCtx, key: *const c_char,
    wrapped: *const u8, wrapped_len: usize, out: *mut *mut u8, out_len: *mut usize, error: *mut *mut c_char,
) -> i32 {
    call(error, || unsafe {
        if out.is_null() || out_len.is_null() {
            return Err(bad_args());
        }
        *out = std::ptr::null_mut();
        *out_len = 0;
        let (m, key, wrapped) = (manager(m)?, key_id(key)?, input(wrapped, wrapped_len)?);
        let n = m.unwrap_len(key, wrapped.len())?;
        let result = produce(n, out, out_len, |buf| m.unwrap(key, wrapped, buf));
        if matches!(&result, Err(e) if e.code == KM_ERR_CRYPTO) {
            log(KM_LOG_WARN, request_id_of(ctx), "example-rust: a wrapped key failed to authenticate");
        }
        result
    })
}

unsafe extern "C" fn probe(m: *mut KmManager, _ctx: *const KmCallCtx, error: *mut *mut c_char) -> i32 {
    call(error, || unsafe { manager(m)?.probe() })
}

unsafe extern "C" fn destroy(m: *mut KmManager) {
    if !m.is_null() {
        // Dropping the Manager wipes its KEKs.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(m as *mut Manager))));
    }
}

// ---- The static descriptor -----------------------------------------------------

static OPS: KmManagerOps = KmManagerOps {
    struct_size: std::mem::size_of::<KmManagerOps>() as u32,
    wrap: Some(wrap),
    unwrap: Some(unwrap),
    get_public_key: None, // symmetric KEKs have no public key
    probe: Some(probe),
    destroy: Some(destroy),
};

static FACTORY: Shared<KmFactory> = Shared(KmFactory {
    struct_size: std::mem::size_of::<KmFactory>() as u32,
    manager_name: MANAGER_NAME.as_ptr() as *const c_char,
    capabilities: KM_CAP_THREAD_SAFE | KM_CAP_WRAP | KM_CAP_UNWRAP | KM_CAP_PROBE,
    create: Some(create),
    ops: &OPS,
});

static FACTORIES: Shared<[*const KmFactory; 1]> = Shared([&FACTORY.0]);

static PLUGIN: Shared<KmPlugin> = Shared(KmPlugin {
    struct_size: std::mem::size_of::<KmPlugin>() as u32,
    abi_major: KM_ABI_VERSION_MAJOR,
    abi_minor: KM_ABI_VERSION_MINOR,
    plugin_name: MANAGER_NAME.as_ptr() as *const c_char,
    plugin_version: b"1.0.0\0".as_ptr() as *const c_char,
    factories: &FACTORIES.0 as *const [*const KmFactory; 1] as *const *const KmFactory,
    factory_count: 1,
    free: Some(plugin_free),
});

/// The one exported symbol.
///
/// # Safety
/// `host` is NULL or points to a km_host valid until the library is unloaded.
#[no_mangle]
pub unsafe extern "C" fn km_plugin_init(host: *const KmHost) -> *const KmPlugin {
    if let Some(h) = host.as_ref() {
        if h.abi_major != KM_ABI_VERSION_MAJOR {
            return std::ptr::null(); // another major version: refuse to load
        }
        if h.struct_size as usize >= std::mem::size_of::<KmHost>() {
            if let Some(f) = h.log {
                LOG_CTX.store(h.log_ctx as usize, Ordering::Release);
                LOG_FN.store(f as usize, Ordering::Release);
            }
        }
    }
    &PLUGIN.0
}
