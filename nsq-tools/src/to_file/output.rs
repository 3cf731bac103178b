//! One topic's output file, as nsq's `FileLogger`: opened in the work dir under the name of
//! the moment, rotated by name, size or age, synced to disk on demand (a gzip member is
//! finished at each sync, so that what is synced is readable), and moved to the output dir
//! when closed, without overwriting anything there.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Local};
use flate2::write::GzEncoder;

use super::naming::{with_rev, FileNaming};

/// Where and how the files are written.
///
/// ```
/// use nsq_tools::to_file::output::FileOptions;
/// let opts = FileOptions {
///     output_dir: "/tmp/out".into(),
///     work_dir: "/tmp/out".into(),
///     gzip_level: None,
///     rotate_size: 0,
///     rotate_interval: None,
/// };
/// # let _ = opts;
/// ```
#[derive(Debug, Clone)]
pub struct FileOptions {
    /// `--output-dir`: where finished files go.
    pub output_dir: PathBuf,
    /// `--work-dir`: where files are written (the output dir unless given).
    pub work_dir: PathBuf,
    /// `--gzip` with `--gzip-level`; `None` writes plain text.
    pub gzip_level: Option<u32>,
    /// `--rotate-size`: rotate once a file grew beyond this many bytes (0: never).
    pub rotate_size: u64,
    /// `--rotate-interval`: rotate files this old.
    pub rotate_interval: Option<Duration>,
}

/// What a file is written through.
enum Sink {
    Plain(BufWriter<File>),
    Gzip(GzEncoder<BufWriter<File>>),
}

/// The open file: its name relative to the dirs, and the writer (taken out only while a sync
/// replaces a finished gzip member by a new one; missing after that failed).
struct Open {
    rel: PathBuf,
    sink: Option<Sink>,
}

/// One topic's file.
pub struct OutputFile {
    naming: FileNaming,
    opts: FileOptions,
    open: Option<Open>,
    /// The name (with `<REV>`) of the file open last; a new name resets the revision.
    filename: String,
    rev: u32,
    opened_at: Instant,
    /// Bytes in the file when opened plus bytes written since (before compression, as nsq).
    size: u64,
}

