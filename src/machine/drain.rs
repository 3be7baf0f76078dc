//! The drain: how long the stop signal is held — a set time, or (`--drain MIN..MAX`) until the app's inbound traffic has stopped.
//!
//! The adaptive rule, a pure function of the looks at the traffic
//! ([`Watch::observe`]), asks whether the app's traffic has dropped: the
//! traffic has stopped once, for one of the last [`RECENT`] looks that saw
//! arrivals, the
//! arrivals since it are far fewer than the rate before it predicts — fewer
//! than a Poisson stream at that rate would bring with probability 1/10,000
//! — and the last arrival is at least [`FLOOR`] ago. With no arrival since
//! that look this is a silence longer than ln(10,000)/λ ≈ 9.2/λ; the
//! arrivals allowed after it must come one per look (a prober every second,
//! a scrape every 15 s), never several at once, so that sparse background
//! traffic after the balancer let go does not hold the drain, while a busy
//! stream that pauses and resumes does.
//!
//! The rate before a look is its arrivals over the time from the drain's
//! start to it, plus one [`PERIOD`]: one more look of silence than was seen,
//! so that the first few arrivals (a rate from little evidence) never make a
//! short pause look like the end. One arrival is no rate: with none or one
//! (a stray request, a probe), [`FLOOR`] of silence is enough. 1/10,000 is
//! each test's threshold, not the chance of a false end over a drain: a
//! look tests up to [`RECENT`] candidates and a drain has many looks (150
//! in 15 s); the simulation below measures that chance. The arrivals before the stop signal are not seen (nothing is
//! sampled before it), so light traffic (a few requests a second) gives
//! little evidence in a short time: that is what MIN is for. The unit tests
//! below measure the rule on simulated streams; docs/shutdown.md quotes them.

use core::time::Duration;

use super::Time;
use crate::process::Traffic;

/// How long the stop signal is held.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DrainSpec {
    /// A set time (`--drain 5s`; 0: none).
    Fixed(Duration),
    /// At least `min`, at most `max`, ending when the traffic stops (`--drain 1s..15s`).
    Range { min: Duration, max: Duration },
}

impl DrainSpec {
    /// The longest it can hold.
    pub fn max(self) -> Duration {
        match self {
            DrainSpec::Fixed(d) => d,
            DrainSpec::Range { max, .. } => max,
        }
    }

    /// The same drain, held no longer than `limit`.
    pub fn cut(self, limit: Duration) -> DrainSpec {
        match self {
            DrainSpec::Fixed(d) => DrainSpec::Fixed(d.min(limit)),
            DrainSpec::Range { min, max } => DrainSpec::Range {
                min: min.min(limit),
                max: max.min(limit),
            },
        }
    }
}

/// How often the traffic is looked at during an adaptive drain.
pub const PERIOD: Duration = Duration::from_millis(100);
/// The shortest silence that counts as "stopped", whatever the rate: three looks.
pub const FLOOR: Duration = Duration::from_millis(300);

/// The chance below which the arrivals after a look say the traffic stopped.
const ALPHA: f64 = 1e-4;
/// The looks with arrivals the rule remembers: the last busy one and the
/// sparse ones after it.
pub const RECENT: usize = 8;

/// Why a drain ended (the reason in its log line).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DrainEnd {
    /// The traffic stopped: `silence` since the last busy look, whose rate
    /// was `rate`; `arrivals` in all, `sparse` of them after it.
    Quiet {
        silence: Duration,
        rate: Rate,
        arrivals: u64,
        sparse: u64,
    },
    /// MAX came with the traffic still arriving.
    Max { rate: Rate, arrivals: u64 },
    /// The app has no listening TCP socket (a worker): MIN was enough.
    NoListener,
    /// The traffic could not be watched; the drain held to MAX.
    Unseen,
}

/// Arrivals per second, in thousandths (integer arithmetic: float
/// formatting would cost the binary about 10 KiB).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default)]
pub struct Rate(pub u64);

impl Rate {
    fn of(arrivals: u64, over: Duration) -> Rate {
        let ms = over.as_millis().max(1);
        Rate((u128::from(arrivals) * 1_000_000 / ms).min(u128::from(u64::MAX)) as u64)
    }
}

/// What a look at the traffic says.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    /// Traffic may still come: look again.
    Holding,
    /// It has stopped, or there is nothing to watch.
    Over(DrainEnd),
}

/// An adaptive drain's evidence so far.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Watch {
    /// When the drain began.
    since: Time,
    /// The first look's cumulative count (arrivals are counted from it).
    base: Option<u64>,
    arrivals: u64,
    /// The last looks that saw arrivals, oldest first: when (milliseconds
    /// since `since`) and the arrivals by then; `len` of them are set.
    recent: [(u64, u64); RECENT],
    len: usize,
}

