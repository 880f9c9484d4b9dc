//! The time series as a run advances: which rows an instant closes, and how busy the workers
//! were on average in each, integrated exactly between events.

/// Integrates a count of busy workers (invocations, threads) over time, row by row.
#[derive(Debug, Clone)]
pub struct Sampler {
    /// The width of a row (µs).
    sample: u64,
    /// When the current row ends.
    row_end: u64,
    /// Busy worker-µs within the current row, and over the whole run.
    row_area: u64,
    total_area: u64,
    /// The instant the integrals were last brought up to.
    at: u64,
}

/// The rows an [`Sampler::advance`] closed, each as its workers' mean: an iterator.
#[derive(Debug, Clone, Copy)]
pub struct Closed {
    first: Option<f64>,
    /// Whole rows after the first, all at `busy`.
    then: u64,
    busy: u32,
}

impl Iterator for Closed {
    type Item = f64;

    fn next(&mut self) -> Option<f64> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        if self.then == 0 {
            return None;
        }
        self.then -= 1;
        Some(f64::from(self.busy))
    }
}

impl Sampler {
    /// Rows `sample` µs wide, from 0.
    pub fn new(sample: u64) -> Self {
        Self {
            sample,
            row_end: sample,
            row_area: 0,
            total_area: 0,
            at: 0,
        }
    }

    /// Brings the integrals up to `at`, with `busy` workers since the last call, and returns the
    /// mean of each row that ended by then, oldest first. Nothing changed between the two calls,
    /// so every row closed after the first was busy at exactly `busy`.
    pub fn advance(&mut self, at: u64, busy: u32) -> Closed {
        let busy_for = |from: u64, to: u64| u64::from(busy) * (to - from);
        let mut closed = Closed {
            first: None,
            then: 0,
            busy,
        };
        if self.row_end <= at {
            let area = self.row_area + busy_for(self.at, self.row_end);
            self.total_area += busy_for(self.at, self.row_end);
            #[allow(clippy::cast_precision_loss)]
            let mean = area as f64 / self.sample as f64;
            closed.first = Some(mean);
            self.at = self.row_end;
            self.row_end += self.sample;
            self.row_area = 0;
            if self.row_end <= at {
                closed.then = (at - self.at) / self.sample;
                let whole = closed.then * self.sample;
                self.total_area += busy_for(self.at, self.at + whole);
                self.at += whole;
                self.row_end += whole;
            }
        }
        self.row_area += busy_for(self.at, at);
        self.total_area += busy_for(self.at, at);
        self.at = at;
        closed
    }

    /// The last row of a run that ends at `end` with `closed` rows closed: its length and mean,
    /// when the run ends inside a row (or has no row yet, so that every run has one).
    pub fn last_row(&self, end: u64, closed: usize) -> Option<(u64, f64)> {
        let done = closed as u64 * self.sample;
        if end <= done && closed > 0 {
            return None;
        }
        let length = end - done;
        #[allow(clippy::cast_precision_loss)]
        let mean = if length == 0 {
            0.0
        } else {
            self.row_area as f64 / length as f64
        };
        Some((length, mean))
    }

    /// Busy worker-µs since the start.
    pub fn total_area(&self) -> u64 {
        self.total_area
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_averages_the_workers_busy_in_it() {
        // Rows of 10 µs: 2 busy from 0 to 5, 4 from 5 to 32, 0 after.
        let mut sampler = Sampler::new(10);
        assert_eq!(sampler.advance(5, 2).count(), 0);
        let rows: Vec<f64> = sampler.advance(32, 4).collect();
        assert_eq!(rows, vec![3.0, 4.0, 4.0]);
        // A run ending at 32 µs, after three rows: a last row of 2 µs at 4 busy.
        assert_eq!(sampler.last_row(32, 3), Some((2, 4.0)));
        assert_eq!(sampler.last_row(30, 3), None);
        assert_eq!(sampler.advance(40, 0).collect::<Vec<_>>(), vec![0.8]);
        assert_eq!(sampler.total_area(), 2 * 5 + 4 * 27);
    }
}
