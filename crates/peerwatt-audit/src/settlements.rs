//! Every settlement recomputed from the signed statements and trades, and the settlements'
//! own arithmetic checked against what was metered.
//!
//! An auditor holds every member's ledger, so it knows the final revision of every member's
//! statement. A settlement's figures must equal what [`settlement::settle_worked`] gives from
//! those statements and its node's trades (all but its revision and time, and which statements
//! it read: a settlement made before a member's statement was in, which that statement would
//! not have changed, is final). When they differ, the auditor looks for the statements the
//! node did read (the set whose digest the settlement records: each member's latest made by
//! then, or the final ones, possibly without one member's). If those give the settlement, it
//! was right when made and a later statement changed it: *pending* if its node's ledger ends
//! within [`SETTLE_AFTER_MS`] of that statement (the node redoes it in its next hourly slot),
//! else *stale*, an exception. Otherwise it is a *mismatch*.

use std::collections::{BTreeMap, HashMap, HashSet};

use peerwatt_core::{Community, Hash, IntervalId, SettledTrade, Settlement, Side, Timestamp};
use peerwatt_market::STATEMENT_MAX_AGE_MS;
use peerwatt_market::settlement::{self, OwnTrade, Rules, Worked};
use peerwatt_market::statements::Kept;
use peerwatt_market::trader::{SETTLE_AFTER_MS, STATEMENT_GOSSIP_MS};

use crate::Audited;
use crate::collect::{LedgerFacts, SettlementFact, StatementFact};
use crate::exception::{Check, Exception};
use crate::trades::key;

/// What the settlement checks counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SettlementCounts {
    /// Meter statements read (every revision).
    pub statements: u64,
    /// Settlements checked (the latest revision of each node and interval).
    pub settlements: u64,
    /// Of them, recomputed exactly from the final statements.
    pub recomputed: u64,
    /// Of those, made before every member's statement was in (figures unchanged by them).
    pub read_fewer_statements: u64,
    /// Made on statements since changed, and not yet due to be redone (the node's ledger ends
    /// within [`SETTLE_AFTER_MS`] of the change).
    pub pending_redo: u64,
    /// Of them, not recomputable: they read statements of members whose ledgers were not
    /// audited.
    pub members_not_audited: u64,
    /// Made on statements since changed after the members' statement window (6 h after the
    /// interval), when no node redoes a settlement: final as they stand.
    pub changed_after_window: u64,
    /// Trades not settled yet and not due (too recent for the ledger's last entry).
    pub not_yet_due: u64,
}

/// Per trade, each settlement that lists it: the settling node, the interval, the figures.
type SettledBy = HashMap<Hash, Vec<([u8; 32], IntervalId, SettledTrade)>>;

/// Every member's statements, by interval and member, revisions ascending.
pub struct StatementIndex<'a> {
    by_interval: BTreeMap<IntervalId, BTreeMap<[u8; 32], Vec<&'a StatementFact>>>,
}

