//! A copy of the policy pack with generated grants, rewritten under load for hot reloads.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A copy of the pack in `dir` with `extra` generated database grants added.
pub(crate) fn copy_pack(from: &Path, dir: &Path, extra: usize) -> Result<(), String> {
    let io = |e: std::io::Error| format!("copying the pack: {e}");
    std::fs::create_dir_all(dir).map_err(io)?;
    for entry in std::fs::read_dir(from).map_err(io)? {
        let entry = entry.map_err(io)?;
        if entry.file_type().map_err(io)?.is_file() {
            std::fs::copy(entry.path(), dir.join(entry.file_name())).map_err(io)?;
        }
    }
    let entities_path = dir.join("entities.json");
    let text = std::fs::read_to_string(&entities_path).map_err(io)?;
    let mut entities: Vec<Value> = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    entities.extend((0..extra).map(|i| {
        json!({
            "uid": {"type": "Database", "id": format!("db-{i}")},
            "attrs": {"environment": "prod", "engine": "postgres", "data_class": "internal"},
            "parents": [{"type": "Environment", "id": "prod"}],
        })
    }));
    std::fs::write(&entities_path, json!(entities).to_string()).map_err(io)?;
    write_generated(dir, extra, 0)
}

/// `generated.cedar`: `extra` grants, each of one team on one database. Written beside the pack
/// and renamed into it, as an editor or a deploy would; `generation` makes every rewrite a new
/// pack version.
fn write_generated(dir: &Path, extra: usize, generation: u64) -> Result<(), String> {
    use std::fmt::Write as _;
    let mut text = format!("// generation {generation}\n");
    for i in 0..extra {
        let _ = write!(
            text,
            "@id(\"team-{i}-db-read\")\n@scope(\"db:read:{{resource.id}}\")\n@ttl(\"15m\")\n\
             @audience(\"db-proxy\")\npermit (\n  principal in Group::\"team-{i}\",\n  \
             action == Action::\"read\",\n  resource == Database::\"db-{i}\"\n)\n\
             when {{ context.risk_score < 60 }};\n\n"
        );
    }
    let staged = dir.with_extension("generated.cedar");
    std::fs::write(&staged, text).map_err(|e| format!("writing the pack: {e}"))?;
    std::fs::rename(&staged, dir.join("generated.cedar"))
        .map_err(|e| format!("writing the pack: {e}"))
}

/// Rewrites the pack every `every` from `from` until `until`; how many rewrites it made.
pub(crate) async fn rewrite_pack(
    pack: PathBuf,
    extra: usize,
    every: Duration,
    from: Instant,
    until: Instant,
) -> Result<u64, String> {
    tokio::time::sleep_until(from.into()).await;
    let mut generation = 0;
    while Instant::now() + every <= until {
        generation += 1;
        write_generated(&pack, extra, generation)?;
        tokio::time::sleep(every).await;
    }
    Ok(generation)
}
