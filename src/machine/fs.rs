//! Host file operations beneath a machine root that never follow a symbolic link.
//!
//! Path text alone cannot contain a machine: a directory symlink planted inside the root
//! (`CertLog` pointing at `/etc`) would take every operation through it outside. So every
//! host file operation on a machine's disk resolves its path **beneath the root, one
//! directory file descriptor at a time, without following any link**:
//!
//! * [`Resolver::Openat2`]: `openat2(root, path, O_NOFOLLOW, RESOLVE_BENEATH |
//!   RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` resolves the directory in one call
//!   (Linux 5.6 and later);
//! * [`Resolver::Walk`]: where the kernel lacks `openat2` (`ENOSYS`, or a seccomp filter's
//!   `EPERM`), each component is opened with `openat(dirfd, name, O_NOFOLLOW |
//!   O_DIRECTORY)` from the root down. Both give the same answers (the tests run both).
//!
//! The last component is then opened, created, renamed, removed or examined relative to
//! that directory's descriptor, again with `O_NOFOLLOW` / `AT_SYMLINK_NOFOLLOW`.
//!
//! A symbolic link met anywhere beneath the root (a directory, or the file itself) is
//! refused with `E_ACCESSDENIED` (0x80070005), as a `..` that climbs out of the root is:
//! the message names the link and its target. Nothing is created, read or written
//! through it. The root directory itself is the configuration's choice and is trusted
//! (it may be reached through links, as `/tmp` often is).
//!
//! Paths are [`Rel`]: the host components of a [`WinPath`] (drive folder, then the
//! components folded to lower case), or of a fixed emulator path such as the registry.
//!
//! A [`Dir`] is a directory resolved this way and held open: the CA keeps the files of
//! one operation (a log roll, a checkpoint, a recovery) relative to its descriptor, so
//! that a link planted after the directory was resolved is never seen, and a run of
//! operations costs one resolution. The entries are opened with `O_NOFOLLOW` (a link is
//! `ELOOP`, reported as the refusal) and examined with `AT_SYMLINK_NOFOLLOW`; renames and
//! removals never follow a link either. So the refusal is made by the operation itself:
//! no check runs before it that a link planted in between could slip past.

use super::WinPath;
use crate::core::{Error, PathRefusal, Result};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// How directories beneath a root are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    /// One `openat2` call with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`.
    Openat2,
    /// `openat` with `O_NOFOLLOW | O_DIRECTORY`, one component at a time.
    Walk,
}

/// 0: automatic (openat2 until the kernel refuses it), 1: walk forced, 2: openat2 missing.
static RESOLVER: AtomicU8 = AtomicU8::new(0);

/// Chooses the resolver for the whole process: `None` (the default) uses `openat2` where
/// the kernel has it; `Some(Resolver::Walk)` forces the component walk (for tests of the
/// fallback). Both refuse the same paths.
pub fn set_resolver(r: Option<Resolver>) {
    RESOLVER.store(
        match r {
            None | Some(Resolver::Openat2) => 0,
            Some(Resolver::Walk) => 1,
        },
        Ordering::Relaxed,
    );
}

/// The resolver in use now.
pub fn resolver() -> Resolver {
    match RESOLVER.load(Ordering::Relaxed) {
        0 => Resolver::Openat2,
        _ => Resolver::Walk,
    }
}

/// A path beneath a machine root: host components, and the name shown in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rel {
    parts: Vec<String>,
    shown: String,
    /// Names of a Windows path are folded to lower case on the host.
    fold: bool,
}

impl From<&WinPath> for Rel {
    fn from(p: &WinPath) -> Rel {
        Rel {
            parts: p.host_parts(),
            shown: p.local(),
            fold: true,
        }
    }
}

impl From<WinPath> for Rel {
    fn from(p: WinPath) -> Rel {
        Rel::from(&p)
    }
}

impl From<&Rel> for Rel {
    fn from(p: &Rel) -> Rel {
        p.clone()
    }
}

impl Rel {
    /// A fixed path of the emulator under the root (`registry/HKLM/...`), components
    /// separated by `/`. Empty, `.` and `..` components are refused.
    pub fn host(path: &str) -> Result<Rel> {
        let parts: Vec<String> = path.split('/').map(str::to_string).collect();
        if let Some(bad) = parts
            .iter()
            .find(|c| c.is_empty() || *c == "." || *c == ".." || c.contains('\0'))
        {
            return Err(Error::Path {
                kind: PathRefusal::Malformed,
                path: path.to_string(),
                why: format!("component {bad:?} is not a name"),
            });
        }
        Ok(Rel {
            shown: path.to_string(),
            parts,
            fold: false,
        })
    }

