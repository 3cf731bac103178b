//! Go's command-line spelling on top of clap: nsq's tools take `-topic=t` as well as
//! `--topic=t`, and booleans as `-gzip`, `-gzip=true` or `-gzip=false`.
//!
//! [`normalise`] rewrites the one-dash spelling of a known long flag to two dashes before clap
//! sees it; [`go_bool`] parses booleans as Go's `strconv.ParseBool` does.

use std::collections::HashMap;
use std::ffi::OsString;

/// Rewrites `-name` and `-name=value` to `--name` and `--name=value` when `name` is a long
/// flag of `command`, so that Go's spelling of nsq's flags works. Everything else is left
/// alone: short flags (`-n 5`), values (`--delimiter -x`), and whatever follows `--`.
///
/// ```
/// use clap::{CommandFactory, Parser};
///
/// #[derive(Parser)]
/// struct Args {
///     #[arg(long)]
///     topic: String,
///     #[arg(short = 'n')]
///     n: Option<u32>,
/// }
///
/// let argv = ["tool", "-topic=events", "-n", "3"];
/// let args = Args::parse_from(nsq_tools::args::normalise(argv, &Args::command()));
/// assert_eq!(args.topic, "events");
/// assert_eq!(args.n, Some(3));
/// ```
pub fn normalise<I, T>(args: I, command: &clap::Command) -> Vec<OsString>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut command = command.clone();
    command.build();
    // Long name -> whether the flag's value may be the next argument.
    let longs: HashMap<String, bool> = command
        .get_arguments()
        .flat_map(|arg| {
            let separate_value = arg.get_action().takes_values() && !arg.is_require_equals_set();
            arg.get_long_and_visible_aliases()
                .into_iter()
                .flatten()
                .map(move |long| (long.to_owned(), separate_value))
        })
        .collect();
    let mut out = Vec::new();
    let mut args = args.into_iter().map(Into::into);
    if let Some(program) = args.next() {
        out.push(program);
    }
    let mut value_next = false;
    let mut rest_verbatim = false;
    for arg in args {
        if rest_verbatim || value_next {
            value_next = false;
            out.push(arg);
            continue;
        }
        let Some(text) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            rest_verbatim = true;
            out.push(arg);
            continue;
        }
        let (dashes, body) = if let Some(body) = text.strip_prefix("--") {
            (2, body)
        } else if let Some(body) = text.strip_prefix('-') {
            (1, body)
        } else {
            out.push(arg);
            continue;
        };
        let (name, has_value) = match body.split_once('=') {
            Some((name, _)) => (name, true),
            None => (body, false),
        };
        match longs.get(name) {
            Some(&separate_value) => {
                value_next = separate_value && !has_value;
                if dashes == 1 {
                    out.push(OsString::from(format!("-{text}")));
                } else {
                    out.push(arg);
                }
            }
            None => out.push(arg),
        }
    }
    out
}

/// Parses a boolean as Go's `strconv.ParseBool`: `1`, `t`, `T`, `TRUE`, `true`, `True`, and
/// `0`, `f`, `F`, `FALSE`, `false`, `False`.
///
/// ```
/// assert_eq!(nsq_tools::args::go_bool("T"), Ok(true));
/// assert_eq!(nsq_tools::args::go_bool("False"), Ok(false));
/// assert!(nsq_tools::args::go_bool("yes").is_err());
/// ```
///
/// # Errors
///
/// A message naming the accepted spellings, for anything else.
pub fn go_bool(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "{value:?} is not a boolean (1, t, true, 0, f, false in Go's spellings)"
        )),
    }
}

/// Parses a Go duration for a flag (see [`crate::duration::parse`]).
///
/// ```
/// assert_eq!(nsq_tools::args::go_duration("2s"), Ok(std::time::Duration::from_secs(2)));
/// ```
///
/// # Errors
///
/// The parse error, as text for clap.
pub fn go_duration(value: &str) -> Result<std::time::Duration, String> {
    crate::duration::parse(value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser, Debug)]
    struct Args {
        #[arg(long)]
        topic: Vec<String>,
        #[arg(long, allow_hyphen_values = true)]
        delimiter: Option<String>,
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
              default_value = "false", value_parser = go_bool)]
        gzip: bool,
        #[arg(short = 'n', long = "n")]
        n: Option<u32>,
        rest: Vec<String>,
    }

    fn parse(argv: &[&str]) -> Args {
        let mut all = vec!["tool"];
        all.extend_from_slice(argv);
        Args::try_parse_from(normalise(all, &Args::command())).expect("parses")
    }

    #[test]
    fn one_dash_long_flags_work_in_every_spelling() {
        let args = parse(&["-topic=a", "-topic", "b", "--topic=c", "--topic", "d"]);
        assert_eq!(args.topic, ["a", "b", "c", "d"]);
    }

    #[test]
    fn a_value_that_looks_like_a_flag_is_left_alone() {
        let args = parse(&["-delimiter", "-topic", "-topic=x"]);
        assert_eq!(args.delimiter.as_deref(), Some("-topic"));
        assert_eq!(args.topic, ["x"]);
    }

    #[test]
    fn go_booleans() {
        assert!(parse(&["-gzip"]).gzip);
        assert!(parse(&["-gzip=true"]).gzip);
        assert!(!parse(&["-gzip=false"]).gzip);
        assert!(!parse(&[]).gzip);
        // A Go boolean flag never takes the next argument as its value.
        let args = parse(&["-gzip", "false"]);
        assert!(args.gzip);
        assert_eq!(args.rest, ["false"]);
    }

    #[test]
    fn short_and_one_letter_long_flags() {
        assert_eq!(parse(&["-n", "3"]).n, Some(3));
        assert_eq!(parse(&["-n=4"]).n, Some(4));
        assert_eq!(parse(&["--n=5"]).n, Some(5));
    }

    #[test]
    fn unknown_flags_and_everything_after_double_dash_pass_through() {
        let argv = normalise(["tool", "-bogus", "--", "-topic=z"], &Args::command());
        assert_eq!(argv, ["tool", "-bogus", "--", "-topic=z"]);
    }
}
