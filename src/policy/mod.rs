//! Policy packs: the `.cedar` policies, the Cedar schema and `entities.json` that decide every
//! request, loaded and validated as one unit.
//!
//! A pack is immutable once loaded. [`PolicyPack::load`] reads every file, reports every problem it
//! finds as `file:line:col: message` (never only the first), and yields a pack only when nothing is
//! wrong. [`LivePolicies`] serves the current pack and swaps in a new one when the files change.

mod cache;
mod context_keys;
mod engine;
mod error;
pub mod explain;
mod grant;
mod lint;
mod live;
mod request;
mod slice;
mod source;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::SystemTime;

use cedar_policy::{
    ActionConstraint, Entities, EntityUid, Policy, PolicyId, PolicySet, Schema, SchemaFragment,
    ValidationMode, Validator,
};
use miette::Diagnostic;
use serde::Serialize;
use sha2::{Digest, Sha256};

use cache::DecisionCache;
pub use engine::Unsliced;
pub use error::{LoadError, LoadErrors};
pub use grant::{AnnotationError, PolicyKind};
pub use live::{
    LivePolicies, PolicyWatcher, ReloadFailure, ReloadListener, ReloadOutcome, ReloadStatus,
};
use source::SourceFile;

use crate::decision::{Effect, EntityRef, Grant, PolicyRef};

/// Where a pack's files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackPaths {
    /// `*.cedar` (recursively, except `tests/`) and `entities.json`.
    pub policies: PathBuf,
    /// `*.cedarschema`.
    pub schemas: PathBuf,
}

impl PackPaths {
    pub fn new(policies: impl Into<PathBuf>, schemas: impl Into<PathBuf>) -> Self {
        Self {
            policies: policies.into(),
            schemas: schemas.into(),
        }
    }

    /// The file of resource and group entities, when the pack has one.
    pub fn entities_file(&self) -> PathBuf {
        self.policies.join(ENTITIES_FILE)
    }
}

const ENTITIES_FILE: &str = "entities.json";

/// Actions jitgate itself asks about (DESIGN §4); they are never requested.
pub const RESERVED_ACTIONS: [&str; 2] = ["approve", "administer"];

/// One policy of a pack, as shown to operators.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PolicyInfo {
    pub id: String,
    pub effect: Effect,
    /// Every annotation, including ones jitgate does not interpret.
    pub annotations: BTreeMap<String, String>,
    #[serde(skip)]
    pub grant: Grant,
    /// `file:line` of the policy's first line.
    pub location: String,
}

impl PolicyInfo {
    /// The policy as the decision rules read it.
    pub fn policy_ref(&self) -> PolicyRef<'_> {
        PolicyRef {
            id: &self.id,
            effect: self.effect,
            grant: &self.grant,
        }
    }
}

/// A loaded, validated policy pack.
#[derive(Debug)]
pub struct PolicyPack {
    policy_set: PolicySet,
    schema: Schema,
    entities: Entities,
    /// The schema's actions with their groups, for slicing; `None` turns slicing off.
    action_entities: Option<Entities>,
    policies: BTreeMap<String, PolicyInfo>,
    /// Action id (`read`) → its uid in the schema.
    actions: HashMap<String, EntityUid>,
    entity_types: BTreeSet<String>,
    cache: DecisionCache,
    /// The context keys the schema declares per action.
    context_keys: context_keys::ContextKeys,
    version: String,
    files: Vec<String>,
    warnings: Vec<LoadError>,
    loaded_at: SystemTime,
}

