//! CORS for browser OTLP exporters (`protocols.http.cors`, the Collector's keys): the
//! preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered
//! from the config alone, before authentication (browsers send no credentials on a
//! preflight); an allowed origin's export requests get `Access-Control-Allow-Origin`.
//!
//! A disallowed origin gets 403 and no `Access-Control-*` header, on the preflight and on
//! the request itself: with CORS configured, the receiver does not take spans a browser
//! page of another origin posts (a browser would hide the answer anyway, but the spans
//! would be taken). Requests without `Origin` (SDKs, gateways) are not affected.

use http::header::{
    HeaderName, HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use serde::Deserialize;
use tracecast_config::FieldError;

/// `protocols.http.cors`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins allowed to send (`https://app.example.com`); `*` in one place matches any
    /// text there (`https://*.example.com`), `*` alone any origin. Empty: CORS off.
    pub allowed_origins: Vec<String>,
    /// Request headers a browser may send besides `Accept`, `Content-Type`,
    /// `Content-Encoding` and `X-Requested-With` (always allowed); `Authorization` must be
    /// listed when `api_keys` are used. `*` allows any.
    pub allowed_headers: Vec<String>,
    /// Seconds a browser may cache a preflight answer (`Access-Control-Max-Age`); 0 or
    /// unset sends none (the browser's default, a few seconds).
    pub max_age: u64,
}

/// Headers every CORS config allows (what browser OTLP exporters send).
const ALWAYS_ALLOWED: [&str; 4] = [
    "accept",
    "content-type",
    "content-encoding",
    "x-requested-with",
];

impl CorsConfig {
    /// Every problem, with paths below `key` (`protocols.http.cors`).
    pub fn validate_at(&self, key: &str) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for (i, origin) in self.allowed_origins.iter().enumerate() {
            if let Err(message) = check_origin(origin) {
                errors.push(FieldError::new(
                    format!("{key}.allowed_origins[{i}]"),
                    message,
                ));
            }
        }
        for (i, header) in self.allowed_headers.iter().enumerate() {
            if header != "*" && HeaderName::from_bytes(header.as_bytes()).is_err() {
                errors.push(FieldError::new(
                    format!("{key}.allowed_headers[{i}]"),
                    format!("{header:?} is not an HTTP header name (or `*` for any)"),
                ));
            }
        }
        errors
    }
}

fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let hint = "write scheme://host[:port] without a path, like https://app.example.com or https://*.example.com";
    if origin.matches('*').count() > 1 {
        return Err(format!("{origin:?} has more than one `*`; {hint}"));
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err(format!("{origin:?} has no scheme; {hint}"));
    };
    if scheme.is_empty() || rest.is_empty() || rest.contains('/') || origin.ends_with('/') {
        return Err(format!("{origin:?} is not an origin; {hint}"));
    }
    Ok(())
}

/// One allowed origin: exact, or a prefix and suffix around one `*`.
#[derive(Debug)]
enum Pattern {
    Any,
    Exact(String),
    Wildcard { prefix: String, suffix: String },
}

impl Pattern {
    fn matches(&self, origin: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(exact) => origin == exact,
            Pattern::Wildcard { prefix, suffix } => {
                origin.len() > prefix.len() + suffix.len()
                    && origin.starts_with(prefix.as_str())
                    && origin.ends_with(suffix.as_str())
                    // The `*` stands for host labels, never for a path or credentials.
                    && !origin[prefix.len()..origin.len() - suffix.len()]
                        .contains(['/', '@', '?', '#', ':'])
            }
        }
    }
}

/// A validated [`CorsConfig`], ready to answer.
#[derive(Debug)]
pub(crate) struct Cors {
    origins: Vec<Pattern>,
    /// Lowercase; `None` when any header is allowed.
    headers: Option<Vec<String>>,
    max_age: u64,
}

/// Why a CORS check refused a request (403, without CORS headers).
#[derive(Debug)]
pub(crate) struct Refused(pub String);

impl Cors {
    /// `None` when `allowed_origins` is empty (CORS off, as in the Collector).
    pub fn new(config: &CorsConfig) -> Option<Self> {
        if config.allowed_origins.is_empty() {
            return None;
        }
        let origins = config
            .allowed_origins
            .iter()
            .map(|o| {
                let o = o.to_ascii_lowercase();
                match o.split_once('*') {
                    None => Pattern::Exact(o),
                    Some(("", "")) => Pattern::Any,
                    Some((prefix, suffix)) => Pattern::Wildcard {
                        prefix: prefix.to_string(),
                        suffix: suffix.to_string(),
                    },
                }
            })
            .collect();
        let headers = (!config.allowed_headers.iter().any(|h| h == "*")).then(|| {
            ALWAYS_ALLOWED
                .iter()
                .map(|h| h.to_string())
                .chain(
                    config
                        .allowed_headers
                        .iter()
                        .map(|h| h.to_ascii_lowercase()),
                )
                .collect()
        });
        Some(Self {
            origins,
            headers,
            max_age: config.max_age,
        })
    }

