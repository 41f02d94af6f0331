//! Iterative pre-walk of a data set before `dicom-object` parses it.
//!
//! `dicom-object` 0.10.1 parses nested sequences recursively (a file of 200,000 nested
//! undefined-length sequences overflows the stack) and allocates a value's declared length before
//! reading it (a 4 GB length in a 1 MB file allocates 4 GB). This walker visits every element
//! header with an explicit stack and refuses, before any allocation, nesting deeper than
//! [`MAX_DEPTH`] sequences and any value whose declared length runs past the end of the file or of
//! its enclosing item. It reads explicit VR little endian (PS3.5 A.2, also the data set of every
//! encapsulated transfer syntax, A.4), implicit VR little endian (A.1; sequences recognised by the
//! standard dictionary or by an undefined length) and explicit VR big endian (A.3), with the
//! sequence and item encoding of PS3.5 7.5 and the encapsulated pixel data fragments of A.4.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};

/// Deepest sequence nesting accepted (real CT objects nest 3-4 deep; PS3.3 functional groups).
pub const MAX_DEPTH: usize = 32;

/// Data set encoding to walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    ExplicitLe,
    ImplicitLe,
    ExplicitBe,
}

impl Syntax {
    /// The encoding of a transfer syntax UID's data set; `None` for deflated ones (the walk cannot
    /// see through deflate; `dicom-object` inflates them).
    pub fn of(ts: &str) -> Option<Syntax> {
        match ts {
            "1.2.840.10008.1.2" => Some(Syntax::ImplicitLe),
            "1.2.840.10008.1.2.2" => Some(Syntax::ExplicitBe),
            "1.2.840.10008.1.2.1.99" | "1.2.840.10008.1.2.4.95" => None,
            _ => Some(Syntax::ExplicitLe),
        }
    }
}

/// Where the top-level (7FE0,0010) PixelData value lies, as declared in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PixelDataLayout {
    /// Byte offset of the element header from the start of the walked data set.
    pub offset: usize,
    /// Declared value length; `None` for undefined length (encapsulated, PS3.5 A.4).
    pub declared_len: Option<u32>,
    /// Bytes present after the element header.
    pub available: usize,
}

/// Why the walk refused the data set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalkError {
    /// Element at fault (for a delimiter, its (FFFE,xxxx) tag).
    pub tag: Tag,
    /// Byte offset of the element header from the start of the walked data set.
    pub offset: usize,
    pub kind: WalkErrorKind,
}

/// The kinds of [`WalkError`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalkErrorKind {
    /// Sequences nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// The declared value length runs past the end of the file (or of its enclosing item).
    LengthPastEnd { declared: u64, available: u64 },
    /// The element header itself is cut off.
    TruncatedHeader,
    /// An item or delimiter where none may stand, or an undefined length on a non-sequence VR.
    BadStructure(&'static str),
}

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.tag;
        write!(
            f,
            "element ({:04X},{:04X}) at byte {}: ",
            t.0, t.1, self.offset
        )?;
        match &self.kind {
            WalkErrorKind::TooDeep => write!(f, "sequences nested deeper than {MAX_DEPTH}"),
            WalkErrorKind::LengthPastEnd {
                declared,
                available,
            } => write!(
                f,
                "declared length {declared} exceeds the {available} byte(s) left"
            ),
            WalkErrorKind::TruncatedHeader => write!(f, "element header cut off by end of file"),
            WalkErrorKind::BadStructure(s) => write!(f, "{s}"),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Seq,
    Item,
    Fragments,
}

#[derive(Clone, Copy)]
struct Open {
    kind: Kind,
    /// End offset for a defined length; `None` for undefined length.
    end: Option<usize>,
    syntax: Syntax,
}

const UNDEFINED: u32 = 0xFFFF_FFFF;

/// Explicit-VR element whose header has a 2-byte reserved field and a 4-byte length (PS3.5
/// 7.1.2, Table 7.1-1).
pub(crate) fn is_long_vr(vr: &[u8]) -> bool {
    matches!(
        vr,
        b"OB"
            | b"OW"
            | b"OF"
            | b"SQ"
            | b"UT"
            | b"UN"
            | b"OD"
            | b"OL"
            | b"OV"
            | b"UC"
            | b"UR"
            | b"SV"
            | b"UV"
    )
}

fn dictionary_is_sq(tag: Tag) -> bool {
    dicom_dictionary_std::StandardDataDictionary
        .by_tag(tag)
        .is_some_and(|e| e.vr().relaxed() == VR::SQ)
}

