//! A service connection string: `HostName=<hub>[:<port>];SharedAccessKeyName=<policy>;
//! SharedAccessKey=<base64>` (the emulator's carries its port; a real hub's does not).

use crate::error::ServiceError;

/// A parsed service connection string. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceConnectionString {
    /// The hub's host name, without a port.
    pub host: String,
    /// The HTTPS port (443 unless the host name names one).
    pub port: u16,
    /// The policy the key belongs to (`iothubowner`, `service`, ...).
    pub key_name: String,
    /// The policy's key (base64).
    pub key: String,
}

impl std::fmt::Debug for ServiceConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceConnectionString")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

impl ServiceConnectionString {
    /// Parses `text`; every field is required, unknown fields are ignored (as the SDKs do).
    pub fn parse(text: &str) -> Result<ServiceConnectionString, ServiceError> {
        let field = |name: &'static str| {
            text.split(';')
                .filter_map(|part| part.split_once('='))
                .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
                .map(|(_, value)| value.trim().to_owned())
                .filter(|value| !value.is_empty())
                .ok_or(ServiceError::ConnectionString { field: name })
        };
        let host_name = field("HostName")?;
        let (host, port) = match host_name.rsplit_once(':') {
            Some((host, port)) => (
                host.to_owned(),
                port.parse()
                    .map_err(|_| ServiceError::ConnectionString { field: "HostName" })?,
            ),
            None => (host_name.clone(), 443),
        };
        if host.is_empty() {
            return Err(ServiceError::ConnectionString { field: "HostName" });
        }
        Ok(ServiceConnectionString {
            host,
            port,
            key_name: field("SharedAccessKeyName")?,
            key: field("SharedAccessKey")?,
        })
    }

    /// `host[:port]` as the hub names itself (the SAS resource, the `Host` header).
    pub fn host_name(&self) -> String {
        if self.port == 443 {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_and_emulator_strings_parse_and_the_key_stays_hidden() {
        let real = ServiceConnectionString::parse(
            "HostName=contoso.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=c2VjcmV0",
        )
        .unwrap();
        assert_eq!(
            (real.host.as_str(), real.port, real.key_name.as_str()),
            ("contoso.azure-devices.net", 443, "iothubowner")
        );
        assert_eq!(real.host_name(), "contoso.azure-devices.net");
        assert!(!format!("{real:?}").contains("c2VjcmV0"));
        let emulator = ServiceConnectionString::parse(
            "HostName=localhost:44321;SharedAccessKeyName=iothubowner;SharedAccessKey=a2V5",
        )
        .unwrap();
        assert_eq!(
            (emulator.host.as_str(), emulator.port),
            ("localhost", 44321)
        );
        assert_eq!(emulator.host_name(), "localhost:44321");
    }

    #[test]
    fn a_missing_or_malformed_field_is_named() {
        for (text, field) in [
            ("SharedAccessKeyName=p;SharedAccessKey=k", "HostName"),
            (
                "HostName=h:x;SharedAccessKeyName=p;SharedAccessKey=k",
                "HostName",
            ),
            (
                "HostName=:1;SharedAccessKeyName=p;SharedAccessKey=k",
                "HostName",
            ),
            ("HostName=h;SharedAccessKey=k", "SharedAccessKeyName"),
            (
                "HostName=h;SharedAccessKeyName=p;SharedAccessKey=",
                "SharedAccessKey",
            ),
        ] {
            assert!(
                matches!(
                    ServiceConnectionString::parse(text),
                    Err(ServiceError::ConnectionString { field: f }) if f == field
                ),
                "{text}"
            );
        }
    }
}