impl<'a> StatementIndex<'a> {
    /// The index of the audited ledgers' statements; equivocations (two statements of one
    /// revision) become exceptions.
    pub fn of(audited: &Audited<'a>, exceptions: &mut Vec<Exception>) -> StatementIndex<'a> {
        let mut by_interval: BTreeMap<IntervalId, BTreeMap<[u8; 32], Vec<&StatementFact>>> = BTreeMap::new();
        for (owner, facts) in &audited.ledgers {
            for s in &facts.statements {
                by_interval.entry(s.interval).or_default().entry(*owner).or_default().push(s);
            }
        }
        for (interval, members) in &mut by_interval {
            for (member, revisions) in members.iter_mut() {
                revisions.sort_by_key(|s| (s.kept.revision, s.seq));
                for pair in revisions.windows(2) {
                    if pair[0].kept.revision == pair[1].kept.revision && pair[0].kept.digest != pair[1].kept.digest {
                        exceptions.push(
                            Exception::new(
                                Check::StatementEquivocation,
                                format!("one statement of revision {}", pair[0].kept.revision),
                                format!("two, at entries {} and {}", pair[0].seq, pair[1].seq),
                            )
                            .node(key(member))
                            .interval(*interval)
                            .evidence("the first statement", &pair[0].bytes)
                            .evidence("the second statement", &pair[1].bytes),
                        );
                    }
                }
            }
        }
        StatementIndex { by_interval }
    }

    /// The members' final statements of `interval` (the highest revision), ascending by key.
    pub fn final_of(&self, interval: IntervalId) -> Vec<([u8; 32], &'a Kept)> {
        self.by_interval.get(&interval).map_or_else(Vec::new, |members| {
            members.iter().filter_map(|(k, revs)| revs.last().map(|s| (*k, &s.kept))).collect()
        })
    }

    /// Each member's latest statement of `interval` made by `time`, ascending by key.
    fn as_of(&self, interval: IntervalId, time: Timestamp) -> Vec<([u8; 32], &'a Kept)> {
        self.by_interval.get(&interval).map_or_else(Vec::new, |members| {
            members
                .iter()
                .filter_map(|(k, revs)| revs.iter().rev().find(|s| s.created_at <= time).map(|s| (*k, &s.kept)))
                .collect()
        })
    }

    /// `owner`'s statement of `interval` made by `time` and the `want − 1` other members' made
    /// first (what a node has read when statements are still arriving), ascending by key.
    fn first_made(
        &self,
        interval: IntervalId,
        owner: &[u8; 32],
        time: Timestamp,
        want: usize,
    ) -> Vec<([u8; 32], &'a Kept)> {
        let Some(members) = self.by_interval.get(&interval) else { return Vec::new() };
        let made = |revs: &[&'a StatementFact]| revs.iter().rev().find(|s| s.created_at <= time).copied();
        let mut others: Vec<([u8; 32], &StatementFact)> =
            members.iter().filter(|(k, _)| *k != owner).filter_map(|(k, revs)| made(revs).map(|s| (*k, s))).collect();
        others.sort_by_key(|(k, s)| (s.created_at, *k));
        let own = members.get(owner).and_then(|revs| made(revs)).map(|s| (*owner, s));
        let mut set: Vec<([u8; 32], &'a Kept)> =
            own.into_iter().chain(others.into_iter().take(want.saturating_sub(1))).map(|(k, s)| (k, &s.kept)).collect();
        set.sort_by_key(|(k, _)| *k);
        set
    }

    /// When the newest of `interval`'s final statements not in `read` was made.
    fn newest_unread(&self, interval: IntervalId, read: &[([u8; 32], &Kept)]) -> Timestamp {
        self.by_interval.get(&interval).map_or(Timestamp(0), |members| {
            members
                .iter()
                .filter_map(|(k, revs)| revs.last().map(|s| (k, s)))
                .filter(|(k, s)| !read.iter().any(|(r, kept)| r == *k && kept.digest == s.kept.digest))
                .map(|(_, s)| s.created_at)
                .max()
                .unwrap_or(Timestamp(0))
        })
    }

    /// Statements indexed.
    fn len(&self) -> u64 {
        self.by_interval.values().flat_map(BTreeMap::values).map(|r| r.len() as u64).sum()
    }

    /// Intervals with statements.
    pub fn intervals(&self) -> impl Iterator<Item = IntervalId> + '_ {
        self.by_interval.keys().copied()
    }
}

/// An interval's final statements, and the interval worked out from them: once per interval.
type FinalOf<'a> = HashMap<IntervalId, (Vec<([u8; 32], &'a Kept)>, Worked)>;

