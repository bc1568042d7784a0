#!/usr/bin/env bash
# Checks the observability stack's files (issue #17), in `make test`:
#
#   1. docker-compose.yml is a valid compose file (`docker-compose config -q`, Debian's
#      docker-compose; no Docker engine is needed to check a file);
#   2. deploy/prometheus/prometheus.yml is valid (`promtool check config --syntax-only`:
#      the token file it names exists only in the container);
#   3. deploy/prometheus/alerts.yml is valid (`promtool check rules`), and its unit tests,
#      deploy/prometheus/alerts.test.yml, pass (`promtool test rules`): each alert fires on
#      a synthetic series and stays quiet on a healthy one;
#   4. the Grafana dashboards are JSON (their queries are checked against a running stack
#      by tests/tests/it/prometheus_scrape.rs), the collector's and Grafana's files YAML.
#
# promtool (package prometheus, which the integration test's real Prometheus also needs) and
# docker-compose are installed with apt when missing, non-interactively (CI=true works).
# Exit status: 0 when every check passes.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

ensure_tools() {
    local missing=()
    { have promtool && have prometheus; } || missing+=(prometheus)
    have docker-compose || missing+=(docker-compose)
    if ((${#missing[@]})); then
        info "installing ${missing[*]} for the observability checks"
        apt_install "${missing[@]}" || die "could not install ${missing[*]}"
    fi
    # Debian's package starts a Prometheus service where systemd runs; the checks and the
    # tests need only the binaries, and start their own.
}

main() {
    info "observability: compose file, Prometheus configuration, alert rules"
    ensure_tools
    # The compose file refuses to render without the secrets it requires: dummies suffice to
    # check its shape.
    METRICS_TOKEN=check-observability-token WEBHOOK_SECRET_KEYS=k1:check \
        docker-compose -f docker-compose.yml config -q
    note "ok: docker-compose.yml is valid ($(docker-compose version --short))"
    promtool check config --syntax-only deploy/prometheus/prometheus.yml >/dev/null
    note "ok: deploy/prometheus/prometheus.yml is valid"
    promtool check rules deploy/prometheus/alerts.yml >/dev/null
    (cd deploy/prometheus && promtool test rules alerts.test.yml >/dev/null)
    note "ok: deploy/prometheus/alerts.yml is valid and its unit tests pass"
    local dashboard
    for dashboard in deploy/grafana/dashboards/*.json; do
        python3 -m json.tool "$dashboard" >/dev/null || die "$dashboard is not valid JSON"
    done
    note "ok: the Grafana dashboards are valid JSON"
    # No collector or Grafana binary is installable here: their files are checked as YAML
    # (PyYAML comes with docker-compose).
    local file
    for file in deploy/otel/*.yaml deploy/grafana/provisioning/*/*.yaml; do
        python3 -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' "$file" ||
            die "$file is not valid YAML"
    done
    note "ok: the collector's and Grafana's provisioning files are valid YAML"
}

main "$@"
