//! DIMSE messages on top of the upper layer: command sets (PS3.7 6.3, E.1) encoded and decoded
//! here, and reassembly of P-DATA-TF fragments (PS3.8 9.3.5.1, E.2) into command and data streams.
//!
//! A command set is always Implicit VR Little Endian (PS3.7 6.3.1): tag, 32-bit length, value,
//! sorted by tag, opened by CommandGroupLength (0000,0000). The message control header of each PDV
//! carries bit 0 = command (1) / data (0) and bit 1 = last fragment; dicom-ul decodes it into
//! [`PDataValue::value_type`] and [`PDataValue::is_last`].

use std::collections::BTreeMap;

use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};

/// (0000,0002) AffectedSOPClassUID.
pub const AFFECTED_SOP_CLASS_UID: u16 = 0x0002;
/// (0000,0100) CommandField.
pub const COMMAND_FIELD: u16 = 0x0100;
/// (0000,0110) MessageID.
pub const MESSAGE_ID: u16 = 0x0110;
/// (0000,0120) MessageIDBeingRespondedTo.
pub const MESSAGE_ID_BEING_RESPONDED_TO: u16 = 0x0120;
/// (0000,0700) Priority.
pub const PRIORITY: u16 = 0x0700;
/// (0000,0800) CommandDataSetType.
pub const COMMAND_DATA_SET_TYPE: u16 = 0x0800;
/// (0000,0900) Status.
pub const STATUS: u16 = 0x0900;
/// (0000,0902) ErrorComment (LO, at most 64 characters).
pub const ERROR_COMMENT: u16 = 0x0902;
/// (0000,1000) AffectedSOPInstanceUID.
pub const AFFECTED_SOP_INSTANCE_UID: u16 = 0x1000;
/// (0000,1030) MoveOriginatorApplicationEntityTitle.
pub const MOVE_ORIGINATOR_AE_TITLE: u16 = 0x1030;

/// CommandDataSetType value meaning "no data set follows" (PS3.7 E.1-1).
pub const NO_DATA_SET: u16 = 0x0101;

/// CommandField values used here (PS3.7 E.1-1).
pub mod command_field {
    /// C-STORE-RQ.
    pub const C_STORE_RQ: u16 = 0x0001;
    /// C-STORE-RSP.
    pub const C_STORE_RSP: u16 = 0x8001;
    /// C-ECHO-RQ.
    pub const C_ECHO_RQ: u16 = 0x0030;
    /// C-ECHO-RSP.
    pub const C_ECHO_RSP: u16 = 0x8030;
    /// C-CANCEL-RQ.
    pub const C_CANCEL_RQ: u16 = 0x0FFF;
}

/// Largest command set accepted (bytes). Real ones are a few hundred bytes; this bounds memory.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// Errors of decoding commands and of the fragment sequence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DimseError {
    /// The command set bytes do not parse as Implicit VR LE group 0000 elements.
    #[error("malformed command set at byte {offset}: {reason}")]
    Malformed { offset: usize, reason: String },
    /// A required command element is missing or has the wrong size.
    #[error("command element (0000,{element:04X}) missing or malformed")]
    MissingElement { element: u16 },
    /// The command fragments exceed [`MAX_COMMAND_BYTES`].
    #[error("command set longer than {MAX_COMMAND_BYTES} bytes")]
    CommandTooLong,
    /// A PDV arrived that the message sequence does not allow (PS3.7 9.3.1, PS3.8 9.3.5.1).
    #[error("unexpected {what} on presentation context {pc_id}")]
    Sequence { pc_id: u8, what: &'static str },
}

/// A decoded command set: element number (group 0000) -> raw value bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandSet {
    elements: BTreeMap<u16, Vec<u8>>,
}

impl CommandSet {
    /// An empty command set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes Implicit VR LE group-0000 elements. CommandGroupLength is checked against the rest
    /// when present; elements of other groups are errors.
    pub fn decode(bytes: &[u8]) -> Result<CommandSet, DimseError> {
        let mut elements = BTreeMap::new();
        let mut at = 0usize;
        while at < bytes.len() {
            let header = bytes.get(at..at + 8).ok_or_else(|| DimseError::Malformed {
                offset: at,
                reason: "truncated element header".to_owned(),
            })?;
            let group = u16::from_le_bytes([header[0], header[1]]);
            let element = u16::from_le_bytes([header[2], header[3]]);
            let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
            if group != 0x0000 {
                return Err(DimseError::Malformed {
                    offset: at,
                    reason: format!("element ({group:04X},{element:04X}) outside group 0000"),
                });
            }
            let value = bytes
                .get(at + 8..at + 8 + len)
                .ok_or_else(|| DimseError::Malformed {
                    offset: at,
                    reason: format!("(0000,{element:04X}) length {len} runs past the end"),
                })?;
            elements.insert(element, value.to_vec());
            at += 8 + len;
        }
        let set = CommandSet { elements };
        if let Some(declared) = set.u32(0x0000) {
            let first_len = 12; // (0000,0000) UL element itself
            if declared as usize + first_len != bytes.len() {
                return Err(DimseError::Malformed {
                    offset: 0,
                    reason: format!(
                        "CommandGroupLength {declared} but {} bytes follow it",
                        bytes.len().saturating_sub(first_len)
                    ),
                });
            }
        }
        Ok(set)
    }

