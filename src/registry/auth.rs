//! Registry authentication data (SPEC §5): `WWW-Authenticate` challenges, the credentials presented, the token
//! request URL, the Bearer token response, and the per-scope token cache. The HTTP exchanges live in the client.
//!
//! Tokens are held in [`Secret`] so that `Debug` never prints them; nothing here logs a credential.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{self, HeaderMap, HeaderValue};
use serde::Deserialize;
use url::Url;

use super::RegistryError;
use crate::config::Secret;

/// Lifetime assumed when a token response has no `expires_in` (Docker token spec default).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Longest lifetime honoured, whatever `expires_in` says.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// A cached token is dropped this long (at most) before it expires, so it is not presented stale.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);

/// One challenge from `WWW-Authenticate`: `Bearer realm="…",service="…",scope="…"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Lower-cased auth scheme (`bearer`, `basic`, ...).
    pub scheme: String,
    /// Parameters in order, names lower-cased, values unquoted and unescaped.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of parameter `name` (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parse every challenge in one `WWW-Authenticate` value (RFC 7235 §4.1). Quoted values may contain commas
/// and `\"`; several challenges may share one header. Malformed input yields what could be read, never panics.
pub fn parse_www_authenticate(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let s = header.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && (s[*i] == b' ' || s[*i] == b'\t') {
            *i += 1;
        }
    };
    while i < s.len() {
        while i < s.len() && matches!(s[i], b' ' | b'\t' | b',') {
            i += 1;
        }
        let start = i;
        while i < s.len() && !matches!(s[i], b' ' | b'\t' | b',' | b'=' | b'"') {
            i += 1;
        }
        let token = &header[start..i];
        skip_ws(&mut i);
        if i < s.len() && s[i] == b'=' && !token.is_empty() {
            i += 1;
            skip_ws(&mut i);
            let value = if i < s.len() && s[i] == b'"' {
                read_quoted(header, &mut i)
            } else {
                let vstart = i;
                while i < s.len() && !matches!(s[i], b' ' | b'\t' | b',') {
                    i += 1;
                }
                header[vstart..i].to_string()
            };
            if let Some(c) = out.last_mut() {
                c.params.push((token.to_ascii_lowercase(), value));
            }
        } else if !token.is_empty() {
            out.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: Vec::new(),
            });
        } else if i < s.len() && s[i] == b'"' {
            // A stray quoted string: skip all of it, not just its opening quote.
            read_quoted(header, &mut i);
        } else if i < s.len() {
            // A stray `=`: step over it so the loop always advances.
            i += 1;
        }
    }
    out
}

/// Read a quoted-string starting at the opening quote; leaves `i` after the closing quote.
fn read_quoted(src: &str, i: &mut usize) -> String {
    let mut value = String::new();
    let mut chars = src[*i + 1..].char_indices();
    let base = *i + 1;
    while let Some((off, c)) = chars.next() {
        match c {
            '"' => {
                *i = base + off + 1;
                return value;
            }
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            c => value.push(c),
        }
    }
    *i = src.len();
    value
}

/// Credentials presented on one request.
pub(crate) enum Auth {
    Basic { username: String, password: Secret },
    Bearer(Secret),
}

