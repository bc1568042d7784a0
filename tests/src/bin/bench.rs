//! `make bench`: see `smsgate_tests::bench`.

use std::path::PathBuf;

use anyhow::Context;
use smsgate_tests::bench::report::{self, Figure, Timeline};
use smsgate_tests::bench::scenarios::{self, Sizes};
use smsgate_tests::bench::stack::Stack;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let smoke = args.iter().any(|a| a == "--smoke");
    // `--only bulk,single` runs a subset while tuning; the report is then not written.
    let only: Option<Vec<String>> = args
        .windows(2)
        .find(|w| w[0] == "--only")
        .map(|w| w[1].split(',').map(str::to_owned).collect());
    let wanted = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|n| n == name));
    let sizes = if smoke { Sizes::smoke() } else { Sizes::full() };
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out_dir = if smoke {
        repo.join("target/bench-smoke")
    } else {
        repo.join("docs")
    };
    std::fs::create_dir_all(&out_dir)?;
    eprintln!(
        "smsgate bench ({}) — sizes: {sizes:?}",
        if smoke { "smoke" } else { "full" }
    );

    let mut stack = Stack::start().await.context("starting the stack")?;
    let mut figures: Vec<Figure> = Vec::new();
    let mut timeline = Timeline::default();

    if wanted("idle") {
        run(
            &mut figures,
            "Idle memory",
            scenarios::idle_memory(&mut stack).await,
        );
    }
    if wanted("bulk") {
        match scenarios::bulk_end_to_end(&mut stack, &sizes).await {
            Ok((f, t)) => {
                figures.extend(f);
                timeline = t;
            }
            Err(e) => figures.push(Figure::failed("Bulk / end to end", &e)),
        }
    }
    if wanted("rate") {
        run(
            &mut figures,
            "Rate limit",
            scenarios::global_rate_limit(&mut stack, &sizes).await,
        );
    }
    if wanted("scaling") {
        run(
            &mut figures,
            "Scaling",
            scenarios::horizontal_scaling(&mut stack, &sizes).await,
        );
    }
    if wanted("single") {
        run(
            &mut figures,
            "Single send",
            scenarios::single_send(&mut stack, &sizes).await,
        );
    }
    if wanted("tables") {
        run(
            &mut figures,
            "Large tables",
            scenarios::large_tables(&mut stack, &sizes).await,
        );
    }
    stack.shutdown().await;

    println!("{}", report::table(&figures));
    if only.is_some() {
        return Ok(());
    }
    let plot = out_dir.join("bench-e2e.svg");
    std::fs::write(
        &plot,
        timeline.to_svg(&format!(
            "{} recipients completed over time (2 dispatchers)",
            sizes.bulk
        )),
    )?;
    let results = out_dir.join("benchmarks.md");
    let previous = std::fs::read_to_string(&results).unwrap_or_default();
    std::fs::write(
        &results,
        report::splice_generated(&previous, &results_markdown(&figures, &timeline)),
    )?;
    eprintln!("wrote {} and {}", results.display(), plot.display());
    if smoke && figures.iter().any(|f| f.measured == "error") {
        anyhow::bail!("a scenario failed to run");
    }
    Ok(())
}

fn run(figures: &mut Vec<Figure>, name: &str, result: anyhow::Result<Vec<Figure>>) {
    match result {
        Ok(f) => figures.extend(f),
        Err(e) => figures.push(Figure::failed(name, &e)),
    }
}

/// The generated part of the benchmark report: the table and the raw timeline.
fn results_markdown(figures: &[Figure], timeline: &Timeline) -> String {
    let machine = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut out = format!(
        "## Latest run\n\n{}, {cores} cores, run at {}.\n\n",
        machine,
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    out.push_str(&report::markdown_table(figures));
    out.push_str("\n![recipients completed over time](bench-e2e.svg)\n\n<details><summary>timeline samples (s, done)</summary>\n\n");
    for (t, n) in &timeline.points {
        out.push_str(&format!("{t:.2} {n}  \n"));
    }
    out.push_str("\n</details>\n");
    out
}