    fn allowed(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        self.origins.iter().any(|p| p.matches(&origin))
    }

    /// Whether `request` is a CORS preflight (browsers send both headers on one).
    pub fn is_preflight<B>(request: &Request<B>) -> bool {
        request.method() == Method::OPTIONS
            && request.headers().contains_key(ORIGIN)
            && request
                .headers()
                .contains_key(ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The answer to a preflight: 204 with the allow headers, or the refusal.
    pub fn preflight(&self, headers: &HeaderMap) -> Result<Response<()>, Refused> {
        let origin = self.check_origin(headers)?;
        let method = headers
            .get(ACCESS_CONTROL_REQUEST_METHOD)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        if method != b"POST" {
            return Err(Refused(format!(
                "CORS preflight for method {:?}; OTLP export requests use POST",
                String::from_utf8_lossy(method)
            )));
        }
        let requested: Vec<String> = headers
            .get_all(ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .flat_map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split(',')
                    .map(|h| h.trim().to_ascii_lowercase())
                    .collect::<Vec<_>>()
            })
            .filter(|h| !h.is_empty())
            .collect();
        if let Some(allowed) = &self.headers {
            if let Some(h) = requested.iter().find(|h| !allowed.contains(h)) {
                return Err(Refused(format!(
                    "CORS preflight asks for header {h:?}, which is not in cors.allowed_headers"
                )));
            }
        }
        let mut response = Response::new(());
        *response.status_mut() = StatusCode::NO_CONTENT;
        let out = response.headers_mut();
        out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        out.insert(
            ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        );
        if !requested.is_empty() {
            if let Ok(value) = HeaderValue::from_str(&requested.join(", ")) {
                out.insert(ACCESS_CONTROL_ALLOW_HEADERS, value);
            }
        }
        if self.max_age > 0 {
            out.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from(self.max_age));
        }
        out.insert(
            VARY,
            HeaderValue::from_static(
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        );
        Ok(response)
    }

    /// For a request that is not a preflight: the `Access-Control-Allow-Origin` value to
    /// add to its answer (`None` without `Origin`), or the refusal of a disallowed origin.
    pub fn check_request(&self, headers: &HeaderMap) -> Result<Option<HeaderValue>, Refused> {
        if !headers.contains_key(ORIGIN) {
            return Ok(None);
        }
        self.check_origin(headers).map(Some)
    }

    fn check_origin(&self, headers: &HeaderMap) -> Result<HeaderValue, Refused> {
        let origin = headers
            .get(ORIGIN)
            .cloned()
            .unwrap_or(HeaderValue::from_static(""));
        let text = String::from_utf8_lossy(origin.as_bytes());
        if self.allowed(&text) {
            Ok(origin)
        } else {
            Err(Refused(format!(
                "origin {text:?} is not in cors.allowed_origins"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str]) -> Cors {
        Cors::new(&CorsConfig {
            allowed_origins: origins.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn wildcards_match_one_place_and_need_something_there() {
        let c = cors(&["https://*.example.com", "http://localhost:3000"]);
        assert!(c.allowed("https://app.example.com"));
        assert!(c.allowed("https://a.b.example.com"));
        assert!(c.allowed("HTTPS://App.Example.com"));
        assert!(!c.allowed("https://.example.com"));
        assert!(!c.allowed("https://example.com"));
        assert!(!c.allowed("https://evil.com/.example.com"));
        assert!(!c.allowed("http://app.example.com"));
        assert!(c.allowed("http://localhost:3000"));
        assert!(!c.allowed("http://localhost:3001"));
        assert!(cors(&["*"]).allowed("https://anything.test"));
        assert!(Cors::new(&CorsConfig::default()).is_none());
    }

    #[test]
    fn bad_origins_and_headers_name_their_keys() {
        let config = CorsConfig {
            allowed_origins: vec![
                "https://*.*.com".into(),
                "example.com".into(),
                "https://a.com/path".into(),
                "https://ok.com".into(),
            ],
            allowed_headers: vec!["bad header".into(), "*".into()],
            max_age: 0,
        };
        let paths: Vec<String> = config
            .validate_at("protocols.http.cors")
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(
            paths,
            [
                "protocols.http.cors.allowed_origins[0]",
                "protocols.http.cors.allowed_origins[1]",
                "protocols.http.cors.allowed_origins[2]",
                "protocols.http.cors.allowed_headers[0]",
            ]
        );
    }
}
