//! connect: cgroup sock_addr hooks (a real EPERM, or for `ask` a restart
//! code with the process stopped by the syscall-exit tracepoint, so the
//! connect has not happened until it is approved), the `socket_connect`
//! LSM hook where BPF LSM runs, or the syscall-entry tracepoint when no
//! cgroup v2 hierarchy could be used (kill or stop).

use aya_ebpf::{
    bindings::bpf_sock_addr,
    helpers::{bpf_probe_read_kernel, bpf_probe_read_user, generated::bpf_set_retval},
    macros::{cgroup_sock_addr, lsm, tracepoint},
    programs::{LsmContext, SockAddrContext, TracePointContext},
};
use sentinel_common::{config, counter, decision, kernel_action, kind, ConnectEvent};

use crate::act::{refuse, signal, ERESTARTNOINTR};
use crate::capture::{bump, fill_header, send_signal};
use crate::count::register_flow;
use crate::decide::{connect_approval, connect_decision, take_approval, AF_INET, AF_INET6};
use crate::filter::{flag, hold, is_held, watched, watched_task, Current, SIGSTOP};
use crate::maps::EVENTS;

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    on_sock_addr(ctx.sock_addr, false, true)
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    on_sock_addr(ctx.sock_addr, true, true)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    on_sock_addr(ctx.sock_addr, false, false)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    on_sock_addr(ctx.sock_addr, true, false)
}

/// Returns 1 to allow, 0 to refuse (EPERM, or the restart code set with
/// `bpf_set_retval`).
#[inline(always)]
fn on_sock_addr(sa: *mut bpf_sock_addr, v6: bool, is_connect: bool) -> i32 {
    let Some(cur) = watched_task() else { return 1 };
    // With BPF LSM the `socket_connect` hook decided and reported this
    // connect already; here it is only registered for counting.
    let lsm_decided = is_connect && flag(config::flags::LSM_ENFORCES);
    if is_held(&cur) && !lsm_decided {
        return 0;
    }
    let sa = unsafe { &*sa };
    let mut addr = [0u8; 16];
    let family;
    if v6 {
        family = AF_INET6;
        let words = [
            sa.user_ip6[0],
            sa.user_ip6[1],
            sa.user_ip6[2],
            sa.user_ip6[3],
        ];
        let mut i = 0;
        while i < 4 {
            let b = words[i].to_ne_bytes();
            addr[i * 4] = b[0];
            addr[i * 4 + 1] = b[1];
            addr[i * 4 + 2] = b[2];
            addr[i * 4 + 3] = b[3];
            i += 1;
        }
    } else {
        family = AF_INET;
        let b = sa.user_ip4.to_ne_bytes();
        addr[0] = b[0];
        addr[1] = b[1];
        addr[2] = b[2];
        addr[3] = b[3];
    }
    let port = u16::from_be(sa.user_port as u16);
    let protocol = sa.protocol;
    if lsm_decided {
        register_flow(sa, &cur, family, port, protocol, &addr);
        return 1;
    }
    let d = connect_decision(family, &addr, port);
    let action = match d.decision {
        decision::DENY => {
            bump(counter::KERNEL_DECISIONS);
            kernel_action::DENIED
        }
        // A datagram cannot be restarted cleanly: for those the daemon
        // stops the process after it was sent.
        decision::ASK if is_connect => {
            if take_approval(&cur, &connect_approval(family, &addr, port)) {
                kernel_action::NONE
            } else {
                bump(counter::KERNEL_DECISIONS);
                hold(&cur);
                unsafe { bpf_set_retval(-ERESTARTNOINTR) };
                kernel_action::HELD
            }
        }
        _ => kernel_action::NONE,
    };
    if is_connect || action != kernel_action::NONE {
        emit_connect(&cur, family, port, protocol, &addr, action, d.rule_id);
    }
    if action == kernel_action::NONE {
        register_flow(sa, &cur, family, port, protocol, &addr);
        1
    } else {
        0
    }
}

