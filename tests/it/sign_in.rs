//! Signing in to the UI with a real OpenID provider (`oidc-provider`, see `oidc.rs`): the
//! authorization code flow with PKCE, server-side sessions with their cookie, CSRF rules and
//! timeouts, re-authentication when a policy wants a fresh sign-in, and the same provider as a
//! source of bearer identity tokens.

use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::harness::TestServer;
use super::oidc::{CLIENT_ID, Provider, WebClient, start_with_provider};

/// A pending two-stage request of alice's (dba, then security): the approvers sign in.
pub(super) async fn staged_request(server: &TestServer) -> String {
    let alice = server.dev_token("alice", &["oncall"], true);
    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some(&alice),
            json!({"action": "admin", "resource": "Database::\"orders\"", "reason": "migration 42"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["request_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_person_signs_in_with_the_provider_approves_and_signs_out() {
    let Some((server, provider)) = start_with_provider(
        "a_person_signs_in_with_the_provider_approves_and_signs_out",
        super::approvals::staged_pack(),
        |_| {},
    )
    .await
    else {
        return;
    };
    let methods: Value = server
        .get("/auth/methods", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(methods, json!({"sign_in": true, "paste_token": true}));
    let id = staged_request(&server).await;

    let mut erin = WebClient::default();
    provider.sync(&server);
    let next = format!("next=%2Fui%2F%23request%3D{id}");
    let (landed, visited) = erin.sign_in(&server, "erin", &next).await;
    assert_eq!(landed.status, StatusCode::OK, "{visited:?}");
    assert_eq!(
        erin.logins, 1,
        "the provider's login form was used: {visited:?}"
    );
    assert!(
        visited
            .last()
            .unwrap()
            .ends_with(&format!("/ui/#request={id}")),
        "{visited:?}"
    );
    let session_cookie = (erin.set_cookies.iter())
        .find(|c| c.starts_with("jitgate_session="))
        .unwrap();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=28800"] {
        assert!(session_cookie.contains(attribute), "{session_cookie}");
    }

    let (status, me) = erin.api(&server, "GET", "/v1/me", &[], None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["principal"], "User::\"erin\"");
    assert_eq!(me["groups"], json!(["Group::\"dba\""]));
    assert_eq!(me["via"], "session");
    assert!(me["auth_time"].as_u64().is_some(), "{me}");
    let csrf = me["csrf_token"].as_str().unwrap().to_owned();
    let started: Vec<_> = (server.store_events().await.into_iter())
        .filter(|e| e.kind == "session.started")
        .collect();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].subject.as_deref(), Some("User::\"erin\""));

    // From another page, even on the same site, the cookie approves nothing.
    let approve = format!("/v1/access-requests/{id}/approve");
    for headers in [
        vec![("origin", "http://127.0.0.1:1")],
        vec![("origin", "null")],
        vec![],
        vec![("x-csrf-token", "not-the-token")],
    ] {
        let (status, body) = erin
            .api(&server, "POST", &approve, &headers, Some(json!({})))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{headers:?}: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
    }
    let (_, seen) = erin
        .api(
            &server,
            "GET",
            &format!("/v1/access-requests/{id}"),
            &[],
            None,
        )
        .await;
    assert_eq!(seen["approvals"], json!([]), "{seen}");

    // From the UI's own origin (or with the CSRF token) the session approves as erin.
    let own = server.base.clone();
    let (status, body) = erin
        .api(
            &server,
            "POST",
            &approve,
            &[("origin", &own)],
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["approvals"][0]["approver"], "User::\"erin\"");
    assert_eq!(body["approvals"][0]["stage"], "dba");

    // Signing out ends the session for good, whatever the browser keeps.
    let kept = erin.session().unwrap().to_owned();
    let (status, _) = erin
        .api(
            &server,
            "POST",
            "/auth/logout",
            &[("x-csrf-token", &csrf)],
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    erin.cookies.insert("jitgate_session".into(), kept);
    let (status, body) = erin.api(&server, "GET", "/v1/me", &[], None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(server.count_events("session.ended").await, 1);
}

#[tokio::test]
async fn a_sign_in_finishes_once_and_only_in_the_browser_that_began_it() {
    let Some((server, provider)) = start_with_provider(
        "a_sign_in_finishes_once_and_only_in_the_browser_that_began_it",
        super::TempPack::shipped(),
        |_| {},
    )
    .await
    else {
        return;
    };
    let callback = format!("{}/auth/callback", server.base);
    provider.sync(&server);
    let mut browser = WebClient::default();
    let (_, visited) = browser
        .follow(
            &format!("{}/auth/login?next=//evil.example/", server.base),
            "erin",
            Some(&callback),
        )
        .await;
    let returned = visited.last().unwrap().clone();
    assert!(returned.starts_with(&callback), "{visited:?}");

    // Another browser (an attacker's link, a stolen callback URL) cannot finish it.
    let mut other = WebClient::default();
    let answer = other.send("GET", &returned, None).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert!(answer.body.contains("sign_in_failed"), "{}", answer.body);
    assert!(other.session().is_none());

    // Its own browser does, once; the next sends it to the UI, not elsewhere.
    let answer = browser.send("GET", &returned, None).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert_eq!(answer.location.as_deref(), Some("/ui/"));
    assert!(browser.session().is_some());
    let session = browser.session().unwrap().to_owned();
    browser.cookies.insert("jitgate_login".into(), {
        let state = reqwest::Url::parse(&returned).unwrap();
        let state = state.query_pairs().find(|(k, _)| k == "state").unwrap().1;
        state.into_owned()
    });
    let replayed = browser.send("GET", &returned, None).await;
    assert_eq!(
        replayed.status,
        StatusCode::BAD_REQUEST,
        "{}",
        replayed.body
    );
    assert_eq!(
        browser.session(),
        Some(session.as_str()),
        "no second session"
    );

    // The provider's refusal is the person's to read, not a server error.
    let refused = WebClient::default()
        .send(
            "GET",
            &format!("{callback}?error=access_denied&error_description=no&state=x"),
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body.contains("access_denied"), "{}", refused.body);
}

/// Moves both clocks by `minutes`: the provider's id_tokens must be current when jitgate
/// checks them.
fn advance(server: &TestServer, provider: &mut Provider, minutes: u64) {
    server.clock.advance(Duration::from_secs(minutes * 60));
    provider.advance(minutes * 60);
}

/// `GET /v1/me`'s status for `client`'s session.
async fn me(server: &TestServer, client: &WebClient) -> StatusCode {
    client.api(server, "GET", "/v1/me", &[], None).await.0
}

#[tokio::test]
async fn sessions_end_when_idle_at_their_absolute_end_and_when_revoked() {
    let Some((server, mut provider)) = start_with_provider(
        "sessions_end_when_idle_at_their_absolute_end_and_when_revoked",
        super::TempPack::shipped(),
        |_| {},
    )
    .await
    else {
        return;
    };

    // Revoked: an administrator's subject revocation signs the person out at once.
    let mut revoked = WebClient::default();
    provider.sync(&server);
    revoked.sign_in(&server, "alice", "").await;
    assert_eq!(me(&server, &revoked).await, StatusCode::OK);
    let sam = server.dev_token("sam", &["security"], true);
    let (status, body) = server
        .post(
            "/v1/revocations",
            Some(&sam),
            json!({"subject": "User::\"alice\"", "reason": "left the company"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(me(&server, &revoked).await, StatusCode::UNAUTHORIZED);

    // Idle: each use keeps it alive for 30 minutes more.
    let mut idle = WebClient::default();
    provider.sync(&server);
    idle.sign_in(&server, "erin", "").await;
    advance(&server, &mut provider, 29);
    assert_eq!(me(&server, &idle).await, StatusCode::OK);
    advance(&server, &mut provider, 29);
    assert_eq!(me(&server, &idle).await, StatusCode::OK);
    advance(&server, &mut provider, 31);
    assert_eq!(me(&server, &idle).await, StatusCode::UNAUTHORIZED);

    // Absolute: busy or not, 8 hours after signing in it ends.
    let mut busy = WebClient::default();
    provider.sync(&server);
    busy.sign_in(&server, "erin", "").await;
    for _ in 0..23 {
        advance(&server, &mut provider, 20);
        assert_eq!(me(&server, &busy).await, StatusCode::OK);
    }
    advance(&server, &mut provider, 20);
    assert_eq!(me(&server, &busy).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_policy_that_wants_a_fresh_sign_in_gets_one() {
    let pack = super::approvals::staged_pack();
    pack.write(
        "policies/fresh.cedar",
        r#"
@id("approvals-need-a-sign-in-of-the-last-5-minutes")
forbid (principal, action == Action::"approve", resource)
when { context.auth_age_secs > 300 };
"#,
    );
    let Some((server, mut provider)) =
        start_with_provider("a_policy_that_wants_a_fresh_sign_in_gets_one", pack, |_| {}).await
    else {
        return;
    };
    let id = staged_request(&server).await;
    let mut erin = WebClient::default();
    provider.sync(&server);
    erin.sign_in(&server, "erin", "").await;
    let ten_minutes = Duration::from_secs(600);
    server.clock.advance(ten_minutes);
    provider.advance(ten_minutes.as_secs());

    let approve = format!("/v1/access-requests/{id}/approve");
    let own = server.base.clone();
    let (status, body) = erin
        .api(
            &server,
            "POST",
            &approve,
            &[("origin", &own)],
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "reauthentication_required", "{body}");
    assert_eq!(server.count_events("access.refused").await, 1);

    // max_age=0: the provider asks for the password again although its session is alive.
    assert_eq!(erin.logins, 1);
    let stale = erin.session().unwrap().to_owned();
    provider.sync(&server);
    erin.sign_in(&server, "erin", "max_age=0").await;
    assert_eq!(erin.logins, 2, "the login form was filled in again");
    // The new sign-in replaced the stale session; that one is gone on the server too.
    assert_ne!(erin.session(), Some(stale.as_str()));
    let mut old = WebClient::default();
    old.cookies.insert("jitgate_session".into(), stale);
    assert_eq!(me(&server, &old).await, StatusCode::UNAUTHORIZED);
    let (status, body) = erin
        .api(
            &server,
            "POST",
            &approve,
            &[("origin", &own)],
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The provider's id_tokens as bearer identity tokens of an `[[identity.issuers]]` entry whose
/// JWKS jitgate reads over http on loopback.
#[tokio::test]
async fn the_provider_is_a_source_of_bearer_identity_tokens() {
    let redirect_uri = "http://127.0.0.1:9/callback";
    let Some(provider) = Provider::start(
        "the_provider_is_a_source_of_bearer_identity_tokens",
        redirect_uri,
    ) else {
        return;
    };
    let issuer = provider.issuer_config(false);
    let server = TestServer::start(super::TempPack::shipped(), |config| {
        config.identity.issuers.push(issuer);
    })
    .await;
    let methods: Value = server
        .get("/auth/methods", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(methods["sign_in"], false, "no client_id: no sign-in");

    // The code flow a client of the provider runs, by hand.
    let verifier = "a-verifier-of-enough-length-for-rfc-7636-0123456789";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    let mut authorize = reqwest::Url::parse(&format!("{}/auth", provider.issuer)).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid")
        .append_pair("state", "s")
        .append_pair("nonce", "n")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let mut client = WebClient::default();
    let (_, visited) = client
        .follow(authorize.as_str(), "alice", Some(redirect_uri))
        .await;
    let returned = reqwest::Url::parse(visited.last().unwrap()).unwrap();
    let code = returned.query_pairs().find(|(k, _)| k == "code").unwrap().1;
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/token", provider.issuer))
        .basic_auth(CLIENT_ID, Some("test-client-secret-7f3a"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            serde_urlencoded::to_string([
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", verifier),
            ])
            .unwrap(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id_token = answer["id_token"].as_str().unwrap();

    let me: Value = server
        .get("/v1/me", Some(id_token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["principal"], "User::\"alice\"", "{me}");
    assert_eq!(me["groups"], json!(["Group::\"oncall\""]));
    assert_eq!(me["via"], "bearer");
    let (status, body) = server
        .post(
            "/v1/access-requests",
            Some(id_token),
            json!({"action": "read", "resource": "Database::\"orders-staging\"", "reason": "INC-9"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let claims = server
        .verify(body["access_token"].as_str().unwrap(), "db-proxy")
        .await;
    assert_eq!(claims.sub, "alice");
}
