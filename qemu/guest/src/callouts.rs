//! `mxfs-guest callouts` and `mxfs-guest callouts-fail`: check the XFS operation callouts
//! (kmod/patches 0005-0007) through the counters mxfs.ko exposes in
//! `/sys/module/mxfs/parameters/op_counts` (kmod/glue.c): one line `KIND R|W BEGINS ENDS` per
//! operation kind and intent that was called.
//!
//! Each step runs one system call on the mount, reads the counters before and after, and checks
//! the difference: the step's own kind and intent, begun and ended the same number of times
//! (at least once), and nothing else, except `acl_get R` (an uncached ACL read inside a
//! permission check) and `permission R` and `lookup R` for the steps that
//! name a path (the VFS path walk calls those for every component it looks at) and what a step
//! lists as its own. Every result line prints the whole difference.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Error;

const COUNTS_PATH: &str = "/sys/module/mxfs/parameters/op_counts";
const FAIL_PATH: &str = "/sys/module/mxfs/parameters/op_fail_eio";
const SPEC_PATH: &str = "/sys/module/mxfs/parameters/spec_inline";
/// Rounds of an fstat and a path stat of one file that `speculation_inline` makes with tickets.
const SPEC_STATS: usize = 200;
/// Of those, how many may call out: the first speculation of each kind publishes the ticket.
const SPEC_CALLOUTS_MAX: i64 = 4;
/// Fstats it makes with `spec_inline=0`, every one of which must call out.
const SPEC_OFF_STATS: usize = 10;
const BLOCK_BYTES: usize = 4096;
const FILE_BYTES: usize = 8 * BLOCK_BYTES;
const FALLOC_BYTES: i64 = 64 * 1024;
/// `_IOR('f', 1, long)`, `_IOW('f', 2, long)`, `_IOWR('X', 121, struct fstrim_range)`.
const FS_IOC_GETFLAGS: u64 = (2 << 30) | (8 << 16) | (0x66 << 8) | 1;
const FS_IOC_SETFLAGS: u64 = (1 << 30) | (8 << 16) | (0x66 << 8) | 2;
const FITRIM: u64 = (3 << 30) | (24 << 16) | (0x58 << 8) | 121;

/// (kind, 'R' or 'W') -> (begins, ends).
pub(crate) type Counts = BTreeMap<(String, char), (i64, i64)>;

pub(crate) fn read_counts() -> Result<Counts, String> {
    let text = std::fs::read_to_string(COUNTS_PATH).map_err(|e| format!("{COUNTS_PATH}: {e}"))?;
    let mut counts = Counts::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let parsed = match f.as_slice() {
            [kind, intent, b, e] if *intent == "R" || *intent == "W" => b
                .parse::<i64>()
                .ok()
                .zip(e.parse::<i64>().ok())
                .map(|be| ((kind.to_string(), intent.chars().next().unwrap_or('?')), be)),
            _ => None,
        };
        let (key, be) = parsed.ok_or_else(|| format!("{COUNTS_PATH}: bad line {line:?}"))?;
        counts.insert(key, be);
    }
    Ok(counts)
}

pub(crate) fn delta(before: &Counts, after: &Counts) -> Counts {
    let mut d = Counts::new();
    for (k, (b, e)) in after {
        let (b0, e0) = before.get(k).copied().unwrap_or((0, 0));
        if (b - b0, e - e0) != (0, 0) {
            d.insert(k.clone(), (b - b0, e - e0));
        }
    }
    d
}

