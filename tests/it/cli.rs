//! `jitgate check` and `jitgate test`, run as a user runs them.

use std::path::Path;
use std::process::{Command, Output};

use super::{TempPack, repo};

fn jitgate(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jitgate"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn check(pack: &TempPack) -> (i32, String) {
    let out = jitgate(
        &[
            "check",
            "--policies",
            pack.policies().to_str().unwrap(),
            "--schemas",
            pack.schemas().to_str().unwrap(),
        ],
        repo(),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap(), text)
}

#[test]
fn check_passes_on_the_shipped_pack() {
    let out = jitgate(&["check"], repo());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("ok: 17 policies in 6 files, version "),
        "{stdout}"
    );
}

#[test]
fn check_reports_every_problem_with_file_and_line() {
    let pack = TempPack::shipped();
    // A syntax error.
    pack.write(
        "policies/syntax.cedar",
        "@id(\"broken\")\npermit (principal, action resource);\n",
    );
    // An unknown attribute.
    pack.edit(
        "policies/guardrails.cedar",
        "context.risk_score >= 70",
        "context.risk_scor >= 70",
    );
    // A duplicate @id across two files.
    pack.write(
        "policies/more/dup.cedar",
        "// a copy\n@id(\"sre-host-ssh\")\npermit (principal, action == Action::\"ssh\", resource);\n",
    );
    // A bad @ttl and @approval("0").
    pack.edit(
        "policies/databases.cedar",
        "@ttl(\"15m\")",
        "@ttl(\"15 fortnights\")",
    );
    pack.edit(
        "policies/databases.cedar",
        "@approval(\"2\")",
        "@approval(\"0\")",
    );
    // A missing @id.
    pack.write(
        "policies/anonymous.cedar",
        "\n\npermit (principal, action == Action::\"read\", resource);\n",
    );
    // Entities that do not match the schema.
    pack.edit("policies/entities.json", "\"role\": \"web\"", "\"role\": 7");
    // A policy without its `;`: reported where it ends, not at the next one.
    pack.write(
        "policies/semicolon.cedar",
        "@id(\"a\")\npermit (principal, action == Action::\"read\", resource)\n\n@id(\"b\")\npermit (principal, action == Action::\"read\", resource);\n",
    );

    let (code, out) = check(&pack);
    assert_eq!(code, 1, "{out}");
    let p = pack.policies();
    let p = p.display();
    for expected in [
        format!("{p}/syntax.cedar:2:27: unexpected token `resource`"),
        format!(
            "{p}/guardrails.cedar:7:8: for policy `deny-high-risk`, attribute `risk_scor` in context"
        ),
        "did you mean `risk_score`?".to_owned(),
        format!(
            "{p}/more/dup.cedar:2:1: duplicate @id(\"sre-host-ssh\"): also at {p}/hosts.cedar:4"
        ),
        format!(
            "{p}/databases.cedar:17:1: policy `oncall-db-read`: @ttl(\"15 fortnights\"): not a duration"
        ),
        format!(
            "{p}/databases.cedar:52:1: policy `dba-db-admin-approval`: @approval(\"0\"): must be a whole number"
        ),
        format!("{p}/anonymous.cedar:3:1: policy has no @id"),
        "entity does not conform to the schema".to_owned(),
        "`Host::\"web-1\"`".to_owned(),
        format!(
            "{p}/semicolon.cedar:2:55: missing `;` at the end of this policy (the next one starts at line 4)"
        ),
    ] {
        assert!(out.contains(&expected), "missing `{expected}` in:\n{out}");
    }
    assert!(
        out.contains("error: the pack is invalid (8 problems)"),
        "{out}"
    );
}

