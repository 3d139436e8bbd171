//! The pack being served, and hot reload.
//!
//! Readers take the current pack with one atomic load and never wait on a reload. A reload parses
//! and validates the whole pack off to the side and swaps it in only if it is valid; after a bad
//! edit the last good pack keeps serving and the errors are kept for operators to see.

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};

use super::{LoadErrors, PackPaths, PolicyPack};

/// How long the files must stay quiet before a reload: editors and copies write a file in
/// several steps, and a reload in the middle would read a truncated file. There is no upper
/// bound on the wait for the same reason.
const QUIET: Duration = Duration::from_millis(100);

/// The pack being served, swapped atomically on reload.
pub struct LivePolicies {
    paths: PackPaths,
    current: ArcSwap<PolicyPack>,
    status: Mutex<ReloadStatus>,
    /// Serialises reloads (the watcher's and explicit ones); readers never take it.
    reloading: Mutex<()>,
    listener: OnceLock<ReloadListener>,
}

/// What operators see of the served pack and the last reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadStatus {
    pub version: String,
    pub loaded_at: SystemTime,
    pub policy_count: usize,
    /// Errors of the last reload attempt, while the files on disk are invalid; `None` once they
    /// load again.
    pub last_error: Option<ReloadFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadFailure {
    pub at: SystemTime,
    pub errors: LoadErrors,
}

/// Called after every reload attempt (metrics, audit).
pub type ReloadListener = Box<dyn Fn(&ReloadOutcome) + Send + Sync>;

/// What one reload did.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// A new version is serving.
    Reloaded {
        from: String,
        to: String,
        files: Vec<String>,
        added: Vec<String>,
        removed: Vec<String>,
    },
    /// The files hash to the version already serving.
    Unchanged,
    /// The files are invalid; the previous version keeps serving.
    Rejected(LoadErrors),
}

impl std::fmt::Debug for LivePolicies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LivePolicies")
            .field("paths", &self.paths)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl LivePolicies {
    /// Loads the pack; the first load must succeed.
    pub fn load(paths: PackPaths) -> Result<Self, LoadErrors> {
        let pack = PolicyPack::load(&paths)?;
        Ok(Self {
            status: Mutex::new(ReloadStatus {
                version: pack.version().to_owned(),
                loaded_at: pack.loaded_at(),
                policy_count: pack.policy_count(),
                last_error: None,
            }),
            current: ArcSwap::from_pointee(pack),
            reloading: Mutex::new(()),
            listener: OnceLock::new(),
            paths,
        })
    }

    /// The pack serving now. Cheap; hold it for one decision, not longer.
    pub fn current(&self) -> Arc<PolicyPack> {
        self.current.load_full()
    }

    pub fn paths(&self) -> &PackPaths {
        &self.paths
    }

    pub fn status(&self) -> ReloadStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sets the function told of every reload; only the first call has an effect.
    pub fn on_reload(&self, listener: ReloadListener) {
        let _ = self.listener.set(listener);
    }

    /// Reloads from disk now.
    pub fn reload(&self) -> ReloadOutcome {
        let outcome = self.reload_quietly();
        if let Some(listener) = self.listener.get() {
            listener(&outcome);
        }
        outcome
    }

    fn reload_quietly(&self) -> ReloadOutcome {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let loaded = PolicyPack::load(&self.paths);
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        match loaded {
            Ok(pack) if pack.version() == status.version => {
                status.last_error = None;
                ReloadOutcome::Unchanged
            }
            Ok(pack) => {
                let previous = self.current.load();
                let added = pack
                    .policies()
                    .filter(|p| previous.policy(&p.id).is_none())
                    .map(|p| p.id.clone())
                    .collect();
                let removed = previous
                    .policies()
                    .filter(|p| pack.policy(&p.id).is_none())
                    .map(|p| p.id.clone())
                    .collect();
                let files = pack.files().to_vec();
                let from = std::mem::replace(&mut status.version, pack.version().to_owned());
                status.loaded_at = pack.loaded_at();
                status.policy_count = pack.policy_count();
                status.last_error = None;
                let to = status.version.clone();
                self.current.store(Arc::new(pack));
                tracing::info!(policy.version = %to, policy.previous_version = %from, "policy pack reloaded");
                ReloadOutcome::Reloaded {
                    from,
                    to,
                    files,
                    added,
                    removed,
                }
            }
            Err(errors) => {
                for error in &errors.0 {
                    tracing::error!(policy.version = %status.version, error = %error, "policy reload rejected; previous version keeps serving");
                }
                status.last_error = Some(ReloadFailure {
                    at: SystemTime::now(),
                    errors: errors.clone(),
                });
                ReloadOutcome::Rejected(errors)
            }
        }
    }

    /// Watches the policy and schema dirs and reloads on every change until the returned
    /// watcher is dropped.
    pub fn watch(self: &Arc<Self>) -> Result<PolicyWatcher, notify::Error> {
        let (tx, rx) = mpsc::channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let relevant = match event {
                    // Reads are not changes; a write being closed is the end of one.
                    Ok(event) => match event.kind {
                        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
                        EventKind::Access(_) => false,
                        _ => true,
                    },
                    // A lost event (queue overflow) may hide a change: reload to be sure.
                    Err(_) => true,
                };
                if relevant {
                    let _ = tx.send(());
                }
            })?;
        // Watch directories, not files: editors that save by writing a new file and renaming it
        // over the old one replace the inode a file watch would be on.
        let mut dirs: Vec<PathBuf> = vec![self.paths.policies.clone()];
        if !self.paths.schemas.starts_with(&self.paths.policies) {
            dirs.push(self.paths.schemas.clone());
        }
        for dir in &dirs {
            watcher.watch(dir, RecursiveMode::Recursive)?;
        }
        let live = Arc::downgrade(self);
        let thread = thread::Builder::new()
            .name("policy-reload".into())
            .spawn(move || {
                // Ends when the watcher (and with it the sender) is dropped.
                while rx.recv().is_ok() {
                    loop {
                        match rx.recv_timeout(QUIET) {
                            Ok(()) => continue,
                            Err(RecvTimeoutError::Timeout) => break,
                            Err(RecvTimeoutError::Disconnected) => return,
                        }
                    }
                    let Some(live) = live.upgrade() else { return };
                    live.reload();
                }
            })
            .map_err(notify::Error::io)?;
        // A change between the first load and the watch starting would otherwise wait for the
        // next change to be seen.
        self.reload();
        Ok(PolicyWatcher {
            _watcher: watcher,
            _thread: thread,
        })
    }
}

/// Keeps the hot-reload watch alive; dropping it stops watching.
#[derive(Debug)]
pub struct PolicyWatcher {
    _watcher: notify::RecommendedWatcher,
    _thread: thread::JoinHandle<()>,
}
