//! Docker pull-spec parsing as library-go `pkg/image/reference.Parse` does it (the classic distribution
//! grammar, then registry/namespace/name split), plus the `allowedRegistriesForImport` whitelist check.
//! Deliberately independent of the crate under test: a shared parser would hide a shared bug.

use std::sync::LazyLock;

use regex::Regex;

const NAME_TOTAL_LENGTH_MAX: usize = 255;

static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    let alnum = "[a-z0-9]+";
    let sep = "(?:[._]|__|[-]*)";
    let comp = format!("{alnum}(?:{sep}{alnum})*");
    let hostcomp = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
    let host = format!(r"{hostcomp}(?:\.{hostcomp})*(?::[0-9]+)?");
    let name = format!("(?:{host}/)?{comp}(?:/{comp})*");
    let tag = r"[\w][\w.-]{0,127}";
    let digest = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}";
    Regex::new(&format!("^({name})(?::({tag}))?(?:@({digest}))?$")).expect("reference grammar")
});

/// `DockerImageReference` from library-go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerRef {
    pub registry: String,
    pub namespace: String,
    pub name: String,
    pub tag: String,
    pub id: String,
}

/// The old `digest.Digest.Validate`: known algorithm and matching hex length.
fn validate_digest(d: &str) -> Result<(), &'static str> {
    let Some((alg, hex)) = d.split_once(':') else {
        return Err("invalid checksum digest format");
    };
    let hex_ok = !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit());
    let alg_ok = !alg.is_empty()
        && alg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_+.".contains(&b));
    if !hex_ok || !alg_ok {
        return Err("invalid checksum digest format");
    }
    let want = match alg {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err("unsupported digest algorithm"),
    };
    if hex.len() != want {
        return Err("invalid checksum digest length");
    }
    Ok(())
}

/// Whether `s` is a valid digest (what `Exact()` uses to choose `@` over `:` for the ID).
pub fn is_digest(s: &str) -> bool {
    validate_digest(s).is_ok()
}

/// library-go `reference.Parse`; the error text is what ends up in a 422 cause.
pub fn parse(spec: &str) -> Result<DockerRef, String> {
    let Some(caps) = REFERENCE.captures(spec) else {
        if spec.is_empty() {
            return Err("repository name must have at least one component".into());
        }
        if REFERENCE.is_match(&spec.to_lowercase()) {
            return Err("invalid reference format: repository name must be lowercase".into());
        }
        return Err("invalid reference format".into());
    };
    let full = caps.get(1).map_or("", |m| m.as_str());
    if full.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(format!(
            "repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        ));
    }
    let tag = caps.get(2).map_or("", |m| m.as_str());
    let digest = caps.get(3).map_or("", |m| m.as_str());
    if !digest.is_empty() {
        validate_digest(digest)?;
    }
    let mut r = DockerRef::default();
    let slash = full.find('/');
    let registry_only = slash.is_none() && (full.contains('.') || full.starts_with("localhost"));
    let name_only = (slash.is_none() && !registry_only)
        || slash.is_some_and(|i| !full[..i].contains([':', '.']) && &full[..i] != "localhost");
    if registry_only {
        // Go: ref.Registry = namedRef.String(), i.e. the whole spec including tag/digest.
        r.registry = spec.to_string();
    } else if name_only {
        r.name = full.to_string();
    } else if let Some(i) = slash {
        r.registry = full[..i].to_string();
        r.name = full[i + 1..].to_string();
    }
    if !registry_only {
        r.tag = tag.to_string();
    }
    r.id = digest.to_string();
    if let Some(i) = r.name.find('/') {
        r.namespace = r.name[..i].to_string();
        r.name = r.name[i + 1..].to_string();
    }
    Ok(r)
}

impl DockerRef {
    /// `Exact()`: only the fields that are set, ID as `@digest` when it parses as one.
    pub fn exact(&self) -> String {
        let mut s = self.registry.clone();
        if !s.is_empty() {
            s.push('/');
        }
        if !self.namespace.is_empty() {
            s.push_str(&self.namespace);
            s.push('/');
        }
        let name = if self.name.is_empty() {
            String::new()
        } else if !self.id.is_empty() {
            let sep = if is_digest(&self.id) { '@' } else { ':' };
            format!("{}{sep}{}", self.name, self.id)
        } else if !self.tag.is_empty() {
            format!("{}:{}", self.name, self.tag)
        } else {
            self.name.clone()
        };
        if name.is_empty() {
            return if self.registry.is_empty() {
                String::new()
            } else {
                s
            };
        }
        s + &name
    }

    /// `RegistryHostPort(false)`: Docker Hub defaults, port 443 when none is given.
    fn registry_host_port(&self) -> (String, String) {
        let registry = match self.registry.as_str() {
            "" => "docker.io".to_string(),
            "docker.io" | "index.docker.io" => "registry-1.docker.io".to_string(),
            other => other.to_string(),
        };
        match registry.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.to_string()),
            None => (registry, "443".to_string()),
        }
    }
}

/// `filepath.Match`-style glob (`*`, `?`), as `IsWildcardMatch` uses for whitelist entries.
fn glob(value: &str, pattern: &str) -> bool {
    let mut re = String::from("^");
    for c in pattern.chars() {
        match c {
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    Regex::new(&re).is_ok_and(|r| r.is_match(value))
}

/// `registryWhitelister.AdmitDockerImageReference` with the secure transport. `allowed` holds
/// `host[:port]` globs in configuration order; the internal registry is always admitted first.
pub fn admit(
    r: &DockerRef,
    allowed: &[String],
    internal_registry: Option<&str>,
) -> Result<(), String> {
    let mut list: Vec<(String, String)> = Vec::new();
    let push_front = |entry: &str, list: &mut Vec<(String, String)>| {
        let hp = match entry.split_once(':') {
            Some((h, p)) => (h.to_string(), p.to_string()),
            None => (entry.to_string(), "443".to_string()),
        };
        if !list.contains(&hp) {
            list.insert(0, hp);
        }
    };
    for entry in allowed.iter().rev() {
        push_front(entry, &mut list);
    }
    if let Some(internal) = internal_registry {
        push_front(internal, &mut list);
    }
    let (host, port) = r.registry_host_port();
    let matches = |h: &str| list.iter().any(|(gh, gp)| glob(h, gh) && glob(&port, gp));
    let docker_hub_alias = host == "index.docker.io" || host == "registry-1.docker.io";
    if (docker_hub_alias && matches("docker.io")) || matches(&host) {
        return Ok(());
    }
    let hostname = if r.registry.is_empty() {
        format!("{host}:{port}")
    } else {
        r.registry.clone()
    };
    if list.is_empty() {
        return Err(format!(
            "registry {hostname:?} not allowed by empty whitelist"
        ));
    }
    let shown: Vec<String> = list
        .iter()
        .map(|(h, p)| format!("{:?}", format!("{h}:{p}")))
        .collect();
    if shown.len() <= 5 {
        Err(format!(
            "registry {hostname:?} not allowed by whitelist: {}",
            shown.join(", ")
        ))
    } else {
        let more = shown.len() - 4;
        Err(format!(
            "registry {hostname:?} not allowed by whitelist: {}, and {more} more ...",
            shown[..4].join(", ")
        ))
    }
}
