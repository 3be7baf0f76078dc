//! What one traffic sample costs with N established loopback connections to a listener this process owns: `cargo run --release --example traffic_cost [N]`.
//!
//! Prints the median (and min, max) time of `Sampler::sample()` over 101
//! samples, idle and with bytes arriving on every connection between
//! samples, and the CPU share that is at one sample per 100 ms.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use usher::traffic::Sampler;

fn main() {
    let want: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("address");
    let mut clients = Vec::with_capacity(want);
    let mut servers = Vec::with_capacity(want);
    for _ in 0..want {
        // Two fds per connection: stop short, with a note, at the fd limit.
        match TcpStream::connect(addr).and_then(|c| Ok((c, listener.accept()?.0))) {
            Ok((c, s)) => {
                clients.push(c);
                servers.push(s);
            }
            Err(e) => {
                println!(
                    "note: {} connections only ({e}); raise `ulimit -n`",
                    clients.len()
                );
                break;
            }
        }
    }
    let n = clients.len();
    let me = std::process::id() as usher::process::Pid;
    let mut sampler = Sampler::start(&[me]).expect("sampler");
    println!("{n} connections");
    let idle = time(&mut sampler, n, |_| {});
    report("idle", &idle);
    let busy = time(&mut sampler, n, |_| {
        for c in &mut clients {
            c.write_all(b"x").expect("write");
        }
    });
    report("bytes on every connection", &busy);
}

/// Samples taken for each measure.
const SAMPLES: u32 = 101;

/// Timed samples (wall clock, each), `between` run (untimed) before each;
/// and the CPU time (user + system) they took in all.
fn time(
    sampler: &mut Sampler,
    n: usize,
    mut between: impl FnMut(u32),
) -> (Vec<Duration>, Duration) {
    let mut times = Vec::new();
    let mut cpu = Duration::ZERO;
    for i in 0..SAMPLES {
        between(i);
        let (start, cpu_start) = (Instant::now(), cpu_time());
        let got = sampler.sample().expect("sample");
        times.push(start.elapsed());
        cpu += cpu_time() - cpu_start;
        assert!(got.connections as usize >= n, "{got:?}");
    }
    times.sort();
    (times, cpu)
}

/// This thread's CPU time, user and system, from /proc (in clock ticks,
/// 10 ms each: summed over many samples, precise enough).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("/proc");
    let fields: Vec<&str> = stat[stat.rfind(')').expect("stat") + 2..]
        .split(' ')
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10)
}

fn report(what: &str, (times, cpu): &(Vec<Duration>, Duration)) {
    let us = |d: Duration| d.as_micros();
    let median = times[times.len() / 2];
    let cpu_each = *cpu / SAMPLES;
    println!(
        "{what}: wall median {} µs per sample (min {}, max {}); CPU {} µs per sample: {:.1}% of one core at one sample per 100 ms",
        us(median),
        us(times[0]),
        us(times[times.len() - 1]),
        us(cpu_each),
        cpu_each.as_secs_f64() / 0.1 * 100.0
    );
}
