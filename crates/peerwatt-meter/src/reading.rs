//! What the meter crate produces: normalised readings, and named reasons for what it refuses.

use std::fmt;

use peerwatt_core::{Timestamp, W, Wh};
use serde::{Deserialize, Serialize};

/// Which of the household's meters a topic belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The grid connection meter (import and export).
    Grid,
    /// A PV inverter.
    Pv,
    /// A home battery.
    Battery,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Grid => "grid",
            Role::Pv => "pv",
            Role::Battery => "battery",
        })
    }
}

/// What one payload said, in integer units, before it is given a role. Any subset may be set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// Power in W. Grid: + import, − export. PV: generation. Battery: + charging.
    pub power: Option<i64>,
    /// Grid: import counter. PV: yield counter. Battery: charged counter. In Wh.
    pub energy_in: Option<i64>,
    /// Grid: export counter. Battery: discharged counter. In Wh.
    pub energy_out: Option<i64>,
}

impl Sample {
    /// Whether the payload carried nothing this meter role can use.
    pub fn is_empty(&self) -> bool {
        self.power.is_none() && self.energy_in.is_none() && self.energy_out.is_none()
    }
}

/// A validated reading, normalised to integers. Only the quantities present in the message
/// are set; `counter_epoch` increases whenever the meter's counters were reset or replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reading {
    /// When peerwatt received it.
    pub time: Timestamp,
    /// The role of the meter it came from.
    pub role: Role,
    /// Grid power: + import, − export.
    pub grid_power: Option<W>,
    /// Cumulative energy imported from the grid.
    pub import_total: Option<Wh>,
    /// Cumulative energy exported to the grid.
    pub export_total: Option<Wh>,
    /// PV generation.
    pub pv_power: Option<W>,
    /// Cumulative PV yield.
    pub pv_yield_total: Option<Wh>,
    /// Battery power: + charging, − discharging.
    pub battery_power: Option<W>,
    /// Counter epoch of this meter (starts at 0).
    pub counter_epoch: u32,
}

impl Reading {
    /// A reading of `role` at `time` from a validated sample.
    pub fn from_sample(time: Timestamp, role: Role, s: &Sample, counter_epoch: u32) -> Reading {
        // Counters are never negative here: validation refused them (`negative_counter`).
        let wh = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok()).map(Wh);
        let mut r = Reading {
            time,
            role,
            grid_power: None,
            import_total: None,
            export_total: None,
            pv_power: None,
            pv_yield_total: None,
            battery_power: None,
            counter_epoch,
        };
        match role {
            Role::Grid => {
                r.grid_power = s.power.map(W);
                r.import_total = wh(s.energy_in);
                r.export_total = wh(s.energy_out);
            }
            Role::Pv => {
                r.pv_power = s.power.map(W);
                r.pv_yield_total = wh(s.energy_in);
            }
            Role::Battery => r.battery_power = s.power.map(W),
        }
        r
    }
}

impl fmt::Display for Reading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.time, self.role)?;
        let fields = [
            ("power", self.grid_power.map(|w| w.to_string())),
            ("import", self.import_total.map(|w| w.to_string())),
            ("export", self.export_total.map(|w| w.to_string())),
            ("pv", self.pv_power.map(|w| w.to_string())),
            ("yield", self.pv_yield_total.map(|w| w.to_string())),
            ("battery", self.battery_power.map(|w| w.to_string())),
        ];
        for (name, value) in fields {
            if let Some(v) = value {
                write!(f, " {name}={v}")?;
            }
        }
        if self.counter_epoch > 0 {
            write!(f, " epoch={}", self.counter_epoch)?;
        }
        Ok(())
    }
}

