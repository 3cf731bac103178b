//! Validated topic and channel names.
//!
//! nsqd accepts a name when it matches `^[.a-zA-Z0-9_-]+(#ephemeral)?$` and is
//! 1 to 64 bytes long, the `#ephemeral` suffix included
//! (`internal/protocol/names.go`). Topics and channels share the rule.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use bytes::Bytes;

/// The longest name nsqd accepts, in bytes, including any `#ephemeral` suffix.
pub const MAX_NAME_LEN: usize = 64;

/// The suffix that makes a topic or channel ephemeral (memory only, deleted
/// when its last consumer leaves).
pub const EPHEMERAL_SUFFIX: &str = "#ephemeral";

/// Why a topic or channel name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("{kind} name is empty")]
    Empty {
        /// `"topic"` or `"channel"`.
        kind: &'static str,
    },
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("{kind} name is {len} bytes long, the limit is {MAX_NAME_LEN}")]
    TooLong {
        /// `"topic"` or `"channel"`.
        kind: &'static str,
        /// The length that was given.
        len: usize,
    },
    /// The name holds a byte outside `[.a-zA-Z0-9_-]` (before an optional `#ephemeral`).
    #[error("{kind} name {name:?} may only hold [.a-zA-Z0-9_-] and an optional #ephemeral suffix")]
    InvalidCharacter {
        /// `"topic"` or `"channel"`.
        kind: &'static str,
        /// The name as given (lossily decoded when it was not UTF-8).
        name: String,
    },
}

/// Whether nsqd would accept `name` as a topic or channel name.
pub(crate) fn is_valid(name: &[u8]) -> bool {
    validate("name", name).is_ok()
}

fn validate(kind: &'static str, name: &[u8]) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            kind,
            len: name.len(),
        });
    }
    let stem = name
        .strip_suffix(EPHEMERAL_SUFFIX.as_bytes())
        .unwrap_or(name);
    let valid_byte = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if stem.is_empty() || !stem.iter().all(valid_byte) {
        return Err(NameError::InvalidCharacter {
            kind,
            name: String::from_utf8_lossy(name).into_owned(),
        });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Bytes);

        impl $name {
            /// Validates `name` against nsqd's rule.
            ///
            /// # Errors
            ///
            /// [`NameError`] when the name is empty, longer than 64 bytes, or holds a
            /// character outside `[.a-zA-Z0-9_-]` before an optional `#ephemeral`.
            pub fn new(name: impl AsRef<str>) -> Result<Self, NameError> {
                let name = name.as_ref();
                validate($kind, name.as_bytes())?;
                Ok(Self(Bytes::copy_from_slice(name.as_bytes())))
            }

            /// Validates raw bytes taken from the wire, keeping them without a copy.
            ///
            /// # Errors
            ///
            /// As [`Self::new`].
            pub fn from_bytes(name: Bytes) -> Result<Self, NameError> {
                validate($kind, &name)?;
                Ok(Self(name))
            }

            /// Wraps wire bytes the caller has already checked with [`is_valid`].
            pub(crate) fn from_validated(name: Bytes) -> Self {
                debug_assert!(is_valid(&name));
                Self(name)
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                // Validation admits only ASCII.
                std::str::from_utf8(&self.0).unwrap_or_default()
            }

            /// The name's bytes, as written on the wire.
            pub fn as_bytes(&self) -> &[u8] {
                &self.0
            }

            /// Whether the name ends in `#ephemeral`.
            pub fn is_ephemeral(&self) -> bool {
                self.0.ends_with(EPHEMERAL_SUFFIX.as_bytes())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.as_str()).finish()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                self.as_str()
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                self.as_str()
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = NameError;
            fn try_from(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_type!(
    /// A validated topic name.
    ///
    /// ```
    /// use nsq_proto::Topic;
    ///
    /// let topic = Topic::new("clicks")?;
    /// assert_eq!(topic.as_str(), "clicks");
    /// assert!(Topic::new("orders#ephemeral")?.is_ephemeral());
    /// assert!(Topic::new("bad name").is_err());
    /// # Ok::<(), nsq_proto::NameError>(())
    /// ```
    Topic,
    "topic"
);

name_type!(
    /// A validated channel name.
    ///
    /// ```
    /// use nsq_proto::Channel;
    ///
    /// let channel = Channel::new("archive")?;
    /// assert_eq!(channel.to_string(), "archive");
    /// assert!(Channel::new("x".repeat(65)).is_err());
    /// # Ok::<(), nsq_proto::NameError>(())
    /// ```
    Channel,
    "channel"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_nsqd_charset_and_ephemeral_suffix() {
        for ok in [
            "a",
            "A.b_c-9",
            "t#ephemeral",
            &"x".repeat(64),
            &format!("{}#ephemeral", "y".repeat(54)),
        ] {
            assert!(Topic::new(ok).is_ok(), "{ok:?} should be valid");
            assert!(Channel::new(ok).is_ok(), "{ok:?} should be valid");
        }
    }

    #[test]
    fn refuses_what_nsqd_refuses() {
        assert_eq!(Topic::new(""), Err(NameError::Empty { kind: "topic" }));
        assert_eq!(
            Channel::new("z".repeat(65)),
            Err(NameError::TooLong {
                kind: "channel",
                len: 65
            })
        );
        // The 64-byte limit includes the suffix.
        assert!(Topic::new(format!("{}#ephemeral", "y".repeat(55))).is_err());
        for bad in [
            "has space",
            "#ephemeral",
            "a#ephemeral#ephemeral",
            "a#b",
            "ümlaut",
            "a\n",
            "a/b",
            "a:b",
        ] {
            assert!(
                matches!(Topic::new(bad), Err(NameError::InvalidCharacter { .. })),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn from_bytes_keeps_wire_bytes() {
        let t = Topic::from_bytes(Bytes::from_static(b"events")).unwrap();
        assert_eq!(t.as_bytes(), b"events");
        assert!(Topic::from_bytes(Bytes::from_static(b"\xff")).is_err());
    }

    #[test]
    fn serde_validates() {
        let t: Topic = serde_json::from_str("\"ok\"").unwrap();
        assert_eq!(&*t, "ok");
        assert!(serde_json::from_str::<Topic>("\"not ok\"").is_err());
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"ok\"");
    }
}
