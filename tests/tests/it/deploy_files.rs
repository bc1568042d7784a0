//! What the deploy files promise, checked where the files are: nginx keeps the probes from
//! the internet, the production image carries no mock gateway, and the Kubernetes manifests
//! hold what scripts/check-deploy.sh's schema validation cannot see (limits and the locked
//! down security context on every container, probes on paths the API really serves, the
//! queue names and SQL the KEDA triggers read).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use smsgate_shared::queue::edge::ingest_queue;
use smsgate_shared::queue::Names;
use smsgate_tests::app::{TestApp, TestOptions};

fn repo_file(path: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The match spec and body of each `location` block of the HTTPS server (the one that
/// proxies to the API), in order. Blocks are not nested in this config.
fn nginx_locations(conf: &str) -> Vec<(String, String)> {
    let https = &conf[conf.find("listen 443").expect("an HTTPS server")..];
    let mut blocks = Vec::new();
    let mut lines = https.lines();
    while let Some(line) = lines.next() {
        let Some(spec) = line.trim().strip_prefix("location ") else {
            continue;
        };
        let spec = spec.trim_end_matches('{').trim().to_owned();
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "}").collect();
        blocks.push((spec, body.join("\n")));
    }
    blocks
}

/// Which block nginx picks for `path`: an exact match, else the first matching regex, else
/// the longest prefix (nginx's order, without `^~`, which the config does not use).
fn nginx_block_for<'a>(locations: &'a [(String, String)], path: &str) -> &'a str {
    if let Some((_, body)) = locations
        .iter()
        .find(|(spec, _)| spec.strip_prefix("= ") == Some(path))
    {
        return body;
    }
    for (spec, body) in locations {
        if let Some(pattern) = spec.strip_prefix("~ ") {
            if regex::Regex::new(pattern).unwrap().is_match(path) {
                return body;
            }
        }
    }
    locations
        .iter()
        .filter(|(spec, _)| {
            !spec.starts_with('~') && !spec.starts_with('=') && path.starts_with(spec.as_str())
        })
        .max_by_key(|(spec, _)| spec.len())
        .map(|(_, body)| body.as_str())
        .expect("a location for every path")
}

#[test]
fn nginx_keeps_every_health_path_and_metrics_from_the_internet() {
    let conf = repo_file("deploy/nginx/smsgate.conf");
    let locations = nginx_locations(&conf);
    for path in [
        "/health",
        "/health/",
        "/health/live",
        "/health/ready",
        "/metrics",
    ] {
        let block = nginx_block_for(&locations, path);
        assert!(
            block.contains("deny all;"),
            "{path} is served to everyone: {block}"
        );
        assert!(block.contains("allow 127.0.0.1;"), "{path}: {block}");
    }
    for path in ["/", "/api/sms", "/healthy-tips", "/login"] {
        let block = nginx_block_for(&locations, path);
        assert!(!block.contains("deny all;"), "{path} is blocked: {block}");
    }
}

#[test]
fn the_production_image_carries_no_mock_gateway() {
    let dockerfile = repo_file("deploy/Dockerfile");
    // `docker build` without --target builds the last stage: that is the production image.
    let last_stage = dockerfile.rsplit("\nFROM ").next().expect("a final stage");
    assert!(
        !last_stage.contains("mock"),
        "the final stage mentions the mock:\n{last_stage}"
    );
    assert!(last_stage.contains("COPY --from=builder /out/ /usr/local/bin/"));
    assert!(dockerfile.contains("cp target/release/mock-hkt /out-mock/"));
    let compose = repo_file("docker-compose.yml");
    let mock_service = compose
        .split("\n  mock-hkt:\n")
        .nth(1)
        .and_then(|s| s.split("\n  api:\n").next())
        .expect("compose has a mock-hkt service");
    assert!(mock_service.contains("target: mock-hkt"), "{mock_service}");
}

