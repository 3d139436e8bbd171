//! Mutations of a valid input: the inputs that get furthest into a parser are nearly right.

use proptest::prelude::*;

/// One edit of a byte string; positions are taken modulo its length.
#[derive(Debug, Clone)]
pub enum Edit {
    Delete { at: usize, len: usize },
    Insert { at: usize, token: usize },
    InsertBytes { at: usize, bytes: Vec<u8> },
    Flip { at: usize, bit: u8 },
    Duplicate { at: usize, len: usize },
    Truncate { at: usize },
}

pub fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (any::<usize>(), 1usize..16).prop_map(|(at, len)| Edit::Delete { at, len }),
        (any::<usize>(), any::<usize>()).prop_map(|(at, token)| Edit::Insert { at, token }),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Edit::InsertBytes { at, bytes }),
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Edit::Flip { at, bit }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Edit::Duplicate { at, len }),
        any::<usize>().prop_map(|at| Edit::Truncate { at }),
    ];
    proptest::collection::vec(edit, 1..6)
}

/// `base` with `edits` applied; `tokens` are the fragments an `Insert` picks from.
pub fn apply(base: &[u8], edits: &[Edit], tokens: &[&str]) -> Vec<u8> {
    let mut out = base.to_vec();
    for edit in edits {
        let len = out.len();
        let at = |i: usize| if len == 0 { 0 } else { i % (len + 1) };
        match edit {
            Edit::Delete { at: i, len: n } => {
                let start = at(*i);
                let end = (start + n).min(len);
                out.drain(start..end);
            }
            Edit::Insert { at: i, token } => {
                let token = tokens[token % tokens.len()].as_bytes();
                let start = at(*i);
                out.splice(start..start, token.iter().copied());
            }
            Edit::InsertBytes { at: i, bytes } => {
                let start = at(*i);
                out.splice(start..start, bytes.iter().copied());
            }
            Edit::Flip { at: i, bit } => {
                if len > 0 {
                    out[i % len] ^= 1 << bit;
                }
            }
            Edit::Duplicate { at: i, len: n } => {
                let start = at(*i);
                let end = (start + n).min(len);
                let copy = out[start..end].to_vec();
                out.splice(end..end, copy);
            }
            Edit::Truncate { at: i } => out.truncate(at(*i)),
        }
    }
    out
}

/// Arbitrary input, mostly text (which parsers get further with) and sometimes any bytes.
pub fn arbitrary_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => ".{0,256}".prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<u8>(), 0..256),
    ]
}