    /// The entry `name` of this directory (a single component; folded to lower case on
    /// the host if this is a Windows path).
    pub fn join(&self, name: &str) -> Result<Rel> {
        let host = host_name(name, self.fold, &self.shown)?;
        let sep = if self.fold { '\\' } else { '/' };
        let mut shown = self.shown.clone();
        if !shown.ends_with(sep) {
            shown.push(sep);
        }
        shown.push_str(name);
        let mut parts = self.parts.clone();
        parts.push(host);
        Ok(Rel {
            parts,
            shown,
            fold: self.fold,
        })
    }

    /// The host components.
    pub fn parts(&self) -> &[String] {
        &self.parts
    }

    /// The path as messages show it (the Windows path, or the emulator's own path).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    fn split_last(&self) -> Result<(&[String], &str)> {
        match self.parts.split_last() {
            Some((name, dir)) => Ok((dir, name)),
            None => Err(Error::Path {
                kind: PathRefusal::Malformed,
                path: self.shown.clone(),
                why: "names the drive root, not a file".into(),
            }),
        }
    }
}

/// What a directory entry is (not followed: a link is a link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed).
    Symlink,
    /// Anything else (socket, device, fifo).
    Other,
}

impl Kind {
    fn of(t: FileType) -> Kind {
        match t {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Other,
        }
    }
}

/// One entry of [`Beneath::read_dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The host file name.
    pub name: String,
    /// What it is.
    pub kind: Kind,
}

/// What [`Beneath::metadata`] tells about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Length in bytes.
    pub len: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
    /// Inode number.
    pub ino: u64,
    /// What it is.
    pub kind: Kind,
}

/// The file operations beneath one machine root (`Machine::fs`).
#[derive(Debug, Clone, Copy)]
pub struct Beneath<'a> {
    root: &'a Path,
    /// The root held open by its owner ([`Beneath::with_root_fd`]); without it each operation
    /// opens the root's path.
    root_fd: Option<&'a OwnedFd>,
}

/// A machine root, opened (a link to it is followed: the root is trusted).
pub(crate) fn open_root(root: &Path) -> Result<OwnedFd> {
    rfs::open(
        root,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        Error::io(
            format!("opening machine root {}", root.display()),
            errno_io(e),
        )
    })
}

fn errno_io(e: Errno) -> std::io::Error {
    std::io::Error::from(e)
}

const DIR_FLAGS: OFlags = OFlags::DIRECTORY
    .union(OFlags::RDONLY)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOFOLLOW);

/// The host name of the single component `name` (folded to lower case for a Windows
/// path): empty, `.`, `..` and names holding a separator or NUL are refused.
fn host_name(name: &str, fold: bool, shown: &str) -> Result<String> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\\')
        || name.contains('\0')
    {
        return Err(Error::Path {
            kind: PathRefusal::Malformed,
            path: format!("{shown}{name}"),
            why: format!("{name:?} is not a file name"),
        });
    }
    Ok(if fold {
        name.to_lowercase()
    } else {
        name.to_string()
    })
}

/// The refusal of the link `name` in the directory `dir` (whose host path is `host`);
/// `shown` is the path as given.
fn link_refusal(dir: &OwnedFd, host: &Path, name: &str, shown: &str) -> Error {
    let target = rfs::readlinkat(dir, name, Vec::new())
        .map(|t| t.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "?".into());
    Error::Path {
        kind: PathRefusal::Symlink,
        path: shown.to_string(),
        why: format!(
            "{} is a symbolic link (to {target}); the emulator never follows a link beneath a machine root",
            host.join(name).display()
        ),
    }
}

fn meta_of(st: &rfs::Stat) -> Meta {
    Meta {
        len: st.st_size as u64,
        mtime_ns: st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128,
        ino: st.st_ino,
        kind: Kind::of(FileType::from_raw_mode(st.st_mode)),
    }
}

/// What the open file `f` is (one `fstat`: no path is resolved); `path` names it in the
/// error.
pub fn file_metadata(f: impl std::os::fd::AsFd, path: &Path) -> Result<Meta> {
    rfs::fstat(f)
        .map(|st| meta_of(&st))
        .map_err(|e| Error::io(format!("stat {}", path.display()), errno_io(e)))
}