#[test]
fn check_refuses_annotation_typos_and_grants_without_scope() {
    let pack = TempPack::shipped();
    // Each would load silently before: a self-service production change, tokens without
    // their scope, tokens for the default audience.
    pack.edit(
        "policies/databases.cedar",
        "@approval(\"2\")",
        "@aproval(\"2\")",
    );
    pack.edit(
        "policies/databases.cedar",
        "@scope(\"db:read:{resource.id}\")",
        "@scopes(\"db:read:{resource.id}\")",
    );
    pack.edit("policies/databases.cedar", "@audience", "@audiance");
    pack.edit(
        "policies/hosts.cedar",
        "@ttl(\"10m\")",
        "@ttl(\"10m\")\n@owner(\"team-deploy\")\n@x_ticket(\"OPS-1\")",
    );
    // A granting permit must name its scopes; one for a reserved action need not.
    pack.write(
        "policies/extra.cedar",
        "@id(\"sre-ssh-no-scope\")\n@ttl(\"5m\")\npermit (principal in Group::\"sre\", action == Action::\"ssh\", resource);\n\
         @id(\"sre-ssh-explicitly-none\")\n@scope(\"\")\npermit (principal in Group::\"sre\", action == Action::\"ssh\", resource);\n\
         @id(\"sre-approve-more\")\npermit (principal in Group::\"sre\", action in [Action::\"approve\"], resource);\n",
    );

    let (code, out) = check(&pack);
    assert_eq!(code, 1, "{out}");
    let p = pack.policies();
    let p = p.display();
    for expected in [
        format!(
            "{p}/databases.cedar:52:1: policy `dba-db-admin-approval`: unknown annotation @aproval: did you mean `@approval`?"
        ),
        format!(
            "{p}/databases.cedar:16:1: policy `oncall-db-read`: unknown annotation @scopes: did you mean `@scope`?"
        ),
        format!(
            "{p}/databases.cedar:15:1: policy `oncall-db-read`: a permit that issues tokens needs @scope"
        ),
        format!(
            "{p}/databases.cedar:8:1: policy `staging-db-access`: unknown annotation @audiance: did you mean `@audience`?"
        ),
        format!(
            "{p}/hosts.cedar:40:1: policy `deployer-deploy`: unknown annotation @owner: jitgate reads @id, @scope"
        ),
        "put your own metadata under `@x_…` (e.g. `@x_owner`)".to_owned(),
        format!(
            "{p}/extra.cedar:1:1: policy `sre-ssh-no-scope`: a permit that issues tokens needs @scope(\"…\"); write @scope(\"\") if it grants no scopes"
        ),
    ] {
        assert!(out.contains(&expected), "missing `{expected}` in:\n{out}");
    }
    assert!(
        out.contains("error: the pack is invalid (6 problems)"),
        "{out}"
    );
}

#[test]
fn check_names_the_schema_file_of_a_schema_error() {
    let pack = TempPack::shipped();
    pack.write("schemas/extra.cedarschema", "entity Team in [Org];\n");
    let (code, out) = check(&pack);
    assert_eq!(code, 1);
    let expected = format!("{}/extra.cedarschema:1:", pack.schemas().display());
    assert!(out.contains(&expected) && out.contains("Org"), "{out}");
}

#[test]
fn check_fails_without_a_schema() {
    let pack = TempPack::shipped();
    std::fs::remove_file(pack.schemas().join("jitgate.cedarschema")).unwrap();
    let (code, out) = check(&pack);
    assert_eq!(code, 1);
    assert!(out.contains("no *.cedarschema files"), "{out}");
}

#[test]
fn test_passes_on_the_shipped_cases() {
    let out = jitgate(&["test"], repo());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let last = stdout.lines().last().unwrap();
    assert!(last.ends_with(" passed, 0 failed"), "{stdout}");
    assert!(
        !stdout.contains("note: no case is decided by"),
        "every policy is covered: {stdout}"
    );
}

#[test]
fn a_wrong_case_fails_with_expected_and_actual() {
    let pack = TempPack::shipped();
    pack.write(
        "wrong.toml",
        r#"
[[case]]
name = "deliberately wrong"
principal = 'User::"alice"'
groups = ['Group::"oncall"']
action = "read"
resource = 'Database::"orders"'
context = { mfa = true }
expect = "escalate"
ttl = "15m"
"#,
    );
    let out = jitgate(&["test", "wrong.toml"], pack.dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL wrong.toml: deliberately wrong"),
        "{stdout}"
    );
    assert!(
        stdout.contains("decision: expected escalate, actual allow"),
        "{stdout}"
    );
    assert!(stdout.contains("ttl: expected 15m, actual 5m"), "{stdout}");
    assert_eq!(
        stdout.lines().last(),
        Some("0 passed, 1 failed"),
        "{stdout}"
    );
}