impl Watch {
    pub fn new(since: Time) -> Watch {
        Watch {
            since,
            base: None,
            arrivals: 0,
            recent: [(0, 0); RECENT],
            len: 0,
        }
    }

    /// Takes one look at `now`.
    pub fn observe(&mut self, look: Traffic, now: Time) -> Verdict {
        let Some(base) = self.base else {
            self.base = Some(look.arrivals);
            if look.listeners == 0 {
                return Verdict::Over(DrainEnd::NoListener);
            }
            return Verdict::Holding;
        };
        let at = now
            .saturating_sub(self.since)
            .as_millis()
            .min(u64::MAX.into()) as u64;
        let total = look.arrivals.saturating_sub(base);
        if total > self.arrivals {
            self.arrivals = total;
            self.remember(at, total);
        }
        match self.quiet(at) {
            Some(end) => Verdict::Over(end),
            None => Verdict::Holding,
        }
    }

    fn remember(&mut self, at: u64, total: u64) {
        if self.len == RECENT {
            self.recent.copy_within(1.., 0);
            self.len -= 1;
        }
        self.recent[self.len] = (at, total);
        self.len += 1;
    }

    /// The rule (module doc), `at` milliseconds into the drain.
    fn quiet(&self, at: u64) -> Option<DrainEnd> {
        let last = self.recent[..self.len].last().map_or(0, |r| r.0);
        if at.saturating_sub(last) < FLOOR.as_millis() as u64 {
            return None;
        }
        let ms = Duration::from_millis;
        if self.arrivals <= 1 {
            // One arrival is no rate: a stray request, a probe.
            return Some(DrainEnd::Quiet {
                silence: ms(at.saturating_sub(last)),
                rate: Rate(0),
                arrivals: self.arrivals,
                sparse: self.arrivals,
            });
        }
        for k in (0..self.len).rev() {
            let (t, n) = self.recent[k];
            if n < 2 {
                return None;
            }
            let (before, silence) = (ms(t) + PERIOD, ms(at.saturating_sub(t)));
            let sparse = self.arrivals - n;
            if fewer_than_expected(n, before, silence, sparse) {
                return Some(DrainEnd::Quiet {
                    silence,
                    rate: Rate::of(n, before),
                    arrivals: self.arrivals,
                    sparse,
                });
            }
            // Looks before this one would count its arrivals as sparse.
            if k == 0 || n - self.recent[k - 1].1 != 1 {
                return None;
            }
        }
        None
    }

    /// The rate seen since the drain began.
    pub fn rate(&self, now: Time) -> Rate {
        Rate::of(self.arrivals, now.saturating_sub(self.since))
    }

    pub fn arrivals(&self) -> u64 {
        self.arrivals
    }
}

/// Whether `after` arrivals in `since` are improbably few (below [`ALPHA`])
/// for a Poisson stream at the rate of `n` arrivals in `before`.
fn fewer_than_expected(n: u64, before: Duration, since: Duration, after: u64) -> bool {
    let mean = n as f64 * since.as_secs_f64() / before.as_secs_f64();
    let mut term = exp_neg(mean); // P(0 arrivals)
    let mut p = term;
    for j in 1..=after {
        term *= mean / j as f64;
        p += term;
        if p >= ALPHA {
            return false;
        }
    }
    p < ALPHA
}

