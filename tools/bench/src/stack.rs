//! The processes a benchmark runs against: the real release binaries (API, dispatchers,
//! mock gateway) as separate OS processes, so RSS and CPU are those of real deployments.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use smsgate_tests::app::{test_amqp_url, test_database_server_url, with_database};

/// Where the workspace binaries are: next to the running `bench` binary.
pub fn binaries_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe
        .parent()
        .context("bench binary has no directory")?
        .to_path_buf())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One running process and what it was started with.
pub struct Process {
    pub name: String,
    child: Child,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Resident set size now, in MiB.
    pub fn rss_mib(&self) -> f64 {
        proc_status_kib(self.pid(), "VmRSS:") / 1024.0
    }

    /// Peak resident set size since start, in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        proc_status_kib(self.pid(), "VmHWM:") / 1024.0
    }

    /// SIGTERM, then wait (SIGKILL after 15 s).
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// A field of `/proc/<pid>/status` in KiB (0 when the process or field is gone).
pub fn proc_status_kib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0)
}

/// Resets the process's peak RSS (`VmHWM`) to its current RSS (`clear_refs` value 5,
/// Linux 4.0 and later), so that the next reading is the peak of what follows.
pub fn reset_peak_rss(pid: u32) -> anyhow::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .with_context(|| format!("resetting VmHWM of {pid}"))
}

/// A whole stack on its own database and queue prefix.
pub struct Stack {
    pub bin: PathBuf,
    pub database_url: String,
    pub prefix: String,
    pub api_url: String,
    pub mock_url: String,
    pub api: Option<Process>,
    pub mock: Option<Process>,
    pub dispatchers: Vec<Process>,
    pub http: reqwest::Client,
    pub token: String,
    pub db: sqlx::PgPool,
    admin_password: String,
}

pub const BENCH_DB: &str = "smsgate_bench";

