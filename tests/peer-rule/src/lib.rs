//! The workspace's one rule for tests that need an external peer (a real `nsqd`, `nsqlookupd`,
//! go-nsq, pynsq, nsqjs, a Python module, ...).
//!
//! * On a developer machine without the peer, the test is **skipped**: it prints why on stderr
//!   and returns early, so a plain `cargo test` passes with nothing but Rust installed.
//! * Under CI a missing peer **fails** the test, so a broken install step cannot turn the
//!   interop suite green by skipping it.
//!
//! "Under CI" has one meaning everywhere: the `CI` environment variable is set to anything other
//! than the empty string, `0` or `false` (in any case). So `CI=true` (GitHub Actions, GitLab,
//! `.ci/run`) and `CI=1` (many other systems) both count, and `CI=`, `CI=0` and `CI=false` do
//! not.
//!
//! Every suite of the workspace uses this crate (the harness crate `nsq-tests` re-exports it);
//! none reads `CI` itself.
//!
//! ```
//! // In a test that needs a real nsqd:
//! let Some(nsqd) = nsq_peer_rule::peer_or_skip("NSQD_BIN") else {
//!     return; // skipped (only possible outside CI)
//! };
//! assert!(!nsqd.as_os_str().is_empty());
//! ```

use std::ffi::OsStr;
use std::path::PathBuf;

/// Whether this process runs under CI, by the rule in the [crate docs](crate).
///
/// ```
/// if nsq_peer_rule::in_ci() {
///     println!("every peer must be installed");
/// }
/// ```
pub fn in_ci() -> bool {
    ci_value_means_ci(std::env::var_os("CI").as_deref())
}

/// The rule itself, on the value of `CI` (`None` when unset).
fn ci_value_means_ci(value: Option<&OsStr>) -> bool {
    let Some(value) = value else { return false };
    let value = value.to_string_lossy();
    let value = value.trim();
    !(value.is_empty() || value == "0" || value.eq_ignore_ascii_case("false"))
}

/// The path an environment variable names for a peer (a binary, an interpreter, a module
/// folder), or `None` to skip the test.
///
/// An unset or empty variable means the peer is missing: outside CI this prints a line saying
/// which variable to set and returns `None`; under CI it panics.
///
/// ```
/// match nsq_peer_rule::peer_or_skip("NSQLOOKUPD_BIN") {
///     Some(bin) => println!("testing against {}", bin.display()),
///     None => println!("skipped"),
/// }
/// ```
///
/// # Panics
///
/// When the variable is missing and [`in_ci`] holds.
pub fn peer_or_skip(var: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => {
            skip_or_fail(&format!(
                "{var} is not set (run scripts/install-peers.sh and source the env.sh it writes)"
            ));
            None
        }
    }
}

/// Applies the rule to a peer found some other way: returns `true` when `missing` is `None`
/// (the peer is there), and otherwise skips (prints `missing`, returns `false`) or, under CI,
/// fails.
///
/// ```
/// let python_works = std::process::Command::new("python3")
///     .arg("--version")
///     .output()
///     .is_ok_and(|o| o.status.success());
/// let missing = (!python_works).then(|| "python3 does not run".to_string());
/// # let missing: Option<String> = None;
/// if !nsq_peer_rule::present_or_skip(missing) {
///     return;
/// }
/// ```
///
/// # Panics
///
/// When `missing` is `Some` and [`in_ci`] holds.
pub fn present_or_skip(missing: Option<String>) -> bool {
    match missing {
        None => true,
        Some(why) => {
            skip_or_fail(&why);
            false
        }
    }
}

fn skip_or_fail(why: &str) {
    if in_ci() {
        panic!("a test peer is missing: {why}; CI is set, so this test fails instead of skipping");
    }
    eprintln!("skipping: {why} (with CI set this would fail)");
}

#[cfg(test)]
mod tests {
    use super::ci_value_means_ci;
    use std::ffi::OsStr;

    #[test]
    fn ci_is_any_value_but_empty_zero_or_false() {
        for yes in ["true", "1", "yes", "TRUE", "gitlab"] {
            assert!(ci_value_means_ci(Some(OsStr::new(yes))), "CI={yes}");
        }
        for no in ["", " ", "0", "false", "False", "FALSE"] {
            assert!(!ci_value_means_ci(Some(OsStr::new(no))), "CI={no:?}");
        }
        assert!(!ci_value_means_ci(None), "CI unset");
    }
}