/// e^−x for x ≥ 0 (core has no exp): x = k·ln 2 + r with 0 ≤ r < ln 2,
/// e^−r by its series, then scaled by 2^−k in the exponent bits.
fn exp_neg(x: f64) -> f64 {
    use core::f64::consts::{LN_2, LOG2_E};
    if x.is_nan() {
        return 1.0; // "not improbable": never ends a drain on a bad number
    }
    if x >= 708.0 {
        return 0.0; // e^-708 is near the end of f64's normal range
    }
    let k = (x.max(0.0) * LOG2_E) as u64;
    let r = x.max(0.0) - k as f64 * LN_2;
    let (mut term, mut sum) = (1.0, 1.0);
    for i in 1..16 {
        term *= -r / i as f64;
        sum += term;
    }
    sum * f64::from_bits((1023 - k) << 52)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{println, vec::Vec};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn look(listeners: u32, arrivals: u64) -> Traffic {
        Traffic {
            listeners,
            arrivals,
            connections: 0,
        }
    }

    /// Feeds one look per 100 ms from `from` to `to` (ms), with `per_look`
    /// arrivals each; returns the first verdict that is not Holding.
    fn feed(
        w: &mut Watch,
        total: &mut u64,
        from: u64,
        to: u64,
        per_look: impl Fn(u64) -> u64,
    ) -> Option<(u64, DrainEnd)> {
        for t in (from..=to).step_by(100) {
            *total += per_look(t);
            if let Verdict::Over(end) = w.observe(look(1, *total), ms(t)) {
                return Some((t, end));
            }
        }
        None
    }

    #[test]
    fn no_listener_is_decided_at_the_first_look() {
        let mut w = Watch::new(ms(0));
        assert_eq!(
            w.observe(look(0, 5), ms(0)),
            Verdict::Over(DrainEnd::NoListener)
        );
    }

    #[test]
    fn a_quiet_server_is_quiet_after_the_floor() {
        let mut w = Watch::new(ms(0));
        let mut total = 9;
        assert_eq!(
            w.observe(look(2, total), ms(0)),
            Verdict::Holding,
            "the first look is the baseline"
        );
        let (t, end) = feed(&mut w, &mut total, 100, 5000, |_| 0).unwrap();
        assert_eq!(t, 300);
        assert!(matches!(end, DrainEnd::Quiet { arrivals: 0, .. }));
    }

    #[test]
    fn busy_traffic_that_stops_ends_the_drain_soon_after() {
        let mut w = Watch::new(ms(0));
        let mut total = 0;
        w.observe(look(1, 0), ms(0));
        // 3 arrivals a look (30/s) for 3 s, then nothing.
        assert_eq!(feed(&mut w, &mut total, 100, 3000, |_| 3), None);
        let (t, end) = feed(&mut w, &mut total, 3100, 10_000, |_| 0).unwrap();
        assert!((3300..=3500).contains(&t), "ended at {t} ms");
        let DrainEnd::Quiet { rate, arrivals, .. } = end else {
            panic!("{end:?}")
        };
        assert_eq!(arrivals, 90);
        assert!(rate.0 > 25_000 && rate.0 < 31_000, "{rate:?}");
    }

    #[test]
    fn a_prober_once_a_second_does_not_hold_the_drain_after_busy_traffic() {
        let mut w = Watch::new(ms(0));
        let mut total = 0;
        w.observe(look(1, 0), ms(0));
        // 30/s for 2 s plus a probe each second, then the probe alone.
        let busy = |t: u64| 3 + u64::from(t % 1000 == 0);
        assert_eq!(feed(&mut w, &mut total, 100, 2000, busy), None);
        let probe = |t: u64| u64::from(t % 1000 == 0);
        let (t, _) = feed(&mut w, &mut total, 2100, 10_000, probe).unwrap();
        assert!(t <= 2500, "held until {t} ms");
    }

    #[test]
    fn steady_traffic_never_looks_quiet() {
        let mut w = Watch::new(ms(0));
        let mut total = 0;
        w.observe(look(1, 0), ms(0));
        // One arrival every other look (5/s), for a minute.
        assert_eq!(
            feed(&mut w, &mut total, 100, 60_000, |t| u64::from(t % 200 == 0)),
            None
        );
    }

    #[test]
    fn one_arrival_is_no_rate() {
        let mut w = Watch::new(ms(0));
        let mut total = 0;
        w.observe(look(1, 0), ms(0));
        let (t, end) = feed(&mut w, &mut total, 100, 5000, |t| u64::from(t == 200)).unwrap();
        assert_eq!(t, 500, "{end:?}");
    }

    #[test]
    fn the_silence_needed_is_ln_10000_over_the_rate() {
        let mut w = Watch::new(ms(0));
        let mut total = 0;
        w.observe(look(1, 0), ms(0));
        // Two arrivals every 200 ms, the last at 9.1 s, then none: λ = 92/9.2 s,
        // so the silence must reach ln(10,000)/λ = 0.92 s.
        let steady = |t: u64| if t % 200 == 100 { 2 } else { 0 };
        assert_eq!(feed(&mut w, &mut total, 100, 9_100, steady), None);
        let (t, end) = feed(&mut w, &mut total, 9_200, 60_000, |_| 0).unwrap();
        assert_eq!(t, 10_100, "{end:?}");
        let rate = Rate(10_000);
        let (arrivals, sparse, silence) = (92, 0, ms(1000));
        assert_eq!(
            end,
            DrainEnd::Quiet {
                silence,
                rate,
                arrivals,
                sparse
            }
        );
    }

    /// A simulated drain: Poisson arrivals at `rate` a second until `lag`
    /// seconds (the balancer lets go), a prober every `probe` seconds (0:
    /// none) at a random phase, looks every 100 ms; when it ended (seconds;
    /// MAX is 10 s, MIN as given).
    fn simulated(seed: u64, rate: f64, lag: f64, probe: f64, min: f64) -> f64 {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut uniform = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut times = Vec::new();
        let mut t = -uniform().ln() / rate;
        while t < lag {
            times.push(t);
            t -= uniform().ln() / rate;
        }
        if probe > 0.0 {
            let mut t = uniform() * probe;
            while t < 10.0 {
                times.push(t);
                t += probe;
            }
        }
        let mut w = Watch::new(ms(0));
        w.observe(look(1, 0), ms(0));
        for k in 1..100 {
            let now = k as f64 / 10.0;
            let total = times.iter().filter(|&&t| t <= now).count() as u64;
            let over = w.observe(look(1, total), ms(k * 100)) != Verdict::Holding;
            if over && now >= min - 1e-9 {
                return now;
            }
        }
        10.0
    }

    /// Over `runs` seeds: the share that ended before the lag, the mean end,
    /// the share held to MAX.
    fn simulate(rate: f64, lag: f64, probe: f64, min: f64) -> (f64, f64, f64) {
        let runs = 400;
        let ends: Vec<f64> = (0..runs)
            .map(|s| simulated(s, rate, lag, probe, min))
            .collect();
        let share =
            |f: &dyn Fn(f64) -> bool| ends.iter().filter(|&&e| f(e)).count() as f64 / runs as f64;
        let mean = ends.iter().sum::<f64>() / runs as f64;
        let got = (share(&|e| e < lag), mean, share(&|e| e >= 10.0));
        println!(
            "{rate:>4}/s lag {lag:>3}s prober {probe:>2}s MIN {min}s: early {:5.1}%  mean end {:5.2}s  at MAX {:5.1}%",
            got.0 * 100.0,
            got.1,
            got.2 * 100.0
        );
        got
    }

    /// The rule on simulated streams (`cargo test --lib simulated_streams --
    /// --nocapture` prints the table docs/shutdown.md quotes): busy traffic
    /// (25 requests a second to a replica; examples/zero-downtime sends 50)
    /// ends soon after the balancer lets go, prober or not, and rarely early
    /// (at most 0.5 % of runs); light traffic (5 a second) needs a MIN.
    #[test]
    fn simulated_streams() {
        for lag in [0.3, 0.5, 1.0, 3.0] {
            for probe in [0.0, 1.0, 10.0] {
                let (early, mean, max) = simulate(25.0, lag, probe, 0.0);
                assert!(early <= 0.01 && max <= 0.01, "early {early}, at MAX {max}");
                assert!(mean < lag + 0.8, "mean end {mean} after a lag of {lag}");
            }
        }
        for lag in [0.3, 1.0, 3.0] {
            for (probe, min) in [(0.0, 0.0), (0.0, 2.0), (1.0, 2.0)] {
                let (early, _, _) = simulate(5.0, lag, probe, min);
                let bound = if min > 0.0 { 0.05 } else { 0.5 };
                assert!(early <= bound, "light traffic, MIN {min}s: early {early}");
            }
        }
    }

    #[test]
    fn exp_neg_agrees_with_std() {
        for x in [0.0, 1e-9, 0.5, 0.7, 1.0, 9.21, 50.0, 700.0] {
            let (got, want): (f64, f64) = (exp_neg(x), (-x).exp());
            assert!(
                (got - want).abs() <= want * 1e-12,
                "e^-{x}: {got} vs {want}"
            );
        }
        assert_eq!((exp_neg(708.0), exp_neg(f64::INFINITY)), (0.0, 0.0));
        assert_eq!(exp_neg(f64::NAN), 1.0);
        assert_eq!(exp_neg(-1.0), 1.0, "clamped at 0");
    }

    #[test]
    fn poisson_tail_threshold() {
        let s = Duration::from_secs;
        // 10 arrivals in 1 s: 0 in the next 0.92 s has p = e^-9.2 = 1.0e-4.
        assert!(!fewer_than_expected(10, s(1), ms(900), 0));
        assert!(fewer_than_expected(10, s(1), ms(950), 0));
        // One arrival allowed: p = e^-μ(1 + μ) < 1e-4 needs μ > 11.76.
        assert!(!fewer_than_expected(10, s(1), ms(1170), 1));
        assert!(fewer_than_expected(10, s(1), ms(1190), 1));
    }

    #[test]
    fn ranges_are_cut_whole() {
        let r = DrainSpec::Range {
            min: ms(1000),
            max: ms(9000),
        };
        assert_eq!(
            r.cut(ms(500)),
            DrainSpec::Range {
                min: ms(500),
                max: ms(500)
            }
        );
        assert_eq!(r.max(), ms(9000));
    }
}