impl Stack {
    /// Recreates the bench database, starts the mock gateway and the API, logs in.
    pub async fn start() -> anyhow::Result<Stack> {
        let bin = binaries_dir()?;
        for name in [
            "smsgate-api",
            "smsgate-dispatcher",
            "mock-hkt",
            "smsgate-modem-agent",
        ] {
            if !bin.join(name).exists() {
                bail!(
                    "{} missing: build with `cargo build --release --workspace --bins`",
                    bin.join(name).display()
                );
            }
        }
        let server = test_database_server_url();
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&server).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)"))
            .execute(&mut admin)
            .await?;
        sqlx::query(&format!("CREATE DATABASE {BENCH_DB}"))
            .execute(&mut admin)
            .await?;
        let database_url = with_database(&server, BENCH_DB);
        let prefix = format!("bench{:08x}", rand::random::<u32>());
        let mock_port = free_port()?;
        let api_port = free_port()?;
        let mut stack = Stack {
            bin,
            database_url,
            prefix,
            api_url: format!("http://127.0.0.1:{api_port}"),
            mock_url: format!("http://127.0.0.1:{mock_port}"),
            api: None,
            mock: None,
            dispatchers: Vec::new(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .build()?,
            token: String::new(),
            db: sqlx::PgPool::connect(&with_database(&server, BENCH_DB)).await?,
            admin_password: "Bench-pass#1".into(),
        };
        let mock = stack.spawn(
            "mock-hkt",
            &[],
            &[("MOCK_HKT_BIND", format!("127.0.0.1:{mock_port}"))],
        )?;
        stack.mock = Some(mock);
        stack
            .wait_http(&format!("{}/health", stack.mock_url))
            .await?;
        let api = stack.spawn(
            "smsgate-api",
            &["serve"],
            &[("BIND_ADDR", format!("127.0.0.1:{api_port}"))],
        )?;
        stack.api = Some(api);
        stack
            .wait_http(&format!("{}/health/ready", stack.api_url))
            .await?;
        stack.token = stack.login().await?;
        Ok(stack)
    }

    fn common_env(&self) -> HashMap<&'static str, String> {
        HashMap::from([
            ("APP_ENV", "development".to_owned()),
            ("DATABASE_URL", self.database_url.clone()),
            ("AMQP_URL", test_amqp_url()),
            ("QUEUE_PREFIX", self.prefix.clone()),
            (
                "JWT_SECRET_KEY",
                "bench-jwt-secret-0123456789abcdef".to_owned(),
            ),
            ("SECRET_KEY", "bench-secret-key-0123456789abcdef".to_owned()),
            // Required by the API and the dispatchers (webhook secrets sealed at rest).
            (
                "WEBHOOK_SECRET_KEYS",
                smsgate_shared::secret_box::TEST_KEY_LIST.to_owned(),
            ),
            ("ADMIN_PASSWORD", self.admin_password.clone()),
            (
                "HKT_BASE_URL",
                format!("{}/gateway/gateway.jsp", self.mock_url),
            ),
            ("HKT_RATE_LIMIT", "0".to_owned()),
            ("RUST_LOG", "warn".to_owned()),
            // As deploy/ sets them (see docs/benchmarks.md): glibc otherwise keeps the
            // argon2 buffers of logins (19 MiB each) and per-thread arenas resident.
            ("MALLOC_MMAP_THRESHOLD_", "131072".to_owned()),
            ("MALLOC_ARENA_MAX", "2".to_owned()),
        ])
    }

    fn spawn(
        &self,
        name: &str,
        args: &[&str],
        extra: &[(&str, String)],
    ) -> anyhow::Result<Process> {
        let mut command = Command::new(self.bin.join(name));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in self.common_env() {
            command.env(k, v);
        }
        // jemalloc's options are built in (.cargo/config.toml); the harness's own
        // `_RJEM_MALLOC_CONF`, when set, overrides them, to compare settings without a build.
        if let Ok(conf) = std::env::var("_RJEM_MALLOC_CONF") {
            command.env("_RJEM_MALLOC_CONF", conf);
        }
        for (k, v) in extra {
            command.env(k, v);
        }
        // The harness runs from the repository root; keep the processes away from its .env.
        command
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        command.kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Process {
            name: name.to_owned(),
            child,
        })
    }

    async fn wait_http(&self, url: &str) -> anyhow::Result<()> {
        let until = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.http.get(url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() > until {
                bail!("{url} not ready within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn login(&self) -> anyhow::Result<String> {
        let body: Value = self
            .http
            .post(format!("{}/api/auth/login", self.api_url))
            .json(&json!({"username": "SMSadmin", "password": self.admin_password}))
            .send()
            .await?
            .json()
            .await?;
        body["access_token"]
            .as_str()
            .map(str::to_owned)
            .context("login failed")
    }

    /// Stops the API and starts it again on the same address with `extra` environment on
    /// top of the common one (e.g. `HKT_RATE_LIMIT`, which its releaser paces to). Logins
    /// and API tokens stay valid: the secrets and the database are the same.
    pub async fn restart_api(&mut self, extra: &[(&str, String)]) -> anyhow::Result<()> {
        if let Some(api) = self.api.take() {
            api.stop().await;
        }
        let bind = self
            .api_url
            .strip_prefix("http://")
            .context("api_url is not http")?
            .to_owned();
        let mut env = vec![("BIND_ADDR", bind)];
        env.extend(extra.iter().cloned());
        self.api = Some(self.spawn("smsgate-api", &["serve"], &env)?);
        self.wait_http(&format!("{}/health/ready", self.api_url))
            .await
    }

    /// Creates a (non-admin) user through the admin API and issues it an API token.
    pub async fn create_user(&self, username: &str) -> anyhow::Result<String> {
        let created = self
            .http
            .post(format!("{}/api/admin/users", self.api_url))
            .bearer_auth(&self.token)
            .json(&json!({"username": username, "password": "Bench-user#1-pass"}))
            .send()
            .await?;
        let status = created.status();
        let user: Value = created.json().await?;
        anyhow::ensure!(
            status == 201,
            "creating {username} answered {status}: {user}"
        );
        let id = user["id"].as_i64().context("user id")?;
        let issued = self
            .http
            .post(format!("{}/api/admin/users/{id}/tokens", self.api_url))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = issued.status();
        let token: Value = issued.json().await?;
        anyhow::ensure!(
            status == 201,
            "a token for {username} answered {status}: {token}"
        );
        token["token"]
            .as_str()
            .map(str::to_owned)
            .context("no token in the answer")
    }

    pub fn admin_password(&self) -> &str {
        &self.admin_password
    }

    /// Starts a modem agent for SIM `sim_id` on the serial device `device` (the simulator's pty).
    pub fn start_modem_agent(
        &self,
        sim_id: i64,
        device: &str,
        spool: &std::path::Path,
    ) -> anyhow::Result<Process> {
        self.spawn(
            "smsgate-modem-agent",
            &[],
            &[
                ("SIM_ID", sim_id.to_string()),
                ("SIM_NUMBER", "+85260000001".to_owned()),
                ("SERIAL_DEVICE", device.to_owned()),
                ("SPOOL_DIR", spool.display().to_string()),
            ],
        )
    }

    /// Starts `n` more dispatchers with extra environment.
    pub async fn start_dispatchers(
        &mut self,
        n: usize,
        extra: &[(&str, String)],
    ) -> anyhow::Result<()> {
        for _ in 0..n {
            // Metrics served as in production, each on a port of its own.
            let mut env = vec![("METRICS_BIND", format!("127.0.0.1:{}", free_port()?))];
            env.extend(extra.iter().cloned());
            let p = self.spawn("smsgate-dispatcher", &[], &env)?;
            self.dispatchers.push(p);
        }
        // Give them time to connect and start consuming.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        Ok(())
    }

    pub async fn stop_dispatchers(&mut self) {
        for d in self.dispatchers.drain(..) {
            d.stop().await;
        }
    }

    pub async fn mock_config(&self, config: Value) -> anyhow::Result<()> {
        self.http
            .post(format!("{}/mock/config", self.mock_url))
            .json(&config)
            .send()
            .await?
            .error_for_status()?;
        self.http
            .delete(format!("{}/mock/received", self.mock_url))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    pub async fn mock_stats(&self) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!("{}/mock/stats", self.mock_url))
            .send()
            .await?
            .json()
            .await?)
    }

    pub async fn mock_received(&self) -> anyhow::Result<Vec<Value>> {
        Ok(self
            .http
            .get(format!("{}/mock/received", self.mock_url))
            .send()
            .await?
            .json()
            .await?)
    }

    /// `sent + failed` of a message, straight from PostgreSQL.
    pub async fn done_count(&self, message_id: i64) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT (sent_count + failed_count)::bigint FROM messages WHERE id = $1",
        )
        .bind(message_id)
        .fetch_one(&self.db)
        .await?)
    }

    /// Whether a message still has recipients the releaser has not published.
    pub async fn in_outbox(&self, message_id: i64) -> anyhow::Result<bool> {
        Ok(
            sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM message_outbox WHERE message_id = $1)",
            )
            .bind(message_id)
            .fetch_one(&self.db)
            .await?,
        )
    }

    pub async fn shutdown(mut self) {
        self.stop_dispatchers().await;
        if let Some(api) = self.api.take() {
            api.stop().await;
        }
        if let Some(mock) = self.mock.take() {
            mock.stop().await;
        }
        self.db.close().await;
        if let Err(e) = self.delete_topology().await {
            eprintln!("could not delete the bench's queues: {e:#}");
        }
    }

    /// Deletes this run's queues and exchanges: a broker accumulating the durable quorum
    /// queues of every past run gets slow for everyone.
    async fn delete_topology(&self) -> anyhow::Result<()> {
        use smsgate_shared::queue::{edge::ingest_queue, Names};
        let names = Names::new(&self.prefix);
        let broker = smsgate_shared::queue::Broker::new(&test_amqp_url());
        let channel = broker.channel().await?;
        let retry_queues: Vec<String> = smsgate_shared::config::default_retry_schedule()
            .into_iter()
            .map(|delay| names.retry_queue(delay))
            .collect();
        let mut queues = vec![
            names.hkt_queue(),
            names.dead_queue(),
            names.sim_queue(1),
            ingest_queue(&names),
        ];
        queues.extend(retry_queues.iter().cloned());
        for queue in &queues {
            channel.queue_delete(queue, Default::default()).await?;
        }
        let mut exchanges = vec![names.outbound_exchange(), names.events_exchange()];
        exchanges.extend(retry_queues);
        for exchange in &exchanges {
            channel
                .exchange_delete(exchange, Default::default())
                .await?;
        }
        broker.close().await;
        Ok(())
    }
}