impl Auth {
    pub(crate) fn header_value(&self) -> Result<HeaderValue, RegistryError> {
        let raw = match self {
            Self::Basic { username, password } => {
                let pair = format!("{username}:{}", password.expose());
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }
            Self::Bearer(token) => format!("Bearer {}", token.expose()),
        };
        let mut value = HeaderValue::from_str(&raw).map_err(|_| {
            RegistryError::InvalidResponse("token has characters not allowed in a header".into())
        })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// The token request URL: the challenge's realm (http or https only) plus `service` and one `scope` parameter
/// per space-separated scope; `fallback_scope` when the challenge names none.
pub(crate) fn token_url(challenge: &Challenge, fallback_scope: &str) -> Result<Url, RegistryError> {
    let realm = challenge.param("realm").unwrap_or_default();
    let mut url = Url::parse(realm).map_err(|_| {
        RegistryError::InvalidResponse("Bearer challenge without a valid realm URL".into())
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(RegistryError::InvalidResponse(format!(
            "token realm scheme `{}` is not http(s)",
            url.scheme()
        )));
    }
    {
        let mut query = url.query_pairs_mut();
        if let Some(service) = challenge.param("service") {
            query.append_pair("service", service);
        }
        let scopes = challenge
            .param("scope")
            .filter(|s| !s.is_empty())
            .unwrap_or(fallback_scope);
        for s in scopes.split(' ').filter(|s| !s.is_empty()) {
            query.append_pair("scope", s);
        }
    }
    Ok(url)
}

/// The registry password goes to a plain-http realm only when the registry itself is plain http.
pub(crate) fn may_send_credentials(base: &Url, realm: &Url) -> bool {
    realm.scheme() == "https" || base.scheme() == "http"
}

/// Every challenge in every `WWW-Authenticate` header of a 401.
pub(crate) fn challenges(headers: &HeaderMap) -> Vec<Challenge> {
    headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_www_authenticate)
        .collect()
}

/// The token endpoint's answer: `token` or `access_token`, and `expires_in` seconds.
#[derive(Debug, Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// A bearer token and how long it may be used.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: Secret,
    pub lifetime: Duration,
}

/// Parse a token response body. `None` when it carries no usable token.
pub fn parse_token_response(body: &[u8]) -> Option<IssuedToken> {
    let r: TokenResponse = serde_json::from_slice(body).ok()?;
    let token = r
        .token
        .filter(|t| !t.is_empty())
        .or(r.access_token.filter(|t| !t.is_empty()))?;
    let lifetime = match r.expires_in {
        Some(s) if s > 0 => Duration::from_secs(s).min(MAX_TOKEN_LIFETIME),
        _ => DEFAULT_TOKEN_LIFETIME,
    };
    Some(IssuedToken {
        token: Secret::new(token),
        lifetime,
    })
}

/// Bearer tokens per scope (`repository:<name>:pull`, `registry:catalog:*`), kept until shortly before expiry.
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, (Secret, Instant)>>,
}

impl TokenCache {
    /// A still-valid token for `scope`.
    pub fn get(&self, scope: &str) -> Option<Secret> {
        self.get_at(scope, Instant::now())
    }

    /// Remember `token` for `scope`, expiring a little before `lifetime` ends.
    pub fn insert(&self, scope: &str, token: IssuedToken) {
        self.insert_at(scope, token, Instant::now());
    }

    /// [`Self::get`] with the clock injected.
    fn get_at(&self, scope: &str, now: Instant) -> Option<Secret> {
        let mut map = self.lock();
        match map.get(scope) {
            Some((token, until)) if now < *until => Some(token.clone()),
            Some(_) => {
                map.remove(scope);
                None
            }
            None => None,
        }
    }

    fn insert_at(&self, scope: &str, token: IssuedToken, now: Instant) {
        let margin = EXPIRY_MARGIN.min(token.lifetime / 5);
        let until = now + token.lifetime.saturating_sub(margin);
        self.lock().insert(scope.to_string(), (token.token, until));
    }

