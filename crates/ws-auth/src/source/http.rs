//! HTTP session callback: the server asks the application who a session
//! belongs to, forwarding the client's cookies and chosen headers.
//!
//! hyper-util's pooled client over hyper-rustls (ring, TLS 1.2/1.3) rather
//! than reqwest: the workspace already has hyper and rustls, and the
//! callback needs nothing more. Answers (users and anonymous alike, never
//! failures) are cached per credential for `cache_ttl`, so many handshakes
//! and revalidations of one session cost one request per TTL.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, COOKIE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde_json::Value;

use super::{Lookup, Presented};
use crate::cache::TtlCache;
use crate::config::{Credential, HttpConfig, HttpMethod};
use crate::credential::cookie_header;
use crate::error::{ConfigError, Failure, FailureKind};
use crate::mapping::{Mapping, RECORD_DEFAULTS};

/// Largest answer read, in bytes.
const MAX_ANSWER: usize = 64 * 1024;

/// The placeholder for the credential in the URL.
const PLACEHOLDER: &str = "{credential}";

pub(crate) struct HttpSource {
    aspect: Arc<str>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: String,
    method: HttpMethod,
    forward_cookies: bool,
    forward_headers: Vec<HeaderName>,
    bearer: bool,
    mapping: Mapping,
    cache: TtlCache<Lookup>,
}

impl HttpSource {
    pub(crate) fn new(
        aspect: &str,
        c: &HttpConfig,
        credential: &Credential,
    ) -> Result<Self, ConfigError> {
        let probe = c.url.replace(PLACEHOLDER, "x");
        let uri: Uri = probe
            .parse()
            .map_err(|e| ConfigError::invalid(aspect, "http.url", format!("not a URL: {e}")))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(ConfigError::invalid(
                    aspect,
                    "http.url",
                    "the URL must start with http:// or https://",
                ));
            }
        };
        if uri.host().is_none() {
            return Err(ConfigError::invalid(
                aspect,
                "http.url",
                "the URL has no host",
            ));
        }
        let forward_headers = c
            .forward_headers
            .iter()
            .map(|h| {
                HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                    ConfigError::invalid(
                        aspect,
                        "http.forward_headers",
                        format!("`{h}` is not a header name"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let roots = root_store(aspect, c, https)?;
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::invalid(aspect, "http.url", e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(c.timeout));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .build(connector);
        Ok(Self {
            aspect: Arc::from(aspect),
            client,
            url: c.url.clone(),
            method: c.method,
            forward_cookies: c.forward_cookies,
            forward_headers,
            bearer: *credential == Credential::Bearer,
            mapping: Mapping::new(aspect, &c.fields, &RECORD_DEFAULTS)?,
            cache: TtlCache::new(c.cache_ttl, c.cache_size),
        })
    }

    /// The headers of the handshake the callback will forward.
    pub(crate) fn forwarded(&self, headers: &HeaderMap, credential: &str) -> HeaderMap {
        let mut out = HeaderMap::new();
        if self.forward_cookies
            && let Some(v) = cookie_header(headers).and_then(|c| HeaderValue::from_str(&c).ok())
        {
            out.insert(COOKIE, v);
        }
        for name in &self.forward_headers {
            for v in headers.get_all(name) {
                out.append(name.clone(), v.clone());
            }
        }
        if self.bearer
            && !out.contains_key(AUTHORIZATION)
            && let Ok(v) = HeaderValue::from_str(&format!("Bearer {credential}"))
        {
            out.insert(AUTHORIZATION, v);
        }
        out
    }

    pub(crate) async fn lookup(&self, presented: &Presented) -> Result<Lookup, Failure> {
        let key = presented.credential.as_str();
        if let Some(hit) = self.cache.get(key, Instant::now()) {
            return Ok(hit);
        }
        let answer = self.call(presented).await?;
        self.cache.insert(key, answer.clone(), Instant::now());
        Ok(answer)
    }

    async fn call(&self, presented: &Presented) -> Result<Lookup, Failure> {
        let credential = &presented.credential;
        let encoded =
            percent_encoding::utf8_percent_encode(credential, percent_encoding::NON_ALPHANUMERIC);
        let url = self.url.replace(PLACEHOLDER, &encoded.to_string());
        let (method, body) = match self.method {
            HttpMethod::GET => (Method::GET, Bytes::new()),
            HttpMethod::POST => (
                Method::POST,
                Bytes::from(
                    serde_json::json!({ "aspect": &*self.aspect, "credential": credential })
                        .to_string(),
                ),
            ),
        };
        let mut request = Request::builder()
            .method(method)
            .uri(url)
            .body(Full::new(body.clone()))
            .map_err(|e| Failure::new(FailureKind::Unavailable, e))?;
        let headers = request.headers_mut();
        headers.extend(presented.forwarded.clone());
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, HeaderValue::from_static("ws-provider"));
        if !body.is_empty() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| Failure::new(FailureKind::Unavailable, e))?;
        let status = response.status();
        match status {
            StatusCode::OK => {}
            StatusCode::NO_CONTENT => return Ok(Lookup::Anonymous("application: no session")),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Ok(Lookup::Anonymous("application: not logged in"));
            }
            other => {
                return Err(Failure::new(
                    FailureKind::Unavailable,
                    format!("the application answered {other}"),
                ));
            }
        }
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| Failure::new(FailureKind::Unavailable, e))?
            .to_bytes();
        let record = match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(m)) => m,
            Ok(Value::Null) => return Ok(Lookup::Anonymous("application: no session")),
            Ok(_) => {
                return Err(Failure::invalid(
                    "the application's answer is not a JSON object",
                ));
            }
            Err(e) => {
                return Err(Failure::invalid(format!(
                    "the application's answer is not JSON: {e}"
                )));
            }
        };
        match self.mapping.map(record) {
            Ok(Some(user)) => Ok(Lookup::User(user)),
            Ok(None) => Ok(Lookup::Anonymous("application: no user")),
            Err(e) => Err(Failure::invalid(e)),
        }
    }
}

fn root_store(
    aspect: &str,
    c: &HttpConfig,
    https: bool,
) -> Result<rustls::RootCertStore, ConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = &c.ca_file {
        let text = std::fs::read(path).map_err(|source| ConfigError::ReadFile {
            aspect: aspect.to_owned(),
            key: "http.ca_file",
            path: path.clone(),
            source,
        })?;
        let certs = CertificateDer::pem_slice_iter(&text)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                ConfigError::invalid(aspect, "http.ca_file", format!("not PEM certificates: {e}"))
            })?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(ConfigError::invalid(
                aspect,
                "http.ca_file",
                "no usable CA certificate in the file",
            ));
        }
    } else if https {
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err(ConfigError::invalid(
                aspect,
                "http.url",
                "https needs CA certificates: none found in the system store (install ca-certificates) \
                 and no `ca_file` given",
            ));
        }
    }
    Ok(roots)
}
