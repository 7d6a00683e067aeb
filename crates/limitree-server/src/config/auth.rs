//! The `[server.auth]` section: API tokens, off unless the section is there.
//!
//! ```toml
//! [server.auth]
//! check = ["${LIMITREE_CHECK_TOKEN}"]          # may decide: /v1/check, /v1/notify, /json, gRPC
//! admin = ["file:/run/secrets/limitree-admin"] # may also use every other /v1/… endpoint
//! open_metrics = true                          # false: GET /metrics needs an admin token
//! ```
//!
//! Each token is named, never written: `"${VAR}"` (an environment variable)
//! or `"file:PATH"` (a file holding it; PATH relative to the working
//! directory, like every path in the config; one trailing newline is
//! dropped). A token in the config text would be shared with the file, so it
//! is refused, and no message ever repeats what was written there.
//!
//! `limitree serve --check-token REF --admin-token REF` (each repeatable)
//! take the same references ([`AuthFlags`]): how a deployment whose config
//! is an envoyproxy/ratelimit YAML file (which has no `[server.auth]`) turns
//! tokens on. With a TOML config they add to `[server.auth]`'s lists.
//!
//! Parsing only reads the names; [`AuthConfig::resolve`]
//! reads the variables and files when the server starts (and in `config
//! check`), and an unset variable or unreadable file is an error there,
//! placed at its key like any other config error.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use limitree::policy::PolicyError;
use serde::{Deserialize, Deserializer};

use super::fields::Section;
use crate::auth::{Tokens, is_sendable};

/// Largest token file read: a token is at most a few hundred bytes, and a
/// mistaken `file:/dev/zero` must not fill memory.
pub const MAX_TOKEN_FILE_BYTES: u64 = 4_096;

/// The `[server.auth]` section, as named in the file (no token values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Tokens that may decide.
    pub check: Vec<TokenRef>,
    /// Tokens that may decide and administer.
    pub admin: Vec<TokenRef>,
    /// Whether `GET /metrics` stays open (default) or needs an admin token.
    pub open_metrics: bool,
    /// The config file, for messages.
    source: String,
}

/// Where one token comes from, and where it was named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRef {
    /// The variable or file.
    pub from: TokenSource,
    named: Named,
}

/// Where a [`TokenRef`] was named, for the message when it cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Named {
    /// In `[server.auth]`: at this line and column, under this key.
    InFile {
        location: Option<(usize, usize)>,
        place: String,
    },
    /// By this command-line flag (`--check-token`).
    ByFlag(&'static str),
}

/// `"${VAR}"` or `"file:PATH"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// An environment variable.
    Env(String),
    /// A file holding the token.
    File(PathBuf),
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Env(var) => write!(f, "${{{var}}}"),
            TokenSource::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

/// `[server.auth]` as written. The lists are read by hand ([`TokenList`])
/// so that a value of the wrong type is reported without repeating it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    check: Option<TokenList>,
    admin: Option<TokenList>,
    open_metrics: Option<bool>,
}

/// A token list as written: the strings, or what it was instead.
#[derive(Debug)]
enum TokenList {
    Entries(Vec<Entry>),
    /// Not a list; what it was, in words ("a string", "a number").
    NotAList(&'static str),
}

/// One entry of a token list: a string, or what it was instead.
#[derive(Debug)]
enum Entry {
    Text(String),
    NotText(&'static str),
}

/// Accepts any value and says what kind it was, keeping only strings.
struct Kind;

impl<'de> serde::de::Visitor<'de> for Kind {
    type Value = Result<String, &'static str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Ok(v.to_owned()))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err("a number"))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Err("a list"))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(Err("a table"))
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match deserializer.deserialize_any(Kind)? {
            Ok(text) => Entry::Text(text),
            Err(kind) => Entry::NotText(kind),
        })
    }
}