    /// Encodes with CommandGroupLength first, elements in ascending order.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(256);
        for (element, value) in self.elements.iter().filter(|(e, _)| **e != 0x0000) {
            body.extend_from_slice(&0u16.to_le_bytes());
            body.extend_from_slice(&element.to_le_bytes());
            body.extend_from_slice(&(value.len() as u32).to_le_bytes());
            body.extend_from_slice(value);
        }
        let mut out = Vec::with_capacity(body.len() + 12);
        out.extend_from_slice(&[0, 0, 0, 0, 4, 0, 0, 0]);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Sets a US element.
    pub fn with_u16(mut self, element: u16, value: u16) -> Self {
        self.elements.insert(element, value.to_le_bytes().to_vec());
        self
    }

    /// Sets a UI element (padded with NUL to even length, PS3.5 9.1).
    pub fn with_uid(self, element: u16, uid: &str) -> Self {
        self.with_text(element, uid, 0)
    }

    /// Sets a text element (LO/AE; padded with a space to even length).
    pub fn with_string(self, element: u16, text: &str) -> Self {
        self.with_text(element, text, b' ')
    }

    fn with_text(mut self, element: u16, text: &str, pad: u8) -> Self {
        let mut v = text.as_bytes().to_vec();
        if v.len() % 2 == 1 {
            v.push(pad);
        }
        self.elements.insert(element, v);
        self
    }

    /// A US element, `None` when absent or not 2 bytes.
    pub fn u16(&self, element: u16) -> Option<u16> {
        match self.elements.get(&element)?.as_slice() {
            [a, b] => Some(u16::from_le_bytes([*a, *b])),
            _ => None,
        }
    }

    /// A UL element, `None` when absent or not 4 bytes.
    pub fn u32(&self, element: u16) -> Option<u32> {
        match self.elements.get(&element)?.as_slice() {
            [a, b, c, d] => Some(u32::from_le_bytes([*a, *b, *c, *d])),
            _ => None,
        }
    }

    /// A text or UID element with padding (NUL, space) trimmed; `None` when absent or not ASCII.
    pub fn string(&self, element: u16) -> Option<String> {
        let v = self.elements.get(&element)?;
        let s = std::str::from_utf8(v).ok()?;
        Some(s.trim_matches(|c: char| c == '\0' || c == ' ').to_owned())
    }

    /// CommandField (0000,0100).
    pub fn command_field(&self) -> Result<u16, DimseError> {
        self.u16(COMMAND_FIELD).ok_or(DimseError::MissingElement {
            element: COMMAND_FIELD,
        })
    }

    /// MessageID (0000,0110).
    pub fn message_id(&self) -> Result<u16, DimseError> {
        self.u16(MESSAGE_ID).ok_or(DimseError::MissingElement {
            element: MESSAGE_ID,
        })
    }

    /// Whether a data set follows (CommandDataSetType (0000,0800) other than 0101H).
    pub fn has_data_set(&self) -> Result<bool, DimseError> {
        self.u16(COMMAND_DATA_SET_TYPE)
            .map(|t| t != NO_DATA_SET)
            .ok_or(DimseError::MissingElement {
                element: COMMAND_DATA_SET_TYPE,
            })
    }
}

/// Builds a C-STORE-RSP (PS3.7 9.3.1.2). `comment` becomes ErrorComment, cut to 64 characters.
pub fn c_store_rsp(
    message_id: u16,
    sop_class_uid: &str,
    sop_instance_uid: &str,
    status: u16,
    comment: Option<&str>,
) -> CommandSet {
    let mut c = CommandSet::new()
        .with_uid(AFFECTED_SOP_CLASS_UID, sop_class_uid)
        .with_u16(COMMAND_FIELD, command_field::C_STORE_RSP)
        .with_u16(MESSAGE_ID_BEING_RESPONDED_TO, message_id)
        .with_u16(COMMAND_DATA_SET_TYPE, NO_DATA_SET)
        .with_u16(STATUS, status)
        .with_uid(AFFECTED_SOP_INSTANCE_UID, sop_instance_uid);
    if let Some(text) = comment {
        let cut: String = text
            .chars()
            .filter(|c| (' '..='~').contains(c) && *c != '\\')
            .take(64)
            .collect();
        c = c.with_string(ERROR_COMMENT, &cut);
    }
    c
}

