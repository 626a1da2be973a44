//! The layering, by figment: built-in defaults (the structs' `Default`s, through
//! `#[serde(default)]`) → the TOML file → `OXIDP_*` environment variables, and the
//! translation of figment's errors into `configuration key <key>: <problem>`.

use std::path::Path;

use figment::error::{Actual, Kind};
use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::{Config, ConfigError};
use crate::domain::Cidr;

/// The prefix of every configuration variable.
const ENV_PREFIX: &str = "OXIDP_";

/// How figment names the environment layer; errors from it name variables.
const ENV_SOURCE: &str = "OXIDP_* environment variables";

/// The environment variable for a key: `session.idle_timeout_secs` → `OXIDP_SESSION__IDLE_TIMEOUT_SECS`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "__").to_uppercase())
}

/// The `OXIDP_*` variables as a figment layer: `OXIDP_SECTION__KEY` is `section.key`.
/// Values stay strings (a secret such as `123…` is never read as a number); numbers,
/// booleans and lists are read from them on extraction (`extract_lossy`, `cidr_list`).
struct Environment {
    vars: Vec<(String, String)>,
}

impl Environment {
    /// Keeps the `OXIDP_*` variables except `OXIDP_CONFIG` (the file, not a setting);
    /// a name that cannot be a key (lowercase, empty `__` segments) is unknown.
    fn new(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let vars: Vec<_> = vars
            .into_iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX) && name != "OXIDP_CONFIG")
            .collect();
        for (name, _) in &vars {
            let well_formed = name[ENV_PREFIX.len()..].split("__").all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            });
            if !well_formed {
                return Err(Self::unknown(name));
            }
        }
        Ok(Self { vars })
    }

    fn unknown(name: &str) -> ConfigError {
        ConfigError::new(name, "unknown setting (see `oxidp --help` and the README)")
    }

    /// Maps an extraction error to the key at fault. A variable that names no
    /// setting is reported by its own name; a bad value by its dotted key.
    fn explain(&self, error: &figment::Error) -> ConfigError {
        let key = error.path.join(".");
        let name = env_name(&key);
        let below = format!("{name}__");
        if let Some((var, _)) = self.vars.iter().find(|(var, _)| var.starts_with(&below)) {
            return Self::unknown(var);
        }
        if matches!(error.kind, Kind::UnknownField(..)) {
            return Self::unknown(&name);
        }
        ConfigError::new(key, problem(&error.kind))
    }
}

impl Provider for Environment {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENV_SOURCE)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        fn insert(dict: &mut Dict, path: &[&str], value: &str) {
            match path {
                [] => {}
                [leaf] => {
                    dict.insert((*leaf).to_owned(), Value::from(value.to_owned()));
                }
                [section, rest @ ..] => {
                    let entry = dict
                        .entry((*section).to_owned())
                        .or_insert_with(|| Value::from(Dict::new()));
                    if !matches!(entry, Value::Dict(..)) {
                        // `OXIDP_X` and `OXIDP_X__Y` both set: `X` is no section, and
                        // the error will name `OXIDP_X__Y`.
                        *entry = Value::from(Dict::new());
                    }
                    if let Value::Dict(_, inner) = entry {
                        insert(inner, rest, value);
                    }
                }
            }
        }
        let mut dict = Dict::new();
        for (name, value) in &self.vars {
            let key = name[ENV_PREFIX.len()..].to_ascii_lowercase();
            insert(&mut dict, &key.split("__").collect::<Vec<_>>(), value);
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// What is wrong with a value, without echoing anything that could be a secret:
/// a secret accepts any string, so only values found where a string belongs
/// (numbers, booleans) are summarised by their kind.
fn problem(kind: &Kind) -> String {
    match kind {
        Kind::InvalidType(found @ Actual::Str(_), expected) => format!("expected {expected}, found {found}"),
        Kind::InvalidType(found, expected) => {
            let found = match found {
                Actual::Bool(_) => "a boolean",
                Actual::Unsigned(_) | Actual::Signed(_) | Actual::Float(_) => "a number",
                Actual::Seq => "a list",
                Actual::Map => "a table",
                _ => "another kind of value",
            };
            format!("expected {expected}, found {found}")
        }
        Kind::UnknownVariant(found, expected) => {
            format!("`{found}` is not one of `{}`", expected.join("`, `"))
        }
        other => other.to_string(),
    }
}

/// `login.trusted_proxies`: a TOML list of addresses and networks, or one string
/// with commas between them (as the environment gives it).
pub(super) fn cidr_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<Cidr>, D::Error> {
    struct List;
    impl<'de> serde::de::Visitor<'de> for List {
        type Value = Vec<Cidr>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list of IP addresses or CIDRs, or one string of them separated by commas")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            text.split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|p| p.parse().map_err(E::custom))
                .collect()
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut items: A) -> Result<Self::Value, A::Error> {
            let mut list = Vec::new();
            while let Some(item) = items.next_element::<String>()? {
                list.push(item.parse().map_err(serde::de::Error::custom)?);
            }
            Ok(list)
        }
    }
    deserializer.deserialize_any(List)
}