impl<'de> Deserialize<'de> for TokenList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct List;
        impl<'de> serde::de::Visitor<'de> for List {
            type Value = TokenList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<TokenList, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = seq.next_element::<Entry>()? {
                    entries.push(entry);
                }
                Ok(TokenList::Entries(entries))
            }
            fn visit_str<E>(self, _: &str) -> Result<TokenList, E> {
                Ok(TokenList::NotAList("a string"))
            }
            fn visit_bool<E>(self, _: bool) -> Result<TokenList, E> {
                Ok(TokenList::NotAList("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<TokenList, E> {
                Ok(TokenList::NotAList("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<TokenList, E> {
                Ok(TokenList::NotAList("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<TokenList, E> {
                Ok(TokenList::NotAList("a number"))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<TokenList, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(TokenList::NotAList("a table"))
            }
        }
        deserializer.deserialize_any(List)
    }
}

/// The variable an example in a message names, per list.
fn example_var(list: &str) -> &'static str {
    if list == "admin" {
        "LIMITREE_ADMIN_TOKEN"
    } else {
        "LIMITREE_CHECK_TOKEN"
    }
}

/// Whether `name` can be an environment variable's name.
fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What one entry names, or why it names nothing; `flag` is the
/// command-line flag that gave it (`None`: the config file). Never repeats
/// the entry: it may be a token pasted by mistake.
fn token_source(text: &str, list: &str, flag: Option<&str>) -> Result<TokenSource, String> {
    let var = example_var(list);
    if let Some(name) = text.strip_prefix("${").and_then(|t| t.strip_suffix('}')) {
        return if is_var_name(name) {
            Ok(TokenSource::Env(name.to_owned()))
        } else {
            Err(format!(
                "the text between ${{ and }} is not a variable name (letters, digits and _, not starting with a digit); write e.g. \"${{{var}}}\""
            ))
        };
    }
    if let Some(path) = text.strip_prefix("file:") {
        return if path.is_empty() {
            Err(format!(
                "`file:` names no file; write e.g. \"file:/run/secrets/{}\"",
                var.to_ascii_lowercase().replace('_', "-")
            ))
        } else {
            Ok(TokenSource::File(PathBuf::from(path)))
        };
    }
    Err(match flag {
        None => format!(
            "a token must not be written in the config file (anyone who reads the file could use it); put it in an environment variable and write \"${{{var}}}\", or in a file and write \"file:PATH\""
        ),
        Some(flag) => format!(
            "a token must not be given on the command line (any user of the machine can read it in the process list, and shells keep it in their history); put it in an environment variable and pass {flag} '${{{var}}}' (quoted, so the shell does not expand it), or in a file and pass {flag} file:PATH"
        ),
    })
}

impl AuthConfig {
    /// Parses `[server.auth]` (read as part of `[server]`), pushing every
    /// problem to `errors`; `None` when there was one.
    pub(super) fn parse(
        raw: RawAuth,
        section: &Section<'_, '_>,
        errors: &mut Vec<String>,
    ) -> Option<AuthConfig> {
        let before = errors.len();
        let mut list = |name: &'static str, written: Option<TokenList>| -> Vec<TokenRef> {
            let key = format!("auth.{name}");
            let entries = match written {
                None => return Vec::new(),
                Some(TokenList::NotAList(kind)) => {
                    errors.push(section.error(
                        &key,
                        format!(
                            "expected a list, found {kind}; write {name} = [\"${{{}}}\"]",
                            example_var(name)
                        ),
                    ));
                    return Vec::new();
                }
                Some(TokenList::Entries(entries)) => entries,
            };
            let mut refs = Vec::new();
            for (i, entry) in entries.into_iter().enumerate() {
                let key = format!("{key}[{i}]");
                let parsed = match entry {
                    Entry::Text(text) => token_source(&text, name, None),
                    Entry::NotText(kind) => Err(format!(
                        "expected a string such as \"${{{}}}\", found {kind}",
                        example_var(name)
                    )),
                };
                match parsed {
                    Ok(from) => {
                        let (location, place) = section.place(&key);
                        refs.push(TokenRef {
                            from,
                            named: Named::InFile { location, place },
                        });
                    }
                    Err(e) => errors.push(section.error(&key, e)),
                }
            }
            refs
        };
        let check = list("check", raw.check);
        let admin = list("admin", raw.admin);
        if errors.len() == before && check.is_empty() && admin.is_empty() {
            errors.push(section.error(
                "auth",
                "names no token, so nothing but health and metrics could be used; list one in check = [\"${LIMITREE_CHECK_TOKEN}\"] or admin = [\"${LIMITREE_ADMIN_TOKEN}\"], or remove [server.auth] to run without tokens",
            ));
        }
        (errors.len() == before).then(|| AuthConfig {
            check,
            admin,
            open_metrics: raw.open_metrics.unwrap_or(true),
            source: section.source().to_owned(),
        })
    }

    /// The tokens, read from `env` and from their files: every variable that
    /// is unset or empty, and every file that cannot be read, is empty, or
    /// holds what cannot be a token, is an error naming its key (never the
    /// value).
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Tokens, Vec<String>> {
        let mut errors = Vec::new();
        let mut read = |refs: &[TokenRef]| -> Vec<String> {
            refs.iter()
                .filter_map(|r| match r.read(env) {
                    Ok(token) => Some(token),
                    Err(e) => {
                        errors.push(match &r.named {
                            Named::InFile { location, place } => {
                                PolicyError::located(&self.source, *location, place, e).to_string()
                            }
                            Named::ByFlag(flag) => format!("{flag} {}: {e}", r.from),
                        });
                        None
                    }
                })
                .collect()
        };
        let check = read(&self.check);
        let admin = read(&self.admin);
        if errors.is_empty() {
            Ok(Tokens::new(&check, &admin, self.open_metrics))
        } else {
            Err(errors)
        }
    }
}

/// `--check-token REF` and `--admin-token REF` (each repeatable), parsed:
/// the same references as `[server.auth]` takes (`${VAR}`, `file:PATH`),
/// read when the server starts like the file's. They add to the config's
/// `[server.auth]` lists, or stand for one (with `open_metrics = true`)
/// when the config has none (an envoyproxy/ratelimit YAML config never
/// does). Applied again to every reloaded file, with the other overrides,
/// so a reload sees the same tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthFlags {
    /// `--check-token`.
    pub check: Vec<TokenRef>,
    /// `--admin-token`.
    pub admin: Vec<TokenRef>,
}

