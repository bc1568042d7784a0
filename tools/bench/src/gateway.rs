//! The gateway-limited scenarios of issue #14 (traffic control). The gateway takes
//! [`GATEWAY_RATE`] requests a second (HKT_RATE_LIMIT for the API, whose releaser paces to
//! it, and for both dispatchers), so throughput is fixed and what is measured is who gets
//! those requests and when: a high-priority send behind a running campaign (`priority`),
//! two campaigns side by side (`fairshare`), a cancel (`cancel`) and a scheduled campaign
//! (`schedule`).
//!
//! Every campaign a scenario starts is cancelled when it ends, error or not: at 50 a second
//! a 100,000-recipient campaign would otherwise run for 33 minutes under the next scenario.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::report::Figure;
use crate::stack::Stack;

/// The names `--only` takes for this group, in the order they run.
pub const SCENARIOS: [&str; 4] = ["priority", "fairshare", "cancel", "schedule"];

/// Gateway requests a second in every scenario here, as issue #14's targets assume.
pub const GATEWAY_RATE: f64 = 50.0;

/// How big each gateway-limited scenario is.
#[derive(Debug, Clone)]
pub struct GatewaySizes {
    /// User A's campaign in `priority`, and the campaigns of `cancel` and `schedule`.
    pub campaign: usize,
    /// User B's high-priority single sends in `priority`, one every `high_every`.
    pub high_sends: usize,
    pub high_every: Duration,
    /// User C's normal bulk in `priority`.
    pub small_bulk: usize,
    /// Each of the two campaigns in `fairshare`, and the window their shares are counted in.
    pub fair_campaign: usize,
    pub fair_window: Duration,
    /// How long the campaign of `cancel` runs before it is cancelled.
    pub cancel_after: Duration,
    /// How far ahead `schedule` schedules its campaign, and how long its rate is counted.
    pub schedule_lead: Duration,
    pub schedule_window: Duration,
}

impl GatewaySizes {
    pub fn full() -> GatewaySizes {
        GatewaySizes {
            campaign: 100_000,
            high_sends: 50,
            high_every: Duration::from_millis(200),
            small_bulk: 10,
            fair_campaign: 20_000,
            fair_window: Duration::from_secs(30),
            cancel_after: Duration::from_secs(3),
            schedule_lead: Duration::from_secs(10),
            schedule_window: Duration::from_secs(10),
        }
    }

    /// Small enough that the four scenarios take well under a minute together; the
    /// campaigns still outlast their scenario at 50 a second.
    pub fn smoke() -> GatewaySizes {
        GatewaySizes {
            campaign: 2_000,
            high_sends: 5,
            high_every: Duration::from_millis(200),
            small_bulk: 3,
            fair_campaign: 1_000,
            fair_window: Duration::from_secs(5),
            cancel_after: Duration::from_secs(2),
            schedule_lead: Duration::from_secs(3),
            schedule_window: Duration::from_secs(3),
        }
    }
}

/// The senders, each a user of its own with an API token: A runs the campaigns, B the
/// high-priority sends and fairshare's second campaign, C the small bulk.
pub struct Users {
    a: String,
    b: String,
    c: String,
}

/// Restarts the API with the gateway's rate, starts two dispatchers with it, and creates
/// the users. Call [`finish`] afterwards whether this succeeded or not.
pub async fn start(stack: &mut Stack) -> anyhow::Result<Users> {
    let rate = [("HKT_RATE_LIMIT", GATEWAY_RATE.to_string())];
    stack
        .restart_api(&rate)
        .await
        .context("restarting the API rate-limited")?;
    stack.start_dispatchers(2, &rate).await?;
    Ok(Users {
        a: stack.create_user("bench_a").await?,
        b: stack.create_user("bench_b").await?,
        c: stack.create_user("bench_c").await?,
    })
}

/// Stops the dispatchers, drops what is still queued and gives the API back its usual
/// (unlimited) environment.
pub async fn finish(stack: &mut Stack) -> anyhow::Result<()> {
    stack.stop_dispatchers().await;
    crate::scenarios::purge_hkt_queue(stack).await?;
    stack.restart_api(&[]).await
}