#[test]
fn a_malformed_case_file_is_a_failure() {
    let pack = TempPack::shipped();
    pack.write(
        "bad.toml",
        "[[case]]\nname = \"typo\"\nprincipl = 'User::\"a\"'\n",
    );
    let out = jitgate(&["test", "bad.toml"], pack.dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("ERROR bad.toml") && stdout.contains("principl"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().last(), Some("0 passed, 1 failed"));
}

#[test]
fn a_misspelt_context_key_in_a_case_is_named() {
    let pack = TempPack::shipped();
    pack.write(
        "typo.toml",
        r#"[[case]]
name = "typo in the approve context"
principal = 'User::"dave"'
groups = ['Group::"dba"']
action = "approve"
resource = 'Database::"orders"'
context = { request_id = "r", requester = 'User::"a"', requested_action = "write", risk_score = 0, reason = "", stage = "default", auth_agee_secs = 60 }
expect = "allow"

[[case]]
name = "a client key the schema does not have"
principal = 'User::"alice"'
groups = ['Group::"oncall"']
action = "read"
resource = 'Database::"orders"'
context = { priority = "high" }
expect = "allow"
"#,
    );
    let out = jitgate(&["test", "typo.toml"], pack.dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains(
            "context key `auth_agee_secs` is not in the schema's context of action `approve`: did you mean `auth_age_secs`?"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("context key `priority` is not in the schema's context of action `read`"),
        "{stdout}"
    );
}

#[test]
fn entities_json_errors_carry_their_line() {
    let pack = TempPack::shipped();
    pack.edit(
        "policies/entities.json",
        r#"{ "uid": { "type": "Group", "id": "sre" }, "attrs": {},
    "parents": [{ "type": "Group", "id": "engineering" }] },"#,
        r#"{ "uid": { "type": "Group", "id": "sre" }, "attrs": {},
    "parents": [{ "type": "Grup", "id": "engineering" }] },"#,
    );
    let (code, out) = check(&pack);
    assert_eq!(code, 1);
    assert!(
        out.contains("entities.json:5:3: entity does not conform to the schema: `Group::\"sre\"`"),
        "{out}"
    );
}

#[test]
fn check_warns_about_over_broad_permits_and_policies_that_never_match() {
    let pack = TempPack::shipped();
    pack.write(
        "policies/lint.cedar",
        r#"// Reaches every action, approve and administer included.
@id("helpdesk-everything")
@scope("all")
permit (principal in Group::"helpdesk", action, resource);

// The `requestable` group does not hold approve: fine.
@id("helpdesk-requestable")
@scope("some")
permit (principal in Group::"helpdesk", action in Action::"requestable", resource in Environment::"staging");

// A typo in a resource: never matches.
@id("orders-typo")
@scope("db:read")
permit (principal, action == Action::"read", resource == Database::"ordrs");
"#,
    );
    let args = |deny: bool| {
        let mut args = vec![
            "check".to_owned(),
            "--policies".to_owned(),
            pack.policies().display().to_string(),
            "--schemas".to_owned(),
            pack.schemas().display().to_string(),
        ];
        if deny {
            args.push("--deny-warnings".into());
        }
        args
    };
    let run = |deny: bool| {
        let args = args(deny);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        jitgate(&args, repo())
    };
    let lenient = run(false);
    let said = String::from_utf8_lossy(&lenient.stderr);
    assert_eq!(lenient.status.code(), Some(0), "{said}");
    let p = pack.policies();
    let p = p.display();
    for expected in [
        format!(
            "warning: {p}/lint.cedar:2:1: policy `helpdesk-everything` permits Action::\"approve\" without naming it (it constrains no action)"
        ),
        format!(
            "warning: {p}/lint.cedar:2:1: policy `helpdesk-everything` permits Action::\"administer\" without naming it"
        ),
        format!(
            "warning: {p}/lint.cedar:12:1: policy `orders-typo` names the resource Database::\"ordrs\", which entities.json does not have: it can never match"
        ),
    ] {
        assert!(said.contains(&expected), "missing `{expected}` in:\n{said}");
    }
    assert!(!said.contains("helpdesk-requestable"), "{said}");
    assert_eq!(said.matches("warning:").count(), 3, "{said}");
    let strict = run(true);
    assert_eq!(strict.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&strict.stderr).contains("error: 3 warnings and --deny-warnings")
    );
}

#[test]
fn a_dangling_link_is_an_error_not_a_missing_file() {
    let pack = TempPack::shipped();
    std::os::unix::fs::symlink(
        "/nonexistent/guardrails.cedar",
        pack.policies().join("gone.cedar"),
    )
    .unwrap();
    let (code, out) = check(&pack);
    assert_eq!(code, 1);
    let expected = format!("{}/gone.cedar: cannot read", pack.policies().display());
    assert!(out.contains(&expected), "{out}");
}

