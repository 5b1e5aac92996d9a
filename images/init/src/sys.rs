//! The seam between PID-1 logic and the kernel: the [`Sys`] trait lists every
//! host interaction the init makes, [`RealSys`] performs them.
//!
//! Every other module takes `&dyn Sys`, so the logic is unit-tested with a
//! recording fake (see `testutil.rs`) without a VM; this is youki's
//! `Syscall` idea. Non-goals: a general syscall wrapper; only what the init
//! needs is here.

// Raw syscalls (mount, finit_module, reboot, sigtimedwait, ioctl, mknod,
// socket options, rtnetlink) have no safe std equivalent; this is the only
// module allowed `unsafe`, and each block only passes owned, NUL-terminated
// buffers or zeroed plain structs.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::net::{IpAddr, UdpSocket};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::net::config::Cidr;
use crate::net::dhcp::Transport;
use crate::net::netlink;
use crate::output;

/// What `reboot(2)` should do at the end of shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Poweroff,
    Reboot,
    Halt,
}

/// Every kernel and host interaction the init makes.
pub trait Sys {
    /// Print one line to the console.
    fn log(&self, msg: &str);
    /// `mount(2)`; `data` empty means none.
    fn mount(
        &self,
        source: &str,
        target: &str,
        fstype: &str,
        flags: u64,
        data: &str,
    ) -> io::Result<()>;
    fn umount(&self, target: &str) -> io::Result<()>;
    fn mkdir_all(&self, path: &str, mode: u32) -> io::Result<()>;
    fn write_file(&self, path: &str, data: &[u8]) -> io::Result<()>;
    fn read_file(&self, path: &str) -> io::Result<Vec<u8>>;
    fn exists(&self, path: &str) -> bool;
    /// Entry names of a directory, sorted bytewise.
    fn list_dir(&self, path: &str) -> io::Result<Vec<String>>;
    fn set_hostname(&self, name: &str) -> io::Result<()>;
    /// Bring the loopback interface `lo` up (SIOCSIFFLAGS).
    fn loopback_up(&self) -> io::Result<()>;
    /// `finit_module(2)`; `compressed` asks the kernel to decompress.
    fn finit_module(&self, path: &str, compressed: bool) -> io::Result<()>;
    /// `uname -r`.
    fn kernel_release(&self) -> io::Result<String>;
    /// `statfs("/").f_type`.
    fn root_fs_magic(&self) -> io::Result<i64>;
    /// Reopen fds 0, 1, 2 on `/dev/console`.
    fn console_stdio(&self) -> io::Result<()>;
    /// Make ctrl-alt-del send SIGINT to PID 1 instead of rebooting at once.
    fn disable_cad(&self) -> io::Result<()>;
    /// Copy the tree at `from` into `to`, deleting the source as it goes.
    fn copy_root(&self, from: &str, to: &str) -> io::Result<()>;
    fn chdir(&self, path: &str) -> io::Result<()>;
    fn chroot(&self, path: &str) -> io::Result<()>;
    /// Replace this process with `path`, `env` added; returns only on error.
    fn exec(&self, path: &str, env: (&str, &str)) -> io::Error;
    fn env_var(&self, key: &str) -> Option<String>;
    /// Start `argv` with stdout+stderr forwarded as `[name] ` lines to the
    /// console and `/var/log/name.log`; returns the pid.
    fn spawn(&self, argv: &[String], name: &str) -> io::Result<u32>;
    /// As [`Sys::spawn`] but waits; returns the exit code (128+N if killed).
    fn run(&self, argv: &[String], name: &str) -> io::Result<i32>;
    /// Run `argv` with its output discarded (runc kill/delete at shutdown,
    /// whose complaints about a container already gone are noise), wait,
    /// return the exit code.
    fn run_quiet(&self, argv: &[String]) -> io::Result<i32>;
    /// Reap every exited child without blocking: `(pid, exit code)`.
    fn reap(&self) -> Vec<(u32, i32)>;
    /// Wait up to `timeout` for one of the init's signals.
    fn wait_signal(&self, timeout: Duration) -> Option<i32>;
    /// Monotonic time since the init started.
    fn now(&self) -> Duration;
    fn sync(&self);
    /// `kill(-1, sig)`: every process but PID 1.
    fn kill_all(&self, sig: i32);
    /// `reboot(2)`; returns only on error.
    fn reboot(&self, action: Action) -> io::Error;
    /// Watch `/dev/input/event*` for the power button (SIGPWR to PID 1 on
    /// a press); returns how many devices are watched.
    fn watch_power_button(&self) -> usize;

