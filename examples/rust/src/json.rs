//! A tiny, strict JSON reader (RFC 8259) — enough for plugin configs,
//! with no crates. Replace it with serde_json when you can use crates.
//!
//! Errors name a byte offset, never the document's content: configs hold
//! secrets. Strings are sized before they are built, so no partial copies
//! of a secret are left behind by reallocation; `Value::wipe` clears them.

use crate::ossl::cleanse;

const MAX_DEPTH: usize = 32;

pub enum Value {
    Null,
    Bool,
    Number,
    Str(String),
    Array(Vec<Value>),
    /// Members in document order; duplicates are kept so callers can refuse them.
    Object(Vec<(String, Value)>),
}

impl Value {
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool => "a boolean",
            Value::Number => "a number",
            Value::Str(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }

    /// Zeroes every string in the tree (call before dropping secrets).
    pub fn wipe(&mut self) {
        match self {
            Value::Str(s) => wipe_string(s),
            Value::Array(items) => items.iter_mut().for_each(Value::wipe),
            Value::Object(members) => members.iter_mut().for_each(|(k, v)| {
                wipe_string(k);
                v.wipe();
            }),
            _ => {}
        }
    }
}

pub fn wipe_string(s: &mut String) {
    // Zero bytes are valid UTF-8, so the String stays well-formed.
    unsafe { cleanse(s.as_bytes_mut()) }
}

pub fn parse(text: &[u8]) -> Result<Value, String> {
    let mut p = Parser { s: text, i: 0 };
    let v = p.value(0)?;
    p.ws();
    if p.i != p.s.len() {
        let mut v = v;
        v.wipe();
        return Err(p.err("end of input"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, expected: &str) -> String {
        format!("config is not valid JSON: expected {} at byte {}", expected, self.i)
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(format!("config nests deeper than {} levels", MAX_DEPTH));
        }
        self.ws();
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().map(Value::Str),
            Some(b't') => self.literal("true", Value::Bool),
            Some(b'f') => self.literal("false", Value::Bool),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.err("a value")),
        }
    }

    fn literal(&mut self, word: &str, v: Value) -> Result<Value, String> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.err("a value"))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<Value, String> {
        self.eat(b'-');
        let int_start = self.i;
        let n = self.digits();
        if n == 0 || (n > 1 && self.s[int_start] == b'0') {
            return Err(self.err("a number"));
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.err("digits"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("digits"));
            }
        }
        Ok(Value::Number)
    }

    fn array(&mut self, depth: usize) -> Result<Value, String> {
        self.i += 1; // '['
        let mut items = Vec::new();
        if !self.eat(b']') {
            loop {
                match self.value(depth + 1) {
                    Ok(v) => items.push(v),
                    Err(e) => return Err(wipe_all(Value::Array(items), e)),
                }
                if self.eat(b']') {
                    break;
                }
                if !self.eat(b',') {
                    let e = self.err("',' or ']'");
                    return Err(wipe_all(Value::Array(items), e));
                }
            }
        }
        Ok(Value::Array(items))
    }

    fn object(&mut self, depth: usize) -> Result<Value, String> {
        self.i += 1; // '{'
        let mut members = Vec::new();
        if !self.eat(b'}') {
            loop {
                self.ws();
                let key = match self.string() {
                    Ok(k) => k,
                    Err(e) => return Err(wipe_all(Value::Object(members), e)),
                };
                if !self.eat(b':') {
                    let e = self.err("':'");
                    return Err(wipe_all(Value::Object(members), e));
                }
                match self.value(depth + 1) {
                    Ok(v) => members.push((key, v)),
                    Err(e) => return Err(wipe_all(Value::Object(members), e)),
                }
                if self.eat(b'}') {
                    break;
                }
                if !self.eat(b',') {
                    let e = self.err("',' or '}'");
                    return Err(wipe_all(Value::Object(members), e));
                }
            }
        }
        Ok(Value::Object(members))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self.s.get(self.i..self.i + 4).ok_or_else(|| self.err("4 hex digits"))?;
        let text = std::str::from_utf8(digits).map_err(|_| self.err("4 hex digits"))?;
        let v = u32::from_str_radix(text, 16).map_err(|_| self.err("4 hex digits"))?;
        self.i += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, String> {
        if self.peek() != Some(b'"') {
            return Err(self.err("a string"));
        }
        self.i += 1;
        // The raw span bounds the decoded length: reserve it once.
        let mut end = self.i;
        while end < self.s.len() && self.s[end] != b'"' {
            end += if self.s[end] == b'\\' { 2 } else { 1 };
        }
        let mut out = String::with_capacity(end.saturating_sub(self.i));
        match self.string_body(&mut out) {
            Ok(()) => Ok(out),
            Err(e) => {
                wipe_string(&mut out);
                Err(e)
            }
        }
    }

    fn string_body(&mut self, out: &mut String) -> Result<(), String> {
        loop {
            let start = self.i;
            // Copy a run of plain bytes at once, checking UTF-8.
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            let run = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| self.err("UTF-8 text"))?;
            out.push_str(run);
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.i += 1;
                    let esc = self.peek().ok_or_else(|| self.err("an escape"))?;
                    self.i += 1;
                    let c = match esc {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(self.err("a valid escape")),
                    };
                    out.push(c);
                }
                _ => return Err(self.err("'\"' closing the string")),
            }
        }
    }

    fn unicode_escape(&mut self) -> Result<char, String> {
        let hi = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&hi) {
            if !self.s[self.i..].starts_with(b"\\u") {
                return Err(self.err("a low surrogate"));
            }
            self.i += 2;
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return Err(self.err("a low surrogate"));
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else {
            hi
        };
        char::from_u32(code).filter(|&c| c != '\0').ok_or_else(|| self.err("a non-NUL character"))
    }
}

fn wipe_all(mut v: Value, e: String) -> String {
    v.wipe();
    e
}