/// How many times a walk opens a component again when a rename changed it between the
/// open and the look at what it is (a directory when looked at, not one when opened).
const RACE_RETRIES: u32 = 16;

/// A directory beneath a machine root, resolved without following a link and held open
/// by its descriptor ([`Beneath::open_dir`]). Its entries are named by a single
/// component each (folded to lower case if the directory is a Windows path's); nothing
/// done through it follows a link: a link met as an entry is refused with
/// `E_ACCESSDENIED`, as [`Beneath`] refuses one met on the way. Clones share the
/// descriptor.
#[derive(Debug, Clone)]
pub struct Dir {
    fd: Arc<OwnedFd>,
    rel: Rel,
    host: PathBuf,
}

impl Dir {
    /// The directory's path beneath the root.
    pub fn rel(&self) -> &Rel {
        &self.rel
    }

    /// The directory's host path (for messages: nothing is opened by it).
    pub fn host_path(&self) -> &Path {
        &self.host
    }

    /// The host path of the entry `name` (for messages).
    pub fn entry_host(&self, name: &str) -> PathBuf {
        let n = host_name(name, self.rel.fold, "").unwrap_or_else(|_| name.to_string());
        self.host.join(n)
    }

    /// The path of the entry `name` beneath the root.
    pub fn entry(&self, name: &str) -> Result<Rel> {
        self.rel.join(name)
    }

    fn name(&self, name: &str) -> Result<String> {
        host_name(name, self.rel.fold, &self.rel.shown)
    }

    fn shown(&self, name: &str) -> String {
        self.rel
            .join(name)
            .map_or_else(|_| name.to_string(), |r| r.shown)
    }

    /// The refusal of the link `name` in this directory (`E_ACCESSDENIED`, naming it and
    /// its target): for an entry that [`Dir::read_dir`] lists as [`Kind::Symlink`].
    pub fn refuse_link(&self, name: &str) -> Error {
        let n = self.name(name).unwrap_or_else(|_| name.to_string());
        link_refusal(&self.fd, &self.host, &n, &self.shown(name))
    }

