use serde::{Deserialize, Serialize};

use super::Timestamp;

/// The most characters of a progress note the job keeps; a longer one is cut, with an ellipsis.
pub const MAX_NOTE_CHARS: usize = 256;

/// How far a running job's processor says it has come, as the job keeps it and its document
/// shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    fraction: f64,
    note: String,
    updated_at: Timestamp,
}

impl Progress {
    /// A report made at `at`. The fraction is clamped to 0..=1 (a `NaN` reads as 0) and the note
    /// cut to [`MAX_NOTE_CHARS`]: a processor's report of its progress never fails its job.
    pub fn new(fraction: f64, note: impl Into<String>, at: Timestamp) -> Self {
        let fraction = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        let mut note = note.into();
        if let Some((cut, _)) = note.char_indices().nth(MAX_NOTE_CHARS) {
            note.truncate(cut);
            note.push('…');
        }
        Self {
            fraction,
            note,
            updated_at: at,
        }
    }

    /// The share of the work done, from 0 to 1.
    pub fn fraction(&self) -> f64 {
        self.fraction
    }

    /// What the processor said it is doing.
    pub fn note(&self) -> &str {
        &self.note
    }

    /// When the processor reported it.
    pub fn updated_at(&self) -> Timestamp {
        self.updated_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_kept_within_its_bounds() {
        let at = Timestamp::from_millis(1_000);
        assert_eq!(Progress::new(1.5, "", at).fraction(), 1.0);
        assert_eq!(Progress::new(-0.1, "", at).fraction(), 0.0);
        assert_eq!(Progress::new(f64::NAN, "", at).fraction(), 0.0);
        assert_eq!(Progress::new(0.25, "", at).fraction(), 0.25);
        let long = Progress::new(0.5, "é".repeat(MAX_NOTE_CHARS + 10), at);
        assert_eq!(long.note().chars().count(), MAX_NOTE_CHARS + 1);
        assert!(long.note().ends_with('…'));
        assert_eq!(Progress::new(0.5, "short", at).note(), "short");
    }

    #[test]
    fn a_report_round_trips_through_json() {
        let progress = Progress::new(0.4, "resizing", Timestamp::from_millis(1_795_000_000_123));
        let json = serde_json::to_value(&progress).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"fraction": 0.4, "note": "resizing", "updated_at": "2026-11-18T11:06:40.123Z"})
        );
        assert_eq!(serde_json::from_value::<Progress>(json).unwrap(), progress);
    }
}
