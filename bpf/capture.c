// Traffic capture for the ambient mesh: two tc (clsact, direct-action) ingress programs that
// hand TCP packets to ztunnel's sockets with bpf_sk_assign. Compiled at run time by bcc
// (bpf/loader.py); MESH_PIN_DIR is given with -D and names the bpffs folder of the maps.
//
// outbound: tc ingress on the HOST side of a pod's veth (packets FROM the pod); SYNs are
// captured only for enrolled pods (source address in the enrolled map).
//   1. an existing socket for the packet's own 4-tuple in this netns, not LISTEN/TIME_WAIT
//      -> mark + assign (the rest of a captured flow; replies to ztunnel's transparent
//      connections that carry the pod's address as source);
//   2. else a SYN (no ACK) -> ztunnel's outbound listener (config: 0.0.0.0:15001);
//   2b. a SYN from a pod NOT enrolled to an enrolled pod of this node -> as inbound below;
//   3. else TC_ACT_UNSPEC (never end another program's chain).
// inbound: tc ingress on a node's uplink. Only packets addressed to a LOCAL enrolled pod:
//   established socket first (as above); else a SYN to port 15008 -> HBONE listener, any
//   other port -> the inbound plaintext listener (15006); else TC_ACT_UNSPEC.
//
// A SYN whose listener lookup (or assignment) fails is dropped unless config.fail_open:
// the client retransmits it, so a restarting ztunnel delays new connections instead of
// letting them bypass the mesh. Every socket reference is released on every path.
//
// tw_lookup (sk_lookup, on the node's namespace) completes the TIME_WAIT case: see
// syn_to_time_wait below.
//
// The maps are pinned (BPF_TABLE_PINNED): bcc opens the pinned map when MESH_PIN_DIR/<name>
// exists and creates and pins it otherwise, so a restarted loader adopts them.

#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/in.h>
#include <uapi/linux/tcp.h>

// Without MESH_PIN_DIR the maps are private to the loading process (the environment check's
// compile test).
#ifdef MESH_PIN_DIR
#define MESH_TABLE(type, key, leaf, name, size) BPF_TABLE_PINNED(type, key, leaf, name, size, MESH_PIN_DIR "/" #name)
#else
#define MESH_TABLE(type, key, leaf, name, size) BPF_TABLE(type, key, leaf, name, size)
#endif

// include/net/tcp_states.h (not a uapi header).
#define MESH_TCP_TIME_WAIT 6
#define MESH_TCP_LISTEN 10

// Counter decisions; bpf/loader.py DECISIONS lists the same names in this order.
#define D_ESTABLISHED_ASSIGNED 0
#define D_SYN_TO_OUTBOUND 1
#define D_SYN_TO_INBOUND 2
#define D_SYN_TO_HBONE 3
#define D_PASSED 4
#define D_LOOKUP_FAILED 5
#define D_NOT_TCP 6
#define D_SYN_TIME_WAIT 7

// Addresses in network byte order, ports in host byte order. loader.py packs the same layout.
struct mesh_config {
    u32 mark;
    u32 outbound_addr;
    u32 inbound_addr;
    u32 hbone_addr;
    u16 outbound_port;
    u16 inbound_port;
    u16 hbone_port;
    u16 fail_open;
};

struct counter_key {
    u32 pod_id;
    u32 decision;
};

MESH_TABLE("hash", u32, u32, enrolled, 65536);
MESH_TABLE("array", u32, struct mesh_config, config, 1);
MESH_TABLE("percpu_hash", struct counter_key, u64, counters, 65536);
// ztunnel's listeners, written by ztunnel at start: 0 outbound, 1 inbound, 2 HBONE.
MESH_TABLE("sockmap", u32, u32, listeners, 3);

static __always_inline void count(u32 pod_id, u32 decision) {
    struct counter_key key = {.pod_id = pod_id, .decision = decision};
    u64 zero = 0;
    u64 *value = counters.lookup_or_try_init(&key, &zero);
    if (value)
        *value += 1;  // per-CPU value: tc runs with preemption off, no atomics needed
}

// Parse an IPv4 TCP packet; 0 when the skb is not one (or is a non-first fragment).
static __always_inline int parse(struct __sk_buff *skb, struct iphdr **ip_out, struct tcphdr **tcp_out) {
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        return 0;
    if (eth->h_proto != bpf_htons(ETH_P_IP))
        return 0;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end)
        return 0;
    if (ip->protocol != IPPROTO_TCP || ip->ihl < 5)
        return 0;
    if (ip->frag_off & bpf_htons(0x1fff))
        return 0;
    struct tcphdr *tcp = (void *)ip + ip->ihl * 4;
    if ((void *)(tcp + 1) > data_end)
        return 0;
    *ip_out = ip;
    *tcp_out = tcp;
    return 1;
}