/// Walks the data set `b` (starting right after the file meta group, or at the start of a bare
/// data set). With `stop_at_pixel_data`, stops at the top-level PixelData element (its value is
/// not checked, only reported). Returns the PixelData layout when the element is present.
///
/// Errors: [`WalkError`] naming the tag and offset (see [`WalkErrorKind`]).
pub fn walk(
    b: &[u8],
    syntax: Syntax,
    stop_at_pixel_data: bool,
) -> Result<Option<PixelDataLayout>, WalkError> {
    let mut stack: Vec<Open> = Vec::new();
    let mut pos = 0usize;
    let mut pixel = None;
    let mut depth = 0usize;
    loop {
        while let Some(top) = stack.last() {
            match top.end {
                Some(end) if pos >= end => {
                    if top.kind == Kind::Seq {
                        depth -= 1;
                    }
                    stack.pop();
                }
                _ => break,
            }
        }
        if pos >= b.len() {
            // Undelimited undefined-length sequences at the end of file: dicom-object decides.
            return Ok(pixel);
        }
        let syn = stack.last().map_or(syntax, |o| o.syntax);
        let err = |tag, kind| WalkError {
            tag,
            offset: pos,
            kind,
        };
        let rest = &b[pos..];
        if rest.len() < 8 {
            if stack.is_empty() && rest.iter().all(|&x| x == 0) {
                return Ok(pixel); // trailing zero padding
            }
            return Err(err(Tag(0, 0), WalkErrorKind::TruncatedHeader));
        }
        let u16_at = |o: usize| match syn {
            Syntax::ExplicitBe => u16::from_be_bytes([rest[o], rest[o + 1]]),
            _ => u16::from_le_bytes([rest[o], rest[o + 1]]),
        };
        let u32_at = |o: usize| {
            let a = [rest[o], rest[o + 1], rest[o + 2], rest[o + 3]];
            match syn {
                Syntax::ExplicitBe => u32::from_be_bytes(a),
                _ => u32::from_le_bytes(a),
            }
        };
        let tag = Tag(u16_at(0), u16_at(2));
        // Room left for this value: to the end of the file or of the enclosing defined length.
        let limit = stack
            .iter()
            .filter_map(|o| o.end)
            .min()
            .unwrap_or(b.len())
            .min(b.len());
        let top_kind = stack.last().map(|o| o.kind);
        if tag.0 == 0xFFFE {
            let len = u32_at(4);
            match tag.1 {
                0xE000 => match top_kind {
                    Some(Kind::Fragments) => {
                        let avail = limit.saturating_sub(pos + 8);
                        if len == UNDEFINED || len as usize > avail {
                            return Err(err(
                                tag,
                                WalkErrorKind::LengthPastEnd {
                                    declared: len as u64,
                                    available: avail as u64,
                                },
                            ));
                        }
                        pos += 8 + len as usize;
                    }
                    Some(Kind::Seq) => {
                        let end = if len == UNDEFINED {
                            None
                        } else {
                            let avail = limit.saturating_sub(pos + 8);
                            if len as usize > avail {
                                return Err(err(
                                    tag,
                                    WalkErrorKind::LengthPastEnd {
                                        declared: len as u64,
                                        available: avail as u64,
                                    },
                                ));
                            }
                            Some(pos + 8 + len as usize)
                        };
                        pos += 8;
                        stack.push(Open {
                            kind: Kind::Item,
                            end,
                            syntax: syn,
                        });
                    }
                    _ => {
                        return Err(err(
                            tag,
                            WalkErrorKind::BadStructure("item outside a sequence"),
                        ))
                    }
                },
                0xE00D => match stack.last() {
                    Some(Open {
                        kind: Kind::Item,
                        end: None,
                        ..
                    }) => {
                        stack.pop();
                        pos += 8;
                    }
                    // A stray item delimiter in a defined-length item: tolerated (PS3.5 7.5.2 lets
                    // readers skip it) as dicom-rs does.
                    Some(Open {
                        kind: Kind::Item, ..
                    }) => pos += 8,
                    _ => {
                        return Err(err(
                            tag,
                            WalkErrorKind::BadStructure("item delimiter outside an item"),
                        ))
                    }
                },
                0xE0DD => match stack.last() {
                    Some(Open {
                        kind: Kind::Seq | Kind::Fragments,
                        end: None,
                        ..
                    }) => {
                        if stack.last().is_some_and(|o| o.kind == Kind::Seq) {
                            depth -= 1;
                        }
                        stack.pop();
                        pos += 8;
                    }
                    Some(Open {
                        kind: Kind::Seq, ..
                    }) => pos += 8,
                    _ => {
                        return Err(err(
                            tag,
                            WalkErrorKind::BadStructure("sequence delimiter outside a sequence"),
                        ))
                    }
                },
                _ => {
                    return Err(err(
                        tag,
                        WalkErrorKind::BadStructure("unknown (FFFE,xxxx) delimiter"),
                    ))
                }
            }
            continue;
        }
        if top_kind == Some(Kind::Seq) || top_kind == Some(Kind::Fragments) {
            return Err(err(
                tag,
                WalkErrorKind::BadStructure("element directly inside a sequence, not in an item"),
            ));
        }
        let (len, header, vr_sq, vr_un) = match syn {
            Syntax::ImplicitLe => (u32_at(4), 8usize, dictionary_is_sq(tag), false),
            _ => {
                let vr = &rest[4..6];
                if is_long_vr(vr) {
                    if rest.len() < 12 {
                        return Err(err(tag, WalkErrorKind::TruncatedHeader));
                    }
                    (u32_at(8), 12, vr == b"SQ", vr == b"UN")
                } else {
                    (u16_at(6) as u32, 8, false, false)
                }
            }
        };
        let is_pixel = stack.is_empty() && tag == Tag(0x7FE0, 0x0010);
        let avail = limit.saturating_sub(pos + header);
        if is_pixel {
            pixel = Some(PixelDataLayout {
                offset: pos,
                declared_len: (len != UNDEFINED).then_some(len),
                available: b.len().saturating_sub(pos + header),
            });
            if stop_at_pixel_data {
                return Ok(pixel);
            }
        }
        if len == UNDEFINED {
            let kind = if is_pixel { Kind::Fragments } else { Kind::Seq };
            if kind == Kind::Seq && !(vr_sq || vr_un || syn == Syntax::ImplicitLe) {
                return Err(err(
                    tag,
                    WalkErrorKind::BadStructure("undefined length on a VR that is not SQ or UN"),
                ));
            }
            if kind == Kind::Seq {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(err(tag, WalkErrorKind::TooDeep));
                }
            }
            // An undefined-length UN holds an implicit VR little endian sequence (PS3.5 6.2.2).
            let syntax = if vr_un { Syntax::ImplicitLe } else { syn };
            stack.push(Open {
                kind,
                end: None,
                syntax,
            });
            pos += header;
            continue;
        }
        if len as usize > avail {
            return Err(err(
                tag,
                WalkErrorKind::LengthPastEnd {
                    declared: len as u64,
                    available: avail as u64,
                },
            ));
        }
        if vr_sq {
            depth += 1;
            if depth > MAX_DEPTH {
                return Err(err(tag, WalkErrorKind::TooDeep));
            }
            stack.push(Open {
                kind: Kind::Seq,
                end: Some(pos + header + len as usize),
                syntax: syn,
            });
            pos += header;
        } else {
            pos += header + len as usize;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(g: u16, e: u16, vr: &[u8; 2], v: &[u8]) -> Vec<u8> {
        let mut b = vec![];
        b.extend_from_slice(&g.to_le_bytes());
        b.extend_from_slice(&e.to_le_bytes());
        b.extend_from_slice(vr);
        b.extend_from_slice(&(v.len() as u16).to_le_bytes());
        b.extend_from_slice(v);
        b
    }

    #[test]
    fn deep_nesting_refused_shallow_accepted() {
        let open = |n: usize| {
            let mut b = vec![];
            for _ in 0..n {
                b.extend_from_slice(&[
                    0x08, 0, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
                ]);
                b.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
            }
            for _ in 0..n {
                b.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
                b.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
            }
            b
        };
        assert_eq!(walk(&open(5), Syntax::ExplicitLe, false), Ok(None));
        let e = walk(&open(1000), Syntax::ExplicitLe, false).unwrap_err();
        assert_eq!(e.kind, WalkErrorKind::TooDeep);
        assert_eq!(e.tag, Tag(0x0008, 0x1115));
    }

    #[test]
    fn long_length_refused_and_pixel_layout_reported() {
        let mut b = el(0x0008, 0x0060, b"CS", b"CT");
        b.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0]);
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        let e = walk(&b, Syntax::ExplicitLe, false).unwrap_err();
        assert_eq!(
            e.kind,
            WalkErrorKind::LengthPastEnd {
                declared: 8,
                available: 4
            }
        );
        let l = walk(&b, Syntax::ExplicitLe, true).unwrap().unwrap();
        assert_eq!((l.offset, l.declared_len, l.available), (10, Some(8), 4));
    }
}
