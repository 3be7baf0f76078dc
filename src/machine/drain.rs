//! The drain: how long the stop signal is held — a set time, or (`--drain MIN..MAX`) until the app's inbound traffic has stopped.
//!
//! The adaptive rule, a pure function of the looks at the traffic
//! ([`Watch::observe`]): with λ the arrival rate seen since the drain began,
//! the traffic has stopped once the silence since the last arrival is one
//! that a Poisson stream at λ would show with probability below 1/1000
//! (e^(−λ·t) < 0.001, so t > ln(1000)/λ ≈ 6.9/λ), and at least [`FLOOR`].
//! λ counts the whole drain so far, the silence included: a conservative
//! estimate, so that a few early arrivals never make a short pause look
//! like the end.
//! A rate seen over the whole drain includes the busy time before the
//! balancer let go, so sparse background traffic after it (a prober every
//! second, a scrape every 15 s) does not reset the verdict for long; a quiet
//! spell in light traffic before the balancer noticed is what MIN is for.

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

/// Why a drain ended (the reason in its log line).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DrainEnd {
    /// The traffic stopped: silent this long, after `arrivals` at this rate.
    Quiet {
        silence: Duration,
        rate: Rate,
        arrivals: u64,
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
    last_arrival: Option<Time>,
}

impl Watch {
    pub fn new(since: Time) -> Watch {
        Watch {
            since,
            base: None,
            arrivals: 0,
            last_arrival: None,
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
        let total = look.arrivals.saturating_sub(base);
        if total > self.arrivals {
            self.arrivals = total;
            self.last_arrival = Some(now);
        }
        let silence = now.saturating_sub(self.last_arrival.unwrap_or(self.since));
        match silence >= self.needed(now) {
            true => Verdict::Over(DrainEnd::Quiet {
                silence,
                rate: self.rate(now),
                arrivals: self.arrivals,
            }),
            false => Verdict::Holding,
        }
    }

    /// The silence that says the traffic stopped: ln(1000)/λ, at least FLOOR.
    fn needed(&self, now: Time) -> Duration {
        if self.arrivals == 0 {
            return FLOOR;
        }
        let elapsed = now.saturating_sub(self.since).as_nanos();
        // ln(1000) = 6.907755…
        let nanos = elapsed * 6_907_755 / (1_000_000 * u128::from(self.arrivals));
        FLOOR.max(Duration::from_nanos(nanos.min(u128::from(u64::MAX)) as u64))
    }

    /// The rate seen since the drain began.
    pub fn rate(&self, now: Time) -> Rate {
        Rate::of(self.arrivals, now.saturating_sub(self.since))
    }

    pub fn arrivals(&self) -> u64 {
        self.arrivals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn sparse_traffic_needs_a_longer_silence() {
        let mut w = Watch::new(ms(0));
        let mut total = 0;
        w.observe(look(1, 0), ms(0));
        // One arrival a second, the last at 9.1 s, then none: at time t,
        // λ = 10/t, so the silence t − 9.1 must reach 6.9·t/10: t ≥ 29.4 s.
        assert_eq!(
            feed(&mut w, &mut total, 100, 9_100, |t| u64::from(
                t % 1000 == 100
            )),
            None
        );
        let (t, _) = feed(&mut w, &mut total, 9_200, 60_000, |_| 0).unwrap();
        assert!((29_400..=29_600).contains(&t), "ended at {t} ms");
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