    // Stage 1 (`stage1`, `locate`, `loopdev`).

    /// Up to `len` bytes of `path` from byte `offset`; fewer only at its end.
    fn read_at(&self, path: &str, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// `stat(2)` size of `path` in bytes.
    fn file_size(&self, path: &str) -> io::Result<u64>;
    /// `mknod(2)` a block device node, mode 0600.
    fn mknod_block(&self, path: &str, major: u32, minor: u32) -> io::Result<()>;
    /// `LOOP_CTL_GET_FREE` on `/dev/loop-control`: a free loop device's number.
    fn loop_get_free(&self) -> io::Result<u32>;
    /// `LOOP_CONFIGURE` (Linux 5.8+): attach `backing` to the loop device
    /// `dev`, read-only, in one call.
    fn loop_configure(&self, dev: &str, backing: &str) -> io::Result<()>;
    /// The pre-5.8 way: `LOOP_SET_FD` then `LOOP_SET_STATUS64`, read-only.
    fn loop_set_fd(&self, dev: &str, backing: &str) -> io::Result<()>;
    /// Delete everything under `root` that is on `root`'s filesystem,
    /// without entering other mounts (busybox `switch_root`'s
    /// `delete_contents`); best effort.
    fn delete_same_fs(&self, root: &str) -> io::Result<()>;
    fn sleep(&self, d: Duration);
    /// Stop for good (PID 1 must never exit); the real one never returns.
    fn halt(&self);

    // net

    /// Set link `ifname` up or down (SIOCSIFFLAGS).
    fn link_set_up(&self, ifname: &str, up: bool) -> io::Result<()>;
    /// Add (or replace) an IPv4 or IPv6 address on `ifname` (RTM_NEWADDR).
    fn addr_add(&self, ifname: &str, addr: &Cidr) -> io::Result<()>;
    /// Remove an address from `ifname` (RTM_DELADDR).
    fn addr_del(&self, ifname: &str, addr: &Cidr) -> io::Result<()>;
    /// Add a route to `to` out of `ifname`, through `via` or on-link
    /// (RTM_NEWROUTE, main table); EEXIST if it is already there.
    fn route_add(&self, ifname: &str, to: &Cidr, via: Option<IpAddr>) -> io::Result<()>;
    /// A DHCP client socket on `ifname`: UDP 0.0.0.0:68 with
    /// SO_BINDTODEVICE and SO_BROADCAST.
    fn dhcp_transport(&self, ifname: &str) -> io::Result<Box<dyn Transport + '_>>;
    // config (cloud-config `write_files`, `users`, `timezone`).

    /// `chmod(2)`: set the permission bits (`0o7777` mask) of `path`.
    fn chmod(&self, path: &str, mode: u32) -> io::Result<()>;
    /// `chown(2)`, following symlinks.
    fn chown(&self, path: &str, uid: u32, gid: u32) -> io::Result<()>;
    /// Make `link` a symlink to `target`, replacing a non-directory already
    /// at `link` (`ln -sf`).
    fn symlink(&self, target: &str, link: &str) -> io::Result<()>;
    /// Append `data` to `path`, creating it (mode 0644 before umask) if absent.
    fn append_file(&self, path: &str, data: &[u8]) -> io::Result<()>;
}

/// The signals PID 1 handles; blocked and taken with `sigtimedwait`.
pub const SIGNALS: [i32; 6] = [
    libc::SIGCHLD,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGPWR,
];

/// The real kernel.
pub struct RealSys {
    start: Instant,
}

impl RealSys {
    /// Blocks [`SIGNALS`] in this thread (threads spawned later inherit the
    /// mask; children get an empty mask from std's `Command`).
    pub fn new() -> RealSys {
        let set = sigset();
        // SAFETY: `set` is an initialised sigset_t; null old-set is allowed.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        RealSys {
            start: Instant::now(),
        }
    }
}

