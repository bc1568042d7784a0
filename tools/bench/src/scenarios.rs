//! The benchmark scenarios of issue #5, each measuring one figure against its target.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};

use crate::gateway::GatewaySizes;
use crate::load::Pace;
use crate::report::{Figure, Timeline};
use crate::stack::Stack;

/// How big each scenario is: the full run, or a smoke run that only proves the harness works.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub bulk: usize,
    pub single_send_secs: u64,
    pub single_send_connections: usize,
    /// Requests per second offered in the paced single-send run.
    pub single_send_rate: f64,
    pub seeded_messages: i64,
    pub rate_limit: f64,
    pub rate_window_secs: u64,
    pub scaling_per_dispatcher: usize,
    /// The gateway-limited scenarios of issue #14.
    pub gateway: GatewaySizes,
    /// How long the API's memory is followed after its bulks were sent.
    pub memory_settle: Duration,
    /// The `HKT_RATE_LIMIT` of the gateway-limited memory run.
    pub memory_rate_limit: f64,
}

impl Sizes {
    pub fn full() -> Sizes {
        Sizes {
            bulk: 100_000,
            single_send_secs: 10,
            single_send_connections: 64,
            // The target is 3,000 sustained: offer a little more, so that the schedule's
            // rounding can't make a pass look like a miss.
            single_send_rate: 3_100.0,
            seeded_messages: 1_000_000,
            rate_limit: 50.0,
            rate_window_secs: 10,
            scaling_per_dispatcher: 1_500,
            gateway: GatewaySizes::full(),
            memory_settle: Duration::from_secs(30),
            memory_rate_limit: 5_000.0,
        }
    }

    pub fn smoke() -> Sizes {
        Sizes {
            bulk: 2_000,
            single_send_secs: 2,
            single_send_connections: 8,
            single_send_rate: 200.0,
            seeded_messages: 20_000,
            rate_limit: 20.0,
            rate_window_secs: 2,
            scaling_per_dispatcher: 100,
            gateway: GatewaySizes::smoke(),
            memory_settle: Duration::from_secs(2),
            memory_rate_limit: 2_000.0,
        }
    }
}

fn mib(v: f64) -> String {
    format!("{v:.1} MB")
}

/// Idle RSS of the API, of one dispatcher, and of one modem agent talking to the modem
/// simulator over a pseudo-terminal (initialised, consuming its SIM queue, heartbeating).
pub async fn idle_memory(stack: &mut Stack) -> anyhow::Result<Vec<Figure>> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let api = stack.api.as_ref().context("api")?.rss_mib();
    stack.start_dispatchers(1, &[]).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let dispatcher = stack.dispatchers[0].rss_mib();
    stack.stop_dispatchers().await;

    let modem = smsgate_tests::modem_sim::ModemSim::start()?;
    let spool = std::env::temp_dir().join(format!("smsgate-bench-spool-{}", std::process::id()));
    std::fs::create_dir_all(&spool)?;
    let agent = stack.start_modem_agent(1, modem.device_path(), &spool)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let agent_rss = agent.rss_mib();
    let initialised = modem.commands().iter().any(|c| c.contains("CMGF"));
    agent.stop().await;
    let _ = std::fs::remove_dir_all(&spool);
    let agent_figure = Figure::at_most("Idle memory: modem agent RSS", agent_rss, 8.0, mib);
    Ok(vec![
        Figure::at_most("Idle memory: API RSS", api, 40.0, mib),
        Figure::at_most("Idle memory: dispatcher RSS", dispatcher, 20.0, mib),
        if initialised {
            agent_figure
        } else {
            agent_figure.with_note("the agent had not initialised the modem")
        },
    ])
}

/// `n` distinct Hong Kong local numbers (the old panel's rule: no numbering-plan check).
fn numbers(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("6{:07}", i)).collect()
}

