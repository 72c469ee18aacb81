use thiserror::Error;

/// Input that cannot become an event. Each is reported and skipped (replay: `line N: ...` on
/// stderr; service: acked and copied to `ventana.dlq.<reason>`); nothing else stops.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Not JSON, or a field of the wrong JSON type.
    #[error("undecodable: {0}")]
    Undecodable(String),
    /// `type` names no event ventana knows (its value is not repeated: it may be any text).
    #[error("unknown event type")]
    UnknownType,
    /// A field the event needs is absent (or null).
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field has a value outside its vocabulary (bad instant, channel, enum value).
    #[error("invalid field `{field}`: {problem}")]
    InvalidField {
        /// The field's name.
        field: &'static str,
        /// What is wrong with it (never its value when that could be text).
        problem: String,
    },
    /// `occurred_at` is later than the decision time by more than `max_clock_skew`.
    #[error("clock skew: {0}")]
    ClockSkew(String),
    /// Larger than the service accepts.
    #[error("oversize: {size} bytes, at most {limit} accepted")]
    Oversize {
        /// The message's size in bytes.
        size: usize,
        /// The most accepted.
        limit: usize,
    },
}

impl WireError {
    /// The short reason used in DLQ subjects and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Undecodable(_) => "undecodable",
            Self::UnknownType => "unknown_type",
            Self::MissingField(_) => "missing_field",
            Self::InvalidField { .. } => "invalid_field",
            Self::ClockSkew(_) => "clock_skew",
            Self::Oversize { .. } => "oversize",
        }
    }
}

impl From<ventana_core::BadId> for WireError {
    fn from(bad: ventana_core::BadId) -> Self {
        Self::InvalidField {
            field: bad.field,
            problem: bad.problem.to_string(),
        }
    }
}

impl From<ventana_core::Invalid> for WireError {
    fn from(invalid: ventana_core::Invalid) -> Self {
        match invalid {
            ventana_core::Invalid::ClockSkew { .. } => Self::ClockSkew(invalid.to_string()),
        }
    }
}