impl PolicyPack {
    /// Reads and validates the pack at `paths`, strictly, reporting every problem found.
    pub fn load(paths: &PackPaths) -> Result<PolicyPack, LoadErrors> {
        let mut loader = Loader::default();
        let policy_files = loader.discover(&paths.policies, "policies", "cedar", Some("tests"));
        let schema_files = loader.discover(&paths.schemas, "schemas", "cedarschema", None);
        let entities_path = paths.entities_file();
        let entities_file = if entities_path.is_file() {
            match source::read(&paths.policies, "policies", &entities_path) {
                Ok(file) => Some(file),
                Err(e) => {
                    loader.errors.push(e);
                    None
                }
            }
        } else {
            None
        };

        let schema = loader.schema(&paths.schemas, &schema_files);
        let policy_set = loader.policies(&policy_files);
        let entities = schema
            .as_ref()
            .and_then(|schema| loader.entities(entities_file.as_ref(), schema));
        if let Some(schema) = &schema {
            loader.validate(schema, &policy_set, &policy_files);
        }
        let actions = schema
            .as_ref()
            .map(|schema| loader.actions(&paths.schemas, schema))
            .unwrap_or_default();

        let (Some(schema), Some(entities), true) = (schema, entities, loader.errors.is_empty())
        else {
            return Err(LoadErrors(loader.errors));
        };
        if let Some(approve) = actions.get("approve") {
            loader.check_approve_context(&paths.schemas, &schema, approve);
        }
        loader.lint(&policy_set, &schema, &entities, &policy_files);
        if loader.policies.is_empty() {
            loader.warnings.push(LoadError::at(
                &paths.policies,
                None,
                "no policies: every request will be denied",
            ));
        }
        let all_files: Vec<&SourceFile> = policy_files
            .iter()
            .chain(&schema_files)
            .chain(entities_file.as_ref())
            .collect();
        Ok(PolicyPack {
            cache: DecisionCache::new(entities.len()),
            context_keys: std::mem::take(&mut loader.context_keys),
            version: version_of(&all_files),
            files: all_files.iter().map(|f| f.key.clone()).collect(),
            entity_types: schema.entity_types().map(ToString::to_string).collect(),
            action_entities: schema.action_entities().ok(),
            policy_set,
            schema,
            entities,
            policies: loader.policies,
            actions,
            warnings: loader.warnings,
            loaded_at: SystemTime::now(),
        })
    }

    /// Content hash of every file of the pack: recorded with every decision and token.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }

    pub fn policy_count(&self) -> usize {
        self.policies.len()
    }

    /// Policies by id.
    pub fn policies(&self) -> impl Iterator<Item = &PolicyInfo> {
        self.policies.values()
    }

    /// For `action`: each entity type of its principals with the entities of `entities.json`
    /// a principal of that type can be a member of (its groups), sorted. Empty for an unknown
    /// action.
    pub fn principals_and_groups(&self, action: &str) -> Vec<(String, Vec<EntityRef>)> {
        let Some(uid) = self.actions.get(action) else {
            return Vec::new();
        };
        let Some(principals) = self.schema.principals_for_action(uid) else {
            return Vec::new();
        };
        let mut found: Vec<(String, Vec<EntityRef>)> = principals
            .map(|ty| {
                let group_types: HashSet<String> = (self.schema.ancestors(ty))
                    .into_iter()
                    .flatten()
                    .map(ToString::to_string)
                    .collect();
                let mut groups: Vec<EntityRef> = (self.entities.iter())
                    .map(cedar_policy::Entity::uid)
                    .filter(|uid| group_types.contains(&uid.type_name().to_string()))
                    .map(|uid| EntityRef::new(uid.type_name().to_string(), uid.id().unescaped()))
                    .collect();
                groups.sort_by(|a, b| (&a.type_name, &a.id).cmp(&(&b.type_name, &b.id)));
                (ty.to_string(), groups)
            })
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }

    pub fn policy(&self, id: &str) -> Option<&PolicyInfo> {
        self.policies.get(id)
    }

    /// The pack's files (`policies/db.cedar`, `schemas/jitgate.cedarschema`, …).
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// Problems that do not stop the pack from serving (e.g. a policy that can never apply).
    pub fn warnings(&self) -> &[LoadError] {
        &self.warnings
    }