pub(crate) async fn post_bulk(
    stack: &Stack,
    recipients: &[String],
    content: &str,
) -> anyhow::Result<(i64, Duration)> {
    let body = json!({"recipients": recipients, "content": content});
    let started = Instant::now();
    let response = stack
        .http
        .post(format!("{}/api/sms/send-bulk", stack.api_url))
        .bearer_auth(&stack.token)
        .json(&body)
        .send()
        .await?;
    let elapsed = started.elapsed();
    let status = response.status();
    let answer: Value = response.json().await?;
    anyhow::ensure!(status == 202, "bulk answered {status}: {answer}");
    Ok((answer["data"]["id"].as_i64().context("id")?, elapsed))
}

/// Polls the message's done count until it reaches `total`, recording the timeline.
async fn follow(
    stack: &Stack,
    id: i64,
    total: usize,
    started: Instant,
    limit: Duration,
) -> anyhow::Result<Timeline> {
    let mut timeline = Timeline::default();
    loop {
        let done = stack.done_count(id).await? as usize;
        timeline
            .points
            .push((started.elapsed().as_secs_f64(), done));
        if done >= total {
            return Ok(timeline);
        }
        if started.elapsed() > limit {
            anyhow::bail!("only {done} of {total} done after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// 100,000-recipient bulk: accept latency and time until all are sent with two
/// dispatchers against the mock (no latency, no rate limit). The API's memory through a
/// bulk is the `memory` scenario's: its peak comes in the publish phase, after the 202.
pub async fn bulk_end_to_end(
    stack: &mut Stack,
    sizes: &Sizes,
) -> anyhow::Result<(Vec<Figure>, Timeline)> {
    stack.mock_config(json!({})).await?;
    stack.start_dispatchers(2, &[]).await?;
    let recipients = numbers(sizes.bulk);
    let started = Instant::now();
    let (id, accept) = post_bulk(stack, &recipients, "Benchmark bulk message").await?;
    let timeline = follow(stack, id, sizes.bulk, started, Duration::from_secs(300)).await?;
    let total = timeline.points.last().map_or(0.0, |p| p.0);
    stack.stop_dispatchers().await;
    let n = sizes.bulk;
    Ok((
        vec![
            Figure::at_most(
                &format!("Bulk accept: {n} recipients → 202"),
                accept.as_secs_f64(),
                1.0,
                |v| format!("{v:.2} s"),
            ),
            Figure::at_most(
                &format!("End to end: {n} recipients sent, 2 dispatchers"),
                total,
                20.0,
                |v| format!("{v:.1} s"),
            ),
            Figure::at_least("End to end: throughput", n as f64 / total, 5_000.0, |v| {
                format!("{v:.0} recipients/s")
            }),
        ],
        timeline,
    ))
}

/// `POST /api/sms` on N connections for a fixed time, twice. First at the target's load
/// (a little over 3,000 requests/s offered on a fixed schedule): what the target asks,
/// the latency while sustaining that rate. Then as fast as the connections go: the most
/// the API takes, and its latency there, where a slow disk flush holds every connection.
pub async fn single_send(stack: &mut Stack, sizes: &Sizes) -> anyhow::Result<Vec<Figure>> {
    let c = sizes.single_send_connections;
    let url = format!("{}/api/sms", stack.api_url);
    let run = |pace| {
        crate::load::post_sends(
            &url,
            &stack.token,
            c,
            sizes.single_send_secs,
            pace,
            &stack.http,
        )
    };
    let offered = sizes.single_send_rate;
    let paced = run(Pace::PerSecond(offered)).await?;
    purge_hkt_queue(stack).await?;
    let flat = run(Pace::Flat).await?;
    purge_hkt_queue(stack).await?;
    let req_s = |v: f64| format!("{v:.0} req/s");
    let ms = |v: f64| format!("{v:.1} ms");
    Ok(vec![
        Figure::at_least(
            &format!("Single send: {offered:.0} req/s offered at {c} connections, achieved"),
            paced.requests_per_sec,
            3_000.0,
            req_s,
        )
        .with_note(&format!("{}, paced; {} errors", paced.client, paced.errors)),
        Figure::at_most(
            &format!("Single send: p99 at {offered:.0} req/s offered"),
            paced.p99.as_secs_f64() * 1000.0,
            25.0,
            ms,
        ),
        Figure::at_least(
            &format!("Single send: most req/s at {c} connections"),
            flat.requests_per_sec,
            3_000.0,
            req_s,
        )
        .with_note(&format!("{}, unpaced; {} errors", flat.client, flat.errors)),
        Figure::at_most(
            "Single send: p99 at the most req/s",
            flat.p99.as_secs_f64() * 1000.0,
            25.0,
            ms,
        ),
    ])
}

/// Drops the jobs a scenario left queued, so the next scenario starts from an empty queue.
pub(crate) async fn purge_hkt_queue(stack: &Stack) -> anyhow::Result<()> {
    let broker = smsgate_shared::queue::Broker::new(&smsgate_tests::app::test_amqp_url());
    let channel = broker.channel().await?;
    let names = smsgate_shared::queue::Names::new(&stack.prefix);
    channel
        .queue_purge(&names.hkt_queue(), Default::default())
        .await?;
    broker.close().await;
    Ok(())
}

/// Seeds the messages table, then times `GET /api/sms`.
pub async fn large_tables(stack: &mut Stack, sizes: &Sizes) -> anyhow::Result<Vec<Figure>> {
    sqlx::query(
        "INSERT INTO messages (user_id, content, encoding, segments, total_count, sent_count, status, created_at, completed_at)
         SELECT 1, 'seeded message ' || g, 'gsm7', 1, 1, 1, 'sent', now() - g * interval '1 second', now()
         FROM generate_series(1, $1) AS g",
    )
    .bind(sizes.seeded_messages)
    .execute(&stack.db)
    .await?;
    sqlx::query("ANALYZE messages").execute(&stack.db).await?;
    let mut first_page = Vec::new();
    let mut deep_page = Vec::new();
    for i in 0..100 {
        let page = if i % 2 == 0 { 1 } else { 500 };
        let t = Instant::now();
        let r = stack
            .http
            .get(format!("{}/api/sms?page={page}&per_page=20", stack.api_url))
            .bearer_auth(&stack.token)
            .send()
            .await?;
        anyhow::ensure!(r.status() == 200, "list answered {}", r.status());
        r.bytes().await?;
        if page == 1 {
            &mut first_page
        } else {
            &mut deep_page
        }
        .push(t.elapsed());
    }
    first_page.sort();
    deep_page.sort();
    let history = time_history_page(stack).await?;
    let p95 = |v: &Vec<Duration>| v[v.len() * 95 / 100].as_secs_f64() * 1000.0;
    let n = sizes.seeded_messages;
    let ms = |v: f64| format!("{v:.1} ms");
    Ok(vec![
        Figure::at_most(
            &format!("Large tables: GET /api/sms page 1, {n} messages (p95)"),
            p95(&first_page),
            50.0,
            ms,
        ),
        Figure::at_most(
            &format!("Large tables: GET /api/sms page 500, {n} messages (p95)"),
            p95(&deep_page),
            50.0,
            ms,
        ),
        Figure::at_most(
            &format!("Large tables: history page, {n} messages (p95)"),
            p95(&history),
            50.0,
            ms,
        ),
    ])
}

/// Signs in to the panel and times 50 loads of the history page's first page.
async fn time_history_page(stack: &Stack) -> anyhow::Result<Vec<Duration>> {
    let panel = smsgate_tests::app::PanelClient {
        http: reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        base_url: stack.api_url.clone(),
    };
    let login = panel.login("SMSadmin", stack.admin_password()).await;
    anyhow::ensure!(login.status == 303, "panel login answered {}", login.status);
    let mut times = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let page = panel.get("/history").await;
        anyhow::ensure!(page.status == 200, "history answered {}", page.status);
        times.push(t.elapsed());
    }
    times.sort();
    Ok(times)
}

/// Three dispatchers share HKT_RATE_LIMIT: count what the gateway received in the window.
pub async fn global_rate_limit(stack: &mut Stack, sizes: &Sizes) -> anyhow::Result<Vec<Figure>> {
    stack.mock_config(json!({})).await?;
    let rate = sizes.rate_limit;
    stack
        .start_dispatchers(3, &[("HKT_RATE_LIMIT", rate.to_string())])
        .await?;
    let window = sizes.rate_window_secs as f64;
    let recipients: Vec<String> = (0..(rate * window * 2.0) as usize)
        .map(|i| format!("7{:07}", i))
        .collect();
    post_bulk(stack, &recipients, "rate limited").await?;
    let until = Instant::now() + Duration::from_secs(30);
    while stack.mock_stats().await?["total"].as_u64().unwrap_or(0) == 0 {
        anyhow::ensure!(Instant::now() < until, "nothing reached the gateway");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs_f64(window + 1.0)).await;
    let received = stack.mock_received().await?;
    let times: Vec<chrono::DateTime<chrono::Utc>> = received
        .iter()
        .filter_map(|r| r["received_at"].as_str()?.parse().ok())
        .collect();
    let first = *times.iter().min().context("no receipts")?;
    let in_window = times
        .iter()
        .filter(|t| (**t - first).num_milliseconds() < (window * 1000.0) as i64)
        .count();
    stack.stop_dispatchers().await;
    purge_hkt_queue(stack).await?;
    let expected = rate * window;
    Ok(vec![Figure::within(
        &format!("Rate limit: 3 dispatchers, {rate}/s for {window} s"),
        in_window as f64,
        expected,
        0.05,
        |v| format!("{v:.0} sent"),
    )])
}

/// Throughput with 1, 2 and 4 dispatchers against a gateway with 20 ms latency, each
/// dispatcher limited to 8 concurrent requests so that concurrency, not CPU, bounds it.
pub async fn horizontal_scaling(stack: &mut Stack, sizes: &Sizes) -> anyhow::Result<Vec<Figure>> {
    stack.mock_config(json!({"latency_ms": 20})).await?;
    let mut throughput = Vec::new();
    for (round, n) in [1usize, 2, 4].into_iter().enumerate() {
        stack
            .start_dispatchers(
                n,
                &[
                    ("DISPATCH_CONCURRENCY", "8".into()),
                    ("DISPATCH_PREFETCH", "64".into()),
                ],
            )
            .await?;
        let total = sizes.scaling_per_dispatcher * n;
        let recipients: Vec<String> = (0..total).map(|i| format!("5{round}{:06}", i)).collect();
        let started = Instant::now();
        let (id, _) = post_bulk(stack, &recipients, "scaling").await?;
        let timeline = follow(stack, id, total, started, Duration::from_secs(120)).await?;
        stack.stop_dispatchers().await;
        throughput.push(timeline.steady_rate());
    }
    stack.mock_config(json!({})).await?;
    let (one, two, four) = (throughput[0], throughput[1], throughput[2]);
    let fmt = |v: f64| format!("{v:.2}×");
    Ok(vec![
        Figure::informational(
            "Scaling: 1 dispatcher (20 ms gateway)",
            format!("{one:.0} recipients/s"),
        ),
        Figure::at_least("Scaling: 2 dispatchers vs 1", two / one, 1.8, fmt)
            .with_note(&format!("{two:.0}/s")),
        Figure::at_least("Scaling: 4 dispatchers vs 1", four / one, 3.2, fmt)
            .with_note(&format!("{four:.0}/s")),
    ])
}