/// Checks every audited node's settlements.
pub fn check<'a>(
    audited: &Audited<'a>,
    statements: &StatementIndex<'a>,
    exceptions: &mut Vec<Exception>,
) -> SettlementCounts {
    let community = audited.community;
    let mut finals: FinalOf<'a> = HashMap::new();
    let mut counts = SettlementCounts { statements: statements.len(), ..SettlementCounts::default() };
    let mut settled_trades: SettledBy = HashMap::new();
    let mut found: HashMap<Hash, Read<'a>> = HashMap::new();
    let mut not_final: HashSet<([u8; 32], IntervalId)> = HashSet::new();
    for (owner, facts) in &audited.ledgers {
        let trades = own_trades(owner, facts);
        let latest = latest_settlements(facts);
        for (interval, s) in &latest {
            counts.settlements += 1;
            for t in &s.body.trades {
                settled_trades.entry(t.trade).or_default().push((*owner, *interval, *t));
            }
            if s.body.community != community.id {
                not_final.insert((*owner, *interval));
                exceptions.push(wrong_community(owner, s));
                continue;
            }
            check_metered(owner, s, exceptions);
            let (members, worked) = finals.entry(*interval).or_insert_with(|| {
                let members = statements.final_of(*interval);
                let worked = settlement::work(&members, &Rules::at(community, *interval));
                (members, worked)
            });
            if usize::try_from(s.body.members).unwrap_or(usize::MAX) > members.len() {
                not_final.insert((*owner, *interval));
                counts.members_not_audited += 1;
                continue;
            }
            let own: Vec<OwnTrade> =
                trades.get(interval).map_or_else(Vec::new, |t| t.iter().map(|(_, o)| *o).collect());
            let expected =
                settlement::settle_worked(community, *interval, owner, members, worked, &own, s.body.created_at);
            let verdict = match expected {
                Ok(e) if same_figures(&e, &s.body) => {
                    counts.recomputed += 1;
                    if (e.members, e.inputs) != (s.body.members, s.body.inputs) {
                        counts.read_fewer_statements += 1;
                    }
                    continue;
                }
                Ok(e) => {
                    // What the node can have read: its trades recorded before the settlement.
                    let before: Vec<OwnTrade> = trades
                        .get(interval)
                        .map_or_else(Vec::new, |t| t.iter().filter(|(seq, _)| *seq < s.seq).map(|(_, o)| *o).collect());
                    let read = read_set(&mut found, statements, members, owner, &s.body, &before, community);
                    judge(read, facts, &e, s, community)
                }
                Err(error) => Verdict::Exception(
                    Exception::new(Check::SettlementMismatch, "a settlement that can be recomputed", error.to_string())
                        .interval(*interval)
                        .evidence(format!("the settlement, entry {}", s.seq), &s.bytes),
                ),
            };
            not_final.insert((*owner, *interval));
            match verdict {
                Verdict::Pending => counts.pending_redo += 1,
                Verdict::AfterWindow => counts.changed_after_window += 1,
                Verdict::Exception(exception) => exceptions.push(exception.node(key(owner))),
            }
        }
        counts.not_yet_due += unsettled(owner, facts, &latest, community, exceptions);
    }
    settled_alike(&settled_trades, &not_final, exceptions);
    counts
}

/// The node's trades per interval, each once, with the position of its entry.
fn own_trades(owner: &[u8; 32], facts: &LedgerFacts) -> BTreeMap<IntervalId, Vec<(u64, OwnTrade)>> {
    let mut by_interval: BTreeMap<IntervalId, Vec<(u64, OwnTrade)>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for t in facts.trades.iter().filter(|t| seen.insert(t.digest)) {
        let (counterparty, side) = t.seen_by(owner);
        let own = OwnTrade { trade: t.digest, counterparty, side, energy: t.energy, price: t.price };
        by_interval.entry(t.interval).or_default().push((t.seq, own));
    }
    by_interval
}

/// The latest revision of each interval's settlement (the later entry if one is repeated).
fn latest_settlements(facts: &LedgerFacts) -> BTreeMap<IntervalId, &SettlementFact> {
    let mut latest: BTreeMap<IntervalId, &SettlementFact> = BTreeMap::new();
    for s in &facts.settlements {
        let slot = latest.entry(s.body.interval).or_insert(s);
        if s.body.revision >= slot.body.revision {
            *slot = s;
        }
    }
    latest
}

/// Whether two settlements have the same figures (all but revision, time, and which
/// statements were read).
fn same_figures(a: &Settlement, b: &Settlement) -> bool {
    let figures = |s: &Settlement| Settlement {
        revision: 0,
        created_at: Timestamp(0),
        members: 0,
        inputs: Hash::ZERO,
        ..s.clone()
    };
    figures(a) == figures(b)
}

/// The statements a settlement read, as found, and when the newest of the final ones it did
/// not read was made.
#[derive(Debug, Clone)]
struct Read<'a> {
    members: Vec<([u8; 32], &'a Kept)>,
    newest_unread: Timestamp,
}

/// Finds the statements `s` read among the likely sets (each member's latest made by then,
/// or the final ones, either possibly without one member's; or its own and those made first):
/// the set whose digest it records, if it gives `s`. Searched once per digest (a late statement leaves many nodes on
/// the same set).
fn read_set<'a>(
    found: &mut HashMap<Hash, Read<'a>>,
    statements: &StatementIndex<'a>,
    final_set: &[([u8; 32], &'a Kept)],
    owner: &[u8; 32],
    s: &Settlement,
    trades: &[OwnTrade],
    community: &Community,
) -> Option<Read<'a>> {
    let read = match found.get(&s.inputs) {
        Some(read) => read.clone(),
        None => {
            let want = usize::try_from(s.members).unwrap_or(usize::MAX);
            let candidates = [
                statements.as_of(s.interval, s.created_at),
                final_set.to_vec(),
                statements.first_made(s.interval, owner, s.created_at, want),
            ];
            let members = candidates.iter().find_map(|set| with_digest(set, want, &s.inputs))?;
            let newest_unread = statements.newest_unread(s.interval, &members);
            let read = Read { members, newest_unread };
            found.insert(s.inputs, read.clone());
            read
        }
    };
    let made = settlement::settle(community, s.interval, owner, &read.members, trades, s.created_at).ok()?;
    (same_figures(&made, s) && made.inputs == s.inputs).then_some(read)
}

