//! One daemon per resource: an advisory `flock(2)` that a daemon holds for as long as it
//! serves something two daemons must not share (the XDP path's pin directory, a proxy VIP).
//!
//! flock because the kernel drops it with the last file descriptor of its holder: a daemon
//! that was SIGKILLed leaves no stale lock behind, and the next `lb run` takes over at once.
//! Nothing is written into the locked file: the holder's pid comes from `/proc/locks`, which
//! names the process that took each lock. (A pin directory lives on a BPF filesystem, which
//! holds no regular files; flock on the directory itself works there.)
//!
//! A lock file may be removed on release, so that lock files of VIPs no longer served do not
//! pile up. A process that opened the file just before it was removed then locks an inode no
//! path leads to; so every acquisition checks, once it holds the lock, that the path still
//! names the inode it locked, and starts over otherwise.
use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How a lock is held: several shared holders may coexist, an exclusive one is alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    Shared,
    Exclusive,
}

/// A process holding a lock, as `/proc/locks` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// Its command line (empty when it is gone or not visible).
    pub command: String,
    pub mode: Mode,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.command.is_empty() {
            write!(f, "pid {}", self.pid)
        } else {
            write!(f, "pid {} ({})", self.pid, self.command)
        }
    }
}

/// The holders of a lock, for an error message: "pid 1 (lb run ...), pid 2 (...)".
pub fn describe(holders: &[Holder]) -> String {
    if holders.is_empty() {
        return "a process whose pid is not visible here (another pid namespace?)".to_string();
    }
    holders.iter().map(Holder::to_string).collect::<Vec<_>>().join(", ")
}

/// What an attempt to lock gave.
#[derive(Debug)]
pub enum Acquired {
    Held(FileLock),
    /// Someone else holds it in a conflicting mode.
    Busy(Vec<Holder>),
}

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
    mode: Mode,
    /// A lock file of ours (not a directory that is the resource itself): removed on
    /// release when no one else holds it.
    remove_on_release: bool,
}

/// How often an acquisition starts over because the file was replaced under it. Each
/// round needs another process to remove the file in between; a handful is plenty.
const ATTEMPTS: usize = 8;

/// Lock the directory `dir` itself (it must exist), exclusively.
pub fn lock_dir(dir: &Path) -> io::Result<Acquired> {
    acquire(dir, Mode::Exclusive, false)
}

/// Lock the file `path` (created if missing; its directory must exist) in `mode`. The file
/// is removed on release when no one else holds it.
pub fn lock_file(path: &Path, mode: Mode) -> io::Result<Acquired> {
    acquire(path, mode, true)
}

fn acquire(path: &Path, mode: Mode, create: bool) -> io::Result<Acquired> {
    for _ in 0..ATTEMPTS {
        // Read-only is enough for flock, and the only way to open a directory.
        let file = if create {
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?
        } else {
            File::open(path)?
        };
        match try_lock(&file, mode) {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(Acquired::Busy(holders(&file))),
            Err(TryLockError::Error(e)) => return Err(e),
        }
        if still_named(&file, path) {
            return Ok(Acquired::Held(FileLock { file, path: path.to_path_buf(), mode, remove_on_release: create }));
        }
        // Removed or replaced between open and lock: what we hold guards nothing.
    }
    Err(io::Error::other(format!("{} keeps being replaced while it is locked", path.display())))
}

fn try_lock(file: &File, mode: Mode) -> Result<(), TryLockError> {
    match mode {
        Mode::Shared => file.try_lock_shared(),
        Mode::Exclusive => file.try_lock(),
    }
}

/// Whether `path` still names the inode `file` has open.
fn still_named(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => (open.dev(), open.ino()) == (named.dev(), named.ino()),
        _ => false,
    }
}