/// `jitgate keys list` only looks: on a fresh data dir it creates nothing, and with a key of
/// another algorithm than the configured one it does not generate a new one.
#[test]
fn keys_list_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |args: &[&str], alg: &str| {
        Command::new(env!("CARGO_BIN_EXE_jitgate"))
            .args(args)
            .env("JITGATE_DATA_DIR", &data)
            .env("JITGATE_SIGNING_ALG", alg)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = run(&["keys", "list"], "ES256");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("no signing keys yet"));
    assert!(!data.exists(), "listing created the data dir");

    assert!(run(&["keys", "generate"], "ES256").status.success());
    let pems = || std::fs::read_dir(data.join("keys")).unwrap().count();
    assert_eq!(pems(), 1);
    let out = run(&["keys", "list"], "EdDSA");
    assert!(out.status.success(), "{out:?}");
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        listed.contains("ES256") && listed.contains("active"),
        "{listed}"
    );
    assert_eq!(pems(), 1, "listing generated a key: {listed}");
}

/// `jitgate test --config FILE` decides with the configuration's grant defaults: the shipped
/// case that expects `default_ttl` (5m) fails under a configuration whose `default_ttl` is 2m.
#[test]
fn test_with_a_config_uses_its_grant_defaults() {
    let pack = TempPack::shipped();
    let config = pack.dir.path().join("jitgate.toml");
    let write = |default_ttl: &str| {
        std::fs::write(
            &config,
            format!(
                "default_ttl = \"{default_ttl}\"\n[policy]\ndir = {:?}\nschemas = {:?}\n",
                pack.policies(),
                pack.schemas()
            ),
        )
        .unwrap();
    };
    write("5m");
    let out = jitgate(&["test", "--config", config.to_str().unwrap()], repo());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    write("2m");
    let out = jitgate(&["test", "--config", config.to_str().unwrap()], repo());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("oncall reads prod orders"), "{stdout}");
    assert!(stdout.contains("2m"), "{stdout}");
}

/// `jitgate audit verify` and `export` on a data dir without a database say so (exit 1) rather
/// than creating an empty database and calling its trail whole.
#[test]
fn audit_commands_refuse_a_missing_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for command in ["verify", "export"] {
        let out = Command::new(env!("CARGO_BIN_EXE_jitgate"))
            .args(["audit", command])
            .env("JITGATE_DATA_DIR", &data)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command}: {stderr}");
        assert!(stderr.contains("no database at"), "{command}: {stderr}");
        assert!(
            !data.join("jitgate.db").exists(),
            "{command} created a database"
        );
    }
}

/// A case names the stages it expects; `jitgate check` names a malformed `@stages` by
/// file:line.
#[test]
fn cases_check_stages_and_check_names_a_malformed_one() {
    let pack = TempPack::shipped();
    pack.write(
        "policies/stages.cedar",
        r#"@id("oncall-db-admin-in-stages")
@scope("db:admin:{resource.id}")
@stages("dba:1, security:2")
permit (principal in Group::"oncall", action == Action::"admin", resource in Environment::"prod");
"#,
    );
    pack.write(
        "stages.toml",
        r#"
[[case]]
name = "a schema change needs a DBA, then two from security"
principal = 'User::"alice"'
groups = ['Group::"oncall"']
action = "admin"
resource = 'Database::"orders"'
context = { mfa = true }
expect = "escalate"
approvals = 3
stages = ["dba:1", "security:2"]

[[case]]
name = "the stages in another order fail"
principal = 'User::"alice"'
groups = ['Group::"oncall"']
action = "admin"
resource = 'Database::"orders"'
context = { mfa = true }
expect = "escalate"
stages = ["security:2", "dba:1"]
"#,
    );
    let out = jitgate(&["test", "stages.toml"], pack.dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            r#"stages: expected ["security:2", "dba:1"], actual ["dba:1", "security:2"]"#
        ),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().last(),
        Some("1 passed, 1 failed"),
        "{stdout}"
    );

    pack.write(
        "policies/stages.cedar",
        r#"@id("oncall-db-admin-in-stages")
@scope("db:admin:{resource.id}")
@stages("dba:1, dba:2")
permit (principal in Group::"oncall", action == Action::"admin", resource in Environment::"prod");
"#,
    );
    let out = jitgate(&["check"], pack.dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("stages.cedar:3:1")
            && format!("{stdout}{stderr}").contains("stage `dba` is named twice"),
        "{stdout}{stderr}"
    );
}