fn show(d: &Counts) -> String {
    if d.is_empty() {
        return "no callouts".into();
    }
    d.iter()
        .map(|((k, i), (b, e))| format!("{k} {i} {b}/{e}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("names in this file have no NUL")
}

/// Turns a libc return value into a Result carrying the errno.
fn sys(rc: i64) -> Result<i64, i32> {
    if rc < 0 {
        Err(Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(rc)
    }
}

/// Memory aligned for O_DIRECT, freed on drop.
struct Aligned(*mut u8);
impl Aligned {
    fn new(fill: u8) -> Result<Self, String> {
        let mut p: *mut libc::c_void = std::ptr::null_mut();
        // SAFETY: posix_memalign writes an aligned allocation of BLOCK_BYTES into `p`.
        if unsafe { libc::posix_memalign(&mut p, BLOCK_BYTES, BLOCK_BYTES) } != 0 {
            return Err("posix_memalign failed".into());
        }
        // SAFETY: `p` points to BLOCK_BYTES writable bytes.
        unsafe { std::ptr::write_bytes(p.cast::<u8>(), fill, BLOCK_BYTES) };
        Ok(Aligned(p.cast()))
    }
}
impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated by posix_memalign in `new`.
        unsafe { libc::free(self.0.cast()) }
    }
}

/// A shared read-write mapping of the first block of a file, unmapped on drop.
struct Mapping(*mut u8);
impl Mapping {
    fn new(fd: i32) -> Result<Self, String> {
        // SAFETY: maps BLOCK_BYTES of an open file; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                BLOCK_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap: {}", Error::last_os_error()));
        }
        Ok(Mapping(p.cast()))
    }
}
impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this length.
        unsafe { libc::munmap(self.0.cast(), BLOCK_BYTES) };
    }
}

/// The open files the steps work on.
struct Fixture {
    dir: i32,
    rw: i32,
    dio: i32,
    buf: Vec<u8>,
    abuf: Aligned,
}

impl Fixture {
    /// Makes DIR/callouts/f (FILE_BYTES of 'a') and opens it; these calls are not measured.
    fn new(root: &str) -> Result<Self, String> {
        let d = format!("{root}/callouts");
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir(&d).map_err(|e| format!("mkdir {d}: {e}"))?;
        std::fs::write(format!("{d}/f"), vec![b'a'; FILE_BYTES]).map_err(|e| e.to_string())?;
        let open = |p: &str, flags: i32| -> Result<i32, String> {
            // SAFETY: opens a NUL-terminated path.
            let fd = unsafe { libc::open(cstr(p).as_ptr(), flags) };
            if fd < 0 {
                Err(format!("open {p}: {}", Error::last_os_error()))
            } else {
                Ok(fd)
            }
        };
        Ok(Fixture {
            dir: open(&d, libc::O_RDONLY | libc::O_DIRECTORY)?,
            rw: open(&format!("{d}/f"), libc::O_RDWR)?,
            dio: open(&format!("{d}/f"), libc::O_RDWR | libc::O_DIRECT)?,
            buf: vec![b'b'; BLOCK_BYTES],
            abuf: Aligned::new(b'c')?,
        })
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // SAFETY: closes descriptors this fixture opened.
        unsafe {
            libc::close(self.dir);
            libc::close(self.rw);
            libc::close(self.dio);
        }
    }
}

/// One measured step: the system call, the callout it must produce, and what else it may.
struct Step {
    name: &'static str,
    kind: &'static str,
    intent: char,
    /// Also allowed: path-walk callouts (permission R, lookup R).
    path_walk: bool,
    /// Also allowed: these (kind, intent) pairs.
    also: &'static [(&'static str, char)],
    run: fn(&mut Fixture) -> Result<i64, i32>,
}

fn name_at(fx: &Fixture, f: impl FnOnce(i32, *const libc::c_char) -> i64, name: &str) -> i64 {
    let c = cstr(name);
    f(fx.dir, c.as_ptr())
}

