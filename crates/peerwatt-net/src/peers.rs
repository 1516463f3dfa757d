//! Peer discovery for a community: an address book and peer exchange (`/peerwatt/peers/1`).
//!
//! A node learns addresses from its bootstrap list, from what connected peers say they listen
//! on (identify), from mDNS, and by asking a connected peer for addresses it knows. It dials
//! from the book while it has fewer peers than it wants, and a taker reaches any maker whose
//! address is in the book. This replaces Kademlia: a community is 10 to 1,000 households, and
//! in networks that small every Kademlia bootstrap (which libp2p also starts by itself while
//! the routing table holds fewer than 20 peers) connects to most of the community. Measured
//! with 100 nodes on one machine: every node connected to every other within 10 s, and the
//! lookups and handshakes alone kept both cores busy (docs/decisions/0006-discovery-without-kademlia.md).
//!
//! How often a node looks is [`Schedule`]'s business: every [`FAST_ROUND`] while it is short of
//! peers, so that a member who joins sees the community's gossip within seconds, and at the
//! configured interval once it has them.
//!
//! The exchange is one request (empty) and one answer: up to [`MAX_EXCHANGED`] lines, each a
//! multiaddress ending in `/p2p/<peer id>`, in UTF-8. An answer is hostile input: lines that
//! do not parse, lack a peer id or are too long are skipped and counted, never trusted further
//! than an address to try.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

/// Most addresses one exchange answer carries.
pub const MAX_EXCHANGED: usize = 32;
/// Most peers the address book holds (a community is at most 1,000 households).
pub const MAX_KNOWN: usize = 2_048;
/// Longest line of an exchange answer.
const MAX_LINE: usize = 256;
/// Wait between discovery rounds while a node is short of peers and finding some.
pub const FAST_ROUND: Duration = Duration::from_secs(1);
/// Shortest discovery interval honoured: a zero or tiny one would make discovery spin.
const MIN_ROUND: Duration = Duration::from_millis(100);

/// Known addresses of other members' nodes, one per peer.
#[derive(Debug)]
pub struct AddressBook {
    me: PeerId,
    addresses: HashMap<PeerId, Multiaddr>,
    /// Peers in the order they were learned (for round-robin dialling and varied answers).
    order: Vec<PeerId>,
    dial_turn: usize,
    answer_turn: usize,
}

impl AddressBook {
    /// An empty book for the node `me` (which it never lists).
    pub fn new(me: PeerId) -> AddressBook {
        AddressBook { me, addresses: HashMap::new(), order: Vec::new(), dial_turn: 0, answer_turn: 0 }
    }

    /// Records `addr` (with or without a `/p2p/` suffix) for `peer`. Returns whether the peer
    /// is new to the book. A peer already known keeps its address; a full book learns nothing.
    pub fn learn(&mut self, peer: PeerId, addr: &Multiaddr) -> bool {
        if peer == self.me || self.addresses.contains_key(&peer) || self.addresses.len() >= MAX_KNOWN {
            return false;
        }
        let bare: Multiaddr = addr.iter().filter(|p| !matches!(p, Protocol::P2p(_))).collect();
        if bare.is_empty() {
            return false;
        }
        self.addresses.insert(peer, bare);
        self.order.push(peer);
        true
    }

    /// Records the most useful of the addresses a peer says it listens on: one that is not
    /// loopback if there is one (other members are on other machines), else the first.
    pub fn learn_best(&mut self, peer: PeerId, addrs: &[Multiaddr]) -> bool {
        let loopback = |a: &Multiaddr| {
            a.iter().any(|p| match p {
                Protocol::Ip4(ip) => ip.is_loopback(),
                Protocol::Ip6(ip) => ip.is_loopback(),
                _ => false,
            })
        };
        match addrs.iter().find(|a| !loopback(a)).or(addrs.first()) {
            Some(addr) => self.learn(peer, addr),
            None => false,
        }
    }

    /// The dialable address of `peer` (ending in `/p2p/<peer>`), if known.
    pub fn address(&self, peer: &PeerId) -> Option<Multiaddr> {
        self.addresses.get(peer).map(|a| a.clone().with(Protocol::P2p(*peer)))
    }

    /// How many peers the book knows.
    pub fn len(&self) -> usize {
        self.addresses.len()
    }

    /// Whether the book knows nobody.
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty()
    }

    /// The next known peer not in `connected` (round robin over the book), to dial.
    pub fn next_unconnected(&mut self, connected: &HashSet<PeerId>) -> Option<Multiaddr> {
        let n = self.order.len();
        for _ in 0..n {
            self.dial_turn = (self.dial_turn + 1) % n;
            let peer = self.order[self.dial_turn];
            if !connected.contains(&peer) {
                return self.address(&peer);
            }
        }
        None
    }

    /// Up to [`MAX_EXCHANGED`] addresses to give `asker`, a different slice of the book each time.
    pub fn answer_for(&mut self, asker: &PeerId) -> Vec<Multiaddr> {
        let n = self.order.len();
        let start = self.answer_turn;
        self.answer_turn = (self.answer_turn + MAX_EXCHANGED) % n.max(1);
        (0..n)
            .map(|i| self.order[(start + i) % n])
            .filter(|p| p != asker)
            .take(MAX_EXCHANGED)
            .filter_map(|p| self.address(&p))
            .collect()
    }
}

