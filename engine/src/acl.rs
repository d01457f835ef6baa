//! ACL checks and identity helpers (digest scheme).
