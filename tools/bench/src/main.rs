//! `make bench`: see `smsgate_bench`.

use std::path::PathBuf;

use anyhow::Context;
use smsgate_bench::report::{self, Figure, Timeline};
use smsgate_bench::scenarios::{self, Sizes};
use smsgate_bench::stack::Stack;
use smsgate_bench::{gateway, memory};

const USAGE: &str = "\
usage: bench [--smoke] [--only SCENARIO[,SCENARIO...]]

Starts its own stack of release binaries, runs the scenarios of issue #5 and the
gateway-limited ones of issue #14 (HKT_RATE_LIMIT=50), prints a table (figure, target,
measured, pass/fail) and writes docs/benchmarks.md and docs/bench-e2e.svg.

  --smoke      tiny sizes, to keep the harness working (CI); writes under target/bench-smoke
  --only LIST  run only these scenarios, while tuning; nothing is written
               (idle, bulk, memory, memory-limited, rate, scaling, single,
               tables, priority, fairshare, cancel, schedule)
  --help       this text";

const SCENARIOS: [&str; 12] = [
    "idle",
    "bulk",
    "memory",
    "memory-limited",
    "rate",
    "scaling",
    "single",
    "tables",
    "priority",
    "fairshare",
    "cancel",
    "schedule",
];

/// What the command line asked for.
struct Args {
    smoke: bool,
    only: Option<Vec<String>>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut parsed = Args {
        smoke: false,
        only: None,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--help" | "-h" => return Ok(None),
            "--smoke" => parsed.smoke = true,
            "--only" => {
                let list = args.next().ok_or("--only needs a list of scenarios")?;
                let names: Vec<String> = list.split(',').map(str::to_owned).collect();
                if let Some(unknown) = names.iter().find(|n| !SCENARIOS.contains(&n.as_str())) {
                    return Err(format!("--only: no scenario named {unknown:?}"));
                }
                parsed.only = Some(names);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(parsed))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Args { smoke, only } = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return Ok(());
        }
        Err(problem) => {
            eprintln!("bench: {problem}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let wanted = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|n| n == name));
    let sizes = if smoke { Sizes::smoke() } else { Sizes::full() };
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
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
    if wanted("memory") {
        let result = memory::api_memory(&mut stack, &sizes, None).await;
        run(&mut figures, "API memory", result);
    }
    if wanted("memory-limited") {
        let rate = Some(sizes.memory_rate_limit);
        let result = memory::api_memory(&mut stack, &sizes, rate).await;
        run(&mut figures, "API memory, limited gateway", result);
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
    if gateway::SCENARIOS.iter().any(|name| wanted(name)) {
        match gateway::start(&mut stack).await {
            Ok(users) => {
                let g = &sizes.gateway;
                if wanted("priority") {
                    let result = gateway::priority(&stack, &users, g).await;
                    run(&mut figures, "Priority", result);
                }
                if wanted("fairshare") {
                    let result = gateway::fair_share(&stack, &users, g).await;
                    run(&mut figures, "Fair share", result);
                }
                if wanted("cancel") {
                    let result = gateway::cancel(&stack, &users, g).await;
                    run(&mut figures, "Cancel", result);
                }
                if wanted("schedule") {
                    let result = gateway::schedule(&stack, &users, g).await;
                    run(&mut figures, "Schedule", result);
                }
            }
            Err(e) => figures.push(Figure::failed("Gateway-limited scenarios", &e)),
        }
        if let Err(e) = gateway::finish(&mut stack).await {
            eprintln!("after the gateway-limited scenarios: {e:#}");
        }
    }
    stack.shutdown().await;

    if smoke {
        figures = figures.into_iter().map(Figure::not_judged).collect();
        println!("smoke run: tiny sizes, so the figures are shown but not judged");
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Args>, String> {
        parse_args(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn no_arguments_run_everything_at_full_size() {
        let args = parse(&[]).unwrap().unwrap();
        assert!(!args.smoke);
        assert!(args.only.is_none());
    }

    #[test]
    fn smoke_and_a_subset_are_understood() {
        let args = parse(&["--smoke", "--only", "bulk,single"])
            .unwrap()
            .unwrap();
        assert!(args.smoke);
        assert_eq!(args.only.unwrap(), ["bulk", "single"]);
    }

    #[test]
    fn help_asks_for_the_usage_instead_of_a_run() {
        assert!(parse(&["--help"]).unwrap().is_none());
        assert!(parse(&["--smoke", "-h"]).unwrap().is_none());
    }

    #[test]
    fn unknown_arguments_and_scenarios_are_refused_by_name() {
        assert!(parse(&["--bogus"]).err().unwrap().contains("--bogus"));
        assert!(parse(&["--only", "bulk,foo"])
            .err()
            .unwrap()
            .contains("foo"));
        assert!(parse(&["--only"]).is_err());
    }
}