    /// Forget the token for `scope` (the registry rejected it).
    pub fn remove(&self, scope: &str) {
        self.lock().remove(scope);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Secret, Instant)>> {
        // A panic while holding this lock cannot leave the map inconsistent (single insert/remove).
        match self.entries.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_distribution_bearer_challenge_is_parsed_with_commas_inside_quotes() {
        let h = r#"Bearer realm="https://auth.example.test/token",service="registry.example.test",scope="repository:team/app:pull,push""#;
        let c = parse_www_authenticate(h);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.example.test/token"));
        assert_eq!(c[0].param("service"), Some("registry.example.test"));
        assert_eq!(c[0].param("scope"), Some("repository:team/app:pull,push"));
    }

    #[test]
    fn several_challenges_in_one_header_are_split_and_schemes_lower_cased() {
        let h = r#"Basic realm="Registry Realm", BEARER Realm="https://a/token", error="invalid_token""#;
        let c = parse_www_authenticate(h);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("Registry Realm"));
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("REALM"), Some("https://a/token"));
        assert_eq!(c[1].param("error"), Some("invalid_token"));
    }

    #[test]
    fn escaped_quotes_unquoted_values_and_spaces_around_equals_are_handled() {
        let h = r#"Bearer realm = "https://a/t?x=\"y\"" , service=reg.example , scope="""#;
        let c = parse_www_authenticate(h);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].param("realm"), Some(r#"https://a/t?x="y""#));
        assert_eq!(c[0].param("service"), Some("reg.example"));
        assert_eq!(c[0].param("scope"), Some(""));
    }

    #[test]
    fn malformed_challenges_do_not_panic_and_yield_what_is_readable() {
        for h in [
            "",
            ",,,",
            "=",
            "\"",
            "Bearer realm=\"unterminated",
            "Bearer =x",
            "=\"a\" Basic",
        ] {
            let _ = parse_www_authenticate(h);
        }
        let c = parse_www_authenticate("Bearer realm=\"unterminated, scope=x");
        assert_eq!(c[0].param("realm"), Some("unterminated, scope=x"));
        let c = parse_www_authenticate("=\"a\" Basic");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "basic");
    }

    #[test]
    fn the_token_url_keeps_the_realm_query_and_adds_service_and_each_scope() {
        let c = &parse_www_authenticate(
            r#"Bearer realm="https://auth.test/token?account=x",service="reg",scope="repository:a/b:pull repository:c/d:pull""#,
        )[0];
        let url = token_url(c, "unused").unwrap();
        assert_eq!(
            url.as_str(),
            "https://auth.test/token?account=x&service=reg&scope=repository%3Aa%2Fb%3Apull&scope=repository%3Ac%2Fd%3Apull"
        );
        let c = &parse_www_authenticate(r#"Bearer realm="http://auth.test/t""#)[0];
        assert_eq!(
            token_url(c, "registry:catalog:*").unwrap().as_str(),
            "http://auth.test/t?scope=registry%3Acatalog%3A*"
        );
        for bad in [
            r#"Bearer realm="file:///etc/passwd""#,
            r#"Bearer service="x""#,
            r#"Bearer realm="not a url""#,
        ] {
            let c = &parse_www_authenticate(bad)[0];
            assert_eq!(
                token_url(c, "s").unwrap_err().metric_label(),
                "invalid_response",
                "{bad}"
            );
        }
    }

    #[test]
    fn token_responses_accept_token_or_access_token_and_default_the_lifetime() {
        let t = parse_token_response(br#"{"token":"abc","expires_in":300}"#).unwrap();
        assert_eq!(t.token.expose(), "abc");
        assert_eq!(t.lifetime, Duration::from_secs(300));
        let t = parse_token_response(br#"{"access_token":"xyz"}"#).unwrap();
        assert_eq!(t.token.expose(), "xyz");
        assert_eq!(t.lifetime, DEFAULT_TOKEN_LIFETIME);
        let t = parse_token_response(br#"{"token":"","access_token":"z","expires_in":0}"#).unwrap();
        assert_eq!(t.token.expose(), "z");
        assert_eq!(t.lifetime, DEFAULT_TOKEN_LIFETIME);
        assert!(parse_token_response(br#"{"expires_in":5}"#).is_none());
        assert!(parse_token_response(b"not json").is_none());
    }

    #[test]
    fn cached_tokens_expire_shortly_before_their_lifetime_ends() {
        let cache = TokenCache::default();
        let t0 = Instant::now();
        let token = |s: &str, secs| IssuedToken {
            token: Secret::new(s),
            lifetime: Duration::from_secs(secs),
        };
        cache.insert_at("repository:a/b:pull", token("t", 60), t0);
        cache.insert_at("repository:a/short:pull", token("s", 5), t0);
        let at = |secs| t0 + Duration::from_secs(secs);
        assert_eq!(
            cache.get_at("repository:a/b:pull", t0).unwrap().expose(),
            "t"
        );
        assert!(cache.get_at("repository:a/c:pull", t0).is_none());
        assert!(cache.get_at("repository:a/b:pull", at(49)).is_some());
        assert!(cache.get_at("repository:a/b:pull", at(51)).is_none());
        // Dropped once expired, even when asked about an earlier instant afterwards.
        assert!(cache.get_at("repository:a/b:pull", t0).is_none());
        // A 5 s token keeps 4 s of its life (the margin is at most a fifth of the lifetime).
        assert!(cache.get_at("repository:a/short:pull", at(3)).is_some());
        assert!(cache.get_at("repository:a/short:pull", at(4)).is_none());
        cache.insert_at("repository:a/b:pull", token("t2", 60), t0);
        cache.remove("repository:a/b:pull");
        assert!(cache.get_at("repository:a/b:pull", t0).is_none());
    }

    #[test]
    fn a_token_is_never_printed_by_debug() {
        let t = parse_token_response(br#"{"token":"very-secret-token"}"#).unwrap();
        assert!(!format!("{t:?}").contains("very-secret-token"));
    }
}
