//! AMF0 helpers: a recursion guard in front of `rml_amf0`, command extraction, and the few
//! reply objects the server sends.
//!
//! `rml_amf0::deserialize` recurses once per nested object/array with no depth limit, so a
//! 16 MiB message of nested objects overflows the stack (an abort, not a catchable panic).
//! [`check_depth`] walks the same grammar iteratively first and refuses deep or malformed
//! input, so the recursive decoder only ever sees shallow, well-formed values.

use std::collections::HashMap;
use std::io::Cursor;

use rml_rtmp::rml_amf0::{self, Amf0Value};

use crate::error::RtmpError;

/// Deepest nesting accepted. Real commands and onMetaData nest two or three levels.
pub(crate) const MAX_DEPTH: usize = 16;

/// Largest AMF0 command/data message decoded. Decoding allocates a `HashMap` per object, so
/// an unbounded message could amplify memory roughly tenfold; real metadata is a few KiB.
pub(crate) const MAX_AMF_MESSAGE: usize = 1 << 20;

const NUMBER: u8 = 0x00;
const BOOLEAN: u8 = 0x01;
const STRING: u8 = 0x02;
const OBJECT: u8 = 0x03;
const NULL: u8 = 0x05;
const UNDEFINED: u8 = 0x06;
const ECMA_ARRAY: u8 = 0x08;
const OBJECT_END: u8 = 0x09;
const STRICT_ARRAY: u8 = 0x0a;

enum Frame {
    Object,
    Array { remaining: u32 },
}

struct Scan<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Scan<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], RtmpError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| RtmpError::Message("amf0 value truncated".into()))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, RtmpError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, RtmpError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, RtmpError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Consumes the body of a value whose marker was already read; pushes a frame for
    /// containers.
    fn value(&mut self, marker: u8, stack: &mut Vec<Frame>) -> Result<(), RtmpError> {
        match marker {
            NUMBER => drop(self.take(8)?),
            BOOLEAN => drop(self.take(1)?),
            STRING => {
                let n = self.u16()?;
                self.take(usize::from(n))?;
            }
            NULL | UNDEFINED => {}
            OBJECT => stack.push(Frame::Object),
            ECMA_ARRAY => {
                self.u32()?;
                stack.push(Frame::Object);
            }
            STRICT_ARRAY => {
                let remaining = self.u32()?;
                stack.push(Frame::Array { remaining });
            }
            m => {
                return Err(RtmpError::Message(format!(
                    "amf0 marker {m:#04x} unsupported"
                )))
            }
        }
        if stack.len() > MAX_DEPTH {
            return Err(RtmpError::AmfTooDeep(MAX_DEPTH));
        }
        Ok(())
    }
}

/// Validates that `data` is a sequence of AMF0 values `rml_amf0` can decode without deep
/// recursion. Mirrors `rml_amf0`'s grammar (top-level `0x09` ends the sequence; a `0x09`
/// inside a strict array ends the array) but errors on anything it would only half-parse.
pub(crate) fn check_depth(data: &[u8]) -> Result<(), RtmpError> {
    let mut s = Scan { data, pos: 0 };
    let mut stack: Vec<Frame> = Vec::new();
    loop {
        match stack.last_mut() {
            None => {
                if s.pos == data.len() {
                    return Ok(());
                }
                let marker = s.u8()?;
                if marker == OBJECT_END {
                    return Ok(());
                }
                s.value(marker, &mut stack)?;
            }
            Some(Frame::Object) => {
                let label_len = s.u16()?;
                if label_len == 0 {
                    if s.u8()? != OBJECT_END {
                        return Err(RtmpError::Message("amf0 empty property name".into()));
                    }
                    stack.pop();
                    continue;
                }
                s.take(usize::from(label_len))?;
                let marker = s.u8()?;
                if marker == OBJECT_END {
                    return Err(RtmpError::Message("amf0 property without value".into()));
                }
                s.value(marker, &mut stack)?;
            }
            Some(Frame::Array { remaining }) => {
                if *remaining == 0 || s.pos == data.len() {
                    stack.pop();
                    continue;
                }
                *remaining -= 1;
                let marker = s.u8()?;
                if marker == OBJECT_END {
                    stack.pop();
                    continue;
                }
                s.value(marker, &mut stack)?;
            }
        }
    }
}

/// Guarded decode of an AMF0 value sequence.
pub(crate) fn decode(data: &[u8]) -> Result<Vec<Amf0Value>, RtmpError> {
    if data.len() > MAX_AMF_MESSAGE {
        return Err(RtmpError::TooLarge(data.len()));
    }
    check_depth(data)?;
    rml_amf0::deserialize(&mut Cursor::new(data)).map_err(|e| RtmpError::Message(e.to_string()))
}

/// A decoded AMF0 command (`connect`, `publish`, ...).
#[derive(Debug)]
pub(crate) struct Command {
    pub name: String,
    pub transaction_id: f64,
    pub object: Amf0Value,
    pub args: Vec<Amf0Value>,
}