impl Default for RealSys {
    fn default() -> Self {
        RealSys::new()
    }
}

fn sigset() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise a zeroed plain struct.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in string"))
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `mknod(2)`, for the switch-root copy of device nodes and fifos.
pub fn mknod(path: &Path, mode: u32, rdev: u64) -> io::Result<()> {
    let p = cstr(&path.to_string_lossy())?;
    // SAFETY: `p` is a valid NUL-terminated path.
    check(unsafe { libc::mknod(p.as_ptr(), mode, rdev) })
}

/// Exit code of a finished child, shells' convention for signals.
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        _ => -1,
    }
}

fn console_and_log(name: &str) -> Option<File> {
    let _ = std::fs::create_dir_all("/var/log");
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(format!("/var/log/{name}.log"))
        .ok()
}

/// Spawn with stdout+stderr on one pipe drained by a forwarding thread.
fn spawn_forwarded(
    argv: &[String],
    name: &str,
) -> io::Result<(std::process::Child, std::thread::JoinHandle<()>)> {
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let (reader, writer) = io::pipe()?;
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer);
    let child = cmd.spawn()?;
    // Drop our copies of the write end so the reader sees EOF at exit.
    drop(cmd);
    let name = name.to_string();
    let handle = std::thread::spawn(move || {
        let mut log = console_and_log(&name);
        let mut console = io::stderr();
        let log_w: &mut dyn Write = match log.as_mut() {
            Some(f) => f,
            None => &mut io::sink(),
        };
        let _ = output::forward(BufReader::new(reader), &name, &mut console, log_w);
    });
    Ok((child, handle))
}

impl Sys for RealSys {
    fn log(&self, msg: &str) {
        let _ = writeln!(io::stderr(), "{msg}");
    }

    fn mount(
        &self,
        source: &str,
        target: &str,
        fstype: &str,
        flags: u64,
        data: &str,
    ) -> io::Result<()> {
        let (s, t, f, d) = (cstr(source)?, cstr(target)?, cstr(fstype)?, cstr(data)?);
        let dp = if data.is_empty() {
            std::ptr::null()
        } else {
            d.as_ptr().cast()
        };
        let fp = if fstype.is_empty() {
            std::ptr::null()
        } else {
            f.as_ptr()
        };
        // SAFETY: all pointers are NUL-terminated strings or null.
        check(unsafe { libc::mount(s.as_ptr(), t.as_ptr(), fp, flags as libc::c_ulong, dp) })
    }

    fn umount(&self, target: &str) -> io::Result<()> {
        let t = cstr(target)?;
        // SAFETY: `t` is NUL-terminated.
        check(unsafe { libc::umount2(t.as_ptr(), 0) })
    }

    fn mkdir_all(&self, path: &str, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
    }

    fn write_file(&self, path: &str, data: &[u8]) -> io::Result<()> {
        std::fs::write(path, data)
    }

