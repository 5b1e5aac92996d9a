//! Resolving a reference to a local [`Image`]: the store first or the
//! registry first, per [`PullPolicy`].
//!
//! A digest-pinned reference whose manifest is in the store never touches
//! the network, whatever the policy: its content cannot have changed.

use super::registry::{RegistryClient, RegistryError};
use super::store::{Image, Store};
use super::{NoProgress, Progress, Reference};

/// When to contact the registry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Use the store; pull only what is absent.
    #[default]
    Missing,
    /// Ask the registry for the current manifest; fetch blobs that changed.
    Always,
    /// Store only; an absent image is an error.
    Never,
}

/// Resolves references against a store and a registry client.
pub struct Resolver<'a> {
    pub store: &'a Store,
    pub client: &'a RegistryClient,
    pub policy: PullPolicy,
    pub progress: &'a dyn Progress,
}

impl<'a> Resolver<'a> {
    pub fn new(store: &'a Store, client: &'a RegistryClient, policy: PullPolicy) -> Resolver<'a> {
        Resolver {
            store,
            client,
            policy,
            progress: &NoProgress,
        }
    }

    /// The image `reference` names, pulling it when the policy says so. After
    /// a pull the reference is tagged in the store.
    pub fn resolve(&self, reference: &Reference) -> Result<Image, RegistryError> {
        let store_err = |source| RegistryError::Store {
            reference: reference.to_string(),
            source,
        };
        let local = self.store.lookup(reference).map_err(store_err)?;
        let use_local = match (&local, self.policy) {
            (None, _) => false,
            (Some(_), _) if reference.digest.is_some() => true,
            (Some(_), PullPolicy::Always) => false,
            (Some(_), _) => true,
        };
        if use_local && let Some(d) = &local {
            return self.store.image(d).map_err(store_err);
        }
        if self.policy == PullPolicy::Never {
            return Err(RegistryError::NotInStore {
                reference: reference.to_string(),
                root: format!("{} and pull policy is never", self.store.root().display()),
            });
        }
        let pulled = self.client.pull(self.store, reference, self.progress)?;
        self.store
            .tag(reference, &pulled.digest, &pulled.media_type)
            .map_err(store_err)?;
        self.store.image(&pulled.digest).map_err(store_err)
    }
}

impl std::str::FromStr for PullPolicy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "missing" => Ok(PullPolicy::Missing),
            "always" => Ok(PullPolicy::Always),
            "never" => Ok(PullPolicy::Never),
            other => Err(format!(
                "unknown pull policy {other:?} (missing, always, never)"
            )),
        }
    }
}
