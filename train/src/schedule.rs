//! The learning-rate schedule: linear warmup, then cosine decay.
//!
// ANCHOR: schedule_doc
//! At step 0 Adam's second-moment estimate `v` has seen one gradient, so its
//! normalised steps are large and noisy; a full learning rate there can
//! throw freshly initialised weights (and the logit scale) far off. A linear
//! *warmup* over the first `warmup` steps lets the moments settle first.
//! Afterwards a *cosine decay* lowers the rate smoothly from `peak_lr` to
//! `min_lr` at step `total`: large steps while the loss falls fast, small
//! ones at the end to settle into a minimum instead of bouncing around it.
//!
//! $$ \eta(t) = \begin{cases}
//!   \eta_{\max} \frac{t + 1}{W} & t < W \\
//!   \eta_{\min} + \tfrac12 (\eta_{\max} - \eta_{\min}) \big(1 + \cos(\pi \frac{t - W}{S - W})\big) & W \le t \le S \\
//!   \eta_{\min} & t > S
//! \end{cases} $$
// ANCHOR_END: schedule_doc

// ANCHOR: schedule
/// Linear warmup over `warmup` steps to `peak_lr`, then cosine decay to
/// `min_lr` at step `total` (and `min_lr` after it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Steps of linear warmup `W` (0: start at the peak).
    pub warmup: usize,
    /// The step `S` at which the decay reaches `min_lr`: the run's length.
    pub total: usize,
    /// `η_max`, reached at the end of the warmup.
    pub peak_lr: f32,
    /// `η_min`, the floor of the decay.
    pub min_lr: f32,
}

impl Schedule {
    /// The learning rate of step `step` (counting from 0).
    pub fn lr(&self, step: usize) -> f32 {
        if step < self.warmup {
            return self.peak_lr * (step + 1) as f32 / self.warmup as f32;
        }
        let span = self.total.saturating_sub(self.warmup).max(1);
        let progress = ((step - self.warmup) as f64 / span as f64).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        (self.min_lr as f64 + (self.peak_lr - self.min_lr) as f64 * cosine) as f32
    }
}
// ANCHOR_END: schedule

#[cfg(test)]
mod tests {
    use super::*;

    const S: Schedule = Schedule {
        warmup: 10,
        total: 110,
        peak_lr: 1e-3,
        min_lr: 1e-5,
    };

    #[test]
    fn warmup_rises_linearly_to_the_peak() {
        assert!((S.lr(0) - 1e-4).abs() < 1e-10);
        assert!((S.lr(4) - 5e-4).abs() < 1e-10);
        assert_eq!(S.lr(9), 1e-3);
        assert_eq!(S.lr(10), 1e-3);
    }

    #[test]
    fn cosine_halfway_and_floor() {
        let half = S.lr(60);
        assert!((half - (1e-5 + 0.5 * (1e-3 - 1e-5))).abs() < 1e-9, "{half}");
        assert!((S.lr(110) - 1e-5).abs() < 1e-12);
        assert!((S.lr(1000) - 1e-5).abs() < 1e-12);
        // never increases after the warmup
        assert!((10..120).all(|t| S.lr(t + 1) <= S.lr(t)));
    }

    #[test]
    fn no_warmup_starts_at_the_peak() {
        let s = Schedule { warmup: 0, ..S };
        assert_eq!(s.lr(0), 1e-3);
    }
}