    fn read_file(&self, path: &str) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        File::open(path)?.read_to_end(&mut v)?;
        Ok(v)
    }

    fn exists(&self, path: &str) -> bool {
        Path::new(path).exists()
    }

    fn list_dir(&self, path: &str) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in std::fs::read_dir(path)? {
            names.push(e?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn set_hostname(&self, name: &str) -> io::Result<()> {
        // SAFETY: pointer and length describe `name`'s bytes.
        check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })
    }

    fn loopback_up(&self) -> io::Result<()> {
        set_link_flags("lo", true)
    }

    fn finit_module(&self, path: &str, compressed: bool) -> io::Result<()> {
        let f = File::open(path)?;
        // MODULE_INIT_COMPRESSED_FILE (include/uapi/linux/module.h, 6.2+).
        let flags: libc::c_int = if compressed { 4 } else { 0 };
        let params: &CStr = c"";
        // SAFETY: fd is open for the call; params is a NUL-terminated string.
        let r = unsafe {
            libc::syscall(
                libc::SYS_finit_module,
                f.as_raw_fd(),
                params.as_ptr(),
                flags,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn kernel_release(&self) -> io::Result<String> {
        // SAFETY: utsname is a plain struct filled by uname(2).
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        check(unsafe { libc::uname(&mut u) })?;
        // SAFETY: the kernel NUL-terminates `release`.
        let rel = unsafe { CStr::from_ptr(u.release.as_ptr()) };
        Ok(rel.to_string_lossy().into_owned())
    }

    fn root_fs_magic(&self) -> io::Result<i64> {
        // SAFETY: statfs fills a zeroed plain struct; the path is a literal.
        let mut s: libc::statfs = unsafe { std::mem::zeroed() };
        check(unsafe { libc::statfs(c"/".as_ptr(), &mut s) })?;
        Ok(s.f_type as i64)
    }

    fn console_stdio(&self) -> io::Result<()> {
        // O_NOCTTY: PID 1 must not take the console as its controlling
        // terminal, or a getty's TIOCSCTTY on the same tty fails (EPERM)
        // and the getty exits; systemd and busybox init do the same.
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open("/dev/console")?;
        // With no console at boot fds 0..2 are closed and the open may have
        // landed on one of them: then it must stay open after the dup2s.
        let cfd = f.into_raw_fd();
        for fd in (0..3).filter(|&fd| fd != cfd) {
            // SAFETY: both fds are valid; dup2 onto 0..2 is the point.
            check(unsafe { libc::dup2(cfd, fd) })?;
        }
        if cfd > 2 {
            // SAFETY: cfd is ours and no longer used.
            unsafe { libc::close(cfd) };
        }
        Ok(())
    }

    fn disable_cad(&self) -> io::Result<()> {
        // SAFETY: a plain reboot(2) command with no pointers.
        check(unsafe { libc::reboot(libc::RB_DISABLE_CAD) })
    }

    fn copy_root(&self, from: &str, to: &str) -> io::Result<()> {
        crate::copy::copy_tree(Path::new(from), Path::new(to), true)
    }

    fn chdir(&self, path: &str) -> io::Result<()> {
        std::env::set_current_dir(path)
    }

    fn chroot(&self, path: &str) -> io::Result<()> {
        std::os::unix::fs::chroot(path)
    }

    fn exec(&self, path: &str, env: (&str, &str)) -> io::Error {
        Command::new(path).env(env.0, env.1).exec()
    }

    fn env_var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }

    fn spawn(&self, argv: &[String], name: &str) -> io::Result<u32> {
        let (child, _thread) = spawn_forwarded(argv, name)?;
        // Dropping `Child` neither kills nor waits: `reap` collects it.
        Ok(child.id())
    }

    fn run(&self, argv: &[String], name: &str) -> io::Result<i32> {
        let (mut child, thread) = spawn_forwarded(argv, name)?;
        let status = child.wait()?;
        let _ = thread.join();
        Ok(exit_code(status))
    }

    fn run_quiet(&self, argv: &[String]) -> io::Result<i32> {
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
        Ok(exit_code(
            Command::new(prog)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?,
        ))
    }

    fn reap(&self) -> Vec<(u32, i32)> {
        let mut out = Vec::new();
        loop {
            let mut status: libc::c_int = 0;
            // SAFETY: status is a valid out-pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return out;
            }
            out.push((pid as u32, exit_code(ExitStatus::from_raw(status))));
        }
    }

    fn wait_signal(&self, timeout: Duration) -> Option<i32> {
        let set = sigset();
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as _,
        };
        // SAFETY: set and ts are initialised; info may be null.
        let s = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
        (s > 0).then_some(s)
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn sync(&self) {
        // SAFETY: no arguments.
        unsafe { libc::sync() };
    }

    fn kill_all(&self, sig: i32) {
        // SAFETY: plain kill(2).
        unsafe { libc::kill(-1, sig) };
    }

    fn reboot(&self, action: Action) -> io::Error {
        let cmd = match action {
            Action::Poweroff => libc::RB_POWER_OFF,
            Action::Reboot => libc::RB_AUTOBOOT,
            Action::Halt => libc::RB_HALT_SYSTEM,
        };
        // SAFETY: a plain reboot(2) command with no pointers.
        unsafe { libc::reboot(cmd) };
        io::Error::last_os_error()
    }

    fn watch_power_button(&self) -> usize {
        let mut n = 0;
        for name in self.list_dir("/dev/input").unwrap_or_default() {
            if !name.starts_with("event") {
                continue;
            }
            let Ok(f) = File::open(format!("/dev/input/{name}")) else {
                continue;
            };
            std::thread::spawn(move || {
                crate::power::watch(f, || {
                    // SAFETY: plain kill(2) to ourselves; SIGPWR is blocked
                    // and taken by `wait_signal`.
                    unsafe { libc::kill(libc::getpid(), libc::SIGPWR) };
                })
            });
            n += 1;
        }
        n
    }

    fn read_at(&self, path: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let f = open_ro(path)?;
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match f.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(got);
        Ok(buf)
    }

    fn file_size(&self, path: &str) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }

    fn mknod_block(&self, path: &str, major: u32, minor: u32) -> io::Result<()> {
        mknod(
            Path::new(path),
            libc::S_IFBLK | 0o600,
            libc::makedev(major, minor),
        )
    }

    fn loop_get_free(&self) -> io::Result<u32> {
        let ctl = open_ro("/dev/loop-control")?;
        // SAFETY: LOOP_CTL_GET_FREE takes no argument.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as u32)
    }

    fn loop_configure(&self, dev: &str, backing: &str) -> io::Result<()> {
        // Both opened read-only: the kernel then marks the device read-only
        // whatever the flags say (drivers/block/loop.c, loop_configure).
        let file = open_ro(backing)?;
        let loopdev = open_ro(dev)?;
        let cfg = LoopConfig {
            fd: file.as_raw_fd() as u32,
            block_size: 0,
            info: loop_info(backing),
            reserved: [0; 8],
        };
        // SAFETY: `cfg` is a valid loop_config; the fds are open.
        check(unsafe { libc::ioctl(loopdev.as_raw_fd(), LOOP_CONFIGURE as _, &cfg) })
    }

    fn loop_set_fd(&self, dev: &str, backing: &str) -> io::Result<()> {
        let file = open_ro(backing)?;
        let loopdev = open_ro(dev)?;
        let fd = loopdev.as_raw_fd();
        // SAFETY: LOOP_SET_FD takes the backing fd as its argument.
        check(unsafe { libc::ioctl(fd, LOOP_SET_FD as _, file.as_raw_fd() as libc::c_ulong) })?;
        let info = loop_info(backing);
        // SAFETY: `info` is a valid loop_info64.
        if let Err(e) = check(unsafe { libc::ioctl(fd, LOOP_SET_STATUS64 as _, &info) }) {
            // SAFETY: LOOP_CLR_FD takes no argument; detach what we attached.
            unsafe { libc::ioctl(fd, LOOP_CLR_FD as _, 0) };
            return Err(e);
        }
        Ok(())
    }

    fn delete_same_fs(&self, root: &str) -> io::Result<()> {
        crate::wipe::delete_same_fs(Path::new(root))
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }

    fn halt(&self) {
        halt_forever();
    }

    // net

    fn link_set_up(&self, ifname: &str, up: bool) -> io::Result<()> {
        set_link_flags(ifname, up)
    }

    fn addr_add(&self, ifname: &str, addr: &Cidr) -> io::Result<()> {
        let index = if_index(ifname)?;
        netlink_request(&netlink::new_addr(NL_SEQ, index, addr))
    }

    fn addr_del(&self, ifname: &str, addr: &Cidr) -> io::Result<()> {
        let index = if_index(ifname)?;
        netlink_request(&netlink::del_addr(NL_SEQ, index, addr))
    }

    fn route_add(&self, ifname: &str, to: &Cidr, via: Option<IpAddr>) -> io::Result<()> {
        let index = if_index(ifname)?;
        netlink_request(&netlink::new_route(NL_SEQ, index, to, via.as_ref()))
    }

    fn dhcp_transport(&self, ifname: &str) -> io::Result<Box<dyn Transport + '_>> {
        Ok(Box::new(dhcp_socket(ifname)?))
    }

    // config

    fn chmod(&self, path: &str, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
    }

    fn chown(&self, path: &str, uid: u32, gid: u32) -> io::Result<()> {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
    }

    fn symlink(&self, target: &str, link: &str) -> io::Result<()> {
        match std::os::unix::fs::symlink(target, link) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                std::fs::remove_file(link)?;
                std::os::unix::fs::symlink(target, link)
            }
            r => r,
        }
    }

    fn append_file(&self, path: &str, data: &[u8]) -> io::Result<()> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?
            .write_all(data)
    }
}

