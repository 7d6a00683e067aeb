//! API tokens (`[server.auth]`): who may check and who may administer.
//!
//! This module knows tokens and scopes, not protocols: [`crate::http::auth`]
//! decides which scope a path needs and answers 401/403, the gRPC listener
//! ([`crate::grpc`]) checks `ShouldRateLimit` calls, and both ask
//! [`Tokens::authorize`] with the `Authorization` value they were sent.
//!
//! Tokens are kept only as SHA-256 digests. A presented token is hashed and
//! compared with *every* configured digest in constant time (`subtle`), with
//! no early exit: the time an answer takes says nothing about how much of a
//! token was right, nor about the configured tokens' lengths (digests are all
//! 32 bytes) or which list matched.

use std::fmt;

use sha2::{Digest as _, Sha256};
use subtle::{Choice, ConstantTimeEq as _};

/// What a request needs, decided by its path (HTTP) or service (gRPC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// No token: health, metrics (unless `open_metrics = false`), the status page shell.
    Open,
    /// A check or an admin token: deciding requests (`/v1/check`, `/v1/notify`,
    /// `/json`, gRPC `ShouldRateLimit`).
    Check,
    /// An admin token: everything else.
    Admin,
}

impl Scope {
    /// The scope's name, as `WWW-Authenticate: Bearer scope="…"` and the docs say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Open => "open",
            Scope::Check => "check",
            Scope::Admin => "admin",
        }
    }
}

/// Why a request was refused. None of them says which tokens exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `Authorization: Bearer …` was sent (RFC 6750: 401 without an error code).
    #[error(
        "this endpoint needs an API token; send `Authorization: Bearer TOKEN` with a token from the server's [server.auth]"
    )]
    Missing,
    /// `Authorization` was sent more than once, or `Bearer` with no token or
    /// with a value that is not a token (RFC 6750 `invalid_request`, 400).
    #[error(
        "the Authorization header is malformed; send it once, as `Authorization: Bearer TOKEN` (one token, visible ASCII, no spaces)"
    )]
    Malformed,
    /// A bearer token that is not one of the configured ones (`invalid_token`, 401).
    #[error("the bearer token is not valid; send a token from the server's [server.auth]")]
    Invalid,
    /// A valid check token on an admin path (`insufficient_scope`, 403).
    #[error(
        "this token may only check (POST /v1/check, POST /v1/notify, POST /json); this endpoint needs an admin token"
    )]
    InsufficientScope,
}

impl Refusal {
    /// The RFC 6750 error code, when there is one.
    pub fn error_code(self) -> Option<&'static str> {
        match self {
            Refusal::Missing => None,
            Refusal::Malformed => Some("invalid_request"),
            Refusal::Invalid => Some("invalid_token"),
            Refusal::InsufficientScope => Some("insufficient_scope"),
        }
    }
}

/// A SHA-256 digest of one token.
type TokenDigest = [u8; 32];

/// The configured tokens, as digests. Cheap to share (`Arc`) between the
/// HTTP middleware and the gRPC service ([`crate::grpc::Authorize`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens {
    check: Vec<TokenDigest>,
    admin: Vec<TokenDigest>,
    open_metrics: bool,
}

/// Never the digests: a log line of the config shows only how many there are.
impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("check", &self.check.len())
            .field("admin", &self.admin.len())
            .field("open_metrics", &self.open_metrics)
            .finish()
    }
}

fn digest(token: &[u8]) -> TokenDigest {
    Sha256::digest(token).into()
}

/// Whether `digest` is one of `set`, looking at every entry whatever matched.
fn any_equal(set: &[TokenDigest], digest: &TokenDigest) -> Choice {
    set.iter()
        .fold(Choice::from(0), |found, d| found | d.ct_eq(digest))
}

impl Tokens {
    /// The token sets (plain tokens, hashed here and then dropped by the caller).
    pub fn new<T: AsRef<[u8]>>(check: &[T], admin: &[T], open_metrics: bool) -> Tokens {
        Tokens {
            check: check.iter().map(|t| digest(t.as_ref())).collect(),
            admin: admin.iter().map(|t| digest(t.as_ref())).collect(),
            open_metrics,
        }
    }

    /// Whether `GET /metrics` is open (`open_metrics`, default true) or needs
    /// an admin token.
    pub fn open_metrics(&self) -> bool {
        self.open_metrics
    }

