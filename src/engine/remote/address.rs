//! An inference server's address as users write it: `grpc://host:port`, or `grpcs://host:port`
//! for TLS. Pure parsing, no network.

use std::fmt;

/// Triton's (and KServe's) gRPC port, when the address names none.
pub const DEFAULT_PORT: u16 = 8001;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerUrl {
    pub tls: bool,
    /// A host name, an IPv4 address, or an IPv6 address in brackets.
    pub host: String,
    pub port: u16,
}

impl ServerUrl {
    /// Parses `grpc://host[:port]` or `grpcs://host[:port]`; says what is wrong otherwise.
    pub fn parse(text: &str) -> Result<ServerUrl, String> {
        let text = text.trim();
        let (tls, rest) = if let Some(rest) = text.strip_prefix("grpc://") {
            (false, rest)
        } else if let Some(rest) = text.strip_prefix("grpcs://") {
            (true, rest)
        } else {
            return Err(format!(
                "\"{text}\" is not an inference server address: write grpc://host:port (or grpcs:// for TLS)"
            ));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('@') {
            return Err(format!(
                "\"{text}\": credentials do not belong in the address; use server-token"
            ));
        }
        if authority.contains(['/', '?', '#']) {
            return Err(format!(
                "\"{text}\": an inference server address has no path; name the model with server-model"
            ));
        }
        let (host, port) = split_port(authority).map_err(|why| format!("\"{text}\": {why}"))?;
        if host.is_empty() {
            return Err(format!("\"{text}\" names no host"));
        }
        let valid_host = if let Some(inner) = host.strip_prefix('[') {
            inner
                .strip_suffix(']')
                .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
        } else {
            host.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
        };
        if !valid_host {
            return Err(format!("\"{text}\": \"{host}\" is not a host name or address"));
        }
        Ok(ServerUrl {
            tls,
            host: host.to_string(),
            port,
        })
    }

    /// The address as tonic wants it (an `http`/`https` URI).
    pub fn uri(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }

    /// The host name a TLS certificate must carry.
    pub fn tls_name(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

fn split_port(authority: &str) -> Result<(&str, u16), String> {
    // An IPv6 address's colons are inside its brackets.
    let port_at = match authority.rfind(']') {
        Some(end) => authority[end..].find(':').map(|i| end + i),
        None => authority.rfind(':'),
    };
    match port_at {
        None => Ok((authority, DEFAULT_PORT)),
        Some(colon) => {
            let port = &authority[colon + 1..];
            match port.parse::<u16>() {
                Ok(port) if port > 0 => Ok((&authority[..colon], port)),
                _ => Err(format!("\"{port}\" is not a port number")),
            }
        }
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "grpcs" } else { "grpc" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_and_tls_addresses() {
        let plain = ServerUrl::parse("grpc://127.0.0.1:18001").unwrap();
        assert_eq!(
            plain,
            ServerUrl {
                tls: false,
                host: "127.0.0.1".into(),
                port: 18001
            }
        );
        assert_eq!(plain.uri(), "http://127.0.0.1:18001");
        let tls = ServerUrl::parse("grpcs://triton.example.com/").unwrap();
        assert!(tls.tls);
        assert_eq!(tls.port, DEFAULT_PORT);
        assert_eq!(tls.uri(), "https://triton.example.com:8001");
        assert_eq!(tls.to_string(), "grpcs://triton.example.com:8001");
        let v6 = ServerUrl::parse("grpc://[::1]:9000").unwrap();
        assert_eq!((v6.host.as_str(), v6.port, v6.tls_name()), ("[::1]", 9000, "::1"));
    }

    #[test]
    fn explains_bad_addresses() {
        for (text, expected) in [
            ("http://host:8001", "write grpc://host:port"),
            ("host:8001", "write grpc://host:port"),
            ("grpc://user:pw@host:8001", "credentials"),
            ("grpc://host:8001/v2/models/ssd", "no path"),
            ("grpc://host:port", "not a port number"),
            ("grpc://host:0", "not a port number"),
            ("grpc://:8001", "names no host"),
            ("grpc://ho st:1", "not a host name"),
            ("grpc://[zz]:1", "not a host name"),
        ] {
            let error = ServerUrl::parse(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
