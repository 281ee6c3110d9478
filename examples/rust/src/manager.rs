//! The manager in safe Rust: config validation and AES-256-GCM wrap/unwrap.
//! lib.rs adapts it to the C ABI. Replace the crypto here with calls to
//! your KMS/HSM.

use crate::abi::{KM_ERR_CRYPTO, KM_ERR_INTERNAL, KM_ERR_INVALID_ARGUMENT, KM_ERR_NOT_FOUND};
use crate::json::{self, Value};
use crate::ossl::{self, GcmError, KEY_LEN, NONCE_LEN, TAG_LEN};

pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;
const MAX_ID_LEN: usize = 256;

/// An ABI status code with an operator-facing message (never a secret).
pub struct KmError {
    pub code: i32,
    pub msg: String,
}

fn invalid(msg: impl Into<String>) -> KmError {
    KmError { code: KM_ERR_INVALID_ARGUMENT, msg: msg.into() }
}

/// Shortens untrusted text before it goes into a message.
pub fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

struct Kek {
    id: String,
    key: [u8; KEY_LEN],
}

/// Immutable after `new`, so `&Manager` is shared freely across threads
/// (the factory advertises KM_CAP_THREAD_SAFE); each call makes its own
/// OpenSSL context.
pub struct Manager {
    keks: Vec<Kek>,
    default: usize,
}

impl Drop for Manager {
    fn drop(&mut self) {
        for k in &mut self.keks {
            ossl::cleanse(&mut k.key);
        }
    }
}

impl Manager {
    /// Parses {"keks": {"<id>": "<64 hex>"}, "default_key_id": "<id>"}.
    pub fn new(config: &[u8]) -> Result<Manager, KmError> {
        let mut doc = json::parse(config).map_err(invalid)?;
        let result = Manager::from_json(&doc);
        doc.wipe(); // the parsed tree holds the hex KEKs
        result
    }

    fn from_json(doc: &Value) -> Result<Manager, KmError> {
        let members = match doc {
            Value::Object(m) => m,
            other => return Err(invalid(format!("config must be a JSON object, not {}", other.kind()))),
        };
        let mut keks_value = None;
        let mut default_id = None;
        for (name, value) in members {
            let slot = match name.as_str() {
                "keks" => &mut keks_value,
                "default_key_id" => &mut default_id,
                _ => {
                    return Err(invalid(format!(
                        "config: unknown field \"{}\" (expected keks, default_key_id)",
                        clip(name, 40)
                    )))
                }
            };
            if slot.replace(value).is_some() {
                return Err(invalid(format!("config: field \"{}\" appears twice", name)));
            }
        }

        let mut m = Manager { keks: Vec::new(), default: 0 };
        match keks_value {
            Some(Value::Object(entries)) => {
                for (id, value) in entries {
                    m.add_kek(id, value)?;
                }
            }
            Some(other) => return Err(invalid(format!("config: keks must be an object, not {}", other.kind()))),
            None => {}
        }
        if m.keks.is_empty() {
            return Err(invalid("config: \"keks\" must name at least one KEK"));
        }
        let default_id = match default_id {
            Some(Value::Str(s)) if !s.is_empty() => s,
            Some(Value::Str(_)) | None => return Err(invalid("config: \"default_key_id\" is required")),
            Some(other) => {
                return Err(invalid(format!("config: default_key_id must be a string, not {}", other.kind())))
            }
        };
        m.default = m
            .keks
            .iter()
            .position(|k| &k.id == default_id)
            .ok_or_else(|| invalid("config: default_key_id names no KEK in keks"))?;
        Ok(m)
    }

    fn add_kek(&mut self, id: &str, value: &Value) -> Result<(), KmError> {
        if id.is_empty() || id.len() > MAX_ID_LEN {
            return Err(invalid(format!("config: KEK ids must be 1 to {} bytes", MAX_ID_LEN)));
        }
        if self.keks.iter().any(|k| k.id == id) {
            return Err(invalid(format!("config: KEK id \"{}\" appears twice", clip(id, 64))));
        }
        let bad = || invalid(format!("config: keks.{} must be 64 hex characters (a 256-bit key)", clip(id, 64)));
        let hex = match value {
            Value::Str(s) if s.len() == 2 * KEY_LEN => s.as_bytes(),
            _ => return Err(bad()),
        };
        let mut key = [0u8; KEY_LEN];
        for (i, pair) in hex.chunks(2).enumerate() {
            match (hex_digit(pair[0]), hex_digit(pair[1])) {
                (Some(h), Some(l)) => key[i] = h << 4 | l,
                _ => {
                    ossl::cleanse(&mut key);
                    return Err(bad());
                }
            }
        }
        self.keks.push(Kek { id: id.to_string(), key });
        Ok(())
    }

    /// key_id "" means the default KEK.
    fn kek(&self, key_id: &str) -> Result<&Kek, KmError> {
        if key_id.is_empty() {
            return Ok(&self.keks[self.default]);
        }
        self.keks.iter().find(|k| k.id == key_id).ok_or_else(|| KmError {
            code: KM_ERR_NOT_FOUND,
            msg: format!("no KEK named \"{}\"", clip(key_id, 64)),
        })
    }

    /// Checks key_id and returns the output size of a wrap.
    pub fn wrap_len(&self, key_id: &str, plain_len: usize) -> Result<usize, KmError> {
        self.kek(key_id)?;
        plain_len.checked_add(OVERHEAD).ok_or_else(|| invalid("input too large"))
    }

    /// Checks key_id and the input size, returns the output size of an unwrap.
    pub fn unwrap_len(&self, key_id: &str, wrapped_len: usize) -> Result<usize, KmError> {
        self.kek(key_id)?;
        wrapped_len.checked_sub(OVERHEAD).ok_or_else(|| {
            invalid(format!("wrapped input is {} bytes; at least {} expected", wrapped_len, OVERHEAD))
        })
    }

    /// AES-256-GCM under the KEK, AAD = the key id used; `out` is wrap_len() bytes.
    pub fn wrap(&self, key_id: &str, plain: &[u8], out: &mut [u8]) -> Result<(), KmError> {
        let k = self.kek(key_id)?;
        ossl::seal(&k.key, k.id.as_bytes(), plain, out)
            .map_err(|_| KmError { code: KM_ERR_INTERNAL, msg: "AES-GCM encryption failed".into() })
    }

    /// The reverse of wrap; `out` is unwrap_len() bytes and is wiped on failure.
    pub fn unwrap(&self, key_id: &str, wrapped: &[u8], out: &mut [u8]) -> Result<(), KmError> {
        let k = self.kek(key_id)?;
        ossl::open(&k.key, k.id.as_bytes(), wrapped, out).map_err(|e| match e {
            GcmError::Authentication => KmError {
                code: KM_ERR_CRYPTO,
                msg: format!("wrapped key failed to authenticate under KEK \"{}\"", clip(&k.id, 64)),
            },
            GcmError::Internal => KmError { code: KM_ERR_INTERNAL, msg: "AES-GCM decryption failed".into() },
        })
    }

    /// Health check: a round trip under the default KEK.
    pub fn probe(&self) -> Result<(), KmError> {
        let plain = b"probe";
        let mut wrapped = vec![0u8; plain.len() + OVERHEAD];
        self.wrap("", plain, &mut wrapped)?;
        let mut back = vec![0u8; plain.len()];
        self.unwrap("", &wrapped, &mut back)?;
        if back != plain {
            return Err(KmError { code: KM_ERR_INTERNAL, msg: "probe round trip returned different bytes".into() });
        }
        Ok(())
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}