/// The API as one user sees it; cheap to clone into tasks.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn of(stack: &Stack) -> Api {
        Api {
            http: stack.http.clone(),
            base: stack.api_url.clone(),
        }
    }

    /// A send (`/api/sms` or `/api/sms/send-bulk`) that must be accepted; its id.
    async fn send(&self, token: &str, path: &str, body: Value) -> anyhow::Result<i64> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .timeout(Duration::from_secs(60))
            .send()
            .await?;
        let status = response.status();
        let answer: Value = response.json().await?;
        anyhow::ensure!(status == 202, "{path} answered {status}: {answer}");
        answer["data"]["id"].as_i64().context("no id in the answer")
    }

    async fn message(&self, token: &str, id: i64) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(format!("{}/api/sms/{id}", self.base))
            .bearer_auth(token)
            .timeout(Duration::from_secs(10))
            .send()
            .await?;
        let status = response.status();
        let mut answer: Value = response.json().await?;
        anyhow::ensure!(
            status == 200,
            "GET /api/sms/{id} answered {status}: {answer}"
        );
        Ok(answer["data"].take())
    }

    async fn cancel(&self, token: &str, id: i64) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        let response = self
            .http
            .post(format!("{}/api/sms/{id}/cancel", self.base))
            .bearer_auth(token)
            .timeout(Duration::from_secs(60))
            .send()
            .await?;
        let status = response.status();
        Ok((status, response.json().await?))
    }

    /// Polls the message until it is `sent`; the time from `accepted` (its 202) until then.
    async fn until_sent(
        &self,
        token: &str,
        id: i64,
        accepted: Instant,
        limit: Duration,
    ) -> anyhow::Result<Duration> {
        loop {
            let message = self.message(token, id).await?;
            match message["status"].as_str().unwrap_or("") {
                "sent" => return Ok(accepted.elapsed()),
                "failed" | "partial" | "cancelled" | "expired" => {
                    bail!("message {id} ended {}", message["status"])
                }
                _ => {}
            }
            if accepted.elapsed() > limit {
                bail!("message {id} not sent within {limit:?}: {message}");
            }
            // Fine enough against a 2 s target, light enough for 10 pollers at once.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Campaigns to cancel when the scenario ends.
#[derive(Default)]
struct Campaigns(Vec<(String, i64)>);

impl Campaigns {
    fn add(&mut self, token: &str, id: i64) {
        self.0.push((token.to_owned(), id));
    }

    /// Cancels them all; a finished one (409) is fine, anything else is reported.
    async fn cancel_all(&self, api: &Api) {
        for (token, id) in &self.0 {
            match api.cancel(token, *id).await {
                Ok((status, _)) if status.is_success() || status == 409 => {}
                Ok((status, body)) => eprintln!("cancelling message {id}: {status} {body}"),
                Err(e) => eprintln!("cancelling message {id}: {e:#}"),
            }
        }
    }
}

/// `n` distinct Hong Kong local numbers (eight digits starting with `lead`): the local form
/// is taken by the old panel's rule, so the benchmark does not measure numbering-plan checks
/// of made-up international numbers.
fn numbers(lead: u8, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{lead}{i:07}")).collect()
}

/// When the gateway received each request whose text is `text`, in order.
async fn gateway_times(stack: &Stack, text: &str) -> anyhow::Result<Vec<DateTime<Utc>>> {
    let mut times: Vec<DateTime<Utc>> = stack
        .mock_received()
        .await?
        .iter()
        .filter(|r| r["msg_utf8"].as_str() == Some(text))
        .filter_map(|r| r["received_at"].as_str()?.parse().ok())
        .collect();
    times.sort();
    Ok(times)
}

/// Waits until the gateway received a request with `text`; when it did.
async fn first_request(
    stack: &Stack,
    text: &str,
    limit: Duration,
) -> anyhow::Result<DateTime<Utc>> {
    let until = Instant::now() + limit;
    loop {
        if let Some(first) = gateway_times(stack, text).await?.first() {
            return Ok(*first);
        }
        if Instant::now() > until {
            bail!("no request with {text:?} reached the gateway within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sleeps until `at` (wall clock; at once if it has passed).
async fn sleep_until(at: DateTime<Utc>) {
    if let Ok(left) = (at - Utc::now()).to_std() {
        tokio::time::sleep(left).await;
    }
}

fn secs(v: f64) -> String {
    format!("{v:.2} s")
}

/// User A's campaign runs at normal priority; user B sends high-priority single sends one
/// by one and user C a small normal bulk. Each of B's is timed from its 202 to `sent`, C's
/// bulk from its 202 until every recipient is sent.
pub async fn priority(
    stack: &Stack,
    users: &Users,
    sizes: &GatewaySizes,
) -> anyhow::Result<Vec<Figure>> {
    let api = Api::of(stack);
    let mut campaigns = Campaigns::default();
    let result = run_priority(stack, &api, users, sizes, &mut campaigns).await;
    campaigns.cancel_all(&api).await;
    result
}

async fn run_priority(
    stack: &Stack,
    api: &Api,
    users: &Users,
    sizes: &GatewaySizes,
    campaigns: &mut Campaigns,
) -> anyhow::Result<Vec<Figure>> {
    stack.mock_config(json!({})).await?;
    let campaign_text = "priority: campaign";
    let n = sizes.campaign;
    let id = api
        .send(
            &users.a,
            "/api/sms/send-bulk",
            json!({"recipients": numbers(8, n), "content": campaign_text}),
        )
        .await?;
    campaigns.add(&users.a, id);
    first_request(stack, campaign_text, Duration::from_secs(60)).await?;
    // Let the campaign fill the gateway's queue, so the first high send meets a full one.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let limit = Duration::from_secs(60);
    let mut highs = tokio::task::JoinSet::new();
    let mut small = None;
    let mut ticker = tokio::time::interval(sizes.high_every);
    for i in 0..sizes.high_sends {
        ticker.tick().await;
        if i == sizes.high_sends / 2 {
            // C's bulk lands in the middle of B's sends, beside A's campaign.
            let (api, token) = (api.clone(), users.c.clone());
            let body = json!({"recipients": numbers(7, sizes.small_bulk), "content": "priority: small bulk"});
            small = Some(tokio::spawn(async move {
                let id = api.send(&token, "/api/sms/send-bulk", body).await?;
                api.until_sent(&token, id, Instant::now(), limit).await
            }));
        }
        let body = json!({
            "recipient": format!("6{i:07}"),
            "content": "priority: high",
            "priority": "high",
        });
        let id = api.send(&users.b, "/api/sms", body).await?;
        let accepted = Instant::now();
        let (api, token) = (api.clone(), users.b.clone());
        highs.spawn(async move { api.until_sent(&token, id, accepted, limit).await });
    }
    let mut latencies = Vec::new();
    while let Some(joined) = highs.join_next().await {
        latencies.push(joined??);
    }
    let small = small.context("the small bulk was never sent")?.await??;
    let campaign = api.message(&users.a, id).await?;
    anyhow::ensure!(
        campaign["pending_count"].as_i64().unwrap_or(0) > 0,
        "the campaign finished before the high sends did: {campaign}"
    );

    latencies.sort();
    let at = |share: usize| latencies[(latencies.len() * share / 100).min(latencies.len() - 1)];
    let sent = latencies.len();
    let every = sizes.high_every.as_millis();
    let k = sizes.small_bulk;
    Ok(vec![
        Figure::informational(
            "Priority: high single send 202 → sent, p50",
            secs(at(50).as_secs_f64()),
        )
        .with_note(&format!(
            "{sent} sends, one every {every} ms, beside a {n}-recipient normal campaign; 50/s gateway"
        )),
        Figure::at_most(
            "Priority: high single send 202 → sent, p99",
            at(99).as_secs_f64(),
            2.0,
            secs,
        ),
        Figure::informational(
            "Priority: high single send 202 → sent, max",
            secs(latencies[sent - 1].as_secs_f64()),
        ),
        Figure::at_most(
            &format!("Priority: normal {k}-recipient bulk 202 → all sent"),
            small.as_secs_f64(),
            5.0,
            secs,
        )
        .with_note("another user, beside the campaign and the high sends"),
    ])
}

/// Two users' campaigns start together; over a window after both reached the gateway,
/// count each one's share of the gateway's requests.
pub async fn fair_share(
    stack: &Stack,
    users: &Users,
    sizes: &GatewaySizes,
) -> anyhow::Result<Vec<Figure>> {
    let api = Api::of(stack);
    let mut campaigns = Campaigns::default();
    let result = run_fair_share(stack, &api, users, sizes, &mut campaigns).await;
    campaigns.cancel_all(&api).await;
    result
}

async fn run_fair_share(
    stack: &Stack,
    api: &Api,
    users: &Users,
    sizes: &GatewaySizes,
    campaigns: &mut Campaigns,
) -> anyhow::Result<Vec<Figure>> {
    stack.mock_config(json!({})).await?;
    let n = sizes.fair_campaign;
    let texts = ["fairshare: user A", "fairshare: user B"];
    for (token, (text, lead)) in [&users.a, &users.b]
        .into_iter()
        .zip(texts.into_iter().zip([8, 9]))
    {
        let id = api
            .send(
                token,
                "/api/sms/send-bulk",
                json!({"recipients": numbers(lead, n), "content": text}),
            )
            .await?;
        campaigns.add(token, id);
    }
    let limit = Duration::from_secs(60);
    let start = first_request(stack, texts[0], limit)
        .await?
        .max(first_request(stack, texts[1], limit).await?);
    let window = chrono::Duration::from_std(sizes.fair_window)?;
    sleep_until(start + window + chrono::Duration::milliseconds(500)).await;
    let mut counts = [0usize; 2];
    for (count, text) in counts.iter_mut().zip(texts) {
        *count = gateway_times(stack, text)
            .await?
            .iter()
            .filter(|t| **t >= start && **t < start + window)
            .count();
    }
    let total = counts[0] + counts[1];
    anyhow::ensure!(total > 0, "nothing reached the gateway in the window");
    let share = |c: usize| 100.0 * c as f64 / total as f64;
    let pct = |v: f64| format!("{v:.1} %");
    let w = sizes.fair_window.as_secs_f64();
    Ok(vec![
        Figure::between(
            &format!("Fair share: user A's share of the gateway, {n} vs {n} recipients"),
            share(counts[0]),
            40.0,
            60.0,
            pct,
        )
        .with_note(&format!(
            "{} of {total} requests in {w:.0} s ({:.1}/s)",
            counts[0],
            total as f64 / w
        )),
        Figure::between(
            "Fair share: user B's share of the gateway",
            share(counts[1]),
            40.0,
            60.0,
            pct,
        )
        .with_note(&format!("{} of {total}", counts[1])),
    ])
}

/// A running campaign is cancelled: how long after the cancel's answer the gateway still
/// saw requests for it (requests already in a dispatcher's hands finish).
pub async fn cancel(
    stack: &Stack,
    users: &Users,
    sizes: &GatewaySizes,
) -> anyhow::Result<Vec<Figure>> {
    let api = Api::of(stack);
    let mut campaigns = Campaigns::default();
    let result = run_cancel(stack, &api, users, sizes, &mut campaigns).await;
    campaigns.cancel_all(&api).await;
    result
}

async fn run_cancel(
    stack: &Stack,
    api: &Api,
    users: &Users,
    sizes: &GatewaySizes,
    campaigns: &mut Campaigns,
) -> anyhow::Result<Vec<Figure>> {
    stack.mock_config(json!({})).await?;
    let text = "cancel: campaign";
    let n = sizes.campaign;
    let id = api
        .send(
            &users.a,
            "/api/sms/send-bulk",
            json!({"recipients": numbers(8, n), "content": text}),
        )
        .await?;
    campaigns.add(&users.a, id);
    first_request(stack, text, Duration::from_secs(60)).await?;
    tokio::time::sleep(sizes.cancel_after).await;
    let asked = Utc::now();
    let (status, answer) = api.cancel(&users.a, id).await?;
    let answered = Utc::now();
    anyhow::ensure!(
        status == 200 && answer["status"] == "cancelled",
        "cancel answered {status}: {answer}"
    );
    // Long enough for anything still queued or in flight to reach the gateway.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let times = gateway_times(stack, text).await?;
    let last = *times.last().context("no requests")?;
    let after = times.iter().filter(|t| **t > answered).count();
    let seconds = |d: chrono::Duration| d.num_microseconds().unwrap_or(0) as f64 / 1e6;
    // Negative when the last request started before the answer came back: cancelling a
    // large campaign takes a while, and the note gives the time from the request too.
    let tail = seconds(last - answered);
    Ok(vec![
        Figure::at_most(
            &format!("Cancel: {n}-recipient campaign, last gateway request after the answer"),
            tail,
            1.0,
            secs,
        )
        .with_note(&format!(
            "{} gateway requests before the answer, {after} after; {} recipients cancelled",
            times.len() - after,
            answer["cancelled_now"]
        )),
        Figure::informational(
            "Cancel: POST /api/sms/{id}/cancel answered in",
            secs(seconds(answered - asked)),
        )
        .with_note(&format!(
            "last gateway request {} after the cancel was sent",
            secs(seconds(last - asked))
        )),
    ])
}

/// A campaign scheduled a few seconds ahead: how late its first gateway request is, and
/// whether it then gets the gateway's full rate.
pub async fn schedule(
    stack: &Stack,
    users: &Users,
    sizes: &GatewaySizes,
) -> anyhow::Result<Vec<Figure>> {
    let api = Api::of(stack);
    let mut campaigns = Campaigns::default();
    let result = run_schedule(stack, &api, users, sizes, &mut campaigns).await;
    campaigns.cancel_all(&api).await;
    result
}

async fn run_schedule(
    stack: &Stack,
    api: &Api,
    users: &Users,
    sizes: &GatewaySizes,
    campaigns: &mut Campaigns,
) -> anyhow::Result<Vec<Figure>> {
    stack.mock_config(json!({})).await?;
    let text = "schedule: campaign";
    let n = sizes.campaign;
    let send_at = Utc::now() + chrono::Duration::from_std(sizes.schedule_lead)?;
    let id = api
        .send(
            &users.a,
            "/api/sms/send-bulk",
            json!({
                "recipients": numbers(8, n),
                "content": text,
                "send_at": send_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            }),
        )
        .await?;
    campaigns.add(&users.a, id);
    let early = gateway_times(stack, text).await?.len();
    anyhow::ensure!(
        early == 0,
        "{early} requests reached the gateway before send_at"
    );
    let first = first_request(stack, text, sizes.schedule_lead + Duration::from_secs(30)).await?;
    let window = chrono::Duration::from_std(sizes.schedule_window)?;
    sleep_until(first + window + chrono::Duration::milliseconds(500)).await;
    let in_window = gateway_times(stack, text)
        .await?
        .iter()
        .filter(|t| **t < first + window)
        .count();
    let w = sizes.schedule_window.as_secs_f64();
    let delay = (first - send_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
    Ok(vec![
        Figure::at_most(
            &format!("Schedule: {n} recipients, first gateway request after send_at"),
            delay,
            1.0,
            secs,
        ),
        Figure::within(
            &format!("Schedule: gateway rate over the next {w:.0} s"),
            in_window as f64 / w,
            GATEWAY_RATE,
            0.1,
            |v| format!("{v:.1}/s"),
        )
        .with_note(&format!("{in_window} requests")),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A campaign that ran out inside its scenario would leave the gateway idle and the
    /// figures meaningless (and `priority` would fail on it), at either size.
    #[test]
    fn campaigns_outlast_their_scenarios_at_the_gateway_rate() {
        for sizes in [GatewaySizes::full(), GatewaySizes::smoke()] {
            let lasts =
                |n: usize, share: f64| Duration::from_secs_f64(n as f64 / (GATEWAY_RATE * share));
            let margin = Duration::from_secs(5);
            let high_sends = sizes.high_every * sizes.high_sends as u32;
            assert!(
                lasts(sizes.campaign, 1.0) > high_sends + margin,
                "{sizes:?}"
            );
            assert!(
                lasts(sizes.fair_campaign, 0.5) > sizes.fair_window + margin,
                "{sizes:?}"
            );
            assert!(
                lasts(sizes.campaign, 1.0) > sizes.cancel_after + margin,
                "{sizes:?}"
            );
            assert!(
                lasts(sizes.campaign, 1.0) > sizes.schedule_window + margin,
                "{sizes:?}"
            );
        }
    }

    #[test]
    fn campaign_numbers_are_distinct_hong_kong_numbers() {
        let n = numbers(8, 100_000);
        assert_eq!(n[0], "80000000");
        assert_eq!(n[99_999], "80099999");
        assert_eq!(
            n.iter().collect::<std::collections::HashSet<_>>().len(),
            n.len()
        );
    }
}