impl AuthFlags {
    /// The flags' values as given; every one that names no token (a literal
    /// token, a bad `${…}`, an empty `file:`) is an error naming its flag,
    /// never repeating the value.
    pub fn parse(check: &[String], admin: &[String]) -> Result<AuthFlags, Vec<String>> {
        let mut errors = Vec::new();
        let mut refs = |list: &'static str, flag: &'static str, given: &[String]| {
            given
                .iter()
                .enumerate()
                .filter_map(|(i, text)| match token_source(text, list, Some(flag)) {
                    Ok(from) => Some(TokenRef {
                        from,
                        named: Named::ByFlag(flag),
                    }),
                    Err(e) => {
                        errors.push(format!("{flag} (value {}): {e}", i + 1));
                        None
                    }
                })
                .collect()
        };
        let flags = AuthFlags {
            check: refs("check", "--check-token", check),
            admin: refs("admin", "--admin-token", admin),
        };
        if errors.is_empty() {
            Ok(flags)
        } else {
            Err(errors)
        }
    }

    /// Adds the flags' tokens to `auth` (a config's `[server.auth]`), making
    /// one when there is none and a flag names a token.
    pub fn apply(&self, auth: &mut Option<AuthConfig>) {
        if self.check.is_empty() && self.admin.is_empty() {
            return;
        }
        let auth = auth.get_or_insert_with(|| AuthConfig {
            check: Vec::new(),
            admin: Vec::new(),
            open_metrics: true,
            source: "the command line".to_owned(),
        });
        auth.check.extend(self.check.iter().cloned());
        auth.admin.extend(self.admin.iter().cloned());
    }
}

impl TokenRef {
    fn read(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
        match &self.from {
            TokenSource::Env(var) => {
                let value = env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                    format!(
                        "${{{var}}} is not set (or is empty); set it where the server runs, e.g. export {var}=\"$(openssl rand -hex 32)\""
                    )
                })?;
                if is_sendable(&value) {
                    Ok(value)
                } else {
                    Err(format!(
                        "the value of ${{{var}}} cannot be a bearer token: it holds a space, a control or a non-ASCII character; use visible ASCII only (e.g. hex)"
                    ))
                }
            }
            TokenSource::File(path) => read_token_file(path),
        }
    }
}