impl Config {
    /// Loads defaults, then the TOML file if given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// As `load`, with the environment passed in (tests).
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        // Defaults are the structs' `Default`s (`#[serde(default)]`), so a layer
        // only holds what it sets.
        let mut layers = Figment::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::new("--config", format!("cannot read {}: {e}", path.display())))?;
            // figment reports a syntax error by line; name the key on it instead.
            if let Err(e) = text.parse::<toml::Table>() {
                let key = e
                    .span()
                    .map(|span| toml_key_at(&text, span.start))
                    .unwrap_or_else(|| "--config".to_owned());
                return Err(ConfigError::new(key, e.message().to_owned()));
            }
            layers = layers.merge(Toml::string(&text));
        }
        let env = Environment::new(env)?;
        let config: Config = layers.merge(&env).extract_lossy().map_err(|error| {
            let from_env = error.metadata.as_ref().is_some_and(|m| m.name == ENV_SOURCE);
            if from_env {
                return env.explain(&error);
            }
            // List positions (`login.trusted_proxies.0`) are not keys.
            let key: Vec<&str> = error
                .path
                .iter()
                .map(String::as_str)
                .filter(|part| part.parse::<usize>().is_err())
                .collect();
            let key = if key.is_empty() {
                "--config".to_owned()
            } else {
                key.join(".")
            };
            match &error.kind {
                Kind::UnknownField(_, expected) => ConfigError::new(
                    key,
                    format!("unknown setting (expected one of `{}`)", expected.join("`, `")),
                ),
                kind => ConfigError::new(key, problem(kind)),
            }
        })?;
        config.validate()?;
        Ok(config)
    }
}