    /// Action ids declared by the schema, sorted.
    pub fn action_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.actions.keys().cloned().collect();
        names.sort();
        names
    }

    /// Entity type names declared by the schema, sorted.
    pub fn entity_type_names(&self) -> impl Iterator<Item = &str> {
        self.entity_types.iter().map(String::as_str)
    }

    /// Number of entities from `entities.json` (plus the schema's actions).
    pub fn entity_count(&self) -> usize {
        self.entities.len()
    }
}

fn version_of(files: &[&SourceFile]) -> String {
    let mut sorted: Vec<&&SourceFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    let mut hasher = Sha256::new();
    for file in sorted {
        hasher.update(file.key.as_bytes());
        hasher.update([0]);
        hasher.update(file.text.as_bytes());
        hasher.update([0]);
    }
    let digest = hex::encode(hasher.finalize());
    digest.get(..16).unwrap_or(&digest).to_owned()
}

/// Accumulates what a load finds, so that one run reports every problem.
#[derive(Default)]
struct Loader {
    errors: Vec<LoadError>,
    warnings: Vec<LoadError>,
    policies: BTreeMap<String, PolicyInfo>,
    /// Policy id → `file:line` of the first policy with it, to report a duplicate.
    ids: HashMap<String, String>,
    /// Policy id → (file index, byte offset of the policy's start), to locate validation errors.
    origins: HashMap<String, (usize, usize)>,
    context_keys: context_keys::ContextKeys,
}

/// One policy statement of a file: the file's index among the policy files, where the
/// statement starts and its text.
#[derive(Clone, Copy)]
struct Statement<'a> {
    index: usize,
    file: &'a SourceFile,
    offset: usize,
    text: &'a str,
}

impl Loader {
    fn discover(
        &mut self,
        dir: &Path,
        role: &str,
        extension: &str,
        skip: Option<&str>,
    ) -> Vec<SourceFile> {
        if !dir.is_dir() {
            self.errors
                .push(LoadError::at(dir, None, "no such directory"));
            return Vec::new();
        }
        source::discover(dir, role, extension, skip).unwrap_or_else(|errors| {
            self.errors.extend(errors);
            Vec::new()
        })
    }

    fn schema(&mut self, dir: &Path, files: &[SourceFile]) -> Option<Schema> {
        if files.is_empty() {
            self.errors.push(LoadError::at(
                dir,
                None,
                "no *.cedarschema files: policies are validated strictly against a schema",
            ));
            return None;
        }
        let mut fragments = Vec::with_capacity(files.len());
        for file in files {
            match SchemaFragment::from_cedarschema_str(&file.text) {
                Ok((fragment, warnings)) => {
                    fragments.push(fragment);
                    for warning in warnings {
                        self.warnings
                            .push(diagnostic_error(files, Some(file), dir, &warning));
                    }
                }
                Err(error) => self
                    .errors
                    .push(diagnostic_error(files, Some(file), dir, &error)),
            }
        }
        if fragments.len() < files.len() {
            return None;
        }
        // The fragments as parsed, in Cedar's JSON form: what the context keys are read from.
        let json: Vec<serde_json::Value> = (fragments.iter())
            .filter_map(|fragment| fragment.clone().to_json_value().ok())
            .collect();
        self.context_keys = context_keys::ContextKeys::of(&json);
        match Schema::from_schema_fragments(fragments) {
            Ok(schema) => Some(schema),
            Err(error) => {
                self.errors.push(diagnostic_error(files, None, dir, &error));
                None
            }
        }
    }

