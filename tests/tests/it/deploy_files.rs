//! What the deploy files promise about exposure, checked where the files are: nginx keeps the
//! probes from the internet, and the production image carries no mock gateway.

use std::path::PathBuf;

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