/// When a node looks for peers next, and whom it may ask for addresses now.
///
/// While the node is short of peers a round comes every [`FAST_ROUND`], as long as something
/// changes ([`Schedule::hurry`]: a connection gained or lost, addresses learned); rounds that
/// change nothing double the wait, up to the configured interval, so a community smaller than
/// the target (every member connected, still "short") is not asked every second for good.
/// Once the node has its peers it looks at the configured interval. Whatever the pace, each
/// peer is asked at most once per fast round, however often it reconnects.
#[derive(Debug)]
pub struct Schedule {
    fast: Duration,
    slow: Duration,
    /// The wait after the next round, if the node is still short of peers then.
    backoff: Duration,
    /// When each peer was last asked for addresses (kept for one fast round).
    asked: HashMap<PeerId, Instant>,
}

impl Schedule {
    /// A schedule that looks at most every `interval` once the node has its peers.
    pub fn new(interval: Duration) -> Schedule {
        let slow = interval.max(MIN_ROUND);
        // A test configuration may look more often than FAST_ROUND: short of peers is never slower.
        let fast = FAST_ROUND.min(slow);
        Schedule { fast, slow, backoff: fast, asked: HashMap::new() }
    }

    /// The wait until the next round, after a round in which the node was `short` of peers or not.
    pub fn after_round(&mut self, short: bool) -> Duration {
        if !short {
            // If the node loses peers later, it starts looking fast again.
            self.backoff = self.fast;
            return self.slow;
        }
        let wait = self.backoff;
        self.backoff = wait.saturating_mul(2).min(self.slow);
        wait
    }

    /// Something changed while the node is short of peers: the longest the next round may
    /// wait (the caller moves it no later than this), and the backoff starts over. Rounds
    /// never come closer than a fast round apart, since the caller only ever brings the next
    /// one forward to this far after now.
    pub fn hurry(&mut self) -> Duration {
        self.backoff = self.fast;
        self.fast
    }

    /// Whether `peer` may be asked for addresses at `now` (if so, it counts as asked): not if
    /// it was asked less than a fast round ago.
    pub fn may_ask(&mut self, peer: PeerId, now: Instant) -> bool {
        let fast = self.fast;
        // Only the last fast round matters: the map holds the peers asked in it, no more.
        self.asked.retain(|_, at| now.saturating_duration_since(*at) < fast);
        match self.asked.entry(peer) {
            Entry::Occupied(_) => false,
            Entry::Vacant(slot) => {
                slot.insert(now);
                true
            }
        }
    }
}

/// Encodes an exchange answer.
pub fn encode_answer(addresses: &[Multiaddr]) -> Vec<u8> {
    let lines: Vec<String> = addresses.iter().take(MAX_EXCHANGED).map(Multiaddr::to_string).collect();
    lines.join("\n").into_bytes()
}

/// An exchange answer, read: the usable addresses and how many lines were refused.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// Peers and their addresses.
    pub peers: Vec<(PeerId, Multiaddr)>,
    /// Lines that were not a multiaddress ending in a peer id (or beyond the limits).
    pub refused: usize,
}

/// Reads an exchange answer from a peer (hostile input: see the module documentation).
pub fn decode_answer(bytes: &[u8]) -> Answer {
    let mut answer = Answer::default();
    let Ok(text) = std::str::from_utf8(bytes) else {
        answer.refused = 1;
        return answer;
    };
    for (i, line) in text.lines().enumerate() {
        let peer = (i < MAX_EXCHANGED && line.len() <= MAX_LINE)
            .then(|| line.parse::<Multiaddr>().ok())
            .flatten()
            .and_then(|addr| peer_in(&addr).map(|peer| (peer, addr)));
        match peer {
            Some(p) => answer.peers.push(p),
            None => answer.refused += 1,
        }
    }
    answer
}