/// `set`, or `set` without one member, if it has `want` members and digest `digest`.
fn with_digest<'a>(set: &[([u8; 32], &'a Kept)], want: usize, digest: &Hash) -> Option<Vec<([u8; 32], &'a Kept)>> {
    if set.len() == want && settlement::inputs_digest(set) == *digest {
        return Some(set.to_vec());
    }
    if set.len() != want + 1 {
        return None;
    }
    (0..set.len()).find_map(|skip| {
        let without: Vec<_> = set.iter().enumerate().filter(|(i, _)| *i != skip).map(|(_, m)| *m).collect();
        (settlement::inputs_digest(&without) == *digest).then_some(without)
    })
}

/// What a settlement whose figures are not final is.
enum Verdict {
    /// Right on what it read; the statement that changes it came less than
    /// [`SETTLE_AFTER_MS`] before its ledger ends: the node redoes it in its next slot.
    Pending,
    /// Right on what it read; the statement that changes it came after the members' statement
    /// window, when no node redoes a settlement any more: final as it stands.
    AfterWindow,
    /// Stale or a mismatch.
    Exception(Exception),
}

/// A settlement whose figures are not those of the final statements: pending, after the
/// window, stale (right on what it read but not redone in time), or a mismatch (no statements
/// found give it).
fn judge(
    read: Option<Read<'_>>,
    facts: &LedgerFacts,
    expected: &Settlement,
    s: &SettlementFact,
    community: &Community,
) -> Verdict {
    let check = match read {
        None => Check::SettlementMismatch,
        Some(read) => {
            let window_end = community.interval.end(s.body.interval).0.saturating_add(STATEMENT_MAX_AGE_MS);
            if read.newest_unread.0 > window_end {
                return Verdict::AfterWindow;
            }
            let redo_due = read.newest_unread.0.saturating_add(SETTLE_AFTER_MS);
            if facts.last_time.is_some_and(|last| last.0 < redo_due) {
                return Verdict::Pending;
            }
            Check::SettlementStale
        }
    };
    let (expected, observed) = differences(expected, &s.body);
    Verdict::Exception(
        Exception::new(check, expected, observed)
            .interval(s.body.interval)
            .evidence(format!("the settlement (revision {}), entry {}", s.body.revision, s.seq), &s.bytes),
    )
}

/// The fields in which `expected` and `observed` differ, as `name=value` lists.
fn differences(expected: &Settlement, observed: &Settlement) -> (String, String) {
    let fields = |s: &Settlement| -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("complete", s.complete.to_string()),
            ("statement", s.statement.to_string()),
            ("members", s.members.to_string()),
            ("inputs", s.inputs.to_string()),
            ("imported", s.imported.0.to_string()),
            ("exported", s.exported.0.to_string()),
            ("shared_import", s.shared_import.0.to_string()),
            ("shared_export", s.shared_export.0.to_string()),
            ("sharing_price", s.sharing_price.0.to_string()),
            ("grid_import", s.grid_import.0.to_string()),
            ("grid_export", s.grid_export.0.to_string()),
            ("retail", s.retail.0.to_string()),
            ("feed_in", s.feed_in.0.to_string()),
            ("cost", s.cost.0.to_string()),
            ("baseline", s.baseline.0.to_string()),
            ("trades", s.trades.len().to_string()),
        ];
        for t in &s.trades {
            f.push(("trade", format!("{}:{}Wh:{}", t.trade, t.delivered.0, t.money.0)));
        }
        f
    };
    let (e, o) = (fields(expected), fields(observed));
    let differ = |mine: &[(&str, String)], other: &[(&str, String)]| {
        mine.iter().filter(|x| !other.contains(x)).map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    };
    (differ(&e, &o), differ(&o, &e))
}