/// The operations of the callout list (kmod/patches 0005-0007), in an order where each leaves
/// what the next needs.
fn steps() -> Vec<Step> {
    fn st(
        name: &'static str,
        kind: &'static str,
        intent: char,
        path_walk: bool,
        run: fn(&mut Fixture) -> Result<i64, i32>,
    ) -> Step {
        Step {
            name,
            kind,
            intent,
            path_walk,
            also: &[],
            run,
        }
    }
    // SAFETY (every closure below): plain system calls on descriptors and buffers the fixture
    // owns, with lengths that match the buffers; results are checked by `sys`.
    vec![
        st("open", "open", 'R', true, |fx| {
            let fd = sys(name_at(
                fx,
                |d, n| unsafe { libc::openat(d, n, libc::O_RDONLY) } as i64,
                "f",
            ))?;
            unsafe { libc::close(fd as i32) };
            Ok(0)
        }),
        st("getattr", "getattr", 'R', false, |fx| {
            let mut s: libc::stat = unsafe { std::mem::zeroed() };
            sys(unsafe { libc::fstat(fx.rw, &mut s) } as i64)
        }),
        st("permission", "permission", 'R', true, |fx| {
            sys(name_at(
                fx,
                |d, n| unsafe { libc::faccessat(d, n, libc::R_OK, 0) } as i64,
                "f",
            ))
        }),
        st("lookup", "lookup", 'R', true, |fx| {
            let mut s: libc::stat = unsafe { std::mem::zeroed() };
            match sys(name_at(
                fx,
                |d, n| unsafe { libc::fstatat(d, n, &mut s, 0) } as i64,
                "absent",
            )) {
                Err(libc::ENOENT) => Ok(0),
                other => other,
            }
        }),
        st("read", "read", 'R', false, |fx| {
            sys(unsafe { libc::pread(fx.rw, fx.buf.as_mut_ptr().cast(), BLOCK_BYTES, 0) } as i64)
        }),
        st("write", "write", 'W', false, |fx| {
            sys(unsafe { libc::pwrite(fx.rw, fx.buf.as_ptr().cast(), BLOCK_BYTES, 4096) } as i64)
        }),
        st("fsync", "fsync", 'R', false, |fx| {
            sys(unsafe { libc::fsync(fx.rw) } as i64)
        }),
        st("dio_read", "dio_read", 'R', false, |fx| {
            sys(unsafe { libc::pread(fx.dio, fx.abuf.0.cast(), BLOCK_BYTES, 0) } as i64)
        }),
        st("dio_write", "dio_write", 'W', false, |fx| {
            sys(unsafe { libc::pwrite(fx.dio, fx.abuf.0.cast(), BLOCK_BYTES, 8192) } as i64)
        }),
        st("setattr_truncate", "setattr", 'W', false, |fx| {
            sys(unsafe { libc::ftruncate(fx.rw, (FILE_BYTES - 100) as i64) } as i64)
        }),
        st("setattr_chmod", "setattr", 'W', false, |fx| {
            sys(unsafe { libc::fchmod(fx.rw, 0o640) } as i64)
        }),
        st("readdir", "readdir", 'R', false, |fx| {
            let mut b = vec![0u8; 4096];
            unsafe { libc::lseek(fx.dir, 0, libc::SEEK_SET) };
            sys(unsafe { libc::syscall(libc::SYS_getdents64, fx.dir, b.as_mut_ptr(), b.len()) })
        }),
        st("create", "create", 'W', true, |fx| {
            sys(name_at(
                fx,
                |d, n| unsafe { libc::mknodat(d, n, libc::S_IFREG | 0o644, 0) } as i64,
                "c",
            ))
        }),
        st("mknod", "mknod", 'W', true, |fx| {
            sys(name_at(
                fx,
                |d, n| unsafe { libc::mknodat(d, n, libc::S_IFIFO | 0o644, 0) } as i64,
                "p",
            ))
        }),
        st("mkdir", "mkdir", 'W', true, |fx| {
            sys(name_at(
                fx,
                |d, n| unsafe { libc::mkdirat(d, n, 0o755) } as i64,
                "d",
            ))
        }),
        st("symlink", "symlink", 'W', true, |fx| {
            let t = cstr("f");
            sys(name_at(
                fx,
                |d, n| unsafe { libc::symlinkat(t.as_ptr(), d, n) } as i64,
                "s",
            ))
        }),
        st("readlink", "readlink", 'R', true, |fx| {
            let mut b = [0u8; 64];
            sys(name_at(
                fx,
                |d, n| unsafe { libc::readlinkat(d, n, b.as_mut_ptr().cast(), b.len()) } as i64,
                "s",
            ))
        }),
        st("link", "link", 'W', true, |fx| {
            let (o, n) = (cstr("c"), cstr("l"));
            sys(unsafe { libc::linkat(fx.dir, o.as_ptr(), fx.dir, n.as_ptr(), 0) } as i64)
        }),
        st("rename", "rename", 'W', true, |fx| {
            let (o, n) = (cstr("l"), cstr("r"));
            sys(unsafe { libc::renameat(fx.dir, o.as_ptr(), fx.dir, n.as_ptr()) } as i64)
        }),
        st("unlink", "unlink", 'W', true, |fx| {
            sys(name_at(
                fx,
                |d, n| unsafe { libc::unlinkat(d, n, 0) } as i64,
                "r",
            ))
        }),
        st("rmdir", "rmdir", 'W', true, |fx| {
            sys(name_at(
                fx,
                |d, n| unsafe { libc::unlinkat(d, n, libc::AT_REMOVEDIR) } as i64,
                "d",
            ))
        }),
        st("fallocate", "fallocate", 'W', false, |fx| {
            sys(unsafe { libc::fallocate(fx.rw, 0, 0, FALLOC_BYTES) } as i64)
        }),
        st("seek_data", "seek", 'R', false, |fx| {
            // SAFETY: lseek(2) on the fixture's open descriptor; no memory is passed.
            sys(unsafe { libc::lseek(fx.rw, 0, libc::SEEK_DATA) })
        }),
        st("fibmap", "bmap", 'R', false, |fx| {
            // FIBMAP = _IO(0x00, 1); the block number goes in and the disk block comes out.
            const FIBMAP: libc::c_ulong = 1;
            let mut block: libc::c_int = 0;
            // SAFETY: FIBMAP reads and writes one int, `block`, which lives across the call.
            sys(unsafe { libc::ioctl(fx.rw, FIBMAP, &mut block) } as i64)
        }),
        st("punch_hole", "fallocate", 'W', false, |fx| {
            let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
            sys(unsafe { libc::fallocate(fx.rw, mode, 4096, 4096) } as i64)
        }),
        st("zero_range", "fallocate", 'W', false, |fx| {
            sys(unsafe { libc::fallocate(fx.rw, libc::FALLOC_FL_ZERO_RANGE, 0, 4096) } as i64)
        }),
        st("collapse_range", "fallocate", 'W', false, |fx| {
            sys(
                unsafe { libc::fallocate(fx.rw, libc::FALLOC_FL_COLLAPSE_RANGE, 4096, 4096) }
                    as i64,
            )
        }),
        st("insert_range", "fallocate", 'W', false, |fx| {
            sys(unsafe { libc::fallocate(fx.rw, libc::FALLOC_FL_INSERT_RANGE, 4096, 4096) } as i64)
        }),
        Step {
            also: &[("permission", 'R')],
            ..st("xattr_set", "xattr_set", 'W', false, |fx| {
                let n = cstr("user.mxfs");
                sys(
                    unsafe { libc::fsetxattr(fx.rw, n.as_ptr(), b"v".as_ptr().cast(), 1, 0) }
                        as i64,
                )
            })
        },
        Step {
            also: &[("permission", 'R')],
            ..st("xattr_get", "xattr_get", 'R', false, |fx| {
                let n = cstr("user.mxfs");
                let mut b = [0u8; 16];
                sys(
                    unsafe { libc::fgetxattr(fx.rw, n.as_ptr(), b.as_mut_ptr().cast(), b.len()) }
                        as i64,
                )
            })
        },
        st("xattr_list", "xattr_list", 'R', false, |fx| {
            let mut b = [0u8; 256];
            sys(unsafe { libc::flistxattr(fx.rw, b.as_mut_ptr().cast(), b.len()) } as i64)
        }),
        Step {
            also: &[("permission", 'R')],
            ..st("xattr_remove", "xattr_remove", 'W', false, |fx| {
                let n = cstr("user.mxfs");
                sys(unsafe { libc::fremovexattr(fx.rw, n.as_ptr()) } as i64)
            })
        },
        st("ioctl_getflags", "ioctl", 'R', false, |fx| {
            let mut flags: libc::c_long = 0;
            sys(unsafe { libc::ioctl(fx.rw, FS_IOC_GETFLAGS as _, &mut flags) } as i64)
        }),
        Step {
            // FS_IOC_SETFLAGS reads the old flags (fileattr_get) before it sets the new ones.
            also: &[("ioctl", 'R')],
            ..st("ioctl_setflags", "ioctl", 'W', false, |fx| {
                let mut flags: libc::c_long = 0;
                sys(unsafe { libc::ioctl(fx.rw, FS_IOC_GETFLAGS as _, &mut flags) } as i64)?;
                sys(unsafe { libc::ioctl(fx.rw, FS_IOC_SETFLAGS as _, &flags) } as i64)
            })
        },
    ]
}

