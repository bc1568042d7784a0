//! HTTP load for the single-send figure: wrk, the generator issue #5 names, when it is
//! installed (`scripts/ensure-wrk.sh`); otherwise a built-in reqwest client, which costs
//! more CPU on the same two cores and so understates the API a little.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;

/// What a load run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadResult {
    pub requests_per_sec: f64,
    pub p99: Duration,
    /// Non-2xx answers plus socket errors.
    pub errors: u64,
    /// Which client produced the figures.
    pub client: &'static str,
}

/// How fast to send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Each connection sends its next request as soon as the last is answered: the most
    /// the API can take, and its latency there.
    Flat,
    /// About this many requests per second in all, spread over the connections on a
    /// fixed schedule: the latency at a given load.
    PerSecond(f64),
}

/// One `POST` of `{"recipient", "content"}` per request, a different recipient each time,
/// on `connections` keep-alive connections for `secs` seconds, at `pace`.
pub async fn post_sends(
    url: &str,
    token: &str,
    connections: usize,
    secs: u64,
    pace: Pace,
    http: &reqwest::Client,
) -> anyhow::Result<LoadResult> {
    if which("wrk") {
        with_wrk(url, token, connections, secs, pace).await
    } else {
        Ok(built_in(url, token, connections, secs, pace, http).await)
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Each wrk thread numbers its own requests; the thread's address keeps them apart.
const WRK_SCRIPT: &str = r#"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
local base = tonumber(tostring({}):match("0x(%x+)"), 16) % 1000 * 10000
request = function()
  n = n + 1
  local body = string.format('{"recipient":"9%07d","content":"load"}', (base + n) % 10000000)
  return wrk.format(nil, nil, nil, body)
end
"#;

/// Paces wrk (which has no rate option) from its `delay()` hook: each thread hands out
/// send times on a fixed schedule, read from the monotonic clock through LuaJIT's FFI. A
/// thread that fell behind (the API stalled) sends the missed requests at once, as open
/// clients would, unless it is over a second behind.
const WRK_PACING: &str = r#"
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } smsgate_timespec;
int clock_gettime(int clk_id, smsgate_timespec *tp);
]]
local clock = ffi.new("smsgate_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, clock) -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end
local interval_ms = 0
local next_due = nil
init = function(args)
  interval_ms = 1000 * tonumber(args[2]) / tonumber(args[1])
end
delay = function()
  local now = now_ms()
  if next_due == nil or next_due < now - 1000 then next_due = now end
  next_due = next_due + interval_ms
  return math.max(0, next_due - now)
end
"#;

/// wrk's threads: one per core of the reference machine, as wrk's docs advise.
const WRK_THREADS: usize = 2;

async fn with_wrk(
    url: &str,
    token: &str,
    connections: usize,
    secs: u64,
    pace: Pace,
) -> anyhow::Result<LoadResult> {
    let script = std::env::temp_dir().join(format!("smsgate-bench-{}.lua", std::process::id()));
    let mut lua = WRK_SCRIPT.to_owned();
    if let Pace::PerSecond(_) = pace {
        lua.push_str(WRK_PACING);
    }
    std::fs::write(&script, lua)?;
    let mut wrk = tokio::process::Command::new("wrk");
    wrk.arg(format!("-t{WRK_THREADS}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{secs}s"))
        .arg("--latency")
        .arg("-s")
        .arg(&script)
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"))
        .arg(url);
    if let Pace::PerSecond(rate) = pace {
        wrk.arg("--")
            .arg(rate.to_string())
            .arg(WRK_THREADS.to_string());
    }
    let output = wrk.output().await.context("running wrk")?;
    let _ = std::fs::remove_file(&script);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed: {}{}",
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_wrk(&stdout)
}

/// Reads `Requests/sec`, the 99th percentile of `--latency` and the error lines.
pub fn parse_wrk(out: &str) -> anyhow::Result<LoadResult> {
    let value_after = |label: &str| {
        out.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(label))
            .map(str::trim)
    };
    let requests_per_sec: f64 = value_after("Requests/sec:")
        .context("no Requests/sec in wrk output")?
        .parse()?;
    let p99 = parse_wrk_duration(value_after("99%").context("no 99% line (--latency)")?)?;
    let non_2xx: u64 = value_after("Non-2xx or 3xx responses:")
        .map(str::parse)
        .transpose()?
        .unwrap_or(0);
    // "Socket errors: connect 0, read 0, write 0, timeout 0"
    let socket_errors: u64 = value_after("Socket errors:")
        .map(|rest| {
            rest.split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Ok(LoadResult {
        requests_per_sec,
        p99,
        errors: non_2xx + socket_errors,
        client: "wrk",
    })
}

/// wrk prints latencies as `750.00us`, `18.93ms`, `1.02s` or `2.00m`.
fn parse_wrk_duration(text: &str) -> anyhow::Result<Duration> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .context("latency without unit")?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse()?;
    let secs = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        other => bail!("unknown latency unit {other:?}"),
    };
    Ok(Duration::from_secs_f64(secs))
}