/// Finds the dotted key whose value starts near `offset` in a TOML text, so a
/// type error in the file names the key rather than a byte position.
fn toml_key_at(text: &str, offset: usize) -> String {
    let mut section = String::new();
    let mut found = String::from("--config");
    let mut position = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with('[') && trimmed.ends_with(']') {
            section = trimmed.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
        } else if let Some((key, _)) = trimmed.split_once('=') {
            let key = key.trim();
            found = if section.is_empty() {
                key.to_owned()
            } else {
                format!("{section}.{key}")
            };
        }
        position += line.len();
        if position > offset {
            break;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use secrecy::ExposeSecret;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Every key, found by asking figment which fields each section accepts (all
    /// sections deny unknown fields): probing `section.zz_probe` lists the
    /// section's fields; probing a key that is no section fails otherwise.
    fn every_key() -> Vec<String> {
        fn fields(section: &str) -> Option<&'static [&'static str]> {
            let probe = env_name(&format!("{section}zz_probe"));
            let layer = Environment::new([(probe, "1".to_owned())]).unwrap();
            match Figment::from(layer).extract_lossy::<Config>().unwrap_err().kind {
                Kind::UnknownField(_, expected) => Some(expected),
                _ => None,
            }
        }
        let mut keys = Vec::new();
        for top in fields("").unwrap() {
            match fields(&format!("{top}.")) {
                Some(inner) => keys.extend(inner.iter().map(|key| format!("{top}.{key}"))),
                None => keys.push((*top).to_owned()),
            }
        }
        keys
    }

    #[test]
    fn every_key_has_an_environment_name_in_the_cli_help() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut help = std::fs::read_to_string(root.join("src/main.rs")).unwrap();
        for file in std::fs::read_dir(root.join("src/cli")).unwrap() {
            help.push_str(&std::fs::read_to_string(file.unwrap().path()).unwrap_or_default());
        }
        let keys = every_key();
        assert!(keys.len() > 70, "{keys:?}");
        assert!(keys.contains(&"login.trusted_proxies".to_owned()) && keys.contains(&"pepper".to_owned()));
        for key in keys {
            assert!(help.contains(&env_name(&key)), "{key} is missing from `oxidp --help`");
        }
    }

    #[test]
    fn environment_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oxidp.toml");
        std::fs::write(
            &path,
            "issuer = \"https://id.example.com\"\n[session]\nidle_timeout_secs = 900\n",
        )
        .unwrap();
        let config = Config::load_from(Some(&path), env(&[("OXIDP_SESSION__IDLE_TIMEOUT_SECS", "600")])).unwrap();
        assert_eq!(config.issuer, "https://id.example.com");
        assert_eq!(config.session.idle_timeout_secs, 600);
    }

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oxidp.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn each_layer_overrides_the_one_before_key_by_key() {
        let (_dir, path) = file(
            "[session]\nidle_timeout_secs = 900\nwarn_before_secs = 120\n[login]\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
        );
        let config = Config::load_from(
            Some(&path),
            env(&[
                ("OXIDP_SESSION__WARN_BEFORE_SECS", "60"),
                ("OXIDP_LOGIN__TRUSTED_PROXIES", "192.168.0.1, 2001:db8::/32,"),
                ("OXIDP_SESSION__SINGLE_SESSION", "true"),
                ("OXIDP_CONFIG", "/ignored/here.toml"),
            ]),
        )
        .unwrap();
        // Default, untouched by either layer.
        assert_eq!(config.session.absolute_timeout_secs, 12 * 3600);
        assert_eq!(config.login.ip_burst, 20);
        // The file over the default.
        assert_eq!(config.session.idle_timeout_secs, 900);
        // The environment over the file and over the default.
        assert_eq!(config.session.warn_before_secs, 60);
        assert!(config.session.single_session);
        let proxies: Vec<String> = config.login.trusted_proxies.iter().map(Cidr::to_string).collect();
        assert_eq!(proxies, ["192.168.0.1/32", "2001:db8::/32"]);
        // Parsed once, here: the network test works on the loaded value.
        assert!(config.login.trusted_proxies[1].contains("2001:db8::7".parse().unwrap()));
        let file_only = Config::load_from(Some(&path), env(&[])).unwrap();
        let proxies: Vec<String> = file_only.login.trusted_proxies.iter().map(Cidr::to_string).collect();
        assert_eq!(proxies, ["10.0.0.0/8"]);
        let empty = Config::load_from(Some(&path), env(&[("OXIDP_LOGIN__TRUSTED_PROXIES", "")])).unwrap();
        assert!(
            empty.login.trusted_proxies.is_empty(),
            "an empty variable clears the list"
        );
    }

    #[test]
    fn unknown_keys_are_named_where_they_were_written() {
        for name in [
            "OXIDP_BENCH_DATABASE_URL",
            "OXIDP_SESSION__IDLE_TIMEOUT_MINUTES",
            "OXIDP_NOPE__DEEPER__STILL",
            "OXIDP_ISSUER__HOST",
            "OXIDP_SESSION",
            "OXIDP_session__idle_timeout_secs",
            "OXIDP_SESSION____IDLE",
            "OXIDP_",
        ] {
            let err = Config::load_from(None, env(&[(name, "1")])).unwrap_err();
            if name == "OXIDP_SESSION" {
                // A section given a value: named as the key it is.
                assert_eq!(err.key, "session", "{err}");
                continue;
            }
            assert_eq!(err.key, name, "{err}");
            assert!(err.to_string().contains("unknown setting"), "{err}");
        }
        let (_dir, path) = file("issuer = \"http://localhost:8080\"\n[session]\nidle_timeout_minutes = 5\n");
        let err = Config::load_from(Some(&path), env(&[])).unwrap_err();
        assert_eq!(err.key, "session.idle_timeout_minutes");
        assert!(
            err.message.contains("idle_timeout_secs"),
            "lists what is accepted: {err}"
        );
        let (_dir, path) = file("bench_database_url = \"x\"\n");
        assert_eq!(
            Config::load_from(Some(&path), env(&[])).unwrap_err().key,
            "bench_database_url"
        );
        let (_dir, path) = file("[sessions]\nidle_timeout_secs = 5\n");
        assert_eq!(Config::load_from(Some(&path), env(&[])).unwrap_err().key, "sessions");
    }

    #[test]
    fn malformed_values_are_named_by_their_key() {
        for (name, value, key) in [
            ("OXIDP_ARGON2__MEMORY_KIB", "lots", "argon2.memory_kib"),
            ("OXIDP_ARGON2__MEMORY_KIB", "-5", "argon2.memory_kib"),
            ("OXIDP_HTTP__WORKERS", "1.5", "http.workers"),
            ("OXIDP_SESSION__SINGLE_SESSION", "maybe", "session.single_session"),
            ("OXIDP_WEBAUTHN__ENABLED", "", "webauthn.enabled"),
            (
                "OXIDP_LOGIN__TRUSTED_PROXIES",
                "10.0.0.0/8,example.com",
                "login.trusted_proxies",
            ),
            ("OXIDP_LOGIN__TRUSTED_PROXIES", "10.0.0.0/33", "login.trusted_proxies"),
        ] {
            let err = Config::load_from(None, env(&[(name, value)])).unwrap_err();
            assert_eq!(err.key, key, "{name}={value}: {err}");
            assert!(
                err.to_string().starts_with(&format!("configuration key `{key}`: ")),
                "{err}"
            );
        }
        let err =
            Config::load_from(None, env(&[("OXIDP_LOGIN__TRUSTED_PROXIES", "10.0.0.1,example.com")])).unwrap_err();
        assert!(
            err.message.contains("`example.com` is not an IP address or CIDR"),
            "{err}"
        );
        for (text, key) in [
            ("[argon2]\nmemory_kib = \"lots\"\n", "argon2.memory_kib"),
            ("[argon2]\nmemory_kib = lots\n", "argon2.memory_kib"),
            (
                "[login]\ntrusted_proxies = [\"10.0.0.0/8\", 7]\n",
                "login.trusted_proxies",
            ),
            (
                "[login]\ntrusted_proxies = [\"10.0.0.0/8\", \"nope\"]\n",
                "login.trusted_proxies",
            ),
            ("[commerce]\nintrospection = \"sometimes\"\n", "commerce.introspection"),
            ("issuer = [\"x\"]\n", "issuer"),
        ] {
            let (_dir, path) = file(text);
            let err = Config::load_from(Some(&path), env(&[])).unwrap_err();
            assert_eq!(err.key, key, "{text}: {err}");
        }
        let missing = Path::new("/nonexistent/oxidp.toml");
        assert_eq!(Config::load_from(Some(missing), env(&[])).unwrap_err().key, "--config");
    }

    #[test]
    fn secrets_stay_strings_and_are_never_printed() {
        let digits = "12345678901234567890123456789012345";
        let listish = "[not, a, list] but thirty-two characters";
        let config = Config::load_from(
            None,
            env(&[
                ("OXIDP_PEPPER", digits),
                ("OXIDP_KEY_ENCRYPTION_SECRET", listish),
                ("OXIDP_ADMIN__INITIAL_PASSWORD", "true"),
                ("OXIDP_METRICS__TOKEN", "0000000000000000"),
            ]),
        )
        .unwrap();
        assert_eq!(config.pepper.as_ref().unwrap().expose_secret(), digits);
        assert_eq!(config.key_encryption_secret.as_ref().unwrap().expose_secret(), listish);
        assert_eq!(config.admin.initial_password.as_ref().unwrap().expose_secret(), "true");
        assert_eq!(
            config.metrics.token.as_ref().unwrap().expose_secret(),
            "0000000000000000"
        );
        let debug = format!("{config:?}");
        for secret in [digits, listish, "0000000000000000"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        // A secret of the wrong type in the file: its value is not echoed.
        let (_dir, path) = file(&format!("pepper = {digits}\n"));
        let err = Config::load_from(Some(&path), env(&[])).unwrap_err();
        assert_eq!(err.key, "pepper");
        assert!(!err.to_string().contains(digits), "{err}");
    }

    #[test]
    fn errors_name_the_key() {
        let err = Config::load_from(None, env(&[("OXIDP_SESSION__IDLE_TIMEOUT_SECS", "soon")])).unwrap_err();
        assert_eq!(err.key, "session.idle_timeout_secs");
        let err = Config::load_from(None, env(&[("OXIDP_ISSUER", "http://id.example.com")])).unwrap_err();
        assert_eq!(err.key, "issuer");
        let err = Config::load_from(None, env(&[("OXIDP_NOPE", "1")])).unwrap_err();
        assert_eq!(err.key, "OXIDP_NOPE");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oxidp.toml");
        std::fs::write(&path, "[argon2]\nmemory_kib = \"lots\"\n").unwrap();
        let err = Config::load_from(Some(&path), env(&[])).unwrap_err();
        assert_eq!(err.key, "argon2.memory_kib");
        std::fs::write(&path, "[session]\nidle_timeout_minutes = 5\n").unwrap();
        let err = Config::load_from(Some(&path), env(&[])).unwrap_err();
        assert!(err.to_string().contains("idle_timeout_minutes"), "{err}");
    }
}