impl std::fmt::Debug for OutputFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputFile")
            .field("filename", &self.filename)
            .field("rev", &self.rev)
            .field("open", &self.open.as_ref().map(|o| &o.rel))
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl OutputFile {
    /// No file open yet: the first write opens one.
    ///
    /// ```
    /// use nsq_tools::to_file::naming::{FileNaming, NamingOptions};
    /// use nsq_tools::to_file::output::{FileOptions, OutputFile};
    /// let dir = std::env::temp_dir().join(format!("nsq-tools-doc-{}", std::process::id()));
    /// let naming = FileNaming::new(&NamingOptions {
    ///     filename_format: "<TOPIC><REV>.log".into(),
    ///     datetime_format: String::new(),
    ///     host_identifier: String::new(),
    ///     gzip: false,
    ///     rotating: false,
    /// }, "t", "h", 1)?;
    /// let opts = FileOptions { output_dir: dir.clone(), work_dir: dir.clone(), gzip_level: None, rotate_size: 0, rotate_interval: None };
    /// let mut file = OutputFile::new(naming, opts);
    /// file.write(b"hello", chrono::Local::now())?;
    /// file.close()?;
    /// assert_eq!(std::fs::read(dir.join("t.log"))?, b"hello\n");
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(naming: FileNaming, opts: FileOptions) -> Self {
        Self {
            naming,
            opts,
            open: None,
            filename: String::new(),
            rev: 0,
            opened_at: Instant::now(),
            size: 0,
        }
    }

    /// Whether a file is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Whether the next write goes to another file: none is open, the name changed with the
    /// time, the file is older than the rotate interval or larger than the rotate size.
    pub fn needs_rotation(&self, now: DateTime<Local>) -> bool {
        let Some(open) = &self.open else { return true };
        let filename = self.naming.filename(now);
        if filename != self.filename {
            tracing::info!("new filename {filename}, rotating...");
            return true;
        }
        if let Some(interval) = self.opts.rotate_interval {
            let age = self.opened_at.elapsed();
            if age > interval {
                tracing::info!("{age:?} since last open, rotating...");
                return true;
            }
        }
        if self.opts.rotate_size > 0 && self.size > self.opts.rotate_size {
            tracing::info!(
                "{} currently {} bytes (> {}), rotating...",
                open.rel.display(),
                self.size,
                self.opts.rotate_size
            );
            return true;
        }
        false
    }

    /// Writes one message, its body and a newline, opening a file first when none is open
    /// (rotating when due is the caller's: see [`needs_rotation`](Self::needs_rotation)).
    ///
    /// # Errors
    ///
    /// When a file cannot be opened or written.
    pub fn write(&mut self, body: &[u8], now: DateTime<Local>) -> io::Result<()> {
        if self.open.is_none() {
            self.rotate(now)?;
        }
        let Some(sink) = self.open.as_mut().and_then(|o| o.sink.as_mut()) else {
            return Err(io::Error::other("no output file open"));
        };
        match sink {
            Sink::Plain(w) => {
                w.write_all(body)?;
                w.write_all(b"\n")?;
            }
            Sink::Gzip(w) => {
                w.write_all(body)?;
                w.write_all(b"\n")?;
            }
        }
        self.size += body.len() as u64 + 1;
        Ok(())
    }

    /// Makes everything written so far durable: flushed and fsynced (a gzip file gets its
    /// member finished first, and a new member is begun for what follows).
    ///
    /// # Errors
    ///
    /// When the file cannot be written or synced.
    pub fn sync(&mut self) -> io::Result<()> {
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        match open.sink.take() {
            None => Err(io::Error::other("the output file failed before")),
            Some(Sink::Plain(mut w)) => {
                let synced = w.flush().and_then(|()| w.get_ref().sync_all());
                open.sink = Some(Sink::Plain(w));
                synced
            }
            Some(Sink::Gzip(w)) => {
                let mut w = w.finish()?;
                w.flush()?;
                w.get_ref().sync_all()?;
                let level = self.opts.gzip_level.unwrap_or(6);
                open.sink = Some(Sink::Gzip(GzEncoder::new(
                    w,
                    flate2::Compression::new(level),
                )));
                Ok(())
            }
        }
    }

    /// Closes the file (synced) and moves it from the work dir to the output dir, bumping its
    /// revision when the name is taken there. Nothing happens when no file is open.
    ///
    /// # Errors
    ///
    /// When the file cannot be finished, synced or moved.
    pub fn close(&mut self) -> io::Result<()> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let mut w = match open.sink {
            Some(Sink::Plain(w)) => w,
            Some(Sink::Gzip(w)) => w.finish()?,
            None => return Err(io::Error::other("the output file failed before")),
        };
        w.flush()?;
        w.get_ref().sync_all()?;
        drop(w);
        if self.opts.work_dir == self.opts.output_dir {
            return Ok(());
        }
        let src = self.opts.work_dir.join(&open.rel);
        let dst = self.opts.output_dir.join(&open.rel);
        tracing::info!(
            "moving finished file {} to {}",
            src.display(),
            dst.display()
        );
        match exclusive_rename(&src, &dst) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        // Taken meanwhile: the next free revision.
        for rev in self.rev + 1.. {
            tracing::warn!("destination file already exists: {}", dst.display());
            let dst = self.opts.output_dir.join(with_rev(&self.filename, rev));
            match exclusive_rename(&src, &dst) {
                Ok(()) => {
                    tracing::info!(
                        "renamed finished file {} to {} to avoid overwrite",
                        src.display(),
                        dst.display()
                    );
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Closes the current file and opens the next (nsq's `updateFile`): the revision restarts
    /// at 0 for a new name and goes up otherwise, skipping names taken in the work dir or the
    /// output dir, and files already larger than the rotate size.
    ///
    /// # Errors
    ///
    /// When the old file cannot be closed or no new one can be opened.
    pub fn rotate(&mut self, now: DateTime<Local>) -> io::Result<()> {
        self.close()?;
        let filename = self.naming.filename(now);
        if filename == self.filename {
            self.rev += 1;
        } else {
            self.rev = 0;
        }
        self.filename = filename;
        self.opened_at = Instant::now();
        let moving = self.opts.work_dir != self.opts.output_dir;
        let exclusive = self.opts.gzip_level.is_some() || self.opts.rotate_interval.is_some();
        loop {
            let rel = PathBuf::from(with_rev(&self.filename, self.rev));
            let path = self.opts.work_dir.join(&rel);
            make_parent(&path)?;
            if moving {
                let out = self.opts.output_dir.join(&rel);
                make_parent(&out)?;
                if out.try_exists()? {
                    tracing::warn!("output file already exists: {}", out.display());
                    self.rev += 1;
                    continue;
                }
            }
            let mut options = OpenOptions::new();
            if exclusive {
                options.write(true).create_new(true);
            } else {
                options.append(true).create(true);
            }
            let file = match options.open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    tracing::warn!("working file already exists: {}", path.display());
                    self.rev += 1;
                    continue;
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("open {}: {e}", path.display()),
                    ))
                }
            };
            tracing::info!("opening {}", path.display());
            self.size = file.metadata()?.len();
            if self.opts.rotate_size > 0 && self.size > self.opts.rotate_size {
                tracing::info!(
                    "{} currently {} bytes (> {}), rotating...",
                    path.display(),
                    self.size,
                    self.opts.rotate_size
                );
                self.rev += 1;
                continue;
            }
            let writer = BufWriter::with_capacity(64 * 1024, file);
            let sink = match self.opts.gzip_level {
                Some(level) => Sink::Gzip(GzEncoder::new(writer, flate2::Compression::new(level))),
                None => Sink::Plain(writer),
            };
            self.open = Some(Open {
                rel,
                sink: Some(sink),
            });
            return Ok(());
        }
    }
}

/// Creates the directories above `path` (mode 0770 before the umask, as nsq).
fn make_parent(path: &Path) -> io::Result<()> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o770);
    builder.create(dir)
}

/// Moves `src` to `dst` unless `dst` exists (a hard link, then the old name removed), as nsq.
fn exclusive_rename(src: &Path, dst: &Path) -> io::Result<()> {
    std::fs::hard_link(src, dst)?;
    std::fs::remove_file(src)
}