/// Every document of the manifests `deploy/k8s/kustomization.yaml` applies, and of the
/// Secret example, as JSON values.
fn k8s_documents() -> Vec<Value> {
    let kustomization: Value =
        serde_yaml_ng::from_str(&repo_file("deploy/k8s/kustomization.yaml")).unwrap();
    let mut files: Vec<String> = kustomization["resources"]
        .as_array()
        .expect("a resources list")
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect();
    files.push("secret.example.yaml".into());
    let mut docs = Vec::new();
    for file in files {
        let text = repo_file(&format!("deploy/k8s/{file}"));
        for doc in text.split("\n---\n") {
            let value: Value =
                serde_yaml_ng::from_str(doc).unwrap_or_else(|e| panic!("{file}: {e}"));
            if !value.is_null() {
                docs.push(value);
            }
        }
    }
    docs
}

fn k8s_object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in deploy/k8s"))
}

fn config_value(docs: &[Value], key: &str) -> String {
    k8s_object(docs, "ConfigMap", "smsgate-config")["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("the ConfigMap has no {key}"))
        .to_owned()
}

/// The port of an `address:port` setting.
fn port_of(bind: &str) -> u64 {
    bind.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// The container's port number for a probe's `port` (a name or a number).
fn probe_port(container: &Value, port: &Value) -> u64 {
    if let Some(number) = port.as_u64() {
        return number;
    }
    container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == *port)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port named {port}"))
}

/// The uid and gid of the production image's `USER` (its last stage, what `docker build`
/// makes without --target).
fn image_user() -> (u64, u64) {
    let dockerfile = repo_file("deploy/Dockerfile");
    let last_stage = dockerfile.rsplit("\nFROM ").next().unwrap();
    let user = last_stage
        .lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .expect("the production stage sets USER");
    let (uid, gid) = user.trim().split_once(':').expect("USER uid:gid");
    (
        uid.parse().expect("a numeric uid"),
        gid.parse().expect("a numeric gid"),
    )
}

#[test]
fn every_container_is_limited_and_locked_down_as_the_image_user() {
    let docs = k8s_documents();
    let (uid, gid) = image_user();
    assert_ne!(uid, 0, "the image runs as root");
    let deployments: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Deployment").collect();
    assert_eq!(deployments.len(), 2, "the API and the dispatchers");
    for deployment in deployments {
        let name = deployment["metadata"]["name"].as_str().unwrap();
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(pod["securityContext"]["runAsUser"], uid, "{name}");
        assert_eq!(pod["securityContext"]["runAsGroup"], gid, "{name}");
        assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
        let containers = pod["containers"]
            .as_array()
            .into_iter()
            .chain(pod["initContainers"].as_array())
            .flatten();
        for container in containers {
            let what = format!("{name}/{}", container["name"]);
            let resources = &container["resources"];
            for side in ["requests", "limits"] {
                for resource in ["cpu", "memory"] {
                    assert!(
                        resources[side][resource].is_string(),
                        "{what}: no {side}.{resource}"
                    );
                }
            }
            assert!(
                mebibytes(&resources["requests"]["memory"])
                    <= mebibytes(&resources["limits"]["memory"]),
                "{what}: memory request above its limit"
            );
            let security = &container["securityContext"];
            assert_eq!(security["runAsNonRoot"], true, "{what}");
            assert_eq!(security["runAsUser"], uid, "{what}");
            assert_eq!(security["readOnlyRootFilesystem"], true, "{what}");
            assert_eq!(security["allowPrivilegeEscalation"], false, "{what}");
            assert_eq!(
                security["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{what}"
            );
            assert!(security["capabilities"]["add"].is_null(), "{what}");
            assert_eq!(
                security["seccompProfile"]["type"], "RuntimeDefault",
                "{what}"
            );
            // With a read-only root, /tmp must be a volume of its own.
            let tmp = container["volumeMounts"]
                .as_array()
                .and_then(|m| m.iter().find(|m| m["mountPath"] == "/tmp"))
                .unwrap_or_else(|| panic!("{what}: no /tmp volume"));
            let volume = pod["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == tmp["name"])
                .unwrap();
            assert!(
                volume["emptyDir"].is_object(),
                "{what}: /tmp is not an emptyDir"
            );
        }
    }
}

/// A memory quantity in MiB (the manifests use Mi and Gi).
fn mebibytes(quantity: &Value) -> u64 {
    let q = quantity.as_str().unwrap();
    if let Some(n) = q.strip_suffix("Gi") {
        n.parse::<u64>().unwrap() * 1024
    } else {
        q.strip_suffix("Mi")
            .unwrap_or_else(|| panic!("{q}: use Mi or Gi"))
            .parse()
            .unwrap()
    }
}

#[test]
fn autoscalers_budgets_and_policies_govern_the_pods_they_name() {
    let docs = k8s_documents();
    let pod_labels = |deployment: &str| {
        k8s_object(&docs, "Deployment", deployment)["spec"]["template"]["metadata"]["labels"]
            .clone()
    };
    let selects = |selector: &Value, deployment: &str| {
        let labels = pod_labels(deployment);
        let wanted = selector["matchLabels"].as_object().unwrap();
        !wanted.is_empty() && wanted.iter().all(|(k, v)| labels[k] == *v)
    };
    let hpa = k8s_object(&docs, "HorizontalPodAutoscaler", "smsgate-api");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "smsgate-api");
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2);
    let scaled = k8s_object(&docs, "ScaledObject", "smsgate-dispatcher");
    assert_eq!(
        scaled["spec"]["scaleTargetRef"]["name"],
        "smsgate-dispatcher"
    );
    // The autoscalers own the replica counts: a `replicas` would reset them on each apply.
    for deployment in ["smsgate-api", "smsgate-dispatcher"] {
        let spec = &k8s_object(&docs, "Deployment", deployment)["spec"];
        assert!(spec["replicas"].is_null(), "{deployment} sets replicas");
    }
    for (budget, deployment) in [
        ("smsgate-api", "smsgate-api"),
        ("smsgate-dispatcher", "smsgate-dispatcher"),
    ] {
        let pdb = k8s_object(&docs, "PodDisruptionBudget", budget);
        assert!(selects(&pdb["spec"]["selector"], deployment), "{budget}");
    }
    // KEDA may run 0 or 1 dispatcher: a minAvailable budget would then block every drain.
    let dispatcher_pdb = k8s_object(&docs, "PodDisruptionBudget", "smsgate-dispatcher");
    assert!(dispatcher_pdb["spec"]["minAvailable"].is_null());
    let deny = k8s_object(&docs, "NetworkPolicy", "default-deny");
    assert_eq!(deny["spec"]["podSelector"], serde_json::json!({}));
    assert_eq!(
        deny["spec"]["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
    for deployment in ["smsgate-api", "smsgate-dispatcher"] {
        let policy = k8s_object(&docs, "NetworkPolicy", deployment);
        assert!(selects(&policy["spec"]["podSelector"], deployment));
        // Ingress only to the ports the containers listen on.
        let container = &k8s_object(&docs, "Deployment", deployment)["spec"]["template"]["spec"]
            ["containers"][0];
        let listening: BTreeSet<u64> = container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["containerPort"].as_u64().unwrap())
            .collect();
        for rule in policy["spec"]["ingress"].as_array().unwrap() {
            for port in rule["ports"].as_array().expect("ingress names its ports") {
                assert!(
                    listening.contains(&port["port"].as_u64().unwrap()),
                    "{deployment}"
                );
            }
        }
        let egress_ports: BTreeSet<u64> = policy["spec"]["egress"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["ports"].as_array().unwrap())
            .filter_map(|p| p["port"].as_u64())
            .collect();
        // DNS, PostgreSQL, AMQP, OTLP.
        for port in [53, 5432, 5672, 4318] {
            assert!(
                egress_ports.contains(&port),
                "{deployment}: no egress to {port}"
            );
        }
    }
    // Only the dispatchers call the gateway and webhook endpoints, and never internal
    // addresses (cloud metadata included).
    let dispatcher = k8s_object(&docs, "NetworkPolicy", "smsgate-dispatcher");
    let open = dispatcher["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["to"].as_array().unwrap())
        .find(|peer| peer["ipBlock"]["cidr"] == "0.0.0.0/0")
        .expect("an egress rule for webhook endpoints");
    let except = open["ipBlock"]["except"].as_array().unwrap();
    for internal in [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "127.0.0.0/8",
    ] {
        assert!(
            except
                .iter()
                .any(|e| e.as_str().unwrap().starts_with(internal)),
            "{internal}"
        );
    }
    let api = k8s_object(&docs, "NetworkPolicy", "smsgate-api");
    assert!(
        !api.to_string().contains("0.0.0.0/0"),
        "the API reaches the internet"
    );
}

#[test]
fn the_dispatcher_probes_and_scrapes_its_metrics_listener() {
    let docs = k8s_documents();
    let metrics_port = port_of(&config_value(&docs, "METRICS_BIND"));
    let deployment = k8s_object(&docs, "Deployment", "smsgate-dispatcher");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    // GET /metrics answers 401 without METRICS_TOKEN, and it is the only route: the probes
    // can only be TCP connects to that listener.
    for probe in ["startupProbe", "livenessProbe"] {
        let port = &container[probe]["tcpSocket"]["port"];
        assert_eq!(probe_port(container, port), metrics_port, "{probe}");
    }
    assert!(
        container["readinessProbe"].is_null(),
        "nothing routes to a dispatcher"
    );
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"],
        metrics_port.to_string()
    );
}

#[test]
fn keda_watches_the_queues_the_code_declares_with_credentials_that_exist() {
    let docs = k8s_documents();
    let names = Names::new(&config_value(&docs, "QUEUE_PREFIX"));
    let scaled = k8s_object(&docs, "ScaledObject", "smsgate-dispatcher");
    let triggers = scaled["spec"]["triggers"].as_array().unwrap();
    let queues: BTreeSet<&str> = triggers
        .iter()
        .filter(|t| t["type"] == "rabbitmq")
        .map(|t| t["metadata"]["queueName"].as_str().unwrap())
        .collect();
    let expected = BTreeSet::from([names.hkt_queue(), ingest_queue(&names)]);
    assert_eq!(
        queues,
        expected.iter().map(String::as_str).collect::<BTreeSet<_>>()
    );
    for trigger in triggers.iter().filter(|t| t["type"] == "rabbitmq") {
        // Ready messages only: ready + unacked would grow with every replica's prefetch.
        assert_eq!(trigger["metadata"]["protocol"], "amqp", "{trigger}");
    }
    // Never scaled to zero while an agent is online, whatever the queues say.
    assert_eq!(scaled["spec"]["minReplicaCount"], 0);
    assert!(triggers.iter().any(|t| t["name"] == "sim-agents-online"));
    // Each trigger's credentials: a TriggerAuthentication that reads a key the Secret
    // example has, under the parameter KEDA's scaler of that type takes.
    let secrets: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Secret").collect();
    for trigger in triggers {
        let auth = k8s_object(
            &docs,
            "TriggerAuthentication",
            trigger["authenticationRef"]["name"].as_str().unwrap(),
        );
        let wanted = match trigger["type"].as_str().unwrap() {
            "rabbitmq" => "host",
            "postgresql" => "connection",
            other => panic!("no check for {other} triggers"),
        };
        for reference in auth["spec"]["secretTargetRef"].as_array().unwrap() {
            assert_eq!(reference["parameter"], wanted, "{trigger}");
            let secret = secrets
                .iter()
                .find(|s| s["metadata"]["name"] == reference["name"])
                .unwrap_or_else(|| panic!("no Secret {} in the example", reference["name"]));
            let key = reference["key"].as_str().unwrap();
            assert!(
                secret["stringData"][key].is_string(),
                "no {key} in {}",
                reference["name"]
            );
        }
    }
}

/// The ScaledObject's PostgreSQL trigger queries, by trigger name.
fn keda_queries() -> Vec<(String, String)> {
    let docs = k8s_documents();
    k8s_object(&docs, "ScaledObject", "smsgate-dispatcher")["spec"]["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["type"] == "postgresql")
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["metadata"]["query"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn keda_reads(app: &TestApp, trigger: &str) -> i64 {
    let (_, query) = keda_queries()
        .into_iter()
        .find(|(name, _)| name == trigger)
        .unwrap_or_else(|| panic!("no postgresql trigger {trigger}"));
    // KEDA's scaler takes the first column of the first row as a number.
    let row: (i64,) = sqlx::query_as(&format!("SELECT ({query})::bigint"))
        .fetch_one(&app.db)
        .await
        .unwrap_or_else(|e| panic!("{trigger}: {e}"));
    row.0
}

/// The triggers' SQL runs on the schema the migrations make, and reads what it claims: the
/// due HKT recipients the releaser holds back, 2 while a SIM agent is heard from, the
/// webhook deliveries due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keda_queries_read_the_backlog_and_the_agents_from_the_current_schema() {
    // No dispatcher and a 2/s limit: the releaser keeps one job in the HKT queue and holds
    // the rest of a bulk back, which is the backlog the first trigger must see.
    let app = TestApp::spawn_with(TestOptions {
        start_dispatcher: false,
        hkt_rate_limit: Some(2.0),
        ..Default::default()
    })
    .await;
    assert_eq!(keda_queries().len(), 3, "a check below for each query");
    assert_eq!(keda_reads(&app, "hkt-backlog").await, 0);
    assert_eq!(keda_reads(&app, "sim-agents-online").await, 0);
    assert_eq!(keda_reads(&app, "webhook-deliveries").await, 0);

    let recipients = smsgate_tests::app::numbers(40, 6123);
    app.send_bulk(&recipients, "backlog").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut backlog = keda_reads(&app, "hkt-backlog").await;
    // Accepted at once; the releaser takes its one job within a round or two.
    while backlog == 40 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        backlog = keda_reads(&app, "hkt-backlog").await;
    }
    assert!((30..40).contains(&backlog), "backlog read as {backlog}");

    // A SIM last heard from 10 minutes ago is offline: no floor. One heard from now is.
    sqlx::query(
        "INSERT INTO sim_cards (number, last_heartbeat_at)
         VALUES ('+85251234001', now() - interval '10 minutes')",
    )
    .execute(&app.db)
    .await
    .unwrap();
    assert_eq!(keda_reads(&app, "sim-agents-online").await, 0);
    sqlx::query("INSERT INTO sim_cards (number, last_heartbeat_at) VALUES ('+85251234002', now())")
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(keda_reads(&app, "sim-agents-online").await, 2);
    app.teardown().await;
}

/// Every httpGet probe of the API answers 200 on a running API, on the port BIND_ADDR
/// gives it: the probes name routes the router really has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_probes_get_paths_the_api_serves() {
    let docs = k8s_documents();
    let bind_port = port_of(&config_value(&docs, "BIND_ADDR"));
    let container = &k8s_object(&docs, "Deployment", "smsgate-api")["spec"]["template"]["spec"]
        ["containers"][0];
    let app = TestApp::spawn_without_dispatcher().await;
    let mut paths = BTreeSet::new();
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let get = &container[probe]["httpGet"];
        assert_eq!(probe_port(container, &get["port"]), bind_port, "{probe}");
        let path = get["path"].as_str().expect("an httpGet probe");
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{probe} {path}");
        paths.insert(path);
    }
    // Readiness asks about PostgreSQL and RabbitMQ; liveness must not (an outage would
    // restart every replica at once).
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"],
        "/health/ready"
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"],
        "/health/live"
    );
    assert_eq!(paths.len(), 2);
    app.teardown().await;
}