// Step 1: the packet's own 4-tuple. 1 = assigned, 0 = no usable socket, 2 = a TIME_WAIT socket
// holds it (a SYN must then meet the kernel's TIME_WAIT handling, see tw_lookup below).
static __always_inline int assign_established(struct __sk_buff *skb, struct iphdr *ip, struct tcphdr *tcp, u32 mark) {
    struct bpf_sock_tuple tuple = {};
    tuple.ipv4.saddr = ip->saddr;
    tuple.ipv4.daddr = ip->daddr;
    tuple.ipv4.sport = tcp->source;
    tuple.ipv4.dport = tcp->dest;
    struct bpf_sock *sk = bpf_skc_lookup_tcp(skb, &tuple, sizeof(tuple.ipv4), BPF_F_CURRENT_NETNS, 0);
    if (!sk)
        return 0;
    int assigned = 0;
    if (sk->state == MESH_TCP_TIME_WAIT) {
        assigned = 2;
    } else if (sk->state != MESH_TCP_LISTEN) {
        if (bpf_sk_assign(skb, sk, 0) == 0) {
            skb->mark = mark;
            assigned = 1;
        }
    }
    bpf_sk_release(sk);
    return assigned;
}

// A SYN reusing the 4-tuple of one of ztunnel's sockets in TIME_WAIT (ztunnel closed first):
// assigning it to a listener would bypass the TIME_WAIT socket and the kernel would drop the
// SYN (the request socket cannot be hashed next to it), so the client would wait a 1 s
// retransmission. Instead the SYN is only marked (it routes locally) and left to the normal
// lookup: the kernel's TIME_WAIT handling accepts a new SYN by looking up a listener for its
// destination, which tw_lookup answers with ztunnel's listener.
static __always_inline int syn_to_time_wait(u32 pod_id, struct __sk_buff *skb, struct mesh_config *cfg) {
    skb->mark = cfg->mark;
    count(pod_id, D_SYN_TIME_WAIT);
    return TC_ACT_OK;
}

// Steps 2 (outbound) / inbound SYN: a listener at addr:port (the lookup key uses the
// listener's address as destination). 1 = assigned.
static __always_inline int assign_listener(struct __sk_buff *skb, struct iphdr *ip, struct tcphdr *tcp,
                                           u32 addr, u16 port, u32 mark) {
    struct bpf_sock_tuple tuple = {};
    tuple.ipv4.saddr = ip->saddr;
    tuple.ipv4.daddr = addr;
    tuple.ipv4.sport = tcp->source;
    tuple.ipv4.dport = bpf_htons(port);
    struct bpf_sock *sk = bpf_skc_lookup_tcp(skb, &tuple, sizeof(tuple.ipv4), BPF_F_CURRENT_NETNS, 0);
    if (!sk)
        return 0;
    int assigned = 0;
    if (sk->state == MESH_TCP_LISTEN && bpf_sk_assign(skb, sk, 0) == 0) {
        skb->mark = mark;
        assigned = 1;
    }
    bpf_sk_release(sk);
    return assigned;
}

static __always_inline int syn_failed(u32 pod_id, struct mesh_config *cfg) {
    count(pod_id, D_LOOKUP_FAILED);
    return cfg->fail_open ? TC_ACT_UNSPEC : TC_ACT_SHOT;
}

// A SYN for a local enrolled pod from outside the mesh: port 15008 -> the HBONE listener, any
// other port -> the inbound plaintext listener (where PeerAuthentication and policy decide).
static __always_inline int to_inbound_listener(struct __sk_buff *skb, struct iphdr *ip, struct tcphdr *tcp,
                                               struct mesh_config *cfg, u32 pod_id) {
    if (tcp->dest == bpf_htons(cfg->hbone_port)) {
        if (assign_listener(skb, ip, tcp, cfg->hbone_addr, cfg->hbone_port, cfg->mark)) {
            count(pod_id, D_SYN_TO_HBONE);
            return TC_ACT_OK;
        }
        return syn_failed(pod_id, cfg);
    }
    if (assign_listener(skb, ip, tcp, cfg->inbound_addr, cfg->inbound_port, cfg->mark)) {
        count(pod_id, D_SYN_TO_INBOUND);
        return TC_ACT_OK;
    }
    return syn_failed(pod_id, cfg);
}