/// A settlement delivers and shares no more than its node metered, and accounts for all of it.
fn check_metered(owner: &[u8; 32], s: &SettlementFact, exceptions: &mut Vec<Exception>) {
    let b = &s.body;
    let delivered =
        |side: Side| b.trades.iter().filter(|t| t.side == side).map(|t| u128::from(t.delivered.0)).sum::<u128>();
    let out = delivered(Side::Sell) + u128::from(b.shared_export.0) + u128::from(b.grid_export.0);
    let into = delivered(Side::Buy) + u128::from(b.shared_import.0) + u128::from(b.grid_import.0);
    let over_contract = b.trades.iter().find(|t| t.delivered > t.energy);
    let fault = if out != u128::from(b.exported.0) {
        Some((format!("export accounted {} Wh", b.exported.0), format!("delivered + shared + grid = {out} Wh")))
    } else if into != u128::from(b.imported.0) {
        Some((format!("import accounted {} Wh", b.imported.0), format!("delivered + shared + grid = {into} Wh")))
    } else {
        over_contract
            .map(|t| (format!("at most {} Wh delivered", t.energy.0), format!("{} Wh delivered", t.delivered.0)))
    };
    if let Some((expected, observed)) = fault {
        exceptions.push(
            Exception::new(Check::BeyondMetered, expected, observed)
                .node(key(owner))
                .interval(b.interval)
                .evidence(format!("the settlement, entry {}", s.seq), &s.bytes),
        );
    }
}

fn wrong_community(owner: &[u8; 32], s: &SettlementFact) -> Exception {
    Exception::new(Check::WrongCommunity, "the audited community", format!("community {}", s.body.community.0))
        .node(key(owner))
        .interval(s.body.interval)
        .evidence(format!("the settlement, entry {}", s.seq), &s.bytes)
}

/// Trades of intervals that have no settlement at all although the ledger went on long
/// enough for one (an interval is settled at the latest [`SETTLE_AFTER_MS`] after its end, in
/// the node's next hourly slot); returns how many were not due yet.
fn unsettled(
    owner: &[u8; 32],
    facts: &LedgerFacts,
    latest: &BTreeMap<IntervalId, &SettlementFact>,
    community: &Community,
    exceptions: &mut Vec<Exception>,
) -> u64 {
    let mut not_due = 0;
    let last = facts.last_time.unwrap_or(Timestamp(0));
    let mut seen = HashSet::new();
    for t in facts.trades.iter().filter(|t| !latest.contains_key(&t.interval) && seen.insert(t.digest)) {
        let due = community.interval.end(t.interval).0.saturating_add(SETTLE_AFTER_MS + STATEMENT_GOSSIP_MS);
        if last.0 < due {
            not_due += 1;
            continue;
        }
        exceptions.push(
            Exception::new(
                Check::TradeUnsettled,
                format!("settled by {}", Timestamp(due)),
                format!("no settlement of the interval; the ledger goes on to {last}"),
            )
            .node(key(owner))
            .interval(t.interval)
            .trade(&t.digest),
        );
    }
    not_due
}

/// Each trade is in one settlement per party, and both parties agree on its delivery (of
/// settlements that are final: one pending or reported already is not compared again).
fn settled_alike(settled: &SettledBy, not_final: &HashSet<([u8; 32], IntervalId)>, exceptions: &mut Vec<Exception>) {
    for (trade, by) in settled {
        let mut per_party: BTreeMap<[u8; 32], Vec<(IntervalId, SettledTrade)>> = BTreeMap::new();
        for (owner, interval, t) in by {
            per_party.entry(*owner).or_default().push((*interval, *t));
        }
        for (owner, settled) in &per_party {
            if settled.len() > 1 {
                let intervals: Vec<String> = settled.iter().map(|(i, _)| i.0.to_string()).collect();
                let e = Exception::new(
                    Check::DeliveredTwice,
                    "settled once by each party",
                    format!("settled {} times, in intervals {}", settled.len(), intervals.join(", ")),
                );
                exceptions.push(e.node(key(owner)).interval(settled[0].0).trade(trade));
            }
        }
        let finals: Vec<(&[u8; 32], &(IntervalId, SettledTrade))> = per_party
            .iter()
            .filter_map(|(owner, s)| s.first().map(|first| (owner, first)))
            .filter(|(owner, (interval, _))| !not_final.contains(&(**owner, *interval)))
            .collect();
        if let [(a, (_, ta)), (b, (interval, tb))] = finals[..]
            && (ta.delivered, ta.money) != (tb.delivered, tb.money)
        {
            let e = Exception::new(
                Check::SettlementDisagrees,
                format!("{} settles {} Wh for {}", key(a), ta.delivered.0, ta.money.0),
                format!("{} settles {} Wh for {}", key(b), tb.delivered.0, tb.money.0),
            );
            exceptions.push(e.node(key(b)).interval(*interval).trade(trade));
        }
    }
}