    /// Whether the `Authorization` values a request carried (all of them:
    /// more than one is refused) grant `needed`.
    pub fn authorize<'v>(
        &self,
        mut authorization: impl Iterator<Item = &'v [u8]>,
        needed: Scope,
    ) -> Result<(), Refusal> {
        if needed == Scope::Open {
            return Ok(());
        }
        let Some(value) = authorization.next() else {
            return Err(Refusal::Missing);
        };
        if authorization.next().is_some() {
            return Err(Refusal::Malformed);
        }
        let token = bearer(value)?;
        let presented = digest(token);
        // Both sets in full, whatever the scope needed, so the time taken
        // does not say which set (if any) the token is in.
        let admin = any_equal(&self.admin, &presented);
        let check = any_equal(&self.check, &presented);
        let granted = match needed {
            Scope::Admin => admin,
            _ => admin | check,
        };
        if bool::from(granted) {
            Ok(())
        } else if bool::from(check) {
            Err(Refusal::InsufficientScope)
        } else {
            Err(Refusal::Invalid)
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` value. The scheme is
/// case-insensitive (RFC 9110 §11.1); a value in another scheme (`Basic …`)
/// is no bearer token at all, so it is answered as [`Refusal::Missing`].
fn bearer(value: &[u8]) -> Result<&[u8], Refusal> {
    const SCHEME: &[u8] = b"bearer";
    let is_bearer = value.len() >= SCHEME.len()
        && value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME)
        && value.get(SCHEME.len()).is_none_or(|b| *b == b' ');
    if !is_bearer {
        return Err(Refusal::Missing);
    }
    let token = value[SCHEME.len()..].trim_ascii();
    if token.is_empty() || !token.iter().all(u8::is_ascii_graphic) {
        return Err(Refusal::Malformed);
    }
    Ok(token)
}

/// Whether `token` can be sent as a bearer token at all: 1 or more visible
/// ASCII characters (what [`Tokens::authorize`] accepts from a client).
pub fn is_sendable(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(&["check-1", "check-2"], &["admin-1"], true)
    }

    #[rstest]
    #[case::open_needs_nothing(&[], Scope::Open, Ok(()))]
    #[case::missing(&[], Scope::Check, Err(Refusal::Missing))]
    #[case::other_scheme(&["Basic Y2hlY2stMQ=="], Scope::Check, Err(Refusal::Missing))]
    #[case::scheme_only(&["Bearer"], Scope::Check, Err(Refusal::Malformed))]
    #[case::scheme_and_blank(&["Bearer   "], Scope::Check, Err(Refusal::Malformed))]
    #[case::two_words(&["Bearer check-1 x"], Scope::Check, Err(Refusal::Malformed))]
    #[case::twice(&["Bearer check-1", "Bearer check-1"], Scope::Check, Err(Refusal::Malformed))]
    #[case::prefix_scheme(&["Bearerx check-1"], Scope::Check, Err(Refusal::Missing))]
    #[case::wrong(&["Bearer check-3"], Scope::Check, Err(Refusal::Invalid))]
    #[case::a_prefix_of_a_token(&["Bearer check-"], Scope::Check, Err(Refusal::Invalid))]
    #[case::check_checks(&["Bearer check-2"], Scope::Check, Ok(()))]
    #[case::lower_case_scheme(&["bearer check-1"], Scope::Check, Ok(()))]
    #[case::admin_checks(&["Bearer admin-1"], Scope::Check, Ok(()))]
    #[case::admin_administers(&["Bearer admin-1"], Scope::Admin, Ok(()))]
    #[case::check_does_not_administer(&["Bearer check-1"], Scope::Admin, Err(Refusal::InsufficientScope))]
    #[case::wrong_on_admin(&["Bearer nope"], Scope::Admin, Err(Refusal::Invalid))]
    fn authorize(
        #[case] sent: &[&str],
        #[case] needed: Scope,
        #[case] expected: Result<(), Refusal>,
    ) {
        let got = tokens().authorize(sent.iter().map(|s| s.as_bytes()), needed);
        assert_eq!(got, expected);
    }

    #[test]
    fn debug_shows_counts_not_digests() {
        let shown = format!("{:?}", tokens());
        assert_eq!(shown, "Tokens { check: 2, admin: 1, open_metrics: true }");
    }
}
