#!/usr/bin/env bash
# Creates, restricts or deletes one SIM agent's RabbitMQ user with rabbitmqctl, for
# deployments where the API does not manage them (no BROKER_ADMIN_URL). Run on a broker
# node, as root or the rabbitmq user. The grants are the API's (shared/src/queue/edge.rs,
# SimGrants): nothing to configure, write only to <prefix>.edge under this SIM's routing
# keys, read only <prefix>.sim.<id>.
#
#   deploy/rabbitmq/sim-user.sh create <sim-id>   # prints the new password once
#   deploy/rabbitmq/sim-user.sh revoke <sim-id>   # SIM deactivated: no permissions, disconnected
#   deploy/rabbitmq/sim-user.sh grant  <sim-id>   # SIM active again
#   deploy/rabbitmq/sim-user.sh delete <sim-id>   # SIM deleted
#
# Environment: QUEUE_PREFIX (default smsgate), VHOST (default /).
set -euo pipefail

prefix=${QUEUE_PREFIX:-smsgate}
vhost=${VHOST:-/}
action=${1:-}
sim=${2:-}
[[ $sim =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 create|grant|revoke|delete <sim-id>" >&2; exit 2; }
[[ $prefix =~ ^[A-Za-z0-9._-]+$ ]] || { echo "QUEUE_PREFIX has characters a queue name may not" >&2; exit 2; }

user="$prefix.sim.$sim"
escaped=${prefix//./\\.}

grant() {
    rabbitmqctl set_permissions -p "$vhost" "$user" '^$' "^$escaped\\.edge\$" "^$escaped\\.sim\\.$sim\$"
    rabbitmqctl set_topic_permissions -p "$vhost" "$user" "$prefix.edge" "^(sim-report|inbound|heartbeat)\\.$sim\$" '^$'
}

disconnect() {
    # Permission changes apply to new channels only.
    rabbitmqctl list_connections name user --quiet --no-table-headers |
        awk -F'\t' -v u="$user" '$2 == u { print $1 }' |
        while IFS= read -r name; do rabbitmqctl close_connection "$name" "smsgate: SIM credentials changed"; done
}

case $action in
create)
    password=$(head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32)
    if rabbitmqctl list_users --quiet --no-table-headers | awk '{print $1}' | grep -qx "$user"; then
        rabbitmqctl change_password "$user" "$password" >/dev/null
        disconnect
    else
        rabbitmqctl add_user "$user" "$password" >/dev/null
    fi
    grant
    printf 'AMQP user: %s\npassword (shown once): %s\n' "$user" "$password"
    ;;
grant) grant ;;
revoke)
    rabbitmqctl clear_permissions -p "$vhost" "$user"
    rabbitmqctl clear_topic_permissions -p "$vhost" "$user"
    disconnect
    ;;
delete)
    rabbitmqctl delete_user "$user" || true
    disconnect
    ;;
*) echo "usage: $0 create|grant|revoke|delete <sim-id>" >&2; exit 2 ;;
esac
