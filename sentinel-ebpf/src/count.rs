//! Byte counts of the sockets watched processes use: registered by the
//! connect/sendmsg hooks, counted per IP packet by the cgroup skb hooks,
//! marked closed on release, read and collected by the daemon.

use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::{
    bindings::bpf_sock_addr,
    helpers::generated::bpf_get_socket_cookie,
    macros::{cgroup_skb, cgroup_sock},
    programs::{SkBuffContext, SockContext},
    EbpfContext,
};
use sentinel_common::Flow;

use crate::filter::Current;
use crate::maps::FLOWS;

/// Starts counting a socket a watched process connects or sends from; a
/// socket already counted keeps its counters (and first destination).
#[inline(always)]
pub fn register_flow(
    sa: &bpf_sock_addr,
    cur: &Current,
    family: u16,
    port: u16,
    protocol: u32,
    addr: &[u8; 16],
) {
    let cookie = unsafe { bpf_get_socket_cookie(sa as *const bpf_sock_addr as *mut _) };
    // Look first: an update of an LRU map takes a free node (evicting
    // another socket when the map is full) before it sees the key exists,
    // and an unconnected UDP socket comes here for every datagram.
    if cookie == 0 || unsafe { FLOWS.get(&cookie) }.is_some() {
        return;
    }
    let flow = Flow {
        pid: cur.tgid,
        uid: cur.uid,
        family,
        port,
        protocol,
        addr: *addr,
        ..Flow::default()
    };
    // BPF_NOEXIST: a socket another CPU registered meanwhile keeps its counts.
    const BPF_NOEXIST: u64 = 1;
    let _ = FLOWS.insert(&cookie, &flow, BPF_NOEXIST);
}

/// Adds one IP packet to its socket's counters when the socket is counted.
/// Unwatched sockets pay one cookie read and one hash lookup.
#[inline(always)]
fn count_packet(ctx: &SkBuffContext, egress: bool) {
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    if cookie == 0 {
        return;
    }
    let Some(flow) = FLOWS.get_ptr_mut(&cookie) else {
        return;
    };
    let len = u64::from(ctx.len());
    // Both directions of a socket can be counted on two CPUs at once.
    unsafe {
        let (bytes, packets) = if egress {
            (&raw mut (*flow).tx_bytes, &raw mut (*flow).tx_packets)
        } else {
            (&raw mut (*flow).rx_bytes, &raw mut (*flow).rx_packets)
        };
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(bytes, len);
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(packets, 1);
    }
}

#[cgroup_skb(egress)]
pub fn flow_egress(ctx: SkBuffContext) -> i32 {
    count_packet(&ctx, true);
    1
}

#[cgroup_skb(ingress)]
pub fn flow_ingress(ctx: SkBuffContext) -> i32 {
    count_packet(&ctx, false);
    1
}

/// Marks a counted socket closed, for the daemon to collect and remove.
#[cgroup_sock(sock_release)]
pub fn flow_release(ctx: SockContext) -> i32 {
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    if let Some(flow) = FLOWS.get_ptr_mut(&cookie) {
        unsafe { (*flow).closed = 1 };
    }
    1
}