fn socket(domain: libc::c_int, kind: libc::c_int, proto: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); a non-negative result is a new fd we own.
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is open and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `struct ifreq` naming `ifname`; InvalidInput if it does not fit IFNAMSIZ.
fn ifreq(ifname: &str) -> io::Result<libc::ifreq> {
    if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ || ifname.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {ifname:?}"),
        ));
    }
    // SAFETY: ifreq is a plain C struct; zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(ifname.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(req)
}

/// SIOCGIFFLAGS, set or clear IFF_UP, SIOCSIFFLAGS (netdevice(7)).
fn set_link_flags(ifname: &str, up: bool) -> io::Result<()> {
    let mut req = ifreq(ifname)?;
    let sock = socket(libc::AF_INET, libc::SOCK_DGRAM, 0)?;
    let fd = sock.as_raw_fd();
    // SAFETY: `req` is a valid ifreq naming the link; `ifru_flags` is the
    // union member SIOC[GS]IFFLAGS read and write.
    unsafe {
        check(libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut req))?;
        if up {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        } else {
            req.ifr_ifru.ifru_flags &= !(libc::IFF_UP as libc::c_short);
        }
        check(libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &req))
    }
}

fn if_index(ifname: &str) -> io::Result<u32> {
    let name = cstr(ifname)?;
    // SAFETY: `name` is NUL-terminated.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(index)
}