/// A connect held by the cgroup hook returns the restart code: the process
/// stops here, before it is back in user space, and the connect restarts
/// once the daemon resumes it.
#[tracepoint(category = "syscalls", name = "sys_exit_connect")]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    let ret: i64 = unsafe { ctx.read_at(16) }.unwrap_or(0);
    if ret != -(ERESTARTNOINTR as i64) {
        return 0;
    }
    if let Some(cur) = watched_task() {
        if is_held(&cur) {
            send_signal(SIGSTOP);
        }
    }
    0
}

#[inline(always)]
pub fn emit_connect(
    cur: &Current,
    family: u16,
    port: u16,
    protocol: u32,
    addr: &[u8; 16],
    action: u32,
    rule_id: u32,
) {
    let Some(mut entry) = EVENTS.reserve::<ConnectEvent>(0) else {
        bump(counter::RINGBUF_FULL);
        return;
    };
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::CONNECT, cur);
    ev.header.action = action;
    ev.header.rule_id = rule_id;
    ev.family = family;
    ev.port = port;
    ev.protocol = protocol;
    ev.addr = *addr;
    entry.submit(0);
}

/// Reads a `struct sockaddr_in`/`sockaddr_in6`: family (2), port (2,
/// big-endian), then the IPv4 address, or flowinfo (4) and the IPv6
/// address. `user` says which address space it is in.
#[inline(always)]
fn sockaddr(address: *const u8, user: bool) -> Option<(u16, u16, [u8; 16])> {
    if address.is_null() {
        return None;
    }
    let read2 = |p: *const u8| -> u16 {
        if user {
            unsafe { bpf_probe_read_user(p as *const u16) }.unwrap_or(0)
        } else {
            unsafe { bpf_probe_read_kernel(p as *const u16) }.unwrap_or(0)
        }
    };
    let family = read2(address);
    let port = u16::from_be(read2(unsafe { address.add(2) }));
    let mut addr = [0u8; 16];
    match family {
        AF_INET => {
            let p = unsafe { address.add(4) } as *const [u8; 4];
            let a = if user {
                unsafe { bpf_probe_read_user(p) }
            } else {
                unsafe { bpf_probe_read_kernel(p) }
            }
            .unwrap_or([0; 4]);
            addr[..4].copy_from_slice(&a);
        }
        AF_INET6 => {
            let p = unsafe { address.add(8) } as *const [u8; 16];
            addr = if user {
                unsafe { bpf_probe_read_user(p) }
            } else {
                unsafe { bpf_probe_read_kernel(p) }
            }
            .unwrap_or([0; 16]);
        }
        _ => return None,
    }
    Some((family, port, addr))
}

/// Only when no cgroup v2 hierarchy could be used.
#[tracepoint(category = "syscalls", name = "sys_enter_connect")]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    if !flag(config::flags::CONNECT_VIA_TRACEPOINT) {
        return 0;
    }
    let Some(cur) = watched() else { return 0 };
    let uaddr: *const u8 = unsafe { ctx.read_at(24) }.unwrap_or(core::ptr::null());
    let Some((family, port, addr)) = sockaddr(uaddr, true) else {
        return 0;
    };
    let d = connect_decision(family, &addr, port);
    let action = signal(&cur, &d, &connect_approval(family, &addr, port));
    emit_connect(&cur, family, port, 0, &addr, action, d.rule_id);
    0
}

/// `socket_connect(struct socket *sock, struct sockaddr *address, int
/// addrlen)`: the address is a kernel copy, so there is no user-memory
/// race.
#[lsm(hook = "socket_connect")]
pub fn socket_connect(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(3);
    if prev != 0 {
        return prev;
    }
    let Some(cur) = watched_task() else { return 0 };
    if is_held(&cur) {
        return -crate::act::EPERM;
    }
    let Some((family, port, addr)) = sockaddr(crate::kernel::lsm_arg(&ctx, 1) as *const u8, false)
    else {
        return 0;
    };
    let d = connect_decision(family, &addr, port);
    let (ret, action) = refuse(&cur, &d, &connect_approval(family, &addr, port));
    emit_connect(&cur, family, port, 0, &addr, action, d.rule_id);
    ret
}
