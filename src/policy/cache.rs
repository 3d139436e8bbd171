//! Per-pack caches for the costly steps of building a Cedar request that repeat across
//! requests: the entity store with the principal in it, the `ip(…)` value of a source IP, and
//! the schema check of a request's shape.
//!
//! Both are keyed by everything they depend on and live in the pack, so a reload starts empty.
//! Each is bounded; when full it is cleared rather than managed, which keeps lookups cheap.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use cedar_policy::{Entities, EntityUid, PolicySet, RestrictedExpression};

use super::slice::SliceKey;

/// Cached entity stores hold about this many entities in total.
const ENTITY_BUDGET: usize = 200_000;
const MAX_PRINCIPALS: usize = 4_096;
const MAX_IPS: usize = 4_096;
const MAX_SHAPES: usize = 16_384;
const MAX_SLICES: usize = 16_384;

/// The principal and the groups its identity gives it (sorted, deduplicated).
pub(crate) type PrincipalKey = (EntityUid, Vec<EntityUid>);

/// Principal, action and resource of a request whose context holds the server keys only.
pub(crate) type RequestShape = (EntityUid, EntityUid, EntityUid);

pub(crate) struct DecisionCache {
    principals: Bounded<PrincipalKey, Arc<Entities>>,
    ips: Bounded<IpAddr, RestrictedExpression>,
    /// Shapes the schema accepted. Whether the schema accepts a request depends on its
    /// entities and on the types of its context values, never on the values themselves; the
    /// server keys always have the same types, so one check per shape answers for all.
    valid_shapes: Bounded<RequestShape, ()>,
    /// The policies that can apply, by what they depend on.
    slices: Bounded<SliceKey, Arc<PolicySet>>,
}

impl DecisionCache {
    /// A cache for a pack whose store holds `entity_count` entities.
    pub(crate) fn new(entity_count: usize) -> Self {
        let principals = (ENTITY_BUDGET / entity_count.max(1)).clamp(16, MAX_PRINCIPALS);
        Self {
            principals: Bounded::new(principals),
            ips: Bounded::new(MAX_IPS),
            valid_shapes: Bounded::new(MAX_SHAPES),
            slices: Bounded::new(MAX_SLICES),
        }
    }

    pub(crate) fn is_valid_shape(&self, shape: &RequestShape) -> bool {
        self.valid_shapes.contains(shape)
    }

    pub(crate) fn remember_valid_shape(&self, shape: RequestShape) {
        self.valid_shapes.insert(shape, ());
    }

    pub(crate) fn slice(
        &self,
        key: SliceKey,
        build: impl FnOnce(&SliceKey) -> Result<Arc<PolicySet>, String>,
    ) -> Result<Arc<PolicySet>, String> {
        self.slices.get_or_try_insert(key, build)
    }

    pub(crate) fn entities(
        &self,
        key: PrincipalKey,
        build: impl FnOnce(&PrincipalKey) -> Result<Entities, String>,
    ) -> Result<Arc<Entities>, String> {
        self.principals
            .get_or_try_insert(key, |key| build(key).map(Arc::new))
    }

    /// `ip("…")`: building it parses the extension's name each time, which costs more than
    /// the rest of the context together.
    pub(crate) fn ip(&self, ip: IpAddr) -> RestrictedExpression {
        match self.ips.get_or_try_insert(ip, |ip| {
            Ok::<_, ()>(RestrictedExpression::new_ip(ip.to_string()))
        }) {
            Ok(expression) => expression,
            Err(()) => RestrictedExpression::new_ip(ip.to_string()),
        }
    }
}

impl fmt::Debug for DecisionCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionCache")
            .field("principals", &self.principals.len())
            .field("ips", &self.ips.len())
            .field("valid_shapes", &self.valid_shapes.len())
            .finish()
    }
}

struct Bounded<K, V> {
    capacity: usize,
    map: Mutex<HashMap<K, V>>,
}

impl<K: Hash + Eq, V: Clone> Bounded<K, V> {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn contains(&self, key: &K) -> bool {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(key)
    }

    fn insert(&self, key: K, value: V) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(key, value);
    }

    /// The cached value, or `build`'s (built outside the lock, so a slow build blocks nobody).
    fn get_or_try_insert<E>(&self, key: K, build: impl FnOnce(&K) -> Result<V, E>) -> Result<V, E> {
        if let Some(value) = self
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(value.clone());
        }
        let value = build(&key)?;
        self.insert(key, value.clone());
        Ok(value)
    }
}