    fn policies(&mut self, files: &[SourceFile]) -> PolicySet {
        let mut set = PolicySet::new();
        for (index, file) in files.iter().enumerate() {
            let parsed = match PolicySet::from_str(&file.text) {
                Ok(parsed) => parsed,
                Err(errors) => {
                    for error in errors.iter() {
                        let stopped_at_next_policy =
                            ["`@`", "`permit`", "`forbid`"].iter().any(|token| {
                                error
                                    .to_string()
                                    .starts_with(&format!("unexpected token {token}"))
                            });
                        let missing_semicolon = stopped_at_next_policy
                            .then(|| error.labels().and_then(|mut labels| labels.next()))
                            .flatten()
                            .and_then(|label| source::missing_semicolon(file, label.offset()));
                        self.errors.push(missing_semicolon.unwrap_or_else(|| {
                            diagnostic_error(files, Some(file), &file.path, error)
                        }));
                    }
                    continue;
                }
            };
            let statements = parsed.policies().count() + parsed.templates().count();
            let mut search_from = 0;
            // `PolicySet::from_str` names a file's statements `policy0…` in source order; walking
            // them in that order finds each one's text in the file.
            for i in 0..statements {
                let default_id = PolicyId::new(format!("policy{i}"));
                let (text, policy) = if let Some(policy) = parsed.policy(&default_id) {
                    (policy.to_cedar(), Some(policy))
                } else if let Some(template) = parsed.template(&default_id) {
                    (Some(template.to_string()), None)
                } else {
                    continue;
                };
                let text = text.unwrap_or_default();
                let offset = file
                    .text
                    .get(search_from..)
                    .and_then(|rest| rest.find(&text))
                    .map_or(search_from, |at| at + search_from);
                search_from = offset + text.len();
                let Some(policy) = policy else {
                    self.errors.push(file.error_at(
                        offset,
                        "templates (policies with `?principal` or `?resource` slots) are not supported",
                    ));
                    continue;
                };
                let statement = Statement {
                    index,
                    file,
                    offset,
                    text: &text,
                };
                self.admit(&mut set, &statement, policy);
            }
        }
        set
    }

    /// Adds `policy` to `set` and to the pack's policies, or reports why it cannot be.
    fn admit(&mut self, set: &mut PolicySet, statement: &Statement<'_>, policy: &Policy) {
        let Statement {
            index,
            file,
            offset,
            text,
        } = *statement;
        let Some(id) = policy.annotation("id") else {
            self.errors.push(file.error_at(
                offset,
                "policy has no @id(\"…\"): every policy needs a stable id",
            ));
            return;
        };
        if !valid_policy_id(id) {
            self.errors.push(file.error_at(
                offset,
                format!(
                    "@id(\"{}\"): use letters, digits, `.`, `_`, `-` or `:` (at most 128)",
                    id.escape_debug()
                ),
            ));
            return;
        }
        let (line, col) = file.line_col(offset);
        let location = format!("{}:{line}", file.path.display());
        if let Some(first) = self.ids.get(id) {
            self.errors.push(LoadError::at(
                &file.path,
                Some((line, col)),
                format!("duplicate @id(\"{id}\"): also at {first}"),
            ));
            return;
        }
        self.ids.insert(id.to_owned(), location.clone());
        let grant = match grant::from_annotations(policy.annotations(), kind_of(policy)) {
            Ok(grant) => grant,
            Err(errors) => {
                for error in errors {
                    let at = error
                        .annotation
                        .and_then(|name| annotation_offset(text, &name))
                        .map_or(offset, |at| offset + at);
                    self.errors
                        .push(file.error_at(at, format!("policy `{id}`: {}", error.message)));
                }
                return;
            }
        };
        if let Err(e) = set.add(policy.new_id(PolicyId::new(id))) {
            self.errors.push(file.error_at(offset, e.to_string()));
            return;
        }
        self.origins.insert(id.to_owned(), (index, offset));
        let effect = match policy.effect() {
            cedar_policy::Effect::Forbid => Effect::Forbid,
            cedar_policy::Effect::Permit => Effect::Permit,
        };
        let annotations = (policy.annotations())
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        self.policies.insert(
            id.to_owned(),
            PolicyInfo {
                id: id.to_owned(),
                effect,
                annotations,
                grant,
                location,
            },
        );
    }

