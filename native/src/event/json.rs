//! A strict JSON reader for the lean event check. It takes only what RFC 8259 allows, reads it as
//! jiter (pydantic's parser) does, and answers `None` for anything else: an odd input is never
//! guessed at, the caller then leaves it to the model.
//!
//! No tree is built: the event check walks the message once, asking for the value it expects next,
//! and strings without escapes are borrowed from the message.

use std::borrow::Cow;

/// Integers with more digits go the slow way (the lean check's limit: |n| < 10**15).
const MAX_INTEGER_DIGITS: usize = 15;
/// Longer than any float Python writes (`repr` needs at most 24 characters): the model decides.
const MAX_NUMBER_LENGTH: usize = 32;

pub enum Number {
    Int(i64),
    Float(f64),
}

pub struct Reader<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Reader<'a> {
    /// `text` is already known to be UTF-8, so every slice between ASCII delimiters is a `str`.
    pub fn new(text: &'a str) -> Self {
        Reader { text, pos: 0 }
    }

    fn byte(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.byte(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// The first byte of the next value, not consumed.
    pub fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.byte()
    }

    fn eat(&mut self, expected: u8) -> Option<()> {
        (self.peek()? == expected).then(|| self.pos += 1)
    }

    /// Consumes a `null` if one comes next.
    pub fn null(&mut self) -> bool {
        self.skip_whitespace();
        let found = self.text.as_bytes()[self.pos..].starts_with(b"null");
        if found {
            self.pos += 4;
        }
        found
    }

    /// Nothing but whitespace is left.
    pub fn at_end(&mut self) -> bool {
        self.skip_whitespace();
        self.pos == self.text.len()
    }

    /// Reads an object, calling `member` with each key while the reader stands at its value.
    pub fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, Cow<'a, str>) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            member(self, key)?;
            if self.eat(b',').is_none() {
                return self.eat(b'}');
            }
        }
    }

    pub fn string(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let start = self.pos;
        loop {
            match self.byte()? {
                b'"' => {
                    self.pos += 1;
                    return Some(Cow::Borrowed(&self.text[start..self.pos - 1]));
                }
                b'\\' => return self.escaped_string(self.text[start..self.pos].to_owned()),
                0..=0x1f => return None, // control characters must be escaped
                _ => self.pos += 1,
            }
        }
    }

    /// The rest of a string that has escapes, after its plain beginning `decoded`.
    fn escaped_string(&mut self, mut decoded: String) -> Option<Cow<'a, str>> {
        loop {
            let run = self.pos;
            while !matches!(self.byte()?, b'"' | b'\\' | 0..=0x1f) {
                self.pos += 1;
            }
            decoded.push_str(&self.text[run..self.pos]);
            match self.byte()? {
                b'"' => {
                    self.pos += 1;
                    return Some(Cow::Owned(decoded));
                }
                b'\\' => {
                    self.pos += 1;
                    decoded.push(self.escape()?);
                }
                _ => return None,
            }
        }
    }

    /// One escape after its backslash. A lone surrogate is no character: refused.
    fn escape(&mut self) -> Option<char> {
        let letter = self.byte()?;
        self.pos += 1;
        Some(match letter {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => return self.unicode_escape(),
            _ => return None,
        })
    }

    fn unicode_escape(&mut self) -> Option<char> {
        let unit = self.hex4()?;
        if !(0xD800..0xDC00).contains(&unit) {
            return char::from_u32(unit); // None for a lone low surrogate
        }
        if !self.text.as_bytes()[self.pos..].starts_with(b"\\u") {
            return None;
        }
        self.pos += 2;
        let low = self.hex4()?;
        if !(0xDC00..0xE000).contains(&low) {
            return None;
        }
        char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.text.get(self.pos..self.pos + 4)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None; // from_str_radix would also take a sign
        }
        self.pos += 4;
        u32::from_str_radix(digits, 16).ok()
    }

    /// A number as JSON writes it. Integers of more than 15 digits, `-0` (jiter and Python may
    /// disagree on its type) and non-finite floats are refused.
    pub fn number(&mut self) -> Option<Number> {
        self.skip_whitespace();
        let start = self.pos;
        if self.byte() == Some(b'-') {
            self.pos += 1;
        }
        let integer_digits = match self.byte()? {
            b'0' => {
                self.pos += 1;
                1
            }
            b'1'..=b'9' => self.digits(),
            _ => return None,
        };
        let mut integral = true;
        if self.byte() == Some(b'.') {
            self.pos += 1;
            (self.digits() > 0).then_some(())?;
            integral = false;
        }
        if matches!(self.byte(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.byte(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            (self.digits() > 0).then_some(())?;
            integral = false;
        }
        let literal = &self.text[start..self.pos];
        if literal.len() > MAX_NUMBER_LENGTH {
            return None;
        }
        if integral {
            if integer_digits > MAX_INTEGER_DIGITS || literal == "-0" {
                return None;
            }
            return literal.parse().ok().map(Number::Int);
        }
        // Rust's float parsing rounds correctly, as jiter's does.
        let value: f64 = literal.parse().ok()?;
        value.is_finite().then_some(Number::Float(value))
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.byte(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }
}