/// Mapped-memory steps: a read fault after the page cache was dropped, then a write to the
/// read-only mapped page (page_mkwrite). Run between the measured reads by `measure_map`.
fn measure_map(
    fx: &Fixture,
    plain: bool,
    out: &mut Vec<(String, Result<String, String>)>,
) -> Result<(), String> {
    // SAFETY: drops this node's cached pages of the file, so the read below must fault.
    unsafe { libc::posix_fadvise(fx.rw, 0, 0, libc::POSIX_FADV_DONTNEED) };
    let map = Mapping::new(fx.rw)?;
    let before = read_counts()?;
    // SAFETY: `map` maps BLOCK_BYTES readable bytes.
    let byte = unsafe { std::ptr::read_volatile(map.0) };
    let mid = read_counts()?;
    // SAFETY: `map` is a shared writable mapping of BLOCK_BYTES.
    unsafe { std::ptr::write_volatile(map.0, byte.wrapping_add(1)) };
    let after = read_counts()?;
    drop(map);
    out.push((
        "fault".into(),
        judge(&delta(&before, &mid), "fault", 'R', false, &[], plain),
    ));
    out.push((
        "page_mkwrite".into(),
        judge(&delta(&mid, &after), "page_mkwrite", 'W', false, &[], plain),
    ));
    Ok(())
}

