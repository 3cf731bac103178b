//! `nsq_to_file`'s file names, as nsq's: `--filename-format` with `<TOPIC>`, `<HOST>`,
//! `<PID>`, `<DATETIME>` (`--datetime-format`, strftime-like) and `<REV>` (`-000000`,
//! `-000001`, ... when a name is taken), `.gz` added under `--gzip`.

use chrono::{DateTime, Local};

/// What the name of a topic's files depends on.
///
/// ```
/// use nsq_tools::to_file::naming::{FileNaming, NamingOptions};
/// let opts = NamingOptions {
///     filename_format: "<TOPIC>.<HOST><REV>.<DATETIME>.log".into(),
///     datetime_format: "%Y-%m-%d_%H".into(),
///     host_identifier: "box".into(),
///     gzip: true,
///     rotating: true,
/// };
/// let naming = FileNaming::new(&opts, "events", "box.example.com", 42)?;
/// assert_eq!(naming.template(), "events.box<REV>.<DATETIME>.log.gz");
/// # Ok::<(), nsq_tools::to_file::naming::NamingError>(())
/// ```
#[derive(Debug, Clone)]
pub struct NamingOptions {
    /// `--filename-format`.
    pub filename_format: String,
    /// `--datetime-format`.
    pub datetime_format: String,
    /// `--host-identifier` (empty: the short host name); `<SHORT_HOST>` and `<HOSTNAME>` in it
    /// are replaced.
    pub host_identifier: String,
    /// `--gzip`.
    pub gzip: bool,
    /// Whether files may be rotated or moved, so that names need `<REV>`: gzip, a rotate size
    /// or interval, or a work dir other than the output dir.
    pub rotating: bool,
}

/// A `--filename-format` that lacks `<REV>` where it is needed.
///
/// ```
/// # fn show(e: nsq_tools::to_file::naming::NamingError) { eprintln!("{e}"); }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("missing <REV> in --filename-format when gzip, rotation, or work dir enabled")]
pub struct NamingError;

/// The names of one topic's files.
#[derive(Debug, Clone)]
pub struct FileNaming {
    template: String,
    datetime_format: String,
}

impl FileNaming {
    /// The naming for `topic` on host `hostname` in process `pid` (nsq's
    /// `computeFilenameFormat`).
    ///
    /// # Errors
    ///
    /// [`NamingError`] when the files rotate or move and the format has no `<REV>`.
    pub fn new(
        opts: &NamingOptions,
        topic: &str,
        hostname: &str,
        pid: u32,
    ) -> Result<Self, NamingError> {
        let short_host = hostname.split('.').next().unwrap_or(hostname);
        let identifier = if opts.host_identifier.is_empty() {
            short_host.to_owned()
        } else {
            opts.host_identifier
                .replace("<SHORT_HOST>", short_host)
                .replace("<HOSTNAME>", hostname)
        };
        let mut template = opts.filename_format.clone();
        if opts.rotating {
            if !template.contains("<REV>") {
                return Err(NamingError);
            }
        } else {
            template = template.replace("<REV>", "");
        }
        template = template
            .replace("<TOPIC>", topic)
            .replace("<HOST>", &identifier)
            .replace("<PID>", &pid.to_string());
        if opts.gzip && !template.ends_with(".gz") {
            template.push_str(".gz");
        }
        Ok(Self {
            template,
            datetime_format: opts.datetime_format.clone(),
        })
    }

    /// The format with everything but `<DATETIME>` and `<REV>` filled in.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// The name at `now`, `<REV>` still in it.
    ///
    /// ```
    /// use chrono::TimeZone;
    /// use nsq_tools::to_file::naming::{FileNaming, NamingOptions};
    /// let opts = NamingOptions {
    ///     filename_format: "<TOPIC>.<DATETIME><REV>.log".into(),
    ///     datetime_format: "%Y%m%d".into(),
    ///     host_identifier: String::new(),
    ///     gzip: false,
    ///     rotating: true,
    /// };
    /// let naming = FileNaming::new(&opts, "t", "h", 1)?;
    /// let now = chrono::Local.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).unwrap();
    /// assert_eq!(naming.filename(now), "t.20240506<REV>.log");
    /// # Ok::<(), nsq_tools::to_file::naming::NamingError>(())
    /// ```
    pub fn filename(&self, now: DateTime<Local>) -> String {
        self.template
            .replace("<DATETIME>", &strftime(&self.datetime_format, now))
    }
}

