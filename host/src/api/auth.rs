//! Bearer-token access control. Tokens carry a role: `read` (serving and
//! listing), `write` (ingest and materialization, plus read) and `admin`
//! (registry and plugins, plus everything else). With no tokens configured
//! the API is open; the server then refuses to listen beyond loopback
//! (see `server::check_exposure`).

use super::error::ApiError;
use crate::model::Actor;
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Read,
    Write,
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "read" => Some(Role::Read),
            "write" => Some(Role::Write),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Configured tokens; empty = auth off.
#[derive(Clone, Default)]
pub struct Tokens(Arc<Vec<(Role, String)>>);

impl Tokens {
    pub fn new(pairs: &[(String, String)]) -> Tokens {
        Tokens(Arc::new(pairs.iter().filter_map(|(r, t)| Some((Role::parse(r)?, t.clone()))).collect()))
    }

    fn role_of(&self, token: &str) -> Option<Role> {
        // Compare every token in full so timing does not reveal prefixes.
        let mut found = None;
        for (role, t) in self.0.iter() {
            if constant_time_eq(t.as_bytes(), token.as_bytes()) {
                found = found.max(Some(*role));
            }
        }
        found
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The role a request needs, from its method and path.
pub fn required_role(method: &Method, path: &str) -> Option<Role> {
    if matches!(path, "/healthz" | "/readyz" | "/openapi.json" | "/health") {
        return None;
    }
    let read_posts = ["/v1/features/online", "/v1/features/historical", "/get-online-features", "/v1/enrich"];
    let write_posts =
        ["/v1/features/write", "/v1/materialize", "/push", "/write-to-online-store", "/v1/enrich/feedback"];
    Some(match *method {
        Method::GET | Method::HEAD if path.starts_with("/v1/audit") => Role::Admin,
        Method::GET | Method::HEAD => Role::Read,
        Method::POST if read_posts.contains(&path) => Role::Read,
        Method::POST if write_posts.contains(&path) => Role::Write,
        Method::POST if path.starts_with("/v1/sources/") && path.ends_with("/rows") => Role::Write,
        _ => Role::Admin,
    })
}

/// Checks the bearer token against the route's role and hands the
/// handlers the [`Actor`] (in the request's extensions) for the audit trail.
pub async fn require_token(State(tokens): State<Tokens>, mut req: Request, next: Next) -> Response {
    req.extensions_mut().insert(Actor::anonymous());
    if tokens.0.is_empty() {
        return next.run(req).await;
    }
    let Some(needed) = required_role(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let found = presented.and_then(|t| Some((tokens.role_of(t)?, t)));
    match found {
        None => ApiError::new("unauthorized", "missing or invalid bearer token").into_response(),
        Some((role, _)) if role < needed => {
            ApiError::new("forbidden", "this token's role may not do that").into_response()
        }
        Some((role, token)) => {
            let actor = Actor::token(role.name(), token);
            req.extensions_mut().insert(actor);
            next.run(req).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_the_contract() {
        assert_eq!(required_role(&Method::GET, "/healthz"), None);
        assert_eq!(required_role(&Method::POST, "/v1/features/online"), Some(Role::Read));
        assert_eq!(required_role(&Method::POST, "/v1/sources/prices/rows"), Some(Role::Write));
        assert_eq!(required_role(&Method::POST, "/v1/materialize"), Some(Role::Write));
        assert_eq!(required_role(&Method::PUT, "/v1/transforms/x/versions/1.0.0"), Some(Role::Admin));
        assert_eq!(required_role(&Method::PUT, "/v1/entities/ticker"), Some(Role::Admin));
        assert_eq!(required_role(&Method::POST, "/v1/transforms/x/shadow"), Some(Role::Admin));
        assert_eq!(required_role(&Method::DELETE, "/v1/transforms/x/shadow"), Some(Role::Admin));
        assert_eq!(required_role(&Method::GET, "/v1/transforms/x/shadow"), Some(Role::Read));
        assert_eq!(required_role(&Method::POST, "/v1/transforms/x/promote"), Some(Role::Admin));
        assert_eq!(required_role(&Method::PUT, "/v1/transforms/x/limits"), Some(Role::Admin));
        let t = Tokens::new(&[("read".into(), "r".into()), ("admin".into(), "a".into())]);
        assert_eq!(t.role_of("a"), Some(Role::Admin));
        assert_eq!(t.role_of("r"), Some(Role::Read));
        assert_eq!(t.role_of("x"), None);
    }
}