/// Splits decoded values into a command. `rml_rtmp`'s own command decoder panics when fewer
/// than three values are present (`drain(..3)`), so commands never go through it.
pub(crate) fn command(values: Vec<Amf0Value>) -> Result<Command, RtmpError> {
    let mut it = values.into_iter();
    let name = match it.next() {
        Some(Amf0Value::Utf8String(s)) => s,
        _ => return Err(RtmpError::Message("amf0 command without name".into())),
    };
    let transaction_id = match it.next() {
        Some(Amf0Value::Number(n)) => n,
        // Some encoders omit the transaction id on notifications; treat it as 0.
        None => 0.0,
        Some(_) => return Err(RtmpError::Message("amf0 command transaction id".into())),
    };
    let object = it.next().unwrap_or(Amf0Value::Null);
    Ok(Command {
        name,
        transaction_id,
        object,
        args: it.collect(),
    })
}

/// `{level, code, description}`, the body of every `onStatus` / `_result` status.
pub(crate) fn status(level: &str, code: &str, description: &str) -> Amf0Value {
    let mut m = HashMap::with_capacity(3);
    m.insert("level".to_owned(), Amf0Value::Utf8String(level.to_owned()));
    m.insert("code".to_owned(), Amf0Value::Utf8String(code.to_owned()));
    m.insert(
        "description".to_owned(),
        Amf0Value::Utf8String(description.to_owned()),
    );
    Amf0Value::Object(m)
}

/// Renders a metadata value for display (`Metadata` events are informational only).
pub(crate) fn display(v: &Amf0Value) -> String {
    match v {
        Amf0Value::Number(n) => format!("{n}"),
        Amf0Value::Boolean(b) => format!("{b}"),
        Amf0Value::Utf8String(s) => s.clone(),
        Amf0Value::Null => "null".to_owned(),
        Amf0Value::Undefined => "undefined".to_owned(),
        Amf0Value::Object(m) => format!("{{{} fields}}", m.len()),
        Amf0Value::StrictArray(a) => format!("[{} items]", a.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested_objects(depth: usize) -> Vec<u8> {
        let mut v = vec![OBJECT];
        for _ in 1..depth {
            v.extend_from_slice(&[0x00, 0x01, b'a', OBJECT]);
        }
        for _ in 1..depth {
            v.extend_from_slice(&[0x00, 0x00, OBJECT_END]);
        }
        v.extend_from_slice(&[0x00, 0x00, OBJECT_END]);
        v
    }

    #[test]
    fn accepts_what_rml_encodes() {
        let mut inner = HashMap::new();
        inner.insert("w".to_owned(), Amf0Value::Number(320.0));
        inner.insert(
            "list".to_owned(),
            Amf0Value::StrictArray(vec![Amf0Value::Null]),
        );
        let values = vec![
            Amf0Value::Utf8String("connect".into()),
            Amf0Value::Number(1.0),
            Amf0Value::Object(inner),
            Amf0Value::Boolean(true),
            Amf0Value::Undefined,
        ];
        let bytes = rml_amf0::serialize(&values).expect("serialize");
        assert_eq!(decode(&bytes).expect("decode"), values);
    }

    #[test]
    fn depth_limit_is_enforced_before_recursion() {
        assert!(decode(&nested_objects(MAX_DEPTH)).is_ok());
        assert!(matches!(
            check_depth(&nested_objects(MAX_DEPTH + 1)),
            Err(RtmpError::AmfTooDeep(_))
        ));
        // 1 MiB of nesting would overflow the stack inside rml_amf0 without the guard.
        let deep = nested_objects(100_000);
        assert!(deep.len() < MAX_AMF_MESSAGE);
        assert!(matches!(decode(&deep), Err(RtmpError::AmfTooDeep(_))));
    }

    #[test]
    fn short_commands_do_not_panic() {
        let two = rml_amf0::serialize(&vec![
            Amf0Value::Utf8String("FCUnpublish".into()),
            Amf0Value::Number(5.0),
        ])
        .expect("serialize");
        let c = command(decode(&two).expect("decode")).expect("command");
        assert_eq!(c.name, "FCUnpublish");
        assert_eq!(c.transaction_id, 5.0);
        assert_eq!(c.object, Amf0Value::Null);
        assert!(command(vec![Amf0Value::Number(1.0)]).is_err());
        assert!(command(Vec::new()).is_err());
    }

    #[test]
    fn truncated_values_are_errors() {
        assert!(check_depth(&[NUMBER, 0, 0]).is_err());
        assert!(check_depth(&[STRING, 0, 5, b'a']).is_err());
        assert!(check_depth(&[OBJECT, 0, 1, b'a']).is_err());
        assert!(check_depth(&[0x11]).is_err());
        // A top-level object-end marker terminates the sequence, as in rml_amf0.
        assert!(check_depth(&[NULL, OBJECT_END, 0xff]).is_ok());
    }
}
