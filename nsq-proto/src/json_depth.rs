//! The nesting bound of Go's `encoding/json`, which nsqd and nsqlookupd decode IDENTIFY with:
//! a document nested more than [`GO_MAX_DEPTH`] levels is refused before anything is decoded,
//! even when the deep part sits in a field the decoder would ignore. `serde_json` skips an
//! unknown field without such a bound, so the broker checks the depth first, to refuse what
//! nsqd refuses.

/// `encoding/json`'s `maxNestingDepth`: objects and arrays nested this deep still decode.
///
/// ```
/// use nsq_proto::json_depth::{nested_deeper_than, GO_MAX_DEPTH};
/// let ok = format!("{}{}", "[".repeat(GO_MAX_DEPTH), "]".repeat(GO_MAX_DEPTH));
/// assert!(!nested_deeper_than(ok.as_bytes(), GO_MAX_DEPTH));
/// ```
pub const GO_MAX_DEPTH: usize = 10_000;

/// Whether `json` opens more than `max` objects or arrays inside each other. Brackets inside
/// strings do not count; the scan stops at the first level beyond `max`, so a hostile
/// document costs one pass over the bytes at most, and no allocation.
///
/// ```
/// use nsq_proto::json_depth::nested_deeper_than;
/// assert!(!nested_deeper_than(br#"{"a":[[1]],"s":"[[[["}"#, 3));
/// assert!(nested_deeper_than(br#"{"a":[[[1]]]}"#, 3));
/// ```
pub fn nested_deeper_than(json: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> Vec<u8> {
        let inner = levels - 1;
        format!("{{\"x\":{}{}}}", "[".repeat(inner), "]".repeat(inner)).into_bytes()
    }

    #[test]
    fn go_s_bound_is_inclusive() {
        assert!(!nested_deeper_than(&nested(GO_MAX_DEPTH), GO_MAX_DEPTH));
        assert!(nested_deeper_than(&nested(GO_MAX_DEPTH + 1), GO_MAX_DEPTH));
    }

    #[test]
    fn brackets_in_strings_and_escapes_do_not_count() {
        assert!(!nested_deeper_than(br#"{"a":"[[[\"[[[","b":"\\"}"#, 1));
        assert!(nested_deeper_than(br#"{"a":"\\",  "b":[1]}"#, 1));
    }

    #[test]
    fn a_hundred_thousand_levels_are_refused_without_recursion() {
        assert!(nested_deeper_than(&nested(100_000), GO_MAX_DEPTH));
    }
}