/// Builds a C-ECHO-RSP with status success (PS3.7 9.3.5.2).
pub fn c_echo_rsp(message_id: u16, sop_class_uid: &str) -> CommandSet {
    CommandSet::new()
        .with_uid(AFFECTED_SOP_CLASS_UID, sop_class_uid)
        .with_u16(COMMAND_FIELD, command_field::C_ECHO_RSP)
        .with_u16(MESSAGE_ID_BEING_RESPONDED_TO, message_id)
        .with_u16(COMMAND_DATA_SET_TYPE, NO_DATA_SET)
        .with_u16(STATUS, 0x0000)
}

/// Splits an encoded command set into P-DATA-TF PDUs that fit the peer's maximum PDU length
/// (`peer_max_pdu`, bytes of PDU body; 0 = unlimited). Each PDU carries one PDV whose header
/// (4-byte item length, context ID, control header) takes 6 bytes.
pub fn command_pdus(pc_id: u8, command: &[u8], peer_max_pdu: u32) -> Vec<Pdu> {
    let room = if peer_max_pdu == 0 {
        usize::MAX
    } else {
        (peer_max_pdu as usize).saturating_sub(6).max(2)
    };
    let chunks: Vec<&[u8]> = if command.is_empty() {
        vec![command]
    } else {
        command.chunks(room).collect()
    };
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc_id,
                value_type: PDataValueType::Command,
                is_last: i + 1 == n,
                data: chunk.to_vec(),
            }],
        })
        .collect()
}

/// What the [`Reassembler`] made of one PDV.
#[derive(Debug, PartialEq, Eq)]
pub enum Fragment {
    /// More command fragments to come.
    Partial,
    /// A whole command set arrived on presentation context `pc_id`; when `has_data` a data set
    /// follows as [`Fragment::Data`] items.
    Command {
        pc_id: u8,
        command: CommandSet,
        has_data: bool,
    },
    /// A piece of the data set, in order; `last` closes the message.
    Data { bytes: Vec<u8>, last: bool },
}

/// State machine over PDVs in arrival order (any PDU split: a PDU may hold several PDVs, a
/// message may span many PDUs). Memory: the command bytes of one message (at most
/// [`MAX_COMMAND_BYTES`]); data fragments are handed on, never accumulated.
#[derive(Debug, Default)]
pub struct Reassembler {
    state: State,
}

#[derive(Debug, Default)]
enum State {
    /// Between messages.
    #[default]
    Idle,
    /// Command fragments of context `pc_id` so far.
    Command { pc_id: u8, bytes: Vec<u8> },
    /// Data fragments of context `pc_id` are expected.
    Data { pc_id: u8 },
}

impl Reassembler {
    /// A reassembler between messages.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a message is partly received (a command or its data set is incomplete).
    pub fn in_message(&self) -> bool {
        !matches!(self.state, State::Idle)
    }

    /// Feeds one PDV. Errors leave the reassembler between messages; the caller aborts the
    /// association (PS3.8 9.3.5.1: interleaving messages is not allowed).
    pub fn push(&mut self, pdv: PDataValue) -> Result<Fragment, DimseError> {
        let pc = pdv.presentation_context_id;
        let state = std::mem::take(&mut self.state);
        let is_command = matches!(pdv.value_type, PDataValueType::Command);
        match (state, is_command) {
            (State::Idle, true) => self.command(pc, Vec::new(), pdv),
            (State::Command { pc_id, bytes }, true) if pc_id == pc => self.command(pc, bytes, pdv),
            (State::Data { pc_id }, false) if pc_id == pc => {
                if !pdv.is_last {
                    self.state = State::Data { pc_id };
                }
                Ok(Fragment::Data {
                    bytes: pdv.data,
                    last: pdv.is_last,
                })
            }
            (State::Idle, false) => Err(DimseError::Sequence {
                pc_id: pc,
                what: "data fragment without a command",
            }),
            (State::Command { .. }, false) => Err(DimseError::Sequence {
                pc_id: pc,
                what: "data fragment before the last command fragment",
            }),
            (State::Data { .. }, true) => Err(DimseError::Sequence {
                pc_id: pc,
                what: "command fragment before the last data fragment",
            }),
            (State::Command { .. } | State::Data { .. }, _) => Err(DimseError::Sequence {
                pc_id: pc,
                what: "fragment on another presentation context mid-message",
            }),
        }
    }

    fn command(
        &mut self,
        pc_id: u8,
        mut bytes: Vec<u8>,
        pdv: PDataValue,
    ) -> Result<Fragment, DimseError> {
        if bytes.len() + pdv.data.len() > MAX_COMMAND_BYTES {
            return Err(DimseError::CommandTooLong);
        }
        bytes.extend_from_slice(&pdv.data);
        if !pdv.is_last {
            self.state = State::Command { pc_id, bytes };
            return Ok(Fragment::Partial);
        }
        let command = CommandSet::decode(&bytes)?;
        let has_data = command.has_data_set()?;
        if has_data {
            self.state = State::Data { pc_id };
        }
        Ok(Fragment::Command {
            pc_id,
            command,
            has_data,
        })
    }
}

#[cfg(test)]
#[path = "dimse_tests.rs"]
mod tests;
