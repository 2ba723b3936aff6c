//! The unsafe system calls of seccomp interception (Linux), kept apart from
//! `seccomp`'s logic: the BPF filter that sends `bind`/`listen`/`connect` of the
//! wrapped tree to the wrapper, its installation in the child between fork
//! and exec (async-signal-safe: everything is built before the fork), the
//! hand-over of the listener descriptor to the wrapper over a socket pair,
//! the notification ioctls, and the support probe. See
//! `seccomp_unotify(2)`; the technique is rootless-containers' bypass4netns.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// `AUDIT_ARCH_*` of the architectures whose syscall numbers the filter knows.
#[cfg(target_arch = "x86_64")]
const ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const ARCH: u32 = 0xC000_00B7;

// Classic BPF opcodes (linux/bpf_common.h): BPF_LD|BPF_W|BPF_ABS,
// BPF_JMP|BPF_JEQ|BPF_K, BPF_RET|BPF_K.
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const RET_K: u16 = 0x06;
/// Offsets in `struct seccomp_data`.
const NR_AT: u32 = 0;
const ARCH_AT: u32 = 4;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt: 0, jf: 0, k }
}

fn jump(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code: JEQ_K, jt, jf, k }
}

/// The filter: on this architecture, `bind`, `listen` and `connect` go to
/// the supervisor; every other call (and every other ABI) is allowed
/// untouched. Jump offsets count from the next instruction.
pub fn program() -> Vec<libc::sock_filter> {
    let (bind, listen, connect) = (libc::SYS_bind as u32, libc::SYS_listen as u32, libc::SYS_connect as u32);
    vec![
        stmt(LD_W_ABS, ARCH_AT), // 0
        jump(ARCH, 0, 6),        // 1: another ABI → 8
        stmt(LD_W_ABS, NR_AT),   // 2
        jump(bind, 3, 0),        // 3 → 7
        jump(listen, 2, 0),      // 4 → 7
        jump(connect, 1, 0),     // 5 → 7
        stmt(RET_K, libc::SECCOMP_RET_ALLOW),
        stmt(RET_K, libc::SECCOMP_RET_USER_NOTIF),
        stmt(RET_K, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Installs `filter` with a new listener in the calling process. Runs
/// between fork and exec: no allocation, only prctl(2) and seccomp(2).
/// Without CAP_SYS_ADMIN the kernel wants no_new_privs first (then setuid
/// programs of the tree do not gain privileges).
fn install(prog: &libc::sock_fprog) -> RawFd {
    let call = |flags: libc::c_ulong| {
        // SAFETY: `prog` points to a valid filter that outlives the call.
        unsafe {
            libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, flags, prog as *const libc::sock_fprog)
        }
    };
    // SAFETY: reading errno right after a failed call.
    let errno = || unsafe { *libc::__errno_location() };
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes integers only.
    let no_new_privs = || unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        no_new_privs();
    }
    // Once the wrapper has read a notification, only a fatal signal ends the
    // wait (5.19+): a call it has acted on is never restarted by a signal
    // (Go's preemption signals) and made again on a socket it already bound.
    let killable = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
    let mut fd = call(killable);
    if fd < 0 && errno() == libc::EACCES {
        no_new_privs();
        fd = call(killable);
    }
    if fd < 0 && errno() == libc::EINVAL {
        fd = call(libc::SECCOMP_FILTER_FLAG_NEW_LISTENER);
    }
    RawFd::try_from(fd).unwrap_or(-1)
}

/// A socket pair over which the child hands its listener to the wrapper.
pub struct Handoff {
    pub wrapper: OwnedFd,
    child: OwnedFd,
}

pub fn handoff() -> io::Result<Handoff> {
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair(2) writes.
    let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { Handoff { wrapper: OwnedFd::from_raw_fd(fds[0]), child: OwnedFd::from_raw_fd(fds[1]) } })
}

/// A message of the one byte in `iov`, with room for one descriptor in
/// `space` (32 bytes, more than CMSG_SPACE of one int) when `control`.
fn message(iov: &mut libc::iovec, space: &mut [u64; 4], control: bool) -> libc::msghdr {
    // SAFETY: an all-zero msghdr is valid (no iovec, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    if control {
        msg.msg_control = space.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE only computes a size.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as _;
    }
    msg
}

/// Sends one byte, with `fd` attached when it is a descriptor (SCM_RIGHTS).
/// Async-signal-safe: sendmsg(2) with buffers on the stack.
fn send_fd(sock: RawFd, fd: RawFd) {
    let mut byte = [u8::from(fd >= 0)];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    let mut space = [0u64; 4];
    let msg = message(&mut iov, &mut space, fd >= 0);
    // SAFETY: `msg` points to `iov` and `space`, valid for the call; the
    // CMSG_* macros stay within `space`.
    unsafe {
        if fd >= 0 {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
        }
        libc::sendmsg(sock, &msg, 0);
        if fd >= 0 {
            libc::close(fd);
        }
    }
}