/// Why a message was refused (or, for `CounterReset` and `Stale`, what was noticed).
/// Every reason has a stable snake_case name used in logs and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The payload is larger than the configured maximum.
    Oversized,
    /// Not valid UTF-8 / JSON / a plain number: binary garbage or broken syntax.
    Malformed,
    /// JSON nested deeper than any meter sends.
    TooDeep,
    /// A field this format needs is absent.
    MissingField,
    /// A field has the wrong JSON type (object, bool, null where a number belongs).
    WrongType,
    /// Text where a number belongs.
    NonNumeric,
    /// `NaN` or an infinity.
    NotFinite,
    /// A number too large for its unit.
    OutOfRange,
    /// An energy counter below zero.
    NegativeCounter,
    /// A power that must be positive (e.g. DSMR's "currently delivered") is negative.
    NegativePower,
    /// A power beyond the configured maximum.
    ImplausiblePower,
    /// A counter rising faster than the configured maximum power allows.
    ImplausibleJump,
    /// A counter went backwards: the meter was reset or replaced; a new counter epoch starts.
    CounterReset,
    /// A topic that is not configured, or that this format does not read.
    WrongTopic,
    /// `format = "auto"` could not recognise the payload.
    UnrecognisedFormat,
    /// A JSON object names the same key twice: the message is ambiguous, so nothing in it is
    /// trusted.
    RepeatedKey,
    /// An availability message (an MQTT last will, `online`/`offline`, `true`/`false`): the
    /// device's state, not a measurement.
    Availability,
    /// A figure for a period (today, yesterday, this month or year) that resets: not a counter.
    PeriodAggregate,
    /// One part of the meter's quantity (one phase, one DC input, one channel not configured)
    /// where the whole is needed.
    PartialQuantity,
    /// Every value of the meter's message is zero: the reader has not decoded the meter yet.
    AllZero,
    /// No reading arrived for longer than the configured staleness limit.
    Stale,
}

impl Reason {
    /// Every reason, in a fixed order.
    pub const ALL: [Reason; 21] = [
        Reason::Oversized,
        Reason::Malformed,
        Reason::TooDeep,
        Reason::MissingField,
        Reason::WrongType,
        Reason::NonNumeric,
        Reason::NotFinite,
        Reason::OutOfRange,
        Reason::NegativeCounter,
        Reason::NegativePower,
        Reason::ImplausiblePower,
        Reason::ImplausibleJump,
        Reason::CounterReset,
        Reason::WrongTopic,
        Reason::UnrecognisedFormat,
        Reason::RepeatedKey,
        Reason::Availability,
        Reason::PeriodAggregate,
        Reason::PartialQuantity,
        Reason::AllZero,
        Reason::Stale,
    ];

    /// The stable name.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Oversized => "oversized",
            Reason::Malformed => "malformed",
            Reason::TooDeep => "too_deep",
            Reason::MissingField => "missing_field",
            Reason::WrongType => "wrong_type",
            Reason::NonNumeric => "non_numeric",
            Reason::NotFinite => "not_finite",
            Reason::OutOfRange => "out_of_range",
            Reason::NegativeCounter => "negative_counter",
            Reason::NegativePower => "negative_power",
            Reason::ImplausiblePower => "implausible_power",
            Reason::ImplausibleJump => "implausible_jump",
            Reason::CounterReset => "counter_reset",
            Reason::WrongTopic => "wrong_topic",
            Reason::UnrecognisedFormat => "unrecognised_format",
            Reason::RepeatedKey => "repeated_key",
            Reason::Availability => "availability",
            Reason::PeriodAggregate => "period_aggregate",
            Reason::PartialQuantity => "partial_quantity",
            Reason::AllZero => "all_zero",
            Reason::Stale => "stale",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A refusal: the reason, and what exactly was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Reject {
    /// The named reason.
    pub reason: Reason,
    /// A human description (which field, which value).
    pub detail: String,
}

impl Reject {
    /// A refusal for `reason`.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Reject {
        Reject { reason, detail: detail.into() }
    }
}

/// How many messages were accepted, and how many refused for each reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Readings accepted.
    pub accepted: u64,
    rejected: [u64; Reason::ALL.len()],
}

impl Counters {
    /// Counts one occurrence of `reason`.
    pub fn count(&mut self, reason: Reason) {
        if let Some(i) = Reason::ALL.iter().position(|r| *r == reason) {
            self.rejected[i] += 1;
        }
    }

    /// How often `reason` occurred.
    pub fn get(&self, reason: Reason) -> u64 {
        Reason::ALL.iter().position(|r| *r == reason).map_or(0, |i| self.rejected[i])
    }

    /// Every reason that occurred, with its count.
    pub fn nonzero(&self) -> Vec<(Reason, u64)> {
        Reason::ALL.iter().copied().zip(self.rejected).filter(|(_, n)| *n > 0).collect()
    }
}
