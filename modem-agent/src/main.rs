//! The modem agent's real work (AT session, SIM queue consumer, inbound SMS, heartbeats)
//! is issue #4. Until then the binary refuses to run rather than pretend to work.

fn main() -> anyhow::Result<()> {
    anyhow::bail!(
        "smsgate-modem-agent is not implemented yet (issue #4); SIM routing is unavailable"
    )
}