/// Makes the spawned command install the filter just before exec and send
/// its listener over `h` (nothing is sent but a zero byte when the kernel
/// refuses: the wrapper then uses the listener scan).
pub fn install_on_spawn(cmd: &mut Command, h: &Handoff) {
    let prog: Box<[libc::sock_filter]> = program().into_boxed_slice();
    let child = h.child.as_raw_fd();
    // SAFETY: the closure runs in the child between fork and exec; the
    // filter was built before the fork and is only read; it calls prctl(2),
    // seccomp(2), sendmsg(2) and close(2), all async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr().cast_mut() };
            send_fd(child, install(&fprog));
            Ok(())
        });
    }
}

/// The listener the child sent, after spawn() returned (the child has
/// exec'd, so its message is there); closes the child's end here.
pub fn receive(h: Handoff) -> Option<OwnedFd> {
    drop(h.child);
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    let mut space = [0u64; 4];
    let mut msg = message(&mut iov, &mut space, true);
    // SAFETY: as in `send_fd`; the received descriptor, if any, is new and ours.
    unsafe {
        if libc::recvmsg(h.wrapper.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) < 1 {
            return None;
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() || (*cmsg).cmsg_type != libc::SCM_RIGHTS {
            return None;
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
        (fd >= 0).then(|| OwnedFd::from_raw_fd(fd))
    }
}

/// One notification: who called, and the call's number and arguments.
pub struct Notif {
    pub id: u64,
    pub pid: u32,
    pub nr: i64,
    pub args: [u64; 6],
}

pub fn recv(listener: &OwnedFd) -> io::Result<Notif> {
    // SAFETY: an all-zero seccomp_notif is what SECCOMP_IOCTL_NOTIF_RECV wants.
    let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: `n` is a valid, writable seccomp_notif.
    if unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_RECV, &mut n) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Notif { id: n.id, pid: n.pid, nr: i64::from(n.data.nr), args: n.data.args })
}

/// Whether notification `id` is still pending (its caller was not killed
/// and the pid read with it still names that caller).
pub fn id_valid(listener: &OwnedFd, id: u64) -> bool {
    // SAFETY: the ioctl reads one u64.
    unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0 }
}

/// What the call returns: `Continue` runs it as the caller made it.
pub enum Answer {
    Continue,
    Return(i64),
    Errno(i32),
}

pub fn respond(listener: &OwnedFd, id: u64, answer: Answer) -> io::Result<()> {
    let (val, error, flags) = match answer {
        Answer::Continue => (0, 0, libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32),
        Answer::Return(v) => (v, 0, 0),
        Answer::Errno(e) => (0, -e, 0),
    };
    let mut resp = libc::seccomp_notif_resp { id, val, error, flags };
    // SAFETY: `resp` is a valid seccomp_notif_resp.
    if unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether this kernel lets an unprivileged process install a filter with a
/// listener: a forked child tries it (with an allow-all filter) and exits.
pub fn probe() -> Result<(), String> {
    let allow = [stmt(RET_K, libc::SECCOMP_RET_ALLOW)];
    let fprog = libc::sock_fprog { len: 1, filter: allow.as_ptr().cast_mut() };
    // SAFETY: the child only calls prctl(2), seccomp(2) and _exit(2).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("cannot fork: {}", io::Error::last_os_error()));
    }
    if pid == 0 {
        let fd = install(&fprog);
        // SAFETY: errno of the failed call (0 if none), then _exit(2).
        unsafe { libc::_exit(if fd >= 0 { 0 } else { (*libc::__errno_location()).clamp(1, 255) }) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked; `status` is writable.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    match libc::WEXITSTATUS(status) {
        0 if libc::WIFEXITED(status) => Ok(()),
        e => Err(format!("seccomp(SECCOMP_FILTER_FLAG_NEW_LISTENER) fails: {}", io::Error::from_raw_os_error(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the classic BPF program on (arch, nr), as the kernel would.
    fn verdict(arch: u32, nr: u32) -> u32 {
        let prog = program();
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            match i.code {
                LD_W_ABS => acc = if i.k == ARCH_AT { arch } else { nr },
                JEQ_K => pc += usize::from(if acc == i.k { i.jt } else { i.jf }),
                _ => return i.k,
            }
            pc += 1;
        }
    }

    #[test]
    fn the_filter_sends_bind_listen_and_connect_only() {
        let nr = |n: libc::c_long| n as u32;
        for call in [libc::SYS_bind, libc::SYS_listen, libc::SYS_connect] {
            assert_eq!(verdict(ARCH, nr(call)), libc::SECCOMP_RET_USER_NOTIF, "{call}");
            assert_eq!(verdict(0x4000_0003, nr(call)), libc::SECCOMP_RET_ALLOW, "another ABI: {call}");
        }
        for call in [libc::SYS_accept4, libc::SYS_read, libc::SYS_getsockname, libc::SYS_socket] {
            assert_eq!(verdict(ARCH, nr(call)), libc::SECCOMP_RET_ALLOW, "{call}");
        }
    }
}