/// The token in the file at `path`, without one trailing newline.
fn read_token_file(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_TOKEN_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read the token file {shown}: {e}"))?;
    if bytes.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(format!(
            "the token file {shown} is larger than {MAX_TOKEN_FILE_BYTES} bytes; it should hold one token"
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        format!("the token file {shown} is not text; it should hold one token in visible ASCII")
    })?;
    let token = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if token.is_empty() {
        return Err(format!(
            "the token file {shown} is empty; write the token into it"
        ));
    }
    if !is_sendable(token) {
        return Err(format!(
            "the token file {shown} holds a space, a control character, a non-ASCII character or more than one line; it should hold one token in visible ASCII"
        ));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use crate::config::Config;

    fn auth_errors(text: &str) -> Vec<String> {
        Config::from_toml_str(text, "c.toml").unwrap_err().0
    }

    /// Every message names the line, column and key, and none repeats the
    /// value written (it may be a token).
    #[rstest]
    #[case::literal_token(
        "[server.auth]\ncheck = [\"s3cr3t-literal\"]\n",
        "c.toml: line 2, column 10: [server.auth] check[0]: a token must not be written in the config file"
    )]
    #[case::literal_admin_token_names_the_admin_variable(
        "[server.auth]\ncheck = [\"${A}\"]\nadmin = [\"${B}\", \"s3cr3t-literal\"]\n",
        "c.toml: line 3, column 18: [server.auth] admin[1]: a token must not be written in the config file (anyone who reads the file could use it); put it in an environment variable and write \"${LIMITREE_ADMIN_TOKEN}\""
    )]
    #[case::a_string_not_a_list(
        "[server.auth]\ncheck = \"s3cr3t-literal\"\n",
        "c.toml: line 2, column 9: [server.auth] check: expected a list, found a string; write check = [\"${LIMITREE_CHECK_TOKEN}\"]"
    )]
    #[case::a_number_entry(
        "[server.auth]\ncheck = [12345678]\n",
        "c.toml: line 2, column 10: [server.auth] check[0]: expected a string such as \"${LIMITREE_CHECK_TOKEN}\", found a number"
    )]
    #[case::bad_variable_name(
        "[server.auth]\ncheck = [\"${1s3cr3t-literal}\"]\n",
        "c.toml: line 2, column 10: [server.auth] check[0]: the text between ${ and } is not a variable name"
    )]
    #[case::text_around_a_reference(
        "[server.auth]\ncheck = [\"s3cr3t-literal${A}\"]\n",
        "c.toml: line 2, column 10: [server.auth] check[0]: a token must not be written"
    )]
    #[case::empty_file(
        "[server.auth]\ncheck = [\"file:\"]\n",
        "c.toml: line 2, column 10: [server.auth] check[0]: `file:` names no file"
    )]
    #[case::no_tokens(
        "[server.auth]\nopen_metrics = false\n",
        "c.toml: line 1, column 1: [server] auth: names no token"
    )]
    #[case::unknown_key(
        "[server.auth]\nchecks = [\"${A}\"]\n",
        "c.toml: line 2, column 1: [server.auth] checks: unknown key `checks`; did you mean `check`?"
    )]
    fn bad_auth_sections_are_refused_without_echo(#[case] text: &str, #[case] expected: &str) {
        let errors = auth_errors(text);
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "{expected:?} not in {errors:#?}"
        );
        assert!(errors.iter().all(|e| !e.contains("s3cr3t")), "{errors:#?}");
    }

    #[test]
    fn references_resolve_from_the_environment_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin-token");
        std::fs::write(&file, "admin-from-file\n").unwrap();
        let text = format!(
            "[server]\nhttp = \"127.0.0.1:1\"\n[server.auth]\ncheck = [\"${{CHECK}}\"]\nadmin = [\"file:{}\"]\nopen_metrics = false\n",
            file.display()
        );
        let config = Config::from_toml_str(&text, "c.toml").unwrap();
        let auth = config.server.auth.as_ref().unwrap();
        assert!(!auth.open_metrics);
        let env = |var: &str| (var == "CHECK").then(|| "check-from-env".to_owned());
        let tokens = auth.resolve(&env).unwrap();
        let grant = |token: &str, scope| {
            tokens.authorize(std::iter::once(format!("Bearer {token}").as_bytes()), scope)
        };
        use crate::auth::{Refusal, Scope};
        assert_eq!(grant("check-from-env", Scope::Check), Ok(()));
        assert_eq!(
            grant("check-from-env", Scope::Admin),
            Err(Refusal::InsufficientScope)
        );
        // One trailing newline dropped; the newline itself is no part of it.
        assert_eq!(grant("admin-from-file", Scope::Admin), Ok(()));
        assert!(!tokens.open_metrics());
    }

    #[rstest]
    #[case::unset_variable(
        None,
        "c.toml: line 2, column 10: [server.auth] check[0]: ${T} is not set (or is empty); set it where the server runs"
    )]
    #[case::empty_variable(Some(""), "${T} is not set (or is empty)")]
    #[case::spaced_variable(Some("two words"), "the value of ${T} cannot be a bearer token")]
    fn bad_variables_are_named_not_shown(#[case] value: Option<&str>, #[case] expected: &str) {
        let config =
            Config::from_toml_str("[server.auth]\ncheck = [\"${T}\"]\n", "c.toml").unwrap();
        let env = |_: &str| value.map(str::to_owned);
        let errors = config.server.auth.unwrap().resolve(&env).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains(expected), "{errors:?}");
        assert!(!errors[0].contains("two words"), "{errors:?}");
    }

    /// `--check-token`/`--admin-token` take the references `[server.auth]`
    /// takes and refuse the rest naming the flag, never the value.
    #[rstest]
    #[case::literal_check_token(&["s3cr3t-literal"], &[], "--check-token (value 1): a token must not be given on the command line")]
    #[case::literal_admin_token_second(&[], &["${A}", "s3cr3t-literal"], "--admin-token (value 2): a token must not be given on the command line (any user of the machine can read it in the process list, and shells keep it in their history); put it in an environment variable and pass --admin-token '${LIMITREE_ADMIN_TOKEN}'")]
    #[case::bad_variable(&["${s3cr3t-literal}"], &[], "--check-token (value 1): the text between ${ and } is not a variable name")]
    #[case::empty_file(&[], &["file:"], "--admin-token (value 1): `file:` names no file")]
    fn bad_token_flags_are_refused_without_echo(
        #[case] check: &[&str],
        #[case] admin: &[&str],
        #[case] expected: &str,
    ) {
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let errors = super::AuthFlags::parse(&owned(check), &owned(admin)).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].starts_with(expected),
            "{expected:?} vs {errors:#?}"
        );
        assert!(!errors[0].contains("s3cr3t"), "{errors:#?}");
    }

    /// The flags add to `[server.auth]` (or stand for it), and a reference
    /// that cannot be read is reported by its flag.
    #[test]
    fn token_flags_add_to_the_config_and_resolve_like_it() {
        use crate::auth::Scope;
        let flags = super::AuthFlags::parse(&["${FLAG_CHECK}".to_owned()], &[]).unwrap();
        let grant = |tokens: &crate::auth::Tokens, token: &str, scope| {
            tokens.authorize(std::iter::once(format!("Bearer {token}").as_bytes()), scope)
        };
        let env = |var: &str| {
            Some(match var {
                "FLAG_CHECK" => "from-flag".to_owned(),
                "FILE_CHECK" => "from-file".to_owned(),
                _ => return None,
            })
        };
        let mut config =
            Config::from_toml_str("[server.auth]\ncheck = [\"${FILE_CHECK}\"]\n", "c.toml")
                .unwrap();
        flags.apply(&mut config.server.auth);
        let tokens = config.server.auth.as_ref().unwrap().resolve(&env).unwrap();
        assert_eq!(grant(&tokens, "from-flag", Scope::Check), Ok(()));
        assert_eq!(grant(&tokens, "from-file", Scope::Check), Ok(()));
        // No [server.auth] (a YAML config's case): the flags stand for it.
        let mut none = None;
        flags.apply(&mut none);
        let auth = none.unwrap();
        assert!(auth.open_metrics);
        assert_eq!(
            grant(&auth.resolve(&env).unwrap(), "from-flag", Scope::Check),
            Ok(())
        );
        let errors = auth.resolve(&|_| None).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("--check-token ${FLAG_CHECK}: ${FLAG_CHECK} is not set"),
            "{errors:?}"
        );
        // No flag: nothing changes.
        let mut untouched = None;
        super::AuthFlags::default().apply(&mut untouched);
        assert!(untouched.is_none());
    }

    #[rstest]
    #[case::missing(None, "cannot read the token file")]
    #[case::empty(Some(&b""[..]), "is empty; write the token into it")]
    #[case::only_a_newline(Some(&b"\n"[..]), "is empty")]
    #[case::two_lines(Some(&b"s3cr3t\nmore\n"[..]), "more than one line")]
    #[case::not_text(Some(&b"\xff\xfe"[..]), "is not text")]
    #[case::too_large(Some(&[b'a'; 5000][..]), "is larger than 4096 bytes")]
    fn bad_token_files_are_named(#[case] content: Option<&[u8]>, #[case] expected: &str) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        if let Some(content) = content {
            std::fs::write(&file, content).unwrap();
        }
        let text = format!("[server.auth]\nadmin = [\"file:{}\"]\n", file.display());
        let config = Config::from_toml_str(&text, "c.toml").unwrap();
        let errors = config.server.auth.unwrap().resolve(&|_| None).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = &errors[0];
        assert!(
            e.starts_with("c.toml: line 2, column 10: [server.auth] admin[0]: "),
            "{e}"
        );
        assert!(e.contains(&file.display().to_string()), "{e}");
        assert!(e.contains(expected), "{e}");
        assert!(!e.contains("s3cr3t"), "{e}");
    }
}