    fn open_with(&self, name: &str, flags: OFlags, what: &str) -> Result<File> {
        let n = self.name(name)?;
        match rfs::openat(
            &*self.fd,
            n.as_str(),
            flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o644),
        ) {
            Ok(fd) => Ok(File::from(fd)),
            Err(Errno::LOOP) => Err(link_refusal(&self.fd, &self.host, &n, &self.shown(name))),
            Err(e) => Err(Error::io(
                format!("{what} {}", self.host.join(&n).display()),
                errno_io(e),
            )),
        }
    }

    /// Opens an entry for reading.
    pub fn open(&self, name: &str) -> Result<File> {
        self.open_with(name, OFlags::RDONLY, "opening")
    }

    /// Opens an existing entry for positioned reads and writes (not truncated).
    pub fn open_rw(&self, name: &str) -> Result<File> {
        self.open_with(name, OFlags::RDWR, "opening")
    }

    /// Creates (or truncates) an entry for writing.
    pub fn create(&self, name: &str) -> Result<File> {
        self.open_with(
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC,
            "creating",
        )
    }

    /// Creates (or truncates) an entry for positioned reads and writes.
    pub fn create_rw(&self, name: &str) -> Result<File> {
        self.open_with(
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::TRUNC,
            "creating",
        )
    }

    /// Opens an entry for writing, created if missing, not truncated.
    pub fn open_or_create(&self, name: &str) -> Result<File> {
        self.open_with(name, OFlags::WRONLY | OFlags::CREATE, "opening")
    }

    /// Opens an existing entry for appending.
    pub fn append(&self, name: &str) -> Result<File> {
        self.open_with(name, OFlags::WRONLY | OFlags::APPEND, "opening")
    }

    /// Reads a whole (small) entry.
    pub fn read(&self, name: &str) -> Result<Vec<u8>> {
        let mut f = self.open(name)?;
        let mut v = Vec::new();
        f.read_to_end(&mut v)
            .map_err(|e| Error::io(format!("reading {}", self.entry_host(name).display()), e))?;
        Ok(v)
    }

    /// The entry `name` as it is (not followed), if it exists.
    fn stat(&self, n: &str) -> std::result::Result<rfs::Stat, Errno> {
        rfs::statat(&*self.fd, n, AtFlags::SYMLINK_NOFOLLOW)
    }

    /// Refuses `name` if it is a link: for the operations that would act on a link
    /// itself (rename, remove, replace) rather than fail on it. A link planted after
    /// this check is renamed or removed as a link, never followed.
    fn refuse_if_link(&self, n: &str, name: &str) -> Result<()> {
        match self.stat(n) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                Err(link_refusal(&self.fd, &self.host, n, &self.shown(name)))
            }
            _ => Ok(()),
        }
    }

    /// Writes `bytes` to `name` through a temporary entry (`<name>.tmp~`) and a rename.
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let n = self.name(name)?;
        self.refuse_if_link(&n, name)?;
        let tmp = format!("{n}.tmp~");
        let mut f = self.create(&tmp)?;
        f.write_all(bytes)
            .map_err(|e| Error::io(format!("writing {}", self.host.join(&tmp).display()), e))?;
        drop(f);
        rfs::renameat(&*self.fd, tmp.as_str(), &*self.fd, n.as_str()).map_err(|e| {
            Error::io(
                format!("renaming to {}", self.host.join(&n).display()),
                errno_io(e),
            )
        })
    }

    /// Renames the entry `from` to the entry `to_name` of `to` (replacing it).
    pub fn rename(&self, from: &str, to: &Dir, to_name: &str) -> Result<()> {
        let (f, t) = (self.name(from)?, to.name(to_name)?);
        self.refuse_if_link(&f, from)?;
        rfs::renameat(&*self.fd, f.as_str(), &*to.fd, t.as_str()).map_err(|e| {
            Error::io(
                format!(
                    "renaming {} to {}",
                    self.host.join(&f).display(),
                    to.host.join(&t).display()
                ),
                errno_io(e),
            )
        })
    }

    /// Removes the entry `name` (`ERROR_FILE_NOT_FOUND` if it does not exist).
    pub fn remove(&self, name: &str) -> Result<()> {
        let n = self.name(name)?;
        self.refuse_if_link(&n, name)?;
        rfs::unlinkat(&*self.fd, n.as_str(), AtFlags::empty()).map_err(|e| {
            Error::io(
                format!("deleting {}", self.host.join(&n).display()),
                errno_io(e),
            )
        })
    }

    /// Removes the entry `name` if it exists.
    pub fn remove_if_exists(&self, name: &str) -> Result<()> {
        self.remove(name).or_else(missing_is_ok)
    }

    /// What the entry `name` is; a link is refused (one `statat`, not followed).
    pub fn metadata(&self, name: &str) -> Result<Meta> {
        let n = self.name(name)?;
        let st = self.stat(&n).map_err(|e| {
            Error::io(
                format!("stat {}", self.host.join(&n).display()),
                errno_io(e),
            )
        })?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
            return Err(link_refusal(&self.fd, &self.host, &n, &self.shown(name)));
        }
        Ok(meta_of(&st))
    }

    /// The directory's own metadata (its modification time changes when an entry is
    /// created, removed or renamed).
    pub fn own_metadata(&self) -> Result<Meta> {
        file_metadata(&*self.fd, &self.host)
    }

    /// The entries (`.` and `..` left out), sorted by name; links are listed as
    /// [`Kind::Symlink`], never followed.
    pub fn read_dir(&self) -> Result<Vec<Entry>> {
        let listing = |e: Errno| Error::io(format!("listing {}", self.host.display()), errno_io(e));
        let dir = rfs::Dir::read_from(&*self.fd).map_err(listing)?;
        let mut out = Vec::new();
        for e in dir {
            let e = e.map_err(listing)?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "." || name == ".." {
                continue;
            }
            let kind = match e.file_type() {
                FileType::Unknown => self.stat(&name).map_or(Kind::Other, |st| {
                    Kind::of(FileType::from_raw_mode(st.st_mode))
                }),
                t => Kind::of(t),
            };
            out.push(Entry { name, kind });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

impl<'a> Beneath<'a> {
    /// Operations beneath `root`.
    pub fn new(root: &'a Path) -> Beneath<'a> {
        Beneath {
            root,
            root_fd: None,
        }
    }

    /// Operations beneath `root`, which `fd` holds open.
    pub fn with_root_fd(root: &'a Path, fd: &'a OwnedFd) -> Beneath<'a> {
        Beneath {
            root,
            root_fd: Some(fd),
        }
    }

    /// The host path of `p` (for messages, and for code not converted yet: see
    /// [`Beneath::resolve`]).
    pub fn host_path(&self, p: &Rel) -> PathBuf {
        let mut h = self.root.to_path_buf();
        for c in &p.parts {
            h.push(c);
        }
        h
    }

    /// The root as a descriptor of its own (a copy of the held one).
    fn open_root(&self) -> Result<OwnedFd> {
        match self.root_fd {
            Some(fd) => fd
                .try_clone()
                .map_err(|e| Error::io(format!("opening machine root {}", self.root.display()), e)),
            None => open_root(self.root),
        }
    }

    /// The refusal for the link `name` in `at`, the directory of the first `depth`
    /// components of `p`.
    fn link_error(&self, p: &Rel, at: &OwnedFd, depth: usize, name: &str) -> Error {
        link_refusal(at, &self.partial(p, depth), name, &p.shown)
    }

    /// True if `name` in `dir` is a symbolic link.
    fn is_link(dir: &OwnedFd, name: &str) -> bool {
        Self::kind_at(dir, name) == Some(FileType::Symlink)
    }

    /// What the entry `name` of `dir` is now (not followed), if it exists.
    fn kind_at(dir: &OwnedFd, name: &str) -> Option<FileType> {
        rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .ok()
            .map(|st| FileType::from_raw_mode(st.st_mode))
    }

    /// The directory holding the first `depth` components of `p`, walked one component at
    /// a time (created if `create`).
    fn walk(&self, p: &Rel, depth: usize, create: bool) -> Result<OwnedFd> {
        let mut cur = self.open_root()?;
        for (i, c) in p.parts[..depth].iter().enumerate() {
            if create {
                match rfs::mkdirat(&cur, c.as_str(), Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => {
                        return Err(Error::io(
                            format!("creating {}", self.partial(p, i + 1).display()),
                            errno_io(e),
                        ))
                    }
                }
            }
            let mut raced = 0;
            cur = loop {
                match rfs::openat(&cur, c.as_str(), DIR_FLAGS, Mode::empty()) {
                    Ok(fd) => break fd,
                    Err(e) => match Self::kind_at(&cur, c) {
                        Some(FileType::Symlink) => return Err(self.link_error(p, &cur, i, c)),
                        // Not a directory when opened, a directory when looked at: a
                        // rename raced the walk (a link swapped in and out). Open again.
                        Some(FileType::Directory)
                            if matches!(e, Errno::NOTDIR | Errno::LOOP) && raced < RACE_RETRIES =>
                        {
                            raced += 1;
                        }
                        _ => {
                            return Err(Error::io(
                                format!("opening {}", self.partial(p, i + 1).display()),
                                errno_io(e),
                            ))
                        }
                    },
                }
            };
        }
        Ok(cur)
    }

    fn partial(&self, p: &Rel, depth: usize) -> PathBuf {
        let mut h = self.root.to_path_buf();
        for c in &p.parts[..depth] {
            h.push(c);
        }
        h
    }

    /// The directory of the first `depth` components of `p`.
    fn dir(&self, p: &Rel, depth: usize, create: bool) -> Result<OwnedFd> {
        if create || depth == 0 || resolver() == Resolver::Walk {
            return self.walk(p, depth, create);
        }
        let opened;
        let root = match self.root_fd {
            Some(fd) => fd,
            None => {
                opened = open_root(self.root)?;
                &opened
            }
        };
        let rel = p.parts[..depth].join("/");
        match rfs::openat2(
            root,
            rel.as_str(),
            DIR_FLAGS,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        ) {
            Ok(fd) => Ok(fd),
            Err(Errno::NOSYS) | Err(Errno::PERM) => {
                // No openat2 here (old kernel, or a seccomp filter): walk from now on.
                RESOLVER.store(2, Ordering::Relaxed);
                self.walk(p, depth, false)
            }
            // A link (ELOOP), or a component that is not a directory: the walk names it.
            // EAGAIN: a rename beneath the root raced the resolution (openat2 asks for a
            // retry); the walk resolves component by component, and refuses a link.
            // Before, the race read as a missing directory: a recovery that met it found
            // no logs (JET_errMissingLogFile).
            Err(Errno::LOOP) | Err(Errno::NOTDIR) | Err(Errno::XDEV) | Err(Errno::AGAIN) => {
                self.walk(p, depth, false)
            }
            Err(e) => Err(Error::io(
                format!("opening {}", self.partial(p, depth).display()),
                errno_io(e),
            )),
        }
    }

    fn held(&self, p: &Rel, depth: usize, fd: OwnedFd) -> Dir {
        let mut rel = p.clone();
        rel.parts.truncate(depth);
        Dir {
            fd: Arc::new(fd),
            host: self.partial(p, depth),
            rel,
        }
    }

    /// The directory `p`, resolved beneath the root without following a link and held
    /// open (`ERROR_FILE_NOT_FOUND`-style I/O error if it is missing).
    pub fn open_dir(&self, p: impl Into<Rel>) -> Result<Dir> {
        let p = p.into();
        let n = p.parts.len();
        let fd = self.dir(&p, n, false)?;
        Ok(self.held(&p, n, fd))
    }

    /// [`Beneath::open_dir`], creating the directory and its parents if missing.
    pub fn create_dir(&self, p: impl Into<Rel>) -> Result<Dir> {
        let p = p.into();
        let n = p.parts.len();
        let fd = self.walk(&p, n, true)?;
        Ok(self.held(&p, n, fd))
    }

    /// The parent directory of `p`, held open, and its last component (a host name).
    fn parent(&self, p: &Rel, create: bool) -> Result<(Dir, String)> {
        let (dir, name) = p.split_last()?;
        let depth = dir.len();
        let fd = self.dir(p, depth, create)?;
        let mut d = self.held(p, depth, fd);
        // Messages name the path as given: the directory's part of it, and the last
        // component as written (the directory folds it to the same host name).
        let sep = if p.fold { '\\' } else { '/' };
        match p.shown.rsplit_once(sep) {
            Some((dir_shown, last)) if !last.is_empty() => {
                d.rel.shown = dir_shown.to_string();
                Ok((d, last.to_string()))
            }
            _ => Ok((d, name.to_string())),
        }
    }

    /// Opens a file for reading.
    pub fn open(&self, p: impl Into<Rel>) -> Result<File> {
        let (d, n) = self.parent(&p.into(), false)?;
        d.open(&n)
    }

    /// Creates (or truncates) a file for writing, creating its directories.
    pub fn create(&self, p: impl Into<Rel>) -> Result<File> {
        let (d, n) = self.parent(&p.into(), true)?;
        d.create(&n)
    }

    /// Opens an existing file for appending.
    pub fn append(&self, p: impl Into<Rel>) -> Result<File> {
        let (d, n) = self.parent(&p.into(), false)?;
        d.append(&n)
    }

    /// Reads a whole (small) file.
    pub fn read(&self, p: impl Into<Rel>) -> Result<Vec<u8>> {
        let (d, n) = self.parent(&p.into(), false)?;
        d.read(&n)
    }

    /// Writes `bytes` to `p` through a temporary file (`<name>.tmp~`) and a rename,
    /// creating the directories.
    pub fn write_atomic(&self, p: impl Into<Rel>, bytes: &[u8]) -> Result<()> {
        let (d, n) = self.parent(&p.into(), true)?;
        d.write_atomic(&n, bytes)
    }

    /// Renames `from` to `to` (no directory is created).
    pub fn rename(&self, from: impl Into<Rel>, to: impl Into<Rel>) -> Result<()> {
        let (from, to) = (from.into(), to.into());
        let (fd, fname) = self.parent(&from, false)?;
        let (td, tname) = self.parent(&to, false)?;
        fd.rename(&fname, &td, &tname)
    }

    /// Removes a file (`ERROR_FILE_NOT_FOUND` if it does not exist).
    pub fn remove(&self, p: impl Into<Rel>) -> Result<()> {
        let (d, n) = self.parent(&p.into(), false)?;
        d.remove(&n)
    }

    /// Removes a file if it exists.
    pub fn remove_if_exists(&self, p: impl Into<Rel>) -> Result<()> {
        self.remove(p).or_else(missing_is_ok)
    }

    /// Creates a directory and its parents.
    pub fn create_dir_all(&self, p: impl Into<Rel>) -> Result<()> {
        let p = p.into();
        self.walk(&p, p.parts.len(), true).map(drop)
    }

    /// The entries of a directory (`.` and `..` left out), sorted by name.
    pub fn read_dir(&self, p: impl Into<Rel>) -> Result<Vec<Entry>> {
        self.open_dir(p)?.read_dir()
    }

    /// What `p` is, without following it; a link is refused.
    pub fn metadata(&self, p: impl Into<Rel>) -> Result<Meta> {
        let (d, n) = self.parent(&p.into(), false)?;
        d.metadata(&n)
    }

    /// Checks that the directory `p` and every directory above it beneath the root is a
    /// real directory (no link); `ERROR_FILE_NOT_FOUND`-style I/O error if one is missing.
    pub fn check_dir(&self, p: impl Into<Rel>) -> Result<()> {
        let p = p.into();
        self.dir(&p, p.parts.len(), false).map(drop)
    }

    /// The host path of `p` after checking that no link lies on it (its directories and
    /// the file itself, if it exists): for a check made when a path is registered.
    /// A link planted after the check is not seen; open through [`Beneath`] to be sure.
    pub fn resolve(&self, p: impl Into<Rel>) -> Result<PathBuf> {
        let p = p.into();
        let r = self.parent(&p, false).and_then(|(d, n)| {
            if Self::is_link(&d.fd, &n) {
                return Err(self.link_error(&p, &d.fd, p.parts.len() - 1, &n));
            }
            Ok(())
        });
        match r {
            Ok(()) => Ok(self.host_path(&p)),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(self.host_path(&p))
            }
            Err(e) => Err(e),
        }
    }
}

/// For `Result::or_else` after [`Beneath::check_dir`] or [`Beneath::remove`]: a missing
/// file or directory is no error.
pub fn missing_is_ok(e: Error) -> Result<()> {
    match e {
        Error::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => Ok(()),
        e => Err(e),
    }
}

/// For `Result::or_else` after a check made before another operation: a link is the
/// refusal, any other failure (a missing folder, a file where a folder was expected) is
/// left to the operation itself to report as it always has.
pub fn only_links(e: Error) -> Result<()> {
    match e {
        Error::Path {
            kind: PathRefusal::Symlink,
            ..
        } => Err(e),
        _ => Ok(()),
    }
}

/// True if `e` is the refusal of a link ([`PathRefusal::Symlink`]).
pub fn is_link_refusal(e: &Error) -> bool {
    matches!(
        e,
        Error::Path {
            kind: PathRefusal::Symlink,
            ..
        }
    )
}

impl Beneath<'_> {
    /// Refuses a link at `p`, above it, or as an entry of the directory `p` (a log file
    /// replaced by a link): what a registration checks the client's folders with. Other
    /// failures are left to the operation (see [`only_links`]).
    pub fn check_tree(&self, p: impl Into<Rel>) -> Result<()> {
        let p = p.into();
        let fd = match self.dir(&p, p.parts.len(), false) {
            Ok(fd) => fd,
            Err(e) => return only_links(e),
        };
        let Ok(dir) = rfs::Dir::read_from(&fd) else {
            return Ok(());
        };
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type() == FileType::Symlink
                || (e.file_type() == FileType::Unknown && Self::is_link(&fd, &name))
            {
                return Err(self.link_error(&p, &fd, p.parts.len(), &name));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::HRESULT;
    use std::os::unix::fs::symlink;

    fn wp(s: &str) -> WinPath {
        WinPath::parse(s, |_| false).unwrap()
    }

    /// Runs `f` once with each resolver (the walk forced through the depth-0 path too).
    fn both(f: impl Fn(Resolver)) {
        for r in [Resolver::Openat2, Resolver::Walk] {
            f(r);
        }
    }

    fn dir_with(r: Resolver, b: &Beneath<'_>, p: &Rel) -> Result<OwnedFd> {
        match r {
            Resolver::Walk => b.walk(p, p.parts.len(), false),
            Resolver::Openat2 => b.dir(p, p.parts.len(), false),
        }
    }

    #[test]
    fn plain_operations_work() {
        let root = tempfile::tempdir().unwrap();
        let b = Beneath::new(root.path());
        let f = wp(r"C:\Windows\System32\CertLog\X.edb");
        b.write_atomic(&f, b"abc").unwrap();
        assert_eq!(b.read(&f).unwrap(), b"abc");
        assert_eq!(
            std::fs::read(root.path().join("c/windows/system32/certlog/x.edb")).unwrap(),
            b"abc"
        );
        let m = b.metadata(&f).unwrap();
        assert_eq!((m.len, m.kind), (3, Kind::File));
        b.append(&f).unwrap().write_all(b"d").unwrap();
        let g = wp(r"C:\Windows\System32\CertLog\Y.edb");
        b.rename(&f, &g).unwrap();
        let names: Vec<String> = b
            .read_dir(wp(r"C:\Windows\System32\CertLog"))
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["y.edb"]);
        b.remove(&g).unwrap();
        assert_eq!(
            b.remove(&g).unwrap_err().hresult(),
            HRESULT::ERROR_FILE_NOT_FOUND
        );
        b.remove_if_exists(&g).unwrap();
        b.create(wp(r"C:\a\b\c.txt")).unwrap();
        let reg = Rel::host("registry/HKLM/x.json").unwrap();
        b.write_atomic(&reg, b"{}").unwrap();
        assert!(root.path().join("registry/HKLM/x.json").is_file());
        assert!(Rel::host("registry/../x").is_err());
        both(|r| {
            dir_with(r, &b, &wp(r"C:\Windows\System32").into()).unwrap();
            assert_eq!(
                dir_with(r, &b, &wp(r"C:\nope").into())
                    .unwrap_err()
                    .hresult(),
                HRESULT::ERROR_FILE_NOT_FOUND
            );
        });
    }

    #[test]
    fn a_link_at_any_depth_is_refused_by_both_resolvers() {
        let root = tempfile::tempdir().unwrap();
        let canary = tempfile::tempdir().unwrap();
        let b = Beneath::new(root.path());
        b.create_dir_all(wp(r"C:\Windows\System32")).unwrap();
        symlink(
            canary.path(),
            root.path().join("c/windows/system32/certlog"),
        )
        .unwrap();
        let dir: Rel = wp(r"C:\Windows\System32\CertLog").into();
        both(|r| {
            let e = dir_with(r, &b, &dir).unwrap_err();
            // This kernel has openat2 (5.6+): the first resolver really ran.
            assert_eq!(resolver(), Resolver::Openat2, "openat2 is missing here");
            assert_eq!(e.hresult(), HRESULT::E_ACCESSDENIED, "{r:?}: {e}");
            assert!(e.to_string().contains("certlog is a symbolic link"), "{e}");
            assert!(
                e.to_string().contains(&canary.path().display().to_string()),
                "{e}"
            );
        });
        let file = wp(r"C:\Windows\System32\CertLog\edb.log");
        for e in [
            b.create(&file).map(drop).unwrap_err(),
            b.write_atomic(&file, b"x").unwrap_err(),
            b.open(&file).map(drop).unwrap_err(),
            b.read_dir(&dir).map(drop).unwrap_err(),
            b.create_dir_all(&dir).unwrap_err(),
            b.remove(&file).unwrap_err(),
        ] {
            assert_eq!(e.hresult(), HRESULT::E_ACCESSDENIED, "{e}");
        }
        // A link as the file itself.
        b.create_dir_all(wp(r"C:\Logs")).unwrap();
        std::fs::write(canary.path().join("target"), b"secret").unwrap();
        symlink(
            canary.path().join("target"),
            root.path().join("c/logs/edb00001.log"),
        )
        .unwrap();
        let f = wp(r"C:\Logs\edb00001.log");
        for e in [
            b.open(&f).map(drop).unwrap_err(),
            b.create(&f).map(drop).unwrap_err(),
            b.append(&f).map(drop).unwrap_err(),
            b.write_atomic(&f, b"x").unwrap_err(),
            b.metadata(&f).map(drop).unwrap_err(),
            b.remove(&f).unwrap_err(),
            b.resolve(&f).map(drop).unwrap_err(),
        ] {
            assert_eq!(e.hresult(), HRESULT::E_ACCESSDENIED, "{e}");
        }
        // The drive folder itself.
        let root2 = tempfile::tempdir().unwrap();
        symlink(canary.path(), root2.path().join("c")).unwrap();
        let b2 = Beneath::new(root2.path());
        both(|r| {
            assert_eq!(
                dir_with(r, &b2, &wp(r"C:\Windows").into())
                    .unwrap_err()
                    .hresult(),
                HRESULT::E_ACCESSDENIED
            );
        });
        assert_eq!(
            b2.write_atomic(wp(r"C:\x"), b"x").unwrap_err().hresult(),
            HRESULT::E_ACCESSDENIED
        );
        assert_eq!(
            std::fs::read(canary.path().join("target")).unwrap(),
            b"secret"
        );
        let listing: Vec<_> = std::fs::read_dir(canary.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(listing, ["target"], "nothing new in the canary");
    }
}