    fn entities(&mut self, file: Option<&SourceFile>, schema: &Schema) -> Option<Entities> {
        let result = match file {
            Some(file) => Entities::from_json_str(&file.text, Some(schema)),
            None => Entities::from_json_value(serde_json::Value::Array(Vec::new()), Some(schema)),
        };
        match result {
            Ok(entities) => Some(entities),
            Err(error) => {
                let message = diagnostic_message(&error);
                self.errors.push(match file {
                    Some(file) => source::entities_error(file, message),
                    None => LoadError::at(Path::new(ENTITIES_FILE), None, message),
                });
                None
            }
        }
    }

    fn validate(&mut self, schema: &Schema, set: &PolicySet, files: &[SourceFile]) {
        let result = Validator::new(schema.clone()).validate(set, ValidationMode::Strict);
        // The validator reports a mistake once per action the policy applies to; one is enough.
        let mut reported = HashSet::new();
        for error in result.validation_errors() {
            let located = self.locate_in_policy(files, error.policy_id(), error);
            let key = (
                located.file.clone(),
                located.position,
                without_action_names(&located.message),
            );
            if reported.insert(key) {
                self.errors.push(located);
            }
        }
        for warning in result.validation_warnings() {
            let located = self.locate_in_policy(files, warning.policy_id(), warning);
            self.warnings.push(located);
        }
    }

    fn locate_in_policy(
        &self,
        files: &[SourceFile],
        id: &PolicyId,
        diagnostic: &dyn Diagnostic,
    ) -> LoadError {
        match self.origins.get(id.to_string().as_str()) {
            Some((index, offset)) => {
                let file = files.get(*index);
                let fallback = file.map_or(Path::new(""), |f| f.path.as_path());
                let mut error = diagnostic_error(files, file, fallback, diagnostic);
                if error.position.is_none()
                    && let Some(file) = file
                {
                    error.position = Some(file.line_col(*offset));
                }
                error
            }
            None => diagnostic_error(files, None, Path::new(""), diagnostic),
        }
    }

    /// Warns about each policy [`lint`] finds likely wrong, at the policy.
    fn lint(
        &mut self,
        set: &PolicySet,
        schema: &Schema,
        entities: &Entities,
        files: &[SourceFile],
    ) {
        let Ok(action_entities) = schema.action_entities() else {
            return;
        };
        let reserved = lint::reserved_actions(schema.actions());
        let resources = lint::KnownResources::of(entities);
        let mut warnings = Vec::new();
        for info in self.policies.values() {
            let Some(policy) = set.policy(&PolicyId::new(&info.id)) else {
                continue;
            };
            for message in lint::lint(
                &info.id,
                info.effect,
                policy,
                &action_entities,
                &reserved,
                &resources,
            ) {
                let at = self.origins.get(&info.id).and_then(|(index, offset)| {
                    Some(files.get(*index)?.error_at(*offset, message.clone()))
                });
                warnings.push(at.unwrap_or_else(|| LoadError::at(Path::new(""), None, message)));
            }
        }
        self.warnings.extend(warnings);
    }

    /// Warns when the schema's `approve` context does not take what jitgate sends with every
    /// approval: such a pack loads, and refuses every approval (it fails closed).
    fn check_approve_context(&mut self, dir: &Path, schema: &Schema, approve: &EntityUid) {
        let sent = serde_json::json!({
            "request_id": "req_x", "requester": "User::\"x\"", "requested_action": "x",
            "risk_score": 0, "reason": "", "stage": "default", "auth_age_secs": 0,
        });
        if let Err(e) = cedar_policy::Context::from_json_value(sent, Some((schema, approve))) {
            self.warnings.push(LoadError::at(
                dir,
                None,
                format!(
                    "the context of action `approve` does not take what jitgate sends \
                     (request_id, requester, requested_action, reason, stage: String; \
                     risk_score, auth_age_secs: Long), so every approval will be refused: {e}"
                ),
            ));
        }
    }

