//! Whether an HTTP request names this machine's loopback: the local listeners (the staff
//! console, the operations probes) answer only such requests when they serve loopback without
//! TLS. A web page whose own name was re-pointed at 127.0.0.1 (DNS rebinding) sends its own
//! name in `Host`, so it is refused before it reads anything.

/// Whether an HTTP `Host` value names this machine's loopback (`localhost`, `[::1]` or an
/// address in 127.0.0.0/8, with or without a port).
pub fn is_loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    name.eq_ignore_ascii_case("localhost")
        || name == "[::1]"
        || name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn only_loopback_names_are_loopback_hosts() {
        for host in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "localhost:1",
            "LOCALHOST",
            "[::1]:9464",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "",
            "evil.example",
            "evil.example:9464",
            "localhost.evil.example",
            "10.0.0.1:9464",
            "127.0.0.1.evil.example",
            "[::2]:1",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
