//! Plugins' `protocols`: which requests a configured plugin runs on (`http`, `https`, `grpc`,
//! `grpcs`; Kong's default is all four). A request's protocol is `grpc`/`grpcs` on a gRPC
//! route, otherwise `http`/`https`, the `s` when it came over TLS.

use std::ops::Deref;

use super::PluginInstance;

/// The protocol a request came by, as plugins' `protocols` name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Https,
    Grpc,
    Grpcs,
}

impl Protocol {
    /// The protocol of a request over TLS or not, on a gRPC route or not.
    pub fn of(tls: bool, grpc: bool) -> Protocol {
        match (grpc, tls) {
            (false, false) => Protocol::Http,
            (false, true) => Protocol::Https,
            (true, false) => Protocol::Grpc,
            (true, true) => Protocol::Grpcs,
        }
    }

    fn bit(self) -> u8 {
        match self {
            Protocol::Http => 1,
            Protocol::Https => 2,
            Protocol::Grpc => 4,
            Protocol::Grpcs => 8,
        }
    }

    fn named(name: &str) -> Option<Protocol> {
        match name {
            "http" => Some(Protocol::Http),
            "https" => Some(Protocol::Https),
            "grpc" => Some(Protocol::Grpc),
            "grpcs" => Some(Protocol::Grpcs),
            _ => None,
        }
    }
}

/// A set of [`Protocol`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protocols(u8);

impl Protocols {
    pub const ALL: Protocols = Protocols(15);

    /// The set a plugin's `protocols` names (other names, validated elsewhere, add nothing).
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Protocols {
        Protocols(
            names
                .iter()
                .filter_map(|n| Protocol::named(n.as_ref()))
                .fold(0, |set, p| set | p.bit()),
        )
    }

    pub fn contains(self, p: Protocol) -> bool {
        self.0 & p.bit() != 0
    }
}

/// A plugin instance as configured: the plugin and the protocols it runs on.
pub struct Configured {
    pub instance: PluginInstance,
    pub protocols: Protocols,
}

impl Deref for Configured {
    type Target = PluginInstance;

    fn deref(&self) -> &PluginInstance {
        &self.instance
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_from_names() {
        let web = Protocols::from_names(&["http", "https"]);
        assert!(web.contains(Protocol::of(false, false)));
        assert!(web.contains(Protocol::of(true, false)));
        assert!(!web.contains(Protocol::of(false, true)));
        let tls_only = Protocols::from_names(&["https", "grpcs"]);
        assert!(!tls_only.contains(Protocol::Http));
        assert!(tls_only.contains(Protocol::Grpcs));
        for p in [
            Protocol::Http,
            Protocol::Https,
            Protocol::Grpc,
            Protocol::Grpcs,
        ] {
            assert!(Protocols::ALL.contains(p));
        }
    }
}