impl FileLock {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Hold the lock in `mode` instead. flock converts in two steps, so a conversion that
    /// fails (another holder in the way) may have dropped the lock held so far: then it is
    /// taken again as it was, if it still can be; `Busy` says who was in the way.
    pub fn convert(&mut self, mode: Mode) -> io::Result<Option<Vec<Holder>>> {
        if mode == self.mode {
            return Ok(None);
        }
        match try_lock(&self.file, mode) {
            Ok(()) => {
                self.mode = mode;
                Ok(None)
            }
            Err(TryLockError::WouldBlock) => {
                let in_the_way = holders(&self.file);
                match try_lock(&self.file, self.mode) {
                    Ok(()) => Ok(Some(in_the_way)),
                    Err(TryLockError::WouldBlock) => Err(io::Error::other(format!(
                        "{}: lost while converting it (now held by {})",
                        self.path.display(),
                        describe(&holders(&self.file))
                    ))),
                    Err(TryLockError::Error(e)) => Err(e),
                }
            }
            Err(TryLockError::Error(e)) => Err(e),
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Removed only while held exclusively, so no other holder is left with a lock no
        // path leads to; the file closes (and the lock goes) after this body.
        if self.remove_on_release
            && try_lock(&self.file, Mode::Exclusive).is_ok()
            && still_named(&self.file, &self.path)
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The processes holding a flock on `file`'s inode, from `/proc/locks`.
pub fn holders(file: &File) -> Vec<Holder> {
    let Ok(meta) = file.metadata() else { return Vec::new() };
    let Ok(table) = std::fs::read_to_string("/proc/locks") else { return Vec::new() };
    let (major, minor) = split_dev(meta.dev());
    flock_holders(&table, major, minor, meta.ino())
        .into_iter()
        .map(|(pid, mode)| Holder { pid, command: command_line(pid), mode })
        .collect()
}

/// `/proc/locks` rows of flock locks on the inode (major:minor:inode), as (pid, mode). A row
/// reads `1: FLOCK  ADVISORY  WRITE 1234 00:2e:501260 0 EOF`; waiters (`1: -> FLOCK ...`)
/// hold nothing and are skipped.
pub fn flock_holders(table: &str, major: u32, minor: u32, ino: u64) -> Vec<(u32, Mode)> {
    let mut out = Vec::new();
    for row in table.lines() {
        let fields: Vec<&str> = row.split_whitespace().collect();
        let [_, "FLOCK", _, access, pid, id, ..] = fields.as_slice() else { continue };
        let mut parts = id.split(':');
        let (Some(maj), Some(min), Some(i)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let same = u32::from_str_radix(maj, 16) == Ok(major)
            && u32::from_str_radix(min, 16) == Ok(minor)
            && i.parse::<u64>() == Ok(ino);
        let Ok(pid) = pid.parse::<u32>() else { continue };
        if same {
            out.push((pid, if *access == "READ" { Mode::Shared } else { Mode::Exclusive }));
        }
    }
    out
}

/// glibc's dev_t encoding (what `stat` returns) into the kernel's major and minor numbers
/// (what `/proc/locks` prints, in hex).
pub fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0fff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0x00ff);
    (major as u32, minor as u32)
}

fn command_line(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " ").trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of its own per test, removed at the end.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("lb-lock-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn held(a: io::Result<Acquired>) -> FileLock {
        match a.unwrap() {
            Acquired::Held(l) => l,
            Acquired::Busy(h) => panic!("busy: {h:?}"),
        }
    }

    fn busy(a: io::Result<Acquired>) -> Vec<Holder> {
        match a.unwrap() {
            Acquired::Held(l) => panic!("{} was taken twice", l.path.display()),
            Acquired::Busy(h) => h,
        }
    }

    // Two opens in one process are two open file descriptions: flock keeps them apart as it
    // does two processes, so one test process can play both daemons.

    #[test]
    fn a_second_exclusive_lock_is_refused_naming_the_holders_pid_until_the_first_is_dropped() {
        let s = Scratch::new("excl");
        let path = s.0.join("vip.lock");
        let first = held(lock_file(&path, Mode::Exclusive));
        let holders = busy(lock_file(&path, Mode::Exclusive));
        assert_eq!(holders.len(), 1, "{holders:?}");
        assert_eq!(holders[0].pid, std::process::id());
        assert_eq!(holders[0].mode, Mode::Exclusive);
        assert!(!holders[0].command.is_empty());
        assert!(describe(&holders).starts_with(&format!("pid {} (", std::process::id())));
        drop(first);
        let _again = held(lock_file(&path, Mode::Exclusive));
    }

    #[test]
    fn shared_holders_coexist_and_keep_an_exclusive_one_out() {
        let s = Scratch::new("shared");
        let path = s.0.join("port.lock");
        let a = held(lock_file(&path, Mode::Shared));
        let b = held(lock_file(&path, Mode::Shared));
        let holders = busy(lock_file(&path, Mode::Exclusive));
        assert_eq!(holders.iter().filter(|h| h.mode == Mode::Shared).count(), 2, "{holders:?}");
        drop(a);
        // b still holds it: the file stays, and an exclusive lock still waits.
        assert!(path.exists());
        busy(lock_file(&path, Mode::Exclusive));
        drop(b);
        assert!(!path.exists(), "the last holder removes the lock file");
        held(lock_file(&path, Mode::Exclusive));
    }

    #[test]
    fn a_directory_is_locked_in_place_and_never_removed() {
        let s = Scratch::new("dir");
        let dir = s.0.join("pins");
        std::fs::create_dir(&dir).unwrap();
        let first = held(lock_dir(&dir));
        assert_eq!(busy(lock_dir(&dir))[0].pid, std::process::id());
        drop(first);
        assert!(dir.is_dir());
        held(lock_dir(&dir));
    }

    #[test]
    fn a_directory_that_does_not_exist_is_an_error_not_a_lock() {
        let s = Scratch::new("nodir");
        assert!(lock_dir(&s.0.join("absent")).is_err());
    }

    #[test]
    fn converting_up_waits_for_other_shared_holders_and_keeps_the_shared_lock_meanwhile() {
        let s = Scratch::new("convert");
        let path = s.0.join("port.lock");
        let mut mine = held(lock_file(&path, Mode::Shared));
        let other = held(lock_file(&path, Mode::Shared));
        let in_the_way = mine.convert(Mode::Exclusive).unwrap().expect("the other shared holder is in the way");
        assert!(in_the_way.iter().any(|h| h.mode == Mode::Shared), "{in_the_way:?}");
        assert_eq!(mine.mode(), Mode::Shared);
        // Still held shared: an exclusive newcomer is refused.
        drop(other);
        busy(lock_file(&path, Mode::Exclusive));
        assert_eq!(mine.convert(Mode::Exclusive).unwrap(), None);
        assert_eq!(mine.mode(), Mode::Exclusive);
        busy(lock_file(&path, Mode::Shared));
        assert_eq!(mine.convert(Mode::Shared).unwrap(), None);
        held(lock_file(&path, Mode::Shared));
    }

    #[test]
    fn a_lock_on_a_file_removed_under_it_is_not_kept() {
        let s = Scratch::new("replaced");
        let path = s.0.join("vip.lock");
        // What a racing acquirer would see: its open file no longer named by the path.
        let stale = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(!still_named(&stale, &path));
        std::fs::write(&path, b"").unwrap();
        assert!(!still_named(&stale, &path));
        let now = OpenOptions::new().read(true).open(&path).unwrap();
        assert!(still_named(&now, &path));
    }

    #[test]
    fn proc_locks_rows_are_matched_by_device_and_inode() {
        let table = "\
1: FLOCK  ADVISORY  WRITE 21420 00:2e:501260 0 EOF
1: -> FLOCK  ADVISORY  WRITE 999 00:2e:501260 0 EOF
2: FLOCK  ADVISORY  READ 21406 fe:00:5824516 0 EOF
3: POSIX  ADVISORY  WRITE 19833 00:2e:501260 0 EOF
4: FLOCK  ADVISORY  READ 7 fe:00:5824516 0 EOF
5: OFDLCK ADVISORY  READ -1 fe:00:5824516 0 EOF
garbage
";
        assert_eq!(flock_holders(table, 0, 0x2e, 501260), vec![(21420, Mode::Exclusive)]);
        assert_eq!(flock_holders(table, 0xfe, 0, 5824516), vec![(21406, Mode::Shared), (7, Mode::Shared)]);
        assert_eq!(flock_holders(table, 0xfe, 0, 1), vec![]);
    }

    /// glibc's makedev, the other way round.
    fn makedev(major: u64, minor: u64) -> u64 {
        ((major & 0xfff) << 8) | ((major & !0xfff) << 32) | (minor & 0xff) | ((minor & !0xff) << 12)
    }

    #[test]
    fn dev_numbers_split_like_the_kernel_prints_them() {
        assert_eq!(split_dev(makedev(0xfe, 0)), (0xfe, 0));
        assert_eq!(split_dev(makedev(0, 0x2e)), (0, 0x2e));
        // Beyond 8-bit minors and 12-bit majors.
        assert_eq!(split_dev(makedev(0x1234, 0x12345)), (0x1234, 0x12345));
        let dev = std::fs::metadata("/proc/self/exe").unwrap().dev();
        let (major, minor) = split_dev(dev);
        assert_eq!(makedev(major as u64, minor as u64), dev);
    }
}
