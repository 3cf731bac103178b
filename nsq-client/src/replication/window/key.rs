//! The keys the window remembers, and the hasher of its tables.

use crate::replication::envelope::MessageKey;

/// A key as remembered: the envelope's 16 bytes inline, or a copy of the user's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    Envelope(MessageKey),
    User(Box<[u8]>),
}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            // One write: the hasher below takes it in one multiplication.
            Key::Envelope(key) => {
                state.write_u128(u128::from(key.producer()) << 64 | u128::from(key.sequence()))
            }
            Key::User(bytes) => {
                state.write_u8(0xff);
                state.write(bytes);
            }
        }
    }
}

/// The window's hasher: a folded multiply with a random seed per window, much cheaper than
/// SipHash for 16-byte keys. Keys are compared in full, so a collision costs time, never a
/// wrong answer; the seed keeps a publisher from choosing keys that collide on purpose.
#[derive(Clone)]
pub(super) struct KeyHasher {
    seed: (u64, u64),
}

impl Default for KeyHasher {
    fn default() -> Self {
        Self {
            seed: (fastrand::u64(..), fastrand::u64(..)),
        }
    }
}

impl std::hash::BuildHasher for KeyHasher {
    type Hasher = FoldHasher;

    fn build_hasher(&self) -> FoldHasher {
        FoldHasher {
            state: self.seed.0,
            seed: self.seed.1,
        }
    }
}

/// The hasher of [`KeyHasher`].
pub(super) struct FoldHasher {
    state: u64,
    seed: u64,
}

/// The high and low halves of the full product, folded together.
fn fold(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

impl std::hash::Hasher for FoldHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(16);
        for chunk in &mut chunks {
            let (lo, hi) = chunk.split_at(8);
            let lo = u64::from_le_bytes(lo.try_into().unwrap_or_default());
            let hi = u64::from_le_bytes(hi.try_into().unwrap_or_default());
            self.state = fold(lo ^ self.state, hi ^ self.seed);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut tail = [0u8; 16];
            tail[..rest.len()].copy_from_slice(rest);
            let lo = u64::from_le_bytes(tail[..8].try_into().unwrap_or_default());
            let hi = u64::from_le_bytes(tail[8..].try_into().unwrap_or_default());
            self.state = fold(lo ^ self.state, hi ^ self.seed ^ rest.len() as u64);
        }
    }

    fn write_u128(&mut self, word: u128) {
        self.state = fold(
            (word as u64) ^ self.state,
            ((word >> 64) as u64) ^ self.seed,
        );
    }

    fn write_u8(&mut self, byte: u8) {
        self.state = fold(self.state ^ u64::from(byte), self.seed);
    }

    fn finish(&self) -> u64 {
        fold(self.state, self.seed ^ 0x9e37_79b9_7f4a_7c15)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differing_in_one_byte_hash_apart() {
        use std::hash::BuildHasher;
        let hasher = KeyHasher::default();
        let base = MessageKey::new(7, 7);
        let h = |k: &Key| hasher.hash_one(k);
        let mut seen = std::collections::HashSet::new();
        seen.insert(h(&Key::Envelope(base)));
        for byte in 0..16 {
            let mut bytes = base.to_bytes();
            bytes[byte] ^= 1;
            let key = MessageKey::from_bytes(bytes);
            assert!(seen.insert(h(&Key::Envelope(key))), "byte {byte}");
        }
    }
}