/// The peer id at the end of a `/p2p/…` multiaddress.
pub fn peer_in(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use super::*;

    fn peer(n: u8) -> PeerId {
        libp2p::identity::Keypair::ed25519_from_bytes([n; 32]).unwrap().public().to_peer_id()
    }

    fn tcp(port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
    }

    #[test]
    fn the_book_learns_each_peer_once_never_itself_and_dials_round_robin() {
        let mut book = AddressBook::new(peer(0));
        assert!(!book.learn(peer(0), &tcp(1)), "never itself");
        assert!(book.learn(peer(1), &tcp(1)));
        assert!(book.learn(peer(2), &tcp(2).with(Protocol::P2p(peer(2)))));
        assert!(!book.learn(peer(1), &tcp(9)), "a known peer keeps its address");
        let lan: Multiaddr = "/ip4/192.168.1.7/tcp/4001".parse().unwrap();
        assert!(book.learn_best(peer(3), &[tcp(3), lan.clone()]));
        assert_eq!(book.address(&peer(3)), Some(lan.with(Protocol::P2p(peer(3)))), "not loopback when there is more");
        assert_eq!(book.address(&peer(2)), Some(tcp(2).with(Protocol::P2p(peer(2)))), "one /p2p suffix");
        let connected: HashSet<PeerId> = [peer(1), peer(3)].into();
        for _ in 0..3 {
            assert_eq!(book.next_unconnected(&connected), book.address(&peer(2)));
        }
        let all: HashSet<PeerId> = [peer(1), peer(2), peer(3)].into();
        assert_eq!(book.next_unconnected(&all), None);
    }

    #[test]
    fn answers_round_trip_leave_out_the_asker_and_are_bounded() {
        let mut book = AddressBook::new(peer(0));
        for n in 1..=40u8 {
            book.learn(peer(n), &tcp(u16::from(n)));
        }
        let answer = book.answer_for(&peer(1));
        assert_eq!(answer.len(), MAX_EXCHANGED);
        let read = decode_answer(&encode_answer(&answer));
        assert_eq!(read.refused, 0);
        assert_eq!(read.peers.len(), MAX_EXCHANGED);
        assert!(read.peers.iter().all(|(p, a)| *p != peer(1) && book.address(p).as_ref() == Some(a)));
        let next = book.answer_for(&peer(1));
        assert_ne!(next.first(), answer.first(), "the next answer starts elsewhere in the book");
    }

    #[test]
    fn discovery_is_fast_while_short_of_peers_and_backs_off_when_nothing_changes() {
        let slow = Duration::from_secs(30);
        let mut schedule = Schedule::new(slow);
        // Short of peers and finding some: a round every second.
        assert_eq!(schedule.after_round(true), FAST_ROUND);
        assert_eq!(schedule.hurry(), FAST_ROUND, "a new connection: the next round within a second");
        assert_eq!(schedule.after_round(true), FAST_ROUND);
        // Short, but rounds change nothing (a community smaller than the target): doubling, up to the interval.
        let waits: Vec<u64> = (0..7).map(|_| schedule.after_round(true).as_secs()).collect();
        assert_eq!(waits, [2u64, 4, 8, 16, 30, 30, 30]);
        assert_eq!(schedule.hurry(), FAST_ROUND, "addresses learned: fast again");
        assert_eq!(schedule.after_round(true), FAST_ROUND);
        // Enough peers: the configured interval; short again later: fast from the start.
        assert_eq!(schedule.after_round(false), slow);
        assert_eq!(schedule.after_round(false), slow);
        assert_eq!(schedule.after_round(true), FAST_ROUND);
        // A test interval below a second is never slowed down, a zero one never spins.
        let mut quick = Schedule::new(Duration::from_millis(300));
        assert_eq!(quick.after_round(true), Duration::from_millis(300));
        assert_eq!(quick.after_round(false), Duration::from_millis(300));
        assert_eq!(Schedule::new(Duration::ZERO).after_round(true), MIN_ROUND);
    }

    #[test]
    fn each_peer_is_asked_at_most_once_per_fast_round() {
        let mut schedule = Schedule::new(Duration::from_secs(30));
        let t0 = Instant::now();
        assert!(schedule.may_ask(peer(1), t0));
        assert!(!schedule.may_ask(peer(1), t0), "not again at once (a reconnect, a round right after)");
        assert!(!schedule.may_ask(peer(1), t0 + FAST_ROUND / 2));
        assert!(schedule.may_ask(peer(2), t0 + FAST_ROUND / 2), "another peer may be asked");
        assert!(schedule.may_ask(peer(1), t0 + FAST_ROUND), "a fast round later, again");
        assert!(!schedule.may_ask(peer(2), t0 + FAST_ROUND));
        assert!(schedule.may_ask(peer(2), t0 + FAST_ROUND * 2));
        assert_eq!(schedule.asked.len(), 1, "peers asked long ago are forgotten");
    }

    #[test]
    fn a_hostile_answer_is_read_line_by_line() {
        let good = tcp(5).with(Protocol::P2p(peer(5)));
        let long = format!("/dns4/{}/tcp/1/p2p/{}", "a".repeat(300), peer(6));
        let text = format!("{good}\nnot an address\n/ip4/127.0.0.1/tcp/7\n{long}");
        let read = decode_answer(text.as_bytes());
        assert_eq!(read.peers, vec![(peer(5), good)]);
        assert_eq!(read.refused, 3, "garbage, no peer id, too long");
        assert_eq!(decode_answer(&[0xff, 0xfe]).refused, 1, "not UTF-8");
        let many: Vec<String> = (0..40u16).map(|i| tcp(i).with(Protocol::P2p(peer(9))).to_string()).collect();
        assert_eq!(decode_answer(many.join("\n").as_bytes()).peers.len(), MAX_EXCHANGED);
    }
}