/// `name` with `<REV>` as revision `rev` (`-000003`), as nsq numbers its files.
///
/// ```
/// assert_eq!(nsq_tools::to_file::naming::with_rev("t<REV>.log", 3), "t-000003.log");
/// assert_eq!(nsq_tools::to_file::naming::with_rev("t.log", 3), "t.log");
/// ```
pub fn with_rev(name: &str, rev: u32) -> String {
    name.replace("<REV>", &format!("-{rev:06}"))
}

/// nsq's strftime: `%Y %y %m %d %H %I %M %S %p %B %b %A %a %Z %z %%`; any other `%x` stays
/// as it is, and so does all other text.
///
/// Two differences from nsq's, which goes through Go's layout strings: text outside the
/// conversions is kept literally (nsq's turns digits such as `1` or `5` into date fields),
/// and `%Z` is `UTC` or the numeric offset (nsq's prints the zone's abbreviation, `CET`).
///
/// ```
/// use chrono::TimeZone;
/// let t = chrono::Local.with_ymd_and_hms(2024, 1, 2, 15, 4, 5).unwrap();
/// assert_eq!(nsq_tools::to_file::naming::strftime("%Y-%m-%d_%H", t), "2024-01-02_15");
/// assert_eq!(nsq_tools::to_file::naming::strftime("%I%p %q 100%%", t), "03PM %q 100%");
/// ```
pub fn strftime(format: &str, t: DateTime<Local>) -> String {
    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(&spec) = chars.peek() else {
            out.push('%');
            break;
        };
        let item = match spec {
            'Y' | 'y' | 'm' | 'd' | 'H' | 'I' | 'M' | 'S' | 'p' | 'B' | 'b' | 'A' | 'a' | 'z' => {
                Some(t.format(&format!("%{spec}")).to_string())
            }
            'Z' => Some(if t.offset().local_minus_utc() == 0 {
                "UTC".to_owned()
            } else {
                t.format("%z").to_string()
            }),
            '%' => Some("%".to_owned()),
            _ => None,
        };
        match item {
            Some(text) => {
                out.push_str(&text);
                chars.next();
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn opts(format: &str, gzip: bool, rotating: bool) -> NamingOptions {
        NamingOptions {
            filename_format: format.into(),
            datetime_format: "%Y-%m-%d_%H".into(),
            host_identifier: String::new(),
            gzip,
            rotating,
        }
    }

    #[test]
    fn nsq_default_format_without_rotation_drops_rev() {
        let n = FileNaming::new(
            &opts("<TOPIC>.<HOST><REV>.<DATETIME>.log", false, false),
            "t",
            "web-1.example.com",
            9,
        )
        .unwrap();
        let now = Local.with_ymd_and_hms(2024, 3, 4, 5, 0, 0).unwrap();
        assert_eq!(n.filename(now), "t.web-1.2024-03-04_05.log");
    }

    #[test]
    fn rev_is_required_when_files_rotate() {
        let err = FileNaming::new(&opts("<TOPIC>.log", true, true), "t", "h", 1).unwrap_err();
        assert_eq!(err, NamingError);
    }

    #[test]
    fn host_identifier_tokens_and_pid() {
        let mut o = opts("<HOST>.<PID><REV>", false, true);
        o.host_identifier = "<SHORT_HOST>+<HOSTNAME>".into();
        let n = FileNaming::new(&o, "t", "a.b.c", 77).unwrap();
        assert_eq!(n.template(), "a+a.b.c.77<REV>");
    }

    #[test]
    fn gzip_adds_gz_once() {
        let n = FileNaming::new(&opts("<TOPIC><REV>.log.gz", true, true), "t", "h", 1).unwrap();
        assert_eq!(n.template(), "t<REV>.log.gz");
    }

    #[test]
    fn strftime_names_and_twelve_hour_clock() {
        let t = Local.with_ymd_and_hms(2023, 12, 31, 0, 7, 9).unwrap();
        assert_eq!(strftime("%A %a %B %b %y", t), "Sunday Sun December Dec 23");
        assert_eq!(strftime("%I:%M:%S %p", t), "12:07:09 AM");
        assert_eq!(strftime("trailing %", t), "trailing %");
    }
}