async fn built_in(
    url: &str,
    token: &str,
    connections: usize,
    secs: u64,
    pace: Pace,
    http: &reqwest::Client,
) -> LoadResult {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let workers: Vec<_> = (0..connections as u64)
        .map(|worker| {
            let (http, url, token) = (http.clone(), url.to_owned(), token.to_owned());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                let mut i = 0u64;
                let mut ticker = match pace {
                    Pace::Flat => None,
                    Pace::PerSecond(rate) => Some(tokio::time::interval(Duration::from_secs_f64(
                        connections as f64 / rate,
                    ))),
                };
                while Instant::now() < deadline {
                    if let Some(ticker) = ticker.as_mut() {
                        ticker.tick().await;
                    }
                    let recipient = format!("9{:07}", (worker * 100_000 + i) % 10_000_000);
                    let body = json!({"recipient": recipient, "content": "load"});
                    let t = Instant::now();
                    match http.post(&url).bearer_auth(&token).json(&body).send().await {
                        Ok(r) if r.status().is_success() => latencies.push(t.elapsed()),
                        _ => errors += 1,
                    }
                    i += 1;
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        if let Ok((l, e)) = worker.await {
            latencies.extend(l);
            errors += e;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    LoadResult {
        requests_per_sec: latencies.len() as f64 / elapsed,
        p99: latencies
            .get(latencies.len() * 99 / 100)
            .copied()
            .unwrap_or_default(),
        errors,
        client: "built-in client (wrk not installed)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Running 10s test @ http://127.0.0.1:18080/api/sms
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    39.98ms   10.52ms   1.02s    75.16%
    Req/Sec   803.62    130.71     1.09k    73.50%
  Latency Distribution
     50%   38.49ms
     75%   45.28ms
     90%  951.00us
     99%    1.02s
  16060 requests in 10.05s, 4.97MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:   1597.26
Transfer/sec:    506.34KB
";

    #[test]
    fn reads_throughput_p99_and_errors_from_wrk() {
        let r = parse_wrk(SAMPLE).unwrap();
        assert_eq!(r.requests_per_sec, 1597.26);
        assert_eq!(r.p99, Duration::from_millis(1020));
        assert_eq!(r.errors, 12);
    }

    #[test]
    fn wrk_latency_units() {
        assert_eq!(
            parse_wrk_duration("750.00us").unwrap(),
            Duration::from_micros(750)
        );
        assert_eq!(
            parse_wrk_duration("18.93ms").unwrap(),
            Duration::from_secs_f64(0.01893)
        );
        assert_eq!(
            parse_wrk_duration("2.00m").unwrap(),
            Duration::from_secs(120)
        );
        assert!(parse_wrk_duration("12.0h").is_err());
    }

    #[test]
    fn output_without_figures_is_an_error() {
        assert!(parse_wrk("unable to connect to 127.0.0.1:1").is_err());
    }
}