/// A schema written before stages and fresh sign-ins loads, but `jitgate check` says that its
/// `approve` context would refuse every approval.
#[test]
fn check_warns_about_an_approve_context_that_refuses_every_approval() {
    let pack = TempPack::shipped();
    let schema = pack
        .read("schemas/jitgate.cedarschema")
        .replace("    stage: String,\n", "")
        .replace("    auth_age_secs: Long,\n", "");
    pack.write("schemas/jitgate.cedarschema", &schema);
    let out = jitgate(&["check"], pack.dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("the context of action `approve` does not take what jitgate sends")
            && stderr.contains("every approval will be refused")
            && stderr.contains("`stage`"),
        "{stdout}{stderr}"
    );
    // The shipped schema takes it: no such warning.
    let out = jitgate(&["check"], repo());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("context of action `approve`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn who_can_lists_groups_and_api_keys_and_the_reverse() {
    let pack = TempPack::shipped();
    pack.write(
        "jitgate.toml",
        &format!(
            "[[identity.api_keys]]\nname = \"deployer\"\nhash = \"sha256:{}\"\nprincipal = 'Service::\"deployer\"'\ngroups = ['Group::\"deployers\"']\n",
            "0".repeat(64)
        ),
    );
    let pack_args = [
        "--policies".to_owned(),
        pack.policies().display().to_string(),
        "--schemas".to_owned(),
        pack.schemas().display().to_string(),
        "--context".to_owned(),
        "mfa:=true".to_owned(),
        "--context".to_owned(),
        r#"time:={"hour": 10, "weekday": "tue"}"#.to_owned(),
    ];
    let run = |extra: &[&str]| {
        let mut args = vec!["who-can"];
        args.extend(pack_args.iter().map(String::as_str));
        args.extend(extra);
        let out = jitgate(&args, pack.dir.path());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let table = run(&[
        "--action",
        "deploy",
        "--resource",
        "Host::\"web-1\"",
        "--config",
        "jitgate.toml",
    ]);
    let row = |subject: &str| {
        table
            .lines()
            .find(|l| l.starts_with(subject))
            .unwrap_or_else(|| panic!("no `{subject}` in:\n{table}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        row("Service in Group::\"deployers\"").contains(" allow "),
        "{table}"
    );
    // The policy is for services: a person in the group may not deploy.
    assert!(
        row("User in Group::\"deployers\"").contains(" deny"),
        "{table}"
    );
    assert!(
        row("Service in Group::\"security\"").contains(" deny"),
        "{table}"
    );
    assert!(
        row("Service::\"deployer\" (API key deployer)").contains(" allow "),
        "{table}"
    );

    let json: serde_json::Value = serde_json::from_str(&run(&[
        "--principal",
        "User::\"alice\"",
        "--group",
        "Group::\"oncall\"",
        "--format",
        "json",
    ]))
    .unwrap();
    let lines: Vec<(String, String)> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["subject"].as_str().unwrap().to_owned(),
                l["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        lines.contains(&("read on Database::\"orders\"".into(), "allow".into())),
        "{json}"
    );
    assert!(
        lines.contains(&("write on Database::\"orders\"".into(), "escalate".into())),
        "{json}"
    );
    assert!(lines.iter().all(|(_, outcome)| outcome != "deny"), "{json}");
}

#[test]
fn check_config_loads_the_shadow_pack_too() {
    let pack = TempPack::shipped();
    super::copy_dir(&pack.policies(), &pack.dir.path().join("shadow"));
    let config = |shadow: &str| {
        format!(
            "data_dir = \"data\"\n[policy]\ndir = {:?}\nschemas = {:?}\n[policy.shadow]\ndir = {shadow:?}\n",
            pack.policies().display().to_string(),
            pack.schemas().display().to_string(),
        )
    };
    let shadow = pack.dir.path().join("shadow").display().to_string();
    pack.write("good.toml", &config(&shadow));
    let out = jitgate(&["check", "--config", "good.toml"], pack.dir.path());
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("shadow pack (") && said.matches("ok: 17 policies").count() == 2,
        "{said}"
    );
    // A broken candidate is refused like a broken live pack.
    pack.write(
        "shadow/broken.cedar",
        "permit (principal action, resource);",
    );
    let out = jitgate(&["check", "--config", "good.toml"], pack.dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("shadow/broken.cedar:1:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