int outbound(struct __sk_buff *skb) {
    struct iphdr *ip;
    struct tcphdr *tcp;
    u32 zero = 0;
    if (!parse(skb, &ip, &tcp)) {
        count(0, D_NOT_TCP);
        return TC_ACT_UNSPEC;
    }
    struct mesh_config *cfg = config.lookup(&zero);
    if (!cfg || cfg->mark == 0)
        return TC_ACT_UNSPEC;  // not configured yet: never interfere
    u32 saddr = ip->saddr;
    u32 *id = enrolled.lookup(&saddr);
    u32 pod_id = id ? *id : 0;
    int established = assign_established(skb, ip, tcp, cfg->mark);
    if (established == 1) {
        count(pod_id, D_ESTABLISHED_ASSIGNED);
        return TC_ACT_OK;
    }
    if (established == 2 && tcp->syn && !tcp->ack)
        return syn_to_time_wait(pod_id, skb, cfg);
    // Only enrolled pods' new connections are captured. The program also sits on the veths of
    // pods that are not enrolled, for step 1 alone: replies to ztunnel's connections made with
    // an enrolled client's address (a transparent socket in this namespace) come back that way.
    if (tcp->syn && !tcp->ack && id) {
        if (assign_listener(skb, ip, tcp, cfg->outbound_addr, cfg->outbound_port, cfg->mark)) {
            count(pod_id, D_SYN_TO_OUTBOUND);
            return TC_ACT_OK;
        }
        return syn_failed(pod_id, cfg);
    }
    // A pod outside the mesh connecting to an enrolled pod on this node: the destination's
    // ztunnel side still applies (STRICT refuses it), as for a client on another node.
    if (tcp->syn && !tcp->ack) {
        u32 daddr = ip->daddr;
        u32 *dst = enrolled.lookup(&daddr);
        if (dst)
            return to_inbound_listener(skb, ip, tcp, cfg, *dst);
    }
    count(pod_id, D_PASSED);
    return TC_ACT_UNSPEC;
}

int inbound(struct __sk_buff *skb) {
    struct iphdr *ip;
    struct tcphdr *tcp;
    u32 zero = 0;
    if (!parse(skb, &ip, &tcp))
        return TC_ACT_UNSPEC;  // not counted: the uplink carries everything the node sees
    struct mesh_config *cfg = config.lookup(&zero);
    if (!cfg || cfg->mark == 0)
        return TC_ACT_UNSPEC;
    u32 daddr = ip->daddr;
    u32 *id = enrolled.lookup(&daddr);
    u32 pod_id = id ? *id : 0;
    // Established sockets first, whatever the destination: replies to a connection ztunnel
    // opened for a pod keep reaching ztunnel after that pod left the mesh, until it ends.
    int established = assign_established(skb, ip, tcp, cfg->mark);
    if (established == 1) {
        count(pod_id, D_ESTABLISHED_ASSIGNED);
        return TC_ACT_OK;
    }
    if (established == 2 && id && tcp->syn && !tcp->ack)
        return syn_to_time_wait(pod_id, skb, cfg);
    if (!id)
        return TC_ACT_UNSPEC;  // new traffic for a pod that is not a local enrolled one
    if (tcp->syn && !tcp->ack)
        return to_inbound_listener(skb, ip, tcp, cfg, pod_id);
    count(pod_id, D_PASSED);
    return TC_ACT_UNSPEC;
}

// sk_lookup, attached to the node's network namespace: the listener lookups the kernel makes
// for packets no tc program assigned. tc assigns every captured SYN itself, so in practice this
// answers the TIME_WAIT case above: a SYN from a local enrolled pod -> the outbound listener; a
// SYN for a local enrolled pod -> the HBONE listener (port 15008) or the inbound one.
int tw_lookup(struct bpf_sk_lookup *ctx) {
    u32 zero = 0;
    if (ctx->family != 2 /* AF_INET */ || ctx->protocol != IPPROTO_TCP)
        return SK_PASS;
    struct mesh_config *cfg = config.lookup(&zero);
    if (!cfg || cfg->mark == 0)
        return SK_PASS;
    u32 remote = ctx->remote_ip4;
    u32 local = ctx->local_ip4;
    u32 key;
    if (enrolled.lookup(&remote))
        key = 0;
    else if (enrolled.lookup(&local))
        key = ctx->local_port == cfg->hbone_port ? 2 : 1;
    else
        return SK_PASS;
    struct bpf_sock *sk = (struct bpf_sock *)listeners.lookup(&key);
    if (!sk)
        return SK_PASS;
    bpf_sk_assign(ctx, sk, 0);
    bpf_sk_release(sk);
    return SK_PASS;
}
