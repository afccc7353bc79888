//! `Link: <...>; rel="next"` pagination for `/v2/_catalog` and `tags/list` (RFC 8288).
//!
//! A next link is resolved against the configured base URL and refused when it points at another scheme,
//! host or port: pagination must never turn the client into a fetcher of registry-chosen URLs (SPEC §1).

use url::Url;

use super::RegistryError;

/// One link value: its target and parameters (names lower-cased, values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkValue {
    pub target: String,
    pub params: Vec<(String, String)>,
}

impl LinkValue {
    fn has_rel(&self, rel: &str) -> bool {
        self.params
            .iter()
            .filter(|(k, _)| k == "rel")
            .any(|(_, v)| {
                v.split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case(rel))
            })
    }
}

/// Parse one `Link` header value; malformed parts are skipped.
pub(crate) fn parse_link(header: &str) -> Vec<LinkValue> {
    let mut out = Vec::new();
    let mut rest = header;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        let Some(after_lt) = rest.strip_prefix('<') else {
            return out;
        };
        let Some(end) = after_lt.find('>') else {
            return out;
        };
        let mut link = LinkValue {
            target: after_lt[..end].trim().to_string(),
            params: Vec::new(),
        };
        rest = &after_lt[end + 1..];
        while let Some(after_semi) = rest.trim_start().strip_prefix(';') {
            let p = after_semi.trim_start();
            let name_end = p.find(['=', ';', ',']).unwrap_or(p.len());
            let name = p[..name_end].trim().to_ascii_lowercase();
            rest = &p[name_end..];
            let mut value = String::new();
            if let Some(v) = rest.strip_prefix('=') {
                let v = v.trim_start();
                if let Some(q) = v.strip_prefix('"') {
                    let close = q.find('"').unwrap_or(q.len());
                    value = q[..close].to_string();
                    rest = q.get(close + 1..).unwrap_or("");
                } else {
                    let stop = v.find([';', ',']).unwrap_or(v.len());
                    value = v[..stop].trim().to_string();
                    rest = &v[stop..];
                }
            }
            link.params.push((name, value));
        }
        out.push(link);
        // Skip anything up to the next link value.
        match rest.find(',') {
            Some(comma) => rest = &rest[comma + 1..],
            None => return out,
        }
    }
}

/// The `rel="next"` target among all `Link` header values, if any.
pub(crate) fn next_link<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<String> {
    values
        .into_iter()
        .flat_map(parse_link)
        .find(|l| l.has_rel("next"))
        .map(|l| l.target)
}

/// Resolve a next link against `base`; refuse another scheme, host or port.
pub(crate) fn resolve_next(base: &Url, link: &str) -> Result<Url, RegistryError> {
    let url = base
        .join(link)
        .map_err(|e| RegistryError::InvalidResponse(format!("unparseable pagination link: {e}")))?;
    if url.origin() != base.origin() {
        return Err(RegistryError::InvalidResponse(format!(
            "pagination link to another origin refused: {}",
            url.origin().ascii_serialization()
        )));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_distribution_next_link_is_found() {
        let h = r#"</v2/_catalog?last=b&n=2>; rel="next""#;
        assert_eq!(next_link([h]).as_deref(), Some("/v2/_catalog?last=b&n=2"));
    }

    #[test]
    fn next_is_picked_among_several_links_and_parameters() {
        let h = r#"<https://r.test/v2/x/tags/list?last=a>; title="a, b"; rel=prev, <https://r.test/v2/x/tags/list?last=c&n=5> ; type="x"; rel="NEXT last""#;
        assert_eq!(
            next_link([h]).as_deref(),
            Some("https://r.test/v2/x/tags/list?last=c&n=5")
        );
        assert_eq!(
            next_link(["<a>; rel=prev", "<b>; rel=next"]).as_deref(),
            Some("b")
        );
    }

    #[test]
    fn links_without_next_or_malformed_yield_nothing() {
        for h in [
            "",
            "garbage",
            "<unterminated; rel=next",
            "</x>; rel=prev",
            "</x>",
            "</x>; rel",
        ] {
            assert_eq!(next_link([h]), None, "{h}");
        }
    }

    #[test]
    fn next_links_resolve_against_the_base_and_other_origins_are_refused() {
        let base = Url::parse("https://reg.test:5000/prefix/").unwrap();
        let u = resolve_next(&base, "/v2/_catalog?last=b&n=2").unwrap();
        assert_eq!(u.as_str(), "https://reg.test:5000/v2/_catalog?last=b&n=2");
        let u = resolve_next(&base, "v2/_catalog?last=b").unwrap();
        assert_eq!(
            u.as_str(),
            "https://reg.test:5000/prefix/v2/_catalog?last=b"
        );
        for bad in [
            "https://evil.test/v2/_catalog",
            "http://reg.test:5000/v2/_catalog",
            "https://reg.test:6000/v2/_catalog",
            "//evil.test/v2/_catalog",
            "file:///etc/passwd",
        ] {
            assert!(resolve_next(&base, bad).is_err(), "{bad}");
        }
    }
}
