use super::*;

const VERIFICATION: &str = "1.2.840.10008.1.1";

fn pdv(pc: u8, command: bool, last: bool, data: &[u8]) -> PDataValue {
    PDataValue {
        presentation_context_id: pc,
        value_type: if command {
            PDataValueType::Command
        } else {
            PDataValueType::Data
        },
        is_last: last,
        data: data.to_vec(),
    }
}

fn store_rq() -> Vec<u8> {
    CommandSet::new()
        .with_uid(AFFECTED_SOP_CLASS_UID, "1.2.840.10008.5.1.4.1.1.2")
        .with_u16(COMMAND_FIELD, command_field::C_STORE_RQ)
        .with_u16(MESSAGE_ID, 7)
        .with_u16(PRIORITY, 0)
        .with_u16(COMMAND_DATA_SET_TYPE, 0x0000)
        .with_uid(AFFECTED_SOP_INSTANCE_UID, "1.2.3.4.5")
        .encode()
}

#[test]
fn echo_rsp_bytes_follow_ps3_7() {
    let b = c_echo_rsp(3, VERIFICATION).encode();
    // 5 elements after the group length: 8+18 (UID padded with NUL) + 4 * (8+2) = 66 bytes.
    assert_eq!(b.len(), 12 + 66);
    assert_eq!(&b[..12], &[0, 0, 0, 0, 4, 0, 0, 0, 66, 0, 0, 0]);
    // (0000,0002) UI length 18, NUL-padded
    assert_eq!(&b[12..20], &[0, 0, 2, 0, 18, 0, 0, 0]);
    assert_eq!(&b[20..38], b"1.2.840.10008.1.1\0");
    // (0000,0100) = 8030H
    assert_eq!(&b[38..48], &[0, 0, 0, 1, 2, 0, 0, 0, 0x30, 0x80]);
    let back = CommandSet::decode(&b).unwrap();
    assert_eq!(back.command_field().unwrap(), command_field::C_ECHO_RSP);
    assert_eq!(back.u16(MESSAGE_ID_BEING_RESPONDED_TO), Some(3));
    assert_eq!(back.string(AFFECTED_SOP_CLASS_UID).unwrap(), VERIFICATION);
    assert!(!back.has_data_set().unwrap());
}

#[test]
fn store_rsp_comment_is_cut_to_64_characters() {
    let long = "x".repeat(100);
    let c = c_store_rsp(1, "1.2", "1.2.3", 0xA700, Some(&long));
    assert_eq!(c.u16(STATUS), Some(0xA700));
    assert_eq!(c.string(ERROR_COMMENT).unwrap().len(), 64);
}

#[test]
fn decode_refuses_bad_lengths_and_foreign_groups() {
    let mut b = store_rq();
    b.truncate(b.len() - 3);
    assert!(matches!(
        CommandSet::decode(&b),
        Err(DimseError::Malformed { .. })
    ));
    let mut b = store_rq();
    b[8] = b[8].wrapping_add(2); // group length no longer matches
    assert!(CommandSet::decode(&b).is_err());
    let foreign = [8u8, 0, 0x16, 0, 2, 0, 0, 0, b'1', 0];
    assert!(matches!(
        CommandSet::decode(&foreign),
        Err(DimseError::Malformed { offset: 0, .. })
    ));
}

/// Every split of the command into fragments and of the data into fragments gives the same
/// command and the same concatenated data.
#[test]
fn any_fragment_split_reassembles() {
    let command = store_rq();
    let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
    for cmd_piece in [1usize, 2, 5, 13, 64, command.len()] {
        for data_piece in [1usize, 3, 100, 999, 1000] {
            let mut r = Reassembler::new();
            let mut got = Vec::new();
            let mut commands = 0;
            let cmd_chunks: Vec<_> = command.chunks(cmd_piece).collect();
            for (i, c) in cmd_chunks.iter().enumerate() {
                let last = i + 1 == cmd_chunks.len();
                match r.push(pdv(3, true, last, c)).unwrap() {
                    Fragment::Partial => assert!(!last),
                    Fragment::Command {
                        pc_id,
                        command,
                        has_data,
                    } => {
                        assert!(last);
                        assert_eq!(pc_id, 3);
                        assert!(has_data);
                        assert_eq!(command.message_id().unwrap(), 7);
                        assert_eq!(
                            command.string(AFFECTED_SOP_INSTANCE_UID).unwrap(),
                            "1.2.3.4.5"
                        );
                        commands += 1;
                    }
                    Fragment::Data { .. } => panic!("data out of command fragments"),
                }
            }
            assert!(r.in_message());
            let data_chunks: Vec<_> = data.chunks(data_piece).collect();
            for (i, c) in data_chunks.iter().enumerate() {
                let last = i + 1 == data_chunks.len();
                match r.push(pdv(3, false, last, c)).unwrap() {
                    Fragment::Data { bytes, last: l } => {
                        assert_eq!(l, last);
                        got.extend_from_slice(&bytes);
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(commands, 1);
            assert_eq!(got, data);
            assert!(!r.in_message());
        }
    }
}

#[test]
fn out_of_sequence_fragments_are_errors() {
    let command = store_rq();
    let mut r = Reassembler::new();
    assert!(matches!(
        r.push(pdv(1, false, true, b"xx")),
        Err(DimseError::Sequence { pc_id: 1, .. })
    ));
    let mut r = Reassembler::new();
    r.push(pdv(1, true, false, &command[..10])).unwrap();
    assert!(r.push(pdv(1, false, true, b"xx")).is_err());
    let mut r = Reassembler::new();
    r.push(pdv(1, true, false, &command[..10])).unwrap();
    assert!(r.push(pdv(3, true, true, &command[10..])).is_err());
    let mut r = Reassembler::new();
    r.push(pdv(1, true, true, &command)).unwrap();
    assert!(r.push(pdv(1, true, true, &command)).is_err());
    let mut r = Reassembler::new();
    let big = vec![0u8; MAX_COMMAND_BYTES];
    r.push(pdv(1, true, false, &big)).unwrap();
    assert_eq!(
        r.push(pdv(1, true, false, b"x")),
        Err(DimseError::CommandTooLong)
    );
}

#[test]
fn echo_without_data_returns_to_idle() {
    let rq = CommandSet::new()
        .with_uid(AFFECTED_SOP_CLASS_UID, VERIFICATION)
        .with_u16(COMMAND_FIELD, command_field::C_ECHO_RQ)
        .with_u16(MESSAGE_ID, 1)
        .with_u16(COMMAND_DATA_SET_TYPE, NO_DATA_SET)
        .encode();
    let mut r = Reassembler::new();
    let f = r.push(pdv(1, true, true, &rq)).unwrap();
    assert!(matches!(
        f,
        Fragment::Command {
            has_data: false,
            ..
        }
    ));
    assert!(!r.in_message());
}

#[test]
fn command_pdus_fit_the_peer_limit() {
    let cmd = store_rq();
    let pdus = command_pdus(5, &cmd, 32);
    assert_eq!(pdus.len(), cmd.len().div_ceil(26));
    let mut joined = Vec::new();
    for (i, p) in pdus.iter().enumerate() {
        let Pdu::PData { data } = p else {
            panic!("not P-DATA")
        };
        assert_eq!(data.len(), 1);
        assert!(data[0].data.len() + 6 <= 32);
        assert_eq!(data[0].is_last, i + 1 == pdus.len());
        joined.extend_from_slice(&data[0].data);
    }
    assert_eq!(joined, cmd);
    assert_eq!(command_pdus(5, &cmd, 0).len(), 1);
}
