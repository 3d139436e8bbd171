//! Hot reload in a temp dir: valid edits go live, invalid ones are refused and reported, and
//! editors that save by rename-and-replace still trigger a reload.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use jitgate::policy::{LivePolicies, PackPaths, ReloadOutcome};

use super::TempPack;

/// The acceptance bound for a change to be served (DESIGN §7).
const LIVE_WITHIN: Duration = Duration::from_secs(1);

fn live(pack: &TempPack) -> Arc<LivePolicies> {
    Arc::new(LivePolicies::load(PackPaths::new(pack.policies(), pack.schemas())).unwrap())
}

/// Waits until `done` holds, at most `limit`; returns how long it took.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return Some(start.elapsed());
        }
        thread::sleep(Duration::from_millis(10));
    }
    done().then(|| start.elapsed())
}

#[test]
fn a_valid_edit_is_live_within_a_second() {
    let pack = TempPack::shipped();
    let live = live(&pack);
    let _watch = live.watch().unwrap();
    let before = live.current().version().to_owned();
    assert!(live.current().policy("new-policy").is_none());

    pack.write(
        "policies/new.cedar",
        "@id(\"new-policy\")\n@scope(\"db:read\")\npermit (principal, action == Action::\"read\", resource);\n",
    );
    let took = wait_for(LIVE_WITHIN, || {
        live.current().policy("new-policy").is_some()
    });
    assert!(
        took.is_some(),
        "the new policy was not served within {LIVE_WITHIN:?}"
    );
    let status = live.status();
    assert_ne!(status.version, before);
    assert_eq!(status.version, live.current().version());
    assert_eq!(status.policy_count, 18);
    assert!(status.last_error.is_none());
}

#[test]
fn an_invalid_edit_keeps_the_last_good_pack_and_records_the_error() {
    let pack = TempPack::shipped();
    let live = live(&pack);
    let _watch = live.watch().unwrap();
    let good = live.current().version().to_owned();

    pack.edit(
        "policies/hosts.cedar",
        "resource is Host\n);",
        "resource is Hots\n);",
    );
    let took = wait_for(LIVE_WITHIN, || live.status().last_error.is_some());
    assert!(took.is_some(), "the bad edit was not noticed");
    let status = live.status();
    assert_eq!(status.version, good);
    assert_eq!(live.current().version(), good);
    let errors = status.last_error.unwrap().errors.to_string();
    let expected = format!("{}/hosts.cedar:", pack.policies().display());
    assert!(
        errors.contains(&expected) && errors.contains("Hots"),
        "{errors}"
    );

    // Fixing the file clears the error; the content is the good version again.
    pack.edit(
        "policies/hosts.cedar",
        "resource is Hots\n);",
        "resource is Host\n);",
    );
    assert!(wait_for(LIVE_WITHIN, || live.status().last_error.is_none()).is_some());
    assert_eq!(live.current().version(), good);
}

#[test]
fn an_annotation_typo_keeps_the_last_good_pack() {
    let pack = TempPack::shipped();
    let live = live(&pack);
    let _watch = live.watch().unwrap();
    let good = live.current().version().to_owned();

    // Loaded, this would make production schema changes self-service.
    pack.edit(
        "policies/databases.cedar",
        "@approval(\"2\")",
        "@aproval(\"2\")",
    );
    let took = wait_for(LIVE_WITHIN, || live.status().last_error.is_some());
    assert!(took.is_some(), "the typo was not noticed");
    assert_eq!(live.current().version(), good);
    let served = live.current();
    let policy = served.policy("dba-db-admin-approval").unwrap();
    assert_eq!(
        policy.grant.stages,
        Some(jitgate::decision::Stage::default_of(2))
    );
    let errors = live.status().last_error.unwrap().errors.to_string();
    let expected = format!(
        "{}/databases.cedar:52:1: policy `dba-db-admin-approval`: unknown annotation @aproval: did you mean `@approval`?",
        pack.policies().display()
    );
    assert!(errors.contains(&expected), "{errors}");
}

#[test]
fn rename_and_replace_saves_reload() {
    let pack = TempPack::shipped();
    let live = live(&pack);
    let _watch = live.watch().unwrap();

    // What `sed -i` and vim (with `backupcopy=no`) do: write a new file, rename it over the old.
    let path = pack.policies().join("approvals.cedar");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("context.risk_score < 50", "context.risk_score < 40");
    let temp = pack.policies().join(".approvals.cedar.swp");
    std::fs::write(&temp, text).unwrap();
    let before = live.current().version().to_owned();
    std::fs::rename(&temp, &path).unwrap();
    assert!(
        wait_for(LIVE_WITHIN, || live.current().version() != before).is_some(),
        "the renamed file was not picked up"
    );

    // A second save the same way: the watch survives the first replacement.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("context.risk_score < 40", "context.risk_score < 30");
    std::fs::write(&temp, text).unwrap();
    let before = live.current().version().to_owned();
    std::fs::rename(&temp, &path).unwrap();
    assert!(wait_for(LIVE_WITHIN, || live.current().version() != before).is_some());
}

#[test]
fn schema_and_entities_edits_reload_too() {
    let pack = TempPack::shipped();
    let live = live(&pack);
    let _watch = live.watch().unwrap();

    let before = live.current().version().to_owned();
    pack.edit(
        "schemas/jitgate.cedarschema",
        "entity Jitgate;",
        "entity Jitgate;\nentity Team;",
    );
    assert!(wait_for(LIVE_WITHIN, || live.current().version() != before).is_some());
    assert!(live.current().entity_type_names().any(|t| t == "Team"));

    let before = live.current().version().to_owned();
    pack.edit(
        "policies/entities.json",
        "\"role\": \"web\"",
        "\"role\": \"api\"",
    );
    assert!(wait_for(LIVE_WITHIN, || live.current().version() != before).is_some());
}

#[test]
fn a_deleted_policy_file_is_unloaded() {
    let pack = TempPack::shipped();
    let live = live(&pack);
    let _watch = live.watch().unwrap();
    std::fs::remove_file(pack.policies().join("hosts.cedar")).unwrap();
    assert!(
        wait_for(LIVE_WITHIN, || live
            .current()
            .policy("sre-host-ssh")
            .is_none())
        .is_some()
    );
    assert_eq!(live.status().policy_count, 13);
}

#[test]
fn explicit_reloads_report_what_they_did() {
    let pack = TempPack::shipped();
    let live = live(&pack);
    assert!(matches!(live.reload(), ReloadOutcome::Unchanged));
    pack.edit("policies/approvals.cedar", "< 50", "< 45");
    let ReloadOutcome::Reloaded { from, to, .. } = live.reload() else {
        panic!("expected a reload");
    };
    assert_ne!(from, to);
    pack.write(
        "policies/bad.cedar",
        "permit (principal, action, resource);",
    );
    let ReloadOutcome::Rejected(errors) = live.reload() else {
        panic!("expected a rejection");
    };
    assert!(
        errors
            .to_string()
            .contains("bad.cedar:1:1: policy has no @id"),
        "{errors}"
    );
    assert_eq!(live.current().version(), to);
}

#[test]
fn readers_keep_their_pack_across_a_swap() {
    let pack = TempPack::shipped();
    let live = live(&pack);
    let held = live.current();
    pack.edit("policies/approvals.cedar", "< 50", "< 45");
    assert!(matches!(live.reload(), ReloadOutcome::Reloaded { .. }));
    assert_ne!(held.version(), live.current().version());
    assert!(held.policy("dba-approve-databases").is_some());
}
