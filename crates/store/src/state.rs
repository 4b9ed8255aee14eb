//! The state itself: a map from byte keys to byte values, and its encoding inside the encrypted
//! part of `sealed_data`.
//!
//! Values hold private keys and secrets, so they are zeroed when the last copy is dropped.
//! Copies of a [`State`] share their values; a transaction's copy costs one reference count per
//! entry, not a copy of every value.
//!
//! Encoding (little-endian): `u32 count | (u32 key length | key | u32 value length | value)*`,
//! keys strictly ascending, so that one state has exactly one encoding.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use zeroize::Zeroizing;

/// A value in the state: zeroed when its last holder drops it.
type Value = Arc<Zeroizing<Vec<u8>>>;

/// A consistent view of the whole state.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct State {
    map: BTreeMap<Vec<u8>, Value>,
}

impl State {
    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(|v| v.as_slice())
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.map.contains_key(key)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the state has no entries.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// All entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.map.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// The entries whose key starts with `prefix`, in key order, with their full keys.
    pub fn iter_prefix<'a>(
        &'a self,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        self.map
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    pub(crate) fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.map.insert(key, Arc::new(Zeroizing::new(value)));
    }

    pub(crate) fn remove(&mut self, key: &[u8]) -> bool {
        self.map.remove(key).is_some()
    }

    /// The encoding of this state.
    #[cfg(test)]
    pub(crate) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(self.encoded_len()));
        self.encode_into(&mut out);
        out
    }

    /// Appends the encoding of this state to `out`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        // Entry counts and lengths are bounded by the state size limit, far below u32::MAX.
        out.extend_from_slice(&(self.map.len() as u32).to_le_bytes());
        for (key, value) in &self.map {
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key);
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
        }
    }

    /// The size of the encoding of this state.
    pub(crate) fn encoded_len(&self) -> usize {
        4 + self
            .map
            .iter()
            .map(|(k, v)| 8 + k.len() + v.len())
            .sum::<usize>()
    }

    /// Decodes a state; rejects anything the store would not have written (see the module documentation).
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let mut pos = 0;
        let count = read_u32(bytes, &mut pos, "entry count")?;
        let mut map = BTreeMap::new();
        let mut last: Option<&[u8]> = None;
        for index in 0..count {
            let key = read_field(bytes, &mut pos, "key", index)?;
            if last.is_some_and(|last| last >= key) {
                return Err(StateError::KeyOrder { index });
            }
            let value = read_field(bytes, &mut pos, "value", index)?;
            map.insert(key.to_vec(), Arc::new(Zeroizing::new(value.to_vec())));
            last = Some(key);
        }
        if pos != bytes.len() {
            return Err(StateError::TrailingBytes {
                count: bytes.len() - pos,
            });
        }
        Ok(Self { map })
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values are secrets; keys name them and are safe to show.
        f.debug_struct("State")
            .field("entries", &self.map.len())
            .finish_non_exhaustive()
    }
}

/// What is wrong with a decrypted state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The encoding ends inside a field.
    #[error("state is truncated in {field} of entry {index}")]
    Truncated {
        /// The field.
        field: &'static str,
        /// The entry.
        index: u32,
    },
    /// Keys are not strictly ascending.
    #[error("state entry {index} is out of order or a duplicate")]
    KeyOrder {
        /// The entry.
        index: u32,
    },
    /// Bytes follow the last entry.
    #[error("state has {count} unexpected bytes after its last entry")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
}

fn read_u32(bytes: &[u8], pos: &mut usize, field: &'static str) -> Result<u32, StateError> {
    let end = *pos + 4;
    let b = bytes
        .get(*pos..end)
        .ok_or(StateError::Truncated { field, index: 0 })?;
    *pos = end;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn read_field<'a>(
    bytes: &'a [u8],
    pos: &mut usize,
    field: &'static str,
    index: u32,
) -> Result<&'a [u8], StateError> {
    let truncated = StateError::Truncated { field, index };
    let len_bytes = bytes.get(*pos..*pos + 4).ok_or(truncated.clone())?;
    let len = u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
    let start = *pos + 4;
    let end = start.checked_add(len).ok_or(truncated.clone())?;
    let out = bytes.get(start..end).ok_or(truncated)?;
    *pos = end;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> State {
        let mut state = State::default();
        state.insert(b"marble:web".to_vec(), b"{}".to_vec());
        state.insert(b"manifest".to_vec(), b"{\"Packages\":{}}".to_vec());
        state.insert(b"marble:db".to_vec(), Vec::new());
        state.insert(b"marblf".to_vec(), b"x".to_vec());
        state
    }

    #[test]
    fn encode_decode_round_trip() {
        let state = sample();
        let bytes = state.encode();
        assert_eq!(bytes.len(), state.encoded_len());
        assert_eq!(State::decode(&bytes).unwrap(), state);
        assert_eq!(
            State::decode(&State::default().encode()).unwrap(),
            State::default()
        );
    }

    #[test]
    fn prefix_iteration_stops_at_the_prefix_end() {
        let state = sample();
        let keys: Vec<&[u8]> = state.iter_prefix(b"marble:").map(|(k, _)| k).collect();
        assert_eq!(keys, vec![&b"marble:db"[..], &b"marble:web"[..]]);
        assert_eq!(state.iter_prefix(b"zzz").count(), 0);
    }

    #[test]
    fn decoding_rejects_every_truncation_and_reordering() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(State::decode(&bytes[..len]).is_err(), "length {len}");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert_eq!(
            State::decode(&longer),
            Err(StateError::TrailingBytes { count: 1 })
        );

        let mut dup = Vec::new();
        dup.extend_from_slice(&2u32.to_le_bytes());
        for _ in 0..2 {
            dup.extend_from_slice(&1u32.to_le_bytes());
            dup.push(b'a');
            dup.extend_from_slice(&0u32.to_le_bytes());
        }
        assert_eq!(State::decode(&dup), Err(StateError::KeyOrder { index: 1 }));
    }

    #[test]
    fn huge_lengths_do_not_allocate_or_panic() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(State::decode(&bytes).is_err());
    }

    #[test]
    fn debug_shows_no_values() {
        let text = format!("{:?}", sample());
        assert!(!text.contains("Packages"), "{text}");
    }
}