/// Checks one step's difference. On plain XFS it must be empty.
fn judge(
    d: &Counts,
    kind: &str,
    intent: char,
    path_walk: bool,
    also: &[(&str, char)],
    plain: bool,
) -> Result<String, String> {
    if plain {
        return if d.is_empty() {
            Ok(show(d))
        } else {
            Err(show(d))
        };
    }
    let own = d.get(&(kind.to_string(), intent)).copied();
    let unbalanced = d.values().any(|(b, e)| b != e);
    let others: Vec<_> = d
        .keys()
        .filter(|(k, i)| {
            !(k == kind && *i == intent)
                && !(path_walk && *i == 'R' && (k == "permission" || k == "lookup"))
                // A permission check may read an ACL the inode has not cached.
                && !(*i == 'R' && k == "acl_get")
                && !also.iter().any(|(ak, ai)| k == ak && i == ai)
        })
        .collect();
    match own {
        Some((b, _)) if b >= 1 && !unbalanced && others.is_empty() => Ok(show(d)),
        _ => Err(format!("want {kind} {intent}; got {}", show(d))),
    }
}

/// `callouts DIR [--plain]`: runs every step on DIR; prints one `MXFS-RESULT callout_<step>`
/// line per step on an mxfs mount, or one `plain_xfs_no_callouts` line on a plain mount.
///
/// The steps run with `spec_inline=0`, so that getattr and the path walk's permission checks
/// reach the module and are counted; then `speculation_inline` checks them with it on.
pub(crate) fn cmd_callouts(root: &str, plain: bool) -> Result<std::process::ExitCode, String> {
    let mut fx = Fixture::new(root)?;
    let mut results: Vec<(String, Result<String, String>)> = Vec::new();
    let all = steps();
    if !plain {
        set_spec_inline(false)?;
    }
    for s in &all {
        if s.name == "setattr_truncate" {
            // Between the data steps and truncate: the mapped-memory steps.
            measure_map(&fx, plain, &mut results)?;
        }
        let before = read_counts()?;
        let rc = (s.run)(&mut fx);
        let after = read_counts()?;
        let r = match rc {
            Err(e) => Err(format!(
                "{} failed: {}",
                s.name,
                Error::from_raw_os_error(e)
            )),
            Ok(_) => judge(
                &delta(&before, &after),
                s.kind,
                s.intent,
                s.path_walk,
                s.also,
                plain,
            ),
        };
        results.push((s.name.to_string(), r));
    }
    if !plain {
        // A refused ioctl (kmod/patches 0007): EOPNOTSUPP and no callout.
        let mut range = [0u64, u64::MAX, 0];
        let before = read_counts()?;
        // SAFETY: FITRIM reads and writes one struct fstrim_range, which `range` mirrors.
        let rc = sys(unsafe { libc::ioctl(fx.rw, FITRIM as _, range.as_mut_ptr()) } as i64);
        let d = delta(&before, &read_counts()?);
        let r = match rc {
            Err(libc::EOPNOTSUPP) if d.is_empty() => Ok("FITRIM: EOPNOTSUPP, no callouts".into()),
            other => Err(format!("FITRIM: {other:?}, {}", show(&d))),
        };
        results.push(("fitrim_refused".into(), r));
    }
    results.push(("noatime".into(), check_noatime(&fx, plain)?));
    if !plain {
        set_spec_inline(true)?;
        results.push(("speculation_inline".into(), check_spec_inline(&fx)?));
    }
    let mut failed = 0;
    if plain {
        let bad: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
        failed = bad.len();
        let detail = if bad.is_empty() {
            format!("{} operations on plain XFS, no callouts", results.len())
        } else {
            bad.iter()
                .map(|(n, r)| format!("{n}: {}", r.as_ref().err().map_or("", |s| s.as_str())))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let v = if bad.is_empty() { "PASS" } else { "FAIL" };
        println!("MXFS-RESULT plain_xfs_no_callouts {v} {detail}");
    } else {
        for (n, r) in &results {
            match r {
                Ok(d) => println!("MXFS-RESULT callout_{n} PASS {d}"),
                Err(d) => {
                    failed += 1;
                    println!("MXFS-RESULT callout_{n} FAIL {d}");
                }
            }
        }
    }
    Ok(if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// A read must not write the access time on an mxfs mount (kmod/patches 0004): set atime to the
/// epoch, read, and look again. Plain XFS (relatime) updates it, which the plain run checks too,
/// so this check can tell the two apart.
fn check_noatime(fx: &Fixture, plain: bool) -> Result<Result<String, String>, String> {
    let epoch = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
    ];
    let mut b = [0u8; 16];
    let mut s: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: futimens reads two timespecs, pread fills `b`, fstat writes one struct stat.
    let atime = unsafe {
        if libc::futimens(fx.rw, epoch.as_ptr()) != 0
            || libc::pread(fx.rw, b.as_mut_ptr().cast(), b.len(), 0) < 0
            || libc::fstat(fx.rw, &mut s) != 0
        {
            return Err(format!("noatime: {}", Error::last_os_error()));
        }
        s.st_atime
    };
    let detail = format!("atime after a read: {atime}");
    Ok(if (atime == 0) != plain {
        Ok(detail)
    } else {
        Err(detail)
    })
}

/// Writes a boolean module parameter of mxfs.ko (`op_fail_eio`, `spec_inline`).
fn set_param(path: &str, on: bool) -> Result<(), String> {
    std::fs::write(path, if on { "1" } else { "0" }).map_err(|e| format!("{path}: {e}"))
}

fn set_spec_inline(on: bool) -> Result<(), String> {
    set_param(SPEC_PATH, on)
}

/// getattr and permission callouts in a difference.
fn spec_callouts(d: &Counts) -> i64 {
    ["getattr", "permission"]
        .iter()
        .map(|k| d.get(&(k.to_string(), 'R')).map_or(0, |(b, _)| *b))
        .sum()
}

/// `speculation_inline` (kmod/patches 0023): with `spec_inline=1` and the lock cached, XFS
/// checks getattr and the path walk's permission checks against the module's ticket itself:
/// SPEC_STATS fstats and path stats of a file make at most SPEC_CALLOUTS_MAX callouts, and see
/// a chmod made in between; with `spec_inline=0` every fstat calls out again.
fn check_spec_inline(fx: &Fixture) -> Result<Result<String, String>, String> {
    let name = cstr("spec");
    // SAFETY: openat with a NUL-terminated name; the descriptor is closed below.
    let fd = unsafe { libc::openat(fx.dir, name.as_ptr(), libc::O_CREAT | libc::O_RDWR, 0o644) };
    if fd < 0 {
        return Err(format!(
            "speculation_inline: create: {}",
            Error::last_os_error()
        ));
    }
    let stat_both = |want_mode: u32| -> Result<(), String> {
        // SAFETY: struct stat is plain data, for which all zeros is a valid value.
        let mut a: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut b: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat and fstatat write one struct stat each; the name is NUL-terminated.
        let rc =
            unsafe { libc::fstat(fd, &mut a) | libc::fstatat(fx.dir, name.as_ptr(), &mut b, 0) };
        if rc != 0 {
            return Err(format!("stat: {}", Error::last_os_error()));
        }
        let modes = (a.st_mode & 0o7777, b.st_mode & 0o7777);
        if modes != (want_mode, want_mode) {
            return Err(format!(
                "stat saw modes {:o} and {:o}, want {want_mode:o}",
                modes.0, modes.1
            ));
        }
        Ok(())
    };
    let run = || -> Result<String, String> {
        // The first ones publish the tickets.
        stat_both(0o644)?;
        let c0 = read_counts()?;
        for _ in 0..SPEC_STATS / 2 {
            stat_both(0o644)?;
        }
        // SAFETY: fchmod of a descriptor this function owns.
        if unsafe { libc::fchmod(fd, 0o600) } != 0 {
            return Err(format!("fchmod: {}", Error::last_os_error()));
        }
        for _ in 0..SPEC_STATS / 2 {
            stat_both(0o600)?;
        }
        let with = spec_callouts(&delta(&c0, &read_counts()?));
        set_spec_inline(false)?;
        let c1 = read_counts()?;
        for _ in 0..SPEC_OFF_STATS {
            // SAFETY: struct stat is plain data, for which all zeros is a valid value.
            let mut a: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: fstat writes one struct stat.
            if unsafe { libc::fstat(fd, &mut a) } != 0 {
                return Err(format!("fstat: {}", Error::last_os_error()));
            }
        }
        let without = spec_callouts(&delta(&c1, &read_counts()?));
        set_spec_inline(true)?;
        let detail = format!(
            "{SPEC_STATS} rounds of an fstat and a path stat with tickets made {with} getattr/permission \
             callouts (at most {SPEC_CALLOUTS_MAX}) and saw the chmod; {SPEC_OFF_STATS} fstats \
             with spec_inline=0 made {without}"
        );
        if with <= SPEC_CALLOUTS_MAX && without >= SPEC_OFF_STATS as i64 {
            Ok(detail)
        } else {
            Err(detail)
        }
    };
    let r = run();
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(fd) };
    let _ = set_spec_inline(true);
    Ok(r)
}

fn set_fail(on: bool) -> Result<(), String> {
    set_param(FAIL_PATH, on)
}

/// The state a failed operation must leave alone: size, mtime, ctime and the first two blocks.
fn snapshot(fx: &mut Fixture) -> Result<(i64, i64, i64, Vec<u8>, bool), String> {
    let mut s: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes one struct stat.
    sys(unsafe { libc::fstat(fx.rw, &mut s) } as i64).map_err(|e| format!("fstat: errno {e}"))?;
    let mut data = vec![0u8; 2 * BLOCK_BYTES];
    // SAFETY: reads into a buffer of exactly that length.
    let n = sys(unsafe { libc::pread(fx.rw, data.as_mut_ptr().cast(), data.len(), 0) } as i64)
        .map_err(|e| format!("pread: errno {e}"))?;
    data.truncate(n as usize);
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let gone = name_at(
        fx,
        |d, n| unsafe { libc::fstatat(d, n, &mut st, 0) } as i64,
        "d2",
    ) < 0;
    Ok((
        s.st_size,
        s.st_mtime * 1_000_000_000 + s.st_mtime_nsec,
        s.st_ctime * 1_000_000_000 + s.st_ctime_nsec,
        data,
        gone,
    ))
}

/// `callouts-fail DIR`: with op_fail_eio set, a write, a read and a mkdir on DIR fail with EIO
/// and leave the file system as it was. Prints `mxfs_fail_write_eio`, `mxfs_fail_read_eio` and
/// `mxfs_fail_unchanged` result lines.
pub(crate) fn cmd_callouts_fail(root: &str) -> Result<std::process::ExitCode, String> {
    let mut fx = Fixture::new(root)?;
    let before = snapshot(&mut fx)?;
    let counts0 = read_counts()?;
    set_fail(true)?;
    // SAFETY: as in `steps`.
    let w = sys(unsafe { libc::pwrite(fx.rw, fx.buf.as_ptr().cast(), BLOCK_BYTES, 0) } as i64);
    let r = sys(unsafe { libc::pread(fx.rw, fx.buf.as_mut_ptr().cast(), BLOCK_BYTES, 0) } as i64);
    let m = sys(name_at(
        &fx,
        |d, n| unsafe { libc::mkdirat(d, n, 0o755) } as i64,
        "d2",
    ));
    set_fail(false)?;
    let d = delta(&counts0, &read_counts()?);
    let after = snapshot(&mut fx)?;
    let mut failed = 0;
    let mut line = |name: &str, ok: bool, detail: String| {
        failed += usize::from(!ok);
        println!(
            "MXFS-RESULT {name} {} {detail}",
            if ok { "PASS" } else { "FAIL" }
        );
    };
    let eio = |r: &Result<i64, i32>| matches!(r, Err(libc::EIO));
    line(
        "mxfs_fail_write_eio",
        eio(&w),
        format!("pwrite: {w:?} (want Err(EIO={}))", libc::EIO),
    );
    line(
        "mxfs_fail_read_eio",
        eio(&r),
        format!("pread: {r:?}, mkdir: {m:?}"),
    );
    let same = before == after && eio(&m);
    let no_end = d.values().all(|(_, e)| *e == 0);
    line(
        "mxfs_fail_unchanged",
        same && no_end,
        format!(
            "size {} -> {}, data {}, d2 absent {}; callouts {} (no op_end)",
            before.0,
            after.0,
            if before.3 == after.3 {
                "same"
            } else {
                "CHANGED"
            },
            after.4,
            show(&d)
        ),
    );
    Ok(if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}