/// Sequence number of every request: one request per socket.
const NL_SEQ: u32 = 1;

/// Send one rtnetlink request (built with `NL_SEQ`) on a fresh socket and
/// wait for the kernel's acknowledgement.
fn netlink_request(msg: &[u8]) -> io::Result<()> {
    let sock = socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE)?;
    let fd = sock.as_raw_fd();
    // SAFETY: sockaddr_nl is a plain struct; zero (pid 0: the kernel) is
    // valid. `msg` is a live buffer of the given length.
    let sent = unsafe {
        let mut to: libc::sockaddr_nl = std::mem::zeroed();
        to.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        libc::sendto(
            fd,
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&to as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 8192];
    loop {
        // SAFETY: `buf` is a live, writable buffer of its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if netlink::parse_ack(&buf[..n as usize], NL_SEQ)? {
            return Ok(());
        }
    }
}

fn setsockopt(fd: libc::c_int, opt: libc::c_int, val: &[u8]) -> io::Result<()> {
    // SAFETY: `val` is a live buffer of the given length.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            val.as_ptr().cast(),
            val.len() as libc::socklen_t,
        )
    })
}

/// UDP 0.0.0.0:68 bound to `ifname`: broadcasts leave through that link
/// with source 0.0.0.0, and broadcast replies arrive before it has an
/// address. SO_REUSEADDR lets one socket per link share port 68.
fn dhcp_socket(ifname: &str) -> io::Result<UdpSocket> {
    ifreq(ifname)?;
    let sock = socket(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_UDP)?;
    let fd = sock.as_raw_fd();
    let one = 1i32.to_ne_bytes();
    setsockopt(fd, libc::SO_REUSEADDR, &one)?;
    setsockopt(fd, libc::SO_BROADCAST, &one)?;
    setsockopt(fd, libc::SO_BINDTODEVICE, ifname.as_bytes())?;
    // SAFETY: sockaddr_in is a plain struct; zero is INADDR_ANY.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = 68u16.to_be();
    // SAFETY: `sa` is a valid sockaddr_in of the given size.
    check(unsafe {
        libc::bind(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    })?;
    Ok(UdpSocket::from(sock))
}

// include/uapi/linux/loop.h
const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_NAME_SIZE: usize = 64;

/// `struct loop_info64` (include/uapi/linux/loop.h), 232 bytes.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config`, 304 bytes.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);
const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

/// Read-only status naming `backing` (truncated, as losetup does).
fn loop_info(backing: &str) -> LoopInfo64 {
    // SAFETY: LoopInfo64 is plain integers and byte arrays: zero is valid.
    let mut info: LoopInfo64 = unsafe { std::mem::zeroed() };
    info.lo_flags = LO_FLAGS_READ_ONLY;
    for (d, s) in info
        .lo_file_name
        .iter_mut()
        .zip(backing.bytes().take(LO_NAME_SIZE - 1))
    {
        *d = s;
    }
    info
}

fn open_ro(path: &str) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

/// Block forever (PID 1 must never exit: that panics the kernel).
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: pause(2) has no arguments.
        unsafe { libc::pause() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn real_exit_codes_and_signals() {
        let sys = RealSys::new();
        assert_eq!(sys.run_quiet(&argv(&["sh", "-c", "exit 3"])).unwrap(), 3);
        assert_eq!(
            sys.run_quiet(&argv(&["sh", "-c", "kill -9 $$"])).unwrap(),
            137
        );
        assert!(sys.run_quiet(&argv(&["/nonexistent/smelt-x"])).is_err());
        assert!(sys.run_quiet(&[]).is_err());
        let t = Instant::now();
        // Other tests in this process spawn children, so a SIGCHLD may
        // arrive before the timeout; any other signal is a failure.
        match sys.wait_signal(Duration::from_millis(50)) {
            None => assert!(t.elapsed() >= Duration::from_millis(40)),
            Some(sig) => assert_eq!(sig, libc::SIGCHLD),
        }
    }

    #[test]
    fn real_read_at_and_file_size() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("img");
        std::fs::write(&p, b"0123456789").unwrap();
        let p = p.to_str().unwrap();
        let sys = RealSys::new();
        assert_eq!(sys.read_at(p, 3, 4).unwrap(), b"3456");
        assert_eq!(sys.read_at(p, 8, 100).unwrap(), b"89");
        assert_eq!(sys.read_at(p, 50, 4).unwrap(), b"");
        assert_eq!(sys.file_size(p).unwrap(), 10);
        assert!(sys.read_at("/nonexistent/smelt-img", 0, 1).is_err());
    }

    #[test]
    fn real_net_calls_refuse_bad_links() {
        // Error paths only: nothing on this machine's network changes.
        let sys = RealSys::new();
        let long = "x".repeat(libc::IFNAMSIZ);
        let e = sys.link_set_up(&long, true).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(sys.dhcp_transport("").is_err());
        let a = Cidr::parse("192.0.2.1/24").unwrap();
        let e = sys.addr_add("smelt-none0", &a).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV), "{e}");
        assert!(sys.route_add("smelt-none0", &a, None).is_err());
    }

    #[test]
    fn real_config_file_ops() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let d = tempfile::tempdir().unwrap();
        let p = |n: &str| d.path().join(n).to_str().unwrap().to_string();
        let sys = RealSys::new();
        sys.append_file(&p("f"), b"a\n").unwrap();
        sys.append_file(&p("f"), b"b\n").unwrap();
        assert_eq!(std::fs::read(p("f")).unwrap(), b"a\nb\n");
        sys.chmod(&p("f"), 0o600).unwrap();
        let meta = std::fs::metadata(p("f")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        // To our own ids: works unprivileged too.
        sys.chown(&p("f"), meta.uid(), meta.gid()).unwrap();
        sys.symlink("/x", &p("l")).unwrap();
        sys.symlink("/y", &p("l")).unwrap();
        assert_eq!(std::fs::read_link(p("l")).unwrap(), Path::new("/y"));
        assert!(sys.chmod(&p("missing"), 0o644).is_err());
    }

    #[test]
    fn real_uname_and_statfs() {
        let sys = RealSys::new();
        assert!(!sys.kernel_release().unwrap().is_empty());
        assert!(sys.root_fs_magic().unwrap() != 0);
    }
}