    fn actions(&mut self, dir: &Path, schema: &Schema) -> HashMap<String, EntityUid> {
        let mut actions = HashMap::new();
        for uid in schema.actions() {
            let name = uid.id().unescaped().to_owned();
            if let Some(other) = actions.insert(name.clone(), uid.clone()) {
                self.errors.push(LoadError::at(
                    dir,
                    None,
                    format!("action `{name}` is declared twice ({other} and {uid}): action names must be unique across namespaces"),
                ));
            }
        }
        actions
    }
}

/// A permit issues tokens unless every action it names is `approve` or `administer`.
fn kind_of(policy: &Policy) -> PolicyKind {
    let reserved = |uid: &EntityUid| RESERVED_ACTIONS.contains(&uid.id().unescaped());
    if policy.effect() == cedar_policy::Effect::Forbid {
        return PolicyKind::Forbid;
    }
    match policy.action_constraint() {
        ActionConstraint::Eq(uid) if reserved(&uid) => PolicyKind::Reserved,
        ActionConstraint::In(uids) if !uids.is_empty() && uids.iter().all(reserved) => {
            PolicyKind::Reserved
        }
        _ => PolicyKind::Grants,
    }
}

/// Byte offset of `@name` in a policy's text, to point an error at the annotation's line.
fn annotation_offset(policy_text: &str, name: &str) -> Option<usize> {
    let needle = format!("@{name}");
    policy_text.match_indices(&needle).find_map(|(at, _)| {
        let next = policy_text.get(at + needle.len()..)?.chars().next();
        let ends_name = !next.is_some_and(|c| c.is_alphanumeric() || c == '_');
        ends_name.then_some(at)
    })
}

/// `… for Action::"read" not found` → `… for  not found`, to see one mistake reported per action.
fn without_action_names(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find("Action::\"") {
        out.push_str(rest.get(..start).unwrap_or_default());
        let after = rest.get(start + "Action::\"".len()..).unwrap_or_default();
        rest = after
            .find('"')
            .and_then(|end| after.get(end + 1..))
            .unwrap_or_default();
    }
    out.push_str(rest);
    out
}

fn valid_policy_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
}

/// Cedar's message with its causes and its help (`did you mean …?`), on one line.
fn diagnostic_message(diagnostic: &dyn Diagnostic) -> String {
    let mut message = diagnostic.to_string();
    let mut cause = diagnostic.source();
    while let Some(error) = cause {
        let text = error.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = error.source();
    }
    if let Some(help) = diagnostic.help() {
        message.push_str("; ");
        message.push_str(&help.to_string());
    }
    message.replace('\n', " ")
}

/// Places a Cedar diagnostic in the file its first label points into.
///
/// Cedar's diagnostics carry their source text but not its file name, so the label's span is
/// matched against the candidate files; `hint` is the file it most likely came from.
/// Without a match the error names `hint`, the only file, or else `fallback` (the pack dir).
fn diagnostic_error(
    files: &[SourceFile],
    hint: Option<&SourceFile>,
    fallback: &Path,
    diagnostic: &dyn Diagnostic,
) -> LoadError {
    let message = diagnostic_message(diagnostic);
    let span = diagnostic.labels().and_then(|mut labels| labels.next());
    if let Some(label) = span {
        let offset = label.offset();
        let snippet = diagnostic
            .source_code()
            .and_then(|source| source.read_span(label.inner(), 0, 0).ok())
            .map(|contents| contents.data().to_vec());
        let matches = |file: &SourceFile| match &snippet {
            Some(snippet) => {
                file.text.as_bytes().get(offset..offset + snippet.len()) == Some(snippet.as_slice())
            }
            None => offset <= file.text.len(),
        };
        let file = hint
            .filter(|f| matches(f))
            .or_else(|| files.iter().find(|f| matches(f)));
        if let Some(file) = file {
            return file.error_at(offset, message);
        }
    }
    match hint.or(match files {
        [only] => Some(only),
        _ => None,
    }) {
        Some(file) => file.error(message),
        None => LoadError::at(fallback, None, message),
    }
}

#[cfg(test)]
mod decide_tests;
#[cfg(test)]
mod slice_tests;
