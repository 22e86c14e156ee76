//! IoT Hub MQTT topic names, and defensive parsing of the topics the hub publishes on.

/// Twin responses (GET and reported PATCH).
pub const TWIN_RESPONSES: &str = "$iothub/twin/res/#";
/// Desired-property patches.
pub const DESIRED_PATCHES: &str = "$iothub/twin/PATCH/properties/desired/#";
/// Direct-method requests.
pub const METHOD_REQUESTS: &str = "$iothub/methods/POST/#";

/// MQTT username: `{host}/{clientId}/?api-version=2021-04-12`, with
/// `&model-id={percent-encoded model id}` for an IoT Plug and Play device (as Azure's device
/// SDKs announce it).
pub fn username(host_name: &str, client_id: &str, model_id: Option<&str>) -> String {
    match model_id {
        Some(model_id) => format!(
            "{host_name}/{client_id}/?api-version=2021-04-12&model-id={}",
            crate::sas::percent_encode(model_id)
        ),
        None => format!("{host_name}/{client_id}/?api-version=2021-04-12"),
    }
}

/// Topic of a full twin GET with request id `rid`.
pub fn twin_get(rid: u64) -> String {
    format!("$iothub/twin/GET/?$rid={rid}")
}

/// Topic of a reported-properties patch with request id `rid`.
pub fn twin_patch_reported(rid: u64) -> String {
    format!("$iothub/twin/PATCH/properties/reported/?$rid={rid}")
}

/// Topic of a device-to-cloud message for `device_id` with already-encoded properties.
pub fn telemetry(device_id: &str, encoded_properties: &str) -> String {
    format!("devices/{device_id}/messages/events/{encoded_properties}")
}

/// Topic answering direct method request `rid` with `status`.
pub fn method_response(status: u16, rid: &str) -> String {
    format!("$iothub/methods/res/{status}/?$rid={rid}")
}

/// What an incoming topic is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// `$iothub/twin/res/{status}/?$rid={rid}[&$version={v}]`
    TwinResponse {
        /// Status code.
        status: u16,
        /// Request id.
        rid: u64,
        /// New reported version (PATCH responses).
        version: Option<u64>,
        /// Seconds to wait before retrying (429 answers may carry it).
        retry_after: Option<u64>,
    },
    /// `$iothub/twin/PATCH/properties/desired/?$version={v}`
    DesiredPatch {
        /// Version named in the topic, if any (the body's `$version` is authoritative).
        version: Option<u64>,
    },
    /// `$iothub/methods/POST/{name}/?$rid={rid}`
    MethodRequest {
        /// Method name.
        name: String,
        /// Request id (opaque).
        rid: String,
    },
    /// Anything else.
    Other,
}

/// Classifies a topic the hub published on. Never panics on arbitrary input.
pub fn parse(topic: &str) -> Incoming {
    if let Some(rest) = topic.strip_prefix("$iothub/twin/res/") {
        let (status, query) = rest.split_once('/').unwrap_or((rest, ""));
        let Ok(status) = status.parse::<u16>() else {
            return Incoming::Other;
        };
        let query = query.strip_prefix('?').unwrap_or(query);
        let Some(rid) = param(query, "$rid").and_then(|v| v.parse().ok()) else {
            return Incoming::Other;
        };
        return Incoming::TwinResponse {
            status,
            rid,
            version: param(query, "$version").and_then(|v| v.parse().ok()),
            retry_after: param(query, "retry-after").and_then(|v| v.parse().ok()),
        };
    }
    if let Some(rest) = topic.strip_prefix("$iothub/twin/PATCH/properties/desired/") {
        let query = rest.strip_prefix('?').unwrap_or(rest);
        return Incoming::DesiredPatch {
            version: param(query, "$version").and_then(|v| v.parse().ok()),
        };
    }
    if let Some(rest) = topic.strip_prefix("$iothub/methods/POST/") {
        if let Some((name, query)) = rest.split_once('/') {
            let query = query.strip_prefix('?').unwrap_or(query);
            if let Some(rid) = param(query, "$rid") {
                return Incoming::MethodRequest {
                    name: name.to_string(),
                    rid: rid.to_string(),
                };
            }
        }
    }
    Incoming::Other
}

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_iot_hub_spec() {
        assert_eq!(
            username("h.azure-devices.net", "dev1", None),
            "h.azure-devices.net/dev1/?api-version=2021-04-12"
        );
        assert_eq!(
            username("h.azure-devices.net", "dev1", Some("dtmi:testudo:gateway;1")),
            "h.azure-devices.net/dev1/?api-version=2021-04-12&model-id=dtmi%3Atestudo%3Agateway%3B1"
        );
        assert_eq!(twin_get(7), "$iothub/twin/GET/?$rid=7");
        assert_eq!(
            twin_patch_reported(8),
            "$iothub/twin/PATCH/properties/reported/?$rid=8"
        );
        assert_eq!(telemetry("d", ""), "devices/d/messages/events/");
    }

    #[test]
    fn parses_hub_topics() {
        assert_eq!(
            parse("$iothub/twin/res/200/?$rid=4"),
            Incoming::TwinResponse {
                status: 200,
                rid: 4,
                version: None,
                retry_after: None
            }
        );
        assert_eq!(
            parse("$iothub/twin/res/204/?$rid=5&$version=12"),
            Incoming::TwinResponse {
                status: 204,
                rid: 5,
                version: Some(12),
                retry_after: None
            }
        );
        assert_eq!(
            parse("$iothub/twin/res/429/?$rid=6&retry-after=3"),
            Incoming::TwinResponse {
                status: 429,
                rid: 6,
                version: None,
                retry_after: Some(3)
            }
        );
        assert_eq!(
            parse("$iothub/twin/PATCH/properties/desired/?$version=3"),
            Incoming::DesiredPatch { version: Some(3) }
        );
        assert_eq!(
            parse("$iothub/methods/POST/reboot/?$rid=abc"),
            Incoming::MethodRequest {
                name: "reboot".into(),
                rid: "abc".into()
            }
        );
    }

    #[test]
    fn garbage_is_other() {
        for topic in [
            "",
            "$iothub/twin/res/",
            "$iothub/twin/res/abc/?$rid=1",
            "$iothub/twin/res/200/?$rid=x",
            "a/b",
            "$iothub/methods/POST/x",
        ] {
            assert_eq!(parse(topic), Incoming::Other, "{topic}");
        }
    }
}
